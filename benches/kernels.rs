//! Criterion benchmarks of the LUT kernels: GEMV hot (one matrix reused) and cold (cycling over
//! copies totalling ≥ 512 MiB so weights stream from DRAM), 1 and 2 threads, 1/2/3/4/8 bits,
//! the f32 dequantize-ahead reference, table construction and a small prefill GEMM.
//! Throughput is reported in weight bytes per second; `benches/kernels_table.rs` prints the
//! same measurements as a table with µs, GB/s and GFLOP/s.
//!
//! `cargo bench --bench kernels` (everything: every shape × width × thread count, which takes
//! a while) or with a filter, e.g.
//! `cargo bench --bench kernels -- 'gemv_cold/4096x4096/2bit'`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use edgesim::kernels::{
    gemm, gemv, reference, ActivationTable, GroupSize, KernelOptions, PackedMatrix,
    QuantizedMatrix, WeightBits,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SHAPES: [(usize, usize); 5] = [
    (4096, 4096),
    (14336, 4096),
    (4096, 14336),
    (576, 1536),
    (1536, 576),
];
const COLD_BYTES: usize = 512 << 20;

fn group_for(cols: usize) -> GroupSize {
    if cols >= 4096 {
        GroupSize::G128
    } else {
        GroupSize::G64
    }
}

fn data(rows: usize, cols: usize) -> (Vec<f32>, Vec<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let w = (0..rows * cols).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let x = (0..cols).map(|_| rng.gen_range(-1.0..1.0)).collect();
    (w, x)
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool")
}

fn lut_gemv(c: &mut Criterion) {
    let pools = [pool(1), pool(2)];
    let mut hot = c.benchmark_group("gemv_hot");
    hot.sample_size(20)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    for (rows, cols) in SHAPES {
        let (w, x) = data(rows, cols);
        let group = group_for(cols);
        for bits in WeightBits::ALL {
            let q = QuantizedMatrix::quantize_min_max(&w, rows, cols, bits, group).unwrap();
            let packed = PackedMatrix::pack(&q);
            hot.throughput(Throughput::Bytes(packed.payload().len() as u64));
            for (t, p) in pools.iter().enumerate() {
                let id = BenchmarkId::new(
                    format!("{rows}x{cols}/{}bit", bits.bits()),
                    format!("t{}", t + 1),
                );
                let mut table = ActivationTable::empty(group);
                let mut y = vec![0.0f32; rows];
                hot.bench_function(id, |b| {
                    p.install(|| {
                        b.iter(|| {
                            table.rebuild(black_box(&x)).unwrap();
                            gemv(
                                &packed.view(),
                                &table,
                                &mut y,
                                KernelOptions::threads(t + 1),
                            )
                            .unwrap();
                        })
                    })
                });
            }
        }
    }
    hot.finish();

    let mut cold = c.benchmark_group("gemv_cold");
    cold.sample_size(10)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    for (rows, cols) in SHAPES {
        let (w, x) = data(rows, cols);
        let group = group_for(cols);
        for bits in WeightBits::ALL {
            let q = QuantizedMatrix::quantize_min_max(&w, rows, cols, bits, group).unwrap();
            let packed = PackedMatrix::pack(&q);
            let bytes = packed.payload().len();
            let copies: Vec<PackedMatrix> = (0..COLD_BYTES.div_ceil(bytes))
                .map(|_| packed.clone())
                .collect();
            cold.throughput(Throughput::Bytes(bytes as u64));
            for (t, p) in pools.iter().enumerate() {
                let id = BenchmarkId::new(
                    format!("{rows}x{cols}/{}bit", bits.bits()),
                    format!("t{}", t + 1),
                );
                let mut table = ActivationTable::empty(group);
                let mut y = vec![0.0f32; rows];
                let mut next = 0usize;
                cold.bench_function(id, |b| {
                    p.install(|| {
                        b.iter(|| {
                            next = (next + 1) % copies.len();
                            table.rebuild(black_box(&x)).unwrap();
                            gemv(
                                &copies[next].view(),
                                &table,
                                &mut y,
                                KernelOptions::threads(t + 1),
                            )
                            .unwrap();
                        })
                    })
                });
            }
        }
    }
    cold.finish();
}

fn f32_reference(c: &mut Criterion) {
    let pools = [pool(1), pool(2)];
    let mut group = c.benchmark_group("f32_reference");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    for (rows, cols) in SHAPES {
        let (w, x) = data(rows, cols);
        let q = QuantizedMatrix::quantize_min_max(&w, rows, cols, WeightBits::B4, group_for(cols))
            .unwrap();
        let dense = q.dequantize();
        let bytes = dense.len() * 4;
        let copies: Vec<Vec<f32>> = (0..COLD_BYTES.div_ceil(bytes))
            .map(|_| dense.clone())
            .collect();
        group.throughput(Throughput::Bytes(bytes as u64));
        for (t, p) in pools.iter().enumerate() {
            let mut y = vec![0.0f32; rows];
            group.bench_function(
                BenchmarkId::new(format!("hot/{rows}x{cols}"), format!("t{}", t + 1)),
                |b| {
                    p.install(|| {
                        b.iter(|| {
                            reference::gemv_f32(&dense, rows, cols, black_box(&x), &mut y, t + 1)
                                .unwrap()
                        })
                    })
                },
            );
            let mut next = 0usize;
            group.bench_function(
                BenchmarkId::new(format!("cold/{rows}x{cols}"), format!("t{}", t + 1)),
                |b| {
                    p.install(|| {
                        b.iter(|| {
                            next = (next + 1) % copies.len();
                            reference::gemv_f32(
                                &copies[next],
                                rows,
                                cols,
                                black_box(&x),
                                &mut y,
                                t + 1,
                            )
                            .unwrap()
                        })
                    })
                },
            );
        }
    }
    group.finish();
}

fn table_and_gemm(c: &mut Criterion) {
    let mut group = c.benchmark_group("table_build");
    for cols in [576, 1536, 4096, 14336] {
        let (_, x) = data(1, cols);
        let mut table = ActivationTable::empty(GroupSize::G64);
        group.throughput(Throughput::Elements(cols as u64));
        group.bench_function(BenchmarkId::from_parameter(cols), |b| {
            b.iter(|| table.rebuild(black_box(&x)).unwrap())
        });
    }
    group.finish();

    // Prefill: 32 activation vectors through one 4096×4096 2-bit matrix.
    let mut group = c.benchmark_group("gemm");
    group.sample_size(10);
    let (w, _) = data(4096, 4096);
    let q =
        QuantizedMatrix::quantize_min_max(&w, 4096, 4096, WeightBits::B2, GroupSize::G128).unwrap();
    let packed = PackedMatrix::pack(&q);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let tables: Vec<ActivationTable> = (0..32)
        .map(|_| {
            let x: Vec<f32> = (0..4096).map(|_| rng.gen_range(-1.0..1.0)).collect();
            ActivationTable::build(&x, GroupSize::G128).unwrap()
        })
        .collect();
    let mut y = vec![0.0f32; 32 * 4096];
    group.bench_function("4096x4096/2bit/n32/t1", |b| {
        b.iter(|| gemm(&packed.view(), &tables, &mut y, KernelOptions::threads(1)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, lut_gemv, f32_reference, table_and_gemm);
criterion_main!(benches);
