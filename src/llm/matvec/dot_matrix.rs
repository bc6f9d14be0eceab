//! 8-bit matrices on the dot-product kernels ([`crate::kernels::dot_gemm`]): the same codes,
//! scales and centres as the 8-bit LUT format, one code per byte, multiplied by the
//! activations quantized to int8 per block of 32 (llama.cpp's Q8_0 activations).
//!
//! At 8 bits a table lookup covers one bit-plane, so the LUT kernel does eight lookups per
//! weight where `vpdpbusd` does a quarter of an instruction; at 4 bits and below the lookups
//! are as cheap or cheaper, so only 8-bit matrices use this format.
//!
//! Threads: decode (one vector) splits the row tiles over the current team; prefill splits the
//! vectors. Every output value is computed by one kernel call whose arithmetic does not depend
//! on the split, so results do not depend on the thread count.

use super::MatVec;
use crate::kernels::{
    dot_gemm, ByteMatrix, ByteShape, ByteView, KernelError, KernelOptions, Q8Activations,
    QuantizedMatrix, DOT_TILE_ROWS,
};
use crate::llm::parallel::for_each_chunk_mut;
use crate::llm::LlmError;
use std::cell::RefCell;
use std::sync::Mutex;

/// A byte-coded 8-bit matrix run by the dot-product kernels.
#[derive(Clone, Debug)]
pub struct DotMatrix {
    /// The GGUF tensor(s) it came from, for error messages.
    tensor: String,
    bytes: ByteMatrix,
}

thread_local! {
    /// Quantized activations reused between calls on this thread.
    static ACTIVATIONS: RefCell<Vec<Q8Activations>> = const { RefCell::new(Vec::new()) };
}

impl DotMatrix {
    pub fn new(tensor: &str, quantized: &QuantizedMatrix) -> DotMatrix {
        DotMatrix {
            tensor: tensor.to_string(),
            bytes: ByteMatrix::pack(quantized),
        }
    }

    pub fn bytes(&self) -> &ByteMatrix {
        &self.bytes
    }

    fn error(&self, e: KernelError) -> LlmError {
        LlmError::Input(format!("matrix '{}': {e}", self.tensor))
    }

    /// `y = W·x` for one quantized vector, the row tiles split over the current team.
    pub fn gemv_q8(&self, x: &Q8Activations, y: &mut [f32]) -> Result<(), LlmError> {
        let shape = self.bytes.shape();
        let tile_bytes = shape.tile_bytes();
        let payload = self.bytes.payload();
        let failure: Mutex<Option<KernelError>> = Mutex::new(None);
        for_each_chunk_mut(y, DOT_TILE_ROWS, &|at, y_part| {
            let tiles = y_part.len().div_ceil(DOT_TILE_ROWS);
            let part_shape = ByteShape {
                rows: y_part.len(),
                ..shape
            };
            let bytes = &payload[at.first_unit * tile_bytes..(at.first_unit + tiles) * tile_bytes];
            let result = ByteView::from_payload(part_shape, bytes).and_then(|view| {
                dot_gemm(
                    &view,
                    std::slice::from_ref(x),
                    y_part,
                    KernelOptions::threads(1),
                )
            });
            if let Err(e) = result {
                *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            }
        });
        self.finish(failure)
    }

    /// `Y = X·Wᵀ` for quantized vectors: `y` is `xs.len() × rows`, the vectors split over the
    /// current team.
    pub fn gemm_q8(&self, xs: &[Q8Activations], y: &mut [f32]) -> Result<(), LlmError> {
        let rows = self.bytes.shape().rows;
        let view = self.bytes.view();
        let failure: Mutex<Option<KernelError>> = Mutex::new(None);
        for_each_chunk_mut(y, rows, &|at, y_part| {
            let first = at.first_unit;
            let count = y_part.len() / rows;
            let result = dot_gemm(
                &view,
                &xs[first..first + count],
                y_part,
                KernelOptions::threads(1),
            );
            if let Err(e) = result {
                *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            }
        });
        self.finish(failure)
    }

    fn finish(&self, failure: Mutex<Option<KernelError>>) -> Result<(), LlmError> {
        match failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(self.error(e)),
            None => Ok(()),
        }
    }
}

