//! Group-wise quantization from f32 and back: the unpacked form of a low-bit matrix.
//!
//! [`QuantizedMatrix`] holds one code byte per weight plus fp16 scales and centres per group
//! (see [`super::format`] for the dequantization rule `w = s·(q − h) + c`). It is what the
//! packer consumes, what the reference kernel dequantizes, and what the GGUF converters
//! produce; the lookup kernels read the packed form instead.

use super::error::KernelError;
use super::f16::{f16_to_f32, f32_to_f16, F16_MAX};
use super::format::{GroupSize, WeightBits};

/// How to quantize an f32 matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantScheme {
    /// Round-to-nearest over each group's min..max range ([`QuantizedMatrix::quantize_min_max`]).
    MinMax { bits: WeightBits, group: GroupSize },
    /// Ternary {−1, 0, +1}·γ per group, stored as 2 bits ([`QuantizedMatrix::quantize_ternary`]).
    Ternary { group: GroupSize },
}

impl QuantScheme {
    pub fn quantize(
        self,
        weights: &[f32],
        rows: usize,
        cols: usize,
    ) -> Result<QuantizedMatrix, KernelError> {
        match self {
            QuantScheme::MinMax { bits, group } => {
                QuantizedMatrix::quantize_min_max(weights, rows, cols, bits, group)
            }
            QuantScheme::Ternary { group } => {
                QuantizedMatrix::quantize_ternary(weights, rows, cols, group)
            }
        }
    }
}

/// A row-major M×K weight matrix quantized group-wise, one code byte per weight.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedMatrix {
    rows: usize,
    cols: usize,
    bits: WeightBits,
    group: GroupSize,
    /// `rows × cols` codes, each `< 2^bits`.
    codes: Vec<u8>,
    /// `rows × cols/group` fp16 scales (bits).
    scales: Vec<u16>,
    /// `rows × cols/group` fp16 centres (bits).
    centres: Vec<u16>,
}

impl QuantizedMatrix {
    /// Assembles a matrix from its parts, checking every length and code.
    pub fn from_parts(
        rows: usize,
        cols: usize,
        bits: WeightBits,
        group: GroupSize,
        codes: Vec<u8>,
        scales: Vec<u16>,
        centres: Vec<u16>,
    ) -> Result<QuantizedMatrix, KernelError> {
        let groups_per_row = group.check_cols("quantized matrix", cols)?;
        check_len("codes (rows × cols)", rows * cols, codes.len())?;
        check_len(
            "scales (rows × groups)",
            rows * groups_per_row,
            scales.len(),
        )?;
        check_len(
            "centres (rows × groups)",
            rows * groups_per_row,
            centres.len(),
        )?;
        if rows == 0 {
            return Err(KernelError::ShapeMismatch {
                what: "quantized matrix rows (must be at least 1)",
                expected: 1,
                actual: 0,
            });
        }
        let max_code = bits.max_code();
        if let Some(index) = codes.iter().position(|&q| q as u32 > max_code) {
            return Err(KernelError::IndexOutOfRange {
                what: "weight code (must be below 2^bits)",
                index: codes[index] as usize,
                len: max_code as usize + 1,
            });
        }
        Ok(QuantizedMatrix {
            rows,
            cols,
            bits,
            group,
            codes,
            scales,
            centres,
        })
    }

    /// Round-to-nearest min/max quantization per group: the group's range `[lo, hi]` maps onto
    /// the codes `0..2^bits`, with `s = (hi − lo)/(2^bits − 1)` and `c = (hi + lo)/2`, both
    /// rounded to fp16 before the codes are chosen (so the codes fit the stored numbers).
    pub fn quantize_min_max(
        weights: &[f32],
        rows: usize,
        cols: usize,
        bits: WeightBits,
        group: GroupSize,
    ) -> Result<QuantizedMatrix, KernelError> {
        let groups_per_row = check_weights(weights, rows, cols, group)?;
        let max_code = bits.max_code() as f32;
        let midpoint = bits.code_midpoint();
        let mut codes = vec![0u8; rows * cols];
        let mut scales = vec![0u16; rows * groups_per_row];
        let mut centres = vec![0u16; rows * groups_per_row];
        for (group_index, chunk) in weights.chunks_exact(group.get()).enumerate() {
            let lo = chunk.iter().copied().fold(f32::INFINITY, f32::min);
            let hi = chunk.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let scale = (hi - lo) / max_code;
            let centre = (hi + lo) * 0.5;
            let first = group_index * group.get();
            let scale_bits = to_f16_checked("weight group scale", first, scale)?;
            let centre_bits = to_f16_checked("weight group centre", first, centre)?;
            scales[group_index] = scale_bits;
            centres[group_index] = centre_bits;
            let scale = f16_to_f32(scale_bits);
            let centre = f16_to_f32(centre_bits);
            let out = &mut codes[first..first + group.get()];
            for (code, &w) in out.iter_mut().zip(chunk) {
                let q = if scale > 0.0 {
                    ((w - centre) / scale + midpoint).round_ties_even()
                } else {
                    midpoint.floor()
                };
                *code = q.clamp(0.0, max_code) as u8;
            }
        }
        QuantizedMatrix::from_parts(rows, cols, bits, group, codes, scales, centres)
    }

