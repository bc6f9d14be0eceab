//! The AVX-512 lookup kernel (F/BW/VL, optionally VBMI), bit-identical to the AVX2 and scalar
//! kernels.
//!
//! It is the AVX2 kernel ([`super::avx2`]) with both 32-byte chunks `h = 0, 1` of a plane pair
//! in one 512-bit register: the chunks are adjacent in the layout, so one 64-byte load brings
//! 32 rows × 8 columns × 2 planes, and every instruction of the inner loop does the work of two.
//! The int16 accumulator of plane pair `j` holds half 0 in its low 256 bits and half 1 in its
//! high 256 bits, which are exactly the AVX2 kernel's two accumulators side by side; the
//! per-group widening and the float updates are the same per-lane operations in the same
//! order, hence the same bits.
//!
//! With VBMI (`VBMI = true`), the lookups are `vpermb` instead of `vpshufb`: `vpermb` reads
//! only the low 6 bits of each index byte and picks from all 64 bytes of the table register,
//! so with the 16-entry table repeated in all four 128-bit lanes the two upper index bits do
//! not matter and the nibble masks go away (`A[x & 15]` is `vpermb(x, A⁴)`, `B[x >> 4]` is
//! `vpermb(x >> 4, B⁴)` even though a 16-bit shift leaves the neighbouring byte's bits in bits
//! 4–7). That is 7 instead of 9 vector operations per 64 bytes of weights.
//!
//! 32 vector registers also let 8-bit codes run two tiles per pass (the AVX2 kernel runs them
//! one at a time to stay within 16).

use std::arch::x86_64::*;
use std::ops::Range;

use super::format::{WeightBits, BLOCK_SCALE_BYTES, STEP_COLS, TILE_ROWS};
use super::packed::PackedShape;
use super::table::ActivationTable;

/// How far ahead of the lookups the weight stream is prefetched (as in the AVX2 kernel).
const PREFETCH_BYTES: usize = 8192;

/// Accumulates groups `groups` of one tile into `out` (32 values in flush order).
///
/// # Safety
/// The CPU must have [`Isa::Avx512`](super::isa::Isa) (and VBMI when `VBMI`); `tile` must hold
/// `shape.tile_bytes()` bytes and `table` must match the shape (checked by the callers).
pub(crate) unsafe fn tile_kernel<const VBMI: bool>(
    tile: &[u8],
    shape: &PackedShape,
    table: &ActivationTable,
    groups: Range<usize>,
    out: &mut [f32; TILE_ROWS],
) {
    debug_assert_eq!(tile.len(), shape.tile_bytes());
    debug_assert!(groups.end <= shape.groups_per_row());
    let outs = std::slice::from_mut(out)
        .try_into()
        .expect("one output tile");
    dispatch::<1, VBMI>([tile], shape, table, groups, outs)
}

/// [`tile_kernel`] for two tiles at once, sharing each table broadcast.
///
/// # Safety
/// As [`tile_kernel`], for both tiles.
pub(crate) unsafe fn tile_pair_kernel<const VBMI: bool>(
    tiles: [&[u8]; 2],
    shape: &PackedShape,
    table: &ActivationTable,
    groups: Range<usize>,
    outs: &mut [[f32; TILE_ROWS]; 2],
) {
    debug_assert!(tiles.iter().all(|t| t.len() == shape.tile_bytes()));
    debug_assert!(groups.end <= shape.groups_per_row());
    dispatch::<2, VBMI>(tiles, shape, table, groups, outs)
}

