//! `hobbit`: mixed-precision expert offloading (HOBBIT, arXiv 2411.01433; its ASPLOS'26
//! version MoE-APEX), each of its three techniques a switch.
//!
//! - **Token level, dynamic loading** ([`loader`]): a cache-miss expert is loaded at high or
//!   low precision, or skipped, by the T1/T2 rule on its gate weights.
//! - **Layer level, adaptive prefetch**: after a layer's gate, the experts of the next layers
//!   are predicted ([`crate::policy::machinery::prediction`]); walking ahead up to `prefetch_layers`,
//!   the first layer whose predicted experts are not all cached has them prefetched; every
//!   predicted expert up to that layer is pinned against eviction. The predictions cost one
//!   stacked gate product per layer (the "Stacking Computer").
//! - **Sequence level, multidimensional cache** ([`priority`]): separate high- and
//!   low-precision caches whose victims are ordered by HOBBIT Eq. 3 (or MoE-APEX's LCU, or
//!   plain LRU/LFU when the technique is off, or Belady's order as a ceiling); records reset
//!   at every sequence start.
//!
//! The questions the paper leaves open are parameters with documented defaults
//! ([`params::HobbitParams`]). `cpu_misses` switches to HOBBIT's CPU-GPU cooperative mode
//! (decode misses computed by the host CPU), for hosts whose experts sit in CPU memory.
//!
//! A demand is served by the high copy when cached, else by the low copy when cached and the
//! rule does not want high precision (or [`params::LowCopyUse::Use`]); otherwise a skipped
//! expert is dropped and any other is loaded at the precision the rule chose. "The system
//! waits for all on-demand expert loading tasks to complete before computing" (H §3.1): each
//! expert's compute waits for its own load, and the layer for all of its experts.

pub mod loader;
pub mod params;
pub mod priority;
pub mod search;

use self::loader::{choose, LoadChoice};
use self::params::{CachePolicy, HobbitParams, LowCopyUse, PrefetchPrecision};
use self::priority::{PriorityCx, Records};
use crate::model::{ModelGeometry, Precision, TensorKind, TensorRef};
use crate::plan::{Op, OpId, PlanBuilder};
use crate::policy::context::parse_params;
use crate::policy::context::{Counters, PolicyContext, PolicyError};
use crate::policy::machinery::cache::tensor_cache::TensorCache;
use crate::policy::machinery::future::FutureAccesses;
use crate::policy::machinery::load_ops::ReadOptions;
use crate::policy::machinery::pass::moe::{
    expert_key, ExpertDemand, ExpertSupplier, LayerCx, Supply,
};
use crate::policy::machinery::placement::Placement;
use crate::policy::machinery::prediction::{ExpertPredictor, Guess};
use crate::policy::machinery::resident::BULK_REQUEST_BYTES;
use crate::policy::machinery::tensor_map::TensorSet;
use crate::policy::moe::shell::{cache_capacity, ExpertPolicy, ExpertState};
use crate::trace::ForwardPass;
use std::sync::Arc;

pub struct HobbitState {
    p: HobbitParams,
    high: Precision,
    low: Precision,
    hi: TensorCache,
    lo: TensorCache,
    model: Arc<ModelGeometry>,
    placement: Placement,
    resident_precision: Precision,
    records: Records,
    predictor: ExpertPredictor,
    guesses: Vec<Guess>,
    /// The current layer's demands whose compute is not planned yet.
    demand_pins: Vec<TensorRef>,
    /// Predicted experts of the layers ahead (HOBBIT's eviction mask).
    predict_pins: TensorSet,
    /// Which cache served each expert of the current layer (true: the high one).
    served_from: Vec<(u16, bool)>,
    future: Option<Arc<FutureAccesses>>,
    passes: u64,
    counters: Counters,
    low_over_high_bytes: f64,
    /// The CPU unit of cooperative mode, when on.
    cpu: Option<crate::plan::Unit>,
}

