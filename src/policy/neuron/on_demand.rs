//! `on-demand` for dense models: no cache. The budget beyond the resident set is a staging
//! area; every demanded cluster is read, computed and dropped, and when the area is full a
//! load waits for earlier drops.

use super::shell::{cluster_bytes, request_bytes, NeuronState};
use crate::model::{ModelGeometry, Precision};
use crate::plan::OpId;
use crate::policy::context::{Counters, PolicyContext, PolicyError};
use crate::policy::machinery::cache::tensor_cache::TensorCache;
use crate::policy::machinery::pass::neuron::{ClusterDemand, ClusterSupplier, NeuronLayerCx};
use std::sync::Arc;

/// `on-demand`: every demanded cluster is staged, computed and dropped.
pub struct Staging {
    area: TensorCache,
    model: Arc<ModelGeometry>,
    precision: Precision,
    counters: Counters,
}

impl Staging {
    /// The supplier of `ctx`'s policy with `capacity_bytes` beyond the resident set.
    pub fn new(ctx: &PolicyContext, capacity_bytes: u64) -> Self {
        Staging {
            area: TensorCache::new(capacity_bytes, ctx.load_ops.clone()),
            model: ctx.model.clone(),
            precision: ctx.offload_precision,
            counters: Counters::default(),
        }
    }
}

impl ClusterSupplier for Staging {
    fn supply(
        &mut self,
        cx: &mut NeuronLayerCx<'_>,
        d: &ClusterDemand,
    ) -> Result<OpId, PolicyError> {
        self.counters.misses += 1;
        let bytes = cluster_bytes(&self.model, d, self.precision);
        // Every staged cluster is dropped as soon as its compute is planned, so the area's
        // accounting is empty here; the Alloc waits for the drops whose memory it takes, which
        // is what bounds the loads in flight.
        Ok(self.area.load(
            d.tensor,
            self.precision,
            bytes,
            request_bytes(bytes),
            &[],
            &[cx.mixer],
            false,
            cx.builder,
        ))
    }

    fn computed(&mut self, cx: &mut NeuronLayerCx<'_>, d: &ClusterDemand, op: OpId) {
        self.area.record_use(&d.tensor, op);
        self.area.evict(d.tensor, cx.builder);
        self.counters.evictions += 1;
    }

    fn counters(&mut self) -> &mut Counters {
        &mut self.counters
    }
}

impl NeuronState for Staging {
    fn cache_bytes(&self) -> u64 {
        self.area.used_bytes()
    }

    fn counters_ref(&self) -> &Counters {
        &self.counters
    }
}
