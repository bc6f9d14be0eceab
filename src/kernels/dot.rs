//! Dot-product kernels: byte-coded weights ([`ByteMatrix`]) times int8 activations
//! ([`Q8Activations`]), for 8-bit weights, where table lookups cost eight bit-planes and a dot
//! product costs one `vpdpbusd` per 64 multiply-adds.
//!
//! # Arithmetic
//!
//! For one row, weight group `g` (scale `s`, centre `c`) and activation block `b` of 32
//! columns inside it, with codes `q`, int8 activations `xq` (scale `d`), `S = Σ q·xq` and
//! `X = Σ xq`:
//!
//! ```text
//! Σ w·x ≈ s·d·(S − h·X) + c·Σx = s·(d/2)·D + c·Σx,   D = 2S − (2^bits − 1)·X
//! ```
//!
//! `D` is an exact int32 on every path (`|2S| ≤ 2·32·255·127`); the float update per block is
//! `y = fma(D, s·(d/2), y)` then `y = fma(c, Σx, y)`, blocks in column order, so the scalar,
//! AVX2 and AVX-512 VNNI paths give the same bits. The only approximation is the int8 rounding
//! of the activations (at most `d/2` per activation); the centre term uses the exact `Σx`.
//!
//! # Paths
//!
//! * AVX-512 with VNNI: `vpdpbusd` (unsigned codes × signed activations, four products summed
//!   into each int32 lane), 16 rows per register, two tiles per pass sharing each activation
//!   broadcast.
//! * AVX2 (also what the AVX-512 level without VNNI runs): codes widened to int16 and
//!   `vpmaddwd` (`vpmaddubsw` would saturate: two products of 255 × 127 exceed int16).
//! * Scalar.
//!
//! Threads split the row tiles into contiguous ranges; every row is computed by one thread
//! with the same operation sequence, so results do not depend on the thread count.

use std::ops::Range;

use super::byte_matrix::{ByteShape, ByteView, DOT_STEP_COLS, DOT_TILE_ROWS};
use super::error::KernelError;
use super::f16::f16_to_f32;
use super::gemv::KernelOptions;
use super::isa::Isa;
use super::q8::{Q8Activations, Q8_BLOCK};

/// `y = W·x` for one int8 activation vector.
pub fn dot_gemv(
    view: &ByteView<'_>,
    x: &Q8Activations,
    y: &mut [f32],
    options: KernelOptions,
) -> Result<(), KernelError> {
    dot_gemm(view, std::slice::from_ref(x), y, options)
}

