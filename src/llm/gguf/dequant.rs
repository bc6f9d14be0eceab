//! Dequantization of the ggml block formats edgesim reads, to f32.
//!
//! Layouts (ggml `block_q4_0`, `block_q4_1`, `block_q8_0`), 32 weights per block:
//! - Q4_0: f16 scale `d`, 16 bytes of nibbles; weight = (q − 8)·d.
//! - Q4_1: f16 scale `d`, f16 minimum `m`, 16 bytes of nibbles; weight = q·d + m.
//! - Q8_0: f16 scale `d`, 32 signed bytes; weight = q·d.
//!
//! In a Q4 block the low nibble of byte j is weight j and the high nibble is weight j + 16.

use super::tensor_type::GgmlType;

/// IEEE half precision bits to f32, exact for every input (subnormals, infinities, NaN).
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = ((bits >> 15) as u32) << 31;
    let exponent = ((bits >> 10) & 0x1f) as u32;
    let mantissa = (bits & 0x3ff) as u32;
    let magnitude = match (exponent, mantissa) {
        (0, 0) => 0,
        // Subnormal half: value = mantissa · 2^-24, exactly representable in f32.
        (0, _) => {
            let value = mantissa as f32 * f32::powi(2.0, -24);
            return if sign == 0 { value } else { -value };
        }
        (0x1f, 0) => 0xff << 23,
        (0x1f, _) => (0xff << 23) | (mantissa << 13),
        _ => ((exponent + 127 - 15) << 23) | (mantissa << 13),
    };
    f32::from_bits(sign | magnitude)
}

fn read_f16(bytes: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
}

/// Dequantizes `data` of type `ty` into `out`.
///
/// The caller guarantees `data.len() == ty.bytes_for(out.len())` (the GGUF reader checks it
/// against the tensor info); returns false for a type without a block layout.
pub fn dequantize_into(ty: GgmlType, data: &[u8], out: &mut [f32]) -> bool {
    let Some(layout) = ty.block_layout() else {
        return false;
    };
    debug_assert_eq!(data.len(), out.len() / layout.elements * layout.bytes);
    let blocks = data
        .chunks_exact(layout.bytes)
        .zip(out.chunks_exact_mut(layout.elements));
    match ty {
        GgmlType::F32 => {
            for (block, value) in blocks {
                value[0] = f32::from_le_bytes([block[0], block[1], block[2], block[3]]);
            }
        }
        GgmlType::F16 => {
            for (block, value) in blocks {
                value[0] = read_f16(block, 0);
            }
        }
        GgmlType::Q4_0 => {
            for (block, values) in blocks {
                let scale = read_f16(block, 0);
                let nibbles = &block[2..18];
                for (j, &byte) in nibbles.iter().enumerate() {
                    values[j] = ((byte & 0x0f) as i32 - 8) as f32 * scale;
                    values[j + 16] = ((byte >> 4) as i32 - 8) as f32 * scale;
                }
            }
        }
        GgmlType::Q4_1 => {
            for (block, values) in blocks {
                let scale = read_f16(block, 0);
                let minimum = read_f16(block, 2);
                let nibbles = &block[4..20];
                for (j, &byte) in nibbles.iter().enumerate() {
                    values[j] = (byte & 0x0f) as f32 * scale + minimum;
                    values[j + 16] = (byte >> 4) as f32 * scale + minimum;
                }
            }
        }
        GgmlType::Q8_0 => {
            for (block, values) in blocks {
                let scale = read_f16(block, 0);
                for (value, &q) in values.iter_mut().zip(&block[2..34]) {
                    *value = (q as i8) as f32 * scale;
                }
            }
        }
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_known_values() {
        assert_eq!(f16_to_f32(0x0000), 0.0);
        assert!(f16_to_f32(0x8000).is_sign_negative());
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), f32::powi(2.0, -24)); // smallest subnormal
        assert_eq!(f16_to_f32(0x83ff), -1023.0 * f32::powi(2.0, -24)); // largest negative subnormal
        assert_eq!(f16_to_f32(0x0400), f32::powi(2.0, -14)); // smallest normal
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert_eq!(f16_to_f32(0xfc00), f32::NEG_INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn q4_0_block_puts_low_nibbles_first() {
        let mut block = vec![0x00, 0x40]; // d = 2.0
                                          // byte j: low nibble = j % 16, high nibble = 15 - j % 16
        block.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let mut out = [0.0f32; 32];
        assert!(dequantize_into(GgmlType::Q4_0, &block, &mut out));
        for j in 0..16 {
            assert_eq!(out[j], (j as f32 - 8.0) * 2.0, "element {j}");
            assert_eq!(
                out[j + 16],
                ((15 - j) as f32 - 8.0) * 2.0,
                "element {}",
                j + 16
            );
        }
    }

    #[test]
    fn q4_1_block_adds_the_minimum() {
        let mut block = vec![0x00, 0x38, 0x00, 0xbc]; // d = 0.5, m = -1.0
        block.extend((0..16u8).map(|j| j | (j << 4)));
        let mut out = [0.0f32; 32];
        assert!(dequantize_into(GgmlType::Q4_1, &block, &mut out));
        for j in 0..16 {
            assert_eq!(out[j], j as f32 * 0.5 - 1.0);
            assert_eq!(out[j + 16], j as f32 * 0.5 - 1.0);
        }
    }

    #[test]
    fn q8_0_block_is_signed() {
        let mut block = vec![0x00, 0x34]; // d = 0.25
        block.extend((0..32i8).map(|j| (j - 16) as u8));
        let mut out = [0.0f32; 32];
        assert!(dequantize_into(GgmlType::Q8_0, &block, &mut out));
        for (j, value) in out.iter().enumerate() {
            assert_eq!(*value, (j as f32 - 16.0) * 0.25);
        }
    }

    #[test]
    fn unsupported_type_is_refused() {
        let q6_k = GgmlType::from_id(14).unwrap();
        assert!(!dequantize_into(q6_k, &[0; 210], &mut [0.0; 256]));
    }
}
