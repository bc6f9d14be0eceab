//! The real-model runtime: runs an actual GGUF Llama-architecture model (SmolLM2-135M-Instruct
//! first) so that edgesim's kernels, traces and offloading policies can be checked on real
//! weights and real tokens.
//!
//! The pieces, in the order a generation uses them:
//! - [`gguf`]: read the GGUF container and dequantize its tensors.
//! - [`tokenizer`]: GPT-2-style byte-level BPE from the file's vocabulary and merges.
//! - [`chat`]: the ChatML template SmolLM2-Instruct was trained with.
//! - [`matvec`]: the matrix-vector abstraction every weight matrix hides behind, so the f32
//!   reference and the LUT kernels' packed formats run the same model code.
//! - [`model`]: the Llama forward pass with a KV cache, and per-layer FFN activation hooks.
//! - [`parallel`]: the low-overhead thread team the forward pass splits its work over.
//! - [`sampling`]: greedy and seeded temperature sampling.
//! - [`generate`]: the prompt → text loop with streaming and timing.
//! - [`fetch`]: getting the model file into the local cache.
//! - [`format`](mod@format): the `--bits` choice and the builder for each weight format.
//! - [`calibration`]: input statistics from a calibration text, for the GPTQ requantizer.
//! - [`eval`]: perplexity and top-1 agreement, for comparing weight formats.
//! - [`record`]: neuron-activation traces recorded from the FFN activations.
//! - [`LoadedModel`]: weights, tokenizer and chat template of one file, ready to prompt.

pub mod calibration;
pub mod chat;
mod error;
pub mod eval;
pub mod fetch;
pub mod format;
pub mod generate;
pub mod gguf;
mod loaded;
pub mod matvec;
pub mod model;
pub mod parallel;
pub mod record;
pub mod sampling;
pub mod tokenizer;

pub use error::LlmError;
pub use loaded::LoadedModel;
