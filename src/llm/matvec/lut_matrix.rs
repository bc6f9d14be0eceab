//! Low-bit matrices on the LUT kernels ([`crate::kernels`], T-MAC's method).
//!
//! The builder requantizes each dequantized matrix per group (min/max round-to-nearest, fp16
//! scale and centre per group of 32 or 64 weights) and packs it into the kernels' tile layout.
//! A decode step (one vector) builds the activation's lookup tables and runs the lookup kernel
//! over the matrix's row tiles. A prompt (several vectors) quantizes each activation vector to
//! int8 instead and runs [`gemm_q8`], which turns each block of codes back into bytes once and
//! multiplies it with every vector by 8-bit dot products: with many vectors per weight, dot
//! products beat per-vector lookups (the two agree to their int8 rounding, not bit for bit).
//!
//! Threads: decode splits the row tiles over the current team, each thread running the kernel
//! on its own contiguous run of tiles (the layout is tile-major, so a run of tiles is a
//! contiguous slice of the payload). Prefill splits the vectors: each thread runs the GEMM
//! kernel over the whole matrix for its share of the tokens and writes its own rows of the
//! output. Either way every output value is computed by one kernel call whose arithmetic does
//! not depend on the split, so results do not depend on the thread count.

use super::dot_matrix::quantize_rows;
use super::requantize::quantize_refined;
use super::{quantize_gptq, DotMatrix, InputStatistics, MatVec, MatVecBuilder, MatrixRole};
use crate::kernels::{
    gemm, gemm_q8, ActivationTable, GroupSize, KernelError, KernelOptions, PackedMatrix,
    PackedShape, PackedView, Q8Activations, QuantizedMatrix, WeightBits, TILE_ROWS,
};
use crate::llm::parallel::for_each_chunk_mut;
use crate::llm::LlmError;
use std::cell::RefCell;
use std::sync::{Arc, Mutex};

/// How the builder picks each group's codes, scale and centre.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requantizer {
    /// The group's min..max onto the codes, round to nearest (the kernels' quantizer).
    MinMax,
    /// Least-squares refinement of scale and centre ([`super::quantize_refined`]).
    Refined,
    /// GPTQ's error compensation with the inputs' second moments from a calibration text
    /// ([`super::quantize_gptq`]; the builder needs [`LutBuilder::with_statistics`]); matrices
    /// without statistics (the output head) get [`Requantizer::Refined`] below 4 bits and
    /// min/max at 4 and 8.
    Gptq,
}

impl Requantizer {
    /// The default for a bit width: min/max at 4 and 8 bits (exact or near-exact for Q4_1 and
    /// Q8_0 sources at group 32), refined at 3 bits and below, where min/max loses most.
    pub fn default_for(bits: WeightBits) -> Requantizer {
        if bits.bits() <= 3 {
            Requantizer::Refined
        } else {
            Requantizer::MinMax
        }
    }
}

/// Which kernel runs the matrices that end up at 8 bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EightBitKernel {
    /// Byte codes times int8 activations ([`DotMatrix`]; `vpdpbusd` with AVX-512 VNNI): eight
    /// bit-planes of table lookups cost several times one 8-bit dot product.
    #[default]
    Dot,
    /// The LUT kernels' bit-serial path with eight planes ([`LutMatrix`]).
    Lut,
}

/// Builds [`LutMatrix`]es at one bit width and group size; the output head may get its own
/// bit width ([`LutBuilder::with_output_bits`]). Matrices at 8 bits are [`DotMatrix`]es unless
/// [`LutBuilder::with_eight_bit_kernel`] says otherwise.
#[derive(Clone, Debug)]
pub struct LutBuilder {
    bits: WeightBits,
    group: GroupSize,
    output_bits: WeightBits,
    requantizer: Requantizer,
    eight_bit: EightBitKernel,
    /// Input statistics by tensor name, for [`Requantizer::Gptq`].
    statistics: Option<Arc<InputStatistics>>,
}