unsafe fn dispatch<const T: usize, const VBMI: bool>(
    tiles: [&[u8]; T],
    shape: &PackedShape,
    table: &ActivationTable,
    groups: Range<usize>,
    outs: &mut [[f32; TILE_ROWS]; T],
) {
    match (shape.bits, VBMI) {
        (WeightBits::B1, false) => tiles_bits::<1, T>(tiles, shape, table, groups, outs),
        (WeightBits::B2, false) => tiles_bits::<2, T>(tiles, shape, table, groups, outs),
        (WeightBits::B3, false) => tiles_bits::<3, T>(tiles, shape, table, groups, outs),
        (WeightBits::B4, false) => tiles_bits::<4, T>(tiles, shape, table, groups, outs),
        (WeightBits::B8, false) => tiles_bits::<8, T>(tiles, shape, table, groups, outs),
        (WeightBits::B1, true) => tiles_bits_vbmi::<1, T>(tiles, shape, table, groups, outs),
        (WeightBits::B2, true) => tiles_bits_vbmi::<2, T>(tiles, shape, table, groups, outs),
        (WeightBits::B3, true) => tiles_bits_vbmi::<3, T>(tiles, shape, table, groups, outs),
        (WeightBits::B4, true) => tiles_bits_vbmi::<4, T>(tiles, shape, table, groups, outs),
        (WeightBits::B8, true) => tiles_bits_vbmi::<8, T>(tiles, shape, table, groups, outs),
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
unsafe fn tiles_bits<const BITS: usize, const T: usize>(
    tiles: [&[u8]; T],
    shape: &PackedShape,
    table: &ActivationTable,
    groups: Range<usize>,
    outs: &mut [[f32; TILE_ROWS]; T],
) {
    tiles_body::<BITS, T, false>(tiles, shape, table, groups, outs)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi,avx2,fma,f16c")]
unsafe fn tiles_bits_vbmi<const BITS: usize, const T: usize>(
    tiles: [&[u8]; T],
    shape: &PackedShape,
    table: &ActivationTable,
    groups: Range<usize>,
    outs: &mut [[f32; TILE_ROWS]; T],
) {
    tiles_body::<BITS, T, true>(tiles, shape, table, groups, outs)
}

/// The two lookups of 64 index bytes: table A by the low nibbles, table B by the high ones.
#[inline(always)]
unsafe fn lookups<const VBMI: bool>(
    x: __m512i,
    table_a: __m512i,
    table_b: __m512i,
    nibble_mask: __m512i,
) -> (__m512i, __m512i) {
    let shifted = _mm512_srli_epi16::<4>(x);
    if VBMI {
        (
            _mm512_permutexvar_epi8(x, table_a),
            _mm512_permutexvar_epi8(shifted, table_b),
        )
    } else {
        (
            _mm512_shuffle_epi8(table_a, _mm512_and_si512(x, nibble_mask)),
            _mm512_shuffle_epi8(table_b, _mm512_and_si512(shifted, nibble_mask)),
        )
    }
}

/// The 8 fp16 values of flush vectors `v` and `v + 2` (16 bytes each, 32 bytes apart).
#[inline(always)]
unsafe fn two_halves(base: *const u8, v: usize) -> __m256i {
    _mm256_inserti128_si256::<1>(
        _mm256_castsi128_si256(_mm_loadu_si128(base.add(16 * v) as *const _)),
        _mm_loadu_si128(base.add(16 * (v + 2)) as *const _),
    )
}

/// The kernel body; inlined into the two `target_feature` wrappers above.
#[inline(always)]
unsafe fn tiles_body<const BITS: usize, const T: usize, const VBMI: bool>(
    tiles: [&[u8]; T],
    shape: &PackedShape,
    table: &ActivationTable,
    groups: Range<usize>,
    outs: &mut [[f32; TILE_ROWS]; T],
) {
    let group = shape.group.get();
    let unit = table.group().get();
    let block_bytes = shape.block_bytes();
    let step_bytes = 32 * BITS;
    let steps_per_unit = unit / STEP_COLS;
    let entries = table.entries().as_ptr() as *const u8;
    let half_scales = table.half_scales();
    let sums = table.sums();
    let zero_groups = table.zero_groups();
    let tile_bytes = shape.tile_bytes();
    let starts: [*const u8; T] = std::array::from_fn(|t| tiles[t].as_ptr());

    let nibble_mask = _mm512_set1_epi8(0x0f);
    let pair_coefficients = _mm512_set1_epi16(0x0201);
    let solo_coefficient = _mm512_set1_epi8(if BITS == 3 { 4 } else { 1 });
    let pick_even = _mm512_set1_epi32(0x0000_0001);
    let pick_odd = _mm512_set1_epi32(0x0001_0000);
    let one_and_four = _mm512_set1_epi32(0x0004_0001);
    // Upper 256 bits of a 512-bit byte vector (the odd plane's second half).
    let upper_half: __mmask64 = 0xffff_ffff_0000_0000;

    // y[t][v]: v = 0 holds flush vectors 0 (low 256 bits) and 2 (high), v = 1 vectors 1 and 3,
    // matching the accumulators' halves (see `super::format::flush_order`).
    let mut y = [[_mm512_setzero_ps(); 2]; T];
    for (values, out) in y.iter_mut().zip(outs.iter()) {
        let p = out.as_ptr();
        values[0] = _mm512_insertf32x8::<1>(
            _mm512_castps256_ps512(_mm256_loadu_ps(p)),
            _mm256_loadu_ps(p.add(16)),
        );
        values[1] = _mm512_insertf32x8::<1>(
            _mm512_castps256_ps512(_mm256_loadu_ps(p.add(8))),
            _mm256_loadu_ps(p.add(24)),
        );
    }

    for g in groups {
        let blocks: [*const u8; T] =
            std::array::from_fn(|t| tiles[t].as_ptr().add(g * block_bytes));
        for u in 0..group / unit {
            let unit_index = g * group / unit + u;
            if *zero_groups.get_unchecked(unit_index) {
                continue;
            }
            let mut weights: [*const u8; T] =
                std::array::from_fn(|t| blocks[t].add(u * steps_per_unit * step_bytes));
            let mut tables = entries.add(unit_index * unit * 4);
            let zero = _mm512_setzero_si512();
            // acc[t][j]: tile t, plane pair j; half 0 in the low 256 bits, half 1 in the high.
            let mut acc = [[zero; 4]; T];
            for _ in 0..steps_per_unit {
                let table_a = _mm512_broadcast_i32x4(_mm_loadu_si128(tables as *const _));
                let table_b = _mm512_broadcast_i32x4(_mm_loadu_si128(tables.add(16) as *const _));
                tables = tables.add(32);
                for ((tile_acc, w), start) in acc.iter_mut().zip(weights.iter_mut()).zip(starts) {
                    let offset = (*w as usize - start as usize) + PREFETCH_BYTES / T;
                    let skip = if T > 1 && offset >= tile_bytes {
                        (T - 1) * tile_bytes
                    } else {
                        0
                    };
                    for line in 0..BITS.div_ceil(2) {
                        let ahead = w.wrapping_add(PREFETCH_BYTES / T + skip + 64 * line);
                        _mm_prefetch::<_MM_HINT_T0>(ahead as *const i8);
                    }
                    for pair in 0..BITS / 2 {
                        let x = _mm512_loadu_si512(*w as *const _);
                        *w = w.add(64);
                        let (from_a, from_b) = lookups::<VBMI>(x, table_a, table_b, nibble_mask);
                        let both = _mm512_add_epi16(
                            _mm512_maddubs_epi16(pair_coefficients, from_a),
                            _mm512_maddubs_epi16(pair_coefficients, from_b),
                        );
                        let slot = if BITS >= 4 { pair } else { 0 };
                        tile_acc[slot] = _mm512_add_epi16(tile_acc[slot], both);
                    }
                    if BITS % 2 == 1 {
                        // One 32-byte chunk of 32 rows: both halves of the register hold it;
                        // the low half keeps rows 16L+0..8 (unpacklo), the high rows 16L+8..16.
                        let x = _mm512_broadcast_i64x4(_mm256_loadu_si256(*w as *const _));
                        *w = w.add(32);
                        let (from_a, from_b) = lookups::<VBMI>(x, table_a, table_b, nibble_mask);
                        let rows = _mm512_mask_unpackhi_epi8(
                            _mm512_unpacklo_epi8(from_a, from_b),
                            upper_half,
                            from_a,
                            from_b,
                        );
                        tile_acc[0] = _mm512_add_epi16(
                            tile_acc[0],
                            _mm512_maddubs_epi16(solo_coefficient, rows),
                        );
                    }
                }
            }

            let half_scale = _mm512_set1_ps(*half_scales.get_unchecked(unit_index));
            let activation_sum = _mm512_set1_ps(*sums.get_unchecked(unit_index));
            for t in 0..T {
                // Widen to int32: sums32[v] holds flush vectors v (low) and v + 2 (high).
                let half = &acc[t];
                let sums32 = if BITS >= 4 {
                    let mut low =
                        _mm512_madd_epi16(_mm512_unpacklo_epi16(half[0], half[1]), one_and_four);
                    let mut high =
                        _mm512_madd_epi16(_mm512_unpackhi_epi16(half[0], half[1]), one_and_four);
                    if BITS == 8 {
                        let upper_low = _mm512_madd_epi16(
                            _mm512_unpacklo_epi16(half[2], half[3]),
                            one_and_four,
                        );
                        let upper_high = _mm512_madd_epi16(
                            _mm512_unpackhi_epi16(half[2], half[3]),
                            one_and_four,
                        );
                        low = _mm512_add_epi32(low, _mm512_slli_epi32::<4>(upper_low));
                        high = _mm512_add_epi32(high, _mm512_slli_epi32::<4>(upper_high));
                    }
                    [low, high]
                } else {
                    [
                        _mm512_madd_epi16(half[0], pick_even),
                        _mm512_madd_epi16(half[0], pick_odd),
                    ]
                };
                let scales = blocks[t].add(block_bytes - BLOCK_SCALE_BYTES);
                for (v, (value, sum)) in y[t].iter_mut().zip(sums32).enumerate() {
                    // fp16 scales of flush vectors v and v + 2, then their centres.
                    let scale = _mm512_cvtph_ps(two_halves(scales, v));
                    let centre = _mm512_cvtph_ps(two_halves(scales.add(2 * TILE_ROWS), v));
                    *value = _mm512_fmadd_ps(
                        _mm512_cvtepi32_ps(sum),
                        _mm512_mul_ps(scale, half_scale),
                        *value,
                    );
                    *value = _mm512_fmadd_ps(centre, activation_sum, *value);
                }
            }
        }
    }
    for (values, out) in y.iter().zip(outs.iter_mut()) {
        let p = out.as_mut_ptr();
        _mm256_storeu_ps(p, _mm512_castps512_ps256(values[0]));
        _mm256_storeu_ps(p.add(16), _mm512_extractf32x8_ps::<1>(values[0]));
        _mm256_storeu_ps(p.add(8), _mm512_castps512_ps256(values[1]));
        _mm256_storeu_ps(p.add(24), _mm512_extractf32x8_ps::<1>(values[1]));
    }
}
