//! `mixtral-offloading`: Eliseev & Mazur, "Fast Inference of Mixture-of-Experts Language
//! Models with Offloading" (arXiv 2312.17238), the MoE-Offloading (MO) baseline of HOBBIT's
//! RTX 4090 group: an LRU expert cache plus speculative expert loading. While a layer runs, the
//! next layer's gate is applied to the current hidden state and its top-k guesses are loaded
//! if not cached.
//!
//! Modelled as: an LRU cache at the offload precision with the paper's per-layer structure
//! ("an LRU cache of k experts per layer", §3.1): the cache's entries are shared out evenly
//! over the MoE layers, and a layer at its share evicts its own least recently used expert; a
//! layer below its share (budgets smaller than one entry per layer) takes the least recently
//! used expert of a layer above its share. At each MoE layer, after its router, one extra gate
//! product predicts the next layer and the missing guesses are loaded (pinned until that layer
//! has run, dropped when the cache cannot make room without evicting pinned experts). Loads
//! are served first-come first-served (one copy stream).
//!
//! Parameters: `{"prefetch": bool (default true), "per_layer": bool (default true; false: one
//! LRU over all layers, i.e. `lru` plus speculative loads), "predictions":
//! "auto"|"trace"|"seeded", "prediction_accuracy": [f64] (default [0.96], HOBBIT Fig. 7b's
//! next-layer accuracy of the same kind of gate-based guess)}`.

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
use serde::Deserialize;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    prefetch: bool,
    per_layer: bool,
    predictions: PredictionSource,
    prediction_accuracy: Vec<f64>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            prefetch: true,
            per_layer: true,
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
}

pub fn build(ctx: PolicyContext) -> Result<ExpertPolicy<MixtralOffloading>, PolicyError> {
    const NAME: &str = "mixtral-offloading";
    crate::policy::moe::require_moe(&ctx, NAME)?;
    let p: Params = parse_params(NAME, &ctx.params)?;
    let precision = ctx.offload_precision;
    let expert = ctx
        .model
        .bytes(ctx.model.dense_layers, TensorKind::Expert(0), precision);
    let capacity = cache_capacity(&ctx, expert, "the resident set plus one expert")?;
    let layers = ctx.model.moe_layers();
    let entries = (capacity / expert) as u32;
    let quota = p.per_layer.then(|| {
        (0..layers)
            .map(|l| entries / layers + u32::from(l < entries % layers))
            .collect()
    });
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
        self.cache.supply(cx, d, &score, ReadOptions::default())
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
            json!({"predictions": "seeded", "prediction_accuracy": [1.0]}),
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
            json!({"prefetch": false}),
        ))
        .unwrap();
        plan(&mut off, &decode(0, 0, &[&w(0, 1), &w(2, 3), &w(4, 5)]), 0);
        assert_eq!(off.counters().misses, 6);
    }

    #[test]
    fn each_layer_keeps_its_share_of_the_cache() {
        // 5 entries over 3 layers: shares 2, 2, 1; every token uses (0,1), (2,3), (4,5), a
        // cycle of 6 that a shared LRU of 5 thrashes on. Worked by hand:
        // t0: 6 misses; layer 2 at its share evicts its own 4 for 5.
        // t1: layers 0 and 1 hit; layer 2 misses 4 (its own 5 is pinned, so the least recent
        //     entry anywhere goes: layer 0's 0), then hits 5: 5 hits, 1 miss.
        // t2, t3: layer 0 misses 0 (under its share, it takes layer 2's least recent: 4) and
        //     hits 1; layer 1 hits twice; layer 2 misses 4 (evicting layer 0's 0) and hits 5:
        //     4 hits, 2 misses each.
        let m = tiny_with(3, 8);
        let w = |a: u16, b: u16| [(a, 0.6f32), (b, 0.4f32)];
        let mut p = build(context_for(
            m,
            5.0,
            Precision::Int8,
            false,
            json!({"prefetch": false}),
        ))
        .unwrap();
        plan_decodes(&mut p, 0, 0..4, &[&w(0, 1), &w(2, 3), &w(4, 5)], 0);
        assert_eq!((p.counters().hits, p.counters().misses), (13, 11));
        // One shared LRU of 5 entries on the same cycle: each miss evicts the least recent
        // entry that is not the layer's other (pinned) demand, which leaves exactly that
        // pinned demand to hit: 3 hits per token after the first.
        let mut g = build(context_for(
            tiny_with(3, 8),
            5.0,
            Precision::Int8,
            false,
            json!({"prefetch": false, "per_layer": false}),
        ))
        .unwrap();
        plan_decodes(&mut g, 0, 0..4, &[&w(0, 1), &w(2, 3), &w(4, 5)], 0);
        assert_eq!(g.counters().hits, 9);
    }
}
