//! PowerInfer-2's neuron-cluster pipeline (arXiv 2406.06282 §4.3, Fig. 6) against a schedule
//! worked out by hand: one layer, three cold clusters with one predicted and active neuron
//! each, two compute cores and the one flash queue, with and without the pipeline switch.
//!
//! The device is the test phone with round flash figures: a 4 KiB read spends 10 µs on its way
//! to the queue (`R`, the command stage before the link) and then holds the one link 10 µs
//! (`T`); compute durations (attention `A`, a one-row gate compute `g`, a two-row up/down
//! compute `u`, the head `H`) are taken from the cost model. The schedule itself is derived
//! in the comments of each test, not read back from the simulator.

use edgesim::backend::Backend;
use edgesim::hw::testing::test_device;
use edgesim::hw::{CurvePoint, DeviceProfile};
use edgesim::model::{ModelGeometry, ModelProfile, Precision, TensorKind, TensorRef};
use edgesim::plan::{Op, Plan, PlanBuilder, Unit};
use edgesim::policy::machinery::load_ops;
use edgesim::policy::machinery::resident::ResidentSet;
use edgesim::policy::{Policy, PolicyContext};
use edgesim::sim::Simulator;
use edgesim::sourced::Sourced;
use edgesim::trace::{ForwardPass, Phase, TokenRecord};
use serde_json::json;
use std::sync::Arc;

const R: u64 = 10_000;
const T: u64 = 10_000;

fn fixture<V>(value: V) -> Sourced<V> {
    Sourced {
        value,
        source: "test fixture".into(),
    }
}

/// The test phone with one two-core CPU cluster and a flash whose 4 KiB reads cost `R` + `T`.
fn device() -> DeviceProfile {
    let mut d = test_device();
    d.cpu.truncate(1);
    d.cpu[0].cores = fixture(2);
    d.storage.read_curve = fixture(vec![CurvePoint {
        request_bytes: 4096,
        // 409.6 MB/s: 4 KiB in exactly T (4096 · 1e9 / 4.096e8 = 10,000 ns).
        bytes_per_s: 4.096e8,
    }]);
    // A lone 4 KiB read: command (t_cmd = T at the curve's one point) + transfer (T), no
    // media delay left over.
    d.storage.request_latency_ns = fixture(R + T);
    d
}

/// One gated layer of 16 neurons, hidden 64 (a neuron's three int4 rows are 108 bytes; its
/// bundle, aligned to 4 KiB, is read as two 2 KiB parts, each a 4 KiB block on the flash).
fn model() -> ModelGeometry {
    let p: ModelProfile = serde_json::from_value(json!({
        "name": "tiny-dense", "description": "test model",
        "layers": {"value": 1, "source": "test"}, "hidden": {"value": 64, "source": "test"},
        "ffn": {"value": 16, "source": "test"}, "heads": {"value": 4, "source": "test"},
        "kv_heads": {"value": 2, "source": "test"}, "vocab": {"value": 100, "source": "test"},
        "ffn_kind": "gated", "tied_embeddings": false, "native_bits": {"value": 16.0, "source": "test"}
    }))
    .unwrap();
    ModelGeometry::from_profile(&p).unwrap()
}

fn policy(pipeline: bool) -> (Box<dyn Policy>, DeviceProfile) {
    let d = device();
    let mut ctx = PolicyContext {
        budget_bytes: 0,
        model: Arc::new(model()),
        device: Arc::new(d.clone()),
        resident_precision: Precision::Int8,
        offload_precision: Precision::Int4,
        max_context: 16,
        seed: 3,
        // CPU only, no hot cluster, no predictor cost: the cold pipeline alone, in clusters of
        // 4 ranks (rank = neuron id without a calibrated plan).
        params: json!({"hot_cold": false, "npu": false, "predictor_cost": false,
                       "cold_cluster_neurons": 4, "pipeline": pipeline}),
        load_ops: load_ops::plain(),
    };
    ctx.budget_bytes = ResidentSet::new(&ctx, false).bytes() + 64 * 4096;
    (edgesim::policy::build("powerinfer2", ctx).unwrap(), d)
}

/// A decode token at position 0 whose active and predicted neurons are 1, 5 and 9: one in
/// each of the clusters 0–3, 4–7 and 8–11.
fn pass() -> ForwardPass {
    let mut t = TokenRecord {
        sequence: 0,
        position: 0,
        phase: Phase::Decode,
        ..TokenRecord::default()
    };
    t.neurons = vec![1, 5, 9];
    t.neuron_offsets = vec![0, 3];
    t.predicted_neurons = vec![1, 5, 9];
    t.predicted_neuron_offsets = vec![0, 3];
    ForwardPass {
        sequence: 0,
        phase: Phase::Decode,
        tokens: vec![t],
    }
}

struct Run {
    makespan: u64,
    /// Durations of the compute ops as the cost model prices them.
    attention: u64,
    gate: u64,
    up_down: u64,
    head: u64,
    /// End of each cold read (relative to the pass's start), in plan order: gate reads, then
    /// up/down reads.
    read_ends: Vec<u64>,
}

