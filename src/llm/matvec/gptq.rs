//! Error-compensating quantization with the inputs' second moments: GPTQ (Frantar et al.,
//! "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained Transformers",
//! ICLR 2023, arXiv 2210.17323, Algorithm 1), written here from the paper's equations.
//!
//! Round-to-nearest minimises each weight's own error; what matters is the error of the
//! output, `Σ_k (w_k − ŵ_k)·x_k` over real inputs `x`. With `H = E[x·xᵀ]` (from a calibration
//! text, [`super::recording`]) the expected squared output error of a row is
//! `(w − ŵ)ᵀ H (w − ŵ)`. GPTQ quantizes a row's columns in order and, after each one, moves
//! its rounding error onto the columns not yet quantized, along the direction that minimises
//! that quadratic form: with `U` the upper Cholesky factor of `H⁻¹` (`H⁻¹ = UᵀU`),
//!
//! ```text
//! e = (w_j − ŵ_j) / U_jj,     w_k −= e · U_jk   for every k > j.
//! ```
//!
//! Columns go in order of decreasing input energy (the paper's "act-order"); each group's
//! scale and centre are fixed beforehand from the unmodified weights with the least-squares
//! search of [`super::requantize`] ("static groups"), so the stored format is exactly the
//! kernels' (codes, fp16 scale and centre per group, groups contiguous). `H` is damped by 1 % of its mean diagonal, as the paper does; inputs that
//! were always zero get a unit diagonal.
//!
//! Rows are independent given `U`, so they run in parallel; `U` is computed in f64.

use super::recording::SecondMoments;
use super::requantize::{best_params, inverse, nearest_code};
use crate::kernels::f16::f16_to_f32;
use crate::kernels::{GroupSize, KernelError, QuantizedMatrix, WeightBits};
use rayon::prelude::*;

/// Damping added to H's diagonal, as a fraction of its mean (GPTQ's default, §4).
const DAMPING: f64 = 0.01;

/// Quantizes `weights` (`rows × cols`, row-major) at `bits` with one scale and centre per
/// `group` weights, compensating rounding errors with the inputs' second moments `moments`.
pub fn quantize_gptq(
    weights: &[f32],
    rows: usize,
    cols: usize,
    bits: WeightBits,
    group: GroupSize,
    moments: &SecondMoments,
) -> Result<QuantizedMatrix, KernelError> {
    let groups_per_row = group.check_cols("GPTQ quantization", cols)?;
    if weights.len() != rows * cols {
        return Err(KernelError::ShapeMismatch {
            what: "weights (rows × cols)",
            expected: rows * cols,
            actual: weights.len(),
        });
    }
    if moments.cols != cols || moments.sums.len() != cols * cols {
        return Err(KernelError::ShapeMismatch {
            what: "input second moments (cols × cols) vs matrix columns",
            expected: cols,
            actual: moments.cols,
        });
    }
    if let Some(index) = weights.iter().position(|w| !w.is_finite()) {
        return Err(KernelError::NonFinite {
            what: "weight",
            index,
            value: weights[index],
        });
    }
    // Columns in order of decreasing input energy (GPTQ's "act-order"), so the columns that
    // matter most are quantized while the most columns are left to absorb their error; each
    // group's scale and centre are fixed beforehand from the unmodified weights ("static
    // groups"), so the stored groups stay contiguous.
    let diagonal: Vec<f32> = (0..cols).map(|i| moments.sums[i * cols + i]).collect();
    let mut order: Vec<usize> = (0..cols).collect();
    order.sort_by(|&a, &b| diagonal[b].total_cmp(&diagonal[a]).then(a.cmp(&b)));
    let permuted = SecondMoments {
        cols,
        samples: moments.samples,
        sums: (0..cols * cols)
            .map(|i| moments.sums[order[i / cols] * cols + order[i % cols]])
            .collect(),
    };
    let u = inverse_hessian_factor(&permuted);
    let g = group.get();
    let max_code = bits.max_code() as f32;
    let h = bits.code_midpoint();
    let mut codes = vec![0u8; rows * cols];
    let mut scales = vec![0u16; rows * groups_per_row];
    let mut centres = vec![0u16; rows * groups_per_row];
    codes
        .par_chunks_mut(cols)
        .zip(scales.par_chunks_mut(groups_per_row))
        .zip(centres.par_chunks_mut(groups_per_row))
        .zip(weights.par_chunks(cols))
        .enumerate()
        .try_for_each(|(row, (((codes, scales), centres), original))| {
            for gi in 0..groups_per_row {
                let p = best_params(&original[gi * g..(gi + 1) * g], bits, row * cols + gi * g)?;
                scales[gi] = p.scale;
                centres[gi] = p.centre;
            }
            // w[t] is column order[t].
            let mut w: Vec<f32> = order.iter().map(|&j| original[j]).collect();
            for t in 0..cols {
                let j = order[t];
                let gi = j / g;
                let (s, c) = (f16_to_f32(scales[gi]), f16_to_f32(centres[gi]));
                let q = if s > 0.0 {
                    nearest_code(w[t], inverse(s), c, h, max_code)
                } else {
                    h.floor()
                };
                codes[j] = q as u8;
                let stored = s * (q - h) + c;
                let factor = &u[t * cols..(t + 1) * cols];
                let e = (w[t] - stored) / factor[t];
                for (wk, &uk) in w[t + 1..].iter_mut().zip(&factor[t + 1..]) {
                    *wk -= e * uk;
                }
            }
            Ok::<(), KernelError>(())
        })?;
    QuantizedMatrix::from_parts(rows, cols, bits, group, codes, scales, centres)
}

