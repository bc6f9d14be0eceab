//! Prints the GEMV table of `docs/kernels.md`: µs per GEMV (median), GB/s of weight bytes and
//! GFLOP/s, hot (one matrix reused) and cold (cycling over copies totalling ≥ 512 MiB), 1 and
//! 2 threads, LUT kernels at 1/2/3/4/8 bits next to the f32 dequantize-ahead reference and a
//! plain memory-read loop (the bandwidth floor on this machine, measured in the same run).
//!
//! `cargo bench --bench kernels_table` (all shapes), or with `-- SHAPE...` to pick shapes
//! (`4096x4096 576x1536 ...`), `-- --quick` for fewer repetitions. Times include building the
//! activation table, as a real GEMV must.
//!
//! `KERNEL_BITS=2,4` and `KERNEL_GROUP=64` pick widths and the group size, `KERNEL_THREADS=1`
//! one thread count, `KERNEL_SKIP_F32=1` drops the f32 reference, and `KERNEL_CSV=1` prints
//! lines `csv,KERNEL,BITS_PER_WEIGHT,THREADS,MODE,MICROSECONDS` for the side-by-side script
//! (`benches/vs-llama-cpp/run.sh`; the memory read is the kernel `memory read 1 GiB`).

use std::hint::black_box;
use std::time::Instant;

use edgesim::kernels::{
    dot_gemv, gemv, reference, ActivationTable, ByteMatrix, GroupSize, KernelOptions, KernelPath,
    PackedMatrix, Q8Activations, QuantizedMatrix, WeightBits,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const COLD_BYTES: usize = 512 << 20;

struct Settings {
    hot_samples: usize,
    cold_passes: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Median seconds per call of `f`, hot: repeated on the same data.
fn time_hot(settings: &Settings, mut f: impl FnMut()) -> f64 {
    for _ in 0..3 {
        f();
    }
    let start = Instant::now();
    f();
    let once = start.elapsed().as_secs_f64().max(1e-7);
    let reps = ((2e-3 / once).ceil() as usize).clamp(1, 10_000);
    let samples = (0..settings.hot_samples)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..reps {
                f();
            }
            start.elapsed().as_secs_f64() / reps as f64
        })
        .collect();
    median(samples)
}

/// Median seconds per call of `f(i)` cycling i over `copies`.
fn time_cold(settings: &Settings, copies: usize, mut f: impl FnMut(usize)) -> f64 {
    (0..copies).for_each(&mut f);
    let samples = (0..settings.cold_passes)
        .map(|_| {
            let start = Instant::now();
            (0..copies).for_each(&mut f);
            start.elapsed().as_secs_f64() / copies as f64
        })
        .collect();
    median(samples)
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
}

/// Where the figures go: the markdown table, or CSV lines for `benches/vs-llama-cpp`.
struct Output {
    csv: bool,
}

impl Output {
    #[allow(clippy::too_many_arguments)]
    fn row(
        &self,
        kernel: &str,
        shape: &str,
        threads: usize,
        mode: &str,
        seconds: f64,
        bytes: usize,
        weights: usize,
    ) {
        if self.csv {
            let bits = bytes as f64 * 8.0 / weights.max(1) as f64;
            println!(
                "csv,{kernel},{bits:.3},{threads},{mode},{:.2}",
                seconds * 1e6
            );
            return;
        }
        println!(
            "| {kernel} | {shape} | {threads} | {mode} | {:.1} | {:.1} | {:.1} |",
            seconds * 1e6,
            bytes as f64 / seconds / 1e9,
            2.0 * weights as f64 / seconds / 1e9
        );
    }
}

/// The read bandwidth of calibrate's streaming loop (`exec::calibrate::memory`: 256-bit loads
/// and a software prefetch, what the kernels issue), over 1 GiB: the DRAM floor's denominator.
fn memory_read(output: &Output, threads: &[usize]) {
    let bytes = 1usize << 30;
    for &t in threads {
        let rate = edgesim::exec::calibrate::memory::stream_bandwidth(bytes, t);
        let seconds = bytes as f64 / rate;
        if output.csv {
            println!("csv,memory read 1 GiB,0,{t},cold,{:.2}", seconds * 1e6);
        } else {
            println!(
                "| memory read 1 GiB | - | {t} | cold | {:.0} | {:.1} | - |",
                seconds * 1e6,
                rate / 1e9
            );
        }
    }
}