/// `Y = X·Wᵀ` for N int8 activation vectors: `y` is N × rows, row-major (`y[n·M + m]`).
/// Each tile's weights are loaded once per 32 columns for all N vectors.
pub fn dot_gemm(
    view: &ByteView<'_>,
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
    if !shape.group.get().is_multiple_of(Q8_BLOCK) {
        return Err(KernelError::TableGroupMismatch {
            table_group: Q8_BLOCK,
            matrix_group: shape.group.get(),
        });
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
    let ranges: Vec<Range<usize>> = (0..parts)
        .map(|p| (tiles * p / parts)..(tiles * (p + 1) / parts))
        .collect();
    let mut buffers: Vec<(Range<usize>, Vec<f32>)> = ranges
        .into_iter()
        .map(|r| {
            let len = n * r.len() * DOT_TILE_ROWS;
            (r, vec![0.0f32; len])
        })
        .collect();
    let work = |(range, out): &mut (Range<usize>, Vec<f32>)| {
        run(isa, &shape, view.tiles(range.clone()), range.len(), xs, out);
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
        let width = range.len() * DOT_TILE_ROWS;
        let first = range.start * DOT_TILE_ROWS;
        let rows = (first + width).min(shape.rows) - first;
        for v in 0..n {
            y[v * shape.rows + first..v * shape.rows + first + rows]
                .copy_from_slice(&out[v * width..v * width + rows]);
        }
    }
    Ok(())
}

/// Computes `count` tiles (their bytes contiguous in `tiles`) for every vector into `out`,
/// `N × count·16` row-major (padding rows included).
pub(crate) fn run(
    isa: Isa,
    shape: &ByteShape,
    tiles: &[u8],
    count: usize,
    xs: &[Q8Activations],
    out: &mut [f32],
) {
    debug_assert_eq!(tiles.len(), count * shape.tile_bytes());
    debug_assert_eq!(out.len(), xs.len() * count * DOT_TILE_ROWS);
    match isa {
        Isa::Scalar => tiles_scalar(shape, tiles, count, xs, out),
        // SAFETY: `isa` came from `KernelPath::resolve`, which checked the CPU; the slices
        // have the lengths asserted above and every vector has `shape.cols` columns.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512 => unsafe { super::dot_avx2::tiles(shape, tiles, count, xs, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => unsafe { super::dot_avx512::tiles(shape, tiles, count, xs, out) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("only the scalar level is detected off x86-64"),
    }
}

/// The fp16 scale and centre of row `r` of a block (scales start at `scales`).
pub(crate) fn block_scale_centre(scales: &[u8], r: usize) -> (f32, f32) {
    let scale = f16_to_f32(u16::from_le_bytes([scales[2 * r], scales[2 * r + 1]]));
    let at = 2 * DOT_TILE_ROWS + 2 * r;
    let centre = f16_to_f32(u16::from_le_bytes([scales[at], scales[at + 1]]));
    (scale, centre)
}

fn tiles_scalar(
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
    for t in 0..count {
        for g in 0..shape.groups_per_row() {
            let block = &tiles[(t * shape.groups_per_row() + g) * block_bytes..][..block_bytes];
            let scales = &block[DOT_TILE_ROWS * group..];
            for b in 0..group / Q8_BLOCK {
                let unit = (g * group) / Q8_BLOCK + b;
                for (n, x) in xs.iter().enumerate() {
                    let values = &x.values()[unit * Q8_BLOCK..(unit + 1) * Q8_BLOCK];
                    let half = x.half_scales()[unit];
                    let correction = max_code * x.value_sums()[unit];
                    let sum = x.sums()[unit];
                    for r in 0..DOT_TILE_ROWS {
                        let mut s = 0i32;
                        for (c, &v) in values.iter().enumerate() {
                            let step = (b * Q8_BLOCK + c) / DOT_STEP_COLS;
                            let code = block[step * 64 + 4 * r + c % DOT_STEP_COLS];
                            s += code as i32 * v as i32;
                        }
                        let d = 2 * s - correction;
                        let (scale, centre) = block_scale_centre(scales, r);
                        let y = &mut out[n * width + t * DOT_TILE_ROWS + r];
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
    use crate::kernels::{ByteMatrix, GroupSize, KernelPath, QuantizedMatrix, WeightBits};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn dot_gemv_is_the_product_of_the_stored_weights_and_the_int8_activations() {
        let (rows, cols) = (45, 384);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let w: Vec<f32> = (0..rows * cols).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let x: Vec<f32> = (0..cols).map(|_| rng.gen_range(-2.0..2.0)).collect();
        for group in [
            GroupSize::G32,
            GroupSize::G64,
            GroupSize::G96,
            GroupSize::G128,
        ] {
            let q =
                QuantizedMatrix::quantize_min_max(&w, rows, cols, WeightBits::B8, group).unwrap();
            let bytes = ByteMatrix::pack(&q);
            let xq = Q8Activations::build(&x).unwrap();
            let mut y = vec![0.0; rows];
            let options = KernelOptions::default().with_path(KernelPath::Scalar);
            dot_gemv(&bytes.view(), &xq, &mut y, options).unwrap();
            for (row, got) in y.iter().enumerate() {
                let want: f64 = (0..cols)
                    .map(|c| bytes.view().weight_f64(row, c) * xq.dequantized(c) as f64)
                    .sum();
                // The centre term uses the exact Σx, so allow for |c|·Σ|x − x̂|.
                let slack: f64 = (0..cols)
                    .map(|c| {
                        let centre = f16_to_f32(q.centre_bits(row, c / group.get())).abs() as f64;
                        centre * (x[c] as f64 - xq.dequantized(c) as f64).abs()
                    })
                    .sum();
                assert!(
                    (*got as f64 - want).abs() <= slack + 1e-4 * (1.0 + want.abs()),
                    "{group:?} row {row}: {got} vs {want}"
                );
            }
            for path in KernelPath::available() {
                let mut other = vec![0.0; rows];
                dot_gemv(&bytes.view(), &xq, &mut other, options.with_path(path)).unwrap();
                assert_eq!(y, other, "{group:?} {path:?}");
            }
        }
    }
}