/// Quantizes the `n` rows of `x` (each `cols` wide) into `out`, reusing its buffers, split
/// over the current team.
pub(crate) fn quantize_rows(
    x: &[f32],
    cols: usize,
    out: &mut Vec<Q8Activations>,
) -> Result<(), KernelError> {
    let n = x.len() / cols;
    out.truncate(n);
    out.resize_with(n, Q8Activations::default);
    let failure: Mutex<Option<KernelError>> = Mutex::new(None);
    for_each_chunk_mut(out, 1, &|at, chunk| {
        for (i, q) in chunk.iter_mut().enumerate() {
            let row = at.first_unit + i;
            if let Err(e) = q.rebuild_with(&x[row * cols..(row + 1) * cols], Default::default()) {
                *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            }
        }
    });
    match failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

impl MatVec for DotMatrix {
    fn rows(&self) -> usize {
        self.bytes.shape().rows
    }

    fn cols(&self) -> usize {
        self.bytes.shape().cols
    }

    fn gemv(&self, x: &[f32], y: &mut [f32]) -> Result<(), LlmError> {
        self.gemm(x, 1, y)
    }

    fn gemm(&self, x: &[f32], n: usize, y: &mut [f32]) -> Result<(), LlmError> {
        let shape = self.bytes.shape();
        assert_eq!(x.len(), n * shape.cols, "gemm input shape");
        assert_eq!(y.len(), n * shape.rows, "gemm output shape");
        ACTIVATIONS.with(|cell| {
            let mut xs = cell.borrow_mut();
            quantize_rows(x, shape.cols, &mut xs).map_err(|e| self.error(e))?;
            if n == 1 {
                self.gemv_q8(&xs[0], y)
            } else {
                self.gemm_q8(&xs[..n], y)
            }
        })
    }

    fn format(&self) -> String {
        let shape = self.bytes.shape();
        format!("int{}-g{}", shape.bits.bits(), shape.group.get())
    }

    fn storage_bytes(&self) -> usize {
        self.bytes.payload().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{dot_gemv, GroupSize, WeightBits};
    use crate::llm::matvec::F32Matrix;
    use crate::llm::parallel::ThreadTeam;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn splits_equal_the_whole_matrix_kernel_and_stay_close_to_f32() {
        // 100 rows: six full tiles of 16 and a partial one, so a split cuts inside the matrix.
        let (rows, cols, n) = (100, 128, 3);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let w: Vec<f32> = (0..rows * cols).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let x: Vec<f32> = (0..n * cols)
            .map(|i| ((i * 13 % 29) as f32 - 14.0) / 9.0)
            .collect();
        let q = QuantizedMatrix::quantize_min_max(&w, rows, cols, WeightBits::B8, GroupSize::G32)
            .unwrap();
        let dot = DotMatrix::new("w", &q);
        let mut want = vec![0.0; n * rows];
        for (input, output) in x.chunks_exact(cols).zip(want.chunks_exact_mut(rows)) {
            let xq = Q8Activations::build(input).unwrap();
            dot_gemv(&dot.bytes.view(), &xq, output, KernelOptions::threads(1)).unwrap();
        }
        for threads in [1, 2, 3] {
            let team = ThreadTeam::new(threads);
            let (batch, single) = team.install(|| {
                let mut batch = vec![0.0; n * rows];
                dot.gemm(&x, n, &mut batch).unwrap();
                let mut single = vec![0.0; rows];
                dot.gemv(&x[..cols], &mut single).unwrap();
                (batch, single)
            });
            assert_eq!(batch, want, "gemm on {threads} threads");
            assert_eq!(single, want[..rows], "gemv on {threads} threads");
        }
        let reference = F32Matrix::new(rows, cols, w).unwrap();
        let mut exact = vec![0.0; n * rows];
        reference.gemm(&x, n, &mut exact).unwrap();
        let error: f32 = want.iter().zip(&exact).map(|(a, b)| (a - b).powi(2)).sum();
        let norm: f32 = exact.iter().map(|b| b * b).sum();
        assert!(
            (error / norm).sqrt() < 0.01,
            "relative error {}",
            (error / norm).sqrt()
        );
        assert_eq!(dot.format(), "int8-g32");
        let mut bad = x[..cols].to_vec();
        bad[5] = f32::INFINITY;
        let error = dot
            .gemv(&bad, &mut vec![0.0; rows])
            .unwrap_err()
            .to_string();
        assert!(error.contains("matrix 'w'"), "{error}");
    }
}