/// Builds `hobbit` from its context; parameters in `ctx.params` (see [`HobbitParams`]).
pub fn build(ctx: PolicyContext) -> Result<ExpertPolicy<HobbitState>, PolicyError> {
    crate::policy::moe::require_moe(&ctx, "hobbit")?;
    let p: HobbitParams = parse_params("hobbit", &ctx.params)?;
    let high = ctx.offload_precision;
    let low = p.check(high)?;
    let first = ctx.model.dense_layers;
    let high_bytes = ctx.model.bytes(first, TensorKind::Expert(0), high);
    let low_bytes = ctx.model.bytes(first, TensorKind::Expert(0), low);
    let (min, what) = if p.dynamic_loading {
        (
            high_bytes + low_bytes,
            "the resident set plus one high- and one low-precision expert",
        )
    } else {
        (high_bytes, "the resident set plus one expert")
    };
    if p.cpu_misses && ctx.device.offload_tier != crate::hw::OffloadTier::HostMemory {
        return Err(PolicyError::Unsupported(format!(
            "policy `hobbit` with `cpu_misses` computes missed experts on the CPU from host \
             memory, but device `{}` offloads experts to flash",
            ctx.device.name
        )));
    }
    let cache = cache_capacity(&ctx, min, what)?;
    // The low cache holds at least the low copies one decode step can pin at once (the
    // current layer's and each prefetched layer's non-top experts), as long as the high cache
    // keeps room for a layer's top-k high experts; never less than one low-precision expert,
    // and the high cache never less than one high-precision expert.
    let k = ctx.model.top_k as u64;
    let pinned_low = if p.prefetch { p.prefetch_layers + 1 } else { 1 } as u64 * (k - 1).max(1);
    let lo_bytes = if p.dynamic_loading {
        ((p.low_cache_share * cache as f64) as u64)
            .max((pinned_low * low_bytes).min(cache.saturating_sub(k * high_bytes)))
            .min(cache - high_bytes)
            .max(low_bytes)
    } else {
        0
    };
    let predictor = ExpertPredictor::new(
        &ctx.model,
        p.predictions,
        &p.prediction_accuracy,
        ctx.seed,
        "hobbit.prediction_accuracy",
    )?;
    let state = HobbitState {
        high,
        low,
        hi: TensorCache::new(cache - lo_bytes, ctx.load_ops.clone()),
        lo: TensorCache::new(lo_bytes, ctx.load_ops.clone()),
        model: ctx.model.clone(),
        placement: Placement::new(&ctx.device),
        resident_precision: ctx.resident_precision,
        records: Records::default(),
        predictor,
        guesses: Vec::new(),
        demand_pins: Vec::new(),
        predict_pins: TensorSet::default(),
        served_from: Vec::new(),
        future: None,
        passes: 0,
        counters: Counters::default(),
        low_over_high_bytes: low_bytes as f64 / high_bytes as f64,
        cpu: p.cpu_misses.then(|| Placement::new(&ctx.device).cpu()),
        p,
    };
    Ok(ExpertPolicy::new("hobbit", ctx, high, state))
}

impl HobbitState {
    pub fn params(&self) -> &HobbitParams {
        &self.p
    }

    /// Capacities of the high- and low-precision caches.
    pub fn capacities(&self) -> (u64, u64) {
        (self.hi.capacity_bytes(), self.lo.capacity_bytes())
    }

    fn demand_priority(&self) -> i16 {
        if self.p.demand_first {
            -1
        } else {
            0
        }
    }

    /// Whether a demand at `want` would be served from the cache.
    fn has(&self, key: &TensorRef, want: LoadChoice) -> bool {
        self.hi.contains(key)
            || (self.lo.contains(key)
                && (want != LoadChoice::High || self.p.low_copy_for_high == LowCopyUse::Use))
    }

