//! Which weight format the model's matrices run in: the `--bits` choice.
//!
//! This is the one place that maps a format to a [`MatVecBuilder`]; integrating the LUT
//! kernels means returning their builder for [`WeightFormat::Lut`] here.

use crate::llm::matvec::{F32Builder, MatVecBuilder};
use crate::llm::LlmError;
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightFormat {
    /// Weights dequantized from the file to f32: the quality reference.
    F32,
    /// T-MAC-style lookup-table kernels at this many bits per weight (8, 4, 3 or 2).
    Lut { bits: u8 },
}

/// Bit widths the LUT kernels are planned for.
pub const LUT_BITS: [u8; 4] = [8, 4, 3, 2];

impl WeightFormat {
    /// The builder that converts dequantized weights into this format.
    pub fn builder(self) -> Result<Box<dyn MatVecBuilder>, LlmError> {
        match self {
            WeightFormat::F32 => Ok(Box::new(F32Builder)),
            WeightFormat::Lut { bits } => Err(LlmError::Unsupported(format!(
                "--bits {bits}: the LUT kernels are not integrated with the real-model runtime yet, \
so only --bits f32 (weights dequantized from the file to f32) runs today"
            ))),
        }
    }
}

impl FromStr for WeightFormat {
    type Err = LlmError;

    fn from_str(s: &str) -> Result<WeightFormat, LlmError> {
        match s {
            "f32" => Ok(WeightFormat::F32),
            _ => match s.parse::<u8>() {
                Ok(bits) if LUT_BITS.contains(&bits) => Ok(WeightFormat::Lut { bits }),
                _ => Err(LlmError::Input(format!(
                    "weight format '{s}': expected f32 or a bit width of {LUT_BITS:?}"
                ))),
            },
        }
    }
}

impl fmt::Display for WeightFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeightFormat::F32 => f.write_str("f32"),
            WeightFormat::Lut { bits } => write!(f, "lut-int{bits}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_honestly() {
        assert_eq!("f32".parse::<WeightFormat>().unwrap(), WeightFormat::F32);
        assert_eq!(
            "4".parse::<WeightFormat>().unwrap(),
            WeightFormat::Lut { bits: 4 }
        );
        assert!("5".parse::<WeightFormat>().is_err());
        assert!("fp16".parse::<WeightFormat>().is_err());
        assert!(WeightFormat::F32.builder().is_ok());
        let error = WeightFormat::Lut { bits: 2 }
            .builder()
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("not integrated"), "{error}");
    }
}
