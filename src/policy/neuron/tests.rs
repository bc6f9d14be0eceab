//! Plans of the neuron-level policies: shape, budget, hits and refusals.

use super::*;
use crate::model::{TensorKind, TensorRef, DENSE_FFN};
use crate::plan::{Op, OpId, Plan, PlanBuilder};
use crate::policy::test_support::{dense_context, neuron_pass, neuron_token, plan, tiny_dense};
use crate::trace::ForwardPass;
use crate::trace::TokenRecord;
use std::collections::BTreeMap;

/// Per layer, the (tensor, rows) of each cluster compute.
type LayerComputes = Vec<Vec<(TensorRef, u32)>>;

fn neurons(first: u32, count: u32) -> TensorRef {
    TensorRef::new(
        0,
        TensorKind::Neurons {
            expert: DENSE_FFN,
            first,
            count,
        },
    )
}

fn is_cluster(t: &TensorRef) -> bool {
    matches!(t.kind, TensorKind::Neurons { .. })
}

/// Checks the documented shape of a pass's plan and returns, per layer, the (tensor, rows)
/// of its cluster computes. `reads` maps every cluster read so far (earlier plans too) to
/// its op; hits must depend on one of them.
fn check_shape(plan: &Plan, layers: u32, reads: &mut BTreeMap<OpId, TensorRef>) -> LayerComputes {
    let mut per_layer = vec![Vec::new(); layers as usize];
    let mut mixer: Option<(u32, OpId)> = None;
    let mut computes: Vec<OpId> = Vec::new();
    let mut prev_join: Option<OpId> = None;
    let mut allocs: BTreeMap<OpId, TensorRef> = BTreeMap::new();
    let mut computed_once = std::collections::BTreeSet::new();
    for n in plan.nodes() {
        let deps = plan.deps(n);
        match n.op {
            Op::Compute { tensor, rows, .. } if tensor.kind == TensorKind::Attention => {
                let want: Vec<OpId> = prev_join.into_iter().collect();
                assert_eq!(deps, want.as_slice(), "mixer {} deps", tensor.layer);
                mixer = Some((tensor.layer as u32, n.id));
                computes.clear();
                let _ = rows;
            }
            Op::Alloc { tensor, .. } if is_cluster(&tensor) => {
                allocs.insert(n.id, tensor);
            }
            Op::Read { tensor, bytes, .. } if is_cluster(&tensor) => {
                let (layer, m) = mixer.expect("read before any mixer");
                assert_eq!(tensor.layer as u32, layer, "read of another layer");
                assert!(deps.contains(&m), "read without its mixer");
                assert!(
                    deps.iter().any(|d| allocs.get(d) == Some(&tensor)),
                    "read without its alloc"
                );
                let want = match tensor.kind {
                    TensorKind::Neurons { count, .. } => {
                        count as u64 * crate::model::Precision::Int4.bytes_for(3 * 64)
                    }
                    _ => unreachable!(),
                };
                assert_eq!(bytes, want);
                reads.insert(n.id, tensor);
            }
            Op::Compute { tensor, rows, .. } if is_cluster(&tensor) => {
                let (layer, m) = mixer.expect("compute before any mixer");
                assert_eq!(tensor.layer as u32, layer);
                assert_eq!(deps.len(), 2);
                assert_eq!(deps[0], m);
                assert_eq!(
                    reads.get(&deps[1]),
                    Some(&tensor),
                    "compute not after its read"
                );
                assert!(computed_once.insert(tensor), "{tensor} computed twice");
                computes.push(n.id);
                per_layer[layer as usize].push((tensor, rows));
            }
            Op::Join => {
                let (_, m) = mixer.expect("join before any mixer");
                let mut want = vec![m];
                want.extend(&computes);
                assert_eq!(deps, want.as_slice(), "join deps");
                prev_join = Some(n.id);
            }
            Op::Compute { tensor, .. } if tensor.kind == TensorKind::LmHead => {
                assert_eq!(mixer.map(|m| m.0), Some(layers - 1));
                assert_eq!(deps, &[prev_join.unwrap()]);
                assert_eq!(plan.output(), Some(n.id));
            }
            _ => {}
        }
    }
    per_layer
}

fn run(
    policy: &mut dyn Policy,
    passes: &[ForwardPass],
    layers: u32,
) -> (Vec<Plan>, Vec<LayerComputes>) {
    let mut b = PlanBuilder::new(0);
    policy.plan_warmup(&mut b).unwrap();
    let mut next = b.finish().unwrap().end_id();
    let mut reads = BTreeMap::new();
    let mut plans = Vec::new();
    let mut shapes = Vec::new();
    for pass in passes {
        let p = plan(policy, pass, next);
        next = p.end_id();
        shapes.push(check_shape(&p, layers, &mut reads));
        plans.push(p);
    }
    (plans, shapes)
}

