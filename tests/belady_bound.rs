//! `belady` is an upper bound on the hit rate of any demand-paging expert cache at the same
//! budget, checked on random traces.
//!
//! What is compared, precisely: policies that hold one precision (the offload precision),
//! load an expert only when a pass demands it and the cache lacks it, never skip an expert
//! and never prefetch -- `lru`, `lfu` (with and without per-sequence resets), `fifo`, and
//! `mixtral-offloading`, `moe-infinity` and `hobbit` with their prefetching and (for hobbit)
//! mixed precision switched off. They all get the same cache bytes (budget minus the same
//! resident set), so the same number of equal-size entries, and see the same access sequence:
//! per pass, per MoE layer, the layer's distinct experts in the planner's order; the other
//! experts of the layer are pinned until computed, for every one of them alike. Belady's MIN
//! is optimal for that problem, so its hits must be >= each of theirs.
//!
//! Not compared: policies that prefetch (a prefetched hit had its load issued earlier, which
//! Belady's on-demand problem does not allow), mixed-precision policies (a low-precision copy
//! takes fewer bytes, so the cache holds more entries), and `fiddler`/`llama-cpp-*` (page
//! granularity, CPU compute). They are compared by time and bytes read instead.

use edgesim::model::{ModelGeometry, ModelProfile, Precision, TensorKind};
use edgesim::plan::PlanBuilder;
use edgesim::policy::{self, FutureAccesses, PolicyContext};
use edgesim::scenario::Footprint;
use edgesim::trace::{ForwardPass, Phase, TokenRecord};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::sync::Arc;

fn model(experts: u32) -> ModelGeometry {
    let json = format!(
        r#"{{
        "name": "tiny-moe", "description": "test model",
        "layers": {{"value": 3, "source": "test"}}, "hidden": {{"value": 128, "source": "test"}},
        "ffn": {{"value": 256, "source": "test"}}, "heads": {{"value": 4, "source": "test"}},
        "kv_heads": {{"value": 2, "source": "test"}}, "vocab": {{"value": 500, "source": "test"}},
        "ffn_kind": "gated", "tied_embeddings": false, "native_bits": {{"value": 16.0, "source": "test"}},
        "moe": {{"experts": {{"value": {experts}, "source": "test"}}, "top_k": {{"value": 2, "source": "test"}},
                "router": "softmax_topk"}}
    }}"#
    );
    let p: ModelProfile = serde_json::from_str(&json).unwrap();
    ModelGeometry::from_profile(&p).unwrap()
}

/// Sequences with a short prefill and skewed, partly repeating routing (so caching matters).
fn passes(m: &ModelGeometry, seed: u64) -> Vec<ForwardPass> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let e = m.experts as u16;
    let mut out = Vec::new();
    for seq in 0..3u32 {
        let prefill = rng.gen_range(1..4u32);
        let decode = rng.gen_range(4..12u32);
        let mut prev: Vec<u16> = Vec::new();
        let mut tokens = Vec::new();
        for pos in 0..prefill + decode {
            let mut t = TokenRecord {
                sequence: seq,
                position: pos,
                phase: if pos < prefill {
                    Phase::Prefill
                } else {
                    Phase::Decode
                },
                ..TokenRecord::default()
            };
            for l in 0..m.moe_layers() as usize {
                let mut chosen: Vec<u16> = Vec::new();
                while chosen.len() < 2 {
                    let x = if !prev.is_empty() && rng.gen_bool(0.4) {
                        prev[l * 2 + chosen.len()]
                    } else {
                        // Skewed: low ids more often.
                        let a = rng.gen_range(0..e);
                        let b = rng.gen_range(0..e);
                        a.min(b)
                    };
                    if !chosen.contains(&x) {
                        chosen.push(x);
                    }
                }
                t.experts.extend(&chosen);
                t.scores.extend([0.6, 0.4]);
            }
            prev = t.experts.clone();
            tokens.push(t);
        }
        let (pre, dec): (Vec<_>, Vec<_>) =
            tokens.into_iter().partition(|t| t.phase == Phase::Prefill);
        out.push(ForwardPass {
            sequence: seq,
            phase: Phase::Prefill,
            tokens: pre,
        });
        for t in dec {
            out.push(ForwardPass {
                sequence: seq,
                phase: Phase::Decode,
                tokens: vec![t],
            });
        }
    }
    out
}

