//! `mixtral-offloading`: Eliseev & Mazur, "Fast Inference of Mixture-of-Experts Language
//! Models with Offloading" (arXiv 2312.17238), the MoE-Offloading (MO) baseline of HOBBIT's
//! RTX 4090 group, modelled as its public code (dvmazur/mixtral-offloading @ce54518) behaves:
//!
//! - **Cache**: a fixed number of experts per layer on the GPU, LRU within the layer, never
//!   shared across layers (`build_model`: `do_offload = expert_idx < offload_per_layer`, one
//!   eviction group per layer, `ExpertCache.choose_expert_to_evict` takes the LRU entry of
//!   that layer's `main_infos`). The demo notebook's `offload_per_layer = 4` leaves
//!   8 − 4 = 4 experts per layer; the number is chosen by the user's VRAM. edgesim takes the
//!   largest `experts_per_layer` whose experts fit in the budget after the resident set (or
//!   the `experts_per_layer` parameter).
//! - **A miss moves twice the bytes**: `ExpertCache._swap` copies the incoming expert to the
//!   GPU and then the evicted expert back into a pinned host buffer, both
//!   `copy_(…, non_blocking=True)` on PyTorch's current stream (no stream is named anywhere
//!   in the repository), so in order. Where experts come over a host link, each miss that
//!   evicts is followed by a second link transfer of the same size, and the expert's compute
//!   waits for both. (The copies' ordering behind already-queued compute kernels on the one
//!   stream is not modelled.)
//! - **No prefetch**: the README lists "Speculative expert prefetching" under upcoming
//!   features and the code has none; `"prefetch": true` models the paper's speculative
//!   loading (next layer's gate on the current hidden state) as an ablation.
//! - **Precision**: the notebook quantizes experts with HQQ 2-bit, group 16 (8-bit scale and
//!   zero: about 3.0 bits per weight) and attention with HQQ 4-bit, group 64 (about 4.25 bits);
//!   `HQQLinearTritonSavable` accepts 2, 3 or 4 bits. edgesim runs experts at `int2` and the
//!   resident set at `int4` (its `int2` carries fp16 group-64 metadata, 2.5 bits per weight:
//!   an expert is about 17 % smaller than HQQ's g16 one; `int3` would be 17 % larger).
//!   `"precision": "experiment"` runs at the experiment's precisions instead.
//! - Not modelled: the per-expert Python dispatch, the three `.tolist()` host syncs per
//!   expert and HQQ's per-call meta dequantization (~15–20 kernel launches per expert; no
//!   measurement exists).
//!
//! Parameters: `{"prefetch": bool (false), "per_layer": bool (true; false: one LRU over all
//! layers), "experts_per_layer": u32 (0: the most that fit), "precision": "native" |
//! "experiment", "predictions": "auto"|"trace"|"seeded", "prediction_accuracy": [f64]
//! (default [0.96], HOBBIT Fig. 7b's next-layer accuracy of a gate-based guess; used only with
//! `"prefetch": true`)}`.

use crate::hw::OffloadTier;
use crate::model::{ModelGeometry, Precision, TensorKind, TensorRef};
use crate::plan::{Op, OpId};
use crate::policy::context::parse_params;
use crate::policy::context::{Counters, PolicyContext, PolicyError};
use crate::policy::machinery::cache::eviction::{Eviction, UseRecord};
use crate::policy::machinery::cache::single_precision::SinglePrecisionCache;
use crate::policy::machinery::load_ops::ReadOptions;
use crate::policy::machinery::pass::moe::{
    expert_key, ExpertDemand, ExpertSupplier, LayerCx, Supply,
};
use crate::policy::machinery::placement::Placement;
use crate::policy::machinery::prediction::{ExpertPredictor, Guess, PredictionSource};
use crate::policy::moe::shell::{cache_capacity, ExpertPolicy, ExpertState};
use crate::policy::moe::{native_precisions, PrecisionChoice};
use serde::Deserialize;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    prefetch: bool,
    per_layer: bool,
    experts_per_layer: u32,
    precision: PrecisionChoice,
    predictions: PredictionSource,
    prediction_accuracy: Vec<f64>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            prefetch: false,
            per_layer: true,
            experts_per_layer: 0,
            precision: PrecisionChoice::Native,
            predictions: PredictionSource::Auto,
            prediction_accuracy: vec![0.96],
        }
    }
}

