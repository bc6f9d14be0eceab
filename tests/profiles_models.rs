//! Each bundled model's parameter count, derived by `ModelGeometry` from the profile's
//! dimensions, against the total its authors publish. This checks the profiles and the geometry
//! code together: a wrong dimension, a missed tied embedding or a miscounted conv layer moves
//! the total by far more than the tolerance.
//!
//! Published totals count a few things edgesim's geometry leaves out (biases, QK norms, the
//! final norm), all well under 0.1% of these models; the tolerance is 2%.

use edgesim::model::{ModelGeometry, TensorKind};
use edgesim::scenario::load_model;

fn geometry(name: &str) -> ModelGeometry {
    let p = load_model(name).unwrap_or_else(|e| panic!("{e}"));
    ModelGeometry::from_profile(&p).unwrap()
}

/// Parameters one decode token touches: everything but the unchosen experts.
fn active_params(g: &ModelGeometry) -> u64 {
    let expert = if g.is_moe() {
        g.params(g.dense_layers, TensorKind::Expert(0))
    } else {
        0
    };
    g.non_ffn_params() + g.dense_ffn_params() + g.moe_layers() as u64 * g.top_k as u64 * expert
}

fn assert_near(what: &str, got: u64, published: f64, tolerance: f64) {
    let rel = (got as f64 - published).abs() / published;
    assert!(
        rel <= tolerance,
        "{what}: derived {got} vs published {published:.4e} ({:.1}% off, tolerance {:.0}%)",
        rel * 100.0,
        tolerance * 100.0
    );
}

/// (profile, published total, where it is published)
const PUBLISHED_TOTALS: &[(&str, f64, &str)] = &[
    (
        "mixtral-8x7b",
        46.7e9,
        "Mistral AI, 'Mixtral of experts' announcement: 46.7B total",
    ),
    (
        "phi-3.5-moe",
        41.9e9,
        "Hugging Face model page of Phi-3.5-MoE-instruct: 41.9B params",
    ),
    (
        "lfm2-8b-a1b",
        8.3e9,
        "LFM2 technical report abstract / model card: 8.3B total",
    ),
    // TurboSparse keeps Mixtral's shape with a 57,024-token vocabulary; its name gives 47B.
    (
        "turbosparse-mixtral-47b",
        47e9,
        "TurboSparse arXiv 2406.05955: TurboSparse-Mixtral-47B",
    ),
    (
        "turbosparse-mistral-7b",
        7.24e9,
        "Mistral-7B-v0.1 on Hugging Face: 7.24B params",
    ),
    (
        "llama-2-7b",
        6.74e9,
        "Llama-2-7b-hf on Hugging Face: 6.74B params",
    ),
    (
        "olmoe-1b-7b",
        6.9e9,
        "OLMoE arXiv 2409.02060 Table 1: 6.9B total",
    ),
    (
        "llama-3-8b",
        8.03e9,
        "Meta-Llama-3-8B on Hugging Face: 8.03B params",
    ),
    (
        "qwen2.5-3b",
        3.09e9,
        "Qwen2.5-3B-Instruct model card: 3.09B parameters",
    ),
    (
        "smollm2-135m",
        135e6,
        "SmolLM2-135M-Instruct model card: 135M parameters",
    ),
];

#[test]
fn derived_totals_match_published_totals() {
    for &(name, published, _) in PUBLISHED_TOTALS {
        assert_near(name, geometry(name).total_params(), published, 0.02);
    }
}

/// Active parameters are a sharper test of the MoE fields (top_k, dense layers) than totals.
#[test]
fn derived_active_params_match_published_figures() {
    let published = [
        ("mixtral-8x7b", 12.9e9),            // Mistral AI: 12.9B active
        ("phi-3.5-moe", 6.6e9),              // model card: 6.6B active
        ("lfm2-8b-a1b", 1.5e9),              // model card: 1.5B active
        ("olmoe-1b-7b", 1.3e9),              // OLMoE Table 1: 1.3B active
        ("turbosparse-mixtral-47b", 13.0e9), // Mixtral's 12.9B plus the larger vocabulary
    ];
    for (name, active) in published {
        // LFM2's card rounds 1.557B down to 1.5B, hence 5%.
        assert_near(name, active_params(&geometry(name)), active, 0.05);
    }
}

