//! The AVX-512 prefill kernel ([`super::prefill`]): bit-planes to bytes with VBMI and GFNI,
//! then 8-bit dot products with VNNI, bit-identical to the portable path.
//!
//! Per macro step (32 rows × 8 columns) and octet of rows (8 rows, in [`flush_order`]):
//!
//! 1. `vpermi2b` gathers, for each of the 8 rows, its plane bytes into one 64-bit word, plane
//!    `p` at byte `7 − p` (planes the width lacks are zero). A plane byte holds the plane bits
//!    of the step's 8 columns (bit `c` = column `k + c`; the layout's A and B nibbles).
//! 2. `vgf2p8affineqb` with the constant `0x8040201008040201` transposes each word as an 8×8
//!    bit matrix: byte `c` becomes the code of column `k + c`.
//!
//! Four steps make one 32-column activation block: 16 registers of codes, held while every
//! vector runs over them. `vpdpbusd` of a register (8 rows × 8 codes) with a broadcast of the
//! vector's 8 int8 activations sums columns `k..k+4` of a row in one int32 lane and
//! `k+4..k+8` in the next; after the block the lane pairs are added (`vpermt2d`), giving 16
//! rows in flush order, and the float update is that of [`super::dot`].

use std::arch::x86_64::*;

use super::format::{flush_order, BLOCK_SCALE_BYTES, STEP_COLS, TILE_ROWS};
use super::packed::PackedShape;
use super::q8::{Q8Activations, Q8_BLOCK};

/// Byte offset, within a macro step of a `bits`-wide tile, of row `row`'s byte of plane
/// `plane` (the layout of [`super::packed`]).
fn plane_byte(bits: usize, row: usize, plane: usize) -> usize {
    if plane < bits / 2 * 2 {
        let (pair, e) = (plane / 2, plane % 2);
        let (lane, half, i) = (row / 16, (row % 16) / 8, row % 8);
        32 * (2 * pair + half) + 16 * lane + 2 * i + e
    } else {
        32 * (bits - 1) + row
    }
}

/// The `vpermi2b` indices and masks of one width: for octet `m` (flush positions
/// `8m..8m+8`) and source half `t` (step bytes `128t..128t+128`), which byte each output byte
/// takes, and which output bytes come from that half.
struct Gather {
    index: [[[u8; 64]; 2]; 4],
    mask: [[u64; 2]; 4],
}

impl Gather {
    fn new(shape: &PackedShape) -> Gather {
        let bits = shape.bits.bits();
        let order = flush_order(shape.bits);
        let mut gather = Gather {
            index: [[[0; 64]; 2]; 4],
            mask: [[0; 2]; 4],
        };
        for m in 0..4 {
            for j in 0..8 {
                let row = order[8 * m + j] as usize;
                for plane in 0..bits {
                    let offset = plane_byte(bits, row, plane);
                    let (half, at) = (offset / 128, 8 * j + 7 - plane);
                    gather.index[m][half][at] = (offset % 128) as u8;
                    gather.mask[m][half] |= 1 << at;
                }
            }
        }
        gather
    }
}

