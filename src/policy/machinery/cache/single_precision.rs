//! A single-precision expert cache with on-demand loads and optional prefetches: the state
//! behind `lru`, `lfu`, `fifo`, `belady`, `mixtral-offloading` and `moe-infinity`.
//!
//! The owner decides the victim order (a score per entry, lowest evicted first) and what to
//! prefetch; this type keeps the bookkeeping every such policy needs: access records, the
//! current layer's demands pinned until their compute is planned, prefetched entries pinned
//! until their layer has run, and the hit/miss/prefetch counters.

use crate::model::{ModelGeometry, Precision, TensorRef};
use crate::plan::OpId;
use crate::policy::context::{Counters, PolicyError};
use crate::policy::machinery::cache::eviction::{UseRecord, UseRecords};
use crate::policy::machinery::cache::tensor_cache::TensorCache;
use crate::policy::machinery::load_ops::{LoadOps, ReadOptions};
use crate::policy::machinery::pass::moe::{expert_key, ExpertDemand, LayerCx, Supply};
use crate::policy::machinery::resident::BULK_REQUEST_BYTES;
use crate::policy::machinery::tensor_map::TensorSet;
use std::sync::Arc;

/// Victim score of a cached entry from its key and access record: lowest evicted first.
pub type ScoreFn<'a> = dyn Fn(&TensorRef, Option<&UseRecord>) -> (f64, f64) + 'a;

pub struct SinglePrecisionCache {
    pub cache: TensorCache,
    pub precision: Precision,
    model: Arc<ModelGeometry>,
    /// Access records, kept after eviction (LFU counts history).
    pub records: UseRecords,
    /// Logical clock: one tick per access.
    pub clock: u64,
    /// The current layer's demands whose compute is not planned yet: never victims.
    demand_pins: Vec<TensorRef>,
    /// Prefetched entries not used yet; victims only when nothing else can make room.
    prefetch_pins: TensorSet,
    pub counters: Counters,
}

impl SinglePrecisionCache {
    pub fn new(
        model: Arc<ModelGeometry>,
        capacity_bytes: u64,
        precision: Precision,
        load_ops: Arc<dyn LoadOps>,
    ) -> Self {
        SinglePrecisionCache {
            cache: TensorCache::new(capacity_bytes, load_ops),
            precision,
            records: UseRecords::new(&model),
            model,
            clock: 0,
            demand_pins: Vec::new(),
            prefetch_pins: TensorSet::default(),
            counters: Counters::default(),
        }
    }

    /// Bytes of `key`'s weights at the cache's precision.
    pub fn bytes_of(&self, key: &TensorRef) -> u64 {
        self.model.bytes(key.layer as u32, key.kind, self.precision)
    }

    /// Pins the layer's demands until their compute is planned.
    pub fn begin_layer(&mut self, layer: u32, demands: &[ExpertDemand]) {
        self.demand_pins.clear();
        self.demand_pins
            .extend(demands.iter().map(|d| expert_key(layer, d.expert)));
    }

    /// Records an access to `key` now.
    pub fn touch(&mut self, key: TensorRef) {
        self.clock += 1;
        let r = self.records.entry(key);
        r.last_use = self.clock;
        r.uses += 1;
    }

    /// Forgets every access count (sequence-level LFU resets them at a sequence start).
    pub fn reset_counts(&mut self) {
        self.records.reset_uses();
    }

    /// Supplies a demand: from the cache on a hit, else by an on-demand load after evicting by
    /// `score`. The demand counts as an access.
    pub fn supply(
        &mut self,
        cx: &mut LayerCx<'_>,
        d: &ExpertDemand,
        score: &ScoreFn<'_>,
        read: ReadOptions,
    ) -> Result<Supply, PolicyError> {
        let key = expert_key(cx.layer, d.expert);
        self.touch(key);
        if let Some(e) = self.cache.get(&key) {
            self.counters.hits += 1;
            if e.prefetched {
                self.counters.prefetch_used += 1;
            }
            return Ok(Supply::Compute {
                precision: e.precision,
                ready: Some(e.ready),
                unit: None,
            });
        }
        self.counters.misses += 1;
        let bytes = self.bytes_of(&key);
        self.make_room(bytes, score, cx, true)?;
        let ready = self.cache.load_with(
            key,
            self.precision,
            bytes,
            BULK_REQUEST_BYTES,
            &[],
            &[cx.router],
            false,
            read,
            cx.builder,
        );
        self.records.entry(key).inserted = self.clock;
        Ok(Supply::Compute {
            precision: self.precision,
            ready: Some(ready),
            unit: None,
        })
    }

