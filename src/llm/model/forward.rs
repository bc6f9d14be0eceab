//! The Llama forward pass.

use super::attention::{attend, AttentionShape};
use super::config::LlamaConfig;
use super::kv_cache::KvCache;
use super::observer::FfnObserver;
use super::ops::{rms_norm, silu, Rope, RopeLayout};
use super::weights::LlamaWeights;
use crate::llm::gguf::GgufFile;
use crate::llm::matvec::MatVecBuilder;
use crate::llm::LlmError;

/// A loaded Llama-architecture model.
///
/// Per block: x += Wo·attention(RoPE(Wq·n), RoPE(Wk·n), Wv·n) with n = RMSNorm(x), then
/// x += Wdown·(SiLU(Wgate·m) ⊙ Wup·m) with m = RMSNorm(x); logits = Wout·RMSNorm(x).
pub struct LlamaModel {
    config: LlamaConfig,
    weights: LlamaWeights,
    rope: Rope,
    format: String,
}

/// Which logits a forward call returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogitsWanted {
    /// The last token's only (`vocab` values): generation.
    Last,
    /// Every token's (`n × vocab`): perplexity, agreement checks.
    All,
}

impl LlamaModel {
    /// Loads the model in `file`, converting every matrix with `builder`.
    pub fn load(file: &GgufFile, builder: &dyn MatVecBuilder) -> Result<LlamaModel, LlmError> {
        let config = LlamaConfig::from_gguf(file)?;
        let weights = LlamaWeights::load(file, &config, builder)?;
        Ok(LlamaModel::from_parts(config, weights, builder.format()))
    }

    /// A model from weights built elsewhere (tests build tiny random ones).
    pub fn from_parts(config: LlamaConfig, weights: LlamaWeights, format: String) -> LlamaModel {
        let rope = Rope::new(
            config.head_dim,
            config.rope_dim,
            config.rope_freq_base,
            config.rope_layout,
        );
        LlamaModel {
            config,
            weights,
            rope,
            format,
        }
    }

    /// The same weights with RoPE pairing dimensions another way (for experiments: the wrong
    /// layout for a file is how a converter's Q/K permutation shows up).
    pub fn with_rope_layout(mut self, layout: RopeLayout) -> LlamaModel {
        self.config.rope_layout = layout;
        self.rope = Rope::new(
            self.config.head_dim,
            self.config.rope_dim,
            self.config.rope_freq_base,
            layout,
        );
        self
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    pub fn weights(&self) -> &LlamaWeights {
        &self.weights
    }

    /// The weight format the matrices run in ("f32", …).
    pub fn format(&self) -> &str {
        &self.format
    }

    /// A KV cache for `capacity` positions.
    pub fn new_cache(&self, capacity: usize) -> KvCache {
        KvCache::new(&self.config, capacity)
    }

    /// Runs `tokens` after what `cache` holds and returns the last token's logits.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>, LlmError> {
        self.forward_with(tokens, cache, LogitsWanted::Last, None)
    }

