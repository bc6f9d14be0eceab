//! The row-wise format for matrices whose rows do not fill 32-row tiles (routers, norms):
//! per row, per group of 64 weights, the codes bit-packed least significant bit first
//! (`8 · bits` bytes), then the fp16 scale and the fp16 centre, little-endian. Dequantization
//! is the kernels' rule `w = s · (q − h) + c`, `h = (2^bits − 1) / 2`.
//!
//! These matrices are tiny (a Mixtral router is 8 rows), so they are computed by dequantizing
//! them once per op ([`dequantize`]) and multiplying in f32 ([`gemm`]); [`gemv`] is the
//! straightforward loop the tests check both against.

use crate::kernels::f16::f16_to_f32;
use crate::kernels::{QuantizedMatrix, WeightBits};

use super::layout::GROUP;

/// The fp16 scale and centre that end a group's bytes.
pub fn scale_and_centre(group: &[u8]) -> (f32, f32) {
    let n = group.len();
    (
        f16_to_f32(u16::from_le_bytes([group[n - 4], group[n - 3]])),
        f16_to_f32(u16::from_le_bytes([group[n - 2], group[n - 1]])),
    )
}

/// Bytes of one group: codes plus scale and centre.
fn group_bytes(bits: usize) -> usize {
    GROUP.get() * bits / 8 + 4
}

/// Serializes a quantized matrix (group 64) in the row-wise format.
pub fn encode(q: &QuantizedMatrix) -> Vec<u8> {
    let bits = q.bits().bits();
    let groups = q.cols() / GROUP.get();
    let mut out = Vec::with_capacity(q.rows() * groups * group_bytes(bits));
    for r in 0..q.rows() {
        for g in 0..groups {
            let mut acc: u64 = 0;
            let mut filled = 0;
            for k in 0..GROUP.get() {
                acc |= (q.code(r, g * GROUP.get() + k) as u64) << filled;
                filled += bits;
                while filled >= 8 {
                    out.push(acc as u8);
                    acc >>= 8;
                    filled -= 8;
                }
            }
            out.extend_from_slice(&q.scale_bits(r, g).to_le_bytes());
            out.extend_from_slice(&q.centre_bits(r, g).to_le_bytes());
        }
    }
    out
}

/// `y = W · x` for a row-wise matrix of `rows x x.len()` stored in `bytes`.
pub fn gemv(bytes: &[u8], bits: WeightBits, x: &[f32], y: &mut [f32]) -> Result<(), String> {
    let b = bits.bits();
    let cols = x.len();
    let groups = cols / GROUP.get();
    let per_group = group_bytes(b);
    let needed = y.len() * groups * per_group;
    if bytes.len() < needed || !cols.is_multiple_of(GROUP.get()) {
        return Err(format!(
            "row-wise matrix: {} bytes for {} rows x {cols} columns, needs {needed}",
            bytes.len(),
            y.len()
        ));
    }
    let h = bits.code_midpoint();
    let mask = (1u64 << b) - 1;
    for (r, out) in y.iter_mut().enumerate() {
        let mut sum = 0.0f32;
        for g in 0..groups {
            let start = (r * groups + g) * per_group;
            let block = &bytes[start..start + per_group];
            let codes = &block[..per_group - 4];
            let (s, c) = scale_and_centre(block);
            let xs = &x[g * GROUP.get()..(g + 1) * GROUP.get()];
            let (mut acc, mut filled, mut next) = (0u64, 0usize, 0usize);
            let (mut dot, mut xsum) = (0.0f32, 0.0f32);
            for &xv in xs {
                while filled < b {
                    acc |= (codes[next] as u64) << filled;
                    next += 1;
                    filled += 8;
                }
                let q = (acc & mask) as f32;
                acc >>= b;
                filled -= b;
                dot += (q - h) * xv;
                xsum += xv;
            }
            sum += s * dot + c * xsum;
        }
        *out = sum;
    }
    Ok(())
}

