//! A byte-capacity cache of offloaded weights, with the bookkeeping that keeps plans honest:
//! an entry cannot be evicted before its load finished and its last use ended, and a new
//! entry's allocation waits for the evictions that free the memory it takes.
//!
//! The victim order is the policy's business (LRU, LFU, HOBBIT's priority, Belady): callers pass
//! a scoring function and the lowest score is evicted first. Ties go to the smaller key, so the
//! choice is deterministic.

use crate::model::{Precision, TensorRef};
use crate::plan::{OpId, PlanBuilder};
use crate::policy::context::PolicyError;
use crate::policy::machinery::cache::pending_frees::PendingFrees;
use crate::policy::machinery::load_ops::{Load, LoadOps, ReadOptions};
use crate::policy::machinery::tensor_map::TensorMap;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CacheEntry {
    pub precision: Precision,
    pub bytes: u64,
    /// The op that made the weights usable (the read); compute must depend on it.
    pub ready: OpId,
    /// The latest compute that used the weights; eviction must wait for it.
    pub last_use: Option<OpId>,
    /// Loaded ahead of need and not used yet.
    pub prefetched: bool,
}

#[derive(Clone, Debug)]
pub struct TensorCache {
    capacity_bytes: u64,
    used_bytes: u64,
    /// Entries in a dense slab, so victim searches scan contiguous memory; `index` maps a key
    /// to its slot. The slab's order depends only on the sequence of loads and evictions, and
    /// victim ties are broken by key, so results never depend on hashing.
    slots: Vec<(TensorRef, CacheEntry)>,
    index: TensorMap<usize>,
    frees: PendingFrees,
    /// How a load and a free become ops (the plain Alloc → Read unless a wrapper says
    /// otherwise; see [`crate::policy::machinery::load_ops`]).
    load_ops: Arc<dyn LoadOps>,
}

impl TensorCache {
    /// An empty cache of `capacity_bytes` whose loads and frees become ops by `load_ops`
    /// (normally the policy context's).
    pub fn new(capacity_bytes: u64, load_ops: Arc<dyn LoadOps>) -> Self {
        TensorCache {
            capacity_bytes,
            used_bytes: 0,
            slots: Vec::new(),
            index: TensorMap::default(),
            frees: PendingFrees::default(),
            load_ops,
        }
    }

    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    pub fn used_bytes(&self) -> u64 {
        self.used_bytes
    }

