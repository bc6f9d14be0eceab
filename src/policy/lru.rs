//! `lru`: an expert cache filling the budget left after the resident set; on a miss the
//! least recently used expert not needed by the current layer is evicted.

use super::context::{Counters, MemoryUse, PolicyContext, PolicyError};
use super::expert_cache::ExpertCache;
use super::layer_ops::ResidentOps;
use super::moe_pass::{expert_key, ExpertDemand, ExpertSupplier, LayerCx, MoePassPlanner, Supply};
use super::placement::Placement;
use super::resident::{ResidentSet, BULK_REQUEST_BYTES};
use super::Policy;
use crate::model::{Precision, TensorKind, TensorRef};
use crate::plan::{OpId, PlanBuilder};
use crate::trace::ForwardPass;

pub struct Lru {
    ctx: PolicyContext,
    resident: ResidentSet,
    planner: MoePassPlanner,
    state: LruState,
}

struct LruState {
    cache: ExpertCache,
    precision: Precision,
    expert_bytes: u64,
    /// Logical clock, stamped on each cached expert at each use.
    clock: u64,
    /// Experts of the current layer whose compute is not planned yet: never victims.
    pinned: Vec<TensorRef>,
    counters: Counters,
}

impl Lru {
    pub fn new(ctx: PolicyContext) -> Result<Self, PolicyError> {
        super::require_moe(&ctx, "lru")?;
        let resident = ResidentSet::new(&ctx, true);
        let precision = ctx.offload_precision;
        let expert_bytes =
            ctx.model
                .bytes(ctx.model.dense_layers, TensorKind::Expert(0), precision);
        resident.check_budget(&ctx, expert_bytes, "the resident set plus one expert")?;
        Ok(Lru {
            planner: MoePassPlanner::new(Placement::new(&ctx.device), precision),
            state: LruState {
                cache: ExpertCache::new(ctx.budget_bytes - resident.bytes()),
                precision,
                expert_bytes,
                clock: 0,
                pinned: Vec::new(),
                counters: Counters::default(),
            },
            resident,
            ctx,
        })
    }
}

impl ExpertSupplier for LruState {
    fn begin_layer(
        &mut self,
        cx: &mut LayerCx<'_>,
        demands: &[ExpertDemand],
    ) -> Result<(), PolicyError> {
        self.pinned.clear();
        self.pinned
            .extend(demands.iter().map(|d| expert_key(cx.layer, d.expert)));
        Ok(())
    }

    fn supply(
        &mut self,
        cx: &mut LayerCx<'_>,
        _index: usize,
        d: &ExpertDemand,
    ) -> Result<Supply, PolicyError> {
        let key = expert_key(cx.layer, d.expert);
        self.clock += 1;
        if let Some(e) = self.cache.get(&key) {
            let supply = Supply::Compute {
                precision: e.precision,
                ready: Some(e.ready),
                unit: None,
            };
            self.cache.touch(&key, self.clock);
            self.counters.hits += 1;
            return Ok(supply);
        }
        self.counters.misses += 1;
        let pinned = &self.pinned;
        let evicted = self.cache.make_room(
            self.expert_bytes,
            |k| pinned.contains(k),
            |_, e| e.last_touch,
            cx.builder,
        )?;
        self.counters.evictions += evicted.len() as u64;
        let read = self.cache.load(
            key,
            self.precision,
            self.expert_bytes,
            BULK_REQUEST_BYTES,
            &[],
            &[cx.router],
            false,
            cx.builder,
        );
        self.cache.touch(&key, self.clock);
        Ok(Supply::Compute {
            precision: self.precision,
            ready: Some(read),
            unit: None,
        })
    }

    fn computed(&mut self, cx: &mut LayerCx<'_>, expert: u16, op: OpId) {
        let key = expert_key(cx.layer, expert);
        self.cache.record_use(&key, op);
        self.pinned.retain(|k| *k != key);
    }

    fn counters(&mut self) -> &mut Counters {
        &mut self.counters
    }
}

impl Policy for Lru {
    fn name(&self) -> &str {
        "lru"
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
            .plan(&self.ctx.model, &ops, pass, &mut self.state, b)
    }

    fn memory(&self) -> MemoryUse {
        MemoryUse {
            resident_bytes: self.resident.bytes(),
            cache_bytes: self.state.cache.used_bytes(),
        }
    }

    fn counters(&self) -> &Counters {
        &self.state.counters
    }
}