    /// Prefetches `key` after `read_after` unless it is cached. Evicts only unpinned entries;
    /// when that cannot make room the prefetch is dropped. Returns whether a load was issued.
    pub fn prefetch(
        &mut self,
        cx: &mut LayerCx<'_>,
        key: TensorRef,
        read_after: &[OpId],
        score: &ScoreFn<'_>,
        read: ReadOptions,
    ) -> Result<bool, PolicyError> {
        if self.cache.contains(&key) {
            return Ok(false);
        }
        let bytes = self.bytes_of(&key);
        if bytes > self.cache.capacity_bytes() || !self.make_room(bytes, score, cx, false)? {
            return Ok(false);
        }
        self.cache.load_with(
            key,
            self.precision,
            bytes,
            BULK_REQUEST_BYTES,
            &[],
            read_after,
            true,
            read,
            cx.builder,
        );
        self.counters.prefetches += 1;
        self.clock += 1;
        let r = self.records.entry(key);
        r.inserted = self.clock;
        // About to be used: most recent, so recency-based rules keep it.
        r.last_use = self.clock;
        self.prefetch_pins.insert(key);
        Ok(true)
    }

    /// Evicts until `bytes` fit. Demand pins always hold; prefetch pins hold too unless
    /// `may_break_prefetch_pins` and nothing else can make room. Returns false (having
    /// evicted nothing more) when room cannot be made within the pins it must respect.
    fn make_room(
        &mut self,
        bytes: u64,
        score: &ScoreFn<'_>,
        cx: &mut LayerCx<'_>,
        may_break_prefetch_pins: bool,
    ) -> Result<bool, PolicyError> {
        let evictable_bytes = |pins_prefetch: bool, s: &Self| -> u64 {
            s.cache
                .entries()
                .filter(|(k, _)| {
                    !(s.demand_pins.contains(k) || (pins_prefetch && s.prefetch_pins.contains(k)))
                })
                .map(|(_, e)| e.bytes)
                .sum()
        };
        let free = self.cache.free_bytes();
        if free >= bytes {
            // Nothing to evict (the common case on a hit-heavy run): skip the scans below.
            return Ok(true);
        }
        let hold_prefetch = if free + evictable_bytes(true, self) >= bytes {
            true
        } else if may_break_prefetch_pins && free + evictable_bytes(false, self) >= bytes {
            false
        } else if may_break_prefetch_pins {
            return Err(PolicyError::BudgetTooSmall {
                required: self.cache.used_bytes() + bytes,
                budget: self.cache.capacity_bytes(),
                what: "the experts one layer needs at once (the cache left after the resident set)"
                    .into(),
            });
        } else {
            return Ok(false);
        };
        let records = &self.records;
        let demand_pins = &self.demand_pins;
        let prefetch_pins = &self.prefetch_pins;
        let evicted = self.cache.make_room(
            bytes,
            |k| demand_pins.contains(k) || (hold_prefetch && prefetch_pins.contains(k)),
            |k, _| score(k, records.get(k)),
            cx.builder,
        )?;
        self.counters.evictions += evicted.len() as u64;
        for (_, k, _) in &evicted {
            self.prefetch_pins.remove(k);
        }
        Ok(true)
    }

    /// `op` computed `key`: its eviction must wait for `op`, and it is no longer pinned.
    pub fn computed(&mut self, key: TensorRef, op: OpId) {
        self.cache.record_use(&key, op);
        self.demand_pins.retain(|k| *k != key);
        self.prefetch_pins.remove(&key);
    }

    /// The layer has run: prefetches for it that were not used lose their pin.
    pub fn end_layer(&mut self, layer: u32) {
        self.prefetch_pins.retain(|k| k.layer as u32 != layer);
    }

    pub fn is_pinned(&self, key: &TensorRef) -> bool {
        self.demand_pins.contains(key) || self.prefetch_pins.contains(key)
    }
}