/// Accumulates one tile (32 rows, all groups) for every vector into `out`: `N × 32` values,
/// in flush order per vector.
///
/// # Safety
/// The CPU must have [`Isa::Avx512Vnni`](super::isa::Isa); `tile` holds `shape.tile_bytes()`
/// bytes, every vector has `shape.cols` columns and `out` has `32 · xs.len()` values.
#[target_feature(
    enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512vbmi,gfni,avx2,fma,f16c"
)]
pub(crate) unsafe fn tile(shape: &PackedShape, tile: &[u8], xs: &[Q8Activations], out: &mut [f32]) {
    debug_assert_eq!(tile.len(), shape.tile_bytes());
    debug_assert_eq!(out.len(), xs.len() * TILE_ROWS);
    let gather = Gather::new(shape);
    let index: [[__m512i; 2]; 4] = std::array::from_fn(|m| {
        std::array::from_fn(|t| _mm512_loadu_si512(gather.index[m][t].as_ptr() as *const _))
    });
    let bits = shape.bits.bits();
    let group = shape.group.get();
    let step_bytes = 32 * bits;
    let block_bytes = shape.block_bytes();
    let max_code = shape.bits.max_code() as i32;
    let transpose = _mm512_set1_epi64(0x8040_2010_0804_0201_u64 as i64);
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let zero = _mm512_setzero_si512();
    for u in 0..shape.cols / Q8_BLOCK {
        let g = u * Q8_BLOCK / group;
        let block = tile.as_ptr().add(g * block_bytes);
        let first_step = (u * Q8_BLOCK % group) / STEP_COLS;
        // codes[s][m]: step s of the block, octet m: 8 rows × 8 codes.
        let mut codes = [[zero; 4]; 4];
        for (s, step_codes) in codes.iter_mut().enumerate() {
            let step = block.add((first_step + s) * step_bytes);
            let source: [__m512i; 4] = std::array::from_fn(|k| {
                let left = step_bytes.saturating_sub(64 * k);
                if left >= 64 {
                    _mm512_loadu_si512(step.add(64 * k) as *const _)
                } else if left > 0 {
                    _mm512_maskz_loadu_epi8((1u64 << left) - 1, step.add(64 * k) as *const i8)
                } else {
                    zero
                }
            });
            for (m, codes) in step_codes.iter_mut().enumerate() {
                let mut planes = _mm512_maskz_permutex2var_epi8(
                    gather.mask[m][0],
                    source[0],
                    index[m][0],
                    source[1],
                );
                if step_bytes > 128 {
                    planes = _mm512_or_si512(
                        planes,
                        _mm512_maskz_permutex2var_epi8(
                            gather.mask[m][1],
                            source[2],
                            index[m][1],
                            source[3],
                        ),
                    );
                }
                *codes = _mm512_gf2p8affine_epi64_epi8::<0>(transpose, planes);
            }
        }
        let scales = block.add(block_bytes - BLOCK_SCALE_BYTES);
        let scale = [
            _mm512_cvtph_ps(_mm256_loadu_si256(scales as *const _)),
            _mm512_cvtph_ps(_mm256_loadu_si256(scales.add(32) as *const _)),
        ];
        let centre = [
            _mm512_cvtph_ps(_mm256_loadu_si256(scales.add(2 * TILE_ROWS) as *const _)),
            _mm512_cvtph_ps(_mm256_loadu_si256(
                scales.add(2 * TILE_ROWS + 32) as *const _
            )),
        ];
        for (n, x) in xs.iter().enumerate() {
            let values = x.values().as_ptr().add(u * Q8_BLOCK) as *const i64;
            let mut acc = [zero; 4];
            for (s, step_codes) in codes.iter().enumerate() {
                let activations = _mm512_set1_epi64(values.add(s).read_unaligned());
                for (a, &c) in acc.iter_mut().zip(step_codes) {
                    *a = _mm512_dpbusd_epi32(*a, c, activations);
                }
            }
            let half = _mm512_set1_ps(*x.half_scales().get_unchecked(u));
            let correction = _mm512_set1_epi32(max_code * *x.value_sums().get_unchecked(u));
            let sum = _mm512_set1_ps(*x.sums().get_unchecked(u));
            for q in 0..2 {
                let rows = _mm512_add_epi32(
                    _mm512_permutex2var_epi32(acc[2 * q], even, acc[2 * q + 1]),
                    _mm512_permutex2var_epi32(acc[2 * q], odd, acc[2 * q + 1]),
                );
                let d = _mm512_sub_epi32(_mm512_slli_epi32::<1>(rows), correction);
                let y = out.as_mut_ptr().add(n * TILE_ROWS + 16 * q);
                let mut value = _mm512_loadu_ps(y);
                value =
                    _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_mul_ps(scale[q], half), value);
                value = _mm512_fmadd_ps(centre[q], sum, value);
                _mm512_storeu_ps(y, value);
            }
        }
    }
}
