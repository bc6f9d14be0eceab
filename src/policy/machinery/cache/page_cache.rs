//! A page-cache-like store of expert weights at page-run granularity, for `llama-cpp-mmap`.
//!
//! The kernel's page cache holds file pages, not experts: under memory pressure it drops the
//! least recently used pages, so an expert can be partly resident. An expert's weights are
//! always touched front to back, so its pages enter the LRU list in file order, and the
//! least recently used pages of the least recently used expert are its *first* ones. Hence
//! an expert's resident part is always a suffix of its bytes, and exact page-level LRU is
//! kept with one resident byte count per expert plus expert-level recency: eviction takes
//! bytes from the front of the least recently used expert that holds any, in whole runs of
//! `granule_bytes` (the readahead window; the kernel reads and, for a sequential scan,
//! drops pages at about that granularity).

use crate::model::TensorRef;
use crate::plan::{Op, OpId, PlanBuilder};
use crate::policy::context::PolicyError;
use crate::policy::machinery::cache::pending_frees::PendingFrees;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageEntry {
    /// Bytes of the expert in memory (a suffix of its weights).
    pub resident_bytes: u64,
    /// The last read that brought part of it in: eviction waits for it.
    pub ready: OpId,
    /// The latest compute that used it.
    pub last_use: Option<OpId>,
    /// Recency clock of the latest access.
    pub clock: u64,
}

#[derive(Clone, Debug)]
pub struct PageCache {
    capacity_bytes: u64,
    used_bytes: u64,
    granule_bytes: u64,
    entries: BTreeMap<TensorRef, PageEntry>,
    frees: PendingFrees,
    clock: u64,
}

impl PageCache {
    pub fn new(capacity_bytes: u64, granule_bytes: u64) -> Self {
        PageCache {
            capacity_bytes,
            used_bytes: 0,
            granule_bytes: granule_bytes.max(1),
            entries: BTreeMap::new(),
            frees: PendingFrees::default(),
            clock: 0,
        }
    }

    pub fn used_bytes(&self) -> u64 {
        self.used_bytes
    }

    pub fn get(&self, key: &TensorRef) -> Option<&PageEntry> {
        self.entries.get(key)
    }

    /// Bytes of `key` in memory.
    pub fn resident_bytes(&self, key: &TensorRef) -> u64 {
        self.entries.get(key).map_or(0, |e| e.resident_bytes)
    }

    /// Marks an access to `key` now (it becomes the most recently used).
    pub fn touch(&mut self, key: &TensorRef) {
        self.clock += 1;
        if let Some(e) = self.entries.get_mut(key) {
            e.clock = self.clock;
        }
    }

    /// Evicts page runs from the least recently used unpinned experts until `bytes` more fit;
    /// returns the Evict ops. Fails when pinned experts hold too much.
    pub fn make_room(
        &mut self,
        bytes: u64,
        pinned: impl Fn(&TensorRef) -> bool,
        b: &mut PlanBuilder,
    ) -> Result<Vec<OpId>, PolicyError> {
        if bytes > self.capacity_bytes {
            return Err(PolicyError::BudgetTooSmall {
                required: bytes,
                budget: self.capacity_bytes,
                what: "one expert (the page cache left after the resident set)".into(),
            });
        }
        let evictable: u64 = self
            .entries
            .iter()
            .filter(|(k, _)| !pinned(k))
            .map(|(_, e)| e.resident_bytes)
            .sum();
        if self.capacity_bytes - self.used_bytes + evictable < bytes {
            return Err(PolicyError::BudgetTooSmall {
                required: self.used_bytes + bytes,
                budget: self.capacity_bytes,
                what: "the experts one layer needs at once (the page cache)".into(),
            });
        }
        let mut evicts = Vec::new();
        while self.capacity_bytes - self.used_bytes < bytes {
            let victim = self
                .entries
                .iter()
                .filter(|(k, e)| e.resident_bytes > 0 && !pinned(k))
                .min_by_key(|(k, e)| (e.clock, **k))
                .map(|(k, _)| *k);
            let key = victim.expect("enough evictable bytes were checked");
            let deficit = bytes - (self.capacity_bytes - self.used_bytes);
            let e = self.entries.get_mut(&key).expect("victim exists");
            let run = deficit
                .div_ceil(self.granule_bytes)
                .saturating_mul(self.granule_bytes)
                .min(e.resident_bytes);
            e.resident_bytes -= run;
            self.used_bytes -= run;
            let deps: Vec<OpId> = std::iter::once(e.ready).chain(e.last_use).collect();
            let op = b.push(
                Op::Evict {
                    tensor: key,
                    bytes: run,
                    secure: false,
                },
                &deps,
            );
            if e.resident_bytes == 0 {
                self.entries.remove(&key);
            }
            self.frees.push(op, run);
            evicts.push(op);
        }
        Ok(evicts)
    }

