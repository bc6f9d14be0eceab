//! A tiny random Llama written as GGUF in memory, for tests that must run everywhere (no
//! model download).

use edgesim::llm::gguf::{GgufBuilder, MetadataValue};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

pub const LAYERS: usize = 2;
// Widths are multiples of 32 so that the LUT formats (groups of 32 weights) run it too.
pub const HIDDEN: usize = 64;
pub const FFN: usize = 96;
pub const HEADS: usize = 4;
pub const KV_HEADS: usize = 2;
pub const HEAD_DIM: usize = HIDDEN / HEADS;
pub const VOCAB: usize = 40;
pub const ROPE_BASE: f32 = 10_000.0;
pub const EPS: f32 = 1e-5;

/// Tensor name → (ggml dims, values).
pub type Tensors = BTreeMap<String, (Vec<u64>, Vec<f32>)>;

pub fn random_tensors(seed: u64) -> Tensors {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut tensors = Tensors::new();
    let mut add = |name: String, dims: &[usize], scale: f32, offset: f32| {
        let len = dims.iter().product();
        let values = (0..len)
            .map(|_| offset + scale * rng.gen_range(-1.0f32..1.0))
            .collect();
        tensors.insert(name, (dims.iter().map(|&d| d as u64).collect(), values));
    };
    add("token_embd.weight".into(), &[HIDDEN, VOCAB], 1.0, 0.0);
    add("output_norm.weight".into(), &[HIDDEN], 0.2, 1.0);
    for l in 0..LAYERS {
        let name = |s: &str| format!("blk.{l}.{s}.weight");
        add(name("attn_norm"), &[HIDDEN], 0.2, 1.0);
        add(name("attn_q"), &[HIDDEN, HIDDEN], 0.5, 0.0);
        add(name("attn_k"), &[HIDDEN, KV_HEADS * HEAD_DIM], 0.5, 0.0);
        add(name("attn_v"), &[HIDDEN, KV_HEADS * HEAD_DIM], 0.5, 0.0);
        add(name("attn_output"), &[HIDDEN, HIDDEN], 0.3, 0.0);
        add(name("ffn_norm"), &[HIDDEN], 0.2, 1.0);
        add(name("ffn_gate"), &[HIDDEN, FFN], 0.5, 0.0);
        add(name("ffn_up"), &[HIDDEN, FFN], 0.5, 0.0);
        add(name("ffn_down"), &[FFN, HIDDEN], 0.3, 0.0);
    }
    tensors
}

pub fn gguf_bytes(tensors: &Tensors, architecture: &str) -> Vec<u8> {
    let mut builder = GgufBuilder::new();
    let u32_value = |v: usize| MetadataValue::U32(v as u32);
    builder
        .metadata(
            "general.architecture",
            MetadataValue::String(architecture.into()),
        )
        .metadata("llama.block_count", u32_value(LAYERS))
        .metadata("llama.context_length", u32_value(64))
        .metadata("llama.embedding_length", u32_value(HIDDEN))
        .metadata("llama.feed_forward_length", u32_value(FFN))
        .metadata("llama.attention.head_count", u32_value(HEADS))
        .metadata("llama.attention.head_count_kv", u32_value(KV_HEADS))
        .metadata("llama.rope.freq_base", MetadataValue::F32(ROPE_BASE))
        .metadata(
            "llama.attention.layer_norm_rms_epsilon",
            MetadataValue::F32(EPS),
        )
        .metadata("llama.vocab_size", u32_value(VOCAB));
    for (name, (dims, values)) in tensors {
        builder.tensor_f32(name, dims, values);
    }
    builder.to_bytes()
}
