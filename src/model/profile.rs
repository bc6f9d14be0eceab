//! The model profile as written in `scenarios/models/*.json`: architecture dimensions, each
//! with its source. Sizes are never typed in; [`super::ModelGeometry`] derives them.

use super::geometry::ModelGeometry;
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
    /// Whether the LM head reuses the embedding matrix (`tie_word_embeddings` in config.json).
    /// Required: left out, it would silently change the parameter count by vocab x hidden.
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
    /// Softmax over all experts, then top-k. Mixtral renormalises the chosen k weights to sum
    /// to one; OLMoE does not (`norm_topk_prob: false`), and Phi-3.5-MoE's SparseMixer picks
    /// its top-2 with softmax-based scores. The ranking is the same either way, so consumers
    /// that need weights summing to one (HOBBIT's scores) renormalise.
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

impl ModelProfile {
    /// Rejects values that cannot describe a model, naming the field. Returns every problem,
    /// not just the first; the shape checks are [`ModelGeometry::from_profile`]'s.
    pub fn check(&self) -> Result<(), Vec<String>> {
        let mut errs = Vec::new();
        if let Err(e) = ModelGeometry::from_profile(self) {
            errs.push(e);
        }
        let bits = self.native_bits.value;
        if !(bits.is_finite() && bits > 0.0 && bits <= 32.0) {
            errs.push(format!("`native_bits` must be in (0, 32], got {bits}"));
        }
        if let Some(s) = &self.sparsity {
            let f = s.active_fraction.value;
            if !(f.is_finite() && f > 0.0 && f <= 1.0) {
                errs.push(format!(
                    "`sparsity.active_fraction` must be in (0, 1], got {f}"
                ));
            }
        }
        if let Some(m) = &self.moe {
            if let Some(d) = &m.dense_ffn {
                if d.value == 0 {
                    errs.push("`moe.dense_ffn` must be positive".into());
                }
            }
            if m.dense_ffn.is_some() && m.dense_layers.as_ref().is_none_or(|d| d.value == 0) {
                errs.push("`moe.dense_ffn` is given but `moe.dense_layers` is not".into());
            }
        }
        if let Some(c) = &self.conv_layers {
            let mut seen = c.value.clone();
            seen.sort_unstable();
            if seen.windows(2).any(|w| w[0] == w[1]) {
                errs.push("`conv_layers` lists a layer twice".into());
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }
}