    fn priority_cx<'a>(
        p: &HobbitParams,
        model: &ModelGeometry,
        future: Option<&'a FutureAccesses>,
        low_over_high_bytes: f64,
        inserting: &TensorRef,
        step_pass: u64,
    ) -> PriorityCx<'a> {
        let dense = model.dense_layers;
        let moe = (inserting.layer as u32).saturating_sub(dense);
        PriorityCx {
            policy: p.cache_policy,
            weights: p.weights,
            low_over_high_bytes,
            moe_layers: model.moe_layers(),
            dense_layers: dense,
            inserting_moe_layer: moe,
            future,
            step: future.map_or(0, |f| f.step(step_pass, moe as usize)),
        }
    }

    /// Evicts from the high (`in_hi`) or low cache until `bytes` fit, never a demand-pinned
    /// entry, a prediction-pinned one only if `strict` is false and nothing else makes room.
    /// Returns false, having changed nothing, when room cannot be made.
    fn make_room(
        &mut self,
        in_hi: bool,
        key: &TensorRef,
        bytes: u64,
        strict: bool,
        b: &mut PlanBuilder,
    ) -> Result<bool, PolicyError> {
        let cache = if in_hi { &self.hi } else { &self.lo };
        if bytes > cache.capacity_bytes() {
            return Ok(false);
        }
        let evictable = |hold_predicted: bool| -> u64 {
            cache
                .entries()
                .filter(|(k, _)| {
                    !(self.demand_pins.contains(k)
                        || (hold_predicted && self.predict_pins.contains(k)))
                })
                .map(|(_, e)| e.bytes)
                .sum()
        };
        let free = cache.free_bytes();
        let hold_predicted = if free + evictable(true) >= bytes {
            true
        } else if !strict && free + evictable(false) >= bytes {
            false
        } else {
            return Ok(false);
        };
        let step_pass = self.passes.saturating_sub(1);
        let pcx = Self::priority_cx(
            &self.p,
            &self.model,
            self.future.as_deref(),
            self.low_over_high_bytes,
            key,
            step_pass,
        );
        let records = &self.records;
        let demand_pins = &self.demand_pins;
        let predict_pins = &self.predict_pins;
        let cache = if in_hi { &mut self.hi } else { &mut self.lo };
        let evicted = cache.make_room(
            bytes,
            |k| demand_pins.contains(k) || (hold_predicted && predict_pins.contains(k)),
            |k, _| pcx.priority(k, records),
            b,
        )?;
        self.counters.evictions += evicted.len() as u64;
        Ok(true)
    }

    /// Layer-level adaptive prefetch from MoE layer `cx.moe_index`.
    fn prefetch_ahead(&mut self, cx: &mut LayerCx<'_>) -> Result<(), PolicyError> {
        self.predict_pins.clear();
        let moe_layers = self.model.moe_layers() as usize;
        let depth = (self.p.prefetch_layers as usize).min(moe_layers - 1 - cx.moe_index);
        if depth == 0 {
            return Ok(());
        }
        // The Stacking Computer: the gates of the next `depth` layers as one product.
        let unit = self.placement.unit_for(self.resident_precision);
        let gate = cx.builder.push(
            Op::matmul(
                TensorRef::new(cx.layer, TensorKind::Router),
                unit,
                self.resident_precision,
                self.model.experts * depth as u32,
                self.model.hidden,
                cx.pass.batch(),
            ),
            &[cx.router],
        );
        let mut guesses = std::mem::take(&mut self.guesses);
        for j in 1..=depth {
            self.predictor
                .predict(cx.pass, cx.moe_index, j, &mut guesses)?;
            let layer = cx.layer + j as u32;
            let mut missing: Vec<(TensorRef, LoadChoice)> = Vec::new();
            for g in &guesses {
                let key = expert_key(layer, g.expert);
                self.predict_pins.insert(key);
                let want = self.prefetch_choice(g);
                if want == LoadChoice::Skip {
                    continue;
                }
                if !self.has(&key, want) {
                    missing.push((key, want));
                }
            }
            if !missing.is_empty() {
                for (key, want) in missing {
                    self.prefetch_one(cx.builder, key, want, gate)?;
                }
                break;
            }
        }
        self.guesses = guesses;
        Ok(())
    }

    fn prefetch_choice(&self, g: &Guess) -> LoadChoice {
        if !self.p.dynamic_loading {
            return LoadChoice::High;
        }
        match self.p.prefetch_precision {
            PrefetchPrecision::Rule => choose(g.rank, g.unimportance, self.p.t1, self.p.t2),
            PrefetchPrecision::High => LoadChoice::High,
            PrefetchPrecision::Low => LoadChoice::Low,
            PrefetchPrecision::Rank if g.rank == 0 => LoadChoice::High,
            PrefetchPrecision::Rank => LoadChoice::Low,
        }
    }

    fn prefetch_one(
        &mut self,
        b: &mut PlanBuilder,
        key: TensorRef,
        want: LoadChoice,
        after: OpId,
    ) -> Result<(), PolicyError> {
        let in_hi = want == LoadChoice::High;
        let precision = if in_hi { self.high } else { self.low };
        let cache = if in_hi { &self.hi } else { &self.lo };
        if cache.contains(&key) {
            return Ok(());
        }
        let bytes = self.model.bytes(key.layer as u32, key.kind, precision);
        if !self.make_room(in_hi, &key, bytes, true, b)? {
            return Ok(());
        }
        let read = ReadOptions {
            priority: 0,
            block_bytes: self.p.prefetch_block_bytes,
        };
        let cache = if in_hi { &mut self.hi } else { &mut self.lo };
        cache.load_with(
            key,
            precision,
            bytes,
            BULK_REQUEST_BYTES,
            &[],
            &[after],
            true,
            read,
            b,
        );
        self.counters.prefetches += 1;
        Ok(())
    }

    /// Q5 off: every cached expert is dropped when a new sequence starts.
    fn flush(&mut self, b: &mut PlanBuilder) {
        for cache in [&mut self.hi, &mut self.lo] {
            let mut keys: Vec<TensorRef> = cache.entries().map(|(k, _)| *k).collect();
            keys.sort_unstable();
            for k in keys {
                cache.evict(k, b);
                self.counters.evictions += 1;
            }
        }
    }
}

