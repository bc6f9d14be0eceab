//! The model's tensors, loaded from GGUF and converted by a [`MatVecBuilder`].

use super::config::LlamaConfig;
use crate::llm::gguf::GgufFile;
use crate::llm::matvec::{MatVec, MatVecBuilder, MatrixRole};
use crate::llm::LlmError;
use rayon::prelude::*;

/// One transformer block.
///
/// Matrices that read the same activation vector are fused into one (their rows stacked), so a
/// decode step runs one kernel call per input vector and a low-bit format builds that vector's
/// lookup tables once: Q, K and V read the attention norm's output, gate and up read the FFN
/// norm's. Stacking rows changes neither any row's values nor its quantization (groups run
/// along a row).
pub struct LayerWeights {
    pub attn_norm: Vec<f32>,
    /// `(q_width + 2·kv_width) × hidden`: rows `0..q_width` are Q, then K, then V.
    pub attn_qkv: Box<dyn MatVec>,
    /// `hidden × q_width`.
    pub attn_output: Box<dyn MatVec>,
    pub ffn_norm: Vec<f32>,
    /// `2·ffn × hidden`: row i is FFN neuron i's gate weights, row `ffn + i` its up weights.
    pub ffn_gate_up: Box<dyn MatVec>,
    /// `hidden × ffn`: column i is FFN neuron i's down weights.
    pub ffn_down: Box<dyn MatVec>,
}

/// All weights of a Llama model.
pub struct LlamaWeights {
    /// `vocab × hidden`, f32 (an embedding lookup reads one row, so it stays unpacked).
    pub token_embedding: Vec<f32>,
    pub layers: Vec<LayerWeights>,
    pub output_norm: Vec<f32>,
    /// `vocab × hidden`.
    pub output: Box<dyn MatVec>,
    /// True when the file has no `output.weight` and the output reuses the token embedding.
    pub output_is_tied: bool,
}

impl LlamaWeights {
    pub fn load(
        file: &GgufFile,
        config: &LlamaConfig,
        builder: &dyn MatVecBuilder,
    ) -> Result<LlamaWeights, LlmError> {
        let hidden = config.hidden_size;
        let token_embedding = dequantized(file, "token_embd.weight", &[hidden, config.vocab_size])?;
        let layers = (0..config.layer_count)
            .into_par_iter()
            .map(|layer| load_layer(file, config, builder, layer))
            .collect::<Result<Vec<_>, _>>()?;
        let output_norm = dequantized(file, "output_norm.weight", &[hidden])?;
        let output_is_tied = file.tensor("output.weight").is_none();
        let output = if output_is_tied {
            builder.build(
                "token_embd.weight (tied output)",
                MatrixRole::Output,
                config.vocab_size,
                hidden,
                token_embedding.clone(),
            )?
        } else {
            stacked(
                file,
                builder,
                MatrixRole::Output,
                &[("output.weight".to_string(), config.vocab_size)],
                hidden,
            )?
        };
        Ok(LlamaWeights {
            token_embedding,
            layers,
            output_norm,
            output,
            output_is_tied,
        })
    }

    /// Bytes of all matrices in their runtime format, plus the f32 vectors and embedding.
    pub fn storage_bytes(&self) -> usize {
        let f32_bytes = std::mem::size_of::<f32>();
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                (l.attn_norm.len() + l.ffn_norm.len()) * f32_bytes
                    + [&l.attn_qkv, &l.attn_output, &l.ffn_gate_up, &l.ffn_down]
                        .iter()
                        .map(|m| m.storage_bytes())
                        .sum::<usize>()
            })
            .sum();
        layers
            + (self.token_embedding.len() + self.output_norm.len()) * f32_bytes
            + self.output.storage_bytes()
    }

    /// Weights in the matrices (every block's and the output head): 134.5 M for SmolLM2.
    pub fn matrix_weights(&self) -> usize {
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                [&l.attn_qkv, &l.attn_output, &l.ffn_gate_up, &l.ffn_down]
                    .iter()
                    .map(|m| m.rows() * m.cols())
                    .sum::<usize>()
            })
            .sum();
        layers + self.output.rows() * self.output.cols()
    }

    /// Bytes a decode step reads from the matrices: every block's and the output head's.
    pub fn matrix_bytes(&self) -> usize {
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                [&l.attn_qkv, &l.attn_output, &l.ffn_gate_up, &l.ffn_down]
                    .iter()
                    .map(|m| m.storage_bytes())
                    .sum::<usize>()
            })
            .sum();
        layers + self.output.storage_bytes()
    }
}

