//! The confidential family on the simulator: TZ-LLM's greedy priority on a hand-worked
//! three-tensor schedule, and strawman ≥ tzllm ≥ lower bound on random dense models.

use edgesim::backend::{Backend, OpTiming};
use edgesim::hw::testing::test_device;
use edgesim::model::{ModelGeometry, ModelProfile, Precision, TensorKind, TensorRef};
use edgesim::plan::{Op, OpId, PlanBuilder, Unit};
use edgesim::policy::confidential::restoration::{Lanes, MicroOps, Restorable, Restorer};
use edgesim::policy::{self, PolicyContext};
use edgesim::replay::{replay, PassList, ReplayOptions};
use edgesim::sim::Simulator;
use edgesim::trace::{ForwardPass, Phase, TokenRecord};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Three tensors T0, T1, T2, each restored by one decryption on all four cores (duration d),
/// consumed in order by NPU ops c0, c1, c2 (duration e = d here: same bytes as work). The
/// decryptions are pushed in reverse order (T2 first), so first-come-first-served takes T2
/// first. Worked by hand:
///
/// ```text
/// greedy (earliest consumer first):  CPU  dT0 [0,d]  dT1 [d,2d]  dT2 [2d,3d]
///                                    NPU             c0 [d,2d]   c1 [2d,3d]  c2 [3d,4d]
/// FIFO:                              CPU  dT2 [0,d]  dT1 [d,2d]  dT0 [2d,3d]
///                                    NPU                                     c0, c1, c2 [3d,6d]
/// ```
#[test]
fn greedy_priority_restores_the_earliest_consumer_first_three_tensors() {
    let run = |priority: bool| -> (BTreeMap<&'static str, OpTiming>, u64) {
        let device = test_device();
        let mut sim = Simulator::new(&device, 1 << 30).unwrap();
        let r = Restorer {
            protect: true,
            micro: MicroOps {
                alloc_bytes: 0,
                read_bytes: 0,
                decrypt_bytes: 0,
            },
            priority,
            alloc_lanes: 1,
            precision: Precision::Int8,
        };
        let mut b = PlanBuilder::new(0);
        let tensor = |l: u32| TensorRef::new(l, TensorKind::DenseFfn);
        let bytes = 12 << 20;
        let mut decrypts = BTreeMap::new();
        for rank in [2u16, 1, 0] {
            let d = b.push_with_priority(
                Op::Decrypt {
                    tensor: tensor(rank as u32),
                    bytes,
                    cluster: 0,
                    threads: 4,
                },
                &[],
                r.priority(rank),
            );
            decrypts.insert(rank, d);
        }
        let mut prev: Option<OpId> = None;
        let mut computes = Vec::new();
        for rank in 0u16..3 {
            let mut deps = vec![decrypts[&rank]];
            deps.extend(prev);
            let c = b.push_with_priority(
                Op::matmul(
                    tensor(rank as u32),
                    Unit::Accel,
                    Precision::Int8,
                    1024,
                    1024,
                    1,
                ),
                &deps,
                r.compute_priority(),
            );
            computes.push(c);
            prev = Some(c);
        }
        b.set_output(prev.unwrap());
        let step = sim.run(&b.finish().unwrap()).unwrap();
        let by_id: BTreeMap<OpId, OpTiming> = step.ops.iter().map(|t| (t.id, *t)).collect();
        let names = ["dT0", "dT1", "dT2"];
        let mut out = BTreeMap::new();
        for (rank, name) in names.iter().enumerate() {
            out.insert(*name, by_id[&decrypts[&(rank as u16)]]);
        }
        for (i, name) in ["c0", "c1", "c2"].iter().enumerate() {
            out.insert(*name, by_id[&computes[i]]);
        }
        (out, step.output_ready.0)
    };
    let (g, greedy_end) = run(true);
    let d = g["dT0"].end.0 - g["dT0"].start.0;
    assert!(d > 0);
    assert_eq!(g["dT0"].start.0, 0);
    assert_eq!(g["dT1"].start.0, d);
    assert_eq!(g["dT2"].start.0, 2 * d);
    // Each compute starts when its tensor is decrypted and the previous compute is done.
    assert_eq!(g["c0"].start, g["dT0"].end);
    assert_eq!(g["c1"].start, g["dT1"].end.max(g["c0"].end));
    assert_eq!(g["c2"].start, g["dT2"].end.max(g["c1"].end));
    let e = g["c0"].end.0 - g["c0"].start.0;
    assert_eq!(
        greedy_end,
        (d + e).max(2 * d + e).max(3 * d + e).max(d + 3 * e)
    );

    let (f, fifo_end) = run(false);
    assert_eq!(f["dT2"].start.0, 0);
    assert_eq!(f["dT1"].start.0, d);
    assert_eq!(f["dT0"].start.0, 2 * d);
    assert_eq!(f["c0"].start.0, 3 * d);
    assert_eq!(fifo_end, 3 * d + 3 * e);
    assert!(greedy_end < fifo_end);
}

