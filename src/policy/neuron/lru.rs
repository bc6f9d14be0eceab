//! `lru` for dense models: the budget beyond the resident set caches clusters; a miss evicts
//! the least recently used clusters the current layer does not need (see [`ClusterLru`] for
//! what happens when one layer's demand does not fit).

use super::shell::{cluster_bytes, request_bytes, NeuronState};
use crate::model::{ModelGeometry, Precision};
use crate::plan::OpId;
use crate::policy::context::{Counters, PolicyContext, PolicyError};
use crate::policy::machinery::cache::cluster_lru::ClusterLru;
use crate::policy::machinery::pass::neuron::{ClusterDemand, ClusterSupplier, NeuronLayerCx};
use std::sync::Arc;

/// `lru`: a cache of clusters, least recently used evicted first.
pub struct LruClusters {
    cache: ClusterLru,
    model: Arc<ModelGeometry>,
    precision: Precision,
    counters: Counters,
}

impl LruClusters {
    /// The supplier of `ctx`'s policy with `capacity_bytes` beyond the resident set.
    pub fn new(ctx: &PolicyContext, capacity_bytes: u64) -> Self {
        LruClusters {
            cache: ClusterLru::new(capacity_bytes, ctx.load_ops.clone()),
            model: ctx.model.clone(),
            precision: ctx.offload_precision,
            counters: Counters::default(),
        }
    }
}

impl ClusterSupplier for LruClusters {
    fn begin_layer(&mut self, _cx: &mut NeuronLayerCx<'_>, demands: &[ClusterDemand]) {
        self.cache.pin(demands.iter().map(|d| d.tensor));
    }

    fn supply(
        &mut self,
        cx: &mut NeuronLayerCx<'_>,
        d: &ClusterDemand,
    ) -> Result<OpId, PolicyError> {
        if let Some(ready) = self.cache.ready(&d.tensor) {
            self.counters.hits += 1;
            return Ok(ready);
        }
        self.counters.misses += 1;
        let bytes = cluster_bytes(&self.model, d, self.precision);
        self.counters.evictions += self.cache.make_room(bytes, cx.builder)?;
        Ok(self.cache.load(
            d.tensor,
            self.precision,
            bytes,
            request_bytes(bytes),
            &[cx.mixer],
            cx.builder,
        ))
    }

    fn computed(&mut self, _cx: &mut NeuronLayerCx<'_>, d: &ClusterDemand, op: OpId) {
        self.cache.used(d.tensor, op);
    }

    fn counters(&mut self) -> &mut Counters {
        &mut self.counters
    }
}

impl NeuronState for LruClusters {
    fn cache_bytes(&self) -> u64 {
        self.cache.used_bytes()
    }

    fn counters_ref(&self) -> &Counters {
        &self.counters
    }
}
