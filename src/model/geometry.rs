//! Tensor shapes and sizes derived from a model profile.

use super::profile::{FfnKind, ModelProfile};
use super::tensor::TensorKind;
use super::Precision;

/// Everything a policy or backend needs to know about a model's shape, as plain integers.
///
/// Built once from a [`ModelProfile`]; cheap to query on the simulator's hot path.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelGeometry {
    pub name: String,
    pub layers: u32,
    pub hidden: u32,
    pub ffn: u32,
    pub heads: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    pub vocab: u32,
    pub ffn_kind: FfnKind,
    pub tied_embeddings: bool,
    /// Experts per MoE layer; 0 for a dense model.
    pub experts: u32,
    pub top_k: u32,
    /// Layers `0..dense_layers` have a dense FFN even in an MoE model.
    pub dense_layers: u32,
    pub dense_ffn: u32,
    conv_layer_mask: Vec<bool>,
}

impl ModelGeometry {
    pub fn from_profile(p: &ModelProfile) -> Result<Self, String> {
        let layers = p.layers.value;
        let hidden = p.hidden.value;
        let heads = p.heads.value;
        let mut conv_layer_mask = vec![false; layers as usize];
        if let Some(conv) = &p.conv_layers {
            for &l in &conv.value {
                let slot = conv_layer_mask.get_mut(l as usize).ok_or_else(|| {
                    format!("conv_layers lists layer {l}, but the model has {layers} layers")
                })?;
                *slot = true;
            }
        }
        let (experts, top_k, dense_layers, dense_ffn) = match &p.moe {
            Some(m) => (
                m.experts.value,
                m.top_k.value,
                m.dense_layers.as_ref().map_or(0, |d| d.value),
                m.dense_ffn.as_ref().map_or(p.ffn.value, |d| d.value),
            ),
            None => (0, 0, layers, p.ffn.value),
        };
        let g = ModelGeometry {
            name: p.name.clone(),
            layers,
            hidden,
            ffn: p.ffn.value,
            heads,
            kv_heads: p.kv_heads.value,
            head_dim: p
                .head_dim
                .as_ref()
                .map_or(hidden.checked_div(heads).unwrap_or(0), |h| h.value),
            vocab: p.vocab.value,
            ffn_kind: p.ffn_kind,
            tied_embeddings: p.tied_embeddings,
            experts,
            top_k,
            dense_layers,
            dense_ffn,
            conv_layer_mask,
        };
        g.check()?;
        Ok(g)
    }

