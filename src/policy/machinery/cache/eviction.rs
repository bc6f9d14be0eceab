//! Victim choice for single-precision expert caches: LRU, LFU, FIFO and Belady's optimum, and
//! the access records they score.
//!
//! Each rule maps an expert's [`UseRecord`] (and, for Belady, its next use) to a score; the
//! cache evicts the lowest score first, ties to the smaller key (see
//! [`TensorCache::make_room`](crate::policy::machinery::cache::tensor_cache::TensorCache::make_room)).

use crate::model::{ModelGeometry, TensorKind, TensorRef};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How a single-precision expert cache picks its victim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Eviction {
    /// Least recently used.
    Lru,
    /// Least frequently used, counting every access since the counts were last reset (kept
    /// after eviction: "perfect" LFU); ties to the least recently used.
    Lfu,
    /// First in, first out: the entry loaded longest ago.
    Fifo,
    /// Belady's MIN: the entry whose next use is farthest in the future (never used again
    /// first). Optimal for equal-size entries loaded on demand; needs the trace's future.
    Belady,
}

impl Eviction {
    pub fn name(self) -> &'static str {
        match self {
            Eviction::Lru => "lru",
            Eviction::Lfu => "lfu",
            Eviction::Fifo => "fifo",
            Eviction::Belady => "belady",
        }
    }

    /// The victim score of an entry: lowest is evicted first. `next_use` is asked only by
    /// Belady (the step of the entry's next use, `u64::MAX` for never).
    pub fn score(self, rec: Option<&UseRecord>, next_use: impl FnOnce() -> u64) -> (f64, f64) {
        let r = rec.copied().unwrap_or_default();
        match self {
            Eviction::Lru => (r.last_use as f64, 0.0),
            Eviction::Lfu => (r.uses as f64, r.last_use as f64),
            Eviction::Fifo => (r.inserted as f64, 0.0),
            // Farther next use, lower score; never used again is lowest of all.
            Eviction::Belady => (-(next_use() as f64), 0.0),
        }
    }
}

/// What a cache remembers about one expert's accesses, on a logical clock that ticks once per
/// access.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UseRecord {
    /// Clock of the latest access.
    pub last_use: u64,
    /// Accesses counted (since the last reset, for LFU).
    pub uses: u64,
    /// Clock when the current copy was loaded.
    pub inserted: u64,
}

/// Access records of experts in a dense table indexed by layer and expert: a victim search
/// asks for the record of every cached entry, and a table lookup keeps that search as cheap as
/// the entries' scan itself. Keys that are not experts (none today) go to a map.
#[derive(Clone, Debug)]
pub struct UseRecords {
    experts: usize,
    table: Vec<UseRecord>,
    other: BTreeMap<TensorRef, UseRecord>,
}

impl UseRecords {
    pub fn new(model: &ModelGeometry) -> Self {
        let experts = model.experts.max(1) as usize;
        UseRecords {
            experts,
            table: vec![UseRecord::default(); model.layers as usize * experts],
            other: BTreeMap::new(),
        }
    }

    fn slot(&self, key: &TensorRef) -> Option<usize> {
        match key.kind {
            TensorKind::Expert(e) if (e as usize) < self.experts => {
                let i = key.layer as usize * self.experts + e as usize;
                (i < self.table.len()).then_some(i)
            }
            _ => None,
        }
    }

    /// The record of `key` (every key has one; never accessed: all zero).
    pub fn get(&self, key: &TensorRef) -> Option<&UseRecord> {
        match self.slot(key) {
            Some(i) => Some(&self.table[i]),
            None => self.other.get(key),
        }
    }

    /// The record of `key`, to update.
    pub fn entry(&mut self, key: TensorRef) -> &mut UseRecord {
        match self.slot(&key) {
            Some(i) => &mut self.table[i],
            None => self.other.entry(key).or_default(),
        }
    }

    /// Sets every access count to zero (LFU's per-sequence reset), keeping recency.
    pub fn reset_uses(&mut self) {
        for r in self.table.iter_mut().chain(self.other.values_mut()) {
            r.uses = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(last_use: u64, uses: u64, inserted: u64) -> UseRecord {
        UseRecord {
            last_use,
            uses,
            inserted,
        }
    }

    #[test]
    fn each_rule_ranks_by_its_signal() {
        let old_but_frequent = rec(1, 9, 0);
        let recent_but_rare = rec(5, 1, 4);
        let never = || u64::MAX;
        let soon = || 3;
        let lo = |r: Eviction, a: &UseRecord, b: &UseRecord| {
            r.score(Some(a), never) < r.score(Some(b), never)
        };
        assert!(lo(Eviction::Lru, &old_but_frequent, &recent_but_rare));
        assert!(lo(Eviction::Lfu, &recent_but_rare, &old_but_frequent));
        assert!(lo(Eviction::Fifo, &old_but_frequent, &recent_but_rare));
        // Belady: the entry never used again goes before one used soon.
        assert!(Eviction::Belady.score(None, never) < Eviction::Belady.score(None, soon));
        // LFU ties go to the least recently used.
        assert!(lo(Eviction::Lfu, &rec(1, 2, 0), &rec(2, 2, 0)));
    }
}
