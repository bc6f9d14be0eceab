//! The matrix-vector abstraction every weight matrix of the model hides behind.
//!
//! The forward pass only ever multiplies activations by weight matrices, so a matrix is "a thing
//! that can do y = W·x (decode) and Y = X·Wᵀ (prefill)". Two formats implement it: the f32
//! reference ([`F32Matrix`], dequantized from the GGUF file), the LUT kernels' packed low-bit
//! matrices ([`LutMatrix`], requantized per group) and, at 8 bits, byte-coded matrices on the
//! dot-product kernels ([`DotMatrix`]), each built by a [`MatVecBuilder`]; the model code is the
//! same for all.
//!
//! Threads: implementations split work over the current [`ThreadTeam`](crate::llm::parallel)
//! (see [`crate::llm::parallel`]); outside a team they run on the calling thread. An
//! implementation must give the same result for any thread count (split over output rows or
//! over input vectors, never over the reduction).

mod dot;
mod dot_matrix;
mod f32_matrix;
mod gptq;
mod lut_matrix;
mod recording;
mod requantize;

pub(crate) use dot::dot_block;
pub use dot_matrix::DotMatrix;
pub use f32_matrix::{F32Builder, F32Matrix};
pub use gptq::quantize_gptq;
pub use lut_matrix::{EightBitKernel, LutBuilder, LutMatrix, Requantizer};
pub use recording::{InputStatistics, RecordingBuilder, SecondMoments};
pub use requantize::quantize_refined;

use crate::llm::LlmError;

/// A weight matrix of `rows` outputs by `cols` inputs.
pub trait MatVec: Send + Sync {
    /// Output features.
    fn rows(&self) -> usize;
    /// Input features.
    fn cols(&self) -> usize;
    /// `y = W·x`, with `x.len() == cols` and `y.len() == rows`. Errors only on inputs the format
    /// cannot represent (a non-finite activation for the LUT tables).
    fn gemv(&self, x: &[f32], y: &mut [f32]) -> Result<(), LlmError>;
    /// `Y = X·Wᵀ` for `n` inputs: `x` is `n × cols` and `y` is `n × rows`, both row-major
    /// (one input or output vector per row).
    fn gemm(&self, x: &[f32], n: usize, y: &mut [f32]) -> Result<(), LlmError>;
    /// The storage format, for reports: "f32", "lut-int4-g32", …
    fn format(&self) -> String;
    /// Bytes the weights occupy in this format.
    fn storage_bytes(&self) -> usize;
}

/// Converts the model's weight matrices into a runtime format.
///
/// The loader dequantizes each matrix from the file to f32 and hands it over; a builder for a
/// low-bit format requantizes it (per group) into its packed layout.
pub trait MatVecBuilder: Sync {
    /// `weights` is `rows × cols`, row-major (one output feature per row). `tensor` names the
    /// GGUF tensor(s) for error messages; `role` says which part of the model the matrix is, so
    /// a format may treat the output head differently.
    fn build(
        &self,
        tensor: &str,
        role: MatrixRole,
        rows: usize,
        cols: usize,
        weights: Vec<f32>,
    ) -> Result<Box<dyn MatVec>, LlmError>;

    /// The format this builder produces, for reports.
    fn format(&self) -> String;
}

/// Which part of the model a matrix belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatrixRole {
    /// Q, K, V (fused) and the attention output projection of a block.
    Attention,
    /// Gate and up (fused) and down projections of a block's FFN.
    Ffn,
    /// The output head (logits), tied to the token embedding in SmolLM2.
    Output,
}
