//! The AVX2 dot-product kernel ([`super::dot`]), also run on AVX-512 CPUs without VNNI: codes
//! widened to int16 and multiplied by int16 activations with `vpmaddwd` (two products per int32
//! lane), then pairs of lanes added with `vphaddd`. Same exact int32 sums and same float
//! updates as the other paths.

use std::arch::x86_64::*;

use super::byte_matrix::{ByteShape, DOT_TILE_ROWS};
use super::q8::{Q8Activations, Q8_BLOCK};

/// # Safety
/// Needs AVX2, FMA and F16C; lengths as in [`super::dot::run`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn tiles(
    shape: &ByteShape,
    tiles: &[u8],
    count: usize,
    xs: &[Q8Activations],
    out: &mut [f32],
) {
    let group = shape.group.get();
    let block_bytes = shape.block_bytes();
    let max_code = shape.bits.max_code() as i32;
    let width = count * DOT_TILE_ROWS;
    // vphaddd leaves rows in the order 0 1 4 5 2 3 6 7.
    let row_order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
    for t in 0..count {
        for g in 0..shape.groups_per_row() {
            let block = tiles
                .as_ptr()
                .add((t * shape.groups_per_row() + g) * block_bytes);
            let scales = block.add(DOT_TILE_ROWS * group);
            let scale = [
                _mm256_cvtph_ps(_mm_loadu_si128(scales as *const _)),
                _mm256_cvtph_ps(_mm_loadu_si128(scales.add(16) as *const _)),
            ];
            let centre = [
                _mm256_cvtph_ps(_mm_loadu_si128(scales.add(32) as *const _)),
                _mm256_cvtph_ps(_mm_loadu_si128(scales.add(48) as *const _)),
            ];
            for b in 0..group / Q8_BLOCK {
                let unit = (g * group) / Q8_BLOCK + b;
                // The block's 32 columns × 16 rows widened to int16 once for all vectors:
                // wide[4k + q] holds rows 4q..4q+4 of step k.
                let base = block.add(b * Q8_BLOCK * DOT_TILE_ROWS);
                let mut wide = [_mm256_setzero_si256(); 32];
                for (i, reg) in wide.iter_mut().enumerate() {
                    *reg = _mm256_cvtepu8_epi16(_mm_loadu_si128(base.add(16 * i) as *const _));
                }
                for (n, x) in xs.iter().enumerate() {
                    let values = x.values().as_ptr().add(unit * Q8_BLOCK) as *const i32;
                    let mut acc = [_mm256_setzero_si256(); 4];
                    for k in 0..8 {
                        let four =
                            _mm256_cvtepi8_epi16(_mm_set1_epi32(values.add(k).read_unaligned()));
                        for (q, a) in acc.iter_mut().enumerate() {
                            *a = _mm256_add_epi32(*a, _mm256_madd_epi16(wide[4 * k + q], four));
                        }
                    }
                    let sums = [
                        _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(acc[0], acc[1]), row_order),
                        _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(acc[2], acc[3]), row_order),
                    ];
                    let half = _mm256_set1_ps(*x.half_scales().get_unchecked(unit));
                    let correction =
                        _mm256_set1_epi32(max_code * *x.value_sums().get_unchecked(unit));
                    let sum = _mm256_set1_ps(*x.sums().get_unchecked(unit));
                    for h in 0..2 {
                        let d = _mm256_sub_epi32(_mm256_slli_epi32::<1>(sums[h]), correction);
                        let y = out.as_mut_ptr().add(n * width + t * DOT_TILE_ROWS + 8 * h);
                        let mut value = _mm256_loadu_ps(y);
                        value = _mm256_fmadd_ps(
                            _mm256_cvtepi32_ps(d),
                            _mm256_mul_ps(scale[h], half),
                            value,
                        );
                        value = _mm256_fmadd_ps(centre[h], sum, value);
                        _mm256_storeu_ps(y, value);
                    }
                }
            }
        }
    }
}