    /// Ternary (1.58-bit) quantization per group, stored as 2-bit codes: the group's mean
    /// absolute value γ is the scale, each weight becomes `round(w/γ)` clamped to {−1, 0, 1}
    /// (BitNet b1.58's absmean rule, applied per group), stored as `q = t + 1` with
    /// `s = γ` and `c = γ/2`, so that `s·(q − 1.5) + c = γ·t`.
    pub fn quantize_ternary(
        weights: &[f32],
        rows: usize,
        cols: usize,
        group: GroupSize,
    ) -> Result<QuantizedMatrix, KernelError> {
        let groups_per_row = check_weights(weights, rows, cols, group)?;
        let mut codes = vec![0u8; rows * cols];
        let mut scales = vec![0u16; rows * groups_per_row];
        let mut centres = vec![0u16; rows * groups_per_row];
        for (group_index, chunk) in weights.chunks_exact(group.get()).enumerate() {
            let mean_abs = chunk.iter().map(|w| w.abs()).sum::<f32>() / chunk.len() as f32;
            let first = group_index * group.get();
            let scale_bits = to_f16_checked("ternary group scale", first, mean_abs)?;
            let scale = f16_to_f32(scale_bits);
            scales[group_index] = scale_bits;
            centres[group_index] = f32_to_f16(scale * 0.5);
            for (code, &w) in codes[first..first + group.get()].iter_mut().zip(chunk) {
                let t = if scale > 0.0 {
                    (w / scale).round_ties_even().clamp(-1.0, 1.0)
                } else {
                    0.0
                };
                *code = (t + 1.0) as u8;
            }
        }
        QuantizedMatrix::from_parts(rows, cols, WeightBits::B2, group, codes, scales, centres)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn bits(&self) -> WeightBits {
        self.bits
    }

    pub fn group(&self) -> GroupSize {
        self.group
    }

    pub fn groups_per_row(&self) -> usize {
        self.cols / self.group.get()
    }

    /// Code of weight (row, col).
    pub fn code(&self, row: usize, col: usize) -> u8 {
        self.codes[row * self.cols + col]
    }

    /// fp16 bits of the scale of group `group_index` of `row`.
    pub fn scale_bits(&self, row: usize, group_index: usize) -> u16 {
        self.scales[row * self.groups_per_row() + group_index]
    }

    /// fp16 bits of the centre of group `group_index` of `row`.
    pub fn centre_bits(&self, row: usize, group_index: usize) -> u16 {
        self.centres[row * self.groups_per_row() + group_index]
    }

    pub fn codes(&self) -> &[u8] {
        &self.codes
    }

    /// Dequantized weight (row, col) in f32: `s·(q − h) + c`.
    pub fn weight(&self, row: usize, col: usize) -> f32 {
        let g = col / self.group.get();
        let scale = f16_to_f32(self.scale_bits(row, g));
        let centre = f16_to_f32(self.centre_bits(row, g));
        scale * (self.code(row, col) as f32 - self.bits.code_midpoint()) + centre
    }

    /// Dequantized weight (row, col) in f64, exact for every stored value.
    pub fn weight_f64(&self, row: usize, col: usize) -> f64 {
        let g = col / self.group.get();
        let scale = f16_to_f32(self.scale_bits(row, g)) as f64;
        let centre = f16_to_f32(self.centre_bits(row, g)) as f64;
        scale * (self.code(row, col) as f64 - self.bits.code_midpoint() as f64) + centre
    }

    /// The whole matrix dequantized to row-major f32.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.rows * self.cols);
        for row in 0..self.rows {
            for col in 0..self.cols {
                out.push(self.weight(row, col));
            }
        }
        out
    }
}

