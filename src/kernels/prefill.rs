//! Prefill GEMM of a lookup-layout matrix ([`PackedView`]) with int8 activations
//! ([`Q8Activations`]): `Y = X·Wᵀ` for many vectors at once.
//!
//! Table lookups pay per vector for every bit-plane; with many vectors (a prompt) the same
//! weights meet every vector, so it pays to turn each tile's bit-planes back into byte codes
//! once and run 8-bit dot products (`vpdpbusd`) against all vectors. The weights stay in the
//! lookup layout (no second copy in memory); the unpacking happens block by block in
//! registers and costs a fraction of a percent of the dot products at prompt sizes.
//!
//! # Arithmetic (the same on every path)
//!
//! The dot-product kernels' rule ([`super::dot`]): per row and 32-column activation block `u`
//! inside weight group `g`, `D = 2·Σ q·xq − (2^bits − 1)·Σ xq` (exact int32), then
//! `y = fma(D, s_g·(d_u/2), y)` and `y = fma(c_g, Σx_u, y)`, blocks in column order, `y`
//! starting at 0. It is not the lookup GEMV's arithmetic (that one rounds table entries, this
//! one rounds activations to int8 per 32), so a prompt and a decode step of the same tokens
//! agree to the int8 rounding of either method, not bit for bit.
//!
//! # Paths
//!
//! * AVX-512 with VNNI, VBMI and GFNI ([`super::prefill_avx512`]): per 8 columns of a tile,
//!   `vpermi2b` gathers each row's plane bytes into one 64-bit word and `vgf2p8affineqb`
//!   transposes that 8×8 bit matrix into the row's 8 codes; `vpdpbusd` then multiplies them
//!   by 8 broadcast activations.
//! * AVX2 and AVX-512 without VNNI: each tile is repacked (portable code) into the byte
//!   layout of [`super::ByteMatrix`] and run by the AVX2 dot-product kernel.
//! * Scalar.

use std::ops::Range;

use super::byte_matrix::{ByteShape, DOT_SCALE_BYTES, DOT_STEP_COLS, DOT_TILE_ROWS};
use super::error::KernelError;
use super::format::{flush_order, BLOCK_SCALE_BYTES, TILE_ROWS};
use super::gemv::KernelOptions;
use super::isa::Isa;
use super::packed::{unpack_block_codes, PackedShape, PackedView};
use super::q8::{Q8Activations, Q8_BLOCK};

/// `Y = X·Wᵀ` for int8 activation vectors `xs` (prefill): `y` is `xs.len()` × rows,
/// row-major (`y[n·M + m]`). Threads split the row tiles.
pub fn gemm_q8(
    view: &PackedView<'_>,
    xs: &[Q8Activations],
    y: &mut [f32],
    options: KernelOptions,
) -> Result<(), KernelError> {
    let shape = view.shape();
    for x in xs {
        if x.cols() != shape.cols {
            return Err(KernelError::ShapeMismatch {
                what: "int8 activation columns vs matrix columns",
                expected: shape.cols,
                actual: x.cols(),
            });
        }
    }
    if options.threads == 0 {
        return Err(KernelError::ZeroThreads);
    }
    let n = xs.len();
    if y.len() != n * shape.rows {
        return Err(KernelError::ShapeMismatch {
            what: "output length vs vectors × matrix rows",
            expected: n * shape.rows,
            actual: y.len(),
        });
    }
    let isa = options.path.resolve()?;
    let tiles = shape.tiles();
    let parts = options.threads.clamp(1, tiles.max(1));
    let mut buffers: Vec<(Range<usize>, Vec<f32>)> = (0..parts)
        .map(|p| {
            let range = (tiles * p / parts)..(tiles * (p + 1) / parts);
            let len = n * range.len() * TILE_ROWS;
            (range, vec![0.0f32; len])
        })
        .collect();
    let work = |(range, out): &mut (Range<usize>, Vec<f32>)| {
        run(isa, view, range.clone(), xs, out);
    };
    if buffers.len() == 1 {
        buffers.iter_mut().for_each(work);
    } else {
        rayon::scope(|scope| {
            for part in buffers.iter_mut() {
                scope.spawn(move |_| work(part));
            }
        });
    }
    for (range, out) in &buffers {
        let width = range.len() * TILE_ROWS;
        let first = range.start * TILE_ROWS;
        let rows = (first + width).min(shape.rows) - first;
        for v in 0..n {
            y[v * shape.rows + first..v * shape.rows + first + rows]
                .copy_from_slice(&out[v * width..v * width + rows]);
        }
    }
    Ok(())
}

