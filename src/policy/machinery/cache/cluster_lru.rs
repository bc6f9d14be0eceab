//! An LRU cache of neuron clusters with constant-time victim choice.
//!
//! A dense model at one neuron per cluster has tens of thousands of clusters, and a pass misses
//! hundreds of them per layer: the slab scan of [`TensorCache::make_room`] would make victim
//! search quadratic. So the LRU order lives in a doubly linked recency list (O(1) per use and
//! per victim; the head is the least recently used), and [`TensorCache`] keeps only the
//! bookkeeping that makes plans honest (an eviction waits for its entry's load and last use,
//! an allocation waits for the evictions whose memory it takes).
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
use crate::policy::machinery::tensor_map::TensorMap;
use std::sync::Arc;

/// Marks the end of the recency list.
const NIL: u32 = u32::MAX;

/// Where a used cluster is: in the recency list (a victim candidate) or pinned by the layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Listed,
    Pinned,
}

/// One used cluster, a node of the doubly linked recency list.
#[derive(Clone, Copy, Debug)]
struct Node {
    key: TensorRef,
    prev: u32,
    next: u32,
    place: Place,
}

/// The LRU order as a doubly linked list over a slab of nodes: every use moves its cluster to
/// the tail, so the list is in order of last use and the head is the victim. That is the order
/// of an ordered set keyed by a use counter (which it replaced: a B-tree insert and remove per
/// use was the cost of a one-neuron-cluster pass), at O(1) per use.
#[derive(Clone, Debug, Default)]
struct Recency {
    nodes: Vec<Node>,
    /// Slab slots of forgotten nodes, reused first.
    free: Vec<u32>,
    head: u32,
    tail: u32,
}

impl Recency {
    fn new() -> Self {
        Recency {
            head: NIL,
            tail: NIL,
            ..Recency::default()
        }
    }