impl LutBuilder {
    /// Every matrix at `bits` with one scale and centre per `group` weights of a row, with the
    /// default requantizer for `bits`.
    pub fn new(bits: WeightBits, group: GroupSize) -> LutBuilder {
        LutBuilder {
            bits,
            group,
            output_bits: bits,
            requantizer: Requantizer::default_for(bits),
            eight_bit: EightBitKernel::default(),
            statistics: None,
        }
    }

    /// The calibration statistics [`Requantizer::Gptq`] quantizes with.
    pub fn with_statistics(self, statistics: Arc<InputStatistics>) -> LutBuilder {
        LutBuilder {
            statistics: Some(statistics),
            ..self
        }
    }

    /// Another kernel for the matrices at 8 bits.
    pub fn with_eight_bit_kernel(self, eight_bit: EightBitKernel) -> LutBuilder {
        LutBuilder { eight_bit, ..self }
    }

    /// Another requantizer for every matrix.
    pub fn with_requantizer(self, requantizer: Requantizer) -> LutBuilder {
        LutBuilder {
            requantizer,
            ..self
        }
    }

    /// The output head (logits) at `bits` instead.
    pub fn with_output_bits(self, bits: WeightBits) -> LutBuilder {
        LutBuilder {
            output_bits: bits,
            ..self
        }
    }

    pub fn bits(&self) -> WeightBits {
        self.bits
    }

    pub fn group(&self) -> GroupSize {
        self.group
    }

    pub fn output_bits(&self) -> WeightBits {
        self.output_bits
    }
}

impl MatVecBuilder for LutBuilder {
    fn build(
        &self,
        tensor: &str,
        role: MatrixRole,
        rows: usize,
        cols: usize,
        weights: Vec<f32>,
    ) -> Result<Box<dyn MatVec>, LlmError> {
        let bits = match role {
            MatrixRole::Output => self.output_bits,
            MatrixRole::Attention | MatrixRole::Ffn => self.bits,
        };
        let moments = match self.requantizer {
            Requantizer::Gptq if role != MatrixRole::Output => {
                let statistics = self.statistics.as_ref().ok_or_else(|| {
                    LlmError::Input(format!(
                        "tensor '{tensor}': GPTQ quantization needs calibration statistics"
                    ))
                })?;
                Some(statistics.get(tensor).ok_or_else(|| {
                    LlmError::Input(format!(
                        "tensor '{tensor}': no calibration statistics for it"
                    ))
                })?)
            }
            _ => None,
        };
        let requantizer = match (self.requantizer, moments) {
            (Requantizer::Gptq, None) if bits.bits() <= 3 => Requantizer::Refined,
            (Requantizer::Gptq, None) => Requantizer::MinMax,
            (chosen, _) => chosen,
        };
        let quantized = match (requantizer, moments) {
            (Requantizer::Gptq, Some(moments)) => {
                quantize_gptq(&weights, rows, cols, bits, self.group, moments)
            }
            (Requantizer::MinMax, _) | (Requantizer::Gptq, None) => {
                QuantizedMatrix::quantize_min_max(&weights, rows, cols, bits, self.group)
            }
            (Requantizer::Refined, _) => quantize_refined(&weights, rows, cols, bits, self.group),
        }
        .map_err(|e| LlmError::Unsupported(format!("tensor '{tensor}': {e}")))?;
        if bits == WeightBits::B8 && self.eight_bit == EightBitKernel::Dot {
            return Ok(Box::new(DotMatrix::new(tensor, &quantized)));
        }
        Ok(Box::new(LutMatrix {
            tensor: tensor.to_string(),
            packed: PackedMatrix::pack(&quantized),
        }))
    }

    fn format(&self) -> String {
        let mut name = matrix_format(self.bits, self.group, self.eight_bit);
        if self.output_bits != self.bits {
            name += &format!(", output int{}", self.output_bits.bits());
        }
        if self.requantizer != Requantizer::default_for(self.bits) {
            name += match self.requantizer {
                Requantizer::MinMax => ", min/max",
                Requantizer::Refined => ", refined",
                Requantizer::Gptq => ", gptq",
            };
        }
        name
    }
}

