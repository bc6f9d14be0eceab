//! The real-model runtime's matrices and threads at SmolLM2's shapes.
//!
//! `cargo bench --bench llm_matvec` (or a filter, e.g. `-- section`). Groups:
//! - `section_2t`: a parallel section of two 5 µs parts on two threads, right after the last
//!   one and after 20 µs of single-threaded work (when rayon's workers may have gone to
//!   sleep): the forward pass's thread team against rayon's `join` and `scope`, and one thread
//!   doing both parts. Ideal is the gap + 5 µs. A decode step has about 150 sections.
//! - `matvec_{f32,lut-int8,…}_{1,2}t`: one product with each fused matrix of a layer (Q/K/V
//!   960×576, output 576×576, gate/up 3072×576, down 576×1536) and the output head 49152×576,
//!   weights hot in cache; throughput in weights per second.
//! - `prefill128_*`: the same matrices times 128 input vectors (the prefill GEMM).
//! - `kernel_path_cold`: the kernels' `gemv` (two row tiles per pass) against their `gemm`
//!   with one vector (one tile at a time, what `LutMatrix` uses for decode) on gate/up at 4
//!   and 2 bits, cycling over 256 MiB of copies so the weights come from DRAM as in a decode
//!   step; throughput in bytes per second.
//!
//! Other processes on the machine skew these figures: note the load average with them.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use edgesim::kernels::{
    gemm, gemv, ActivationTable, GroupSize, KernelOptions, PackedMatrix, QuantizedMatrix,
    WeightBits,
};
use edgesim::llm::format::WeightFormat;
use edgesim::llm::matvec::{MatVec, MatrixRole};
use edgesim::llm::parallel::{run_parts, ThreadTeam};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// (name, rows, cols): SmolLM2-135M's fused matrices of one layer and the output head.
const SHAPES: [(&str, usize, usize); 5] = [
    ("qkv_960x576", 960, 576),
    ("attn_out_576x576", 576, 576),
    ("gate_up_3072x576", 3072, 576),
    ("down_576x1536", 576, 1536),
    ("output_49152x576", 49152, 576),
];

fn weights(rows: usize, cols: usize) -> Vec<f32> {
    (0..rows * cols)
        .map(|i| ((i.wrapping_mul(2654435761)) % 1000) as f32 / 1000.0 - 0.5)
        .collect()
}

fn busy(duration: Duration) {
    let started = Instant::now();
    while started.elapsed() < duration {
        std::hint::spin_loop();
    }
}

/// Work of one part of a measured section: 5 µs of spinning, about a decode step's share of
/// one fused matrix per thread.
const PART_WORK: Duration = Duration::from_micros(5);

fn sections(c: &mut Criterion) {
    let team = ThreadTeam::new(2);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("thread pool");
    let mut group = c.benchmark_group("section_2t");
    group.sample_size(30);
    // Each iteration: `gap` of work on the calling thread alone (norms, attention bookkeeping
    // between two matrices), then a section of two 5 µs parts. Ideal: gap + 5 µs; with no
    // parallelism: gap + 10 µs.
    for gap_us in [0u64, 20] {
        let gap = Duration::from_micros(gap_us);
        let id = |name: &str| BenchmarkId::new(name, format!("gap_{gap_us}us_parts_2x5us"));
        group.bench_function(id("team"), |b| {
            team.install(|| {
                b.iter(|| {
                    busy(gap);
                    run_parts(&|part, _| {
                        busy(PART_WORK);
                        black_box(part);
                    })
                })
            })
        });
        group.bench_function(id("rayon_join"), |b| {
            pool.install(|| {
                b.iter(|| {
                    busy(gap);
                    rayon::join(|| busy(PART_WORK), || busy(PART_WORK))
                })
            })
        });
        group.bench_function(id("rayon_scope"), |b| {
            pool.install(|| {
                b.iter(|| {
                    busy(gap);
                    rayon::scope(|s| {
                        s.spawn(|_| busy(PART_WORK));
                        s.spawn(|_| busy(PART_WORK));
                    })
                })
            })
        });
        group.bench_function(id("one_thread"), |b| {
            b.iter(|| {
                busy(gap);
                busy(PART_WORK);
                busy(PART_WORK);
            })
        });
    }
    group.finish();
}

