//! The AVX2 lookup kernel (x86-64 with AVX2, FMA and F16C, checked at run time).
//!
//! One macro step covers 32 rows × 8 activations. The two tables of the step (activations
//! `k..k+4` and `k+4..k+8`) are broadcast into both 128-bit lanes; every 32-byte chunk of
//! weights is split into low nibbles (table A) and high nibbles (table B), each looked up with
//! one `vpshufb` (32 int8 partial sums). `vpmaddubsw` then widens to int16 and weights the
//! plane pair in one instruction (coefficients 1 and 2 for planes `2j` and `2j+1`), so a
//! 32-byte chunk costs: and, shift, and, 2 × pshufb, 2 × maddubs, 2 × add. int16 sums are
//! exact for one activation group of up to 128 (see `format::GroupSize::new`); at the end of
//! the group they are widened to int32, converted to f32 once and scaled.

use std::arch::x86_64::*;
use std::ops::Range;

use super::format::{WeightBits, BLOCK_SCALE_BYTES, STEP_COLS, TILE_ROWS};
use super::packed::PackedShape;
use super::table::ActivationTable;

/// How far ahead of the lookups the weight stream is prefetched. Cold GEMVs (weights from
/// DRAM) need several KiB in flight per thread to approach the DRAM bandwidth while the core
/// is busy with lookups; the hardware prefetcher alone leaves the 4-bit kernel ~40 % short.
const PREFETCH_BYTES: usize = 8192;

/// Accumulates groups `groups` of one tile into `out` (32 values in flush order).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C ([`Isa::Avx2`](super::isa::Isa)); `tile` must hold
/// `shape.tile_bytes()` bytes and `table` must match the shape (checked by the callers).
pub(crate) unsafe fn tile_kernel(
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
    match shape.bits {
        WeightBits::B1 => tiles_bits::<1, 1>([tile], shape, table, groups, outs),
        WeightBits::B2 => tiles_bits::<2, 1>([tile], shape, table, groups, outs),
        WeightBits::B3 => tiles_bits::<3, 1>([tile], shape, table, groups, outs),
        WeightBits::B4 => tiles_bits::<4, 1>([tile], shape, table, groups, outs),
        WeightBits::B8 => tiles_bits::<8, 1>([tile], shape, table, groups, outs),
    }
}

