//! The Llama forward pass.

use super::attention::{attend, AttentionShape};
use super::config::LlamaConfig;
use super::kv_cache::KvCache;
use super::observer::FfnObserver;
use super::ops::{rms_norm, silu, Rope, RopeLayout};
use super::weights::LlamaWeights;
use super::workspace::{sized, Workspace};
use crate::llm::gguf::GgufFile;
use crate::llm::matvec::MatVecBuilder;
use crate::llm::parallel::{current_threads, for_each_chunk_mut};
use crate::llm::LlmError;
use std::sync::Mutex;

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

    /// The model without its FFN matrices (see [`LlamaWeights::offload_ffn`]): only
    /// [`LlamaModel::attention_block`] and the head still work, for a caller that computes the
    /// FFN from offloaded weights.
    pub fn without_ffn(mut self) -> LlamaModel {
        self.weights.offload_ffn();
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
        observer: Option<&mut dyn FfnObserver>,
    ) -> Result<Vec<f32>, LlmError> {
        let mut logits = Vec::new();
        self.forward_into(tokens, cache, logits_wanted, observer, &mut logits)?;
        Ok(logits)
    }

    /// [`LlamaModel::forward_with`] writing the logits into `logits` (resized to fit), so a
    /// decode loop reuses one buffer. Scratch space lives in the cache: after the first call
    /// of a sequence, a decode step allocates nothing.
    pub fn forward_into(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        logits_wanted: LogitsWanted,
        mut observer: Option<&mut dyn FfnObserver>,
        logits: &mut Vec<f32>,
    ) -> Result<(), LlmError> {
        let pass = self.begin_pass(tokens, cache)?;
        for layer in 0..self.config.layer_count {
            self.attention_block(layer, &pass, cache)?;
            self.dense_ffn_block(layer, &pass, cache, observer.as_deref_mut())?;
        }
        self.finish_pass(&pass, cache, logits_wanted, logits)
    }

    /// Starts a forward call that the caller drives one block at a time: the token embeddings
    /// go into the residual stream. [`LlamaModel::forward_into`] is `begin_pass`, then per
    /// layer [`attention_block`](LlamaModel::attention_block) and
    /// [`dense_ffn_block`](LlamaModel::dense_ffn_block), then
    /// [`finish_pass`](LlamaModel::finish_pass). The stepped form exists for callers that
    /// compute the FFN elsewhere: the executor runs each block as an op of a policy's plan,
    /// with FFN neurons loaded from its weight store (`exec::model`).
    pub fn begin_pass(&self, tokens: &[u32], cache: &mut KvCache) -> Result<SteppedPass, LlmError> {
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
        if let Some(&token) = tokens.iter().find(|&&t| t as usize >= c.vocab_size) {
            return Err(LlmError::Input(format!(
                "token id {token} is outside the vocabulary of {}",
                c.vocab_size
            )));
        }
        let hidden = c.hidden_size;
        let pairs = self.rope.pairs();
        let threads = current_threads();
        let w = &mut cache.workspace;
        while w.scores.len() < threads {
            w.scores.push(Mutex::new(Vec::new()));
        }
        let x = sized(&mut w.x, n * hidden);
        for (row, &token) in x.chunks_exact_mut(hidden).zip(tokens) {
            let at = token as usize * hidden;
            row.copy_from_slice(&self.weights.token_embedding[at..at + hidden]);
        }
        let rotations = sized(&mut w.rotations, n * pairs);
        for (i, token_rotations) in rotations.chunks_exact_mut(pairs.max(1)).enumerate() {
            self.rope.rotations(start + i, token_rotations);
        }
        Ok(SteppedPass { n, start })
    }

    /// Block `layer`'s attention: `x += Wo·attention(…)`, the new keys and values stored in the
    /// cache; then the FFN norm of the result, which [`LlamaModel::ffn_input`] returns.
    pub fn attention_block(
        &self,
        layer_index: usize,
        pass: &SteppedPass,
        cache: &mut KvCache,
    ) -> Result<(), LlmError> {
        let c = &self.config;
        let layer = self.layer(layer_index)?;
        let SteppedPass { n, start } = *pass;
        let hidden = c.hidden_size;
        let (q_width, kv_width) = (c.q_width(), c.kv_width());
        let qkv_width = q_width + 2 * kv_width;
        let pairs = self.rope.pairs();
        let shape = AttentionShape {
            head_count: c.head_count,
            kv_head_count: c.kv_head_count,
            head_dim: c.head_dim,
            start,
            capacity: cache.capacity(),
            query_stride: qkv_width,
        };
        let mut workspace = std::mem::take(&mut cache.workspace);
        let result = (|| -> Result<(), LlmError> {
            let Workspace {
                x,
                normed,
                qkv,
                attention,
                projected,
                rotations,
                scores,
                ..
            } = &mut workspace;
            let x = &mut x[..n * hidden];
            let normed = sized(normed, n * hidden);
            let qkv = sized(qkv, n * qkv_width);
            let attention = sized(attention, n * q_width);
            let projected = sized(projected, n * hidden);
            rms_norm_rows(x, &layer.attn_norm, c.rms_norm_eps, normed);
            layer.attn_qkv.gemm(normed, n, qkv)?;
            for (i, row) in qkv.chunks_exact_mut(qkv_width).enumerate() {
                let token_rotations = &rotations[i * pairs..(i + 1) * pairs];
                let (queries_and_keys, _) = row.split_at_mut(q_width + kv_width);
                self.rope.apply_rotations(queries_and_keys, token_rotations);
            }
            cache.store(
                layer_index,
                start,
                qkv,
                qkv_width,
                q_width,
                q_width + kv_width,
            );
            let (cached_keys, cached_values) = cache.layer(layer_index);
            attend(&shape, qkv, cached_keys, cached_values, attention, scores);
            layer.attn_output.gemm(attention, n, projected)?;
            add_into(x, projected);
            rms_norm_rows(x, &layer.ffn_norm, c.rms_norm_eps, normed);
            Ok(())
        })();
        cache.workspace = workspace;
        result
    }

    /// The FFN's input after [`LlamaModel::attention_block`]: `n × hidden`, one row per token.
    pub fn ffn_input<'c>(&self, pass: &SteppedPass, cache: &'c KvCache) -> &'c [f32] {
        &cache.workspace.normed[..pass.n * self.config.hidden_size]
    }

    /// Adds an FFN's output (`n × hidden`) to the residual stream.
    pub fn add_ffn_output(&self, pass: &SteppedPass, cache: &mut KvCache, delta: &[f32]) {
        let x = &mut cache.workspace.x[..pass.n * self.config.hidden_size];
        add_into(x, delta);
    }

    /// Block `layer`'s FFN from the model's own matrices: `x += Wdown·(SiLU(Wgate·m) ⊙ Wup·m)`,
    /// the activations reported to `observer`.
    pub fn dense_ffn_block(
        &self,
        layer_index: usize,
        pass: &SteppedPass,
        cache: &mut KvCache,
        observer: Option<&mut (dyn FfnObserver + '_)>,
    ) -> Result<(), LlmError> {
        let layer = self.layer(layer_index)?;
        let SteppedPass { n, start } = *pass;
        let (hidden, ffn) = (self.config.hidden_size, self.config.ffn_size);
        let w = &mut cache.workspace;
        let gate_up = sized(&mut w.gate_up, n * 2 * ffn);
        let activations = sized(&mut w.activations, n * ffn);
        let projected = sized(&mut w.projected, n * hidden);
        layer
            .ffn_gate_up
            .gemm(&w.normed[..n * hidden], n, gate_up)?;
        swiglu_rows(gate_up, ffn, activations);
        if let Some(observer) = observer {
            observer.ffn_activations(layer_index, start, activations);
        }
        layer.ffn_down.gemm(activations, n, projected)?;
        add_into(&mut w.x[..n * hidden], projected);
        Ok(())
    }

    /// Ends the call: the cache takes the new positions, and the logits of the last token (or
    /// of every token) go into `logits`.
    pub fn finish_pass(
        &self,
        pass: &SteppedPass,
        cache: &mut KvCache,
        logits_wanted: LogitsWanted,
        logits: &mut Vec<f32>,
    ) -> Result<(), LlmError> {
        let c = &self.config;
        let SteppedPass { n, start } = *pass;
        let hidden = c.hidden_size;
        cache.set_len(start + n);
        let w = &mut cache.workspace;
        let x = &w.x[..n * hidden];
        let rows: &[f32] = match logits_wanted {
            LogitsWanted::Last => &x[(n - 1) * hidden..],
            LogitsWanted::All => x,
        };
        let count = rows.len() / hidden;
        let final_normed = &mut w.normed[..rows.len()];
        rms_norm_rows(
            rows,
            &self.weights.output_norm,
            c.rms_norm_eps,
            final_normed,
        );
        logits.resize(count * c.vocab_size, 0.0);
        self.weights.output.gemm(final_normed, count, logits)
    }

    fn layer(&self, index: usize) -> Result<&super::weights::LayerWeights, LlmError> {
        self.weights.layers.get(index).ok_or_else(|| {
            LlmError::Input(format!(
                "layer {index}: the model has {} layers",
                self.weights.layers.len()
            ))
        })
    }
}

/// A forward call in progress (see [`LlamaModel::begin_pass`]): `n` tokens after `start`
/// cached positions. Its activations live in the cache's workspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SteppedPass {
    pub n: usize,
    pub start: usize,
}

/// RMSNorm of each `weight.len()`-wide row of `x` into `out`.
fn rms_norm_rows(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let width = weight.len();
    for (x_row, out_row) in x.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
        rms_norm(x_row, weight, eps, out_row);
    }
}

/// `activations = SiLU(gate)·up` per token, from fused rows of `[gate (ffn) | up (ffn)]`, split
/// over the current team (the exponentials are a noticeable share of a decode step).
fn swiglu_rows(gate_up: &[f32], ffn: usize, activations: &mut [f32]) {
    for_each_chunk_mut(activations, ffn, &|at, chunk| {
        for (i, out_row) in chunk.chunks_exact_mut(ffn).enumerate() {
            let row = &gate_up[(at.first_unit + i) * 2 * ffn..(at.first_unit + i + 1) * 2 * ffn];
            let (gate, up) = row.split_at(ffn);
            for ((o, &g), &u) in out_row.iter_mut().zip(gate).zip(up) {
                *o = silu(g) * u;
            }
        }
    });
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
