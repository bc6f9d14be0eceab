//! An LRU cache of neuron clusters with constant-time victim choice.
//!
//! A dense model at one neuron per cluster has tens of thousands of clusters, and a pass misses
//! hundreds of them per layer: the slab scan of [`TensorCache::make_room`] would make victim
//! search quadratic. So the LRU order lives in an ordered set keyed by (last use, key), and
//! [`TensorCache`] keeps only the bookkeeping that makes plans honest (an eviction waits for its
//! entry's load and last use, an allocation waits for the evictions whose memory it takes).
//!
//! The clusters the current layer demands are pinned: taken out of the LRU order until they are
//! computed, so a miss never evicts a cluster the layer is about to use. Once computed they go
//! back as the most recently used, and only when nothing else is left are they evicted, which
//! is on-demand staging for a layer whose demand does not fit the cache. Only when even that is
//! not enough (every remaining entry is a pinned cluster not computed yet) is a pinned one
//! evicted, the highest cluster first since it is needed last; it is then simply a miss.

use crate::model::{Precision, TensorRef};
use crate::plan::{OpId, PlanBuilder};
use crate::policy::context::PolicyError;
use crate::policy::machinery::cache::tensor_cache::TensorCache;
use crate::policy::machinery::load_ops::LoadOps;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct ClusterLru {
    cache: TensorCache,
    /// Unpinned entries by (last use tick, key): the first is the victim; ties cannot happen.
    order: BTreeSet<(u64, TensorRef)>,
    tick_of: HashMap<TensorRef, u64>,
    /// Cached clusters the current layer demands and has not computed yet.
    pinned: BTreeSet<TensorRef>,
    tick: u64,
}

impl ClusterLru {
    pub fn new(capacity_bytes: u64, load_ops: Arc<dyn LoadOps>) -> Self {
        ClusterLru {
            cache: TensorCache::new(capacity_bytes, load_ops),
            order: BTreeSet::new(),
            tick_of: HashMap::new(),
            pinned: BTreeSet::new(),
            tick: 0,
        }
    }

    pub fn capacity_bytes(&self) -> u64 {
        self.cache.capacity_bytes()
    }

    pub fn used_bytes(&self) -> u64 {
        self.cache.used_bytes()
    }

    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    pub fn contains(&self, key: &TensorRef) -> bool {
        self.cache.contains(key)
    }

    /// Pins the cached ones among `keys` (the layer's demands) until each is computed.
    pub fn pin(&mut self, keys: impl IntoIterator<Item = TensorRef>) {
        debug_assert!(self.pinned.is_empty(), "pins left from the previous layer");
        for key in keys {
            if let Some(tick) = self.tick_of.get(&key) {
                self.order.remove(&(*tick, key));
                self.pinned.insert(key);
            }
        }
    }

    /// The op a hit's compute must wait for, if `key` is cached.
    pub fn ready(&self, key: &TensorRef) -> Option<OpId> {
        self.cache.get(key).map(|e| e.ready)
    }

    /// Evicts until `bytes` more fit; returns how many entries were evicted.
    pub fn make_room(&mut self, bytes: u64, b: &mut PlanBuilder) -> Result<u64, PolicyError> {
        if bytes > self.cache.capacity_bytes() {
            return Err(PolicyError::BudgetTooSmall {
                required: bytes,
                budget: self.cache.capacity_bytes(),
                what: "one neuron cluster (the cache left after the resident set)".into(),
            });
        }
        let mut evicted = 0;
        while self.cache.free_bytes() < bytes {
            let key = if let Some((tick, key)) = self.order.pop_first() {
                debug_assert_eq!(self.tick_of.get(&key), Some(&tick));
                key
            } else if let Some(key) = self.pinned.pop_last() {
                key
            } else {
                // Unreachable when the capacity holds `bytes`: an empty cache has room.
                return Err(PolicyError::BudgetTooSmall {
                    required: bytes,
                    budget: self.cache.free_bytes(),
                    what: "one neuron cluster".into(),
                });
            };
            self.tick_of.remove(&key);
            self.cache.evict(key, b);
            evicted += 1;
        }
        Ok(evicted)
    }