impl ExpertSupplier for HobbitState {
    fn begin_layer(
        &mut self,
        cx: &mut LayerCx<'_>,
        demands: &[ExpertDemand],
    ) -> Result<(), PolicyError> {
        if cx.moe_index == 0 && cx.pass.starts_sequence() && !self.p.keep_cache_across_sequences {
            self.flush(cx.builder);
        }
        self.demand_pins.clear();
        self.demand_pins
            .extend(demands.iter().map(|d| expert_key(cx.layer, d.expert)));
        self.served_from.clear();
        if self.p.prefetch {
            self.prefetch_ahead(cx)?;
        }
        Ok(())
    }

    fn supply(
        &mut self,
        cx: &mut LayerCx<'_>,
        _index: usize,
        d: &ExpertDemand,
    ) -> Result<Supply, PolicyError> {
        let key = expert_key(cx.layer, d.expert);
        let choice = if self.p.dynamic_loading {
            choose(d.best_rank, d.min_score_before, self.p.t1, self.p.t2)
        } else {
            LoadChoice::High
        };
        let cached = if let Some(e) = self.hi.get(&key) {
            Some((true, *e))
        } else if self.has(&key, choice) {
            self.lo.get(&key).map(|e| (false, *e))
        } else {
            None
        };
        if let Some((in_hi, e)) = cached {
            self.counters.hits += 1;
            if e.prefetched {
                self.counters.prefetch_used += 1;
            }
            self.records.used(key, d.tokens, e.precision == self.high);
            self.served_from.push((d.expert, in_hi));
            return Ok(Supply::Compute {
                precision: e.precision,
                ready: Some(e.ready),
                unit: None,
            });
        }
        if choice == LoadChoice::Skip {
            return Ok(Supply::Skip);
        }
        self.counters.misses += 1;
        let mut in_hi = choice == LoadChoice::High;
        let mut precision = if in_hi { self.high } else { self.low };
        if let (Some(cpu), crate::trace::Phase::Decode) = (self.cpu, cx.pass.phase) {
            // Cooperative mode: the host computes it from its own memory; nothing is loaded.
            self.records.used(key, d.tokens, in_hi);
            return Ok(Supply::Compute {
                precision,
                ready: None,
                unit: Some(cpu),
            });
        }
        let mut bytes = self
            .model
            .bytes(cx.layer, TensorKind::Expert(d.expert), precision);

        // Where the copy goes: its own cache without touching predicted (pinned) experts; for
        // a low copy whose cache is held by pins, the high cache instead (more bytes, better
        // quality); only then evicting predicted experts, low cache first.
        let mut placed = false;
        // A high copy whose cache is all pinned (the smallest budgets) is degraded to low as the
        // last resort, rather than failing.
        let attempts: &[(bool, bool)] = if in_hi {
            &[(true, true), (true, false), (false, true), (false, false)]
        } else {
            &[(false, true), (true, true), (false, false), (true, false)]
        };
        for &(hi, strict) in attempts {
            let p = if hi { self.high } else { self.low };
            let b = self.model.bytes(cx.layer, TensorKind::Expert(d.expert), p);
            if self.make_room(hi, &key, b, strict, cx.builder)? {
                (in_hi, precision, bytes) = (hi, p, b);
                placed = true;
                break;
            }
        }
        if !placed {
            let cache = if in_hi { &self.hi } else { &self.lo };
            return Err(PolicyError::BudgetTooSmall {
                required: cache.used_bytes() + bytes,
                budget: cache.capacity_bytes(),
                what: format!(
                    "the {} experts one layer needs at once (the {} cache)",
                    precision,
                    if in_hi {
                        "high-precision"
                    } else {
                        "low-precision"
                    }
                ),
            });
        }
        let read = ReadOptions {
            priority: self.demand_priority(),
            block_bytes: 0,
        };
        let cache = if in_hi { &mut self.hi } else { &mut self.lo };
        let ready = cache.load_with(
            key,
            precision,
            bytes,
            BULK_REQUEST_BYTES,
            &[],
            &[cx.router],
            false,
            read,
            cx.builder,
        );
        self.records.used(key, d.tokens, in_hi);
        self.served_from.push((d.expert, in_hi));
        Ok(Supply::Compute {
            precision,
            ready: Some(ready),
            unit: None,
        })
    }