pub struct MixtralOffloading {
    cache: SinglePrecisionCache,
    prefetch: bool,
    /// Entries each MoE layer may hold before it evicts its own (None: one shared LRU).
    quota: Option<Vec<u32>>,
    predictor: ExpertPredictor,
    guesses: Vec<Guess>,
    model: Arc<ModelGeometry>,
    placement: Placement,
    resident_precision: Precision,
    /// Experts cross a host link, so a swap copies the evicted one back over it.
    write_back: bool,
}

pub fn build(mut ctx: PolicyContext) -> Result<ExpertPolicy<MixtralOffloading>, PolicyError> {
    const NAME: &str = "mixtral-offloading";
    crate::policy::moe::require_moe(&ctx, NAME)?;
    let p: Params = parse_params(NAME, &ctx.params)?;
    native_precisions(&mut ctx, p.precision, Precision::Int4, Precision::Int2);
    let precision = ctx.offload_precision;
    let expert = ctx
        .model
        .bytes(ctx.model.dense_layers, TensorKind::Expert(0), precision);
    let layers = ctx.model.moe_layers();
    let mut capacity = cache_capacity(&ctx, expert, "the resident set plus one expert")?;
    let quota = if p.per_layer {
        let fit = ((capacity / expert) as u32 / layers).min(ctx.model.experts);
        let k = match p.experts_per_layer {
            0 => fit,
            k if k <= fit => k,
            k => {
                return Err(PolicyError::BadParameter(format!(
                    "policy `{NAME}`: `experts_per_layer` {k} does not fit: the budget holds {fit} experts per layer after the resident set"
                )))
            }
        };
        if k == 0 {
            let resident = ctx.budget_bytes - capacity;
            return Err(PolicyError::BudgetTooSmall {
                required: resident + layers as u64 * expert,
                budget: ctx.budget_bytes,
                what: format!("the resident set plus one expert per layer (mixtral-offloading keeps a fixed number in each of the {layers} layers)"),
            });
        }
        capacity = k as u64 * layers as u64 * expert;
        Some(vec![k; layers as usize])
    } else {
        None
    };
    let state = MixtralOffloading {
        cache: SinglePrecisionCache::new(
            ctx.model.clone(),
            capacity,
            precision,
            ctx.load_ops.clone(),
        ),
        prefetch: p.prefetch,
        quota,
        predictor: ExpertPredictor::new(
            &ctx.model,
            p.predictions,
            &p.prediction_accuracy,
            ctx.seed,
            "mixtral-offloading.prediction_accuracy",
        )?,
        guesses: Vec::new(),
        model: ctx.model.clone(),
        placement: Placement::new(&ctx.device),
        resident_precision: ctx.resident_precision,
        write_back: ctx.device.offload_tier == OffloadTier::HostMemory,
    };
    Ok(ExpertPolicy::new(NAME, ctx, precision, state))
}

impl MixtralOffloading {
    /// Victim score for an insertion at `layer`: with per-layer shares, a layer at its share
    /// evicts its own least recently used entry, otherwise the least recently used entry of a
    /// layer above its share goes first; then plain LRU.
    fn score_for(&self, layer: u32) -> impl Fn(&TensorRef, Option<&UseRecord>) -> (f64, f64) {
        let dense = self.model.dense_layers;
        let mut held = vec![0u32; self.model.moe_layers() as usize];
        for (k, _) in self.cache.cache.entries() {
            held[(k.layer as u32 - dense) as usize] += 1;
        }
        let quota = self.quota.clone();
        let inserting = (layer - dense) as usize;
        move |k: &TensorRef, r: Option<&UseRecord>| {
            let lru = Eviction::Lru.score(r, || u64::MAX).0;
            let Some(q) = &quota else {
                return (0.0, lru);
            };
            let m = (k.layer as u32 - dense) as usize;
            let class = if held[inserting] >= q[inserting] {
                // At its share: its own entries first.
                if m == inserting {
                    0.0
                } else {
                    1.0
                }
            } else if held[m] > q[m] {
                0.0
            } else {
                1.0
            };
            (class, lru)
        }
    }
}

