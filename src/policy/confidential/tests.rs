//! Plan-shape tests of the confidential family (no backend: the schedules are tested in
//! `tests/confidential.rs`).

use super::build;
use crate::model::{Precision, TensorKind};
use crate::plan::{Op, Plan, PlanBuilder};
use crate::policy::test_support::{dense_context, neuron_pass, neuron_token, tiny_dense};
use crate::policy::{Policy, PolicyContext, PolicyError};
use crate::trace::{ForwardPass, Phase};

fn ctx(params: serde_json::Value) -> PolicyContext {
    let mut c = dense_context(tiny_dense(3, 128), 0, params);
    c.budget_bytes = 1 << 30;
    c.offload_precision = Precision::Int8;
    c
}

/// A request of `prompt` prefill tokens and `decode` generated ones, for sequence `seq`.
fn request(seq: u32, prompt: u32, decode: u32) -> Vec<ForwardPass> {
    let layers: Vec<&[u32]> = vec![&[], &[], &[]];
    let mut prefill = neuron_pass((0..prompt).map(|p| neuron_token(seq, p, &layers)).collect());
    prefill.phase = Phase::Prefill;
    for t in &mut prefill.tokens {
        t.phase = Phase::Prefill;
    }
    let mut out = vec![prefill];
    for p in prompt..prompt + decode {
        out.push(neuron_pass(vec![neuron_token(seq, p, &layers)]));
    }
    out
}

fn plans(policy: &mut dyn Policy, passes: &[ForwardPass]) -> Vec<Plan> {
    let mut b = PlanBuilder::new(0);
    policy.plan_warmup(&mut b).unwrap();
    let mut out = vec![b.finish().unwrap()];
    for p in passes {
        let mut b = PlanBuilder::new(out.last().unwrap().end_id());
        policy.plan_pass(p, &mut b).unwrap();
        out.push(b.finish().unwrap());
    }
    out
}

fn count(plan: &Plan, f: impl Fn(&Op) -> bool) -> usize {
    plan.nodes().iter().filter(|n| f(&n.op)).count()
}

/// A parameter's read, decryption or secure allocation (the KV cache's is not restoration).
fn is_restoration(op: &Op) -> bool {
    match op {
        Op::Read { .. } | Op::Decrypt { .. } => true,
        Op::Alloc { secure, tensor, .. } => *secure && tensor.kind != TensorKind::KvCache,
        _ => false,
    }
}

#[test]
fn with_everything_cached_no_request_restores_anything() {
    let mut p = build("tzllm", ctx(serde_json::json!({"cache_fraction": 1.0}))).unwrap();
    let passes: Vec<ForwardPass> = [request(0, 4, 2), request(1, 3, 1)].concat();
    let all = plans(p.as_mut(), &passes);
    // The warm-up restores every parameter, in secure memory, with decryption.
    assert!(count(&all[0], |o| matches!(o, Op::Decrypt { .. })) > 0);
    for plan in &all[1..] {
        assert_eq!(count(plan, is_restoration), 0);
    }
    assert_eq!(p.counters().misses, 0);
    assert_eq!(p.counters().hits, p.counters().lookups);
}

#[test]
fn without_caching_every_request_restores_every_parameter_in_artifact_units() {
    let c = ctx(serde_json::Value::Null);
    let model = c.model.clone();
    let mut p = build("tzllm", c).unwrap();
    let passes: Vec<ForwardPass> = [request(0, 4, 1), request(1, 4, 1)].concat();
    let all = plans(p.as_mut(), &passes);
    let total: u64 = {
        let mut t = model.bytes(0, TensorKind::Embedding, Precision::Int8)
            + model.bytes(0, TensorKind::LmHead, Precision::Int8);
        for l in 0..3 {
            t += model.bytes(l, TensorKind::Attention, Precision::Int8)
                + model.bytes(l, TensorKind::DenseFfn, Precision::Int8);
        }
        t
    };
    for request_plan in [&all[1], &all[3]] {
        let decrypted: u64 = request_plan
            .nodes()
            .iter()
            .map(|n| match n.op {
                Op::Decrypt { bytes, threads, .. } => {
                    assert!(bytes <= 64 << 10 && threads == 1);
                    bytes
                }
                _ => 0,
            })
            .sum();
        assert_eq!(decrypted, total);
        assert!(request_plan.nodes().iter().all(|n| match n.op {
            Op::Read { bytes, .. }
            | Op::Alloc {
                bytes,
                secure: true,
                ..
            } if n.op.tensor().map(|t| t.kind) != Some(TensorKind::KvCache) => bytes <= 4 << 20,
            _ => true,
        }));
    }
    // The second request first releases the first's parameters, in secure memory.
    let evicts = count(&all[3], |o| matches!(o, Op::Evict { secure: true, .. }));
    assert_eq!(evicts, 2 * 3 + 2 + 1); // 3 layers x (attention, FFN), embedding, LM head, KV
                                       // Decode passes restore nothing.
    assert_eq!(count(&all[2], is_restoration), 0);
}