/// Computes tiles `tiles` for every vector into `out`: `N × (tiles.len()·32)`, row-major per
/// vector, rows in matrix order (padding rows included).
fn run(
    isa: Isa,
    view: &PackedView<'_>,
    tiles: Range<usize>,
    xs: &[Q8Activations],
    out: &mut [f32],
) {
    let shape = view.shape();
    let width = tiles.len() * TILE_ROWS;
    debug_assert_eq!(out.len(), xs.len() * width);
    match isa {
        Isa::Scalar => tiles_scalar(view, tiles, xs, out),
        // SAFETY: `isa` came from `KernelPath::resolve`, which checked the CPU; `out` has the
        // length asserted above and every vector has `shape.cols` columns.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => {
            let order = flush_order(shape.bits);
            let mut flushed = vec![0.0f32; xs.len() * TILE_ROWS];
            for (i, tile) in tiles.enumerate() {
                flushed.iter_mut().for_each(|v| *v = 0.0);
                unsafe { super::prefill_avx512::tile(&shape, view.tile(tile), xs, &mut flushed) };
                for (v, values) in flushed.chunks_exact(TILE_ROWS).enumerate() {
                    let rows = &mut out[v * width + i * TILE_ROWS..][..TILE_ROWS];
                    for (&row, value) in order.iter().zip(values) {
                        rows[row as usize] = *value;
                    }
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512 => {
            let bytes = byte_shape(&shape);
            let mut scratch = vec![0u8; 2 * bytes.tile_bytes()];
            let mut pair = vec![0.0f32; xs.len() * TILE_ROWS];
            for (i, tile) in tiles.enumerate() {
                repack_tile(&shape, view.tile(tile), &mut scratch);
                pair.iter_mut().for_each(|v| *v = 0.0);
                // SAFETY: as above; `scratch` holds two byte-layout tiles of `bytes`.
                unsafe { super::dot_avx2::tiles(&bytes, &scratch, 2, xs, &mut pair) };
                for (v, values) in pair.chunks_exact(TILE_ROWS).enumerate() {
                    out[v * width + i * TILE_ROWS..][..TILE_ROWS].copy_from_slice(values);
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("only the scalar level is detected off x86-64"),
    }
}

/// The byte-layout shape of one lookup tile's rows (two dot tiles of 16).
fn byte_shape(shape: &PackedShape) -> ByteShape {
    ByteShape {
        rows: TILE_ROWS,
        cols: shape.cols,
        bits: shape.bits,
        group: shape.group,
    }
}

/// Rewrites one lookup-layout tile (32 rows, all groups) as two byte-layout tiles of 16 rows
/// ([`super::ByteMatrix`]'s layout: codes one per byte, then fp16 scales and centres in row
/// order).
pub(crate) fn repack_tile(shape: &PackedShape, tile: &[u8], out: &mut [u8]) {
    let group = shape.group.get();
    let bytes = byte_shape(shape);
    let block_bytes = shape.block_bytes();
    let order = flush_order(shape.bits);
    let mut codes = [[0u8; 128]; TILE_ROWS];
    for g in 0..shape.groups_per_row() {
        let block = &tile[g * block_bytes..(g + 1) * block_bytes];
        codes.iter_mut().for_each(|row| row.fill(0));
        unpack_block_codes(block, shape.bits, shape.group, &mut codes);
        let scales = &block[block_bytes - BLOCK_SCALE_BYTES..];
        for (position, &row) in order.iter().enumerate() {
            let row = row as usize;
            let (half, r) = (row / DOT_TILE_ROWS, row % DOT_TILE_ROWS);
            let target = &mut out[half * bytes.tile_bytes() + g * bytes.block_bytes()..]
                [..bytes.block_bytes()];
            for c in 0..group {
                target[(c / DOT_STEP_COLS) * 64 + 4 * r + c % DOT_STEP_COLS] = codes[row][c];
            }
            let dot_scales = &mut target[DOT_TILE_ROWS * group..];
            debug_assert_eq!(dot_scales.len(), DOT_SCALE_BYTES);
            dot_scales[2 * r..2 * r + 2].copy_from_slice(&scales[2 * position..2 * position + 2]);
            let (from, to) = (2 * TILE_ROWS + 2 * position, 2 * DOT_TILE_ROWS + 2 * r);
            dot_scales[to..to + 2].copy_from_slice(&scales[from..from + 2]);
        }
    }
}

fn tiles_scalar(view: &PackedView<'_>, tiles: Range<usize>, xs: &[Q8Activations], out: &mut [f32]) {
    let shape = view.shape();
    let group = shape.group.get();
    let block_bytes = shape.block_bytes();
    let max_code = shape.bits.max_code() as i32;
    let order = flush_order(shape.bits);
    let width = tiles.len() * TILE_ROWS;
    let mut codes = [[0u8; 128]; TILE_ROWS];
    for (i, tile) in tiles.enumerate() {
        let bytes = view.tile(tile);
        for g in 0..shape.groups_per_row() {
            let block = &bytes[g * block_bytes..(g + 1) * block_bytes];
            codes.iter_mut().for_each(|row| row.fill(0));
            unpack_block_codes(block, shape.bits, shape.group, &mut codes);
            let scales = &block[block_bytes - BLOCK_SCALE_BYTES..];
            let fp16 = |at: usize| {
                super::f16::f16_to_f32(u16::from_le_bytes([scales[at], scales[at + 1]]))
            };
            for b in 0..group / Q8_BLOCK {
                let unit = g * group / Q8_BLOCK + b;
                for (n, x) in xs.iter().enumerate() {
                    let values = &x.values()[unit * Q8_BLOCK..(unit + 1) * Q8_BLOCK];
                    let half = x.half_scales()[unit];
                    let correction = max_code * x.value_sums()[unit];
                    let sum = x.sums()[unit];
                    for (position, &row) in order.iter().enumerate() {
                        let row_codes = &codes[row as usize][b * Q8_BLOCK..(b + 1) * Q8_BLOCK];
                        let s: i32 = row_codes
                            .iter()
                            .zip(values)
                            .map(|(&q, &v)| q as i32 * v as i32)
                            .sum();
                        let d = 2 * s - correction;
                        let scale = fp16(2 * position);
                        let centre = fp16(2 * TILE_ROWS + 2 * position);
                        let y = &mut out[n * width + i * TILE_ROWS + row as usize];
                        *y = (d as f32).mul_add(scale * half, *y);
                        *y = centre.mul_add(sum, *y);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{
        dot_gemm, ByteMatrix, GroupSize, KernelPath, PackedMatrix, QuantizedMatrix, WeightBits,
    };
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn every_width_equals_the_byte_layout_dot_kernel_on_every_path() {
        let (rows, cols, n) = (70, 384, 3);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let w: Vec<f32> = (0..rows * cols).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let xs: Vec<Q8Activations> = (0..n)
            .map(|_| {
                let x: Vec<f32> = (0..cols).map(|_| rng.gen_range(-2.0..2.0)).collect();
                Q8Activations::build(&x).unwrap()
            })
            .collect();
        for bits in WeightBits::ALL {
            for group in [
                GroupSize::G32,
                GroupSize::G64,
                GroupSize::G96,
                GroupSize::G128,
            ] {
                let q = QuantizedMatrix::quantize_min_max(&w, rows, cols, bits, group).unwrap();
                let packed = PackedMatrix::pack(&q);
                let bytes = ByteMatrix::pack(&q);
                let scalar = KernelOptions::default().with_path(KernelPath::Scalar);
                let mut want = vec![0.0; n * rows];
                dot_gemm(&bytes.view(), &xs, &mut want, scalar).unwrap();
                for path in KernelPath::available() {
                    for threads in [1, 2] {
                        let mut got = vec![f32::NAN; n * rows];
                        let options = KernelOptions::threads(threads).with_path(path);
                        gemm_q8(&packed.view(), &xs, &mut got, options).unwrap();
                        assert_eq!(got, want, "{bits:?} {group:?} {path:?} {threads} threads");
                    }
                }
            }
        }
    }
}
