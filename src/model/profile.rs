//! The model profile as written in `scenarios/models/*.json`: architecture dimensions, each
//! with its source. Sizes are never typed in; [`super::ModelGeometry`] derives them.

use crate::sourced::Sourced;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelProfile {
    /// Identifier used on the command line and in traces, e.g. `mixtral-8x7b`.
    pub name: String,
    pub description: String,
    pub layers: Sourced<u32>,
    pub hidden: Sourced<u32>,
    /// FFN width of one expert (MoE) or of the dense FFN.
    pub ffn: Sourced<u32>,
    pub heads: Sourced<u32>,
    pub kv_heads: Sourced<u32>,
    /// Defaults to `hidden / heads` when absent.
    #[serde(default)]
    pub head_dim: Option<Sourced<u32>>,
    pub vocab: Sourced<u32>,
    pub ffn_kind: FfnKind,
    #[serde(default)]
    pub tied_embeddings: bool,
    /// Layers whose token mixer is not attention (LFM2's short convolutions). Empty: all
    /// layers use attention.
    #[serde(default)]
    pub conv_layers: Option<Sourced<Vec<u32>>>,
    #[serde(default)]
    pub moe: Option<MoeSpec>,
    /// Activation sparsity of the FFN, for neuron-level policies.
    #[serde(default)]
    pub sparsity: Option<SparsitySpec>,
    /// Bits per weight of the released checkpoint (16 for bf16/fp16 models, 1.58 for BitNet).
    pub native_bits: Sourced<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FfnKind {
    /// Gate, up and down projections: three matrices (SwiGLU, GeGLU, dReLU).
    Gated,
    /// Up and down only (ReLU/GELU MLP).
    Plain,
}

impl FfnKind {
    pub fn matrices(self) -> u64 {
        match self {
            FfnKind::Gated => 3,
            FfnKind::Plain => 2,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoeSpec {
    pub experts: Sourced<u32>,
    pub top_k: Sourced<u32>,
    /// The first `dense_layers` layers use a dense FFN instead of experts (LFM2-8B-A1B: 2).
    #[serde(default)]
    pub dense_layers: Option<Sourced<u32>>,
    /// FFN width of those dense layers.
    #[serde(default)]
    pub dense_ffn: Option<Sourced<u32>>,
    /// How gate scores are normalised; recorded for the synthetic generator and the importer.
    pub router: RouterKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouterKind {
    /// Softmax over all experts, top-k, renormalised over the chosen k (Mixtral).
    SoftmaxTopk,
    /// Sigmoid scores, top-k after a selection bias, renormalised (LFM2-MoE).
    SigmoidTopk,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SparsitySpec {
    /// Mean fraction of FFN neurons active per token and layer.
    pub active_fraction: Sourced<f64>,
}
