//! Ops every forward pass has whatever the policy: attention (or the short convolution), the
//! router, dense FFNs and the LM head, computed from always-resident weights.

use crate::model::{ModelGeometry, Precision, TensorKind, TensorRef};
use crate::plan::{Kernel, Op, Unit};
use crate::trace::ForwardPass;

/// Builds the compute ops whose weights never leave memory.
#[derive(Clone, Debug)]
pub struct ResidentOps<'a> {
    pub model: &'a ModelGeometry,
    pub precision: Precision,
}

impl<'a> ResidentOps<'a> {
    /// The token mixer of `layer` for the pass's `batch` tokens: projections, plus score and
    /// value work over the context for attention layers. Bytes include the KV cache read.
    pub fn mixer(&self, layer: u32, pass: &ForwardPass, unit: Unit) -> Op {
        let m = self.model;
        let tensor = TensorRef::new(layer, TensorKind::Attention);
        let params = m.params(layer, TensorKind::Attention);
        let batch = pass.batch() as u64;
        let mut flops = 2 * params * batch;
        let mut bytes = self.precision.bytes_for(params);
        if !m.is_conv_layer(layer) {
            let context = pass.context_before() as u64 + batch;
            // QK^T and attention x V: 2 flops per multiply-add, two products, per head dim.
            flops += 4 * batch * context * (m.heads * m.head_dim) as u64;
            bytes += context * 2 * (m.kv_heads * m.head_dim) as u64 * 2;
        }
        Op::Compute {
            tensor,
            unit,
            precision: self.precision,
            rows: (params / m.hidden as u64).min(u32::MAX as u64) as u32,
            cols: m.hidden,
            batch: pass.batch(),
            flops,
            bytes,
            kernel: Kernel::Lut,
        }
    }

    pub fn router(&self, layer: u32, pass: &ForwardPass, unit: Unit) -> Op {
        Op::matmul(
            TensorRef::new(layer, TensorKind::Router),
            unit,
            self.precision,
            self.model.experts,
            self.model.hidden,
            pass.batch(),
        )
    }

    pub fn dense_ffn(&self, layer: u32, pass: &ForwardPass, unit: Unit) -> Op {
        let m = self.model;
        Op::matmul(
            TensorRef::new(layer, TensorKind::DenseFfn),
            unit,
            self.precision,
            m.ffn_kind.matrices() as u32 * m.ffn_width(layer),
            m.hidden,
            pass.batch(),
        )
    }

    /// Only the last token's logits are needed, prefill or not.
    pub fn lm_head(&self, unit: Unit) -> Op {
        let m = self.model;
        let kind = if m.tied_embeddings {
            TensorKind::Embedding
        } else {
            TensorKind::LmHead
        };
        Op::matmul(
            TensorRef::new(0, kind),
            unit,
            self.precision,
            m.vocab,
            m.hidden,
            1,
        )
    }
}

/// One expert's compute for the `tokens` of a pass routed to it.
pub fn expert_compute(
    model: &ModelGeometry,
    layer: u32,
    expert: u16,
    precision: Precision,
    unit: Unit,
    tokens: u32,
) -> Op {
    Op::matmul(
        TensorRef::new(layer, TensorKind::Expert(expert)),
        unit,
        precision,
        model.ffn_kind.matrices() as u32 * model.ffn,
        model.hidden,
        tokens,
    )
}
