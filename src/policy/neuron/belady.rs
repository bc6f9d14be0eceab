//! `belady` for dense models: a cache of neuron clusters that evicts the cluster whose next
//! use lies farthest in the trace's future (Belady's MIN). It reads the future, which no online
//! policy can, so it is the ceiling for any demand-loaded neuron cache at the same budget and
//! cluster size (`docs/powerinfer2.md`).
//!
//! Time is counted in steps, one per layer of each pass (`FutureAccesses::dense_step`); a
//! cluster's next use is the earliest next use of any of its neurons. As in `lru`, the clusters
//! the current layer demands are pinned until computed; once computed they rank by their next
//! use after this step, so a layer whose demand does not fit evicts its computed clusters by
//! that order, and only then its pinned ones, the highest first.

use super::shell::{cluster_bytes, request_bytes, NeuronState};
use crate::model::{ModelGeometry, Precision, TensorKind, TensorRef};
use crate::plan::{OpId, PlanBuilder};
use crate::policy::context::{Counters, PolicyContext, PolicyError};
use crate::policy::machinery::cache::tensor_cache::TensorCache;
use crate::policy::machinery::pass::neuron::{ClusterDemand, ClusterSupplier, NeuronLayerCx};
use crate::policy::FutureAccesses;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// `belady`: the cluster cache with Belady's eviction.
pub struct BeladyClusters {
    cache: TensorCache,
    model: Arc<ModelGeometry>,
    precision: Precision,
    counters: Counters,
    future: Option<Arc<FutureAccesses>>,
    /// Passes begun (the current one is `passes - 1`).
    passes: u64,
    step: u64,
    /// Victim candidates by (next use, key): the last is evicted first.
    order: BTreeSet<(u64, TensorRef)>,
    /// The rank of each candidate in `order`.
    rank_of: BTreeMap<TensorRef, u64>,
    /// Cached clusters the current layer demands and has not computed yet.
    pinned: BTreeSet<TensorRef>,
}

impl BeladyClusters {
    pub fn new(ctx: &PolicyContext, capacity_bytes: u64) -> Self {
        BeladyClusters {
            cache: TensorCache::new(capacity_bytes, ctx.load_ops.clone()),
            model: ctx.model.clone(),
            precision: ctx.offload_precision,
            counters: Counters::default(),
            future: None,
            passes: 0,
            step: 0,
            order: BTreeSet::new(),
            rank_of: BTreeMap::new(),
            pinned: BTreeSet::new(),
        }
    }

    /// The cluster's next use after the current step (`u64::MAX`: never).
    fn next_use(&self, key: &TensorRef) -> u64 {
        let (Some(f), TensorKind::Neurons { first, count, .. }) = (&self.future, key.kind) else {
            return u64::MAX;
        };
        (first..first + count)
            .filter_map(|n| f.next_neuron_use_after(key.layer as u32, n, self.step))
            .min()
            .unwrap_or(u64::MAX)
    }

    fn unlist(&mut self, key: &TensorRef) -> bool {
        match self.rank_of.remove(key) {
            Some(r) => {
                self.order.remove(&(r, *key));
                true
            }
            None => false,
        }
    }

    fn make_room(&mut self, bytes: u64, b: &mut PlanBuilder) -> Result<u64, PolicyError> {
        if bytes > self.cache.capacity_bytes() {
            return Err(PolicyError::BudgetTooSmall {
                required: bytes,
                budget: self.cache.capacity_bytes(),
                what: "one neuron cluster (the cache left after the resident set)".into(),
            });
        }
        let mut evicted = 0;
        while self.cache.free_bytes() < bytes {
            let key = if let Some(&(r, key)) = self.order.last() {
                self.order.remove(&(r, key));
                self.rank_of.remove(&key);
                key
            } else if let Some(key) = self.pinned.pop_last() {
                key
            } else {
                return Err(PolicyError::BudgetTooSmall {
                    required: bytes,
                    budget: self.cache.free_bytes(),
                    what: "one neuron cluster".into(),
                });
            };
            self.cache.evict(key, b);
            evicted += 1;
        }
        Ok(evicted)
    }
}

impl ClusterSupplier for BeladyClusters {
    fn begin_layer(&mut self, cx: &mut NeuronLayerCx<'_>, demands: &[ClusterDemand]) {
        if cx.layer == 0 {
            self.passes += 1;
        }
        self.step = match &self.future {
            Some(f) => f.dense_step(self.passes.saturating_sub(1), cx.layer),
            None => 0,
        };
        self.pinned.clear();
        for d in demands {
            if self.cache.contains(&d.tensor) {
                self.unlist(&d.tensor);
                self.pinned.insert(d.tensor);
            }
        }
    }

    fn supply(
        &mut self,
        cx: &mut NeuronLayerCx<'_>,
        d: &ClusterDemand,
    ) -> Result<OpId, PolicyError> {
        if let Some(e) = self.cache.get(&d.tensor) {
            self.counters.hits += 1;
            return Ok(e.ready);
        }
        self.counters.misses += 1;
        let bytes = cluster_bytes(&self.model, d, self.precision);
        self.counters.evictions += self.make_room(bytes, cx.builder)?;
        Ok(self.cache.load(
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

    fn computed(&mut self, _cx: &mut NeuronLayerCx<'_>, d: &ClusterDemand, op: OpId) {
        self.cache.record_use(&d.tensor, op);
        self.pinned.remove(&d.tensor);
        self.unlist(&d.tensor);
        let r = self.next_use(&d.tensor);
        self.order.insert((r, d.tensor));
        self.rank_of.insert(d.tensor, r);
    }

    fn counters(&mut self) -> &mut Counters {
        &mut self.counters
    }
}

impl NeuronState for BeladyClusters {
    fn cache_bytes(&self) -> u64 {
        self.cache.used_bytes()
    }

    fn counters_ref(&self) -> &Counters {
        &self.counters
    }

    fn needs_future(&self) -> bool {
        true
    }

    fn give_future(&mut self, future: Arc<FutureAccesses>) {
        self.future = Some(future);
    }
}
