//! Calibration: the input statistics of every matrix, from the f32 model run over a text that
//! is not the evaluation text, for the calibrated quantizer ([`Requantizer::Gptq`]).
//!
//! The text is the Gospel of Matthew, chapters 1–7, King James Version
//! (`data-public/kjv-matthew-1-7.txt`, public domain, provenance in `data-public/README.md`);
//! the evaluation text of `docs/real-model.md` is Genesis 1–12, which shares no verse with it.
//! Its first [`CALIBRATION_TOKENS`] tokens run in windows of [`CALIBRATION_WINDOW`], each from
//! an empty cache, through the f32 model with recording matrices ([`RecordingBuilder`]).
//!
//! [`Requantizer::Gptq`]: crate::llm::matvec::Requantizer::Gptq

use crate::llm::gguf::GgufFile;
use crate::llm::matvec::{InputStatistics, RecordingBuilder};
use crate::llm::model::LlamaModel;
use crate::llm::tokenizer::Tokenizer;
use crate::llm::LlmError;

/// Matthew 1–7 (KJV), one verse per line.
pub const CALIBRATION_TEXT: &str = include_str!("../../data-public/kjv-matthew-1-7.txt");

/// Tokens of the calibration text that are run.
pub const CALIBRATION_TOKENS: usize = 2048;

/// Tokens per window (each from an empty cache), as in the perplexity evaluation.
pub const CALIBRATION_WINDOW: usize = 512;

/// Runs the f32 model of `file` over the calibration text and returns every matrix's input
/// second moments, by tensor name. Work is split over the current thread team.
pub fn collect(file: &GgufFile, tokenizer: &Tokenizer) -> Result<InputStatistics, LlmError> {
    let builder = RecordingBuilder::new();
    let model = LlamaModel::load(file, &builder)?;
    let mut tokens = tokenizer.encode(CALIBRATION_TEXT)?;
    tokens.truncate(CALIBRATION_TOKENS);
    for window in tokens.chunks(CALIBRATION_WINDOW) {
        let mut cache = model.new_cache(window.len());
        model.forward(window, &mut cache)?;
    }
    Ok(builder.statistics())
}
