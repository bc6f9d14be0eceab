//! Reader throughput (records/s) on a generated Mixtral-8x7B expert trace and a generated
//! dense neuron trace, plus the expert generator's own throughput. Prints measurements only.
//!
//! `cargo bench --bench trace_reader`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use edgesim::trace::gen::{
    write_trace, ExpertGenConfig, ExpertTraceGenerator, NeuronGenConfig, NeuronTraceGenerator,
    HOBBIT_PREDICTION_ACCURACY,
};
use edgesim::trace::{TokenRecord, TokenSource, TraceReader};
use std::path::Path;

fn known_model(name: &str) -> Option<edgesim::model::ModelProfile> {
    edgesim::scenario::load_model(name).ok()
}

fn known_geometry(name: &str) -> Option<edgesim::model::ModelGeometry> {
    edgesim::model::ModelGeometry::from_profile(&known_model(name)?).ok()
}

const EXPERT_TOKENS: u64 = 20_000;
const NEURON_TOKENS: u64 = 500;

fn read_all(path: &Path) -> u64 {
    let mut reader = TraceReader::open(path).unwrap();
    let mut rec = TokenRecord::default();
    let mut n = 0;
    while reader.next_into(&mut rec).unwrap() {
        n += 1;
    }
    n
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let model = known_geometry("mixtral-8x7b").unwrap();
    let mut cfg = ExpertGenConfig::new(&model, 1, EXPERT_TOKENS);
    cfg.sequences = 20;
    cfg.prefill_per_sequence = 128;
    cfg.prediction_accuracy = HOBBIT_PREDICTION_ACCURACY.to_vec();
    let expert_path = dir.path().join("mixtral.est");
    write_trace(
        &mut ExpertTraceGenerator::new(&model, &cfg).unwrap(),
        &expert_path,
    )
    .unwrap();

    let dense = known_geometry("turbosparse-mistral-7b").unwrap();
    let fraction = known_model("turbosparse-mistral-7b")
        .unwrap()
        .sparsity
        .unwrap()
        .active_fraction;
    let mut ncfg = NeuronGenConfig::new(1, NEURON_TOKENS, fraction);
    ncfg.sequences = 2;
    let neuron_path = dir.path().join("turbosparse.est");
    write_trace(
        &mut NeuronTraceGenerator::new(&dense, &ncfg).unwrap(),
        &neuron_path,
    )
    .unwrap();

    let mut g = c.benchmark_group("trace");
    g.sample_size(10);
    g.throughput(Throughput::Elements(EXPERT_TOKENS));
    g.bench_function(
        "read mixtral-8x7b expert records (32 layers, top-2, 3 ahead)",
        |b| b.iter(|| assert_eq!(read_all(&expert_path), EXPERT_TOKENS)),
    );
    g.throughput(Throughput::Elements(NEURON_TOKENS));
    g.bench_function(
        "read turbosparse-mistral-7b neuron records (32 x 14336, 10% active)",
        |b| b.iter(|| assert_eq!(read_all(&neuron_path), NEURON_TOKENS)),
    );
    g.throughput(Throughput::Elements(EXPERT_TOKENS));
    g.bench_function(
        "generate mixtral-8x7b expert records (incl. calibration)",
        |b| {
            b.iter(|| {
                let mut generator = ExpertTraceGenerator::new(&model, &cfg).unwrap();
                let mut rec = TokenRecord::default();
                let mut n = 0;
                while generator.next_into(&mut rec).unwrap() {
                    n += 1;
                }
                assert_eq!(n, EXPERT_TOKENS);
            })
        },
    );
    g.finish();
    eprintln!(
        "trace sizes: expert {} bytes, neuron {} bytes",
        std::fs::metadata(&expert_path).unwrap().len(),
        std::fs::metadata(&neuron_path).unwrap().len()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