    pub fn free_bytes(&self) -> u64 {
        self.capacity_bytes - self.used_bytes
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn get(&self, key: &TensorRef) -> Option<&CacheEntry> {
        self.index.get(key).map(|&i| &self.slots[i].1)
    }

    fn get_mut(&mut self, key: &TensorRef) -> Option<&mut CacheEntry> {
        self.index.get(key).map(|&i| &mut self.slots[i].1)
    }

    pub fn contains(&self, key: &TensorRef) -> bool {
        self.index.contains_key(key)
    }

    /// Cached entries in slab order: deterministic, but not sorted. Callers whose output
    /// depends on the order sort the keys themselves.
    pub fn entries(&self) -> impl Iterator<Item = (&TensorRef, &CacheEntry)> {
        self.slots.iter().map(|(k, e)| (k, e))
    }

    /// Records that `op` computed with the cached weights of `key`.
    pub fn record_use(&mut self, key: &TensorRef, op: OpId) {
        if let Some(e) = self.get_mut(key) {
            e.last_use = Some(op);
            e.prefetched = false;
        }
    }

    /// Emits Evict ops until `bytes` more fit, choosing unpinned victims with the lowest
    /// `score`. Returns the evict ops and the evicted keys with their entries; a later
    /// [`TensorCache::load`] makes its Alloc wait for the evictions it needs.
    pub fn make_room<S: PartialOrd>(
        &mut self,
        bytes: u64,
        pinned: impl Fn(&TensorRef) -> bool,
        score: impl Fn(&TensorRef, &CacheEntry) -> S,
        b: &mut PlanBuilder,
    ) -> Result<Vec<(OpId, TensorRef, CacheEntry)>, PolicyError> {
        if bytes > self.capacity_bytes {
            return Err(PolicyError::BudgetTooSmall {
                required: bytes,
                budget: self.capacity_bytes,
                what: "one cache entry (the cache left after the resident set)".into(),
            });
        }
        let mut evicted = Vec::new();
        while self.free_bytes() < bytes {
            let mut victim: Option<(S, TensorRef)> = None;
            for (k, e) in &self.slots {
                if pinned(k) {
                    continue;
                }
                let sc = score(k, e);
                let better = match &victim {
                    None => true,
                    Some((best, best_key)) => sc < *best || (sc == *best && k < best_key),
                };
                if better {
                    victim = Some((sc, *k));
                }
            }
            let victim = victim.map(|(_, k)| k);
            let Some(key) = victim else {
                return Err(PolicyError::BudgetTooSmall {
                    required: self.used_bytes + bytes,
                    budget: self.capacity_bytes,
                    what: "the experts one layer needs at once (all other entries are pinned)"
                        .into(),
                });
            };
            let (op, entry) = self.evict(key, b);
            evicted.push((op, key, entry));
        }
        Ok(evicted)
    }

    /// Emits the Evict op for `key` after its load and last use, and forgets the entry.
    pub fn evict(&mut self, key: TensorRef, b: &mut PlanBuilder) -> (OpId, CacheEntry) {
        let slot = self.index.remove(&key).expect("evict of an absent entry");
        let (_, entry) = self.slots.swap_remove(slot);
        if let Some((moved, _)) = self.slots.get(slot) {
            self.index.insert(*moved, slot);
        }
        self.used_bytes -= entry.bytes;
        let deps: Vec<OpId> = std::iter::once(entry.ready).chain(entry.last_use).collect();
        let op = self.load_ops.free(key, entry.bytes, &deps, b);
        self.frees.push(op, entry.bytes);
        (op, entry)
    }

    /// The pending evictions an allocation of `bytes` must wait for: memory free for certain
    /// is used first, then the oldest pending frees.
    fn claim_frees(&mut self, bytes: u64, deps: &mut Vec<OpId>) {
        let free_now = self.capacity_bytes - self.used_bytes - self.frees.bytes();
        self.frees.claim(bytes, free_now, deps);
    }

    /// Emits the load of `key` (by default Alloc after `after` and the evictions that free its
    /// memory, then Read after the Alloc and `read_after`) and records the entry; returns the
    /// op after which the weights are usable. The caller must have made room.
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        &mut self,
        key: TensorRef,
        precision: Precision,
        bytes: u64,
        request_bytes: u32,
        after: &[OpId],
        read_after: &[OpId],
        prefetched: bool,
        b: &mut PlanBuilder,
    ) -> OpId {
        self.load_with(
            key,
            precision,
            bytes,
            request_bytes,
            after,
            read_after,
            prefetched,
            ReadOptions::default(),
            b,
        )
    }

