//! Converters from GGUF's Q4_0, Q4_1 and Q8_0 blocks (ggml's block definitions) into this
//! crate's format: each block is decoded to f32, then the matrix is requantized with a
//! [`QuantScheme`], so a real model file can feed the lookup kernels.
//!
//! Block definitions (32 weights per block, little-endian):
//! * Q4_0: fp16 `d`, then 16 bytes; byte `i` holds element `i` in its low nibble and element
//!   `i + 16` in its high nibble; `w = (q − 8)·d`.
//! * Q4_1: fp16 `d`, fp16 `m`, then 16 bytes as Q4_0; `w = q·d + m`.
//! * Q8_0: fp16 `d`, then 32 int8 `q`; `w = q·d`.

use super::error::KernelError;
use super::f16::f16_to_f32;
use super::quantize::{QuantScheme, QuantizedMatrix};

/// Weights per GGUF block of the supported kinds.
pub const GGUF_BLOCK_WEIGHTS: usize = 32;

/// A GGUF block quantization this module decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgufBlockKind {
    Q4_0,
    Q4_1,
    Q8_0,
}

impl GgufBlockKind {
    /// Bytes of one block of 32 weights.
    pub fn block_bytes(self) -> usize {
        match self {
            GgufBlockKind::Q4_0 => 18,
            GgufBlockKind::Q4_1 => 20,
            GgufBlockKind::Q8_0 => 34,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            GgufBlockKind::Q4_0 => "Q4_0",
            GgufBlockKind::Q4_1 => "Q4_1",
            GgufBlockKind::Q8_0 => "Q8_0",
        }
    }
}

/// Decodes `elements` weights (a multiple of 32) from consecutive blocks.
pub fn dequantize_blocks(
    kind: GgufBlockKind,
    bytes: &[u8],
    elements: usize,
) -> Result<Vec<f32>, KernelError> {
    if !elements.is_multiple_of(GGUF_BLOCK_WEIGHTS) {
        return Err(KernelError::GgufBlocks {
            kind: kind.name(),
            detail: format!("{elements} elements is not a multiple of {GGUF_BLOCK_WEIGHTS}"),
        });
    }
    let blocks = elements / GGUF_BLOCK_WEIGHTS;
    let needed = blocks * kind.block_bytes();
    if bytes.len() != needed {
        return Err(KernelError::GgufBlocks {
            kind: kind.name(),
            detail: format!(
                "{} bytes given, {blocks} blocks of {} bytes need {needed}",
                bytes.len(),
                kind.block_bytes()
            ),
        });
    }
    let mut out = vec![0.0f32; elements];
    for (index, (block, weights)) in bytes
        .chunks_exact(kind.block_bytes())
        .zip(out.chunks_exact_mut(GGUF_BLOCK_WEIGHTS))
        .enumerate()
    {
        decode_block(kind, block, weights).map_err(|detail| KernelError::GgufBlocks {
            kind: kind.name(),
            detail: format!("block {index}: {detail}"),
        })?;
    }
    Ok(out)
}

fn read_f16(bytes: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
}

fn decode_block(kind: GgufBlockKind, block: &[u8], weights: &mut [f32]) -> Result<(), String> {
    let d = read_f16(block, 0);
    if !d.is_finite() {
        return Err(format!("scale d is not finite ({d})"));
    }
    match kind {
        GgufBlockKind::Q4_0 | GgufBlockKind::Q4_1 => {
            let (m, nibbles) = if kind == GgufBlockKind::Q4_1 {
                let m = read_f16(block, 2);
                if !m.is_finite() {
                    return Err(format!("minimum m is not finite ({m})"));
                }
                (m, &block[4..20])
            } else {
                (0.0, &block[2..18])
            };
            for (i, &byte) in nibbles.iter().enumerate() {
                let (low, high) = ((byte & 15) as f32, (byte >> 4) as f32);
                if kind == GgufBlockKind::Q4_0 {
                    weights[i] = (low - 8.0) * d;
                    weights[i + 16] = (high - 8.0) * d;
                } else {
                    weights[i] = low * d + m;
                    weights[i + 16] = high * d + m;
                }
            }
        }
        GgufBlockKind::Q8_0 => {
            for (w, &q) in weights.iter_mut().zip(&block[2..34]) {
                *w = (q as i8) as f32 * d;
            }
        }
    }
    Ok(())
}

