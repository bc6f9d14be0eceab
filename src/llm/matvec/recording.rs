//! Matrices that record what they are fed: the input statistics a calibrated quantizer needs.
//!
//! [`RecordingBuilder`] builds f32 matrices ([`F32Matrix`]) that, besides multiplying, add
//! `Σ x·xᵀ` over every input vector `x` into a shared [`InputStatistics`], keyed by the
//! tensor name the loader gives the matrix. A model loaded with it and run over a calibration
//! text leaves, for every matrix, the second-moment matrix of its inputs: what GPTQ's error
//! compensation ([`super::gptq`]) weighs the rounding errors with. The output head is not
//! recorded (it stays at 8 bits).

use super::dot::dot_block;
use super::{F32Matrix, MatVec, MatVecBuilder, MatrixRole};
use crate::llm::parallel::for_each_chunk_mut;
use crate::llm::LlmError;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// `Σ x·xᵀ` over the inputs one matrix saw.
#[derive(Clone, Debug, PartialEq)]
pub struct SecondMoments {
    pub cols: usize,
    /// Input vectors summed.
    pub samples: usize,
    /// `cols × cols`, row-major, symmetric.
    pub sums: Vec<f32>,
}

impl SecondMoments {
    fn new(cols: usize) -> SecondMoments {
        SecondMoments {
            cols,
            samples: 0,
            sums: vec![0.0; cols * cols],
        }
    }

    /// Adds `Σ_t x_t·x_tᵀ` of the `n` rows of `x`, split over the current team.
    fn add(&mut self, x: &[f32], n: usize) {
        let cols = self.cols;
        // Column-major copy: row i of `xt` is feature i over the n inputs.
        let mut xt = vec![0.0f32; cols * n];
        for (t, row) in x.chunks_exact(cols).enumerate() {
            for (i, &v) in row.iter().enumerate() {
                xt[i * n + t] = v;
            }
        }
        // Upper triangle in bands of rows: band rows i.. against features i.. only.
        const BAND: usize = 32;
        let mut products = vec![0.0f32; cols * cols];
        for_each_chunk_mut(&mut products, BAND * cols, &|at, out| {
            let first = at.first_unit * BAND;
            let rows = out.len() / cols;
            for band in (0..rows).step_by(BAND) {
                let start = first + band;
                let count = BAND.min(rows - band);
                let width = cols - start;
                let mut block = vec![0.0f32; count * width];
                dot_block(
                    &xt[start * n..(start + count) * n],
                    n,
                    &xt[start * n..],
                    width,
                    &mut block,
                );
                for r in 0..count {
                    out[(band + r) * cols + start..(band + r + 1) * cols]
                        .copy_from_slice(&block[r * width..(r + 1) * width]);
                }
            }
        });
        for i in 0..cols {
            for j in i..cols {
                let v = products[i * cols + j];
                self.sums[i * cols + j] += v;
                if j != i {
                    self.sums[j * cols + i] += v;
                }
            }
        }
        self.samples += n;
    }
}

/// The input statistics of every recorded matrix, by tensor name.
pub type InputStatistics = BTreeMap<String, SecondMoments>;

/// Builds recording f32 matrices; [`RecordingBuilder::statistics`] takes what they saw.
#[derive(Clone, Debug, Default)]
pub struct RecordingBuilder {
    shared: Arc<Mutex<InputStatistics>>,
}

impl RecordingBuilder {
    pub fn new() -> RecordingBuilder {
        RecordingBuilder::default()
    }

    /// What the matrices built so far have recorded.
    pub fn statistics(&self) -> InputStatistics {
        self.shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

struct RecordingMatrix {
    tensor: String,
    inner: F32Matrix,
    shared: Arc<Mutex<InputStatistics>>,
}

impl RecordingMatrix {
    fn record(&self, x: &[f32], n: usize) {
        let mut local = SecondMoments::new(self.inner.cols());
        local.add(x, n);
        let mut all = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        let entry = all
            .entry(self.tensor.clone())
            .or_insert_with(|| SecondMoments::new(local.cols));
        for (a, b) in entry.sums.iter_mut().zip(&local.sums) {
            *a += b;
        }
        entry.samples += local.samples;
    }
}

impl MatVec for RecordingMatrix {
    fn rows(&self) -> usize {
        self.inner.rows()
    }

    fn cols(&self) -> usize {
        self.inner.cols()
    }

    fn gemv(&self, x: &[f32], y: &mut [f32]) -> Result<(), LlmError> {
        self.record(x, 1);
        self.inner.gemv(x, y)
    }

    fn gemm(&self, x: &[f32], n: usize, y: &mut [f32]) -> Result<(), LlmError> {
        self.record(x, n);
        self.inner.gemm(x, n, y)
    }

    fn format(&self) -> String {
        "f32 (recording inputs)".into()
    }

    fn storage_bytes(&self) -> usize {
        self.inner.storage_bytes()
    }
}

impl MatVecBuilder for RecordingBuilder {
    fn build(
        &self,
        tensor: &str,
        role: MatrixRole,
        rows: usize,
        cols: usize,
        weights: Vec<f32>,
    ) -> Result<Box<dyn MatVec>, LlmError> {
        let inner = F32Matrix::new(rows, cols, weights).ok_or_else(|| {
            LlmError::Unsupported(format!("tensor '{tensor}': not a {rows}×{cols} matrix"))
        })?;
        if role == MatrixRole::Output {
            return Ok(Box::new(inner));
        }
        Ok(Box::new(RecordingMatrix {
            tensor: tensor.to_string(),
            inner,
            shared: self.shared.clone(),
        }))
    }

    fn format(&self) -> String {
        "f32 (recording inputs)".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::parallel::ThreadTeam;

    #[test]
    fn records_the_sum_of_outer_products_of_the_inputs() {
        let (rows, cols, n) = (3, 70, 5);
        let builder = RecordingBuilder::new();
        let m = builder
            .build("w", MatrixRole::Ffn, rows, cols, vec![0.5; rows * cols])
            .unwrap();
        let x: Vec<f32> = (0..n * cols)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 8.0)
            .collect();
        let team = ThreadTeam::new(2);
        team.install(|| {
            m.gemm(&x, n, &mut vec![0.0; n * rows]).unwrap();
            m.gemv(&x[..cols], &mut [0.0; 3]).unwrap();
        });
        let stats = builder.statistics();
        let moments = &stats["w"];
        assert_eq!((moments.cols, moments.samples), (cols, n + 1));
        for i in 0..cols {
            for j in 0..cols {
                let want: f64 = (0..n)
                    .map(|t| x[t * cols + i] as f64 * x[t * cols + j] as f64)
                    .sum::<f64>()
                    + x[i] as f64 * x[j] as f64;
                let got = moments.sums[i * cols + j] as f64;
                assert!((got - want).abs() < 1e-3, "({i}, {j}): {got} vs {want}");
            }
        }
        let head = builder
            .build("o", MatrixRole::Output, 2, cols, vec![0.0; 2 * cols])
            .unwrap();
        head.gemv(&x[..cols], &mut [0.0; 2]).unwrap();
        assert!(!builder.statistics().contains_key("o"));
    }
}
