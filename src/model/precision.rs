//! Weight precisions and what a weight costs in bytes at each.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Storage precision of a weight tensor.
///
/// Integer formats are group-quantized: every group of [`QUANT_GROUP`] weights carries an fp16
/// scale and an fp16 zero point, the layout edgesim's LUT kernels read (see `docs/kernels.md`).
/// That adds 32 bits per group, so int4 costs 4.5 bits per weight, like llama.cpp's Q4_1 at
/// group 64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp16,
    Int8,
    Int4,
    Int3,
    Int2,
}

/// Weights per quantization group (one fp16 scale and one fp16 zero point each).
pub const QUANT_GROUP: u64 = 64;

impl Precision {
    pub const ALL: [Precision; 5] = [
        Precision::Fp16,
        Precision::Int8,
        Precision::Int4,
        Precision::Int3,
        Precision::Int2,
    ];

    /// Bits of the weight value itself, before group metadata.
    pub fn bits(self) -> u32 {
        match self {
            Precision::Fp16 => 16,
            Precision::Int8 => 8,
            Precision::Int4 => 4,
            Precision::Int3 => 3,
            Precision::Int2 => 2,
        }
    }

    pub fn is_quantized(self) -> bool {
        self != Precision::Fp16
    }

    /// Bytes needed to store `params` weights at this precision, group metadata included.
    pub fn bytes_for(self, params: u64) -> u64 {
        let value_bits = params * self.bits() as u64;
        let meta_bits = if self.is_quantized() {
            params.div_ceil(QUANT_GROUP) * 32
        } else {
            0
        };
        (value_bits + meta_bits).div_ceil(8)
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp16 => "fp16",
            Precision::Int8 => "int8",
            Precision::Int4 => "int4",
            Precision::Int3 => "int3",
            Precision::Int2 => "int2",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Precision::ALL
            .iter()
            .copied()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                format!("unknown precision `{s}` (expected fp16, int8, int4, int3 or int2)")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_include_group_metadata() {
        assert_eq!(Precision::Fp16.bytes_for(64), 128);
        // 64 int4 weights = 32 bytes + 4 bytes of scale and zero point.
        assert_eq!(Precision::Int4.bytes_for(64), 36);
        assert_eq!(Precision::Int2.bytes_for(64), 20);
        assert_eq!(Precision::Int8.bytes_for(128), 136);
        // A partial group still carries a full scale and zero point.
        assert_eq!(Precision::Int4.bytes_for(65), 41);
    }

    #[test]
    fn parses_names() {
        for p in Precision::ALL {
            assert_eq!(p.name().parse::<Precision>().unwrap(), p);
        }
        assert!("int5".parse::<Precision>().is_err());
    }
}
