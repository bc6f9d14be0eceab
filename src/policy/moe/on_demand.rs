//! `on-demand`: llama.cpp-style loading with no expert cache. Every expert a layer needs is
//! read when the router has chosen it and dropped after its compute; only the resident set
//! (attention, routers, embeddings, dense layers, KV cache) stays in memory.
//!
//! Memory left over after the resident set is a staging area: as many experts load at once
//! as fit, so a small budget serialises loads instead of failing.

use crate::model::{Precision, TensorKind};
use crate::plan::{OpId, PlanBuilder};
use crate::policy::context::{Counters, MemoryUse, PolicyContext, PolicyError};
use crate::policy::machinery::cache::tensor_cache::ExpertCache;
use crate::policy::machinery::pass::moe::{
    expert_key, ExpertDemand, ExpertSupplier, LayerCx, MoePassPlanner, Supply,
};
use crate::policy::machinery::pass::resident_ops::ResidentOps;
use crate::policy::machinery::placement::Placement;
use crate::policy::machinery::resident::{ResidentSet, BULK_REQUEST_BYTES};
use crate::policy::Policy;
use crate::trace::ForwardPass;

pub struct OnDemand {
    ctx: PolicyContext,
    resident: ResidentSet,
    planner: MoePassPlanner,
    staging: Staging,
}

struct Staging {
    area: ExpertCache,
    precision: Precision,
    expert_bytes: u64,
    counters: Counters,
}

impl OnDemand {
    pub fn new(ctx: PolicyContext) -> Result<Self, PolicyError> {
        crate::policy::require_moe(&ctx, "on-demand")?;
        let resident = ResidentSet::new(&ctx, true);
        let precision = ctx.offload_precision;
        let first_moe = ctx.model.dense_layers;
        let expert_bytes = ctx.model.bytes(first_moe, TensorKind::Expert(0), precision);
        resident.check_budget(&ctx, expert_bytes, "the resident set plus one expert")?;
        let area = ExpertCache::new(ctx.budget_bytes - resident.bytes());
        Ok(OnDemand {
            planner: MoePassPlanner::new(Placement::new(&ctx.device), precision),
            resident,
            staging: Staging {
                area,
                precision,
                expert_bytes,
                counters: Counters::default(),
            },
            ctx,
        })
    }
}

impl ExpertSupplier for Staging {
    fn supply(
        &mut self,
        cx: &mut LayerCx<'_>,
        _index: usize,
        d: &ExpertDemand,
    ) -> Result<Supply, PolicyError> {
        let key = expert_key(cx.layer, d.expert);
        self.counters.misses += 1;
        // Every staged expert is evicted as soon as its compute is planned, so the area's
        // accounting is always free here; the load's Alloc waits for the evictions whose memory
        // it takes, which is what limits how many loads run at once.
        let read = self.area.load(
            key,
            self.precision,
            self.expert_bytes,
            BULK_REQUEST_BYTES,
            &[],
            &[cx.router],
            false,
            cx.builder,
        );
        Ok(Supply::Compute {
            precision: self.precision,
            ready: Some(read),
            unit: None,
        })
    }

    fn computed(&mut self, cx: &mut LayerCx<'_>, expert: u16, op: OpId) {
        let key = expert_key(cx.layer, expert);
        self.area.record_use(&key, op);
        self.area.evict(key, cx.builder);
        self.counters.evictions += 1;
    }

    fn counters(&mut self) -> &mut Counters {
        &mut self.counters
    }
}

impl Policy for OnDemand {
    fn name(&self) -> &str {
        "on-demand"
    }

    fn plan_warmup(&mut self, b: &mut PlanBuilder) -> Result<(), PolicyError> {
        self.resident.plan_warmup(b);
        Ok(())
    }

    fn plan_pass(&mut self, pass: &ForwardPass, b: &mut PlanBuilder) -> Result<(), PolicyError> {
        let ops = ResidentOps {
            model: &self.ctx.model,
            precision: self.ctx.resident_precision,
        };
        self.planner
            .plan(&self.ctx.model, &ops, pass, &mut self.staging, b)
    }

    fn memory(&self) -> MemoryUse {
        MemoryUse {
            resident_bytes: self.resident.bytes(),
            cache_bytes: self.staging.area.used_bytes(),
        }
    }

    fn counters(&self) -> &Counters {
        &self.staging.counters
    }
}