    /// The general forward call: all tokens are processed as one batch (matrix-matrix products,
    /// so a prefill reads each weight once), appended to `cache`, and the FFN activations of
    /// every layer go to `observer` if one is given.
    pub fn forward_with(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        logits_wanted: LogitsWanted,
        mut observer: Option<&mut dyn FfnObserver>,
    ) -> Result<Vec<f32>, LlmError> {
        let c = &self.config;
        let n = tokens.len();
        let start = cache.len();
        if n == 0 {
            return Err(LlmError::Input("forward called with no tokens".into()));
        }
        if start + n > cache.capacity() {
            return Err(LlmError::Input(format!(
                "KV cache full: {start} positions stored + {n} new exceed its capacity of {}",
                cache.capacity()
            )));
        }
        let hidden = c.hidden_size;
        let mut x = Vec::with_capacity(n * hidden);
        for &token in tokens {
            if token as usize >= c.vocab_size {
                return Err(LlmError::Input(format!(
                    "token id {token} is outside the vocabulary of {}",
                    c.vocab_size
                )));
            }
            let row = token as usize * hidden;
            x.extend_from_slice(&self.weights.token_embedding[row..row + hidden]);
        }

        let (q_width, kv_width, ffn) = (c.q_width(), c.kv_width(), c.ffn_size);
        let mut normed = vec![0.0f32; n * hidden];
        let mut queries = vec![0.0f32; n * q_width];
        let mut keys = vec![0.0f32; n * kv_width];
        let mut values = vec![0.0f32; n * kv_width];
        let mut attention = vec![0.0f32; n * q_width];
        let mut projected = vec![0.0f32; n * hidden];
        let mut gate = vec![0.0f32; n * ffn];
        let mut up = vec![0.0f32; n * ffn];
        let shape = AttentionShape {
            head_count: c.head_count,
            kv_head_count: c.kv_head_count,
            head_dim: c.head_dim,
            start,
            capacity: cache.capacity(),
        };

        for (layer_index, layer) in self.weights.layers.iter().enumerate() {
            for (x_row, n_row) in x.chunks_exact(hidden).zip(normed.chunks_exact_mut(hidden)) {
                rms_norm(x_row, &layer.attn_norm, c.rms_norm_eps, n_row);
            }
            layer.attn_q.gemm(&normed, n, &mut queries);
            layer.attn_k.gemm(&normed, n, &mut keys);
            layer.attn_v.gemm(&normed, n, &mut values);
            for i in 0..n {
                self.rope
                    .apply(&mut queries[i * q_width..(i + 1) * q_width], start + i);
                self.rope
                    .apply(&mut keys[i * kv_width..(i + 1) * kv_width], start + i);
            }
            cache.store(layer_index, start, &keys, &values);
            let (cached_keys, cached_values) = cache.layer(layer_index);
            attend(&shape, &queries, cached_keys, cached_values, &mut attention);
            layer.attn_output.gemm(&attention, n, &mut projected);
            add_into(&mut x, &projected);

            for (x_row, n_row) in x.chunks_exact(hidden).zip(normed.chunks_exact_mut(hidden)) {
                rms_norm(x_row, &layer.ffn_norm, c.rms_norm_eps, n_row);
            }
            layer.ffn_gate.gemm(&normed, n, &mut gate);
            layer.ffn_up.gemm(&normed, n, &mut up);
            for (g, &u) in gate.iter_mut().zip(&up) {
                *g = silu(*g) * u;
            }
            if let Some(observer) = observer.as_deref_mut() {
                observer.ffn_activations(layer_index, start, &gate);
            }
            layer.ffn_down.gemm(&gate, n, &mut projected);
            add_into(&mut x, &projected);
        }
        cache.set_len(start + n);

        let vocab = c.vocab_size;
        let rows: &[f32] = match logits_wanted {
            LogitsWanted::Last => &x[(n - 1) * hidden..],
            LogitsWanted::All => &x,
        };
        let count = rows.len() / hidden;
        let mut final_normed = vec![0.0f32; rows.len()];
        for (x_row, n_row) in rows
            .chunks_exact(hidden)
            .zip(final_normed.chunks_exact_mut(hidden))
        {
            rms_norm(x_row, &self.weights.output_norm, c.rms_norm_eps, n_row);
        }
        let mut logits = vec![0.0f32; count * vocab];
        self.weights.output.gemm(&final_normed, count, &mut logits);
        Ok(logits)
    }
}

fn add_into(x: &mut [f32], delta: &[f32]) {
    for (a, b) in x.iter_mut().zip(delta) {
        *a += b;
    }
}

/// Opens a GGUF file and loads its model: the one call most users need.
pub fn load_model(
    path: &std::path::Path,
    builder: &dyn MatVecBuilder,
) -> Result<(GgufFile, LlamaModel), LlmError> {
    let file = GgufFile::open(path)?;
    let model = LlamaModel::load(&file, builder)?;
    Ok((file, model))
}