/// The upper-triangular `U` with `UᵀU = H⁻¹` for the damped `H = sums / samples`, as f32
/// (`cols × cols`, row-major).
///
/// With `J` the order reversal, the lower Cholesky factor `M` of `J·H·J` gives
/// `H = R·Rᵀ` for the upper-triangular `R = J·M·J`; then `H⁻¹ = R⁻ᵀ·R⁻¹`, so `U = R⁻¹`: one
/// factorization and one triangular inverse.
fn inverse_hessian_factor(moments: &SecondMoments) -> Vec<f32> {
    let n = moments.cols;
    let samples = moments.samples.max(1) as f64;
    let mut a: Vec<f64> = moments.sums.iter().map(|&v| v as f64 / samples).collect();
    for i in 0..n {
        if a[i * n + i] <= 0.0 {
            a[i * n + i] = 1.0;
        }
    }
    let mean_diagonal = (0..n).map(|i| a[i * n + i]).sum::<f64>() / n as f64;
    let mut damping = DAMPING * mean_diagonal;
    loop {
        // P = J·(A + λI)·J.
        let mut p = vec![0.0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                p[i * n + j] = a[(n - 1 - i) * n + (n - 1 - j)];
            }
            p[i * n + i] += damping;
        }
        if let Some(m) = cholesky_lower(p, n) {
            // Rt = Rᵀ (lower): Rt[j][k] = R[k][j] = M[n−1−k][n−1−j].
            let mut rt = vec![0.0f64; n * n];
            for j in 0..n {
                for k in 0..=j {
                    rt[j * n + k] = m[(n - 1 - k) * n + (n - 1 - j)];
                }
            }
            return upper_inverse_rows(&rt, n);
        }
        // Not positive definite in f64 (nearly dependent inputs): damp more.
        damping *= 10.0;
    }
}

/// Lower Cholesky factor of the symmetric `p` (`n × n`), or None if a pivot is not positive.
fn cholesky_lower(mut p: Vec<f64>, n: usize) -> Option<Vec<f64>> {
    for j in 0..n {
        let (done, rest) = p.split_at_mut((j + 1) * n);
        let row_j = &mut done[j * n..(j + 1) * n];
        let pivot = row_j[j] - row_j[..j].iter().map(|v| v * v).sum::<f64>();
        if pivot <= 0.0 || !pivot.is_finite() {
            return None;
        }
        let diagonal = pivot.sqrt();
        row_j[j] = diagonal;
        let row_j = &*row_j;
        rest.par_chunks_mut(n).for_each(|row_i| {
            let dot: f64 = row_i[..j].iter().zip(&row_j[..j]).map(|(a, b)| a * b).sum();
            row_i[j] = (row_i[j] - dot) / diagonal;
        });
    }
    for i in 0..n {
        for v in &mut p[i * n + i + 1..(i + 1) * n] {
            *v = 0.0;
        }
    }
    Some(p)
}