fn random_tokens(seed: u64, count: u32, layers: u32, width: u32) -> Vec<TokenRecord> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..count)
        .map(|pos| {
            let sets: Vec<Vec<u32>> = (0..layers)
                .map(|_| (0..width).filter(|_| rng.gen_bool(0.4)).collect())
                .collect();
            let refs: Vec<&[u32]> = sets.iter().map(|s| s.as_slice()).collect();
            neuron_token(0, pos, &refs)
        })
        .collect()
}

#[test]
fn a_pass_is_mixer_then_each_demanded_cluster_once_then_join() {
    let model = tiny_dense(2, 8);
    for name in ["on-demand", "lru"] {
        let mut p = super::super::build(
            name,
            dense_context(model.clone(), 4, serde_json::Value::Null),
        )
        .unwrap();
        let prefill = neuron_pass(vec![
            neuron_token(0, 0, &[&[1, 3], &[]]),
            neuron_token(0, 1, &[&[3, 6], &[0]]),
        ]);
        let (_, shapes) = run(p.as_mut(), &[prefill], 2);
        let rows: Vec<(u32, u32)> = shapes[0][0]
            .iter()
            .map(|(t, r)| match t.kind {
                TensorKind::Neurons { first, .. } => (first, *r),
                _ => unreachable!(),
            })
            .collect();
        // The union over the chunk's tokens, ascending; one neuron each, three matrices.
        assert_eq!(rows, vec![(1, 3), (3, 3), (6, 3)], "{name}");
        assert_eq!(shapes[0][1].len(), 1, "{name}");
        assert_eq!(p.counters().lookups, 4, "{name}");
    }
}

#[test]
fn on_demand_evicts_every_cluster_it_loads() {
    let model = tiny_dense(3, 16);
    let ctx = dense_context(model, 2, serde_json::Value::Null);
    let budget = ctx.budget_bytes;
    let mut p = super::super::build("on-demand", ctx).unwrap();
    let passes: Vec<ForwardPass> = random_tokens(5, 6, 3, 16)
        .into_iter()
        .map(|t| neuron_pass(vec![t]))
        .collect();
    let (plans, _) = run(p.as_mut(), &passes, 3);
    let mut loaded: BTreeMap<TensorRef, i64> = BTreeMap::new();
    for plan in &plans {
        for n in plan.nodes() {
            match n.op {
                Op::Alloc { tensor, .. } => *loaded.entry(tensor).or_default() += 1,
                Op::Evict { tensor, .. } => *loaded.entry(tensor).or_default() -= 1,
                _ => {}
            }
        }
    }
    assert!(!loaded.is_empty());
    assert!(loaded.values().all(|&v| v == 0), "{loaded:?}");
    assert_eq!(p.memory().cache_bytes, 0);
    assert!(p.memory().total() <= budget);
    assert_eq!(p.counters().hits, 0);
    assert_eq!(p.counters().misses, p.counters().evictions);
}

#[test]
fn lru_stays_within_its_cache_and_hits_what_it_kept() {
    let model = tiny_dense(3, 16);
    // Room for 10 neurons: less than one layer's demand at times, so overflow is exercised.
    let ctx = dense_context(model.clone(), 10, serde_json::Value::Null);
    let capacity = 10 * model.neuron_bytes(crate::model::Precision::Int4);
    let mut p = super::super::build("lru", ctx).unwrap();
    let passes: Vec<ForwardPass> = random_tokens(9, 12, 3, 16)
        .into_iter()
        .map(|t| neuron_pass(vec![t]))
        .collect();
    let (plans, _) = run(p.as_mut(), &passes, 3);
    // In op order (a topological order in which every Alloc follows the Evicts it
    // reuses), the cache never holds more than its capacity.
    let mut held: i64 = 0;
    for plan in &plans {
        for n in plan.nodes() {
            match n.op {
                Op::Alloc { bytes, .. } => held += bytes as i64,
                Op::Evict { bytes, .. } => held -= bytes as i64,
                _ => {}
            }
            assert!(held <= capacity as i64, "cache holds {held} > {capacity}");
        }
    }
    assert_eq!(held as u64, p.memory().cache_bytes);
    let c = p.counters();
    assert_eq!(c.hits + c.misses, c.lookups);
    assert!(c.evictions > 0);

    // With the whole FFN cached, a repeated token is all hits: no read at all.
    let ctx = dense_context(model, 48, serde_json::Value::Null);
    let mut p = super::super::build("lru", ctx).unwrap();
    let t = random_tokens(2, 1, 3, 16).remove(0);
    let (plans, _) = run(
        p.as_mut(),
        &[neuron_pass(vec![t.clone()]), neuron_pass(vec![t])],
        3,
    );
    assert!(plans[1]
        .nodes()
        .iter()
        .all(|n| !matches!(n.op, Op::Read { .. } | Op::Evict { .. })));
    assert_eq!(p.counters().hits * 2, p.counters().lookups);
}

