//! Activations quantized to int8 for the dot-product kernels ([`super::dot`]): what llama.cpp
//! calls Q8_0, one scale per block of 32 activations.
//!
//! For block `b`: `d = max|x| / 127`, `xq = round_to_nearest_even(x · 127/max|x|)` (so every
//! `xq` is in −127..=127), and two sums the kernels need: `X = Σ xq` (exact, int) and `Σx`
//! (f32, in the AVX2 table builder's eight-lane order, the same on every path). An all-zero
//! block has `d = 0` and all `xq = 0`.
//!
//! The SIMD builders do the same per-lane float operations as the scalar one (one multiply by
//! the same f32 inverse, `vcvtps2dq` rounding to nearest even), so the bytes are identical.

use super::error::KernelError;
use super::gemv::KernelPath;
use super::isa::Isa;
use super::table::reduce_lanes;

/// Activations per int8 scale.
pub const Q8_BLOCK: usize = 32;

/// One activation vector quantized to int8 in blocks of [`Q8_BLOCK`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Q8Activations {
    cols: usize,
    /// The int8 values, `cols` of them.
    values: Vec<i8>,
    /// Per block: `d / 2`, so that a block's share of a dot product is `(d/2) · D` for the
    /// kernels' even integer `D` (see [`super::dot`]).
    half_scales: Vec<f32>,
    /// Per block: `Σ xq`.
    value_sums: Vec<i32>,
    /// Per block: `Σ x`, unquantized.
    sums: Vec<f32>,
}

impl Q8Activations {
    /// Quantizes `x` (its length a multiple of 32) on the best path.
    pub fn build(x: &[f32]) -> Result<Q8Activations, KernelError> {
        let mut q = Q8Activations::default();
        q.rebuild_with(x, KernelPath::Auto)?;
        Ok(q)
    }