fn format_name(bits: WeightBits, group: GroupSize) -> String {
    format!("lut-int{}-g{}", bits.bits(), group.get())
}

/// The name of the format a matrix at `bits` gets: `int8-g32` for the dot-product format,
/// `lut-int4-g32` for the lookup one.
fn matrix_format(bits: WeightBits, group: GroupSize, eight_bit: EightBitKernel) -> String {
    if bits == WeightBits::B8 && eight_bit == EightBitKernel::Dot {
        format!("int8-g{}", group.get())
    } else {
        format_name(bits, group)
    }
}

/// A packed low-bit matrix run by the LUT kernels.
#[derive(Clone, Debug)]
pub struct LutMatrix {
    /// The GGUF tensor(s) it came from, for error messages.
    tensor: String,
    packed: PackedMatrix,
}

thread_local! {
    /// Activation tables reused between calls on this thread, so a decode step allocates none.
    static TABLES: RefCell<Vec<ActivationTable>> = const { RefCell::new(Vec::new()) };
    /// Int8 activations of a prompt, reused between calls on this thread.
    static Q8_ROWS: RefCell<Vec<Q8Activations>> = const { RefCell::new(Vec::new()) };
}

impl LutMatrix {
    pub fn packed(&self) -> &PackedMatrix {
        &self.packed
    }

    fn error(&self, e: KernelError) -> LlmError {
        LlmError::Input(format!("matrix '{}': {e}", self.tensor))
    }

    /// `y = W·x` for an activation whose tables are already built (shared between matrices
    /// that read the same vector), its row tiles split over the current team. The table's
    /// group size must divide the matrix's.
    pub fn gemv_table(&self, table: &ActivationTable, y: &mut [f32]) -> Result<(), LlmError> {
        let shape = self.packed.shape();
        let tile_bytes = shape.tile_bytes();
        let payload = self.packed.payload();
        let failure: Mutex<Option<KernelError>> = Mutex::new(None);
        for_each_chunk_mut(y, TILE_ROWS, &|at, y_part| {
            let first_tile = at.first_unit;
            let tiles = y_part.len().div_ceil(TILE_ROWS);
            let part_shape = PackedShape {
                rows: y_part.len(),
                ..shape
            };
            let bytes = &payload[first_tile * tile_bytes..(first_tile + tiles) * tile_bytes];
            // The GEMM kernel with one vector, not `gemv`: it streams one tile at a time, and
            // on weights that come from DRAM (a decode step reads ~100 MB, far more than the
            // caches) that ran 2.3× faster than `gemv`'s two-tiles-at-once pass at 4 bits
            // (29 vs 67 µs for gate/up, `docs/real-model.md`), while costing ~6 % when hot.
            let result = PackedView::from_payload(part_shape, bytes).and_then(|view| {
                gemm(
                    &view,
                    std::slice::from_ref(table),
                    y_part,
                    KernelOptions::threads(1),
                )
            });
            if let Err(e) = result {
                *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            }
        });
        match failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(self.error(e)),
            None => Ok(()),
        }
    }

    /// `Y = X·Wᵀ` for int8-quantized vectors (a prompt): `y` is `xs.len() × rows`, the
    /// vectors split over the current team. The kernel turns each block of codes back into
    /// bytes once and runs 8-bit dot products against every vector ([`gemm_q8`]).
    pub fn gemm_q8(&self, xs: &[Q8Activations], y: &mut [f32]) -> Result<(), LlmError> {
        let rows = self.packed.shape().rows;
        let view = self.packed.view();
        let failure: Mutex<Option<KernelError>> = Mutex::new(None);
        for_each_chunk_mut(y, rows, &|at, y_part| {
            let first = at.first_unit;
            let count = y_part.len() / rows;
            let result = gemm_q8(
                &view,
                &xs[first..first + count],
                y_part,
                KernelOptions::threads(1),
            );
            if let Err(e) = result {
                *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            }
        });
        match failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(self.error(e)),
            None => Ok(()),
        }
    }

    /// `Y = X·Wᵀ` for vectors whose tables are already built: `y` is `tables.len() × rows`.
    pub fn gemm_tables(&self, tables: &[ActivationTable], y: &mut [f32]) -> Result<(), LlmError> {
        let rows = self.packed.shape().rows;
        let view = self.packed.view();
        let failure: Mutex<Option<KernelError>> = Mutex::new(None);
        for_each_chunk_mut(y, rows, &|at, y_part| {
            let first = at.first_unit;
            let count = y_part.len() / rows;
            let result = gemm(
                &view,
                &tables[first..first + count],
                y_part,
                KernelOptions::threads(1),
            );
            if let Err(e) = result {
                *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            }
        });
        match failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(self.error(e)),
            None => Ok(()),
        }
    }
}

