//! Which weight format the model's matrices run in: the `--bits` choice.
//!
//! This is the one place that maps a format to a [`MatVecBuilder`].

use crate::kernels::{GroupSize, KernelError, WeightBits};
use crate::llm::matvec::{
    EightBitKernel, F32Builder, InputStatistics, LutBuilder, MatVecBuilder, Requantizer,
};
use crate::llm::LlmError;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightFormat {
    /// Weights dequantized from the file to f32: the quality reference.
    F32,
    /// T-MAC-style lookup-table kernels: the blocks' matrices at `bits` per weight (8, 4, 3
    /// or 2) with one fp16 scale and centre per `group` weights (32 or 64), the output head at
    /// `output_bits`, requantized by `requantizer`; matrices at 8 bits run on `eight_bit`.
    Lut {
        bits: u8,
        group: u16,
        output_bits: u8,
        requantizer: Requantizer,
        eight_bit: EightBitKernel,
    },
}

/// Bit widths the LUT formats run at.
pub const LUT_BITS: [u8; 4] = [8, 4, 3, 2];

/// Group sizes that divide both of SmolLM2's matrix widths (576 and 1536).
pub const LUT_GROUPS: [u16; 3] = [32, 64, 96];

/// The group size unless `--group` says otherwise: the file's own Q4_1 blocks are groups of 32,
/// so 4-bit requantization at group 32 keeps them exactly (at 64 the perplexity doubles).
pub const DEFAULT_GROUP: u16 = 32;

/// The output head's bit width unless `--output-bits` says otherwise: 8, as the file keeps its
/// (tied) token embedding in Q8_0 while the blocks are Q4_1.
pub const DEFAULT_OUTPUT_BITS: u8 = 8;

fn lut_bits(bits: u8, what: &str) -> Result<WeightBits, LlmError> {
    if !LUT_BITS.contains(&bits) {
        return Err(LlmError::Input(format!(
            "{what}: {bits} bits is not one of {LUT_BITS:?}"
        )));
    }
    WeightBits::from_bits(bits as u32).map_err(|e| LlmError::Input(format!("{what}: {e}")))
}

impl WeightFormat {
    /// The LUT format at `bits` with the default group size, output head and requantizer.
    pub fn lut(bits: u8) -> Result<WeightFormat, LlmError> {
        let weight_bits = lut_bits(bits, "weight format")?;
        Ok(WeightFormat::Lut {
            bits,
            group: DEFAULT_GROUP,
            output_bits: DEFAULT_OUTPUT_BITS,
            requantizer: Requantizer::default_for(weight_bits),
            eight_bit: EightBitKernel::default(),
        })
    }

    /// The same LUT format with another group size (32 or 64); f32 is returned unchanged.
    pub fn with_group(mut self, group_size: u16) -> Result<WeightFormat, LlmError> {
        if !LUT_GROUPS.contains(&group_size) {
            return Err(LlmError::Input(format!(
                "group size {group_size}: expected one of {LUT_GROUPS:?} (they divide 576 and 1536)"
            )));
        }
        if let WeightFormat::Lut { group, .. } = &mut self {
            *group = group_size;
        }
        Ok(self)
    }

    /// The same LUT format with the output head at `output_bits`; f32 is returned unchanged.
    pub fn with_output_bits(mut self, bits: u8) -> Result<WeightFormat, LlmError> {
        lut_bits(bits, "output head")?;
        if let WeightFormat::Lut { output_bits, .. } = &mut self {
            *output_bits = bits;
        }
        Ok(self)
    }

    /// The same LUT format with another requantizer; f32 is returned unchanged.
    pub fn with_requantizer(mut self, chosen: Requantizer) -> WeightFormat {
        if let WeightFormat::Lut { requantizer, .. } = &mut self {
            *requantizer = chosen;
        }
        self
    }

    /// The same LUT format with another kernel for its 8-bit matrices; f32 is returned
    /// unchanged.
    pub fn with_eight_bit_kernel(mut self, kernel: EightBitKernel) -> WeightFormat {
        if let WeightFormat::Lut { eight_bit, .. } = &mut self {
            *eight_bit = kernel;
        }
        self
    }

    /// Whether the builder needs calibration statistics ([`Requantizer::Gptq`]).
    pub fn needs_calibration(self) -> bool {
        matches!(
            self,
            WeightFormat::Lut {
                requantizer: Requantizer::Gptq,
                ..
            }
        )
    }