impl ExpertSupplier for MixtralOffloading {
    fn begin_layer(
        &mut self,
        cx: &mut LayerCx<'_>,
        demands: &[ExpertDemand],
    ) -> Result<(), PolicyError> {
        self.cache.begin_layer(cx.layer, demands);
        if !self.prefetch || cx.moe_index + 1 >= self.model.moe_layers() as usize {
            return Ok(());
        }
        let unit = self.placement.unit_for(self.resident_precision);
        let gate = cx.builder.push(
            Op::matmul(
                TensorRef::new(cx.layer + 1, TensorKind::Router),
                unit,
                self.resident_precision,
                self.model.experts,
                self.model.hidden,
                cx.pass.batch(),
            ),
            &[cx.router],
        );
        let mut guesses = std::mem::take(&mut self.guesses);
        self.predictor
            .predict(cx.pass, cx.moe_index, 1, &mut guesses)?;
        let score = self.score_for(cx.layer + 1);
        for g in &guesses {
            let key = expert_key(cx.layer + 1, g.expert);
            self.cache
                .prefetch(cx, key, &[gate], &score, ReadOptions::default())?;
        }
        self.guesses = guesses;
        Ok(())
    }

    fn supply(
        &mut self,
        cx: &mut LayerCx<'_>,
        _index: usize,
        d: &ExpertDemand,
    ) -> Result<Supply, PolicyError> {
        let score = self.score_for(cx.layer);
        let evictions = self.cache.counters.evictions;
        let supply = self.cache.supply(cx, d, &score, ReadOptions::default())?;
        if !self.write_back || self.cache.counters.evictions == evictions {
            return Ok(supply);
        }
        // `_swap`: the evicted expert goes back to its pinned host buffer after the load, on
        // the same stream; the compute waits for both copies.
        let Supply::Compute {
            precision,
            ready: Some(loaded),
            unit,
        } = supply
        else {
            return Ok(supply);
        };
        let key = expert_key(cx.layer, d.expert);
        let bytes = self.model.bytes(cx.layer, key.kind, precision);
        let back = cx.builder.push(
            Op::Read {
                tensor: key,
                precision,
                bytes,
                request_bytes: bytes.min(u32::MAX as u64) as u32,
            },
            &[loaded],
        );
        Ok(Supply::Compute {
            precision,
            ready: Some(back),
            unit,
        })
    }

    fn computed(&mut self, cx: &mut LayerCx<'_>, expert: u16, op: OpId) {
        self.cache.computed(expert_key(cx.layer, expert), op);
    }

    fn counters(&mut self) -> &mut Counters {
        &mut self.cache.counters
    }

    fn end_layer(&mut self, cx: &mut LayerCx<'_>, _join: OpId) -> Result<(), PolicyError> {
        self.cache.end_layer(cx.layer);
        Ok(())
    }
}

impl ExpertState for MixtralOffloading {
    fn cache_bytes(&self) -> u64 {
        self.cache.cache.used_bytes()
    }