fn run(pipeline: bool) -> Run {
    let (mut p, d) = policy(pipeline);
    let mut b = PlanBuilder::new(0);
    p.plan_warmup(&mut b).unwrap();
    let warm = b.finish().unwrap();
    let mut sim = Simulator::new(&d, u64::MAX).unwrap();
    sim.run(&warm).unwrap();
    sim.drain().unwrap();
    let mut b = PlanBuilder::new(warm.end_id());
    p.plan_pass(&pass(), &mut b).unwrap();
    let plan: Plan = b.finish().unwrap();
    let step = sim.run(&plan).unwrap();
    let start = step.start.0;
    let mut timings = step.ops;
    timings.extend(sim.drain().unwrap());
    let duration_of = |pred: &dyn Fn(&Op) -> bool| -> u64 {
        let node = plan.nodes().iter().find(|n| pred(&n.op)).unwrap();
        sim.price(&node.op).unwrap().duration.0
    };
    let cold = |op: &Op, rows: u32| matches!(op, Op::Compute { tensor: TensorRef { kind: TensorKind::Neurons { .. }, .. }, rows: r, .. } if *r == rows);
    let attention = duration_of(&|op| {
        matches!(
            op,
            Op::Compute {
                tensor: TensorRef {
                    kind: TensorKind::Attention,
                    ..
                },
                ..
            }
        )
    });
    let head = duration_of(
        &|op| matches!(op, Op::Compute { tensor: TensorRef { kind, .. }, .. } if matches!(kind, TensorKind::LmHead | TensorKind::Embedding)),
    );
    let gate = duration_of(&|op| cold(op, 1));
    let up_down = duration_of(&|op| cold(op, 2));
    // Every compute op runs on one core of the two-core cluster, attention and head on both.
    for n in plan.nodes() {
        if let Op::Compute { unit, tensor, .. } = n.op {
            let threads = match unit {
                Unit::Cpu { threads, .. } => threads,
                Unit::Accel => panic!("no NPU here"),
            };
            let want = if matches!(tensor.kind, TensorKind::Neurons { .. }) {
                1
            } else {
                2
            };
            assert_eq!(threads, want, "{tensor}");
        }
    }
    let read_ends = plan
        .nodes()
        .iter()
        .filter(|n| matches!(n.op, Op::Read { .. }))
        .map(|n| timings.iter().find(|t| t.id == n.id).unwrap().end.0 - start)
        .collect();
    Run {
        makespan: step.output_ready.0 - start,
        attention,
        gate,
        up_down,
        head,
        read_ends,
    }
}

#[test]
fn the_device_prices_a_4k_read_as_r_then_t() {
    let d = device();
    let sim = Simulator::new(&d, u64::MAX).unwrap();
    let read = Op::Read {
        tensor: TensorRef::new(0, TensorKind::DenseFfn),
        precision: Precision::Int4,
        bytes: 2048,
        request_bytes: 2048,
    };
    let c = sim.price(&read).unwrap();
    assert_eq!((c.latency.0, c.duration.0), (R, T));
}

#[test]
fn with_the_pipeline_each_cluster_moves_on_as_its_own_reads_land() {
    let r = run(true);
    let (a, g, u, h) = (r.attention, r.gate, r.up_down, r.head);
    // The hand schedule holds when a core is always free and a gate compute is shorter than
    // one link slot (checked, so a change of the fixture cannot make it silently wrong).
    assert!(g < T && u < T, "g {g} u {u}");
    // t = A: attention ends; the three gate reads start their trip (R) and queue on the link
    // in plan order: G1 ends A+R+T, G2 A+R+2T, G3 A+R+3T.
    // GC1 runs A+R+T .. A+R+T+g; UD1 is issued then, reaches the link at A+2R+T+g, which is
    // busy with G3 until A+R+3T (= A+40 µs > A+30 µs+g), so UD1 ends A+R+4T.
    // GC2 at A+R+2T, UD2 reaches the link at A+2R+2T+g < A+R+4T: ends A+R+5T.
    // GC3 at A+R+3T, UD3 ends A+R+6T.
    // UDC3 is the last compute: A+R+6T .. A+R+6T+u; then the join and the head.
    let ends: Vec<u64> = [1, 2, 3, 4, 5, 6].iter().map(|k| a + R + k * T).collect();
    assert_eq!(r.read_ends, ends);
    assert_eq!(r.makespan, a + R + 6 * T + u + h);
}

#[test]
fn without_the_pipeline_each_stage_waits_for_the_whole_previous_one() {
    let r = run(false);
    let (a, g, u, h) = (r.attention, r.gate, r.up_down, r.head);
    assert!(g < T && u < T, "g {g} u {u}");
    // The gate reads as above: the last ends A+R+3T (the GIO barrier).
    // GC1 and GC2 run on the two cores A+R+3T .. +g, GC3 after them: the GC barrier at
    // A+R+3T+2g. Then the three up/down reads: trip R, link T each, the last ends
    // A+2R+6T+2g (the UDIO barrier). UDC1 and UDC2 on the two cores, UDC3 after: +2u.
    let gates: Vec<u64> = [1, 2, 3].iter().map(|k| a + R + k * T).collect();
    let ups: Vec<u64> = [1, 2, 3]
        .iter()
        .map(|k| a + 2 * R + (3 + k) * T + 2 * g)
        .collect();
    assert_eq!(r.read_ends, [gates, ups].concat());
    assert_eq!(r.makespan, a + 2 * R + 6 * T + 2 * g + 2 * u + h);
}

#[test]
fn the_pipeline_saves_what_the_barriers_serialise() {
    let (on, off) = (run(true), run(false));
    eprintln!(
        "A {} g {} u {} H {} ns; makespan pipeline {} ns, barriers {} ns",
        on.attention, on.gate, on.up_down, on.head, on.makespan, off.makespan
    );
    // Off − on = R (the up/down reads' trip, no longer hidden) + 2g + u.
    assert_eq!(off.makespan - on.makespan, R + 2 * off.gate + off.up_down);
}