    /// Allocates `bytes` for the missing front of `key` (after the evictions that free them)
    /// and returns the Alloc op; the caller issues the reads and then calls
    /// [`PageCache::loaded`].
    pub fn alloc(&mut self, key: TensorRef, bytes: u64, b: &mut PlanBuilder) -> OpId {
        debug_assert!(
            self.capacity_bytes - self.used_bytes >= bytes,
            "alloc without room"
        );
        let free_now = self.capacity_bytes - self.used_bytes - self.frees.bytes();
        let mut deps = Vec::new();
        self.frees.claim(bytes, free_now, &mut deps);
        deps.sort_unstable();
        deps.dedup();
        self.used_bytes += bytes;
        b.push(
            Op::Alloc {
                tensor: key,
                bytes,
                secure: false,
            },
            &deps,
        )
    }

    /// `key` is now wholly resident (`total_bytes`), ready when `ready` ends.
    pub fn loaded(&mut self, key: TensorRef, total_bytes: u64, ready: OpId) {
        let clock = self.clock;
        let e = self.entries.entry(key).or_insert(PageEntry {
            resident_bytes: 0,
            ready,
            last_use: None,
            clock,
        });
        e.resident_bytes = total_bytes;
        e.ready = ready;
        e.clock = clock;
    }

    /// `op` computed with `key`'s pages.
    pub fn record_use(&mut self, key: &TensorRef, op: OpId) {
        if let Some(e) = self.entries.get_mut(key) {
            e.last_use = Some(op);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_takes_the_front_of_the_least_recent_expert_in_granules() {
        let mut c = PageCache::new(1000, 100);
        let mut b = PlanBuilder::new(0);
        let (x, y) = (TensorRef::expert(0, 0), TensorRef::expert(0, 1));
        for (k, n) in [(x, 600u64), (y, 300)] {
            c.touch(&k);
            let a = c.alloc(k, n, &mut b);
            c.loaded(k, n, a);
        }
        // 100 free; 250 more needed: x (least recent) loses 200 (two granules) from its front.
        let z = TensorRef::expert(0, 2);
        c.touch(&z);
        let ev = c.make_room(250, |_| false, &mut b).unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(c.resident_bytes(&x), 400);
        assert_eq!(c.resident_bytes(&y), 300);
        // With x pinned, y alone cannot free 700: refused without evicting anything.
        assert!(c.make_room(700, |k| *k == x, &mut b).is_err());
        assert_eq!(c.resident_bytes(&y), 300);
        let alloc = c.alloc(z, 250, &mut b);
        b.set_output(alloc);
        let plan = b.finish().unwrap();
        // The Alloc waits for the eviction that freed its memory (100 bytes were free).
        assert_eq!(plan.deps(plan.get(alloc).unwrap()), &[ev_first(&plan)]);
    }

    fn ev_first(plan: &crate::plan::Plan) -> OpId {
        plan.nodes()
            .iter()
            .find(|n| matches!(n.op, Op::Evict { .. }))
            .unwrap()
            .id
    }
}