    /// [`TensorCache::load`] with a read priority and optional block-wise reads.
    #[allow(clippy::too_many_arguments)]
    pub fn load_with(
        &mut self,
        key: TensorRef,
        precision: Precision,
        bytes: u64,
        request_bytes: u32,
        after: &[OpId],
        read_after: &[OpId],
        prefetched: bool,
        read: ReadOptions,
        b: &mut PlanBuilder,
    ) -> OpId {
        debug_assert!(self.free_bytes() >= bytes, "load without room");
        debug_assert!(!self.index.contains_key(&key), "load of a cached entry");
        let mut alloc_deps = after.to_vec();
        self.claim_frees(bytes, &mut alloc_deps);
        alloc_deps.sort_unstable();
        alloc_deps.dedup();
        let ready = self.load_ops.load(
            &Load {
                tensor: key,
                precision,
                bytes,
                request_bytes,
                alloc_after: &alloc_deps,
                read_after,
                read,
            },
            b,
        );
        self.used_bytes += bytes;
        self.index.insert(key, self.slots.len());
        self.slots.push((
            key,
            CacheEntry {
                precision,
                bytes,
                ready,
                last_use: None,
                prefetched,
            },
        ));
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Op;
    use crate::policy::machinery::load_ops::plain;

    fn key(e: u32) -> TensorRef {
        TensorRef::expert(0, e)
    }

    #[test]
    fn evicts_lowest_score_after_load_and_use() {
        let mut c = TensorCache::new(200, plain());
        let mut b = PlanBuilder::new(0);
        let r0 = c.load(key(0), Precision::Int4, 100, 4096, &[], &[], false, &mut b);
        let r1 = c.load(key(1), Precision::Int4, 100, 4096, &[], &[], false, &mut b);
        let use0 = b.push(Op::Join, &[r0]);
        c.record_use(&key(0), use0);
        // Score = expert id: expert 0 goes first, and its evict waits for load and use.
        let ev = c.make_room(100, |_| false, |k, _| k.kind, &mut b).unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].1, key(0));
        b.set_output(ev[0].0);
        let plan = b.finish().unwrap();
        let node = plan.get(ev[0].0).unwrap();
        assert_eq!(plan.deps(node), &[r0, use0]);
        assert!(c.contains(&key(1)) && !c.contains(&key(0)));
        assert_eq!(c.used_bytes(), 100);
        let _ = r1;
    }

    #[test]
    fn an_allocation_waits_for_the_eviction_that_frees_its_memory() {
        let mut c = TensorCache::new(100, plain());
        let mut b = PlanBuilder::new(0);
        c.load(key(0), Precision::Int4, 100, 4096, &[], &[], false, &mut b);
        // Evicted right away (on-demand style): the accounting is free at once, but the next
        // Alloc must not run before the Evict does.
        let (ev, _) = c.evict(key(0), &mut b);
        let read = c.load(key(1), Precision::Int4, 60, 4096, &[], &[], false, &mut b);
        b.set_output(read);
        let plan = b.finish().unwrap();
        let alloc = plan.get(read - 1).unwrap();
        assert!(matches!(alloc.op, Op::Alloc { .. }));
        assert_eq!(plan.deps(alloc), &[ev]);
        // The other 40 bytes freed by that eviction are claimed by the next allocation.
        let mut b = PlanBuilder::new(plan.end_id());
        let read2 = c.load(key(2), Precision::Int4, 40, 4096, &[], &[], false, &mut b);
        b.set_output(read2);
        let plan2 = b.finish().unwrap();
        assert_eq!(plan2.deps(plan2.get(read2 - 1).unwrap()), &[ev]);
    }

    #[test]
    fn pinned_entries_are_never_victims() {
        let mut c = TensorCache::new(200, plain());
        let mut b = PlanBuilder::new(0);
        c.load(key(0), Precision::Int4, 100, 4096, &[], &[], false, &mut b);
        c.load(key(1), Precision::Int4, 100, 4096, &[], &[], false, &mut b);
        let err = c.make_room(100, |_| true, |_, _| 0, &mut b).unwrap_err();
        assert!(matches!(err, PolicyError::BudgetTooSmall { .. }));
        let ev = c
            .make_room(100, |k| *k == key(0), |_, _| 0, &mut b)
            .unwrap();
        assert_eq!(ev[0].1, key(1));
    }

    #[test]
    fn block_wise_reads_are_chained_with_their_priority() {
        let mut c = TensorCache::new(1000, plain());
        let mut b = PlanBuilder::new(0);
        let opts = ReadOptions {
            priority: 3,
            block_bytes: 40,
        };
        let last = c.load_with(
            key(0),
            Precision::Int4,
            100,
            4096,
            &[],
            &[],
            true,
            opts,
            &mut b,
        );
        b.set_output(last);
        let plan = b.finish().unwrap();
        let reads: Vec<_> = plan
            .nodes()
            .iter()
            .filter_map(|n| match n.op {
                Op::Read { bytes, .. } => Some((n.id, bytes, n.priority, plan.deps(n).to_vec())),
                _ => None,
            })
            .collect();
        // 100 bytes in blocks of 40: 40, 40, 20, each after the previous one.
        assert_eq!(reads.len(), 3);
        assert_eq!(
            reads.iter().map(|r| r.1).collect::<Vec<_>>(),
            vec![40, 40, 20]
        );
        assert!(reads.iter().all(|r| r.2 == 3));
        assert_eq!(reads[1].3, vec![reads[0].0]);
        assert_eq!(reads[2].3, vec![reads[1].0]);
        assert_eq!(c.get(&key(0)).unwrap().ready, last);
        assert_eq!(last, reads[2].0);
    }

    #[test]
    fn entry_larger_than_cache_is_an_error() {
        let mut c = TensorCache::new(50, plain());
        let mut b = PlanBuilder::new(0);
        assert!(c.make_room(51, |_| false, |_, _| 0, &mut b).is_err());
    }
}
