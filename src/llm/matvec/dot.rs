//! Dot-product tiles for the f32 reference matrices.
//!
//! A tile computes R rows × T inputs at once so that each weight load feeds T products and each
//! input load feeds R. Every (row, input) pair is reduced in the same order whatever the tile
//! shape — eight lane accumulators over the columns in steps of eight, a fixed pairwise sum of
//! the lanes, then the leftover columns in order — so GEMV and GEMM agree bit for bit, and the
//! result does not depend on how rows are split across threads.
//!
//! The portable loops are written for the auto-vectorizer; on x86-64 an AVX2+FMA version with
//! intrinsics is selected at run time (the default target assumes neither).

pub(crate) const LANES: usize = 8;

#[inline(always)]
fn multiply_add<const FUSED: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FUSED {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `out[r][t] = rows[r] · inputs[t]`; all slices have the same length.
#[inline(always)]
fn tile<const R: usize, const T: usize, const FUSED: bool>(
    rows: [&[f32]; R],
    inputs: [&[f32]; T],
) -> [[f32; T]; R] {
    let cols = rows[0].len();
    let body = cols - cols % LANES;
    let mut acc = [[[0.0f32; LANES]; T]; R];
    let mut k = 0;
    while k < body {
        let w: [&[f32; LANES]; R] = rows.map(|row| row[k..k + LANES].try_into().unwrap());
        let x: [&[f32; LANES]; T] = inputs.map(|input| input[k..k + LANES].try_into().unwrap());
        for r in 0..R {
            for t in 0..T {
                for l in 0..LANES {
                    acc[r][t][l] = multiply_add::<FUSED>(w[r][l], x[t][l], acc[r][t][l]);
                }
            }
        }
        k += LANES;
    }
    let mut out = [[0.0f32; T]; R];
    for r in 0..R {
        for t in 0..T {
            let a = acc[r][t];
            let mut sum = ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
            for j in body..cols {
                sum = multiply_add::<FUSED>(rows[r][j], inputs[t][j], sum);
            }
            out[r][t] = sum;
        }
    }
    out
}

/// The three tile shapes a block is cut into.
trait Tiles {
    fn tile_4x2(rows: [&[f32]; 4], inputs: [&[f32]; 2]) -> [[f32; 2]; 4];
    fn tile_4x1(rows: [&[f32]; 4], inputs: [&[f32]; 1]) -> [[f32; 1]; 4];
    fn tile_1x1(rows: [&[f32]; 1], inputs: [&[f32]; 1]) -> [[f32; 1]; 1];
}

/// Plain loops with separate multiply and add (no FMA assumed).
struct PortableTiles;

impl Tiles for PortableTiles {
    #[inline(always)]
    fn tile_4x2(rows: [&[f32]; 4], inputs: [&[f32]; 2]) -> [[f32; 2]; 4] {
        tile::<4, 2, false>(rows, inputs)
    }
    #[inline(always)]
    fn tile_4x1(rows: [&[f32]; 4], inputs: [&[f32]; 1]) -> [[f32; 1]; 4] {
        tile::<4, 1, false>(rows, inputs)
    }
    #[inline(always)]
    fn tile_1x1(rows: [&[f32]; 1], inputs: [&[f32]; 1]) -> [[f32; 1]; 1] {
        tile::<1, 1, false>(rows, inputs)
    }
}

/// Row quads by input pairs, with the remainders in smaller tiles.
///
/// `weights` holds `row_count` rows of `cols` values; `inputs` holds `n` rows of `cols`; the
/// result goes to `out[r * n + t]` (row-major by weight row, so a row block is contiguous).
#[inline(always)]
fn block_with<K: Tiles>(weights: &[f32], cols: usize, inputs: &[f32], n: usize, out: &mut [f32]) {
    let row_count = weights.len() / cols;
    let row = |r: usize| &weights[r * cols..(r + 1) * cols];
    let input = |t: usize| &inputs[t * cols..(t + 1) * cols];
    let mut r = 0;
    while r + 4 <= row_count {
        let rows = [row(r), row(r + 1), row(r + 2), row(r + 3)];
        let mut t = 0;
        while t + 2 <= n {
            let result = K::tile_4x2(rows, [input(t), input(t + 1)]);
            for (i, pair) in result.iter().enumerate() {
                out[(r + i) * n + t] = pair[0];
                out[(r + i) * n + t + 1] = pair[1];
            }
            t += 2;
        }
        if t < n {
            let result = K::tile_4x1(rows, [input(t)]);
            for (i, single) in result.iter().enumerate() {
                out[(r + i) * n + t] = single[0];
            }
        }
        r += 4;
    }
    while r < row_count {
        for t in 0..n {
            out[r * n + t] = K::tile_1x1([row(r)], [input(t)])[0][0];
        }
        r += 1;
    }
}

/// The AVX2+FMA tile: the same arithmetic as [`tile`] with `FUSED`, written with intrinsics
/// because the auto-vectorizer keeps the R×T×8 accumulators in memory.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tile_avx2<const R: usize, const T: usize>(
    rows: [&[f32]; R],
    inputs: [&[f32]; T],
) -> [[f32; T]; R] {
    use std::arch::x86_64::*;
    let cols = rows[0].len();
    let body = cols - cols % LANES;
    let mut acc = [[_mm256_setzero_ps(); T]; R];
    let mut k = 0;
    while k < body {
        let mut x = [_mm256_setzero_ps(); T];
        for t in 0..T {
            // SAFETY: k + 8 <= body <= inputs[t].len() (all slices have `cols` elements).
            x[t] = _mm256_loadu_ps(inputs[t].as_ptr().add(k));
        }
        for r in 0..R {
            // SAFETY: as above, for the weight rows.
            let w = _mm256_loadu_ps(rows[r].as_ptr().add(k));
            for t in 0..T {
                acc[r][t] = _mm256_fmadd_ps(w, x[t], acc[r][t]);
            }
        }
        k += LANES;
    }
    let mut out = [[0.0f32; T]; R];
    for r in 0..R {
        for t in 0..T {
            // ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7)), as in `tile`.
            let a = acc[r][t];
            let quad = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
            let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
            let mut sum = _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps(pair, pair, 1)));
            for j in body..cols {
                sum = rows[r][j].mul_add(inputs[t][j], sum);
            }
            out[r][t] = sum;
        }
    }
    out
}

