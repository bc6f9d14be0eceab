//! The shape of a Llama-architecture model, read from GGUF metadata.

use super::ops::RopeLayout;
use crate::llm::gguf::GgufFile;
use crate::llm::LlmError;
use std::fmt;

/// Everything the forward pass needs to know about the model's shape.
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    pub layer_count: usize,
    /// Width of the residual stream (`embedding_length`).
    pub hidden_size: usize,
    /// Width of the FFN intermediate (`feed_forward_length`): the neurons a trace records.
    pub ffn_size: usize,
    pub head_count: usize,
    /// Key/value heads; each serves `head_count / kv_head_count` query heads (grouped-query).
    pub kv_head_count: usize,
    pub head_dim: usize,
    /// Leading dimensions of each head that RoPE rotates (all of them for Llama).
    pub rope_dim: usize,
    pub rope_freq_base: f32,
    pub rms_norm_eps: f32,
    /// Longest sequence the model was trained for.
    pub context_length: usize,
    pub vocab_size: usize,
    /// Which head dimensions RoPE pairs up; GGUF Llama files need [`RopeLayout::Interleaved`].
    pub rope_layout: RopeLayout,
}

/// The only architecture the forward pass implements.
pub const ARCHITECTURE: &str = "llama";

impl LlamaConfig {
    pub fn from_gguf(file: &GgufFile) -> Result<LlamaConfig, LlmError> {
        let architecture = file.require_str("general.architecture")?;
        if architecture != ARCHITECTURE {
            return Err(file.metadata_error(
                "general.architecture",
                format!("architecture '{architecture}' is not supported (only '{ARCHITECTURE}')"),
            ));
        }
        let key = |name: &str| format!("{ARCHITECTURE}.{name}");
        let size = |name: &str| -> Result<usize, LlmError> {
            let k = key(name);
            let value = file.require_u64(&k)?;
            usize::try_from(value)
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| file.metadata_error(&k, format!("must be positive, found {value}")))
        };
        let layer_count = size("block_count")?;
        let hidden_size = size("embedding_length")?;
        let ffn_size = size("feed_forward_length")?;
        let head_count = size("attention.head_count")?;
        let kv_head_count = match file.get(&key("attention.head_count_kv")) {
            Some(_) => size("attention.head_count_kv")?,
            None => head_count,
        };
        let context_length = size("context_length")?;
        let head_key = key("attention.head_count");
        if hidden_size % head_count != 0 {
            return Err(file.metadata_error(
                &head_key,
                format!("{head_count} heads do not divide the hidden size {hidden_size}"),
            ));
        }
        if head_count % kv_head_count != 0 {
            return Err(file.metadata_error(
                &key("attention.head_count_kv"),
                format!("{kv_head_count} key/value heads do not divide {head_count} query heads"),
            ));
        }
        let head_dim = hidden_size / head_count;
        let rope_dim = match file.get(&key("rope.dimension_count")) {
            Some(_) => size("rope.dimension_count")?,
            None => head_dim,
        };
        if rope_dim % 2 != 0 || rope_dim > head_dim {
            return Err(file.metadata_error(
                &key("rope.dimension_count"),
                format!("must be even and at most the head size {head_dim}, found {rope_dim}"),
            ));
        }
        if let Some(value) = file.get(&key("rope.scaling.type")) {
            if value.as_str() != Some("none") {
                return Err(file.metadata_error(
                    &key("rope.scaling.type"),
                    format!("RoPE scaling {value:?} is not supported"),
                ));
            }
        }
        let float = |name: &str, default: f64| -> Result<f32, LlmError> {
            let k = key(name);
            let value = match file.get(&k) {
                Some(_) => file.require_f64(&k)?,
                None => default,
            };
            if value.is_finite() && value > 0.0 {
                Ok(value as f32)
            } else {
                Err(file.metadata_error(&k, format!("must be a positive number, found {value}")))
            }
        };
        // Defaults are llama.cpp's for files that omit the keys.
        let rope_freq_base = float("rope.freq_base", 10_000.0)?;
        let rms_norm_eps = float("attention.layer_norm_rms_epsilon", 1e-5)?;
        let vocab_size = match file.get(&key("vocab_size")) {
            Some(_) => size("vocab_size")?,
            None => file.require_string_array("tokenizer.ggml.tokens")?.len(),
        };
        Ok(LlamaConfig {
            layer_count,
            hidden_size,
            ffn_size,
            head_count,
            kv_head_count,
            head_dim,
            rope_dim,
            rope_freq_base,
            rms_norm_eps,
            context_length,
            vocab_size,
            rope_layout: RopeLayout::Interleaved,
        })
    }

    /// Width of the key (and value) projection: `kv_head_count × head_dim`.
    pub fn kv_width(&self) -> usize {
        self.kv_head_count * self.head_dim
    }

    /// Width of the query projection: `head_count × head_dim`.
    pub fn q_width(&self) -> usize {
        self.head_count * self.head_dim
    }
}

impl fmt::Display for LlamaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "llama: {} layers, hidden {}, FFN {}, {} heads / {} KV heads (head size {}), vocab {}, \
context {}, RoPE base {} on {} dims, RMSNorm eps {:e}",
            self.layer_count,
            self.hidden_size,
            self.ffn_size,
            self.head_count,
            self.kv_head_count,
            self.head_dim,
            self.vocab_size,
            self.context_length,
            self.rope_freq_base,
            self.rope_dim,
            self.rms_norm_eps
        )
    }
}
