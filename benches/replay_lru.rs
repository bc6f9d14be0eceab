//! Simulator speed on a real workload (issue 2, item 8): a 10,000-token Mixtral-8x7B trace
//! replayed under `lru` on the Jetson AGX Orin profile, end to end — pass grouping, planning,
//! pricing and scheduling. Prints simulated ops per second and layer-steps per second (one
//! layer of one forward pass), medians of several timed replays.
//!
//! `cargo bench --bench replay_lru`

use criterion::{criterion_group, Criterion};
use edgesim::model::{ModelGeometry, Precision};
use edgesim::replay::{replay, ReplayOptions};
use edgesim::scenario::experiment::policy_context;
use edgesim::scenario::{BudgetSpec, Experiment, Footprint, PolicySpec};
use edgesim::sim::Simulator;
use edgesim::trace::gen::{ExpertGenConfig, ExpertTraceGenerator};
use edgesim::trace::{PassGrouper, TokenRecord, TokenSource, VecSource};
use std::sync::Arc;
use std::time::Instant;

const TOKENS: u64 = 10_000;

struct Setup {
    model: Arc<ModelGeometry>,
    device: Arc<edgesim::hw::DeviceProfile>,
    experiment: Experiment,
    header: edgesim::trace::TraceHeader,
    records: Vec<TokenRecord>,
    budget: u64,
}

fn setup() -> Setup {
    let profile = edgesim::scenario::load_model("mixtral-8x7b").unwrap();
    let model = ModelGeometry::from_profile(&profile).unwrap();
    let mut cfg = ExpertGenConfig::new(&model, 11, TOKENS);
    cfg.sequences = 10;
    cfg.prefill_per_sequence = 128;
    let mut generator = ExpertTraceGenerator::new(&model, &cfg).unwrap();
    let header = generator.header().clone();
    let mut records = Vec::new();
    let mut rec = TokenRecord::default();
    while generator.next_into(&mut rec).unwrap() {
        records.push(rec.clone());
    }
    let experiment = Experiment {
        file: "benches/replay_lru.rs".into(),
        name: "bench".into(),
        description: String::new(),
        device: "jetson-agx-orin".into(),
        model: "mixtral-8x7b".into(),
        trace: Some("generated".into()),
        workloads: vec![],
        resident_precision: Precision::Int8,
        offload_precision: Precision::Int8,
        budgets: vec![],
        policies: vec![PolicySpec {
            name: "lru".into(),
            label: None,
            params: serde_json::Value::Null,
        }],
        seed: 1,
        max_prefill_chunk: None,
        max_context: Some(1024),
        analysis: None,
    };
    let fp = Footprint::of(&model, Precision::Int8, Precision::Int8, 1024);
    let (budget, _) = BudgetSpec {
        label: None,
        bytes: None,
        gib: None,
        cache_fraction: Some(0.3),
    }
    .resolve(fp, "bench")
    .unwrap();
    Setup {
        model: Arc::new(model),
        device: Arc::new(edgesim::scenario::load_device("jetson-agx-orin").unwrap()),
        experiment,
        header,
        records,
        budget,
    }
}

/// One full replay; returns (ops simulated, layer-steps, seconds).
fn run(s: &Setup) -> (u64, u64, f64) {
    let ctx = policy_context(
        s.model.clone(),
        s.device.clone(),
        &s.experiment,
        s.budget,
        1024,
        serde_json::Value::Null,
    );
    let source = VecSource::new(s.header.clone(), s.records.clone());
    let start = Instant::now();
    let mut policy = edgesim::policy::build("lru", ctx).unwrap();
    let mut sim = Simulator::new(&s.device, s.budget).unwrap();
    let mut passes = PassGrouper::new(source, 512);
    let out = replay(
        policy.as_mut(),
        &mut sim,
        s.budget,
        &mut passes,
        &ReplayOptions::default(),
    )
    .unwrap();
    let secs = start.elapsed().as_secs_f64();
    let steps = out.passes.len() as u64 * s.model.layers as u64;
    (out.ops_total, steps, secs)
}

fn report(s: &Setup) {
    let mut runs: Vec<(u64, u64, f64)> = (0..7).map(|_| run(s)).collect();
    runs.sort_by(|a, b| a.2.total_cmp(&b.2));
    let (ops, steps, secs) = runs[runs.len() / 2];
    println!(
        "replay_lru: {TOKENS} Mixtral-8x7B tokens on jetson-agx-orin, lru at 30% cached: \
         {ops} ops, {steps} layer-steps in {:.1} ms (median of 7) = {:.2} M ops/s, {:.2} M layer-steps/s",
        secs * 1e3,
        ops as f64 / secs / 1e6,
        steps as f64 / secs / 1e6
    );
}

fn bench(c: &mut Criterion) {
    let s = setup();
    report(&s);
    let mut g = c.benchmark_group("replay");
    g.sample_size(10);
    g.bench_function("lru_mixtral_10k_tokens", |b| b.iter(|| run(&s)));
    g.finish();
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
