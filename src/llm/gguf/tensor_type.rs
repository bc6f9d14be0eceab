//! ggml tensor types: which ones exist, and the block layout of those edgesim can dequantize.

use std::fmt;

/// A ggml tensor type id as stored in a GGUF tensor info.
///
/// Any id ggml defines parses (so the error for a Q6_K tensor can say "Q6_K is not supported"
/// rather than "unknown type 14"); only [`GgmlType::block_layout`] types can be dequantized.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GgmlType(u32);

/// How a block-quantized type stores its weights: `elements` weights in `bytes` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockLayout {
    pub elements: usize,
    pub bytes: usize,
}

impl GgmlType {
    pub const F32: GgmlType = GgmlType(0);
    pub const F16: GgmlType = GgmlType(1);
    pub const Q4_0: GgmlType = GgmlType(2);
    pub const Q4_1: GgmlType = GgmlType(3);
    pub const Q8_0: GgmlType = GgmlType(8);

    /// The types [`super::dequantize_into`] reads.
    pub const SUPPORTED: [GgmlType; 5] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q8_0,
    ];

    /// Type ids ggml defines (ggml.h `enum ggml_type`); ids 4, 5 and 31–33 were removed upstream.
    const NAMES: [(u32, &'static str); 33] = [
        (0, "F32"),
        (1, "F16"),
        (2, "Q4_0"),
        (3, "Q4_1"),
        (6, "Q5_0"),
        (7, "Q5_1"),
        (8, "Q8_0"),
        (9, "Q8_1"),
        (10, "Q2_K"),
        (11, "Q3_K"),
        (12, "Q4_K"),
        (13, "Q5_K"),
        (14, "Q6_K"),
        (15, "Q8_K"),
        (16, "IQ2_XXS"),
        (17, "IQ2_XS"),
        (18, "IQ3_XXS"),
        (19, "IQ1_S"),
        (20, "IQ4_NL"),
        (21, "IQ3_S"),
        (22, "IQ2_S"),
        (23, "IQ4_XS"),
        (24, "I8"),
        (25, "I16"),
        (26, "I32"),
        (27, "I64"),
        (28, "F64"),
        (29, "IQ1_M"),
        (30, "BF16"),
        (34, "TQ1_0"),
        (35, "TQ2_0"),
        (36, "IQ4_NL_4_4"),
        (39, "MXFP4"),
    ];

    /// The type for `id`, or None if ggml defines no such type.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        Self::NAMES
            .iter()
            .any(|&(known, _)| known == id)
            .then_some(GgmlType(id))
    }

    pub fn id(self) -> u32 {
        self.0
    }

    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|&&(known, _)| known == self.0)
            .map(|&(_, name)| name)
            .unwrap_or("unknown")
    }

    /// The block layout if edgesim can dequantize this type (ggml's `block_q4_0` etc.).
    pub fn block_layout(self) -> Option<BlockLayout> {
        let (elements, bytes) = match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 => (1, 2),
            // f16 scale + 16 bytes of nibbles.
            GgmlType::Q4_0 => (32, 2 + 16),
            // f16 scale, f16 minimum + 16 bytes of nibbles.
            GgmlType::Q4_1 => (32, 2 + 2 + 16),
            // f16 scale + 32 signed bytes.
            GgmlType::Q8_0 => (32, 2 + 32),
            _ => return None,
        };
        Some(BlockLayout { elements, bytes })
    }

    /// Bytes for `elements` weights, or None if unsupported, not a whole number of blocks, or
    /// overflowing.
    pub fn bytes_for(self, elements: u64) -> Option<u64> {
        let layout = self.block_layout()?;
        if !elements.is_multiple_of(layout.elements as u64) {
            return None;
        }
        (elements / layout.elements as u64).checked_mul(layout.bytes as u64)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_ids_have_names_and_unknown_ids_are_rejected() {
        assert_eq!(GgmlType::from_id(3).unwrap().name(), "Q4_1");
        assert_eq!(GgmlType::from_id(14).unwrap().name(), "Q6_K");
        assert!(GgmlType::from_id(4).is_none());
        assert!(GgmlType::from_id(1000).is_none());
    }

    #[test]
    fn block_sizes_follow_ggml() {
        assert_eq!(GgmlType::Q4_1.bytes_for(64), Some(40));
        assert_eq!(GgmlType::Q4_0.bytes_for(32), Some(18));
        assert_eq!(GgmlType::Q8_0.bytes_for(96), Some(102));
        assert_eq!(GgmlType::F16.bytes_for(3), Some(6));
        assert_eq!(GgmlType::Q8_0.bytes_for(33), None);
        assert_eq!(GgmlType::from_id(14).unwrap().bytes_for(256), None);
    }
}