    fn unlink(&mut self, n: u32) {
        let Node { prev, next, .. } = self.nodes[n as usize];
        match prev {
            NIL => self.head = next,
            p => self.nodes[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            x => self.nodes[x as usize].prev = prev,
        }
    }

    fn push_back(&mut self, n: u32) {
        let node = &mut self.nodes[n as usize];
        node.prev = self.tail;
        node.next = NIL;
        node.place = Place::Listed;
        match self.tail {
            NIL => self.head = n,
            t => self.nodes[t as usize].next = n,
        }
        self.tail = n;
    }

    fn new_node(&mut self, key: TensorRef) -> u32 {
        let node = Node {
            key,
            prev: NIL,
            next: NIL,
            place: Place::Pinned,
        };
        match self.free.pop() {
            Some(n) => {
                self.nodes[n as usize] = node;
                n
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct ClusterLru {
    cache: TensorCache,
    /// Used clusters in order of last use (head: least recent), and the pinned ones.
    recency: Recency,
    /// The node of every cached cluster used at least once (loaded but not yet used ones
    /// have none: they cannot be victims).
    node_of: TensorMap<u32>,
    /// Cached clusters the current layer demands and has not computed yet, in pin order;
    /// an entry whose node is no longer pinned (computed, or evicted) is stale and skipped.
    pinned: Vec<TensorRef>,
    /// Whether `pinned` is sorted by key (it is sorted when a pinned victim is first needed).
    pinned_sorted: bool,
}

impl ClusterLru {
    pub fn new(capacity_bytes: u64, load_ops: Arc<dyn LoadOps>) -> Self {
        ClusterLru {
            cache: TensorCache::new(capacity_bytes, load_ops),
            recency: Recency::new(),
            node_of: TensorMap::default(),
            pinned: Vec::new(),
            pinned_sorted: true,
        }
    }

    fn is_pinned(&self, key: &TensorRef) -> bool {
        self.node_of
            .get(key)
            .is_some_and(|&n| self.recency.nodes[n as usize].place == Place::Pinned)
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
        // Drop the stale entries; any pin still held (none, normally) is kept.
        let mut pinned = std::mem::take(&mut self.pinned);
        pinned.retain(|k| self.is_pinned(k));
        debug_assert!(pinned.is_empty(), "pins left from the previous layer");
        for key in keys {
            if let Some(&n) = self.node_of.get(&key) {
                if self.recency.nodes[n as usize].place == Place::Listed {
                    self.recency.unlink(n);
                    self.recency.nodes[n as usize].place = Place::Pinned;
                    pinned.push(key);
                }
            }
        }
        self.pinned = pinned;
        self.pinned_sorted = false;
    }

    /// Takes the pinned cluster with the highest key, if any.
    fn pop_highest_pinned(&mut self) -> Option<TensorRef> {
        if !self.pinned_sorted {
            // Stale entries sort with the rest and are skipped below.
            self.pinned.sort_unstable();
            self.pinned_sorted = true;
        }
        while let Some(key) = self.pinned.pop() {
            if self.is_pinned(&key) {
                return Some(key);
            }
        }
        None
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
            let key = if self.recency.head != NIL {
                let n = self.recency.head;
                self.recency.unlink(n);
                self.recency.nodes[n as usize].key
            } else if let Some(key) = self.pop_highest_pinned() {
                key
            } else {
                // Unreachable when the capacity holds `bytes`: an empty cache has room.
                return Err(PolicyError::BudgetTooSmall {
                    required: bytes,
                    budget: self.cache.free_bytes(),
                    what: "one neuron cluster".into(),
                });
            };
            let n = self.node_of.remove(&key).expect("every victim has a node");
            self.recency.free.push(n);
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
        let Some(&n) = self.node_of.get(&key) else {
            return false;
        };
        if self.recency.nodes[n as usize].place != Place::Listed {
            return false;
        }
        self.recency.unlink(n);
        self.node_of.remove(&key);
        self.recency.free.push(n);
        self.cache.evict(key, b);
        true
    }

    /// `op` computed with `key`: it becomes the most recently used entry, evictable again.
    pub fn used(&mut self, key: TensorRef, op: OpId) {
        self.cache.record_use(&key, op);
        let n = match self.node_of.get(&key) {
            Some(&n) => {
                if self.recency.nodes[n as usize].place == Place::Listed {
                    self.recency.unlink(n);
                }
                // A pinned one leaves `pinned` lazily (its entry there is now stale).
                n
            }
            None => {
                let n = self.recency.new_node(key);
                self.node_of.insert(key, n);
                n
            }
        };
        self.recency.push_back(n);
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

    /// The order the recency list replaced, kept here as the specification: unpinned entries
    /// in a set keyed by (use counter, key), the first one the victim; then the pinned ones,
    /// highest key first.
    #[derive(Default)]
    struct Reference {
        order: std::collections::BTreeSet<(u64, TensorRef)>,
        tick_of: std::collections::BTreeMap<TensorRef, u64>,
        pinned: std::collections::BTreeSet<TensorRef>,
        cached: std::collections::BTreeSet<TensorRef>,
        tick: u64,
    }

    impl Reference {
        fn pin(&mut self, keys: &[TensorRef]) {
            for k in keys {
                if let Some(t) = self.tick_of.get(k) {
                    self.order.remove(&(*t, *k));
                    self.pinned.insert(*k);
                }
            }
        }
        fn evict_one(&mut self) {
            let key = match self.order.pop_first() {
                Some((_, k)) => k,
                None => self.pinned.pop_last().expect("something to evict"),
            };
            self.tick_of.remove(&key);
            self.cached.remove(&key);
        }
        fn used(&mut self, key: TensorRef) {
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

    #[test]
    fn evicts_in_the_order_of_the_ordered_set_it_replaced() {
        use rand::{Rng, SeedableRng};
        for seed in 0..8u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            // Room for 12 clusters of 10 bytes; layers demand up to 20 of 40 clusters, so
            // some layers' demand does not fit and pinned clusters are evicted too.
            let mut c = ClusterLru::new(120, crate::policy::machinery::load_ops::plain());
            let mut r = Reference::default();
            let mut b = PlanBuilder::new(0);
            for _layer in 0..300 {
                let n = rng.gen_range(1..=20);
                let mut demands: Vec<TensorRef> =
                    (0..n).map(|_| key(0, rng.gen_range(0..40))).collect();
                demands.sort();
                demands.dedup();
                c.pin(demands.iter().copied());
                r.pin(&demands);
                for &k in &demands {
                    if !c.contains(&k) {
                        let before = r.cached.len();
                        while (r.cached.len() + 1) * 10 > 120 {
                            r.evict_one();
                        }
                        let evicted = c.make_room(10, &mut b).unwrap();
                        assert_eq!(evicted as usize, before - r.cached.len(), "seed {seed}");
                        let read = c.load(k, Precision::Int4, 10, 4096, &[], &mut b);
                        r.cached.insert(k);
                        let op = b.push(Op::Join, &[read]);
                        c.used(k, op);
                    } else {
                        let op = b.push(Op::Join, &[c.ready(&k).unwrap()]);
                        c.used(k, op);
                    }
                    r.used(k);
                    for e in 0..40 {
                        assert_eq!(c.contains(&key(0, e)), r.cached.contains(&key(0, e)));
                    }
                }
            }
        }
    }
}
