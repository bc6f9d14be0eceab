//! Reference kernels: dequantize to f32 and multiply. They are the "dequantize-then-multiply"
//! baseline of the benchmarks and the yardstick of the tests.

use super::error::KernelError;
use super::quantize::QuantizedMatrix;

/// Plain f32 GEMV on a row-major `rows × cols` matrix, eight partial sums per row so the
/// compiler vectorizes it. Rows are split over `threads` threads on rayon's current pool.
pub fn gemv_f32(
    weights: &[f32],
    rows: usize,
    cols: usize,
    x: &[f32],
    y: &mut [f32],
    threads: usize,
) -> Result<(), KernelError> {
    let expect = |what, expected: usize, actual: usize| {
        if expected == actual {
            Ok(())
        } else {
            Err(KernelError::ShapeMismatch {
                what,
                expected,
                actual,
            })
        }
    };
    expect("f32 weights (rows × cols)", rows * cols, weights.len())?;
    expect("activation length vs columns", cols, x.len())?;
    expect("output length vs rows", rows, y.len())?;
    if threads == 0 {
        return Err(KernelError::ZeroThreads);
    }
    if cols == 0 {
        y.iter_mut().for_each(|v| *v = 0.0);
        return Ok(());
    }
    let rows_per_part = rows.div_ceil(threads).max(1);
    if threads == 1 {
        dot_rows(weights, cols, x, y);
        return Ok(());
    }
    rayon::scope(|scope| {
        for (w, out) in weights
            .chunks(rows_per_part * cols)
            .zip(y.chunks_mut(rows_per_part))
        {
            scope.spawn(move |_| dot_rows(w, cols, x, out));
        }
    });
    Ok(())
}

fn dot_rows(weights: &[f32], cols: usize, x: &[f32], y: &mut [f32]) {
    for (row, out) in weights.chunks_exact(cols).zip(y.iter_mut()) {
        let mut partial = [0.0f32; 8];
        let mut row_chunks = row.chunks_exact(8);
        let mut x_chunks = x.chunks_exact(8);
        for (w8, x8) in (&mut row_chunks).zip(&mut x_chunks) {
            // Plain multiply and add (not `mul_add`, which is a libm call on targets built
            // without FMA) so the loop vectorizes on any x86-64 build.
            for i in 0..8 {
                partial[i] += w8[i] * x8[i];
            }
        }
        let mut sum: f32 = partial.iter().sum();
        for (w, a) in row_chunks.remainder().iter().zip(x_chunks.remainder()) {
            sum += w * a;
        }
        *out = sum;
    }
}

/// Dequantizes `matrix` one row at a time into f32 and multiplies (single thread).
pub fn gemv_dequantized(
    matrix: &QuantizedMatrix,
    x: &[f32],
    y: &mut [f32],
) -> Result<(), KernelError> {
    if x.len() != matrix.cols() {
        return Err(KernelError::ShapeMismatch {
            what: "reference GEMV: activation length vs matrix columns",
            expected: matrix.cols(),
            actual: x.len(),
        });
    }
    if y.len() != matrix.rows() {
        return Err(KernelError::ShapeMismatch {
            what: "reference GEMV: output length vs matrix rows",
            expected: matrix.rows(),
            actual: y.len(),
        });
    }
    let mut row_weights = vec![0.0f32; matrix.cols()];
    for (row, out) in y.iter_mut().enumerate() {
        for (col, w) in row_weights.iter_mut().enumerate() {
            *w = matrix.weight(row, col);
        }
        dot_rows(&row_weights, matrix.cols(), x, std::slice::from_mut(out));
    }
    Ok(())
}

/// The exact product of the quantized weights and `x`, in f64 (for tests).
pub fn gemv_f64(matrix: &QuantizedMatrix, x: &[f32]) -> Vec<f64> {
    (0..matrix.rows())
        .map(|row| {
            (0..matrix.cols())
                .map(|col| matrix.weight_f64(row, col) * x[col] as f64)
                .sum()
        })
        .collect()
}