fn check_len(what: &'static str, expected: usize, actual: usize) -> Result<(), KernelError> {
    if expected != actual {
        return Err(KernelError::ShapeMismatch {
            what,
            expected,
            actual,
        });
    }
    Ok(())
}

fn check_weights(
    weights: &[f32],
    rows: usize,
    cols: usize,
    group: GroupSize,
) -> Result<usize, KernelError> {
    let groups_per_row = group.check_cols("weights to quantize", cols)?;
    if rows == 0 {
        return Err(KernelError::ShapeMismatch {
            what: "weights to quantize: rows (must be at least 1)",
            expected: 1,
            actual: 0,
        });
    }
    check_len(
        "weights to quantize (rows × cols)",
        rows * cols,
        weights.len(),
    )?;
    if let Some(index) = weights.iter().position(|w| !w.is_finite()) {
        return Err(KernelError::NonFinite {
            what: "weights to quantize",
            index,
            value: weights[index],
        });
    }
    Ok(groups_per_row)
}

fn to_f16_checked(what: &'static str, index: usize, value: f32) -> Result<u16, KernelError> {
    if value.abs() > F16_MAX {
        return Err(KernelError::ScaleOutOfRange { what, index, value });
    }
    Ok(f32_to_f16(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_max_codes_span_the_range_and_error_is_half_a_step() {
        let weights: Vec<f32> = (0..64).map(|i| (i as f32 - 20.0) * 0.1).collect();
        let q = QuantizedMatrix::quantize_min_max(&weights, 1, 64, WeightBits::B4, GroupSize::G32)
            .unwrap();
        for g in 0..2 {
            let codes = &q.codes()[g * 32..g * 32 + 32];
            assert_eq!(*codes.iter().min().unwrap(), 0);
            assert_eq!(*codes.iter().max().unwrap(), 15);
            let scale = f16_to_f32(q.scale_bits(0, g));
            for (col, w) in weights.iter().enumerate().skip(g * 32).take(32) {
                let err = (q.weight(0, col) - w).abs();
                assert!(err <= scale * 0.5 + 1e-3, "col {col}: error {err}");
            }
        }
    }

    #[test]
    fn ternary_weights_are_multiples_of_the_scale() {
        let weights: Vec<f32> = (0..32).map(|i| ((i % 5) as f32 - 2.0) * 0.3).collect();
        let q = QuantizedMatrix::quantize_ternary(&weights, 1, 32, GroupSize::G32).unwrap();
        let scale = f16_to_f32(q.scale_bits(0, 0));
        for col in 0..32 {
            let t = q.weight(0, col) / scale;
            assert!([-1.0, 0.0, 1.0].contains(&t), "col {col}: {t}");
        }
        assert!(q.codes().iter().all(|&c| c <= 2));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let w = vec![0.0f32; 64];
        assert!(matches!(
            QuantizedMatrix::quantize_min_max(&w, 1, 48, WeightBits::B2, GroupSize::G32),
            Err(KernelError::ColsNotMultipleOfGroup { .. })
        ));
        assert!(matches!(
            QuantizedMatrix::quantize_min_max(&w, 2, 64, WeightBits::B2, GroupSize::G32),
            Err(KernelError::ShapeMismatch { .. })
        ));
        let mut nan = w.clone();
        nan[7] = f32::NAN;
        assert!(matches!(
            QuantizedMatrix::quantize_min_max(&nan, 1, 64, WeightBits::B2, GroupSize::G32),
            Err(KernelError::NonFinite { index: 7, .. })
        ));
        let mut huge = w.clone();
        huge[3] = 3e5;
        assert!(matches!(
            QuantizedMatrix::quantize_min_max(&huge, 1, 64, WeightBits::B2, GroupSize::G32),
            Err(KernelError::ScaleOutOfRange { .. })
        ));
        assert!(matches!(
            QuantizedMatrix::from_parts(
                1,
                32,
                WeightBits::B1,
                GroupSize::G32,
                vec![2; 32],
                vec![0; 1],
                vec![0; 1]
            ),
            Err(KernelError::IndexOutOfRange { .. })
        ));
    }
}
