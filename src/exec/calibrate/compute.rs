//! Compute microbenchmarks: the executor's own FFN compute path (dispatch to the compute
//! pool, activation tables, LUT GEMV/GEMM, completion back to the dispatcher) over a sweep of
//! shapes and batches per bit width, fitted to the simulator's CPU cost formula.
//!
//! The fit is the simulator's CPU roofline,
//! `time = launch + max(flops / (threads · rate(precision)), bytes / bandwidth)`, where
//! `bandwidth` is the separately measured memory bandwidth the op's threads can draw
//! (`min(threads · core bandwidth, memory bandwidth)`, as the cost formula takes it) and
//! `bytes` the weights' bytes. `launch` (one for all precisions) and `rate` (one per precision)
//! are fitted by least squares of the *relative* error (each point's equation divided by its
//! measured time): points whose memory term exceeds their compute term at the current
//! estimate constrain `launch` only, and the classification is iterated to a fixed point.
//! `flops` is what the plan's Compute op says (`2 · weights · batch`). Weights are rotated
//! through copies larger than the caches, as weights just read from disk are cold.

use super::{CalibrateOptions, Progress};
use crate::exec::store::synthetic_tensor;
use crate::exec::work::{self, Activations};
use crate::model::Precision;
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::time::Instant;

/// Precisions the LUT kernels run, measured in this order.
pub const PRECISIONS: [Precision; 4] = [
    Precision::Int8,
    Precision::Int4,
    Precision::Int3,
    Precision::Int2,
];

#[derive(Clone, Debug)]
pub struct Point {
    pub precision: Precision,
    pub hidden: u32,
    pub width: u32,
    pub batch: u32,
    pub flops: f64,
    /// Weights of the op's matrices.
    pub weights: f64,
    /// Bytes of the weights the op streams.
    pub bytes: f64,
    pub seconds: f64,
}

#[derive(Clone, Debug)]
pub struct ComputeResult {
    pub threads: u32,
    pub points: Vec<Point>,
    /// (precision, ops/s of one core)
    pub rates: Vec<(Precision, f64)>,
    pub launch_ns: u64,
    /// Weights per second one core passes over once per op (`None` when the points do not
    /// support a weight term).
    pub weight_pass_per_s: Option<f64>,
    /// The bandwidth of the memory term (bytes/s): the measured one, or infinite when the
    /// fit had to drop the memory term.
    pub bandwidth: f64,
    /// The memory bandwidth measured separately (bytes/s).
    pub measured_bandwidth: f64,
    /// Largest |relative residual| of the fit over the points.
    pub max_residual: f64,
}

impl ComputeResult {
    pub fn predict(&self, p: &Point) -> f64 {
        let rate = self
            .rates
            .iter()
            .find(|r| r.0 == p.precision)
            .map_or(f64::NAN, |r| r.1);
        let t = self.threads as f64;
        self.launch_ns as f64 * 1e-9
            + (p.flops / (t * rate) + self.weight_pass_per_s.map_or(0.0, |u| p.weights / (t * u)))
                .max(p.bytes / self.bandwidth)
    }

    pub fn describe(&self) -> String {
        let pts: Vec<String> = self
            .points
            .iter()
            .map(|p| {
                format!(
                    "{} {}x{} b{}={:.1}us",
                    p.precision,
                    p.hidden,
                    p.width,
                    p.batch,
                    p.seconds * 1e6
                )
            })
            .collect();
        let memory_term = if self.bandwidth.is_finite() {
            format!(
                "weight bytes / {:.1} GB/s measured memory bandwidth",
                self.bandwidth / 1e9
            )
        } else {
            format!(
                "0: memory term DROPPED, as with it some precision had no compute-bound point at the measured {:.1} GB/s",
                self.measured_bandwidth / 1e9
            )
        };
        format!(
            "the executor's FFN compute op (gate/up/down LUT GEMV or GEMM with their activation tables, dispatched to a {}-thread pool and completed over a channel, as the executor runs it) timed (median) at hidden x width x batch points [{}]; fitted time = launch + max(flops / ({} threads x rate) + weights / ({0} threads x weight pass rate), {memory_term}) by least squares of relative error over all points (largest residual {:.1} %)",
            self.threads,
            pts.join(", "),
            self.threads,
            self.max_residual * 100.0
        )
    }
}

