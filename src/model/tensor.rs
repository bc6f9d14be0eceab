//! Names of the weight tensors that ops touch.

use serde::Serialize;
use std::fmt;

/// Which weights of which layer an op reads, decrypts, allocates, computes with or evicts.
///
/// Small and `Copy`: plans hold one per op and policies use it as a cache key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct TensorRef {
    pub layer: u16,
    pub kind: TensorKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum TensorKind {
    Embedding,
    /// The layer's token mixer (attention projections, or LFM2's short convolution) and norms.
    Attention,
    Router,
    /// The FFN of a dense layer (or of a dense model).
    DenseFfn,
    /// One routed expert's FFN (all of its matrices).
    Expert(u16),
    /// A run of `count` FFN neurons starting at `first`, each with its gate and up rows and its
    /// down column (PowerInfer's Gate-Up-Down bundle). `expert` is `u16::MAX` in a dense FFN.
    Neurons {
        expert: u16,
        first: u32,
        count: u32,
    },
    LmHead,
    /// The key/value cache of every attention layer (not weights: allocated, never read).
    KvCache,
    /// The whole model as one blob (TEE strawman: restore everything before computing).
    Whole,
}

/// Marks a neuron run that belongs to a dense FFN rather than an expert.
pub const DENSE_FFN: u16 = u16::MAX;

impl TensorRef {
    pub fn new(layer: u32, kind: TensorKind) -> Self {
        TensorRef {
            layer: layer as u16,
            kind,
        }
    }

    pub fn expert(layer: u32, expert: u32) -> Self {
        TensorRef::new(layer, TensorKind::Expert(expert as u16))
    }
}

impl fmt::Display for TensorRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            TensorKind::Embedding => write!(f, "embedding"),
            TensorKind::LmHead => write!(f, "lm_head"),
            TensorKind::Whole => write!(f, "model"),
            TensorKind::KvCache => write!(f, "kv_cache"),
            TensorKind::Attention => write!(f, "L{}.attn", self.layer),
            TensorKind::Router => write!(f, "L{}.router", self.layer),
            TensorKind::DenseFfn => write!(f, "L{}.ffn", self.layer),
            TensorKind::Expert(e) => write!(f, "L{}.E{}", self.layer, e),
            TensorKind::Neurons {
                expert,
                first,
                count,
            } => {
                if expert == DENSE_FFN {
                    write!(f, "L{}.n{}+{}", self.layer, first, count)
                } else {
                    write!(f, "L{}.E{}.n{}+{}", self.layer, expert, first, count)
                }
            }
        }
    }
}
