//! `on-demand`: llama.cpp-style loading with no expert cache. Every expert a layer needs is
//! read when the router has chosen it and dropped after its compute; only the resident set
//! (attention, routers, embeddings, dense layers, KV cache) stays in memory.
//!
//! Memory left over after the resident set is a staging area: as many experts load at once
//! as fit, so a small budget serialises loads instead of failing.

use crate::model::{Precision, TensorKind};
use crate::plan::OpId;
use crate::policy::context::{Counters, PolicyContext, PolicyError};
use crate::policy::machinery::cache::tensor_cache::TensorCache;
use crate::policy::machinery::pass::moe::{
    expert_key, ExpertDemand, ExpertSupplier, LayerCx, Supply,
};
use crate::policy::machinery::resident::BULK_REQUEST_BYTES;
use crate::policy::moe::shell::{cache_capacity, ExpertPolicy, ExpertState};

/// `on-demand` for MoE models.
pub type OnDemand = ExpertPolicy<Staging>;

/// Builds `on-demand`: the budget beyond the resident set is the staging area.
pub fn build(ctx: PolicyContext) -> Result<OnDemand, PolicyError> {
    crate::policy::moe::require_moe(&ctx, "on-demand")?;
    let precision = ctx.offload_precision;
    let first_moe = ctx.model.dense_layers;
    let expert_bytes = ctx.model.bytes(first_moe, TensorKind::Expert(0), precision);
    let capacity = cache_capacity(&ctx, expert_bytes, "the resident set plus one expert")?;
    let staging = Staging {
        area: TensorCache::new(capacity, ctx.load_ops.clone()),
        precision,
        expert_bytes,
        counters: Counters::default(),
    };
    Ok(ExpertPolicy::new("on-demand", ctx, precision, staging))
}

/// The staging area: every expert is loaded for its compute and dropped right after it.
pub struct Staging {
    area: TensorCache,
    precision: Precision,
    expert_bytes: u64,
    counters: Counters,
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

impl ExpertState for Staging {
    fn cache_bytes(&self) -> u64 {
        self.area.used_bytes()
    }

    fn counters_ref(&self) -> &Counters {
        &self.counters
    }
}