    /// Emits Alloc (after the evictions that free its memory) and Read (after the Alloc and
    /// `read_after`) for `key`; returns the Read. The caller must have made room. The entry
    /// stays out of the LRU order, so no eviction can take it, until [`ClusterLru::used`].
    pub fn load(
        &mut self,
        key: TensorRef,
        precision: Precision,
        bytes: u64,
        request_bytes: u32,
        read_after: &[OpId],
        b: &mut PlanBuilder,
    ) -> OpId {
        self.cache.load(
            key,
            precision,
            bytes,
            request_bytes,
            &[],
            read_after,
            false,
            b,
        )
    }

    /// Evicts `key` if it is cached and neither pinned nor loaded and not yet used (LLM in a
    /// Flash drops neurons that left its window); returns whether it was evicted.
    pub fn remove(&mut self, key: TensorRef, b: &mut PlanBuilder) -> bool {
        let Some(tick) = self.tick_of.get(&key).copied() else {
            return false;
        };
        if !self.order.remove(&(tick, key)) {
            return false;
        }
        self.tick_of.remove(&key);
        self.cache.evict(key, b);
        true
    }

    /// `op` computed with `key`: it becomes the most recently used entry, evictable again.
    pub fn used(&mut self, key: TensorRef, op: OpId) {
        self.cache.record_use(&key, op);
        if !self.pinned.remove(&key) {
            if let Some(old) = self.tick_of.get(&key) {
                self.order.remove(&(*old, key));
            }
        }
        self.tick += 1;
        self.tick_of.insert(key, self.tick);
        self.order.insert((self.tick, key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TensorKind;
    use crate::plan::Op;

    fn key(layer: u32, first: u32) -> TensorRef {
        TensorRef::new(
            layer,
            TensorKind::Neurons {
                expert: crate::model::DENSE_FFN,
                first,
                count: 1,
            },
        )
    }

    fn load_and_use(c: &mut ClusterLru, k: TensorRef, b: &mut PlanBuilder) -> OpId {
        c.make_room(10, b).unwrap();
        let read = c.load(k, Precision::Int4, 10, 4096, &[], b);
        let use_op = b.push(Op::Join, &[read]);
        c.used(k, use_op);
        use_op
    }

    #[test]
    fn the_least_recently_used_unpinned_cluster_goes_first() {
        let mut c = ClusterLru::new(30, crate::policy::machinery::load_ops::plain());
        let mut b = PlanBuilder::new(0);
        for n in 0..3 {
            load_and_use(&mut c, key(0, n), &mut b);
        }
        // Cluster 0 is the oldest but the next layer demands it: cluster 1 goes instead.
        c.pin([key(0, 0)]);
        assert_eq!(c.make_room(10, &mut b).unwrap(), 1);
        assert!(c.contains(&key(0, 0)) && !c.contains(&key(0, 1)));
        let hit = b.push(Op::Join, &[c.ready(&key(0, 0)).unwrap()]);
        c.used(key(0, 0), hit);
        // The freed room takes the next load; the one after evicts cluster 2, now the least
        // recently used.
        load_and_use(&mut c, key(1, 0), &mut b);
        assert!(c.contains(&key(0, 2)));
        load_and_use(&mut c, key(1, 1), &mut b);
        assert!(!c.contains(&key(0, 2)) && c.contains(&key(0, 0)));
        assert_eq!(c.used_bytes(), 30);
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn pinned_clusters_go_last_and_highest_first() {
        let mut c = ClusterLru::new(20, crate::policy::machinery::load_ops::plain());
        let mut b = PlanBuilder::new(0);
        load_and_use(&mut c, key(0, 0), &mut b);
        load_and_use(&mut c, key(0, 1), &mut b);
        c.pin([key(0, 0), key(0, 1), key(0, 5)]);
        assert_eq!(c.make_room(10, &mut b).unwrap(), 1);
        assert!(c.contains(&key(0, 0)) && !c.contains(&key(0, 1)));
    }

    #[test]
    fn a_cluster_larger_than_the_cache_is_an_error() {
        let mut c = ClusterLru::new(5, crate::policy::machinery::load_ops::plain());
        let mut b = PlanBuilder::new(0);
        assert!(matches!(
            c.make_room(10, &mut b),
            Err(PolicyError::BudgetTooSmall { .. })
        ));
    }
}
