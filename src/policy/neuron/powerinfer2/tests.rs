//! Plans of `powerinfer2`, `powerinfer`, `llm-in-a-flash` and the dense `llama-cpp-mmap`:
//! the two-phase rule on hand-worked bundles, the pipeline's dependencies, and the memory and
//! dependency invariants every one of them must keep.

use crate::model::{Precision, TensorKind, TensorRef, DENSE_FFN};
use crate::plan::{Op, OpId, Plan, PlanBuilder};
use crate::policy::test_support::{dense_context, neuron_pass, neuron_token, plan, tiny_dense};
use crate::policy::Policy;
use crate::trace::TokenRecord;
use serde_json::json;
use std::collections::BTreeMap;

use super::regions::UP_DOWN_PART;

/// A decode token whose active set per layer is `active[l]` and predictor output `predicted[l]`.
fn predicted_token(position: u32, active: &[&[u32]], predicted: &[&[u32]]) -> TokenRecord {
    let mut t = neuron_token(0, position, active);
    t.predicted_neuron_offsets.push(0);
    for p in predicted {
        t.predicted_neurons.extend_from_slice(p);
        t.predicted_neuron_offsets
            .push(t.predicted_neurons.len() as u32);
    }
    t
}

fn cpu_only(extra: serde_json::Value) -> serde_json::Value {
    let mut p = json!({"hot_cold": false, "npu": false, "predictor_cost": false, "cold_cluster_neurons": 4});
    if let (Some(o), Some(e)) = (p.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    p
}

/// PowerInfer-2 stores a neuron aligned to 4 KiB: 38 of the tiny model's 108-byte neurons.
const ALIGNED: u64 = 38;

fn build(name: &str, cache_neurons: u64, params: serde_json::Value) -> Box<dyn Policy> {
    let ctx = dense_context(tiny_dense(2, 16), cache_neurons * ALIGNED, params);
    crate::policy::build(name, ctx).unwrap()
}

fn warm(p: &mut dyn Policy) -> OpId {
    let mut b = PlanBuilder::new(0);
    p.plan_warmup(&mut b).unwrap();
    b.finish().unwrap().end_id()
}

fn op_of(plan: &Plan, id: OpId) -> &Op {
    &plan.nodes().iter().find(|n| n.id == id).unwrap().op
}

/// Reads of layer 0 as (neuron rank, up/down part, bytes, request, deps).
fn reads_of(plan: &Plan) -> Vec<(u32, bool, u64, u32, Vec<OpId>)> {
    plan.nodes()
        .iter()
        .filter_map(|n| match n.op {
            Op::Read {
                tensor:
                    TensorRef {
                        layer: 0,
                        kind: TensorKind::Neurons { expert, first, .. },
                    },
                bytes,
                request_bytes,
                ..
            } => Some((
                first,
                expert == UP_DOWN_PART,
                bytes,
                request_bytes,
                plan.deps(n).to_vec(),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn two_phase_reads_the_up_down_part_only_when_the_gate_is_non_zero() {
    // Hidden 64 at int4: a neuron's three rows are 108 bytes, a bundle aligned to 4 KiB, two
    // 2 KiB parts. Neuron 2 is predicted but not active (a false positive): its gate part is
    // read and computed, its up/down part is not. Neuron 9 is active but not predicted (a
    // false negative): nothing is read for it.
    let mut p = build("powerinfer2", 64, cpu_only(json!({})));
    let start = warm(p.as_mut());
    let t = predicted_token(0, &[&[1, 5, 9], &[]], &[&[1, 2, 5], &[]]);
    let pl = plan(p.as_mut(), &neuron_pass(vec![t.clone()]), start);
    let reads = reads_of(&pl);
    let gates: Vec<(u32, u64, u32)> = reads
        .iter()
        .filter(|r| !r.1)
        .map(|r| (r.0, r.2, r.3))
        .collect();
    let ups: Vec<u32> = reads.iter().filter(|r| r.1).map(|r| r.0).collect();
    assert_eq!(
        gates,
        vec![(1, 2048, 2048), (2, 2048, 2048), (5, 2048, 2048)]
    );
    assert_eq!(ups, vec![1, 5]);
    // Each up/down read waits for the gate compute of its cluster (ranks 0-3, 4-7), whose
    // rows are the cluster's predicted neurons.
    for r in reads.iter().filter(|r| r.1) {
        let gc: Vec<u32> =
            r.4.iter()
                .filter_map(|&d| match op_of(&pl, d) {
                    Op::Compute {
                        tensor:
                            TensorRef {
                                kind: TensorKind::Neurons { first, .. },
                                ..
                            },
                        rows,
                        ..
                    } => Some(first * 100 + rows),
                    _ => None,
                })
                .collect();
        let want = if r.0 < 4 { 2 } else { 4 * 100 + 1 };
        assert_eq!(gc, vec![want], "up/down read of {}", r.0);
    }
    // The same token again: everything is cached, nothing is read.
    let pl2 = plan(p.as_mut(), &neuron_pass(vec![t]), pl.end_id());
    assert!(reads_of(&pl2).is_empty());
    let c = p.counters();
    assert_eq!((c.lookups, c.hits, c.misses), (6, 3, 3));
}

#[test]
fn without_two_phase_or_bundles_a_neuron_is_one_read_or_one_request_per_row() {
    let t = predicted_token(0, &[&[1], &[]], &[&[1, 2], &[]]);
    let mut p = build("powerinfer2", 64, cpu_only(json!({"two_phase": false})));
    let start = warm(p.as_mut());
    let pl = plan(p.as_mut(), &neuron_pass(vec![t.clone()]), start);
    let r: Vec<(u32, bool, u64, u32)> = reads_of(&pl)
        .into_iter()
        .map(|r| (r.0, r.1, r.2, r.3))
        .collect();
    assert_eq!(r, vec![(1, false, 4096, 4096), (2, false, 4096, 4096)]);
    let mut p = build("powerinfer2", 64, cpu_only(json!({"bundles": false})));
    let start = warm(p.as_mut());
    let pl = plan(p.as_mut(), &neuron_pass(vec![t]), start);
    let row = Precision::Int4.bytes_for(64);
    let r: Vec<(u32, bool, u64, u32)> = reads_of(&pl)
        .into_iter()
        .map(|r| (r.0, r.1, r.2, r.3))
        .collect();
    assert_eq!(
        r,
        vec![
            (1, false, row, row as u32),
            (2, false, row, row as u32),
            (1, true, 2 * row, row as u32)
        ]
    );
}

#[test]
fn the_pipeline_switch_moves_the_matrix_barrier() {
    let t = predicted_token(0, &[&[1, 5], &[]], &[&[1, 5], &[]]);
    for pipeline in [true, false] {
        let mut p = build("powerinfer2", 64, cpu_only(json!({"pipeline": pipeline})));
        let start = warm(p.as_mut());
        let pl = plan(p.as_mut(), &neuron_pass(vec![t.clone()]), start);
        let gate_reads: Vec<OpId> = pl
            .nodes()
            .iter()
            .filter(|n| {
                matches!(
                    n.op,
                    Op::Read {
                        tensor: TensorRef {
                            layer: 0,
                            kind: TensorKind::Neurons {
                                expert: DENSE_FFN,
                                ..
                            }
                        },
                        ..
                    }
                )
            })
            .map(|n| n.id)
            .collect();
        let first_gc = pl
            .nodes()
            .iter()
            .find(|n| {
                matches!(
                    n.op,
                    Op::Compute {
                        tensor: TensorRef {
                            layer: 0,
                            kind: TensorKind::Neurons { .. }
                        },
                        ..
                    }
                )
            })
            .unwrap();
        let deps = pl.deps(first_gc);
        if pipeline {
            // Cluster 0's gate compute waits for neuron 1's gate read only.
            assert!(deps.contains(&gate_reads[0]) && !deps.contains(&gate_reads[1]));
        } else {
            // It waits for a barrier that waits for every gate read of the layer.
            let barrier = deps
                .iter()
                .find(|&&d| matches!(op_of(&pl, d), Op::Join))
                .copied()
                .expect("a barrier");
            let bn = pl.nodes().iter().find(|n| n.id == barrier).unwrap();
            assert!(gate_reads.iter().all(|r| pl.deps(bn).contains(r)));
        }
    }
}

/// Random tokens with a predictor of some false positives and negatives.
fn tokens(seed: u64, count: u32, layers: u32, width: u32) -> Vec<TokenRecord> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..count)
        .map(|pos| {
            let act: Vec<Vec<u32>> = (0..layers)
                .map(|_| (0..width).filter(|_| rng.gen_bool(0.3)).collect())
                .collect();
            let pred: Vec<Vec<u32>> = act
                .iter()
                .map(|a| {
                    (0..width)
                        .filter(|n| {
                            if a.contains(n) {
                                rng.gen_bool(0.9)
                            } else {
                                rng.gen_bool(0.1)
                            }
                        })
                        .collect()
                })
                .collect();
            let a: Vec<&[u32]> = act.iter().map(|s| s.as_slice()).collect();
            let p: Vec<&[u32]> = pred.iter().map(|s| s.as_slice()).collect();
            predicted_token(pos, &a, &p)
        })
        .collect()
}

/// Walks every plan in op order (a topological order in which an Alloc follows the Evicts whose
/// memory it takes): the policy's memory never exceeds its budget; every Read follows an Alloc
/// of its tensor; every Evict waits for something (its load and last use); every op depends
/// only on earlier ops.
fn check_invariants(name: &str, params: serde_json::Value, cache_neurons: u64) {
    let ctx = dense_context(tiny_dense(3, 16), cache_neurons, params.clone());
    let budget = ctx.budget_bytes as i64;
    let mut p = crate::policy::build(name, ctx).unwrap();
    let mut b = PlanBuilder::new(0);
    p.plan_warmup(&mut b).unwrap();
    let w = b.finish().unwrap();
    let mut held: i64 = 0;
    let mut allocated: BTreeMap<TensorRef, i64> = BTreeMap::new();
    let mut walk = |pl: &Plan, held: &mut i64| {
        for n in pl.nodes() {
            for &d in pl.deps(n) {
                assert!(
                    d < n.id,
                    "{name} {params}: op {} depends on later op {d}",
                    n.id
                );
            }
            match n.op {
                Op::Alloc { tensor, bytes, .. } => {
                    *held += bytes as i64;
                    *allocated.entry(tensor).or_default() += 1;
                }
                Op::Evict { tensor, bytes, .. } => {
                    *held -= bytes as i64;
                    assert!(!pl.deps(n).is_empty(), "{name}: an Evict waits for nothing");
                    *allocated.entry(tensor).or_default() -= 1;
                }
                Op::Read { tensor, .. } => {
                    assert!(
                        allocated.get(&tensor).copied().unwrap_or(0) > 0,
                        "{name}: read of {tensor} without its alloc"
                    );
                }
                _ => {}
            }
            assert!(
                *held <= budget,
                "{name} {params}: holds {held} > budget {budget}"
            );
        }
    };
    walk(&w, &mut held);
    let mut next = w.end_id();
    let mut passes: Vec<Vec<TokenRecord>> = vec![tokens(4, 3, 3, 16)];
    passes.extend(tokens(5, 12, 3, 16).into_iter().map(|t| vec![t]));
    for toks in passes {
        let pl = plan(p.as_mut(), &neuron_pass(toks), next);
        next = pl.end_id();
        walk(&pl, &mut held);
    }
    assert_eq!(
        held as u64,
        p.memory().total(),
        "{name} {params}: accounting"
    );
    let c = p.counters();
    assert_eq!(c.hits + c.misses, c.lookups, "{name} {params}");
}

#[test]
fn every_new_policy_keeps_its_budget_and_its_dependencies() {
    for cache in [24, 60, 200] {
        for extra in [
            json!({}),
            json!({"two_phase": false}),
            json!({"bundles": false}),
            json!({"pipeline": false}),
            json!({"cold_cache": "none"}),
        ] {
            check_invariants("powerinfer2", cpu_only(extra), cache * ALIGNED);
        }
        check_invariants("llm-in-a-flash", json!({"predictor_rank": 4}), cache);
        check_invariants(
            "llm-in-a-flash",
            json!({"window": 1, "bundling": false, "predictor_rank": 4}),
            cache,
        );
        check_invariants("llama-cpp-mmap", json!({}), cache.max(50));
    }
    // With the NPU (hybrid decode, NPU prefill) and a calibrated hot/cold split, and v1.
    let cal = json!({"model_seed": 3, "seed": 9, "tokens": 50, "active_fraction": 0.3});
    for name in ["powerinfer2", "powerinfer"] {
        for cache in [60, 200] {
            let c = cache * ALIGNED;
            check_invariants(
                name,
                json!({"calibration": cal, "cold_cluster_neurons": 4, "predictor_rank": 8}),
                c,
            );
            let p = json!({"calibration": cal, "hot_neurons": 2, "cold_cluster_neurons": 4, "predictor_rank": 8});
            check_invariants(name, p, c);
        }
    }
}

#[test]
fn the_hot_cold_split_needs_a_calibration_trace_and_bad_parameters_are_refused() {
    let ctx = || dense_context(tiny_dense(2, 16), 64, json!({}));
    let err = crate::policy::build("powerinfer2", ctx()).err().unwrap();
    assert!(err.to_string().contains("calibration"), "{err}");
    let mut c = ctx();
    c.params = json!({"hot_cold": false, "npu": false, "cold_cluster_neurons": 0});
    assert!(crate::policy::build("powerinfer2", c).is_err());
    let mut c = ctx();
    c.params = json!({"hot_cold": false, "npu": false, "unknown": 1});
    let err = crate::policy::build("powerinfer2", c).err().unwrap();
    assert!(err.to_string().contains("unknown"), "{err}");
    // A budget below the fixed region (with predictors) plus one cold cluster is refused.
    let c = dense_context(
        tiny_dense(2, 16),
        1,
        cpu_only(json!({"predictor_cost": true})),
    );
    let err = crate::policy::build("powerinfer2", c).err().unwrap();
    assert!(
        matches!(err, crate::policy::PolicyError::BudgetTooSmall { .. }),
        "{err}"
    );
}