    fn check(&self) -> Result<(), String> {
        let positive = [
            ("layers", self.layers),
            ("hidden", self.hidden),
            ("ffn", self.ffn),
            ("heads", self.heads),
            ("kv_heads", self.kv_heads),
            ("head_dim", self.head_dim),
            ("vocab", self.vocab),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("`{name}` must be positive"));
            }
        }
        if self.is_moe() {
            if self.top_k == 0 || self.top_k > self.experts {
                return Err(format!(
                    "moe.top_k must be between 1 and moe.experts ({}), got {}",
                    self.experts, self.top_k
                ));
            }
            if self.experts > u16::MAX as u32 {
                return Err("moe.experts must fit in 16 bits".into());
            }
            if self.dense_layers > self.layers {
                return Err("moe.dense_layers exceeds the layer count".into());
            }
        }
        if self.kv_heads > self.heads {
            return Err("kv_heads cannot exceed heads".into());
        }
        Ok(())
    }

    pub fn is_moe(&self) -> bool {
        self.experts > 0
    }

    /// Whether layer `l` routes its FFN through experts.
    pub fn is_moe_layer(&self, layer: u32) -> bool {
        self.is_moe() && layer >= self.dense_layers && layer < self.layers
    }

    pub fn moe_layers(&self) -> u32 {
        if self.is_moe() {
            self.layers - self.dense_layers
        } else {
            0
        }
    }

    pub fn is_conv_layer(&self, layer: u32) -> bool {
        self.conv_layer_mask
            .get(layer as usize)
            .copied()
            .unwrap_or(false)
    }

    /// FFN width of the FFN block in layer `l` (one expert's width in MoE layers).
    pub fn ffn_width(&self, layer: u32) -> u32 {
        if self.is_moe_layer(layer) {
            self.ffn
        } else {
            self.dense_ffn
        }
    }

    /// Neurons addressable in layer `l`'s FFN: all experts' neurons side by side in MoE layers.
    pub fn neurons_in_layer(&self, layer: u32) -> u32 {
        if self.is_moe_layer(layer) {
            self.ffn * self.experts
        } else {
            self.dense_ffn
        }
    }

    fn attention_params(&self) -> u64 {
        let h = self.hidden as u64;
        let q = (self.heads * self.head_dim) as u64;
        let kv = (self.kv_heads * self.head_dim) as u64;
        h * q + 2 * h * kv + q * h
    }

    /// LFM2's gated short convolution: in_proj d→3d, out_proj d→d, depthwise kernel of 3.
    fn conv_params(&self) -> u64 {
        let h = self.hidden as u64;
        3 * h * h + h * h + 3 * h
    }

    /// Parameters of one tensor (weights only; norms are counted with [`TensorKind::Attention`]).
    pub fn params(&self, layer: u32, kind: TensorKind) -> u64 {
        let h = self.hidden as u64;
        let norms = 2 * h;
        match kind {
            TensorKind::Embedding => self.vocab as u64 * h,
            TensorKind::LmHead => {
                if self.tied_embeddings {
                    0
                } else {
                    self.vocab as u64 * h
                }
            }
            TensorKind::Attention => {
                let mixer = if self.is_conv_layer(layer) {
                    self.conv_params()
                } else {
                    self.attention_params()
                };
                mixer + norms
            }
            TensorKind::Router => {
                if self.is_moe_layer(layer) {
                    h * self.experts as u64
                } else {
                    0
                }
            }
            TensorKind::DenseFfn => self.ffn_kind.matrices() * h * self.ffn_width(layer) as u64,
            TensorKind::Expert(_) => self.ffn_kind.matrices() * h * self.ffn as u64,
            TensorKind::Neurons { count, .. } => self.ffn_kind.matrices() * h * count as u64,
            TensorKind::Whole => self.total_params(),
        }
    }

    pub fn bytes(&self, layer: u32, kind: TensorKind, precision: Precision) -> u64 {
        precision.bytes_for(self.params(layer, kind))
    }

    /// Bytes of one FFN neuron at a precision: its row of gate and up, its column of down.
    pub fn neuron_bytes(&self, precision: Precision) -> u64 {
        precision.bytes_for(self.ffn_kind.matrices() * self.hidden as u64)
    }

    /// Parameters that every token touches whatever the routing: embeddings, mixers, routers,
    /// norms, the LM head. Dense FFNs are *not* included (neuron policies offload them).
    pub fn non_ffn_params(&self) -> u64 {
        let mut p = self.params(0, TensorKind::Embedding) + self.params(0, TensorKind::LmHead);
        for l in 0..self.layers {
            p += self.params(l, TensorKind::Attention) + self.params(l, TensorKind::Router);
        }
        p
    }

    /// FFN parameters of dense layers (all layers of a dense model).
    pub fn dense_ffn_params(&self) -> u64 {
        (0..self.layers)
            .filter(|&l| !self.is_moe_layer(l))
            .map(|l| self.params(l, TensorKind::DenseFfn))
            .sum()
    }

    pub fn expert_params_total(&self) -> u64 {
        self.moe_layers() as u64
            * self.experts as u64
            * self.params(self.dense_layers, TensorKind::Expert(0))
    }

    pub fn total_params(&self) -> u64 {
        self.non_ffn_params() + self.dense_ffn_params() + self.expert_params_total()
    }

    /// Bytes of K and V for one token across all attention layers, at 16-bit.
    pub fn kv_bytes_per_token(&self) -> u64 {
        let attn_layers = (0..self.layers).filter(|&l| !self.is_conv_layer(l)).count() as u64;
        attn_layers * 2 * (self.kv_heads * self.head_dim) as u64 * 2
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::profile::{MoeSpec, RouterKind};
    use crate::sourced::Sourced;

    fn s<T>(v: T) -> Sourced<T> {
        Sourced::new(v, "test")
    }

    pub(crate) fn mixtral_profile() -> ModelProfile {
        ModelProfile {
            name: "mixtral-8x7b".into(),
            description: String::new(),
            layers: s(32),
            hidden: s(4096),
            ffn: s(14336),
            heads: s(32),
            kv_heads: s(8),
            head_dim: None,
            vocab: s(32000),
            ffn_kind: FfnKind::Gated,
            tied_embeddings: false,
            conv_layers: None,
            moe: Some(MoeSpec {
                experts: s(8),
                top_k: s(2),
                dense_layers: None,
                dense_ffn: None,
                router: RouterKind::SoftmaxTopk,
            }),
            sparsity: None,
            native_bits: s(16.0),
        }
    }

    #[test]
    fn mixtral_sizes_match_published_totals() {
        let g = ModelGeometry::from_profile(&mixtral_profile()).unwrap();
        // Mixtral-8x7B has 46.7 B parameters (model card); our count ignores only the norms'
        // small difference.
        let total = g.total_params() as f64 / 1e9;
        assert!((46.5..46.9).contains(&total), "total {total} B");
        // One expert: 3 x 4096 x 14336 = 176 M params, 352 MB at fp16 (HOBBIT: "336MB", MiB).
        assert_eq!(g.params(0, TensorKind::Expert(3)), 176_160_768);
        assert_eq!(
            g.bytes(0, TensorKind::Expert(3), Precision::Fp16),
            352_321_536
        );
        // int2 with group metadata: 2.5 bits per weight.
        assert_eq!(
            g.bytes(0, TensorKind::Expert(3), Precision::Int2),
            55_050_240
        );
        assert_eq!(g.kv_bytes_per_token(), 32 * 2 * 1024 * 2);
    }

    #[test]
    fn rejects_top_k_above_experts() {
        let mut p = mixtral_profile();
        p.moe.as_mut().unwrap().top_k = s(9);
        assert!(ModelGeometry::from_profile(&p)
            .unwrap_err()
            .contains("top_k"));
    }
}