    fn computed(&mut self, cx: &mut LayerCx<'_>, expert: u16, op: OpId) {
        let key = expert_key(cx.layer, expert);
        if let Some(&(_, in_hi)) = self.served_from.iter().find(|s| s.0 == expert) {
            if in_hi {
                self.hi.record_use(&key, op);
            } else {
                self.lo.record_use(&key, op);
            }
        }
        self.demand_pins.retain(|k| *k != key);
    }

    fn counters(&mut self) -> &mut Counters {
        &mut self.counters
    }

    fn end_layer(&mut self, cx: &mut LayerCx<'_>, _join: OpId) -> Result<(), PolicyError> {
        if cx.moe_index + 1 == self.model.moe_layers() as usize {
            self.predict_pins.clear();
        }
        Ok(())
    }
}

impl ExpertState for HobbitState {
    fn start_pass(&mut self, pass: &ForwardPass) -> Result<(), PolicyError> {
        if self.p.cache_policy == CachePolicy::Belady {
            let Some(f) = &self.future else {
                return Err(PolicyError::Unsupported(
                    "policy `hobbit` with `cache_policy: belady` orders evictions by the trace's \
                     future, which it was not given; run it through `edgesim compare`/`replay`"
                        .into(),
                ));
            };
            if self.passes >= f.passes() {
                return Err(PolicyError::BadPass(format!(
                    "policy `hobbit` was given the future of {} passes but is asked to plan pass {}",
                    f.passes(),
                    self.passes + 1
                )));
            }
        }
        if pass.starts_sequence() {
            self.records.reset_sequence();
        }
        self.records
            .start_pass(pass.context_before() + pass.batch());
        self.passes += 1;
        Ok(())
    }

    fn cache_bytes(&self) -> u64 {
        self.hi.used_bytes() + self.lo.used_bytes()
    }

    fn counters_ref(&self) -> &Counters {
        &self.counters
    }

    fn needs_future(&self) -> bool {
        self.p.cache_policy == CachePolicy::Belady
    }

    fn give_future(&mut self, future: Arc<FutureAccesses>) {
        self.future = Some(future);
    }
}

#[cfg(test)]
mod tests;
