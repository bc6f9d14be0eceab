//! AVX2 table construction, bit-identical to the scalar code in [`super::table`]: the same
//! float operations in the same association, the same round-to-nearest-even.

use std::arch::x86_64::*;

use super::table::reduce_lanes;

/// Largest `(|a0|+|a1|) + (|a2|+|a3|)` and the lane-ordered activation sum of one group.
///
/// # Safety
/// Needs AVX2; `activations.len()` must be a multiple of 8.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn summarize(activations: &[f32]) -> (f32, f32) {
    let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let mut largest = _mm256_setzero_ps();
    let mut lanes = _mm256_setzero_ps();
    for eight in activations.chunks_exact(8) {
        let v = _mm256_loadu_ps(eight.as_ptr());
        lanes = _mm256_add_ps(lanes, v);
        let magnitude = _mm256_and_ps(v, abs_mask);
        // [x0+x1, x2+x3, ..] then [(x0+x1)+(x2+x3), ..] within each 128-bit lane (one four).
        let pairs = _mm256_hadd_ps(magnitude, magnitude);
        let fours = _mm256_hadd_ps(pairs, pairs);
        largest = _mm256_max_ps(largest, fours);
    }
    let mut lane_values = [0.0f32; 8];
    _mm256_storeu_ps(lane_values.as_mut_ptr(), largest);
    let largest = lane_values.iter().copied().fold(0.0f32, f32::max);
    _mm256_storeu_ps(lane_values.as_mut_ptr(), lanes);
    (largest, reduce_lanes(&lane_values))
}

/// Writes 16 int8 entries per four activations into `entries`.
///
/// # Safety
/// Needs AVX2; `entries.len() == 4 * activations.len()`, `activations.len() % 4 == 0`.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn fill(activations: &[f32], inverse: f32, entries: &mut [i8]) {
    // Lane i computes entry 8 + i: sign of a_j is + when bit j of i is set.
    let sign0 = _mm256_setr_ps(-0.0, 0.0, -0.0, 0.0, -0.0, 0.0, -0.0, 0.0);
    let sign1 = _mm256_setr_ps(-0.0, -0.0, 0.0, 0.0, -0.0, -0.0, 0.0, 0.0);
    let sign2 = _mm256_setr_ps(-0.0, -0.0, -0.0, -0.0, 0.0, 0.0, 0.0, 0.0);
    let reverse = _mm256_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0);
    let gather = _mm256_setr_epi32(0, 4, 1, 5, 0, 0, 0, 0);
    let inverse = _mm256_set1_ps(inverse);
    let zero = _mm256_setzero_si256();
    let out = entries.as_mut_ptr();
    for (k, a) in activations.chunks_exact(4).enumerate() {
        let a0 = _mm256_set1_ps(a[0]);
        let a1 = _mm256_set1_ps(a[1]);
        let a2 = _mm256_set1_ps(a[2]);
        let a3 = _mm256_set1_ps(a[3]);
        let low_pair = _mm256_add_ps(_mm256_xor_ps(a0, sign0), _mm256_xor_ps(a1, sign1));
        let high_pair = _mm256_add_ps(_mm256_xor_ps(a2, sign2), a3);
        let upper = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_add_ps(low_pair, high_pair), inverse));
        // Mirror consolidation: entry 7 − i is −(entry 8 + i).
        let lower = _mm256_sub_epi32(zero, _mm256_permutevar8x32_epi32(upper, reverse));
        let words = _mm256_packs_epi32(lower, upper); // [l0-3, u0-3 | l4-7, u4-7]
        let bytes = _mm256_packs_epi16(words, words);
        let ordered = _mm256_permutevar8x32_epi32(bytes, gather); // [l0-3, l4-7, u0-3, u4-7]
        _mm_storeu_si128(
            out.add(16 * k) as *mut __m128i,
            _mm256_castsi256_si128(ordered),
        );
    }
}