/// The Qwen2.5 card also gives the count without embeddings, which isolates the tied
/// embedding: untied, the total would be 0.31B too high.
#[test]
fn qwen_non_embedding_params_match_the_card() {
    let g = geometry("qwen2.5-3b");
    let embedding = g.params(0, TensorKind::Embedding) + g.params(0, TensorKind::LmHead);
    assert_eq!(g.params(0, TensorKind::LmHead), 0, "tied embeddings");
    assert_near(
        "qwen2.5-3b non-embedding",
        g.total_params() - embedding,
        2.77e9,
        0.02,
    );
}

/// No exact total is published for the 1bitLLM BitNet-b1.58-3B checkpoint (its name says 3B),
/// so this compares against the closed form written out from config.json by hand.
#[test]
fn bitnet_total_matches_hand_arithmetic_from_its_config() {
    let (layers, hidden, ffn, vocab) = (26u64, 3200u64, 8640u64, 32002u64);
    let attention = 4 * hidden * hidden; // 32 heads = 32 KV heads: q, k, v, o all square
    let ffn_params = 3 * hidden * ffn;
    let norms = 2 * hidden;
    let embeddings = 2 * vocab * hidden; // untied
    let expected = layers * (attention + ffn_params + norms) + embeddings;
    assert_eq!(geometry("bitnet-b1.58-3b").total_params(), expected);
    // 3.43B: about 14% above the nominal "3B", as for LLaMA-3B-shaped models generally.
    assert!((3.4e9..3.45e9).contains(&(expected as f64)));
}

/// LFM2-8B-A1B's conv layers, dense layers and tied embedding, part by part, against the
/// arithmetic in the LFM2 reference notes (lfm2.md §4.2, computed there from the config).
#[test]
fn lfm2_parts_match_the_reference_arithmetic() {
    let g = geometry("lfm2-8b-a1b");
    assert_eq!((0..24).filter(|&l| g.is_conv_layer(l)).count(), 18);
    assert!(!g.is_conv_layer(2) && !g.is_conv_layer(21) && g.is_conv_layer(22));
    assert_eq!(g.params(0, TensorKind::Expert(0)), 11_010_048);
    assert_eq!(g.moe_layers(), 22);
    assert_eq!(g.ffn_width(1), 7168);
    assert_eq!(g.ffn_width(2), 1792);
    assert_eq!(g.params(0, TensorKind::LmHead), 0);
    // One conv mixer: in_proj 2048 -> 3*2048, out_proj 2048 -> 2048, depthwise kernel 3.
    let conv_mixer = 3 * 2048 * 2048 + 2048 * 2048 + 3 * 2048;
    assert_eq!(g.params(0, TensorKind::Attention), conv_mixer + 2 * 2048);
    // KV cache: 6 attention layers x (K + V) x 8 heads x 64 x 2 bytes = 12 KiB per token.
    assert_eq!(g.kv_bytes_per_token(), 12 * 1024);
}

/// Per-expert sizes HOBBIT's Table 1 implies: Mixtral's 84 GB of experts over 256 experts and
/// Phi-MoE's 75 GB over 512, at fp16. Both come out exact when HOBBIT's "GB" is read as GiB
/// (and Mixtral's expert is then HOBBIT's "336MB" in MiB).
#[test]
fn expert_sizes_match_hobbit_table_1() {
    use edgesim::model::Precision;
    let mixtral = geometry("mixtral-8x7b");
    let phi = geometry("phi-3.5-moe");
    let mixtral_expert = mixtral.bytes(0, TensorKind::Expert(0), Precision::Fp16) as f64;
    let phi_expert = phi.bytes(0, TensorKind::Expert(0), Precision::Fp16) as f64;
    assert_near(
        "mixtral expert bytes",
        mixtral_expert as u64,
        84e9 / 256.0,
        0.08,
    );
    assert_near("phi expert bytes", phi_expert as u64, 75e9 / 512.0, 0.08);
}