/// `U = R⁻¹` for the upper-triangular `R` given as `rt = Rᵀ`, row by row (rows of `U` are
/// independent): `U_ii = 1/R_ii`, `U_ij = −(Σ_{i≤k<j} U_ik·R_kj) / R_jj`.
fn upper_inverse_rows(rt: &[f64], n: usize) -> Vec<f32> {
    let mut u = vec![0.0f32; n * n];
    u.par_chunks_mut(n).enumerate().for_each(|(i, out)| {
        let mut row = vec![0.0f64; n];
        row[i] = 1.0 / rt[i * n + i];
        for j in i + 1..n {
            let dot: f64 = row[i..j]
                .iter()
                .zip(&rt[j * n + i..j * n + j])
                .map(|(a, b)| a * b)
                .sum();
            row[j] = -dot / rt[j * n + j];
        }
        for (o, &v) in out.iter_mut().zip(&row) {
            *o = v as f32;
        }
    });
    u
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Correlated inputs: a few directions shared by every sample (fixed), mixed per sample
    /// (from `seed`), plus noise, as hidden states are.
    fn inputs(samples: usize, cols: usize, seed: u64) -> Vec<f32> {
        let mut fixed = ChaCha8Rng::seed_from_u64(99);
        let directions: Vec<Vec<f32>> = (0..4)
            .map(|_| (0..cols).map(|_| fixed.gen_range(-1.0..1.0)).collect())
            .collect();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..samples)
            .flat_map(|_| {
                let mix: Vec<f32> = (0..4).map(|_| rng.gen_range(-2.0..2.0)).collect();
                let noise: Vec<f32> = (0..cols).map(|_| rng.gen_range(-0.2..0.2)).collect();
                (0..cols)
                    .map(|k| (0..4).map(|d| mix[d] * directions[d][k]).sum::<f32>() + noise[k])
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn moments(x: &[f32], cols: usize) -> SecondMoments {
        let n = x.len() / cols;
        let mut sums = vec![0.0f32; cols * cols];
        for t in 0..n {
            for i in 0..cols {
                for j in 0..cols {
                    sums[i * cols + j] += x[t * cols + i] * x[t * cols + j];
                }
            }
        }
        SecondMoments {
            cols,
            samples: n,
            sums,
        }
    }

    /// Mean squared output error of `q` against `w` over the inputs `x`.
    fn output_error(q: &QuantizedMatrix, w: &[f32], x: &[f32], cols: usize) -> f64 {
        let d = q.dequantize();
        let rows = w.len() / cols;
        let mut total = 0.0f64;
        for input in x.chunks_exact(cols) {
            for r in 0..rows {
                let e: f64 = (0..cols)
                    .map(|k| (w[r * cols + k] - d[r * cols + k]) as f64 * input[k] as f64)
                    .sum();
                total += e * e;
            }
        }
        total / (x.len() / cols) as f64
    }

    #[test]
    fn error_compensation_cuts_the_output_error_on_held_out_inputs() {
        let (rows, cols) = (24, 96);
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let w: Vec<f32> = (0..rows * cols).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let calibration = inputs(400, cols, 1);
        let held_out = inputs(200, cols, 1 ^ 0xfeed);
        let m = moments(&calibration, cols);
        for bits in [WeightBits::B3, WeightBits::B2] {
            let gptq = quantize_gptq(&w, rows, cols, bits, GroupSize::G32, &m).unwrap();
            let plain =
                super::super::quantize_refined(&w, rows, cols, bits, GroupSize::G32).unwrap();
            let (e_gptq, e_plain) = (
                output_error(&gptq, &w, &held_out, cols),
                output_error(&plain, &w, &held_out, cols),
            );
            assert!(
                e_gptq < 0.7 * e_plain,
                "{bits:?}: GPTQ {e_gptq:e} vs round-to-nearest {e_plain:e}"
            );
        }
    }

    #[test]
    fn the_factor_inverts_the_damped_hessian() {
        let cols = 40;
        let m = moments(&inputs(100, cols, 3), cols);
        let u = inverse_hessian_factor(&m);
        // UᵀU·(H + λI) = I.
        let samples = m.samples as f64;
        let mean: f64 = (0..cols)
            .map(|i| m.sums[i * cols + i] as f64 / samples)
            .sum::<f64>()
            / cols as f64;
        for i in 0..cols {
            for j in 0..cols {
                let mut v = 0.0f64;
                for k in 0..cols {
                    let hinv: f64 = (0..cols)
                        .map(|l| u[l * cols + i] as f64 * u[l * cols + k] as f64)
                        .sum();
                    let mut h = m.sums[k * cols + j] as f64 / samples;
                    if k == j {
                        h += DAMPING * mean;
                    }
                    v += hinv * h;
                }
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((v - want).abs() < 1e-3, "({i}, {j}): {v}");
            }
            for j in 0..i {
                assert_eq!(u[i * cols + j], 0.0, "U is upper triangular");
            }
        }
    }

    #[test]
    fn mismatched_statistics_are_errors() {
        let m = SecondMoments {
            cols: 32,
            samples: 1,
            sums: vec![0.0; 32 * 32],
        };
        assert!(quantize_gptq(&[0.0; 64], 1, 64, WeightBits::B3, GroupSize::G32, &m).is_err());
    }
}