fn hits(
    m: &ModelGeometry,
    name: &str,
    params: serde_json::Value,
    entries: u64,
    passes: &[ForwardPass],
) -> (u64, u64) {
    let fp = Footprint::of(m, Precision::Int8, Precision::Int4, 64);
    let expert = m.bytes(0, TensorKind::Expert(0), Precision::Int4);
    // Per-tensor rounding of the resident set costs a few bytes over the footprint: half an
    // expert of slack keeps the entry count exactly `entries` for every policy.
    let budget = fp.resident_bytes + entries * expert + expert / 2;
    let ctx = PolicyContext {
        model: Arc::new(m.clone()),
        device: Arc::new(edgesim::hw::testing::test_device()),
        budget_bytes: budget,
        resident_precision: Precision::Int8,
        offload_precision: Precision::Int4,
        max_context: 64,
        seed: 5,
        params,
        load_ops: edgesim::policy::machinery::load_ops::plain(),
    };
    let mut p = policy::build(name, ctx).unwrap();
    if p.needs_future() {
        p.give_future(Arc::new(FutureAccesses::from_passes(m, passes)));
    }
    let mut next = 0;
    for pass in passes {
        let mut b = PlanBuilder::new(next);
        p.plan_pass(pass, &mut b).unwrap();
        next = b.finish().unwrap().end_id();
    }
    (p.counters().hits, p.counters().lookups)
}

fn demand_paging() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        ("lru", json!(null)),
        ("lfu", json!(null)),
        ("lfu", json!({"reset_per_sequence": true})),
        ("fifo", json!(null)),
        // At the experiment's precision and the whole budget, like Belady's cache (by default
        // these two hold their systems' own precisions, and moe-infinity keeps a quarter of
        // memory back, so their caches would hold a different number of experts).
        (
            "mixtral-offloading",
            json!({"prefetch": false, "precision": "experiment"}),
        ),
        (
            "moe-infinity",
            json!({"prefetch": false, "precision": "experiment", "device_memory_ratio": 1.0}),
        ),
        (
            "hobbit",
            json!({"prefetch": false, "dynamic_loading": false, "cache_policy": "lru"}),
        ),
        (
            "hobbit",
            json!({"prefetch": false, "dynamic_loading": false, "cache_policy": "multidimensional"}),
        ),
        (
            "hobbit",
            json!({"prefetch": false, "dynamic_loading": false, "cache_policy": "lcu"}),
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn belady_hits_at_least_as_often_as_any_demand_paging_cache(
        seed in any::<u64>(), experts in 4u32..10, entries in 2u64..12
    ) {
        let m = model(experts);
        let ps = passes(&m, seed);
        let (best, lookups) = hits(&m, "belady", json!(null), entries, &ps);
        prop_assert!(best <= lookups);
        let moe_layers = (0..m.layers).filter(|&l| m.is_moe_layer(l)).count() as u64;
        for (name, params) in demand_paging() {
            // mixtral-offloading's fixed per-layer cache needs at least one entry per MoE layer.
            if name == "mixtral-offloading" && entries < moe_layers {
                continue;
            }
            let (h, l) = hits(&m, name, params.clone(), entries, &ps);
            prop_assert_eq!(l, lookups);
            prop_assert!(h <= best, "{} {}: {} hits > belady's {}", name, params, h, best);
        }
        // Hobbit with Belady's order and nothing else is Belady.
        let (hb, _) = hits(&m, "hobbit", json!({"prefetch": false, "dynamic_loading": false, "cache_policy": "belady"}), entries, &ps);
        prop_assert_eq!(hb, best);
    }
}

/// The bound is not vacuous: on a cyclic pattern larger than the cache, LRU gets nothing
/// while Belady keeps part of the cycle.
#[test]
fn belady_beats_lru_on_a_cycle() {
    let m = model(8);
    let mut ps = Vec::new();
    for pos in 0..20u32 {
        let mut t = TokenRecord {
            sequence: 0,
            position: pos,
            phase: Phase::Decode,
            ..TokenRecord::default()
        };
        for _ in 0..m.moe_layers() {
            t.experts.extend([0u16, 1]);
            t.scores.extend([0.6, 0.4]);
        }
        ps.push(ForwardPass {
            sequence: 0,
            phase: Phase::Decode,
            tokens: vec![t],
        });
    }
    // 3 MoE layers x 2 experts = 6 distinct experts per token, 4 cache entries.
    let (lru, lookups) = hits(&m, "lru", json!(null), 4, &ps);
    let (belady, _) = hits(&m, "belady", json!(null), 4, &ps);
    assert_eq!(lookups, 20 * 6);
    assert_eq!(lru, 0);
    assert!(belady >= 2 * 19, "{belady}");
}
