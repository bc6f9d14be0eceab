//! The [`Policy`] shell shared by expert-offloading policies: the resident set, the per-layer
//! planner, and a supplier that makes the policy's own decisions.

use crate::model::Precision;
use crate::plan::{Kernel, Op, OpId, PlanBuilder};
use crate::policy::context::{Counters, MemoryUse, PolicyContext, PolicyError};
use crate::policy::machinery::future::FutureAccesses;
use crate::policy::machinery::pass::moe::{ExpertSupplier, MoePassPlanner};
use crate::policy::machinery::pass::resident_ops::ResidentOps;
use crate::policy::machinery::placement::Placement;
use crate::policy::machinery::resident::ResidentSet;
use crate::policy::Policy;
use crate::trace::ForwardPass;
use std::sync::Arc;

/// What an expert policy's supplier adds to [`ExpertSupplier`].
pub trait ExpertState: ExpertSupplier {
    /// Called before each pass is planned (per-sequence resets, pass counters).
    fn start_pass(&mut self, _pass: &ForwardPass) -> Result<(), PolicyError> {
        Ok(())
    }

    /// Extra warm-up work after the resident set is loaded (static expert placement); returns
    /// the op that ends it, if any.
    fn warmup(
        &mut self,
        _b: &mut PlanBuilder,
        _resident_done: OpId,
    ) -> Result<Option<OpId>, PolicyError> {
        Ok(None)
    }

    /// Bytes of offloaded weights the policy holds.
    fn cache_bytes(&self) -> u64;

    fn counters_ref(&self) -> &Counters;

    fn needs_future(&self) -> bool {
        false
    }

    fn give_future(&mut self, _future: Arc<FutureAccesses>) {}
}

pub struct ExpertPolicy<S: ExpertState> {
    name: &'static str,
    ctx: PolicyContext,
    resident: ResidentSet,
    planner: MoePassPlanner,
    pub state: S,
}

impl<S: ExpertState> ExpertPolicy<S> {
    /// `high` is the precision that counts as full quality for the accuracy proxy.
    pub fn new(name: &'static str, ctx: PolicyContext, high: Precision, state: S) -> Self {
        ExpertPolicy {
            name,
            resident: ResidentSet::new(&ctx, true),
            planner: MoePassPlanner::new(Placement::new(&ctx.device), high),
            ctx,
            state,
        }
    }

    /// The policy computing every op with `kernel` on a CPU (llama.cpp's baselines:
    /// [`Kernel::Dequant`]).
    pub fn with_kernel(mut self, kernel: Kernel) -> Self {
        self.planner.kernel = kernel;
        self
    }

    pub fn context(&self) -> &PolicyContext {
        &self.ctx
    }
}

impl<S: ExpertState> Policy for ExpertPolicy<S> {
    fn name(&self) -> &str {
        self.name
    }

    fn plan_warmup(&mut self, b: &mut PlanBuilder) -> Result<(), PolicyError> {
        let done = self.resident.plan_warmup(b);
        if let Some(extra) = self.state.warmup(b, done)? {
            let all = b.push(Op::Join, &[done, extra]);
            b.set_output(all);
        }
        Ok(())
    }

    fn plan_pass(&mut self, pass: &ForwardPass, b: &mut PlanBuilder) -> Result<(), PolicyError> {
        self.state.start_pass(pass)?;
        let ops = ResidentOps {
            model: &self.ctx.model,
            precision: self.ctx.resident_precision,
        };
        self.planner
            .plan(&self.ctx.model, &ops, pass, &mut self.state, b)
    }

    fn memory(&self) -> MemoryUse {
        MemoryUse {
            resident_bytes: self.resident.bytes(),
            cache_bytes: self.state.cache_bytes(),
        }
    }

    fn counters(&self) -> &Counters {
        self.state.counters_ref()
    }

    fn needs_future(&self) -> bool {
        self.state.needs_future()
    }

    fn give_future(&mut self, future: Arc<FutureAccesses>) {
        self.state.give_future(future)
    }
}

/// Cache bytes left after the resident set, checked to hold at least `min_bytes`.
pub fn cache_capacity(ctx: &PolicyContext, min_bytes: u64, what: &str) -> Result<u64, PolicyError> {
    let resident = ResidentSet::new(ctx, true);
    resident.check_budget(ctx, min_bytes, what)?;
    Ok(ctx.budget_bytes - resident.bytes())
}
