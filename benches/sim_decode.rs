//! Simulator throughput on synthetic MoE decode plans, in simulated ops per second.
//!
//! Each token is one plan shaped like a Mixtral-style decode step, 32 layers:
//!
//! - `on_demand`: per layer an attention compute, a router (gate) compute, two expert reads
//!   from flash issued once the router has run, and two expert computes that wait for their
//!   read; the next layer waits for both experts. 6 ops per layer, 192 per token.
//! - `prefetch`: the same, but every read is issued at the plan's release (a prefetch that
//!   knows the routing), wrapped in an Alloc before it and an Evict after its compute, so
//!   64 reads queue on flash at once and memory is accounted. 10 ops per layer, 320 per token.
//!
//! Plans are built before timing starts, so the figures are the engine alone (pricing,
//! scheduling, reporting), not plan building.
//!
//! Run: `cargo bench --bench sim_decode`. Besides criterion's report, it prints one line per
//! shape, `sim_decode/<shape>: N ops in T s = X million ops/s`, from a plain timed loop (best
//! of 5).

use criterion::{black_box, Criterion, Throughput};
use edgesim::backend::Backend;
use edgesim::hw::testing::test_device;
use edgesim::model::Precision;
use edgesim::plan::{Op, Plan, PlanBuilder, TensorKind, TensorRef, Unit};
use edgesim::sim::Simulator;
use edgesim::units::{GIB, KIB};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::{Duration, Instant};

const LAYERS: u32 = 32;
const EXPERTS: u32 = 8;
const TOKENS: usize = 1_000;
const HIDDEN: u32 = 4096;
const FFN: u32 = 14336;

fn decode_plans(tokens: usize, seed: u64, prefetch: bool) -> Vec<Plan> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let big = Unit::Cpu {
        cluster: 0,
        threads: 4,
    };
    let expert_unit = Unit::Cpu {
        cluster: 0,
        threads: 2,
    };
    let expert_bytes = Precision::Int4.bytes_for(3 * HIDDEN as u64 * FFN as u64);
    let mut plans = Vec::with_capacity(tokens);
    let mut next_id = 0;
    for _ in 0..tokens {
        let mut b = PlanBuilder::new(next_id);
        let mut layer_done: Vec<_> = Vec::new();
        for layer in 0..LAYERS {
            let attention = TensorRef::new(layer, TensorKind::Attention);
            let attn = b.push(
                Op::matmul(attention, big, Precision::Int4, 4 * HIDDEN, HIDDEN, 1),
                &layer_done,
            );
            let router = TensorRef::new(layer, TensorKind::Router);
            let gate = b.push(
                Op::matmul(router, big, Precision::Fp16, EXPERTS, HIDDEN, 1),
                &[attn],
            );
            layer_done.clear();
            for _ in 0..2 {
                let expert = TensorRef::expert(layer, rng.gen_range(0..EXPERTS));
                let read_op = Op::Read {
                    tensor: expert,
                    precision: Precision::Int4,
                    bytes: expert_bytes,
                    request_bytes: 512 * KIB as u32,
                };
                let compute_op =
                    Op::matmul(expert, expert_unit, Precision::Int4, 3 * FFN, HIDDEN, 1);
                if prefetch {
                    let alloc = b.push(
                        Op::Alloc {
                            tensor: expert,
                            bytes: expert_bytes,
                            secure: false,
                        },
                        &[],
                    );
                    let read = b.push(read_op, &[alloc]);
                    let compute = b.push(compute_op, &[read, gate]);
                    b.push(
                        Op::Evict {
                            tensor: expert,
                            bytes: expert_bytes,
                            secure: false,
                        },
                        &[compute],
                    );
                    layer_done.push(compute);
                } else {
                    let read = b.push(read_op, &[gate]);
                    layer_done.push(b.push(compute_op, &[read, gate]));
                }
            }
        }
        let output = *layer_done.last().unwrap();
        b.set_output(output);
        let plan = b.finish().unwrap();
        next_id = plan.end_id();
        plans.push(plan);
    }
    plans
}

/// Runs every plan on a fresh simulator; returns the number of ops reported.
fn replay(plans: &[Plan]) -> usize {
    let mut sim = Simulator::new(&test_device(), 64 * GIB).unwrap();
    let mut reported = 0;
    for plan in plans {
        reported += sim.run(plan).unwrap().ops.len();
    }
    reported + sim.drain().unwrap().len()
}

fn main() {
    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(5));
    let mut lines = Vec::new();
    for (shape, prefetch) in [("on_demand", false), ("prefetch", true)] {
        let plans = decode_plans(TOKENS, 42, prefetch);
        let ops: usize = plans.iter().map(|p| p.len()).sum();
        assert_eq!(replay(&plans), ops, "every op reported once");

        let mut group = c.benchmark_group("sim_decode");
        group.throughput(Throughput::Elements(ops as u64));
        group.bench_function(shape, |b| b.iter(|| black_box(replay(black_box(&plans)))));
        group.finish();

        let best = (0..5)
            .map(|_| {
                let t = Instant::now();
                black_box(replay(&plans));
                t.elapsed()
            })
            .min()
            .unwrap();
        lines.push(format!(
            "sim_decode/{shape}: {ops} ops in {:.4} s = {:.2} million ops/s",
            best.as_secs_f64(),
            ops as f64 / best.as_secs_f64() / 1e6
        ));
    }
    for line in lines {
        println!("{line}");
    }
    c.final_summary();
}
