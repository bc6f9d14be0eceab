//! Requantization of dequantized weights into the LUT kernels' format, with a least-squares
//! refinement for the low bit widths.
//!
//! The kernels' own quantizer ([`QuantizedMatrix::quantize_min_max`]) maps each group's
//! `[min, max]` onto the codes. That is exact for SmolLM2's file at 4 bits and group 32 (each
//! Q4_1 block already is a 16-level grid from its minimum to its maximum) and fine at 8 bits,
//! but at 3 and 2 bits the extreme weights of a group waste most of the few levels: round-to-
//! nearest min/max at 2 bits makes the model's perplexity explode (`docs/real-model.md`).
//!
//! [`quantize_refined`] keeps the storage format (codes, fp16 scale `s` and centre `c` per
//! group, `w ≈ s·(q − h) + c`) and picks `s` and `c` to reduce the group's squared error:
//! from several starting ranges (the full range and narrower ones, which clip the extremes) it
//! alternates nearest-code assignment with the least-squares fit of `s` and `c` to the codes
//! (a linear regression of the weights on `q − h`), and keeps the best pair after rounding
//! both to fp16. This is the classic alternating scheme of k-means-style scalar quantizers
//! (llama.cpp's k-quant search does the same kind of thing); it is written here from the
//! equations.

use crate::kernels::f16::{f16_to_f32, f32_to_f16, F16_MAX};
use crate::kernels::{GroupSize, KernelError, QuantizedMatrix, WeightBits};
use rayon::prelude::*;

/// Fractions of the group's half-range the searches start from (1.0 = min/max).
const START_RANGES: [f32; 6] = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5];
/// Least-squares refits per start (each followed by a code assignment).
const REFINE_ROUNDS: usize = 4;

/// The scale and centre of one group, stored as fp16 bits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct GroupParams {
    pub(super) scale: u16,
    pub(super) centre: u16,
}

/// Quantizes `weights` (`rows × cols`, row-major) at `bits` with one scale and centre per
/// `group` weights, minimising each group's squared error as described in the module docs.
/// Never worse than min/max for any group: min/max is one of the candidates.
pub fn quantize_refined(
    weights: &[f32],
    rows: usize,
    cols: usize,
    bits: WeightBits,
    group: GroupSize,
) -> Result<QuantizedMatrix, KernelError> {
    let groups_per_row = group.check_cols("refined quantization", cols)?;
    if weights.len() != rows * cols {
        return Err(KernelError::ShapeMismatch {
            what: "weights (rows × cols)",
            expected: rows * cols,
            actual: weights.len(),
        });
    }
    if let Some(index) = weights.iter().position(|w| !w.is_finite()) {
        return Err(KernelError::NonFinite {
            what: "weight",
            index,
            value: weights[index],
        });
    }
    let g = group.get();
    let params: Vec<GroupParams> = weights
        .par_chunks(g)
        .enumerate()
        .map(|(index, chunk)| best_params(chunk, bits, index * g))
        .collect::<Result<_, _>>()?;
    let mut codes = vec![0u8; rows * cols];
    codes
        .par_chunks_mut(g)
        .zip(weights.par_chunks(g))
        .zip(&params)
        .for_each(|((out, chunk), p)| {
            assign_codes(chunk, f16_to_f32(p.scale), f16_to_f32(p.centre), bits, out);
        });
    let scales = params.iter().map(|p| p.scale).collect();
    let centres = params.iter().map(|p| p.centre).collect();
    debug_assert_eq!(params.len(), rows * groups_per_row);
    QuantizedMatrix::from_parts(rows, cols, bits, group, codes, scales, centres)
}

/// 1.5 · 2²³: adding and subtracting it rounds an f32 of magnitude below 2²² to the nearest
/// integer, ties to even (the default rounding mode), in two vectorizable additions. The
/// baseline x86-64 target has no rounding instruction, so `round_ties_even` is a library call
/// per weight, which made 3-bit loading take over 20 s.
const ROUNDING_MAGIC: f32 = 12_582_912.0;

