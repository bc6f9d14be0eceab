//! Dequantization of the ggml tensor types edgesim reads, to f32.
//!
//! The block formats (Q4_0, Q4_1, Q8_0) and the fp16 conversion are decoded by
//! [`crate::kernels::gguf`] and [`crate::kernels::f16`], the one implementation in the crate
//! (the kernels depend on nothing else, so the reader uses theirs). This module adds the
//! unquantized types (F32, F16) and maps ggml type ids onto the kernels' block kinds.

use super::tensor_type::GgmlType;
use crate::kernels::gguf::{dequantize_blocks, GgufBlockKind};

pub use crate::kernels::f16::f16_to_f32;

/// Why a tensor could not be dequantized.
#[derive(Debug, PartialEq)]
pub enum DequantError {
    /// The type has no decoder here (k-quants, integer types, …).
    Unsupported,
    /// The bytes do not decode: e.g. a block scale that is infinite or NaN.
    Invalid(String),
}

/// The kernels' block kind for a ggml block type.
fn block_kind(ty: GgmlType) -> Option<GgufBlockKind> {
    match ty {
        GgmlType::Q4_0 => Some(GgufBlockKind::Q4_0),
        GgmlType::Q4_1 => Some(GgufBlockKind::Q4_1),
        GgmlType::Q8_0 => Some(GgufBlockKind::Q8_0),
        _ => None,
    }
}

/// Dequantizes `data` of type `ty` into `out`.
///
/// The caller guarantees `data.len() == ty.bytes_for(out.len())` (the GGUF reader checks it
/// against the tensor info).
pub fn dequantize_into(ty: GgmlType, data: &[u8], out: &mut [f32]) -> Result<(), DequantError> {
    match ty {
        GgmlType::F32 => {
            for (value, bytes) in out.iter_mut().zip(data.chunks_exact(4)) {
                *value = f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            }
            Ok(())
        }
        GgmlType::F16 => {
            for (value, bytes) in out.iter_mut().zip(data.chunks_exact(2)) {
                *value = f16_to_f32(u16::from_le_bytes([bytes[0], bytes[1]]));
            }
            Ok(())
        }
        _ => {
            let kind = block_kind(ty).ok_or(DequantError::Unsupported)?;
            let values = dequantize_blocks(kind, data, out.len())
                .map_err(|e| DequantError::Invalid(e.to_string()))?;
            out.copy_from_slice(&values);
            Ok(())
        }
    }
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
        dequantize_into(GgmlType::Q4_0, &block, &mut out).unwrap();
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
        dequantize_into(GgmlType::Q4_1, &block, &mut out).unwrap();
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
        dequantize_into(GgmlType::Q8_0, &block, &mut out).unwrap();
        for (j, value) in out.iter().enumerate() {
            assert_eq!(*value, (j as f32 - 16.0) * 0.25);
        }
    }

    #[test]
    fn f32_and_f16_tensors_are_read_little_endian() {
        let mut out = [0.0f32; 2];
        let data: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        dequantize_into(GgmlType::F32, &data, &mut out).unwrap();
        assert_eq!(out, [1.5, -2.0]);
        dequantize_into(GgmlType::F16, &[0x00, 0x3c, 0x00, 0xc0], &mut out).unwrap();
        assert_eq!(out, [1.0, -2.0]);
    }

    #[test]
    fn unsupported_type_and_bad_scale_are_refused() {
        let q6_k = GgmlType::from_id(14).unwrap();
        assert_eq!(
            dequantize_into(q6_k, &[0; 210], &mut [0.0; 256]),
            Err(DequantError::Unsupported)
        );
        let mut block = vec![0x00, 0x7c]; // d = +infinity
        block.extend([0u8; 16]);
        let error = dequantize_into(GgmlType::Q4_0, &block, &mut [0.0; 32]).unwrap_err();
        assert!(
            matches!(&error, DequantError::Invalid(m) if m.contains("block 0")),
            "{error:?}"
        );
    }
}