    /// Re-quantizes in place (no allocation when the length is unchanged) on `path`.
    pub fn rebuild_with(&mut self, x: &[f32], path: KernelPath) -> Result<(), KernelError> {
        if x.is_empty() || !x.len().is_multiple_of(Q8_BLOCK) {
            return Err(KernelError::ColsNotMultipleOfGroup {
                what: "int8 activation vector",
                cols: x.len(),
                group: Q8_BLOCK,
            });
        }
        if !x.iter().fold(true, |finite, a| finite & a.is_finite()) {
            let index = x.iter().position(|a| !a.is_finite()).unwrap_or(0);
            return Err(KernelError::NonFinite {
                what: "activation vector",
                index,
                value: x[index],
            });
        }
        let isa = path.resolve()?;
        let blocks = x.len() / Q8_BLOCK;
        self.cols = x.len();
        self.values.resize(x.len(), 0);
        self.half_scales.resize(blocks, 0.0);
        self.value_sums.resize(blocks, 0);
        self.sums.resize(blocks, 0.0);
        for (b, block) in x.chunks_exact(Q8_BLOCK).enumerate() {
            let (largest, sum) = summarize(block);
            if !sum.is_finite() {
                return Err(KernelError::NonFinite {
                    what: "activation block sum (overflows f32)",
                    index: b * Q8_BLOCK,
                    value: sum,
                });
            }
            let inverse = if largest > 0.0 { 127.0 / largest } else { 0.0 };
            let out = &mut self.values[b * Q8_BLOCK..(b + 1) * Q8_BLOCK];
            let value_sum = if isa >= Isa::Avx2 {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `resolve` checked the CPU has AVX2; both slices hold 32 values.
                unsafe {
                    quantize_avx2(block, inverse, out)
                }
                #[cfg(not(target_arch = "x86_64"))]
                unreachable!("only the scalar level is detected off x86-64")
            } else {
                quantize_scalar(block, inverse, out)
            };
            self.half_scales[b] = largest / 127.0 * 0.5;
            self.value_sums[b] = value_sum;
            self.sums[b] = sum;
        }
        Ok(())
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn values(&self) -> &[i8] {
        &self.values
    }

    pub fn half_scales(&self) -> &[f32] {
        &self.half_scales
    }

    pub fn value_sums(&self) -> &[i32] {
        &self.value_sums
    }

    pub fn sums(&self) -> &[f32] {
        &self.sums
    }

    /// The activation `i` as the kernels see it: `xq · d`.
    pub fn dequantized(&self, i: usize) -> f32 {
        self.values[i] as f32 * 2.0 * self.half_scales[i / Q8_BLOCK]
    }
}

/// `max |x|` and `Σ x` of one block, the sum in the eight-lane order of
/// [`super::table::summarize`].
fn summarize(block: &[f32]) -> (f32, f32) {
    let mut largest = 0.0f32;
    let mut lanes = [0.0f32; 8];
    for eight in block.chunks_exact(8) {
        for (lane, a) in lanes.iter_mut().zip(eight) {
            *lane += a;
            largest = largest.max(a.abs());
        }
    }
    (largest, reduce_lanes(&lanes))
}

fn quantize_scalar(block: &[f32], inverse: f32, out: &mut [i8]) -> i32 {
    let mut total = 0i32;
    for (q, &a) in out.iter_mut().zip(block) {
        *q = (a * inverse).round_ties_even() as i8;
        total += *q as i32;
    }
    total
}

/// # Safety
/// Needs AVX2; `block` and `out` hold 32 values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_avx2(block: &[f32], inverse: f32, out: &mut [i8]) -> i32 {
    use std::arch::x86_64::*;
    let inverse = _mm256_set1_ps(inverse);
    let p = block.as_ptr();
    let q0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(p), inverse));
    let q1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(p.add(8)), inverse));
    let q2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(p.add(16)), inverse));
    let q3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(p.add(24)), inverse));
    // packs interleave 128-bit lanes; the permute puts the 32 bytes back in order.
    let words = (_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
    let bytes = _mm256_packs_epi16(words.0, words.1);
    let ordered = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, ordered);
    let sum = _mm256_add_epi32(_mm256_add_epi32(q0, q1), _mm256_add_epi32(q2, q3));
    let mut lanes = [0i32; 8];
    _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, sum);
    lanes.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantizes_to_the_block_maximum_and_paths_agree() {
        let x: Vec<f32> = (0..96)
            .map(|i| ((i * 7919 % 1013) as f32 - 506.0) * 0.01 * if i == 40 { 30.0 } else { 1.0 })
            .collect();
        let q = Q8Activations::build(&x).unwrap();
        for b in 0..3 {
            let block = &x[b * 32..(b + 1) * 32];
            let largest = block.iter().fold(0.0f32, |m, a| m.max(a.abs()));
            let step = largest / 127.0;
            assert_eq!(q.half_scales()[b], step * 0.5);
            for (i, &a) in block.iter().enumerate() {
                assert!((q.dequantized(b * 32 + i) - a).abs() <= step * 0.5 + 1e-6);
            }
            let values = &q.values()[b * 32..(b + 1) * 32];
            assert_eq!(
                values.iter().map(|&v| v as i32).sum::<i32>(),
                q.value_sums()[b]
            );
            assert_eq!(values.iter().map(|v| v.unsigned_abs()).max(), Some(127));
        }
        for path in KernelPath::available() {
            let mut other = Q8Activations::default();
            other.rebuild_with(&x, path).unwrap();
            assert_eq!(other, q, "{path:?}");
        }
        let zero = Q8Activations::build(&[0.0; 32]).unwrap();
        assert_eq!((zero.half_scales()[0], zero.value_sums()[0]), (0.0, 0));
        assert!(Q8Activations::build(&x[..40]).is_err());
        let mut bad = x.clone();
        bad[3] = f32::NAN;
        assert!(matches!(
            Q8Activations::build(&bad),
            Err(KernelError::NonFinite { index: 3, .. })
        ));
    }
}