#[test]
fn clusters_group_consecutive_neurons_and_the_last_is_short() {
    // 20 neurons in clusters of 8: 0-7, 8-15 and a short 16-19.
    let model = tiny_dense(1, 20);
    for name in ["on-demand", "lru"] {
        let ctx = dense_context(model.clone(), 8, serde_json::json!({"cluster_neurons": 8}));
        let mut p = super::super::build(name, ctx).unwrap();
        let pass = neuron_pass(vec![neuron_token(0, 0, &[&[2, 5, 17, 19]])]);
        let (plans, shapes) = run(p.as_mut(), &[pass], 1);
        // Two of cluster 0's neurons and two of cluster 2's are active: 3 matrices x 2 rows.
        assert_eq!(
            shapes[0][0],
            vec![(neurons(0, 8), 6), (neurons(16, 4), 6)],
            "{name}"
        );
        let reads = crate::policy::test_support::reads(&plans[0]);
        let int4 = crate::model::Precision::Int4;
        assert_eq!(
            reads,
            vec![
                (neurons(0, 8), int4, 8 * int4.bytes_for(3 * 64)),
                (neurons(16, 4), int4, 4 * int4.bytes_for(3 * 64)),
            ],
            "{name}"
        );
    }
}

#[test]
fn bad_parameters_and_budgets_are_refused() {
    let model = tiny_dense(2, 8);
    for name in ["on-demand", "lru"] {
        let err = super::super::build(
            name,
            dense_context(model.clone(), 4, serde_json::json!({"cluster_size": 4})),
        )
        .err()
        .unwrap();
        assert!(
            matches!(&err, PolicyError::BadParameter(m) if m.contains("cluster_size")),
            "{err}"
        );
        let err = super::super::build(
            name,
            dense_context(model.clone(), 4, serde_json::json!({"cluster_neurons": 0})),
        )
        .err()
        .unwrap();
        assert!(matches!(err, PolicyError::BadParameter(_)), "{err}");
        // Room for three neurons beyond the resident set, clusters of four.
        let err = super::super::build(
            name,
            dense_context(model.clone(), 3, serde_json::json!({"cluster_neurons": 4})),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("one neuron cluster"), "{err}");
    }
    // Other policies are expert-level only.
    let err = super::super::build(
        "lfu",
        dense_context(model.clone(), 4, serde_json::Value::Null),
    )
    .err()
    .unwrap();
    assert!(matches!(err, PolicyError::Unsupported(_)), "{err}");
    // A pass without neuron activations (an expert trace) is a bad pass, not a panic.
    let mut p =
        super::super::build("lru", dense_context(model, 4, serde_json::Value::Null)).unwrap();
    let pass = neuron_pass(vec![TokenRecord::default()]);
    let mut b = PlanBuilder::new(0);
    assert!(matches!(
        p.plan_pass(&pass, &mut b),
        Err(PolicyError::BadPass(_))
    ));
}

/// Hits and misses of `name` over one-layer decode passes whose active neurons are `seq`
/// (one neuron each), clusters of one neuron, a cache of `cache` neurons.
fn hits_over(name: &str, seq: &[u32], cache: u64) -> (u64, u64) {
    let model = tiny_dense(1, 8);
    let ctx = dense_context(
        model.clone(),
        cache,
        serde_json::json!({"cluster_neurons": 1}),
    );
    let mut p = crate::policy::build(name, ctx).unwrap();
    let passes: Vec<ForwardPass> = seq
        .iter()
        .enumerate()
        .map(|(i, &n)| neuron_pass(vec![neuron_token(0, i as u32, &[&[n]])]))
        .collect();
    if p.needs_future() {
        p.give_future(std::sync::Arc::new(
            crate::policy::FutureAccesses::from_passes(&model, &passes),
        ));
    }
    let mut b = PlanBuilder::new(0);
    p.plan_warmup(&mut b).unwrap();
    let mut next = b.finish().unwrap().end_id();
    for pass in &passes {
        next = plan(p.as_mut(), pass, next).end_id();
    }
    let c = p.counters();
    (c.hits, c.misses)
}

#[test]
fn belady_evicts_the_cluster_used_farthest_ahead() {
    // A B C A B with room for two: LRU misses all five (each eviction takes the one needed
    // next). Belady: A, B miss; C misses and evicts B (next use 4) rather than A (next use
    // 3); A hits; B misses. One hit.
    let seq = [0, 1, 2, 0, 1];
    assert_eq!(hits_over("lru", &seq, 2), (0, 5));
    assert_eq!(hits_over("belady", &seq, 2), (1, 4));
}

#[test]
fn belady_is_the_ceiling_of_lru_and_on_demand_on_random_traces() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
    for round in 0..20 {
        let seq: Vec<u32> = (0..40).map(|_| rng.gen_range(0..8)).collect();
        let cache = 1 + round % 6;
        let (belady, _) = hits_over("belady", &seq, cache);
        let (lru, _) = hits_over("lru", &seq, cache);
        let (od, _) = hits_over("on-demand", &seq, cache);
        assert!(
            belady >= lru && belady >= od,
            "{seq:?} cache {cache}: {belady} {lru} {od}"
        );
    }
}