/// The code nearest to `value` under scale `s` (as its inverse) and centre `c`. Clamping
/// first and rounding second gives the same code as the other way round (the bounds are
/// integers) and keeps the magic rounding in range.
#[inline(always)]
pub(super) fn nearest_code(value: f32, inverse_scale: f32, c: f32, h: f32, max_code: f32) -> f32 {
    let position = ((value - c) * inverse_scale + h).clamp(0.0, max_code);
    (position + ROUNDING_MAGIC) - ROUNDING_MAGIC
}

pub(super) fn inverse(s: f32) -> f32 {
    if s > 0.0 {
        1.0 / s
    } else {
        0.0
    }
}

/// Nearest codes for `w` under scale `s` and centre `c` (a zero scale gives the code below
/// the midpoint, as the kernels' quantizer does).
fn assign_codes(w: &[f32], s: f32, c: f32, bits: WeightBits, out: &mut [u8]) {
    let max_code = bits.max_code() as f32;
    let h = bits.code_midpoint();
    let inverse_scale = inverse(s);
    for (code, &value) in out.iter_mut().zip(w) {
        let q = if s > 0.0 {
            nearest_code(value, inverse_scale, c, h, max_code)
        } else {
            h.floor()
        };
        *code = q as u8;
    }
}

/// One pass over a group with nearest codes under (s, c): the squared error, and the sums
/// the least-squares fit of the next (s, c) needs (x = q − h).
#[derive(Clone, Copy, Debug, Default)]
struct Pass {
    error: f32,
    sum_x: f32,
    sum_w: f32,
    sum_xx: f32,
    sum_xw: f32,
}

/// Lanes of the accumulators, so the compiler can vectorize the pass (group sizes are
/// multiples of 8).
const LANES: usize = 8;

fn pass(w: &[f32], s: f32, c: f32, bits: WeightBits) -> Pass {
    let max_code = bits.max_code() as f32;
    let h = bits.code_midpoint();
    let inverse_scale = inverse(s);
    let mut error = [0.0f32; LANES];
    let mut sum_x = [0.0f32; LANES];
    let mut sum_w = [0.0f32; LANES];
    let mut sum_xx = [0.0f32; LANES];
    let mut sum_xw = [0.0f32; LANES];
    for eight in w.chunks_exact(LANES) {
        for l in 0..LANES {
            let value = eight[l];
            let q = if s > 0.0 {
                nearest_code(value, inverse_scale, c, h, max_code)
            } else {
                h.floor()
            };
            let x = q - h;
            let e = value - (s * x + c);
            error[l] += e * e;
            sum_x[l] += x;
            sum_w[l] += value;
            sum_xx[l] += x * x;
            sum_xw[l] += x * value;
        }
    }
    let total = |lanes: [f32; LANES]| lanes.iter().sum::<f32>();
    Pass {
        error: total(error),
        sum_x: total(sum_x),
        sum_w: total(sum_w),
        sum_xx: total(sum_xx),
        sum_xw: total(sum_xw),
    }
}

fn to_f16(value: f32, what: &'static str, index: usize) -> Result<u16, KernelError> {
    if value.abs() > F16_MAX {
        return Err(KernelError::ScaleOutOfRange { what, index, value });
    }
    Ok(f32_to_f16(value))
}

