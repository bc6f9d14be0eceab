//! Hand-worked plans of `hobbit` on tiny models.

use super::*;
use crate::policy::test_support::{context_for, decode, plan, reads, tiny, tiny_with};
use crate::policy::Policy;
use crate::trace::ForwardPass;
use serde_json::json;

fn hobbit(
    model: ModelGeometry,
    cache_experts: f64,
    params: serde_json::Value,
) -> ExpertPolicy<HobbitState> {
    build(context_for(
        model,
        cache_experts,
        Precision::Int8,
        false,
        params,
    ))
    .unwrap()
}

fn bytes(m: &ModelGeometry, layer: u32, e: u16, p: Precision) -> u64 {
    m.bytes(layer, TensorKind::Expert(e), p)
}

#[test]
fn misses_follow_the_t1_t2_rule_and_skips_are_not_computed() {
    let m = tiny();
    let mut h = hobbit(m.clone(), 20.0, json!({"prefetch": false}));
    // Layer 0: second weight 0.3 (s = 0.7): low. Layer 1: second weight 0.05 (s = 0.95): skip.
    let p = plan(
        &mut h,
        &decode(0, 0, &[&[(0, 0.7), (1, 0.3)], &[(2, 0.95), (3, 0.05)]]),
        0,
    );
    assert_eq!(
        reads(&p),
        vec![
            (
                TensorRef::expert(0, 0),
                Precision::Int8,
                bytes(&m, 0, 0, Precision::Int8)
            ),
            (
                TensorRef::expert(0, 1),
                Precision::Int2,
                bytes(&m, 0, 1, Precision::Int2)
            ),
            (
                TensorRef::expert(1, 2),
                Precision::Int8,
                bytes(&m, 1, 2, Precision::Int8)
            ),
        ]
    );
    let c = h.counters();
    assert_eq!((c.misses, c.hits, c.skipped), (3, 0, 1));
    assert_eq!(c.served_by_precision[Precision::Int8.index()], 2);
    assert_eq!(c.served_by_precision[Precision::Int2.index()], 1);
    // Accuracy proxy: 0.3 served low and 0.05 skipped, of 2.0 gate weight in all.
    assert!((c.gate_weight_total - 2.0).abs() < 1e-6);
    assert!((c.gate_weight_degraded - 0.35).abs() < 1e-6);
    // No compute op for the skipped expert.
    assert!(!p
        .nodes()
        .iter()
        .any(|n| matches!(n.op, Op::Compute { tensor, .. } if tensor == TensorRef::expert(1, 3))));
    // A dynamic-loading-off run loads both at high precision and skips nothing.
    let mut off = hobbit(
        m,
        20.0,
        json!({"prefetch": false, "dynamic_loading": false}),
    );
    let p = plan(
        &mut off,
        &decode(0, 0, &[&[(0, 0.7), (1, 0.3)], &[(2, 0.95), (3, 0.05)]]),
        0,
    );
    assert!(reads(&p).iter().all(|r| r.1 == Precision::Int8));
    assert_eq!(reads(&p).len(), 4);
    assert_eq!(off.counters().skipped, 0);
}

#[test]
fn a_low_copy_serves_a_high_demand_only_when_allowed() {
    let first = decode(0, 0, &[&[(0, 0.7), (1, 0.3)], &[(2, 0.6), (3, 0.4)]]);
    // Expert 1 of layer 0 now ranks first: the rule wants it high.
    let second = decode(0, 1, &[&[(1, 0.6), (0, 0.4)], &[(2, 0.6), (3, 0.4)]]);
    for (q1, reread) in [("reload", true), ("use", false)] {
        let mut h = hobbit(
            tiny(),
            20.0,
            json!({"prefetch": false, "low_copy_for_high": q1}),
        );
        let p1 = plan(&mut h, &first, 0);
        let p2 = plan(&mut h, &second, p1.end_id());
        let r = reads(&p2);
        assert_eq!(
            r.contains(&(
                TensorRef::expert(0, 1),
                Precision::Int8,
                bytes(&tiny(), 0, 1, Precision::Int8)
            )),
            reread,
            "{q1}: {r:?}"
        );
        // Everything else of the second token hits.
        assert_eq!(r.len(), reread as usize, "{q1}: {r:?}");
    }
}