    /// The builder, with the calibration statistics a [`Requantizer::Gptq`] format needs.
    pub fn calibrated_builder(
        self,
        statistics: Arc<InputStatistics>,
    ) -> Result<Box<dyn MatVecBuilder>, LlmError> {
        match self {
            WeightFormat::Lut { .. } => {
                Ok(Box::new(self.lut_builder()?.with_statistics(statistics)))
            }
            WeightFormat::F32 => self.builder(),
        }
    }

    fn lut_builder(self) -> Result<LutBuilder, LlmError> {
        let WeightFormat::Lut {
            bits,
            group,
            output_bits,
            requantizer,
            eight_bit,
        } = self
        else {
            return Err(LlmError::Input("f32 is not a LUT format".into()));
        };
        let group = GroupSize::new(group as usize)
            .map_err(|e: KernelError| LlmError::Input(format!("weight format {self:?}: {e}")))?;
        Ok(LutBuilder::new(lut_bits(bits, "weight format")?, group)
            .with_output_bits(lut_bits(output_bits, "output head")?)
            .with_requantizer(requantizer)
            .with_eight_bit_kernel(eight_bit))
    }

    /// The builder that converts dequantized weights into this format (a GPTQ format's fails
    /// on its first matrix without statistics: use [`WeightFormat::calibrated_builder`]).
    pub fn builder(self) -> Result<Box<dyn MatVecBuilder>, LlmError> {
        match self {
            WeightFormat::F32 => Ok(Box::new(F32Builder)),
            WeightFormat::Lut { .. } => Ok(Box::new(self.lut_builder()?)),
        }
    }
}

impl FromStr for WeightFormat {
    type Err = LlmError;

    /// `f32`, or a bit width of [`LUT_BITS`] with the defaults of [`WeightFormat::lut`].
    fn from_str(s: &str) -> Result<WeightFormat, LlmError> {
        match s {
            "f32" => Ok(WeightFormat::F32),
            _ => match s.parse::<u8>() {
                Ok(bits) if LUT_BITS.contains(&bits) => WeightFormat::lut(bits),
                _ => Err(LlmError::Input(format!(
                    "weight format '{s}': expected f32 or a bit width of {LUT_BITS:?}"
                ))),
            },
        }
    }
}

impl fmt::Display for WeightFormat {
    /// The same text as the builder's `format()`: `lut-int4-g32, output int8`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.builder() {
            Ok(builder) => f.write_str(&builder.format()),
            Err(_) => write!(f, "{self:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_bit_width_and_refuses_others() {
        assert_eq!("f32".parse::<WeightFormat>().unwrap(), WeightFormat::F32);
        assert_eq!(WeightFormat::F32.to_string(), "f32");
        for bits in LUT_BITS {
            let format: WeightFormat = bits.to_string().parse().unwrap();
            let WeightFormat::Lut {
                bits: parsed,
                group,
                output_bits,
                ..
            } = format
            else {
                panic!("{format:?}")
            };
            assert_eq!((parsed, group, output_bits), (bits, 32, 8));
            assert!(format.builder().is_ok());
        }
        assert_eq!(
            WeightFormat::lut(4).unwrap().to_string(),
            "lut-int4-g32, output int8"
        );
        assert_eq!(WeightFormat::lut(8).unwrap().to_string(), "int8-g32");
        assert_eq!(
            WeightFormat::lut(8)
                .unwrap()
                .with_eight_bit_kernel(EightBitKernel::Lut)
                .to_string(),
            "lut-int8-g32"
        );
        assert!("5".parse::<WeightFormat>().is_err());
        assert!("fp16".parse::<WeightFormat>().is_err());
    }

    #[test]
    fn group_output_and_requantizer_options() {
        let format = WeightFormat::lut(2)
            .unwrap()
            .with_group(64)
            .unwrap()
            .with_output_bits(2)
            .unwrap()
            .with_requantizer(Requantizer::MinMax);
        assert_eq!(format.to_string(), "lut-int2-g64, min/max");
        assert!(format.with_group(128).is_err());
        assert!(format.with_output_bits(5).is_err());
        assert_eq!(WeightFormat::F32.with_group(64).unwrap(), WeightFormat::F32);
    }
}