/// Like [`tile_kernel`] for two tiles at once: each table broadcast and each constant serves
/// 64 rows, which saves about a tenth of the instructions. 8-bit codes (eight int16
/// accumulators per tile) run one tile at a time to stay within the 16 vector registers.
///
/// # Safety
/// As [`tile_kernel`], for both tiles.
pub(crate) unsafe fn tile_pair_kernel(
    tiles: [&[u8]; 2],
    shape: &PackedShape,
    table: &ActivationTable,
    groups: Range<usize>,
    outs: &mut [[f32; TILE_ROWS]; 2],
) {
    debug_assert!(tiles.iter().all(|t| t.len() == shape.tile_bytes()));
    debug_assert!(groups.end <= shape.groups_per_row());
    match shape.bits {
        WeightBits::B1 => tiles_bits::<1, 2>(tiles, shape, table, groups, outs),
        WeightBits::B2 => tiles_bits::<2, 2>(tiles, shape, table, groups, outs),
        WeightBits::B3 => tiles_bits::<3, 2>(tiles, shape, table, groups, outs),
        WeightBits::B4 => tiles_bits::<4, 2>(tiles, shape, table, groups, outs),
        WeightBits::B8 => {
            let [first, second] = outs;
            tile_kernel(tiles[0], shape, table, groups.clone(), first);
            tile_kernel(tiles[1], shape, table, groups, second);
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tiles_bits<const BITS: usize, const T: usize>(
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

    let nibble_mask = _mm256_set1_epi8(0x0f);
    // vpmaddubsw coefficients: byte pair (plane 2j, plane 2j+1) weighted (1, 2).
    let pair_coefficients = _mm256_set1_epi16(0x0201);
    // The odd plane of a 3-bit code is plane 2 (weight 4); a 1-bit code's only plane weighs 1.
    let solo_coefficient = _mm256_set1_epi8(if BITS == 3 { 4 } else { 1 });
    let pick_even = _mm256_set1_epi32(0x0000_0001);
    let pick_odd = _mm256_set1_epi32(0x0001_0000);
    let one_and_four = _mm256_set1_epi32(0x0004_0001);

    let mut y = [[_mm256_setzero_ps(); 4]; T];
    for (values, out) in y.iter_mut().zip(outs.iter()) {
        for (i, value) in values.iter_mut().enumerate() {
            *value = _mm256_loadu_ps(out.as_ptr().add(8 * i));
        }
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
            let zero = _mm256_setzero_si256();
            // acc[t][h][j]: tile t, rows of half h (see format::flush_order), plane pair j
            // (4 and 8 bits keep one accumulator per pair so no int16 sum can overflow).
            let mut acc = [[[zero; 4]; 2]; T];
            for _ in 0..steps_per_unit {
                let table_a = _mm256_broadcastsi128_si256(_mm_loadu_si128(tables as *const _));
                let table_b =
                    _mm256_broadcastsi128_si256(_mm_loadu_si128(tables.add(16) as *const _));
                tables = tables.add(32);
                for ((tile_acc, w), start) in acc.iter_mut().zip(weights.iter_mut()).zip(starts) {
                    // Prefetch what this stream reads PREFETCH_BYTES of total traffic later:
                    // with T streams that is PREFETCH_BYTES/T further on in this tile, or, past
                    // its end, in this stream's next tile (T tiles further on in memory).
                    let offset = (*w as usize - start as usize) + PREFETCH_BYTES / T;
                    let skip = if T > 1 && offset >= tile_bytes {
                        (T - 1) * tile_bytes
                    } else {
                        0
                    };
                    // One prefetch per 64-byte line of this step (a 1-bit step is half a line).
                    for line in 0..BITS.div_ceil(2) {
                        let ahead = w.wrapping_add(PREFETCH_BYTES / T + skip + 64 * line);
                        _mm_prefetch::<_MM_HINT_T0>(ahead as *const i8);
                    }
                    for pair in 0..BITS / 2 {
                        for half in tile_acc.iter_mut() {
                            let x = _mm256_loadu_si256(*w as *const __m256i);
                            *w = w.add(32);
                            let lo = _mm256_and_si256(x, nibble_mask);
                            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(x), nibble_mask);
                            let from_a = _mm256_shuffle_epi8(table_a, lo);
                            let from_b = _mm256_shuffle_epi8(table_b, hi);
                            let both = _mm256_add_epi16(
                                _mm256_maddubs_epi16(pair_coefficients, from_a),
                                _mm256_maddubs_epi16(pair_coefficients, from_b),
                            );
                            let slot = if BITS >= 4 { pair } else { 0 };
                            half[slot] = _mm256_add_epi16(half[slot], both);
                        }
                    }
                    if BITS % 2 == 1 {
                        let x = _mm256_loadu_si256(*w as *const __m256i);
                        *w = w.add(32);
                        let lo = _mm256_and_si256(x, nibble_mask);
                        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(x), nibble_mask);
                        let from_a = _mm256_shuffle_epi8(table_a, lo);
                        let from_b = _mm256_shuffle_epi8(table_b, hi);
                        let rows_low = _mm256_unpacklo_epi8(from_a, from_b);
                        let rows_high = _mm256_unpackhi_epi8(from_a, from_b);
                        tile_acc[0][0] = _mm256_add_epi16(
                            tile_acc[0][0],
                            _mm256_maddubs_epi16(solo_coefficient, rows_low),
                        );
                        tile_acc[1][0] = _mm256_add_epi16(
                            tile_acc[1][0],
                            _mm256_maddubs_epi16(solo_coefficient, rows_high),
                        );
                    }
                }
            }

            let half_scale = _mm256_set1_ps(*half_scales.get_unchecked(unit_index));
            let activation_sum = _mm256_set1_ps(*sums.get_unchecked(unit_index));
            for t in 0..T {
                // Widen to int32 in flush order.
                let mut sums32 = [zero; 4];
                for (h, half) in acc[t].iter().enumerate() {
                    if BITS >= 4 {
                        let mut low = _mm256_madd_epi16(
                            _mm256_unpacklo_epi16(half[0], half[1]),
                            one_and_four,
                        );
                        let mut high = _mm256_madd_epi16(
                            _mm256_unpackhi_epi16(half[0], half[1]),
                            one_and_four,
                        );
                        if BITS == 8 {
                            let upper_low = _mm256_madd_epi16(
                                _mm256_unpacklo_epi16(half[2], half[3]),
                                one_and_four,
                            );
                            let upper_high = _mm256_madd_epi16(
                                _mm256_unpackhi_epi16(half[2], half[3]),
                                one_and_four,
                            );
                            low = _mm256_add_epi32(low, _mm256_slli_epi32::<4>(upper_low));
                            high = _mm256_add_epi32(high, _mm256_slli_epi32::<4>(upper_high));
                        }
                        sums32[2 * h] = low;
                        sums32[2 * h + 1] = high;
                    } else {
                        sums32[2 * h] = _mm256_madd_epi16(half[0], pick_even);
                        sums32[2 * h + 1] = _mm256_madd_epi16(half[0], pick_odd);
                    }
                }
                let scales = blocks[t].add(block_bytes - BLOCK_SCALE_BYTES);
                for (i, (value, sum)) in y[t].iter_mut().zip(sums32).enumerate() {
                    let scale = _mm256_cvtph_ps(_mm_loadu_si128(scales.add(16 * i) as *const _));
                    let centre = _mm256_cvtph_ps(_mm_loadu_si128(
                        scales.add(2 * TILE_ROWS + 16 * i) as *const _,
                    ));
                    *value = _mm256_fmadd_ps(
                        _mm256_cvtepi32_ps(sum),
                        _mm256_mul_ps(scale, half_scale),
                        *value,
                    );
                    *value = _mm256_fmadd_ps(centre, activation_sum, *value);
                }
            }
        }
    }
    for (values, out) in y.iter().zip(outs.iter_mut()) {
        for (i, value) in values.iter().enumerate() {
            _mm256_storeu_ps(out.as_mut_ptr().add(8 * i), *value);
        }
    }
}
