//! The AVX-512 VNNI dot-product kernel ([`super::dot`]): one `vpdpbusd` multiplies 16 rows × 4
//! columns of unsigned codes by 4 broadcast int8 activations and adds the four products of each
//! row into its int32 lane. Two tiles (32 rows) run per pass so each broadcast serves both; a
//! 32-column block's 8 (or 16) weight registers stay loaded while every activation vector runs
//! over them, which is what makes the prefill GEMM cheap.

use std::arch::x86_64::*;

use super::byte_matrix::{ByteShape, DOT_TILE_ROWS};
use super::q8::{Q8Activations, Q8_BLOCK};

/// How far ahead the weight stream is prefetched (decode reads each weight once, from DRAM).
const PREFETCH_BYTES: usize = 4096;

/// # Safety
/// Needs [`Isa::Avx512Vnni`](super::isa::Isa); lengths as in [`super::dot::run`].
pub(crate) unsafe fn tiles(
    shape: &ByteShape,
    tiles: &[u8],
    count: usize,
    xs: &[Q8Activations],
    out: &mut [f32],
) {
    let mut t = 0;
    // Two tiles per pass share each activation broadcast, which pays with several vectors;
    // a single vector (decode) streams its weights from DRAM faster one tile at a time.
    while xs.len() > 1 && t + 2 <= count {
        pass::<2>(shape, tiles, t, count, xs, out);
        t += 2;
    }
    while t < count {
        pass::<1>(shape, tiles, t, count, xs, out);
        t += 1;
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
unsafe fn pass<const T: usize>(
    shape: &ByteShape,
    tiles: &[u8],
    first: usize,
    count: usize,
    xs: &[Q8Activations],
    out: &mut [f32],
) {
    let group = shape.group.get();
    let block_bytes = shape.block_bytes();
    let tile_bytes = shape.tile_bytes();
    let max_code = shape.bits.max_code() as i32;
    let width = count * DOT_TILE_ROWS;
    let end = tiles.as_ptr().add(tiles.len());
    for g in 0..shape.groups_per_row() {
        let blocks: [*const u8; T] = std::array::from_fn(|i| {
            tiles
                .as_ptr()
                .add((first + i) * tile_bytes + g * block_bytes)
        });
        let mut scale = [_mm512_setzero_ps(); T];
        let mut centre = [_mm512_setzero_ps(); T];
        for i in 0..T {
            let s = blocks[i].add(DOT_TILE_ROWS * group);
            scale[i] = _mm512_cvtph_ps(_mm256_loadu_si256(s as *const _));
            centre[i] = _mm512_cvtph_ps(_mm256_loadu_si256(s.add(32) as *const _));
        }
        for b in 0..group / Q8_BLOCK {
            let unit = (g * group) / Q8_BLOCK + b;
            let mut w = [[_mm512_setzero_si512(); 8]; T];
            for i in 0..T {
                let base = blocks[i].add(b * Q8_BLOCK * DOT_TILE_ROWS);
                for (k, reg) in w[i].iter_mut().enumerate() {
                    *reg = _mm512_loadu_si512(base.add(64 * k) as *const _);
                }
                // Prefetch this tile's stream ahead (within the payload only).
                for line in 0..8 {
                    let ahead = base.wrapping_add(PREFETCH_BYTES + 64 * line);
                    if ahead < end {
                        _mm_prefetch::<_MM_HINT_T0>(ahead as *const i8);
                    }
                }
            }
            for (n, x) in xs.iter().enumerate() {
                let values = x.values().as_ptr().add(unit * Q8_BLOCK) as *const i32;
                let half = _mm512_set1_ps(*x.half_scales().get_unchecked(unit));
                let correction = _mm512_set1_epi32(max_code * *x.value_sums().get_unchecked(unit));
                let sum = _mm512_set1_ps(*x.sums().get_unchecked(unit));
                let mut acc = [_mm512_setzero_si512(); T];
                for k in 0..8 {
                    let four = _mm512_set1_epi32(values.add(k).read_unaligned());
                    for (a, tile_codes) in acc.iter_mut().zip(&w) {
                        *a = _mm512_dpbusd_epi32(*a, tile_codes[k], four);
                    }
                }
                for i in 0..T {
                    let d = _mm512_sub_epi32(_mm512_slli_epi32::<1>(acc[i]), correction);
                    let y = out
                        .as_mut_ptr()
                        .add(n * width + (first + i) * DOT_TILE_ROWS);
                    let mut value = _mm512_loadu_ps(y);
                    value = _mm512_fmadd_ps(
                        _mm512_cvtepi32_ps(d),
                        _mm512_mul_ps(scale[i], half),
                        value,
                    );
                    value = _mm512_fmadd_ps(centre[i], sum, value);
                    _mm512_storeu_ps(y, value);
                }
            }
        }
    }
}