/// AVX2+FMA intrinsics; only instantiated after the CPU check in [`dot_block`].
#[cfg(target_arch = "x86_64")]
struct Avx2FmaTiles;

#[cfg(target_arch = "x86_64")]
impl Tiles for Avx2FmaTiles {
    #[inline(always)]
    fn tile_4x2(rows: [&[f32]; 4], inputs: [&[f32]; 2]) -> [[f32; 2]; 4] {
        // SAFETY: reached only through `block_avx2_fma`, which runs only on AVX2+FMA CPUs.
        unsafe { tile_avx2::<4, 2>(rows, inputs) }
    }
    #[inline(always)]
    fn tile_4x1(rows: [&[f32]; 4], inputs: [&[f32]; 1]) -> [[f32; 1]; 4] {
        // SAFETY: as above.
        unsafe { tile_avx2::<4, 1>(rows, inputs) }
    }
    #[inline(always)]
    fn tile_1x1(rows: [&[f32]; 1], inputs: [&[f32]; 1]) -> [[f32; 1]; 1] {
        // SAFETY: as above.
        unsafe { tile_avx2::<1, 1>(rows, inputs) }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn block_avx2_fma(weights: &[f32], cols: usize, inputs: &[f32], n: usize, out: &mut [f32]) {
    block_with::<Avx2FmaTiles>(weights, cols, inputs, n, out)
}

fn block_portable(weights: &[f32], cols: usize, inputs: &[f32], n: usize, out: &mut [f32]) {
    block_with::<PortableTiles>(weights, cols, inputs, n, out)
}

#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    use std::sync::OnceLock;
    static DETECTED: OnceLock<bool> = OnceLock::new();
    *DETECTED.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

/// Dot products of every weight row with every input: `out[r * n + t] = W[r] · X[t]`.
pub(crate) fn dot_block(weights: &[f32], cols: usize, inputs: &[f32], n: usize, out: &mut [f32]) {
    debug_assert_eq!(weights.len() % cols, 0);
    debug_assert_eq!(inputs.len(), n * cols);
    debug_assert_eq!(out.len(), weights.len() / cols * n);
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA (checked at run time just above).
        unsafe { block_avx2_fma(weights, cols, inputs, n, out) };
        return;
    }
    block_portable(weights, cols, inputs, n, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(weights: &[f32], cols: usize, inputs: &[f32], n: usize) -> Vec<f64> {
        let rows = weights.len() / cols;
        let mut out = vec![0.0; rows * n];
        for r in 0..rows {
            for t in 0..n {
                out[r * n + t] = (0..cols)
                    .map(|k| weights[r * cols + k] as f64 * inputs[t * cols + k] as f64)
                    .sum();
            }
        }
        out
    }

    #[test]
    fn every_tile_shape_matches_a_naive_product_and_each_other() {
        // Odd sizes exercise the row, input and column remainders.
        let (rows, cols, n) = (7, 21, 3);
        let weights: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 37 % 17) as f32 - 8.0) / 8.0)
            .collect();
        let inputs: Vec<f32> = (0..n * cols)
            .map(|i| ((i * 11 % 13) as f32 - 6.0) / 4.0)
            .collect();
        let mut out = vec![0.0; rows * n];
        dot_block(&weights, cols, &inputs, n, &mut out);
        for (got, want) in out.iter().zip(naive(&weights, cols, &inputs, n)) {
            assert!((*got as f64 - want).abs() < 1e-4, "{got} vs {want}");
        }
        // The portable loops agree with whatever `dot_block` selected (up to FMA rounding).
        let mut portable = vec![0.0; rows * n];
        block_portable(&weights, cols, &inputs, n, &mut portable);
        for (a, b) in portable.iter().zip(&out) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        // One input at a time, one row at a time: the same bits.
        for t in 0..n {
            for r in 0..rows {
                let mut single = [0.0];
                dot_block(
                    &weights[r * cols..(r + 1) * cols],
                    cols,
                    &inputs[t * cols..(t + 1) * cols],
                    1,
                    &mut single,
                );
                assert_eq!(
                    single[0].to_bits(),
                    out[r * n + t].to_bits(),
                    "row {r} input {t}"
                );
            }
        }
    }
}