    fn counters_ref(&self) -> &Counters {
        &self.cache.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::test_support::{context_for, decode, plan, plan_decodes, reads, tiny_with};
    use crate::policy::Policy;
    use serde_json::json;

    #[test]
    fn next_layer_guesses_are_loaded_during_the_current_layer() {
        let m = tiny_with(3, 8);
        let mut p = build(context_for(
            m,
            20.0,
            Precision::Int8,
            false,
            json!({"prefetch": true, "precision": "experiment", "predictions": "seeded", "prediction_accuracy": [1.0]}),
        ))
        .unwrap();
        let w = |a: u16, b: u16| [(a, 0.6f32), (b, 0.4f32)];
        let pl = plan(&mut p, &decode(0, 0, &[&w(0, 1), &w(2, 3), &w(4, 5)]), 0);
        let c = p.counters();
        // Layer 0 misses, layers 1 and 2 were guessed right one layer ahead.
        assert_eq!(
            (c.misses, c.prefetches, c.prefetch_used, c.hits),
            (2, 4, 4, 4)
        );
        assert_eq!(reads(&pl).len(), 6);
        // Without speculative loading it is plain LRU: six misses.
        let mut off = build(context_for(
            tiny_with(3, 8),
            20.0,
            Precision::Int8,
            false,
            json!({"prefetch": false, "precision": "experiment"}),
        ))
        .unwrap();
        plan(&mut off, &decode(0, 0, &[&w(0, 1), &w(2, 3), &w(4, 5)]), 0);
        assert_eq!(off.counters().misses, 6);
    }

    #[test]
    fn each_layer_keeps_a_fixed_number_of_experts() {
        // 5 entries of budget over 3 layers: 1 per layer (the code's cache is
        // `experts_per_layer` x layers; nothing is shared). Every token uses (0,1), (2,3),
        // (4,5), two per layer: one slot cannot hold a layer's working set.
        let m = tiny_with(3, 8);
        let w = |a: u16, b: u16| [(a, 0.6f32), (b, 0.4f32)];
        let mut p = build(context_for(
            m,
            5.0,
            Precision::Int8,
            false,
            json!({"prefetch": false, "precision": "experiment"}),
        ))
        .unwrap();
        assert_eq!(p.state.quota, Some(vec![1, 1, 1]));
        plan_decodes(&mut p, 0, 0..4, &[&w(0, 1), &w(2, 3), &w(4, 5)], 0);
        let one_slot_hits = p.counters().hits;
        assert_eq!(p.counters().hits + p.counters().misses, 24);
        // 6 entries: 2 per layer, the working set fits: only the first token misses.
        let mut q = build(context_for(
            tiny_with(3, 8),
            6.0,
            Precision::Int8,
            false,
            json!({"prefetch": false, "precision": "experiment"}),
        ))
        .unwrap();
        plan_decodes(&mut q, 0, 0..4, &[&w(0, 1), &w(2, 3), &w(4, 5)], 0);
        assert_eq!((q.counters().hits, q.counters().misses), (18, 6));
        assert!(one_slot_hits < 18, "{one_slot_hits}");
        // One shared LRU of 5 entries on the same cycle: each miss evicts the least recent
        // entry that is not the layer's other (pinned) demand, which leaves exactly that
        // pinned demand to hit: 3 hits per token after the first.
        let mut g = build(context_for(
            tiny_with(3, 8),
            5.0,
            Precision::Int8,
            false,
            json!({"prefetch": false, "per_layer": false, "precision": "experiment"}),
        ))
        .unwrap();
        plan_decodes(&mut g, 0, 0..4, &[&w(0, 1), &w(2, 3), &w(4, 5)], 0);
        assert_eq!(g.counters().hits, 9);
    }

    #[test]
    fn a_swap_over_the_host_link_copies_the_victim_back() {
        // 2 experts per layer; the second token's new experts evict the first token's, and
        // each eviction moves as many bytes back over the link as the load brought in.
        let w = |a: u16, b: u16| [(a, 0.6f32), (b, 0.4f32)];
        for host in [true, false] {
            let m = tiny_with(2, 8);
            let expert = m.bytes(0, TensorKind::Expert(0), Precision::Int8);
            let mut p = build(context_for(
                m,
                4.0,
                Precision::Int8,
                host,
                json!({"precision": "experiment"}),
            ))
            .unwrap();
            let pl = plan(&mut p, &decode(0, 0, &[&w(0, 1), &w(0, 1)]), 0);
            let first: u64 = reads(&pl).iter().map(|r| r.2).sum();
            assert_eq!(first, 4 * expert, "no eviction yet, host {host}");
            let pl2 = plan(&mut p, &decode(0, 1, &[&w(2, 3), &w(2, 3)]), pl.end_id());
            let second: u64 = reads(&pl2).iter().map(|r| r.2).sum();
            let expected = if host { 8 * expert } else { 4 * expert };
            assert_eq!(second, expected, "host {host}");
        }
    }

    #[test]
    fn runs_hqq_precisions_and_never_prefetches_by_default() {
        let m = tiny_with(3, 8);
        let w = |a: u16, b: u16| [(a, 0.6f32), (b, 0.4f32)];
        let mut p = build(context_for(m, 20.0, Precision::Int8, false, json!({}))).unwrap();
        let pl = plan(&mut p, &decode(0, 0, &[&w(0, 1), &w(2, 3), &w(4, 5)]), 0);
        assert_eq!(p.counters().prefetches, 0);
        assert!(reads(&pl)
            .iter()
            .filter(|r| matches!(r.0.kind, TensorKind::Expert(_)))
            .all(|r| r.1 == Precision::Int2));
    }
}
