//! The GGUF reader against the real SmolLM2 file (skips without it).

mod llm_common;

use edgesim::llm::gguf::{GgmlType, GgufFile};
use edgesim::llm::model::LlamaConfig;

fn open() -> Option<GgufFile> {
    let path = llm_common::smollm2_path()?;
    Some(GgufFile::open(&path).expect("the cached model parses"))
}

#[test]
fn metadata_matches_the_model_card() {
    let Some(file) = open() else { return };
    assert_eq!(file.version(), 3);
    assert_eq!(file.alignment(), 32);
    assert_eq!(file.require_str("general.architecture").unwrap(), "llama");
    let config = LlamaConfig::from_gguf(&file).unwrap();
    // SmolLM2-135M-Instruct's config.json: 30 layers, hidden 576, intermediate 1536,
    // 9 attention heads, 3 key/value heads, vocab 49152, rope_theta 100000, rms_norm_eps 1e-5.
    assert_eq!(config.layer_count, 30);
    assert_eq!(config.hidden_size, 576);
    assert_eq!(config.ffn_size, 1536);
    assert_eq!(config.head_count, 9);
    assert_eq!(config.kv_head_count, 3);
    assert_eq!(config.head_dim, 64);
    assert_eq!(config.rope_dim, 64);
    assert_eq!(config.vocab_size, 49152);
    assert_eq!(config.rope_freq_base, 100_000.0);
    assert_eq!(config.rms_norm_eps, 1e-5);
    assert_eq!(config.context_length, 8192);
    assert_eq!(file.require_str("tokenizer.ggml.pre").unwrap(), "smollm");
    assert!(file
        .require_str("tokenizer.chat_template")
        .unwrap()
        .contains("<|im_start|>"));
}

#[test]
fn tensor_inventory() {
    let Some(file) = open() else { return };
    assert_eq!(file.tensors().len(), 2 + 30 * 9);
    let count = |ty: GgmlType| file.tensors().iter().filter(|t| t.ggml_type == ty).count();
    assert_eq!(count(GgmlType::Q4_1), 30 * 7);
    assert_eq!(count(GgmlType::F32), 30 * 2 + 1);
    assert_eq!(count(GgmlType::Q8_0), 1);
    let embedding = file.tensor("token_embd.weight").unwrap();
    assert_eq!(embedding.ggml_type, GgmlType::Q8_0);
    assert_eq!(embedding.dims, vec![576, 49152]);
    assert_eq!(
        file.tensor("blk.0.ffn_down.weight").unwrap().dims,
        vec![1536, 576]
    );
    assert_eq!(
        file.tensor("blk.0.attn_k.weight").unwrap().dims,
        vec![576, 192]
    );
    // Tied embeddings: no separate output matrix.
    assert!(file.tensor("output.weight").is_none());
    for info in file.tensors() {
        assert_eq!(info.offset % 32, 0, "{}", info.name);
    }
}

#[test]
fn dequantized_values_match_gguf_py() {
    let Some(file) = open() else { return };
    // Reference: gguf-py 0.19.0 (`gguf.quants.dequantize`, an independent implementation),
    // sums taken in float64 over the dequantized tensors; first values in shortest f32 form.
    let check = |name: &str, len: usize, sum: f64, first: [f32; 4]| {
        let values = file.dequantize(name).unwrap();
        assert_eq!(values.len(), len, "{name}");
        let total: f64 = values.iter().map(|&v| v as f64).sum();
        assert!((total - sum).abs() < 1e-3, "{name}: sum {total} vs {sum}");
        assert_eq!(values[..4], first, "{name}");
    };
    check(
        "token_embd.weight",
        28_311_552,
        -15353.044494,
        [-0.106544495, 0.032978058, 0.0481987, -0.022830963],
    );
    check(
        "blk.0.attn_q.weight",
        331_776,
        59.223221,
        [-0.09631348, 0.15734863, -0.09631348, -0.73046875],
    );
    check(
        "blk.29.ffn_down.weight",
        884_736,
        49.835709,
        [-0.27331543, 0.1862793, 0.1862793, 0.04840088],
    );
    check(
        "output_norm.weight",
        576,
        1038.332031,
        [1.7578125, 1.8203125, 1.78125, 1.6015625],
    );
}