#[test]
fn prefetch_skips_cached_layers_and_fetches_the_first_that_misses() {
    let m = tiny_with(4, 8);
    let params = json!({
        "prefetch_layers": 2, "predictions": "seeded", "prediction_accuracy": [1.0],
        "prefetch_precision": "high"
    });
    let mut h = hobbit(m.clone(), 40.0, params);
    let w = |a: u16, b: u16| [(a, 0.55f32), (b, 0.45f32)];
    let (l0, l1, l2, l3) = (w(0, 1), w(2, 3), w(4, 5), w(6, 7));
    let p1 = plan(&mut h, &decode(0, 0, &[&l0, &l1, &l2, &l3]), 0);
    // Layer 0 misses; every later layer was prefetched one layer ahead and hits.
    let c = h.counters().clone();
    assert_eq!(
        (c.misses, c.hits, c.prefetches, c.prefetch_used),
        (2, 6, 6, 6)
    );
    // Second token: layers 0 and 1 as before (cached); layer 2 now wants experts 6 and 7.
    let (m2, m3) = (w(6, 7), w(4, 5));
    let p2 = plan(&mut h, &decode(0, 1, &[&l0, &l1, &m2, &m3]), p1.end_id());
    let r = reads(&p2);
    // At layer 0, layer 1's guesses are cached, so layer 2's (two ahead) are fetched; at layer
    // 1 layer 2's are in flight and layer 3's are fetched.
    assert_eq!(
        r.iter().map(|x| x.0).collect::<Vec<_>>(),
        vec![
            TensorRef::expert(2, 6),
            TensorRef::expert(2, 7),
            TensorRef::expert(3, 4),
            TensorRef::expert(3, 5)
        ]
    );
    // The layer-2 reads are issued during layer 0: before layer 1's router.
    let pos = |pred: &dyn Fn(&Op) -> bool| p2.nodes().iter().position(|n| pred(&n.op)).unwrap();
    let router1 = pos(
        &|op| matches!(op, Op::Compute { tensor, .. } if *tensor == TensorRef::new(1, TensorKind::Router)),
    );
    let read26 =
        pos(&|op| matches!(op, Op::Read { tensor, .. } if *tensor == TensorRef::expert(2, 6)));
    assert!(read26 < router1);
    assert_eq!(h.counters().misses, 2);
}

#[test]
fn predicted_experts_are_not_evicted_for_a_demand_while_others_can_go() {
    let m = tiny_with(3, 8);
    let params = json!({
        "prefetch_layers": 1, "predictions": "seeded", "prediction_accuracy": [1.0],
        "prefetch_precision": "high", "dynamic_loading": false, "cache_policy": "lru"
    });
    // Room for exactly 4 high experts.
    let mut h = hobbit(m, 4.0, params);
    let w = |a: u16, b: u16| [(a, 0.55f32), (b, 0.45f32)];
    // Token 0 fills the cache; token 1's layer 0 misses twice. LRU would evict the oldest
    // entries: layer 0's experts from token 0 go first (they are least recent); the
    // prefetched layer-1 guesses for token 1 are pinned and must survive until layer 1 runs.
    let p1 = plan(&mut h, &decode(0, 0, &[&w(0, 1), &w(2, 3), &w(4, 5)]), 0);
    let p2 = plan(
        &mut h,
        &decode(0, 1, &[&w(6, 7), &w(2, 3), &w(4, 5)]),
        p1.end_id(),
    );
    let evicted_before_layer1: Vec<TensorRef> = p2
        .nodes()
        .iter()
        .take_while(|n| !matches!(n.op, Op::Compute { tensor, .. } if tensor == TensorRef::new(1, TensorKind::Router)))
        .filter_map(|n| match n.op {
            Op::Evict { tensor, .. } => Some(tensor),
            _ => None,
        })
        .collect();
    assert!(!evicted_before_layer1.is_empty());
    for k in [TensorRef::expert(1, 2), TensorRef::expert(1, 3)] {
        assert!(
            !evicted_before_layer1.contains(&k),
            "{k} was pinned as a prediction but evicted: {evicted_before_layer1:?}"
        );
    }
}

#[test]
fn caches_split_by_share_and_the_budget_floor_is_named() {
    let m = tiny();
    let h = hobbit(m.clone(), 10.0, json!({"low_cache_share": 0.2}));
    let (hi, lo) = h.state.capacities();
    let total = hi + lo;
    assert_eq!(lo, (0.2 * total as f64) as u64);
    let high = bytes(&m, 0, 0, Precision::Int8);
    let low = bytes(&m, 0, 0, Precision::Int2);
    // Less than one high plus one low expert of cache: refused with what is needed.
    let err = build(context_for(
        m,
        (high + low - 1) as f64 / high as f64,
        Precision::Int8,
        false,
        serde_json::Value::Null,
    ))
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("one high- and one low-precision expert"),
        "{err}"
    );
}

#[test]
fn records_reset_when_a_sequence_starts() {
    let m = tiny();
    let mut h = hobbit(m, 20.0, json!({"prefetch": false}));
    let t = decode(0, 0, &[&[(0, 0.7), (1, 0.3)], &[(2, 0.6), (3, 0.4)]]);
    let p = plan(&mut h, &t, 0);
    assert!(h.state.records.by_expert[&TensorRef::expert(0, 0)].uses > 0);
    plan(
        &mut h,
        &decode(1, 0, &[&[(0, 0.7), (1, 0.3)], &[(2, 0.6), (3, 0.4)]]),
        p.end_id(),
    );
    // The new sequence's first pass counted once: uses 1, not 2.
    assert_eq!(h.state.records.by_expert[&TensorRef::expert(0, 0)].uses, 1);
}