#[test]
fn the_co_driver_wraps_every_npu_job_in_a_switch_pair() {
    let mut p = build("tzllm", ctx(serde_json::json!({"cache_fraction": 1.0}))).unwrap();
    let all = plans(p.as_mut(), &request(0, 2, 1));
    for plan in &all[1..] {
        let jobs = count(plan, |o| {
            matches!(
                o,
                Op::Compute {
                    unit: crate::plan::Unit::Accel,
                    ..
                }
            )
        });
        assert!(jobs > 0);
        assert_eq!(
            count(plan, |o| matches!(o, Op::WorldSwitch { .. })),
            2 * jobs
        );
    }
    let mut exclusive = build(
        "tzllm",
        ctx(serde_json::json!({"cache_fraction": 1.0, "npu": "exclusive"})),
    )
    .unwrap();
    let all = plans(exclusive.as_mut(), &request(0, 2, 1));
    assert_eq!(count(&all[1], |o| matches!(o, Op::NpuHandover { .. })), 1);
    assert_eq!(count(&all[1], |o| matches!(o, Op::WorldSwitch { .. })), 0);
}

#[test]
fn the_strawman_restores_everything_before_computing_on_the_cpu_only() {
    let mut p = build("tee-strawman", ctx(serde_json::Value::Null)).unwrap();
    let all = plans(p.as_mut(), &request(0, 3, 1));
    let prefill = &all[1];
    assert_eq!(
        count(prefill, |o| matches!(
            o,
            Op::Compute {
                unit: crate::plan::Unit::Accel,
                ..
            }
        )),
        0
    );
    // Every compute comes after every restoration op in plan order (the chain is serial).
    let last_restoration = prefill
        .nodes()
        .iter()
        .rposition(|n| is_restoration(&n.op))
        .unwrap();
    let first_compute = prefill
        .nodes()
        .iter()
        .position(|n| matches!(n.op, Op::Compute { .. }))
        .unwrap();
    assert!(last_restoration < first_compute);
}

#[test]
fn the_ree_baselines_neither_allocate_secure_memory_nor_decrypt() {
    for name in ["ree-memory", "ree-flash"] {
        let mut p = build(name, ctx(serde_json::Value::Null)).unwrap();
        for plan in plans(p.as_mut(), &request(0, 3, 2)) {
            assert_eq!(
                count(&plan, |o| matches!(
                    o,
                    Op::Decrypt { .. } | Op::Alloc { secure: true, .. } | Op::WorldSwitch { .. }
                )),
                0,
                "{name}"
            );
        }
    }
    // ree-memory reads only in the warm-up.
    let mut p = build("ree-memory", ctx(serde_json::Value::Null)).unwrap();
    let all = plans(p.as_mut(), &request(0, 3, 2));
    assert!(count(&all[0], |o| matches!(o, Op::Read { .. })) > 0);
    assert!(all[1..]
        .iter()
        .all(|p| count(p, |o| matches!(o, Op::Read { .. })) == 0));
}

#[test]
fn a_model_larger_than_the_secure_region_is_refused() {
    let err = build(
        "tzllm",
        ctx(serde_json::json!({"secure_region_bytes": 1 << 10})),
    )
    .err()
    .unwrap();
    assert!(
        matches!(&err, PolicyError::BudgetTooSmall { what, .. } if what.contains("secure parameter region")),
        "{err}"
    );
}

#[test]
fn secure_memory_held_stays_within_the_region_and_the_budget() {
    let c = ctx(serde_json::json!({"cache_fraction": 0.4}));
    let budget = c.budget_bytes;
    let mut p = super::tzllm::build(c).unwrap();
    let passes: Vec<ForwardPass> = [request(0, 4, 2), request(1, 2, 2), request(2, 5, 1)].concat();
    let _ = plans(&mut p, &passes);
    assert!(p.peak_secure_bytes > 0);
    assert!(p.peak_secure_bytes <= super::tzllm::ARTIFACT_SECURE_REGION_BYTES);
    assert!(p.memory().total() <= budget);
}

#[test]
fn unknown_parameters_and_moe_models_are_refused() {
    assert!(matches!(
        build("tzllm", ctx(serde_json::json!({"pipelined": true}))),
        Err(PolicyError::BadParameter(_))
    ));
    let moe =
        crate::policy::test_support::context(2.0, Precision::Int4, false, serde_json::Value::Null);
    for name in ["tzllm", "ree-flash", "tee-strawman"] {
        assert!(matches!(
            build(name, moe.clone()),
            Err(PolicyError::Unsupported(_))
        ));
    }
    // And the MoE wrapper refuses a dense model.
    assert!(matches!(
        build("tzllm-hobbit", ctx(serde_json::Value::Null)),
        Err(PolicyError::Unsupported(_))
    ));
}