/// Decodes a `rows × cols` GGUF tensor (each row `cols/32` consecutive blocks, as ggml stores
/// a 2-D tensor with `ne0 = cols`) and requantizes it with `scheme`.
pub fn requantize(
    kind: GgufBlockKind,
    bytes: &[u8],
    rows: usize,
    cols: usize,
    scheme: QuantScheme,
) -> Result<QuantizedMatrix, KernelError> {
    let weights = dequantize_blocks(kind, bytes, rows * cols)?;
    if !cols.is_multiple_of(GGUF_BLOCK_WEIGHTS) {
        return Err(KernelError::GgufBlocks {
            kind: kind.name(),
            detail: format!("row length {cols} is not a multiple of {GGUF_BLOCK_WEIGHTS}"),
        });
    }
    scheme.quantize(&weights, rows, cols)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::f16::f32_to_f16;
    use crate::kernels::format::{GroupSize, WeightBits};

    fn q4_block(d: f32, m: Option<f32>, codes: &[u8; 32]) -> Vec<u8> {
        let mut block = f32_to_f16(d).to_le_bytes().to_vec();
        if let Some(m) = m {
            block.extend_from_slice(&f32_to_f16(m).to_le_bytes());
        }
        for i in 0..16 {
            block.push(codes[i] | (codes[i + 16] << 4));
        }
        block
    }

    #[test]
    fn q4_0_block_decodes_low_nibbles_first() {
        let codes: [u8; 32] = std::array::from_fn(|i| (i % 16) as u8);
        let block = q4_block(0.5, None, &codes);
        assert_eq!(block.len(), 18);
        let w = dequantize_blocks(GgufBlockKind::Q4_0, &block, 32).unwrap();
        for i in 0..32 {
            assert_eq!(w[i], (codes[i] as f32 - 8.0) * 0.5, "element {i}");
        }
        // Hand-checked corners: element 0 has code 0 → −4, element 31 code 15 → 3.5.
        assert_eq!(w[0], -4.0);
        assert_eq!(w[31], 3.5);
    }

    #[test]
    fn q4_1_block_adds_the_minimum() {
        let mut codes = [0u8; 32];
        codes[0] = 15;
        codes[16] = 1;
        codes[17] = 2;
        let block = q4_block(0.25, Some(-1.0), &codes);
        assert_eq!(block.len(), 20);
        let w = dequantize_blocks(GgufBlockKind::Q4_1, &block, 32).unwrap();
        assert_eq!(w[0], 15.0 * 0.25 - 1.0);
        assert_eq!(w[1], -1.0);
        assert_eq!(w[16], -0.75);
        assert_eq!(w[17], -0.5);
    }

    #[test]
    fn q8_0_block_is_signed() {
        let mut block = f32_to_f16(2.0).to_le_bytes().to_vec();
        block.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let w = dequantize_blocks(GgufBlockKind::Q8_0, &block, 32).unwrap();
        for (i, v) in w.iter().enumerate() {
            assert_eq!(*v, (i as f32 - 16.0) * 2.0);
        }
    }

    #[test]
    fn requantized_q8_0_at_eight_bits_is_close() {
        // Two rows of 64 weights = 4 blocks.
        let mut bytes = Vec::new();
        for b in 0..4 {
            bytes.extend_from_slice(&f32_to_f16(0.01 * (b + 1) as f32).to_le_bytes());
            bytes.extend((0..32).map(|i| ((i * 7 + b * 3) % 255) as u8));
        }
        let original = dequantize_blocks(GgufBlockKind::Q8_0, &bytes, 128).unwrap();
        let scheme = QuantScheme::MinMax {
            bits: WeightBits::B8,
            group: GroupSize::G32,
        };
        let q = requantize(GgufBlockKind::Q8_0, &bytes, 2, 64, scheme).unwrap();
        for row in 0..2 {
            for col in 0..64 {
                let g = col / 32;
                let step = f16_to_f32(q.scale_bits(row, g));
                let err = (q.weight(row, col) - original[row * 64 + col]).abs();
                assert!(err <= step * 0.5 + 1e-3, "({row},{col}) error {err}");
            }
        }
    }

    #[test]
    fn wrong_lengths_and_bad_scales_are_errors() {
        let block = q4_block(1.0, None, &[0; 32]);
        assert!(dequantize_blocks(GgufBlockKind::Q4_0, &block[..17], 32).is_err());
        assert!(dequantize_blocks(GgufBlockKind::Q4_0, &block, 31).is_err());
        assert!(dequantize_blocks(GgufBlockKind::Q4_1, &block, 32).is_err());
        let mut inf = block.clone();
        inf[0..2].copy_from_slice(&0x7c00u16.to_le_bytes());
        let err = dequantize_blocks(GgufBlockKind::Q4_0, &inf, 32).unwrap_err();
        assert!(err.to_string().contains("block 0"), "{err}");
    }
}