#[test]
fn cooperative_mode_computes_decode_misses_on_the_host_cpu() {
    let m = tiny();
    let ctx = context_for(
        m.clone(),
        20.0,
        Precision::Fp16,
        true,
        json!({"prefetch": false, "cpu_misses": true}),
    );
    let mut h = build(ctx).unwrap();
    let p = plan(
        &mut h,
        &decode(0, 0, &[&[(0, 0.7), (1, 0.3)], &[(2, 0.95), (3, 0.05)]]),
        0,
    );
    // Nothing is copied; the three computed experts run on the CPU at the rule's precision.
    assert!(reads(&p).is_empty());
    let on_cpu: Vec<(TensorRef, Precision)> = p
        .nodes()
        .iter()
        .filter_map(|n| match n.op {
            Op::Compute {
                tensor,
                precision,
                unit: crate::plan::Unit::Cpu { .. },
                ..
            } if matches!(tensor.kind, TensorKind::Expert(_)) => Some((tensor, precision)),
            _ => None,
        })
        .collect();
    assert_eq!(
        on_cpu,
        vec![
            (TensorRef::expert(0, 0), Precision::Fp16),
            (TensorRef::expert(0, 1), Precision::Int4),
            (TensorRef::expert(1, 2), Precision::Fp16),
        ]
    );
    // On a flash device the mode is refused.
    let err = build(context_for(
        m,
        20.0,
        Precision::Fp16,
        false,
        json!({"cpu_misses": true}),
    ))
    .err()
    .unwrap();
    assert!(matches!(err, PolicyError::Unsupported(_)), "{err}");
}

#[test]
fn prefetch_precision_follows_the_rule_on_predicted_weights() {
    let m = tiny_with(3, 8);
    let params =
        json!({"prefetch_layers": 1, "predictions": "seeded", "prediction_accuracy": [1.0]});
    let mut h = hobbit(m, 40.0, params);
    // Layer 1's weights: second expert at 0.3 (s = 0.7, low). Layer 2's: second at 0.05
    // (s = 0.95, skipped: not prefetched).
    let p = plan(
        &mut h,
        &decode(
            0,
            0,
            &[
                &[(0, 0.6), (1, 0.4)],
                &[(2, 0.7), (3, 0.3)],
                &[(4, 0.95), (5, 0.05)],
            ],
        ),
        0,
    );
    let r: Vec<(TensorRef, Precision)> = reads(&p).iter().map(|x| (x.0, x.1)).collect();
    assert!(
        r.contains(&(TensorRef::expert(1, 2), Precision::Int8)),
        "{r:?}"
    );
    assert!(
        r.contains(&(TensorRef::expert(1, 3), Precision::Int2)),
        "{r:?}"
    );
    assert!(
        r.contains(&(TensorRef::expert(2, 4), Precision::Int8)),
        "{r:?}"
    );
    assert!(!r.iter().any(|x| x.0 == TensorRef::expert(2, 5)), "{r:?}");
    // All of layers 1 and 2's computed experts were prefetched: only layer 0 missed.
    assert_eq!(h.counters().misses, 2);
    assert_eq!(h.counters().skipped, 1);
}

#[test]
fn a_low_cache_held_by_pending_demands_falls_back_to_a_high_load() {
    // With one layer of prefetch the low cache holds (1 + 1) x (2 - 1) = 2 low experts. The
    // trace records (wrong) guesses for layer 1 that make 3 and 5 be prefetched low, filling
    // the low cache; the pass's layer-1 demands are 4, 2, 3, 5 in that order. Expert 2 wants
    // low, but both low slots hold this layer's pending demands: 2 is loaded high instead of
    // failing or evicting them.
    let m = tiny_with(2, 8);
    let params = json!({"prefetch_layers": 1, "predictions": "auto", "prediction_accuracy": [1.0], "low_cache_share": 0.0});
    let mut h = hobbit(m, 10.0, params);
    let none = crate::trace::NO_PREDICTION;
    let token = |pos: u32, second: u16, guess: u16| {
        let mut t = decode(0, pos, &[&[(0, 0.6), (1, 0.4)], &[(4, 0.7), (second, 0.3)]])
            .tokens
            .remove(0);
        t.predicted = vec![4, guess, none, none];
        t
    };
    let pass = ForwardPass {
        sequence: 0,
        phase: crate::trace::Phase::Prefill,
        tokens: vec![token(0, 2, 3), token(1, 3, 5), token(2, 5, 5)],
    };
    let (_, lo) = h.state.capacities();
    assert_eq!(
        lo,
        2 * tiny_with(2, 8).bytes(0, TensorKind::Expert(0), Precision::Int2)
    );
    let p = plan(&mut h, &pass, 0);
    let r: Vec<(TensorRef, Precision)> = reads(&p).iter().map(|x| (x.0, x.1)).collect();
    assert!(
        r.contains(&(TensorRef::expert(1, 3), Precision::Int2)),
        "{r:?}"
    );
    assert!(
        r.contains(&(TensorRef::expert(1, 5), Precision::Int2)),
        "{r:?}"
    );
    assert!(
        r.contains(&(TensorRef::expert(1, 2), Precision::Int8)),
        "{r:?}"
    );
    assert!(
        !r.contains(&(TensorRef::expert(1, 2), Precision::Int2)),
        "{r:?}"
    );
}