/// The 8-bit dot-product kernel on the same codes (`int8 dot`: byte layout, activations
/// quantized to int8 per 32 inside the timed call, as the table is for the LUT rows).
#[allow(clippy::too_many_arguments)]
fn dot_rows(
    output: &Output,
    settings: &Settings,
    pools: &[(usize, rayon::ThreadPool)],
    shape: &str,
    q: &QuantizedMatrix,
    x: &[f32],
    path: KernelPath,
    suffix: &str,
) {
    let matrix = ByteMatrix::pack(q);
    let bytes = matrix.payload().len();
    let copies: Vec<ByteMatrix> = (0..COLD_BYTES.div_ceil(bytes))
        .map(|_| matrix.clone())
        .collect();
    let label = format!("int8 dot g{}{suffix}", q.group().get());
    let mut xq = Q8Activations::default();
    let mut y = vec![0.0f32; q.rows()];
    for (t, p) in pools {
        let (t, options) = (*t, KernelOptions::threads(*t).with_path(path));
        let hot = p.install(|| {
            time_hot(settings, || {
                xq.rebuild_with(black_box(x), path).unwrap();
                dot_gemv(&matrix.view(), &xq, &mut y, options).unwrap();
            })
        });
        output.row(&label, shape, t, "hot", hot, bytes, q.rows() * q.cols());
        let cold = p.install(|| {
            time_cold(settings, copies.len(), |i| {
                xq.rebuild_with(black_box(x), path).unwrap();
                dot_gemv(&copies[i].view(), &xq, &mut y, options).unwrap();
            })
        });
        output.row(&label, shape, t, "cold", cold, bytes, q.rows() * q.cols());
    }
    black_box(&y);
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let quick = args.iter().any(|a| a == "--quick");
    let settings = if quick {
        Settings {
            hot_samples: 7,
            cold_passes: 3,
        }
    } else {
        Settings {
            hot_samples: 21,
            cold_passes: 7,
        }
    };
    let mut shapes: Vec<(usize, usize)> = args
        .iter()
        .filter_map(|a| {
            let (m, k) = a.split_once('x')?;
            Some((m.parse().ok()?, k.parse().ok()?))
        })
        .collect();
    if shapes.is_empty() {
        shapes = vec![
            (4096, 4096),
            (14336, 4096),
            (4096, 14336),
            (576, 1536),
            (1536, 576),
        ];
    }
    let bits_list: Vec<WeightBits> = match std::env::var("KERNEL_BITS") {
        Ok(list) => list
            .split(',')
            .map(|b| WeightBits::from_bits(b.parse().expect("bits")).expect("bits"))
            .collect(),
        Err(_) => WeightBits::ALL.to_vec(),
    };
    let skip_f32 = std::env::var("KERNEL_SKIP_F32").is_ok();
    // KERNEL_PATH=scalar|avx2|avx512|avx512vnni forces one path (the label says which).
    let (path, suffix) = match std::env::var("KERNEL_PATH").as_deref() {
        Ok("scalar") => (KernelPath::Scalar, " scalar"),
        Ok("avx2") => (KernelPath::Avx2, " avx2"),
        Ok("avx512") => (KernelPath::Avx512, " avx512"),
        Ok("avx512vnni") => (KernelPath::Avx512Vnni, " avx512vnni"),
        Ok(other) => panic!("KERNEL_PATH={other}: scalar, avx2, avx512 or avx512vnni"),
        Err(_) => (KernelPath::Auto, ""),
    };
    let output = Output {
        csv: std::env::var("KERNEL_CSV").is_ok(),
    };
    let thread_counts: Vec<usize> = match std::env::var("KERNEL_THREADS") {
        Ok(list) => list
            .split(',')
            .map(|t| t.parse().expect("KERNEL_THREADS: thread counts"))
            .collect(),
        Err(_) => vec![1, 2],
    };
    if args.iter().any(|a| a == "--profile") {
        // For instruction counting under valgrind: 10 hot single-thread GEMVs per case.
        for (m, k) in shapes {
            let mut rng = ChaCha8Rng::seed_from_u64(42);
            let weights: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let x: Vec<f32> = (0..k).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let group = if k % 128 == 0 {
                GroupSize::G128
            } else {
                GroupSize::G64
            };
            for &bits in &bits_list {
                let q = QuantizedMatrix::quantize_min_max(&weights, m, k, bits, group).unwrap();
                let packed = PackedMatrix::pack(&q);
                let mut table = ActivationTable::empty(group);
                let mut y = vec![0.0f32; m];
                for _ in 0..10 {
                    table.rebuild(black_box(&x)).unwrap();
                    gemv(&packed.view(), &table, &mut y, KernelOptions::threads(1)).unwrap();
                }
                black_box(&y);
            }
        }
        return;
    }
    if !output.csv {
        println!("| kernel | M×K | threads | mode | µs/GEMV | GB/s (weights) | GFLOP/s |");
        println!("|---|---|---|---|---|---|---|");
    }
    memory_read(&output, &thread_counts);
    let pools: Vec<(usize, rayon::ThreadPool)> =
        thread_counts.iter().map(|&t| (t, pool(t))).collect();
    for (m, k) in shapes {
        let shape = format!("{m}×{k}");
        // Group 128 for the large shapes (T-MAC's default for 2-bit), 64 for SmolLM2's.
        let group = match std::env::var("KERNEL_GROUP") {
            Ok(g) => GroupSize::new(g.parse().expect("group")).expect("group"),
            Err(_) if k >= 4096 => GroupSize::G128,
            Err(_) => GroupSize::G64,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let weights: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let x: Vec<f32> = (0..k).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let mut y = vec![0.0f32; m];
        for &bits in &bits_list {
            let q = QuantizedMatrix::quantize_min_max(&weights, m, k, bits, group).unwrap();
            let packed = PackedMatrix::pack(&q);
            let bytes = packed.payload().len();
            let copies: Vec<PackedMatrix> = (0..COLD_BYTES.div_ceil(bytes))
                .map(|_| packed.clone())
                .collect();
            let label = format!("LUT {}-bit g{}{suffix}", bits.bits(), group.get());
            let mut table = ActivationTable::empty(group);
            for (t, p) in &pools {
                let (t, options) = (*t, KernelOptions::threads(*t).with_path(path));
                let hot = p.install(|| {
                    time_hot(&settings, || {
                        table.rebuild_with(black_box(&x), path).unwrap();
                        gemv(&packed.view(), &table, &mut y, options).unwrap();
                    })
                });
                output.row(&label, &shape, t, "hot", hot, bytes, m * k);
                let cold = p.install(|| {
                    time_cold(&settings, copies.len(), |i| {
                        table.rebuild_with(black_box(&x), path).unwrap();
                        gemv(&copies[i].view(), &table, &mut y, options).unwrap();
                    })
                });
                output.row(&label, &shape, t, "cold", cold, bytes, m * k);
            }
            black_box(&y);
            if bits == WeightBits::B8 {
                dot_rows(&output, &settings, &pools, &shape, &q, &x, path, suffix);
            }
        }
        if skip_f32 {
            continue;
        }
        // f32 reference: the matrix dequantized ahead of time (4-bit codes), then a plain GEMV.
        let q = QuantizedMatrix::quantize_min_max(&weights, m, k, WeightBits::B4, group).unwrap();
        let dense = q.dequantize();
        let bytes = dense.len() * 4;
        let copies: Vec<Vec<f32>> = (0..COLD_BYTES.div_ceil(bytes))
            .map(|_| dense.clone())
            .collect();
        for (t, p) in &pools {
            let t = *t;
            let hot = p.install(|| {
                time_hot(&settings, || {
                    reference::gemv_f32(&dense, m, k, black_box(&x), &mut y, t).unwrap()
                })
            });
            output.row("f32 reference", &shape, t, "hot", hot, bytes, m * k);
            let cold = p.install(|| {
                time_cold(&settings, copies.len(), |i| {
                    reference::gemv_f32(&copies[i], m, k, black_box(&x), &mut y, t).unwrap()
                })
            });
            output.row("f32 reference", &shape, t, "cold", cold, bytes, m * k);
        }
    }
}
