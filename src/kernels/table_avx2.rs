//! AVX2 and AVX-512 table construction, bit-identical to the scalar code in [`super::table`]:
//! the same float operations in the same association, the same round-to-nearest-even. (The
//! activation sum keeps the AVX2 eight-lane order on every path, so AVX-512 CPUs use
//! [`summarize`] too; only the entries have a 512-bit version.)

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

/// [`fill`] with 512-bit registers, two groups of four activations per iteration: the same
/// per-lane float operations (sign flips by XOR, the same association, `vcvtps2dq` with the
/// default round-to-nearest-even), hence the same bytes.
///
/// # Safety
/// Needs [`Isa::Avx512`](super::isa::Isa); `entries.len() == 4 * activations.len()`,
/// `activations.len() % 8 == 0`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
pub(crate) unsafe fn fill_avx512(activations: &[f32], inverse: f32, entries: &mut [i8]) {
    debug_assert_eq!(activations.len() % 8, 0);
    // Lanes 0..8 compute entries 8 + i of the first four, lanes 8..16 of the second; a lane
    // flips a_j's sign (XOR with −0.0) when bit j of i is clear, as in `fill`.
    let negative = _mm512_set1_epi32(0x8000_0000u32 as i32);
    let sign0 = _mm512_castsi512_ps(_mm512_maskz_mov_epi32(0x5555, negative));
    let sign1 = _mm512_castsi512_ps(_mm512_maskz_mov_epi32(0x3333, negative));
    let sign2 = _mm512_castsi512_ps(_mm512_maskz_mov_epi32(0x0f0f, negative));
    // Lane picks broadcasting a_j of each four to its eight lanes.
    let pick0 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 4, 4, 4, 4);
    let pick1 = _mm512_setr_epi32(1, 1, 1, 1, 1, 1, 1, 1, 5, 5, 5, 5, 5, 5, 5, 5);
    let pick2 = _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 6, 6, 6, 6, 6, 6, 6, 6);
    let pick3 = _mm512_setr_epi32(3, 3, 3, 3, 3, 3, 3, 3, 7, 7, 7, 7, 7, 7, 7, 7);
    let reverse = _mm512_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8);
    // [lower entries, upper entries] of the first four, then of the second.
    let first = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
    let second = _mm512_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    let inverse = _mm512_set1_ps(inverse);
    let zero = _mm512_setzero_si512();
    let out = entries.as_mut_ptr();
    for k in 0..activations.len() / 8 {
        let a = _mm512_castps256_ps512(_mm256_loadu_ps(activations.as_ptr().add(8 * k)));
        let a0 = _mm512_permutexvar_ps(pick0, a);
        let a1 = _mm512_permutexvar_ps(pick1, a);
        let a2 = _mm512_permutexvar_ps(pick2, a);
        let a3 = _mm512_permutexvar_ps(pick3, a);
        let low_pair = _mm512_add_ps(_mm512_xor_ps(a0, sign0), _mm512_xor_ps(a1, sign1));
        let high_pair = _mm512_add_ps(_mm512_xor_ps(a2, sign2), a3);
        let upper = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_add_ps(low_pair, high_pair), inverse));
        // Mirror consolidation: entry 7 − i is −(entry 8 + i).
        let lower = _mm512_sub_epi32(zero, _mm512_permutexvar_epi32(reverse, upper));
        let four0 = _mm512_permutex2var_epi32(lower, first, upper);
        let four1 = _mm512_permutex2var_epi32(lower, second, upper);
        _mm_storeu_si128(
            out.add(32 * k) as *mut __m128i,
            _mm512_cvtsepi32_epi8(four0),
        );
        _mm_storeu_si128(
            out.add(32 * k + 16) as *mut __m128i,
            _mm512_cvtsepi32_epi8(four1),
        );
    }
}