/// Median wall time of one FFN op dispatched to `pool`, over rotating copies of its weights.
#[allow(clippy::too_many_arguments)]
fn time_ffn(
    pool: &rayon::ThreadPool,
    copies: &[Arc<Vec<u8>>],
    specs: &Arc<Vec<crate::exec::store::layout::MatrixSpec>>,
    precision: Precision,
    acts: &Arc<Activations>,
    batch: usize,
    threads: usize,
    reps: usize,
) -> Result<f64, String> {
    let bits = crate::exec::store::layout::weight_bits(precision)?;
    let (tx, rx) = channel();
    let mut times = Vec::with_capacity(reps);
    for r in 0..reps + 2 {
        let (payload, specs, acts, tx) = (
            copies[r % copies.len()].clone(),
            specs.clone(),
            acts.clone(),
            tx.clone(),
        );
        let start = Instant::now();
        pool.spawn(move || {
            let res = work::ffn(&specs, bits, &payload, &acts, batch, threads);
            let _ = tx.send(res);
        });
        rx.recv()
            .map_err(|_| "a compute thread stopped".to_string())??;
        if r >= 2 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Solves the small dense system `m · x = v` by Gaussian elimination with partial pivoting.
fn solve(mut m: Vec<Vec<f64>>, mut v: Vec<f64>) -> Option<Vec<f64>> {
    let n = v.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))?;
        if m[pivot][col].abs() < 1e-300 {
            return None;
        }
        m.swap(col, pivot);
        v.swap(col, pivot);
        for row in col + 1..n {
            let f = m[row][col] / m[col][col];
            let (upper, lower) = m.split_at_mut(row);
            for (x, &y) in lower[0][col..n].iter_mut().zip(&upper[col][col..n]) {
                *x -= f * y;
            }
            v[row] -= f * v[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| m[row][k] * x[k]).sum();
        x[row] = (v[row] - s) / m[row][row];
    }
    Some(x)
}

/// Fits `time = a + v · weights + c_p · flops` over `points` minimising relative error, where
/// `memory[i]` marks points whose time is `a + memory term` (they constrain `a` only);
/// returns (a, v, c per precision).
fn fit_once(
    points: &[Point],
    memory: &[Option<f64>],
    precisions: &[Precision],
) -> Option<(f64, f64, Vec<f64>)> {
    let n = 2 + precisions.len();
    let mut ata = vec![vec![0.0; n]; n];
    let mut atb = vec![0.0; n];
    for (p, m) in points.iter().zip(memory) {
        let j = 2 + precisions.iter().position(|&q| q == p.precision)?;
        let mut row = vec![0.0; n];
        row[0] = 1.0 / p.seconds;
        let target = match m {
            Some(mem) => 1.0 - mem / p.seconds,
            None => {
                row[1] = p.weights / p.seconds;
                row[j] = p.flops / p.seconds;
                1.0
            }
        };
        for a in 0..n {
            atb[a] += row[a] * target;
            for b in 0..n {
                ata[a][b] += row[a] * row[b];
            }
        }
    }
    // A precision with only memory-bound points keeps its slope undetermined: pin it to 0.
    for (j, row) in ata.iter_mut().enumerate().skip(1) {
        if row[j] == 0.0 {
            row[j] = 1.0;
        }
    }
    let x = solve(ata, atb)?;
    Some((x[0], x[1], x[2..].to_vec()))
}

/// Fits the roofline `time = a + max(v · weights + c_p · flops, bytes / bandwidth)`; returns
/// (a, v, c per precision).
pub fn fit(
    points: &[Point],
    precisions: &[Precision],
    bandwidth: f64,
) -> Option<(f64, f64, Vec<f64>)> {
    let mut memory: Vec<Option<f64>> = vec![None; points.len()];
    let mut result = fit_once(points, &memory, precisions)?;
    for _ in 0..20 {
        let next: Vec<Option<f64>> = points
            .iter()
            .map(|p| {
                let j = precisions
                    .iter()
                    .position(|&q| q == p.precision)
                    .unwrap_or(0);
                let mem = p.bytes / bandwidth;
                (mem > result.1 * p.weights + result.2[j] * p.flops).then_some(mem)
            })
            .collect();
        if next == memory {
            break;
        }
        memory = next;
        result = fit_once(points, &memory, precisions)?;
    }
    Some(result)
}