fn matrices(c: &mut Criterion) {
    for spec in ["f32", "8", "4", "3", "2"] {
        let format: WeightFormat = spec.parse().expect("format");
        let builder = format.builder().expect("builder");
        let built: Vec<(&str, Box<dyn MatVec>)> = SHAPES
            .iter()
            .map(|&(name, rows, cols)| {
                let role = if rows == 49152 {
                    MatrixRole::Output
                } else {
                    MatrixRole::Ffn
                };
                let matrix = builder
                    .build(name, role, rows, cols, weights(rows, cols))
                    .expect("builds");
                (name, matrix)
            })
            .collect();
        let label = if spec == "f32" {
            "f32".to_string()
        } else {
            format!("lut-int{spec}")
        };
        for threads in [1, 2] {
            let team = ThreadTeam::new(threads);
            let mut group = c.benchmark_group(format!("matvec_{label}_{threads}t"));
            group
                .sample_size(20)
                .measurement_time(Duration::from_secs(2));
            for (name, matrix) in &built {
                let x = vec![0.25f32; matrix.cols()];
                let mut y = vec![0.0f32; matrix.rows()];
                group.throughput(Throughput::Elements((matrix.rows() * matrix.cols()) as u64));
                group.bench_function(BenchmarkId::from_parameter(name), |b| {
                    team.install(|| b.iter(|| matrix.gemv(black_box(&x), &mut y).expect("gemv")))
                });
            }
            group.finish();
            let mut group = c.benchmark_group(format!("prefill128_{label}_{threads}t"));
            group
                .sample_size(10)
                .measurement_time(Duration::from_secs(3));
            for (name, matrix) in built.iter().take(4) {
                let n = 128;
                let x: Vec<f32> = (0..n * matrix.cols())
                    .map(|i| (i % 17) as f32 / 17.0 - 0.5)
                    .collect();
                let mut y = vec![0.0f32; n * matrix.rows()];
                group.throughput(Throughput::Elements(
                    (matrix.rows() * matrix.cols() * n) as u64,
                ));
                group.bench_function(BenchmarkId::from_parameter(name), |b| {
                    team.install(|| b.iter(|| matrix.gemm(black_box(&x), n, &mut y).expect("gemm")))
                });
            }
            group.finish();
        }
    }
}

fn kernel_paths_cold(c: &mut Criterion) {
    let (rows, cols) = (3072, 576);
    let w = weights(rows, cols);
    let x: Vec<f32> = (0..cols).map(|i| (i % 13) as f32 / 13.0 - 0.5).collect();
    let table = ActivationTable::build(&x, GroupSize::G32).expect("table");
    let tables = [table.clone()];
    let mut group = c.benchmark_group("kernel_path_cold");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(2));
    for bits in [WeightBits::B4, WeightBits::B2] {
        let q = QuantizedMatrix::quantize_min_max(&w, rows, cols, bits, GroupSize::G32)
            .expect("quantizes");
        let packed = PackedMatrix::pack(&q);
        let bytes = packed.payload().len();
        let copies: Vec<PackedMatrix> = (0..(256 << 20) / bytes + 1)
            .map(|_| packed.clone())
            .collect();
        let mut y = vec![0.0f32; rows];
        group.throughput(Throughput::Bytes(bytes as u64));
        let id = |path: &str| BenchmarkId::new(path, format!("gate_up_{}bit", bits.bits()));
        let mut next = 0usize;
        group.bench_function(id("gemv"), |b| {
            b.iter(|| {
                next = (next + 1) % copies.len();
                gemv(
                    &copies[next].view(),
                    &table,
                    &mut y,
                    KernelOptions::threads(1),
                )
                .expect("gemv")
            })
        });
        group.bench_function(id("gemm_one_vector"), |b| {
            b.iter(|| {
                next = (next + 1) % copies.len();
                gemm(
                    &copies[next].view(),
                    &tables,
                    &mut y,
                    KernelOptions::threads(1),
                )
                .expect("gemm")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, sections, matrices, kernel_paths_cold);
criterion_main!(benches);