/// Builds the tables of the `n` rows of `x` (each `cols` wide) into `tables`, reusing their
/// buffers, split over the current team.
pub(crate) fn build_tables(
    x: &[f32],
    cols: usize,
    group: GroupSize,
    tables: &mut Vec<ActivationTable>,
) -> Result<(), KernelError> {
    let n = x.len() / cols;
    tables.truncate(n);
    for table in tables.iter_mut() {
        if table.group() != group {
            *table = ActivationTable::empty(group);
        }
    }
    tables.resize_with(n, || ActivationTable::empty(group));
    let failure: Mutex<Option<KernelError>> = Mutex::new(None);
    for_each_chunk_mut(tables, 1, &|at, chunk| {
        let first = at.first_unit;
        for (i, table) in chunk.iter_mut().enumerate() {
            let row = first + i;
            if let Err(e) = table.rebuild(&x[row * cols..(row + 1) * cols]) {
                *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            }
        }
    });
    match failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

impl MatVec for LutMatrix {
    fn rows(&self) -> usize {
        self.packed.shape().rows
    }

    fn cols(&self) -> usize {
        self.packed.shape().cols
    }

    fn gemv(&self, x: &[f32], y: &mut [f32]) -> Result<(), LlmError> {
        self.gemm(x, 1, y)
    }

    fn gemm(&self, x: &[f32], n: usize, y: &mut [f32]) -> Result<(), LlmError> {
        let shape = self.packed.shape();
        assert_eq!(x.len(), n * shape.cols, "gemm input shape");
        assert_eq!(y.len(), n * shape.rows, "gemm output shape");
        if n > 1 {
            // A prompt: int8 activations and dot products (see `gemm_q8`).
            return Q8_ROWS.with(|cell| {
                let mut xs = cell.borrow_mut();
                quantize_rows(x, shape.cols, &mut xs).map_err(|e| self.error(e))?;
                self.gemm_q8(&xs[..n], y)
            });
        }
        TABLES.with(|cell| {
            let mut tables = cell.borrow_mut();
            build_tables(x, shape.cols, shape.group, &mut tables).map_err(|e| self.error(e))?;
            self.gemv_table(&tables[0], y)
        })
    }

    fn format(&self) -> String {
        let shape = self.packed.shape();
        format_name(shape.bits, shape.group)
    }

    fn storage_bytes(&self) -> usize {
        self.packed.payload().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::gemv;
    use crate::llm::matvec::F32Matrix;
    use crate::llm::parallel::ThreadTeam;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn weights(rows: usize, cols: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..rows * cols).map(|_| rng.gen_range(-1.0..1.0)).collect()
    }

    #[test]
    fn splits_equal_the_whole_matrix_kernel_for_any_thread_count() {
        // 100 rows: three full tiles and a partial one, so a split cuts inside the matrix.
        let (rows, cols, n) = (100, 128, 3);
        let w = weights(rows, cols, 1);
        let x: Vec<f32> = (0..n * cols)
            .map(|i| ((i * 13 % 29) as f32 - 14.0) / 9.0)
            .collect();
        let lut = LutMatrix {
            tensor: "w".into(),
            packed: PackedMatrix::pack(
                &QuantizedMatrix::quantize_min_max(&w, rows, cols, WeightBits::B8, GroupSize::G32)
                    .unwrap(),
            ),
        };
        // The kernels on the whole matrix: what every split must give (the lookup GEMV one
        // vector at a time for decode, the int8 GEMM of all vectors for a prompt).
        let mut want = vec![0.0; n * rows];
        for (input, output) in x.chunks_exact(cols).zip(want.chunks_exact_mut(rows)) {
            let table = ActivationTable::build(input, GroupSize::G32).unwrap();
            gemv(
                &lut.packed.view(),
                &table,
                output,
                KernelOptions::threads(1),
            )
            .unwrap();
        }
        let xs: Vec<Q8Activations> = x
            .chunks_exact(cols)
            .map(|input| Q8Activations::build(input).unwrap())
            .collect();
        let mut want_batch = vec![0.0; n * rows];
        gemm_q8(
            &lut.packed.view(),
            &xs,
            &mut want_batch,
            KernelOptions::threads(1),
        )
        .unwrap();
        for threads in [1, 2, 3] {
            let team = ThreadTeam::new(threads);
            let (batch, single) = team.install(|| {
                let mut batch = vec![0.0; n * rows];
                lut.gemm(&x, n, &mut batch).unwrap();
                let mut single = vec![0.0; rows];
                lut.gemv(&x[..cols], &mut single).unwrap();
                (batch, single)
            });
            assert_eq!(batch, want_batch, "gemm on {threads} threads");
            assert_eq!(single, want[..rows], "gemv on {threads} threads");
        }
        // And both are the product: 8-bit weights with int8 tables or int8 activations stay
        // within 2 % (relative L2) of the f32 product here.
        let reference = F32Matrix::new(rows, cols, w).unwrap();
        let mut exact = vec![0.0; n * rows];
        reference.gemm(&x, n, &mut exact).unwrap();
        for got in [&want, &want_batch] {
            let error: f32 = got.iter().zip(&exact).map(|(a, b)| (a - b).powi(2)).sum();
            let norm: f32 = exact.iter().map(|b| b * b).sum();
            assert!(
                (error / norm).sqrt() < 0.02,
                "relative error {}",
                (error / norm).sqrt()
            );
        }
        assert_eq!(lut.format(), "lut-int8-g32");
        assert_eq!(lut.rows(), rows);
    }

    #[test]
    fn the_output_head_gets_its_own_bit_width_and_8_bits_the_dot_kernel() {
        let builder =
            LutBuilder::new(WeightBits::B2, GroupSize::G64).with_output_bits(WeightBits::B8);
        let w = weights(32, 64, 2);
        let ffn = builder
            .build("f", MatrixRole::Ffn, 32, 64, w.clone())
            .unwrap();
        let out = builder.build("o", MatrixRole::Output, 32, 64, w).unwrap();
        assert_eq!(ffn.format(), "lut-int2-g64");
        assert_eq!(out.format(), "int8-g64");
        assert_eq!(builder.format(), "lut-int2-g64, output int8");
        let lut8 = builder.with_eight_bit_kernel(EightBitKernel::Lut);
        let w = weights(32, 64, 2);
        assert_eq!(
            lut8.build("o", MatrixRole::Output, 32, 64, w)
                .unwrap()
                .format(),
            "lut-int8-g64"
        );
    }

    #[test]
    fn bad_shapes_and_activations_are_errors_naming_the_tensor() {
        let builder = LutBuilder::new(WeightBits::B4, GroupSize::G64);
        let error = builder
            .build(
                "blk.0.ffn_down.weight",
                MatrixRole::Ffn,
                2,
                48,
                vec![0.0; 96],
            )
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("blk.0.ffn_down.weight"), "{error}");
        let m = builder
            .build(
                "blk.1.attn_qkv",
                MatrixRole::Attention,
                2,
                64,
                weights(2, 64, 3),
            )
            .unwrap();
        let mut x = vec![0.5f32; 64];
        x[7] = f32::NAN;
        let error = m.gemv(&x, &mut [0.0; 2]).unwrap_err().to_string();
        assert!(error.contains("blk.1.attn_qkv"), "{error}");
    }
}
