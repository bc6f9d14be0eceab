//! A byte-capacity cache of offloaded weights, with the bookkeeping that keeps plans honest:
//! an entry cannot be evicted before its load finished and its last use ended.
//!
//! The victim order is the policy's business (LRU, LFU, HOBBIT's priority, Belady): callers pass
//! a scoring function and the lowest score is evicted first. Ties go to the smaller key, so the
//! choice is deterministic.

use super::context::PolicyError;
use crate::model::{Precision, TensorRef};
use crate::plan::{Op, OpId, PlanBuilder};
use std::collections::BTreeMap;

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

#[derive(Clone, Debug, Default)]
pub struct ExpertCache {
    capacity_bytes: u64,
    used_bytes: u64,
    entries: BTreeMap<TensorRef, CacheEntry>,
}

impl ExpertCache {
    pub fn new(capacity_bytes: u64) -> Self {
        ExpertCache {
            capacity_bytes,
            used_bytes: 0,
            entries: BTreeMap::new(),
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
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, key: &TensorRef) -> Option<&CacheEntry> {
        self.entries.get(key)
    }

    pub fn contains(&self, key: &TensorRef) -> bool {
        self.entries.contains_key(key)
    }

    pub fn entries(&self) -> impl Iterator<Item = (&TensorRef, &CacheEntry)> {
        self.entries.iter()
    }

    /// Records that `op` computed with the cached weights of `key`.
    pub fn record_use(&mut self, key: &TensorRef, op: OpId) {
        if let Some(e) = self.entries.get_mut(key) {
            e.last_use = Some(op);
            e.prefetched = false;
        }
    }

    /// Emits Evict ops until `bytes` more fit, choosing unpinned victims with the lowest
    /// `score`. Returns the evict ops (an Alloc for the new entry must depend on them) and the
    /// evicted keys with their entries.
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
            let victim = self
                .entries
                .iter()
                .filter(|(k, _)| !pinned(k))
                .map(|(k, e)| (score(k, e), *k))
                .reduce(|best, cand| if cand.0 < best.0 { cand } else { best })
                .map(|(_, k)| k);
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
        let entry = self.entries.remove(&key).expect("evict of an absent entry");
        self.used_bytes -= entry.bytes;
        let deps: Vec<OpId> = std::iter::once(entry.ready).chain(entry.last_use).collect();
        let op = b.push(
            Op::Evict {
                tensor: key,
                bytes: entry.bytes,
                secure: false,
            },
            &deps,
        );
        (op, entry)
    }

    /// Emits Alloc (after `after`) and Read (after the Alloc and `read_after`) for `key`, and
    /// records the entry. The caller must have made room.
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
        debug_assert!(self.free_bytes() >= bytes, "load without room");
        debug_assert!(!self.entries.contains_key(&key), "load of a cached entry");
        let alloc = b.push(
            Op::Alloc {
                tensor: key,
                bytes,
                secure: false,
            },
            after,
        );
        let mut deps = Vec::with_capacity(read_after.len() + 1);
        deps.push(alloc);
        deps.extend_from_slice(read_after);
        let read = b.push(
            Op::Read {
                tensor: key,
                precision,
                bytes,
                request_bytes,
            },
            &deps,
        );
        self.used_bytes += bytes;
        self.entries.insert(
            key,
            CacheEntry {
                precision,
                bytes,
                ready: read,
                last_use: None,
                prefetched,
            },
        );
        read
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(e: u32) -> TensorRef {
        TensorRef::expert(0, e)
    }

    #[test]
    fn evicts_lowest_score_after_load_and_use() {
        let mut c = ExpertCache::new(200);
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
    fn pinned_entries_are_never_victims() {
        let mut c = ExpertCache::new(200);
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
    fn entry_larger_than_cache_is_an_error() {
        let mut c = ExpertCache::new(50);
        let mut b = PlanBuilder::new(0);
        assert!(c.make_room(51, |_| false, |_, _| 0, &mut b).is_err());
    }
}