/// The fp16 (scale, centre) with the smallest squared error over the searches.
pub(super) fn best_params(
    w: &[f32],
    bits: WeightBits,
    first: usize,
) -> Result<GroupParams, KernelError> {
    let max_code = bits.max_code() as f32;
    let lo = w.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = w.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mid = (hi + lo) * 0.5;
    let half_range = (hi - lo) * 0.5;
    // Every candidate is rounded to fp16 before it is evaluated: those are the numbers the
    // kernels will use.
    let stored = |s: f32, c: f32| -> Result<(GroupParams, f32, f32), KernelError> {
        let p = GroupParams {
            scale: to_f16(s, "weight group scale", first)?,
            centre: to_f16(c, "weight group centre", first)?,
        };
        Ok((p, f16_to_f32(p.scale), f16_to_f32(p.centre)))
    };
    // Min/max first: the kernels' own rule, so the result is never worse than it.
    let (mut best, s0, c0) = stored(2.0 * half_range / max_code, mid)?;
    let mut best_error = pass(w, s0, c0, bits).error;
    if half_range == 0.0 {
        return Ok(best);
    }
    let n = w.len() as f32;
    for &fraction in &START_RANGES {
        let (mut candidate, mut s, mut c) = stored(2.0 * half_range * fraction / max_code, mid)?;
        for round in 0..=REFINE_ROUNDS {
            let p = pass(w, s, c, bits);
            if p.error < best_error {
                best_error = p.error;
                best = candidate;
            }
            if round == REFINE_ROUNDS {
                break;
            }
            // Least squares of w on x = q − h: s = cov(x, w)/var(x), c = mean(w) − s·mean(x).
            let variance = p.sum_xx - p.sum_x * p.sum_x / n;
            if variance <= 0.0 {
                break;
            }
            let fitted = (p.sum_xw - p.sum_x * p.sum_w / n) / variance;
            if fitted.is_nan() || fitted <= 0.0 {
                break;
            }
            (candidate, s, c) = stored(fitted, (p.sum_w - fitted * p.sum_x) / n)?;
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn total_error(q: &QuantizedMatrix, w: &[f32]) -> f64 {
        q.dequantize()
            .iter()
            .zip(w)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum()
    }

    #[test]
    fn refinement_beats_min_max_on_heavy_tailed_weights() {
        // Laplace-like weights with a few outliers, as real matrices have.
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (rows, cols) = (16, 128);
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| {
                let u: f32 = rng.gen_range(-0.999..0.999);
                let v = -u.signum() * (1.0 - u.abs()).ln() * 0.02;
                if i % 97 == 0 {
                    v * 8.0
                } else {
                    v
                }
            })
            .collect();
        for bits in [WeightBits::B2, WeightBits::B3] {
            let group = GroupSize::G32;
            let refined = quantize_refined(&w, rows, cols, bits, group).unwrap();
            let plain = QuantizedMatrix::quantize_min_max(&w, rows, cols, bits, group).unwrap();
            let (e_refined, e_plain) = (total_error(&refined, &w), total_error(&plain, &w));
            assert!(
                e_refined < 0.8 * e_plain,
                "{bits:?}: refined {e_refined:e} vs min/max {e_plain:e}"
            );
        }
    }

    #[test]
    fn nearest_codes_round_half_to_even_and_clamp() {
        let codes: Vec<f32> = [-3.0, 0.4, 0.5, 1.5, 2.5, 2.6, 7.0, 40.0]
            .iter()
            .map(|&v| nearest_code(v, 1.0, 0.0, 0.0, 3.0))
            .collect();
        assert_eq!(codes, [0.0, 0.0, 0.0, 2.0, 2.0, 3.0, 3.0, 3.0]);
    }

    #[test]
    fn a_sixteen_level_grid_stays_exact_at_four_bits() {
        // Each group holds every level of a 4-bit grid: min/max is exact and must be kept.
        let w: Vec<f32> = (0..64).map(|i| -0.5 + 0.0625 * (i % 16) as f32).collect();
        let q = quantize_refined(&w, 1, 64, WeightBits::B4, GroupSize::G32).unwrap();
        assert_eq!(q.dequantize(), w);
    }

    #[test]
    fn constant_groups_and_bad_values() {
        let q = quantize_refined(&[0.25; 32], 1, 32, WeightBits::B2, GroupSize::G32).unwrap();
        assert!(q.dequantize().iter().all(|&v| v == 0.25));
        let mut w = vec![0.0f32; 32];
        w[3] = f32::NAN;
        assert!(matches!(
            quantize_refined(&w, 1, 32, WeightBits::B2, GroupSize::G32),
            Err(KernelError::NonFinite { index: 3, .. })
        ));
        assert!(quantize_refined(&[0.0; 48], 1, 48, WeightBits::B2, GroupSize::G32).is_err());
    }
}
