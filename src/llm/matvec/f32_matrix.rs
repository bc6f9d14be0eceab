//! The f32 reference matrix: weights dequantized from the file, multiplied in f32.
//!
//! It is the quality reference that low-bit formats are measured against, and a fair speed
//! baseline: rows are split over the current thread team, and each thread's rows run the tiled
//! dot kernels of [`super::dot`].

use super::dot::dot_block;
use super::{MatVec, MatVecBuilder, MatrixRole};
use crate::llm::parallel::for_each_chunk_mut;
use crate::llm::LlmError;

/// Rows are handed to threads in multiples of this: the dot kernels work on row quads.
const ROW_UNIT: usize = 4;

#[derive(Clone, Debug)]
pub struct F32Matrix {
    rows: usize,
    cols: usize,
    /// `rows × cols`, row-major.
    weights: Vec<f32>,
}

impl F32Matrix {
    /// `weights` is `rows × cols`, row-major; None if the length does not match.
    pub fn new(rows: usize, cols: usize, weights: Vec<f32>) -> Option<F32Matrix> {
        (rows > 0 && cols > 0 && weights.len() == rows * cols).then_some(F32Matrix {
            rows,
            cols,
            weights,
        })
    }

    pub fn weights(&self) -> &[f32] {
        &self.weights
    }

    /// Row `r` (the weights of output feature `r`).
    pub fn row(&self, r: usize) -> &[f32] {
        &self.weights[r * self.cols..(r + 1) * self.cols]
    }
}

impl MatVec for F32Matrix {
    fn rows(&self) -> usize {
        self.rows
    }

    fn cols(&self) -> usize {
        self.cols
    }

    fn gemv(&self, x: &[f32], y: &mut [f32]) -> Result<(), LlmError> {
        assert_eq!(x.len(), self.cols, "gemv input length");
        assert_eq!(y.len(), self.rows, "gemv output length");
        let cols = self.cols;
        for_each_chunk_mut(y, ROW_UNIT, &|at, y_rows| {
            let first = at.first_unit * ROW_UNIT;
            let w_rows = &self.weights[first * cols..(first + y_rows.len()) * cols];
            dot_block(w_rows, cols, x, 1, y_rows);
        });
        Ok(())
    }

    fn gemm(&self, x: &[f32], n: usize, y: &mut [f32]) -> Result<(), LlmError> {
        assert_eq!(x.len(), n * self.cols, "gemm input shape");
        assert_eq!(y.len(), n * self.rows, "gemm output shape");
        if n == 1 {
            return self.gemv(x, y);
        }
        let cols = self.cols;
        // Each thread writes its rows for all inputs contiguously (row-major by weight row);
        // one transpose at the end puts it in the caller's input-major layout.
        let mut by_row = vec![0.0f32; n * self.rows];
        for_each_chunk_mut(&mut by_row, ROW_UNIT * n, &|at, out_rows| {
            let first = at.first_unit * ROW_UNIT;
            let count = out_rows.len() / n;
            let w_rows = &self.weights[first * cols..(first + count) * cols];
            dot_block(w_rows, cols, x, n, out_rows);
        });
        for (r, row_out) in by_row.chunks_exact(n).enumerate() {
            for (t, &value) in row_out.iter().enumerate() {
                y[t * self.rows + r] = value;
            }
        }
        Ok(())
    }

    fn format(&self) -> String {
        "f32".into()
    }

    fn storage_bytes(&self) -> usize {
        self.weights.len() * std::mem::size_of::<f32>()
    }
}

/// Builds [`F32Matrix`]es: the dequantized weights as they are.
#[derive(Clone, Copy, Debug, Default)]
pub struct F32Builder;

impl MatVecBuilder for F32Builder {
    fn build(
        &self,
        tensor: &str,
        _role: MatrixRole,
        rows: usize,
        cols: usize,
        weights: Vec<f32>,
    ) -> Result<Box<dyn MatVec>, LlmError> {
        let len = weights.len();
        F32Matrix::new(rows, cols, weights)
            .map(|m| Box::new(m) as Box<dyn MatVec>)
            .ok_or_else(|| {
                LlmError::Unsupported(format!(
                    "tensor '{tensor}': {len} weights do not form a {rows}×{cols} matrix"
                ))
            })
    }

    fn format(&self) -> String {
        "f32".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(rows: usize, cols: usize) -> F32Matrix {
        let weights = (0..rows * cols)
            .map(|i| ((i * 29 % 23) as f32 - 11.0) / 16.0)
            .collect();
        F32Matrix::new(rows, cols, weights).unwrap()
    }

    #[test]
    fn gemm_equals_gemv_per_input_bit_for_bit() {
        let m = matrix(77, 40); // more than two row blocks, with a remainder
        let n = 5;
        let x: Vec<f32> = (0..n * 40)
            .map(|i| ((i * 7 % 19) as f32 - 9.0) / 8.0)
            .collect();
        let mut batched = vec![0.0; n * 77];
        m.gemm(&x, n, &mut batched).unwrap();
        for t in 0..n {
            let mut single = vec![0.0; 77];
            m.gemv(&x[t * 40..(t + 1) * 40], &mut single).unwrap();
            assert_eq!(&batched[t * 77..(t + 1) * 77], &single[..], "input {t}");
        }
    }

    #[test]
    fn gemv_matches_naive_and_thread_count_does_not_matter() {
        let m = matrix(100, 33);
        let x: Vec<f32> = (0..33).map(|i| i as f32 / 10.0 - 1.5).collect();
        let run = |threads: usize| {
            let team = crate::llm::parallel::ThreadTeam::new(threads);
            let mut y = vec![0.0; 100];
            team.install(|| m.gemv(&x, &mut y)).unwrap();
            y
        };
        let one = run(1);
        assert_eq!(one, run(3));
        for (r, got) in one.iter().enumerate() {
            let want: f64 = m
                .row(r)
                .iter()
                .zip(&x)
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum();
            assert!((*got as f64 - want).abs() < 1e-4);
        }
    }

    #[test]
    fn builder_rejects_a_wrong_length() {
        let error = F32Builder
            .build("blk.0.ffn_up.weight", MatrixRole::Ffn, 2, 3, vec![0.0; 5])
            .err()
            .unwrap();
        assert!(error.to_string().contains("blk.0.ffn_up.weight"));
    }
}
