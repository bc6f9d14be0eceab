//! The matrix-vector abstraction every weight matrix of the model hides behind.
//!
//! The forward pass only ever multiplies activations by weight matrices, so a matrix is "a thing
//! that can do y = W·x (decode) and Y = X·Wᵀ (prefill)". The f32 reference ([`F32Matrix`],
//! dequantized from the GGUF file) implements it now; the LUT kernels' packed low-bit matrices
//! implement it later, built by their own [`MatVecBuilder`], without any change to the model.
//!
//! Threads: implementations may split work over the current rayon pool; the caller chooses the
//! thread count by running the model inside `ThreadPool::install`. An implementation must give
//! the same result for any thread count (split over output rows, never over the reduction).

mod dot;
mod f32_matrix;

pub(crate) use dot::dot_block;
pub use f32_matrix::{F32Builder, F32Matrix};

use crate::llm::LlmError;

/// A weight matrix of `rows` outputs by `cols` inputs.
pub trait MatVec: Send + Sync {
    /// Output features.
    fn rows(&self) -> usize;
    /// Input features.
    fn cols(&self) -> usize;
    /// `y = W·x`, with `x.len() == cols` and `y.len() == rows`.
    fn gemv(&self, x: &[f32], y: &mut [f32]);
    /// `Y = X·Wᵀ` for `n` inputs: `x` is `n × cols` and `y` is `n × rows`, both row-major
    /// (one input or output vector per row). The default runs `gemv` per input.
    fn gemm(&self, x: &[f32], n: usize, y: &mut [f32]) {
        assert_eq!(x.len(), n * self.cols(), "gemm input shape");
        assert_eq!(y.len(), n * self.rows(), "gemm output shape");
        for (x_row, y_row) in x
            .chunks_exact(self.cols())
            .zip(y.chunks_exact_mut(self.rows()))
        {
            self.gemv(x_row, y_row);
        }
    }
    /// The storage format, for reports: "f32", "lut-int4-g64", …
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
    /// GGUF tensor for error messages.
    fn build(
        &self,
        tensor: &str,
        rows: usize,
        cols: usize,
        weights: Vec<f32>,
    ) -> Result<Box<dyn MatVec>, LlmError>;

    /// The format this builder produces, for reports.
    fn format(&self) -> String;
}