fn load_layer(
    file: &GgufFile,
    config: &LlamaConfig,
    builder: &dyn MatVecBuilder,
    layer: usize,
) -> Result<LayerWeights, LlmError> {
    let name = |suffix: &str| format!("blk.{layer}.{suffix}.weight");
    let (hidden, ffn) = (config.hidden_size, config.ffn_size);
    let (q_width, kv_width) = (config.q_width(), config.kv_width());
    let attention = MatrixRole::Attention;
    Ok(LayerWeights {
        attn_norm: dequantized(file, &name("attn_norm"), &[hidden])?,
        attn_qkv: stacked(
            file,
            builder,
            attention,
            &[
                (name("attn_q"), q_width),
                (name("attn_k"), kv_width),
                (name("attn_v"), kv_width),
            ],
            hidden,
        )?,
        attn_output: stacked(
            file,
            builder,
            attention,
            &[(name("attn_output"), hidden)],
            q_width,
        )?,
        ffn_norm: dequantized(file, &name("ffn_norm"), &[hidden])?,
        ffn_gate_up: stacked(
            file,
            builder,
            MatrixRole::Ffn,
            &[(name("ffn_gate"), ffn), (name("ffn_up"), ffn)],
            hidden,
        )?,
        ffn_down: stacked(
            file,
            builder,
            MatrixRole::Ffn,
            &[(name("ffn_down"), hidden)],
            ffn,
        )?,
    })
}

/// A tensor dequantized to f32 after checking its shape (ggml order, contiguous first).
fn dequantized(file: &GgufFile, name: &str, dims: &[usize]) -> Result<Vec<f32>, LlmError> {
    let info = file
        .tensor(name)
        .ok_or_else(|| file.tensor_error(name, "missing"))?;
    let expected: Vec<u64> = dims.iter().map(|&d| d as u64).collect();
    if info.dims != expected {
        return Err(file.tensor_error(
            name,
            format!(
                "shape {:?}, expected {expected:?} from the model metadata",
                info.dims
            ),
        ));
    }
    file.dequantize(name)
}

/// Linear layers' weights with their rows stacked in the order given. GGUF stores each
/// `(name, rows)` as `[cols, rows]`, i.e. `rows × cols` row-major.
fn stacked(
    file: &GgufFile,
    builder: &dyn MatVecBuilder,
    role: MatrixRole,
    parts: &[(String, usize)],
    cols: usize,
) -> Result<Box<dyn MatVec>, LlmError> {
    let rows: usize = parts.iter().map(|(_, rows)| rows).sum();
    let mut weights = Vec::with_capacity(rows * cols);
    for (name, part_rows) in parts {
        weights.extend(dequantized(file, name, &[cols, *part_rows])?);
    }
    let names: Vec<&str> = parts.iter().map(|(name, _)| name.as_str()).collect();
    builder.build(&names.join(" + "), role, rows, cols, weights)
}

/// Stands in for a matrix whose weights live elsewhere (an FFN offloaded to the executor's
/// weight store): the shape stays, the bytes are gone, and any product is an error rather than
/// a silent zero.
pub struct Offloaded {
    rows: usize,
    cols: usize,
}

impl MatVec for Offloaded {
    fn rows(&self) -> usize {
        self.rows
    }
    fn cols(&self) -> usize {
        self.cols
    }
    fn gemv(&self, _x: &[f32], _y: &mut [f32]) -> Result<(), LlmError> {
        Err(self.refuse())
    }
    fn gemm(&self, _x: &[f32], _n: usize, _y: &mut [f32]) -> Result<(), LlmError> {
        Err(self.refuse())
    }
    fn format(&self) -> String {
        "offloaded".into()
    }
    fn storage_bytes(&self) -> usize {
        0
    }
}

impl Offloaded {
    fn refuse(&self) -> LlmError {
        LlmError::Input(format!(
            "this {} x {} matrix is offloaded: its weights are in the executor's store, not in the model",
            self.rows, self.cols
        ))
    }
}

impl LlamaWeights {
    /// Drops every FFN matrix (keeping shapes), for a model whose FFN is computed from
    /// offloaded neuron bundles.
    pub fn offload_ffn(&mut self) {
        for layer in &mut self.layers {
            for m in [&mut layer.ffn_gate_up, &mut layer.ffn_down] {
                let (rows, cols) = (m.rows(), m.cols());
                *m = Box::new(Offloaded { rows, cols });
            }
        }
    }
}