/// Measures the compute points and fits them; `bandwidth` is the memory bandwidth an op on all
/// cores draws (measured separately).
pub fn measure(
    options: &CalibrateOptions,
    cores: u32,
    bandwidth: f64,
    progress: Progress<'_>,
) -> Result<ComputeResult, String> {
    let threads = cores.max(1) as usize;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| format!("cannot start {threads} compute threads: {e}"))?;
    // FFN shapes of 0.6 M to 7.2 M weights (hidden 256 to 896, width 3 x hidden): the op
    // sizes of the models the executor runs on small hosts; batches 1 (decode) to 16
    // (prefill chunks spread over experts).
    let hiddens: Vec<u32> = if options.quick {
        vec![128, 256]
    } else {
        vec![256, 448, 896]
    };
    let batches: Vec<u32> = if options.quick {
        vec![1, 4]
    } else {
        vec![1, 4, 16]
    };
    let cold_bytes: usize = if options.quick { 4 << 20 } else { 64 << 20 };
    let total = (PRECISIONS.len() * hiddens.len() * batches.len()) as u64;
    let mut points = Vec::new();
    for &precision in &PRECISIONS {
        for &hidden in &hiddens {
            let width = hidden * 3;
            let shapes = [
                ("gate", width, hidden),
                ("up", width, hidden),
                ("down", hidden, width),
            ];
            let (payload, specs) = synthetic_tensor(&shapes, precision, 11)?;
            let n = cold_bytes.div_ceil(payload.len()).clamp(1, 32);
            let copies: Vec<Arc<Vec<u8>>> = (0..n).map(|_| Arc::new(payload.clone())).collect();
            let specs = Arc::new(specs);
            let acts = Arc::new(Activations::new(hidden, 5));
            for &batch in &batches {
                let seconds = time_ffn(
                    &pool,
                    &copies,
                    &specs,
                    precision,
                    &acts,
                    batch as usize,
                    threads,
                    options.compute_repetitions,
                )?;
                points.push(Point {
                    precision,
                    hidden,
                    width,
                    batch,
                    flops: 2.0 * 3.0 * hidden as f64 * width as f64 * batch as f64,
                    weights: 3.0 * hidden as f64 * width as f64,
                    bytes: payload.len() as f64,
                    seconds,
                });
                progress(
                    "compute: LUT kernels by bit width, shape and batch",
                    points.len() as u64,
                    total,
                );
            }
        }
    }
    // The weight term needs shapes of different sizes to be told apart from the launch
    // cost; where the points cannot support a positive one, the plain roofline is fitted.
    // Where even that leaves a precision without a positive rate (every one of its points
    // memory-bound at the measured bandwidth, as on a loaded machine whose bandwidth reads
    // low), the memory term is dropped and every point is fitted as compute; the
    // description says so.
    let positive = |(a, v, c): (f64, f64, Vec<f64>)| {
        (v >= 0.0 && c.iter().all(|&x| x > 0.0)).then_some((a, v, c))
    };
    let plain: Vec<Point> = points
        .iter()
        .map(|p| Point {
            weights: 0.0,
            ..p.clone()
        })
        .collect();
    let attempts = [
        (points.as_slice(), bandwidth),
        (plain.as_slice(), bandwidth),
        (points.as_slice(), f64::INFINITY),
        (plain.as_slice(), f64::INFINITY),
    ];
    let (a, v, c, fitted_bandwidth) = attempts
        .iter()
        .find_map(|&(pts, bw)| {
            fit(pts, &PRECISIONS, bw)
                .and_then(positive)
                .map(|(a, v, c)| (a, v, c, bw))
        })
        .ok_or("the compute fit gives no positive rate for some precision, with or without the memory term")?;
    let launch_ns = (a.max(0.0) * 1e9).round() as u64;
    let rates: Vec<(Precision, f64)> = PRECISIONS
        .iter()
        .zip(&c)
        .map(|(&p, &c)| {
            (
                p,
                if c > 0.0 {
                    1.0 / (c * threads as f64)
                } else {
                    f64::NAN
                },
            )
        })
        .collect();
    if rates.iter().any(|r| !(r.1.is_finite() && r.1 > 0.0)) {
        return Err(format!(
            "the compute fit gave a non-positive rate: {rates:?}"
        ));
    }
    let mut result = ComputeResult {
        threads: threads as u32,
        points,
        rates,
        launch_ns,
        weight_pass_per_s: (v > 0.0).then(|| 1.0 / (v * threads as f64)),
        bandwidth: fitted_bandwidth,
        measured_bandwidth: bandwidth,
        max_residual: 0.0,
    };
    result.max_residual = result
        .points
        .iter()
        .map(|p| ((result.predict(p) - p.seconds) / p.seconds).abs())
        .fold(0.0, f64::max);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_recovers_a_known_roofline() {
        let mut points = Vec::new();
        // time = 5 us + 2e-12 s per weight + c_p per flop; c = 1e-11 (int8), 2e-11 (int4).
        for (i, &p) in [Precision::Int8, Precision::Int4].iter().enumerate() {
            for (w, b) in [(1e5, 1.0), (1e5, 8.0), (4e5, 1.0), (9e5, 4.0)] {
                let f = 2.0 * w * b;
                points.push(Point {
                    precision: p,
                    hidden: 0,
                    width: 0,
                    batch: b as u32,
                    flops: f,
                    weights: w,
                    bytes: 0.0,
                    seconds: 5e-6 + 2e-12 * w + f * (i as f64 + 1.0) * 1e-11,
                });
            }
            // A memory-bound point: 1 MB at 1 GB/s = 1 ms, far more than its compute.
            points.push(Point {
                precision: p,
                hidden: 0,
                width: 0,
                batch: 1,
                flops: 1e6,
                weights: 5e5,
                bytes: 1e6,
                seconds: 5e-6 + 1e-3,
            });
        }
        let (a, v, c) = fit(&points, &[Precision::Int8, Precision::Int4], 1e9).unwrap();
        assert!((a - 5e-6).abs() < 1e-12, "{a}");
        assert!((v - 2e-12).abs() < 1e-18, "{v}");
        assert!(
            (c[0] - 1e-11).abs() < 1e-17 && (c[1] - 2e-11).abs() < 1e-17,
            "{c:?}"
        );
    }
}
