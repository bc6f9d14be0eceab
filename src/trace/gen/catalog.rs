//! Geometries of the models the generator knows by id, until the lead wires in the model
//! catalog (`scenarios/models/*.json`); `edgesim trace gen --model-profile FILE` takes any
//! profile meanwhile. Every dimension cites the model's config.json (values as listed in the
//! project's reference notes, models.md).

use crate::model::{FfnKind, ModelGeometry, ModelProfile, MoeSpec, RouterKind, SparsitySpec};
use crate::sourced::Sourced;

/// Model ids `known_model` accepts.
pub const KNOWN_MODELS: [&str; 7] = [
    "mixtral-8x7b",
    "phi-3.5-moe",
    "olmoe-1b-7b",
    "lfm2-8b-a1b",
    "turbosparse-mistral-7b",
    "relullama-7b",
    "smollm2-135m",
];

struct Dims {
    name: &'static str,
    card: &'static str,
    layers: u32,
    hidden: u32,
    ffn: u32,
    heads: u32,
    kv_heads: u32,
    vocab: u32,
    moe: Option<(u32, u32, u32, u32, RouterKind)>,
    active_fraction: Option<(f64, &'static str)>,
}

const TABLE: [Dims; 7] = [
    Dims {
        name: "mixtral-8x7b",
        card: "https://huggingface.co/mistralai/Mixtral-8x7B-v0.1/blob/main/config.json",
        layers: 32,
        hidden: 4096,
        ffn: 14336,
        heads: 32,
        kv_heads: 8,
        vocab: 32000,
        moe: Some((8, 2, 0, 0, RouterKind::SoftmaxTopk)),
        active_fraction: None,
    },
    Dims {
        name: "phi-3.5-moe",
        card: "https://huggingface.co/microsoft/Phi-3.5-MoE-instruct/blob/main/config.json",
        layers: 32,
        hidden: 4096,
        ffn: 6400,
        heads: 32,
        kv_heads: 8,
        vocab: 32064,
        moe: Some((16, 2, 0, 0, RouterKind::SoftmaxTopk)),
        active_fraction: None,
    },
    Dims {
        name: "olmoe-1b-7b",
        card: "https://huggingface.co/allenai/OLMoE-1B-7B-0924/blob/main/config.json",
        layers: 16,
        hidden: 2048,
        ffn: 1024,
        heads: 16,
        kv_heads: 16,
        vocab: 50304,
        moe: Some((64, 8, 0, 0, RouterKind::SoftmaxTopk)),
        active_fraction: None,
    },
    Dims {
        name: "lfm2-8b-a1b",
        card: "https://huggingface.co/LiquidAI/LFM2-8B-A1B/blob/main/config.json",
        layers: 24,
        hidden: 2048,
        ffn: 1792,
        heads: 32,
        kv_heads: 8,
        vocab: 65536,
        moe: Some((32, 4, 2, 7168, RouterKind::SigmoidTopk)),
        active_fraction: None,
    },
    Dims {
        name: "turbosparse-mistral-7b",
        card:
            "https://huggingface.co/PowerInfer/TurboSparse-Mistral-Instruct/blob/main/config.json",
        layers: 32,
        hidden: 4096,
        ffn: 14336,
        heads: 32,
        kv_heads: 8,
        vocab: 32000,
        moe: None,
        active_fraction: Some((
            0.10,
            "TurboSparse (arXiv 2406.05955) §6.2: 90% of FFN neurons inactive per layer on average",
        )),
    },
    Dims {
        name: "relullama-7b",
        card: "https://huggingface.co/SparseLLM/ReluLLaMA-7B/blob/main/config.json",
        layers: 32,
        hidden: 4096,
        ffn: 11008,
        heads: 32,
        kv_heads: 32,
        vocab: 32000,
        moe: None,
        active_fraction: Some((
            0.10,
            "PowerInfer (arXiv 2312.12456): about 10% of neurons active per iteration",
        )),
    },
    Dims {
        name: "smollm2-135m",
        card: "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct/blob/main/config.json",
        layers: 30,
        hidden: 576,
        ffn: 1536,
        heads: 9,
        kv_heads: 3,
        vocab: 49152,
        moe: None,
        active_fraction: None,
    },
];

/// The profile of a model the generator knows by id, or `None`.
pub fn known_model(id: &str) -> Option<ModelProfile> {
    let d = TABLE.iter().find(|d| d.name == id)?;
    let s = |v: u32| Sourced::new(v, d.card);
    Some(ModelProfile {
        name: d.name.to_string(),
        description: format!("built-in geometry for trace generation ({})", d.card),
        layers: s(d.layers),
        hidden: s(d.hidden),
        ffn: s(d.ffn),
        heads: s(d.heads),
        kv_heads: s(d.kv_heads),
        head_dim: None,
        vocab: s(d.vocab),
        ffn_kind: FfnKind::Gated,
        tied_embeddings: d.name == "smollm2-135m",
        conv_layers: None,
        moe: d.moe.map(
            |(experts, top_k, dense_layers, dense_ffn, router)| MoeSpec {
                experts: s(experts),
                top_k: s(top_k),
                dense_layers: (dense_layers > 0).then(|| s(dense_layers)),
                dense_ffn: (dense_layers > 0).then(|| s(dense_ffn)),
                router,
            },
        ),
        sparsity: d.active_fraction.map(|(f, src)| SparsitySpec {
            active_fraction: Sourced::new(f, src),
        }),
        native_bits: Sourced::new(16.0, d.card),
    })
}

/// Geometry of a model known by id.
pub fn known_geometry(id: &str) -> Option<ModelGeometry> {
    ModelGeometry::from_profile(&known_model(id)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_model_builds_a_geometry() {
        for id in KNOWN_MODELS {
            let g = known_geometry(id).unwrap_or_else(|| panic!("{id}"));
            assert_eq!(g.name, id);
        }
        let lfm = known_geometry("lfm2-8b-a1b").unwrap();
        assert_eq!((lfm.moe_layers(), lfm.experts, lfm.top_k), (22, 32, 4));
    }
}
