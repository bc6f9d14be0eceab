//! The f32 reference matrix kernels at SmolLM2's shapes, on 1 and 2 threads.
//!
//! `cargo bench --bench llm_matvec`. Prints time per call; the GMAC/s figure is
//! rows × cols × inputs / time. Other processes on the machine skew it: note the load average.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use edgesim::llm::matvec::{F32Matrix, MatVec};
use std::hint::black_box;

fn matrix(rows: usize, cols: usize) -> F32Matrix {
    let weights = (0..rows * cols)
        .map(|i| ((i * 2654435761usize) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    F32Matrix::new(rows, cols, weights).expect("shape")
}

fn bench(c: &mut Criterion) {
    // (name, rows, cols): SmolLM2-135M's ffn_up, ffn_down, attn_q, and the tied output head.
    let shapes = [
        ("ffn_up_1536x576", 1536, 576),
        ("ffn_down_576x1536", 576, 1536),
        ("attn_q_576x576", 576, 576),
        ("output_49152x576", 49152, 576),
    ];
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool");
        let mut group = c.benchmark_group(format!("f32_gemv_{threads}t"));
        for &(name, rows, cols) in &shapes {
            let m = matrix(rows, cols);
            let x = vec![0.25f32; cols];
            let mut y = vec![0.0f32; rows];
            group.throughput(Throughput::Elements((rows * cols) as u64));
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| pool.install(|| m.gemv(black_box(&x), &mut y)))
            });
        }
        group.finish();
        let mut group = c.benchmark_group(format!("f32_gemm128_{threads}t"));
        group.sample_size(20);
        for &(name, rows, cols) in &shapes[..3] {
            let m = matrix(rows, cols);
            let n = 128;
            let x = vec![0.25f32; n * cols];
            let mut y = vec![0.0f32; n * rows];
            group.throughput(Throughput::Elements((rows * cols * n) as u64));
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| pool.install(|| m.gemm(black_box(&x), n, &mut y)))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