/// The `rows x cols` matrix stored in `bytes`, dequantized to f32, row-major.
pub fn dequantize(
    bytes: &[u8],
    bits: WeightBits,
    rows: usize,
    cols: usize,
) -> Result<Vec<f32>, String> {
    let b = bits.bits();
    let groups = cols / GROUP.get();
    let per_group = group_bytes(b);
    let needed = rows * groups * per_group;
    if bytes.len() < needed || !cols.is_multiple_of(GROUP.get()) {
        return Err(format!(
            "row-wise matrix: {} bytes for {rows} rows x {cols} columns, needs {needed}",
            bytes.len()
        ));
    }
    let h = bits.code_midpoint();
    let mask = (1u64 << b) - 1;
    let mut out = Vec::with_capacity(rows * cols);
    for block in bytes[..needed].chunks_exact(per_group) {
        let codes = &block[..per_group - 4];
        let (s, c) = scale_and_centre(block);
        let (mut acc, mut filled, mut next) = (0u64, 0usize, 0usize);
        for _ in 0..GROUP.get() {
            while filled < b {
                acc |= (codes[next] as u64) << filled;
                next += 1;
                filled += 8;
            }
            out.push(s * ((acc & mask) as f32 - h) + c);
            acc >>= b;
            filled -= b;
        }
    }
    Ok(out)
}

/// `y_n = W · x_n` for every vector of `xs`: the matrix is dequantized once, then multiplied in
/// f32.
pub fn gemm(
    bytes: &[u8],
    bits: WeightBits,
    rows: usize,
    xs: &[&[f32]],
) -> Result<Vec<Vec<f32>>, String> {
    let cols = xs.first().map_or(0, |x| x.len());
    let w = dequantize(bytes, bits, rows, cols)?;
    Ok(xs
        .iter()
        .map(|x| {
            w.chunks_exact(cols)
                .map(|row| row.iter().zip(x.iter()).map(|(a, b)| a * b).sum())
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::QuantScheme;

    #[test]
    fn rowwise_gemv_matches_the_dequantized_product() {
        for bits in [
            WeightBits::B2,
            WeightBits::B3,
            WeightBits::B4,
            WeightBits::B8,
        ] {
            let (rows, cols) = (5, 192);
            let w: Vec<f32> = (0..rows * cols)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 70.0)
                .collect();
            let q = QuantScheme::MinMax { bits, group: GROUP }
                .quantize(&w, rows, cols)
                .unwrap();
            let bytes = encode(&q);
            assert_eq!(
                bytes.len() as u64,
                crate::model::Precision::Int8.bytes_for(0) + {
                    (rows * cols * bits.bits() / 8 + rows * cols / 64 * 4) as u64
                }
            );
            let x: Vec<f32> = (0..cols).map(|i| (i as f32 * 0.37).sin()).collect();
            let mut y = vec![0.0; rows];
            gemv(&bytes, bits, &x, &mut y).unwrap();
            let deq = q.dequantize();
            let via_gemm = gemm(&bytes, bits, rows, &[&x]).unwrap();
            assert_eq!(dequantize(&bytes, bits, rows, cols).unwrap(), deq);
            for r in 0..rows {
                assert!((via_gemm[0][r] - y[r]).abs() < 1e-3 * (1.0 + y[r].abs()));
                let want: f32 = (0..cols).map(|k| deq[r * cols + k] * x[k]).sum();
                assert!(
                    (y[r] - want).abs() < 1e-3 * (1.0 + want.abs()),
                    "{bits:?} row {r}: {} vs {want}",
                    y[r]
                );
            }
        }
    }

    #[test]
    fn short_buffers_are_errors() {
        let mut y = vec![0.0; 2];
        assert!(gemv(&[0u8; 10], WeightBits::B4, &[0.0; 64], &mut y).is_err());
    }
}