/// A compute op that becomes ready while restoration micro-ops hold the cores waits only
/// for the micro-ops running then (preemption at micro-op boundaries), not for the queued
/// ones.
#[test]
fn a_ready_compute_preempts_restoration_at_the_next_micro_op_boundary() {
    let device = test_device();
    let mut sim = Simulator::new(&device, 1 << 30).unwrap();
    let r = Restorer {
        protect: true,
        micro: MicroOps {
            alloc_bytes: 4 << 20,
            read_bytes: 4 << 20,
            decrypt_bytes: 64 << 10,
        },
        priority: true,
        alloc_lanes: 2,
        precision: Precision::Int8,
    };
    let mut b = PlanBuilder::new(0);
    let big = Restorable {
        tensor: TensorRef::new(5, TensorKind::DenseFfn),
        bytes: 32 << 20,
        rank: 5,
    };
    let ready = r.restore(&big, &mut Lanes::new(2), &[], &mut b);
    // A short CPU op that becomes ready early, on all four cores, at compute priority.
    let cpu = Unit::Cpu {
        cluster: 0,
        threads: 4,
    };
    let t0 = TensorRef::new(0, TensorKind::Attention);
    let first = b.push_with_priority(
        Op::matmul(t0, Unit::Accel, Precision::Int8, 64, 64, 1),
        &[],
        r.compute_priority(),
    );
    let urgent = b.push_with_priority(
        Op::matmul(t0, cpu, Precision::Int8, 256, 256, 1),
        &[first],
        r.compute_priority(),
    );
    let end = b.push(Op::Join, &[ready, urgent]);
    b.set_output(end);
    let plan = b.finish().unwrap();
    let step = sim.run(&plan).unwrap();
    let t: BTreeMap<OpId, OpTiming> = step.ops.iter().map(|t| (t.id, *t)).collect();
    let urgent_t = t[&urgent];
    let ready_at = t[&first].end;
    // The longest restoration micro-op on the CPU bounds the wait.
    let longest = plan
        .nodes()
        .iter()
        .filter(|n| matches!(n.op, Op::Alloc { secure: true, .. } | Op::Decrypt { .. }))
        .map(|n| t[&n.id].end.0 - t[&n.id].start.0)
        .max()
        .unwrap();
    assert!(urgent_t.start.0 - ready_at.0 <= longest);
    // Restoration was still running after the urgent op: it was preempted, not finished.
    assert!(t[&ready].end > urgent_t.end);
}

fn dense(layers: u32, hidden: u32, ffn: u32, vocab: u32) -> ModelGeometry {
    let json = format!(
        r#"{{
        "name": "random-dense", "description": "test model",
        "layers": {{"value": {layers}, "source": "test"}}, "hidden": {{"value": {hidden}, "source": "test"}},
        "ffn": {{"value": {ffn}, "source": "test"}}, "heads": {{"value": {}, "source": "test"}},
        "kv_heads": {{"value": {}, "source": "test"}}, "vocab": {{"value": {vocab}, "source": "test"}},
        "ffn_kind": "gated", "tied_embeddings": false, "native_bits": {{"value": 16.0, "source": "test"}}
    }}"#,
        hidden / 128,
        (hidden / 512).max(1)
    );
    let p: ModelProfile = serde_json::from_str(&json).unwrap();
    ModelGeometry::from_profile(&p).unwrap()
}

fn prompt(tokens: u32) -> ForwardPass {
    ForwardPass {
        sequence: 0,
        phase: Phase::Prefill,
        tokens: (0..tokens)
            .map(|p| TokenRecord {
                sequence: 0,
                position: p,
                phase: Phase::Prefill,
                ..TokenRecord::default()
            })
            .collect(),
    }
}

/// TTFT of `name` on one prompt on the rk3588 profile, and its prefill breakdown.
fn ttft(model: &ModelGeometry, name: &str, tokens: u32) -> (u64, edgesim::replay::Breakdown) {
    let device = edgesim::scenario::load_device("rk3588").unwrap();
    let budget = 12u64 << 30;
    let ctx = PolicyContext {
        model: Arc::new(model.clone()),
        device: Arc::new(device.clone()),
        budget_bytes: budget,
        resident_precision: Precision::Int8,
        offload_precision: Precision::Int8,
        max_context: tokens,
        seed: 1,
        params: serde_json::Value::Null,
        load_ops: edgesim::policy::machinery::load_ops::plain(),
    };
    let mut p = policy::build(name, ctx).unwrap();
    let mut sim = Simulator::new(&device, budget).unwrap();
    let options = ReplayOptions {
        breakdown: true,
        ..ReplayOptions::default()
    };
    let out = replay(
        p.as_mut(),
        &mut sim,
        budget,
        &mut PassList(std::iter::once(prompt(tokens))),
        &options,
    )
    .unwrap();
    (out.passes[0].latency.0, out.prefill_breakdown.unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// On random dense models of realistic shape, the strawman's TTFT is at least TZ-LLM's,
    /// and TZ-LLM's is at least its lower bound max(I/O, CPU, computation).
    #[test]
    fn strawman_at_least_tzllm_at_least_the_lower_bound(
        layers in 1u32..6,
        hidden_k in 4u32..17,
        ffn_ratio in 2u32..4,
        vocab_k in 8u32..64,
        tokens in 1u32..300,
    ) {
        let hidden = hidden_k * 256;
        let model = dense(layers, hidden, hidden * ffn_ratio, vocab_k * 1000);
        let (tz, bd) = ttft(&model, "tzllm", tokens);
        let (straw, _) = ttft(&model, "tee-strawman", tokens);
        let bound = bd.lower_bound_ns(4);
        prop_assert!(straw >= tz, "strawman {straw} < tzllm {tz}");
        prop_assert!(tz >= bound, "tzllm {tz} < bound {bound}");
    }
}

#[test]
fn the_simulator_prices_an_npu_handover_at_the_profile_reinit() {
    let device = edgesim::scenario::load_device("rk3588").unwrap();
    let mut sim = Simulator::new(&device, 1 << 30).unwrap();
    let mut b = PlanBuilder::new(0);
    let h = b.push(
        Op::NpuHandover {
            to: edgesim::plan::World::Secure,
        },
        &[],
    );
    b.set_output(h);
    let step = sim.run(&b.finish().unwrap()).unwrap();
    let want = device.tee.as_ref().unwrap().npu_reinit_ns.value;
    assert_eq!(step.ops[0].end.0 - step.ops[0].start.0, want);
}
