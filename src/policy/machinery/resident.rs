//! The always-resident set: weights every token needs, and the KV cache.

use crate::model::{ModelGeometry, Precision, TensorKind, TensorRef};
use crate::plan::{Op, OpId, PlanBuilder};
use crate::policy::context::{PolicyContext, PolicyError};
use crate::policy::machinery::load_ops::{Load, LoadOps, ReadOptions};
use std::sync::Arc;

/// Request size for bulk sequential loads (warm-up, whole experts). Large enough to reach a
/// device's sequential bandwidth on every read curve we model.
pub const BULK_REQUEST_BYTES: u32 = 1 << 20;

/// The tensors that stay in memory for the whole run, at the resident precision.
#[derive(Clone, Debug)]
pub struct ResidentSet {
    tensors: Vec<(TensorRef, u64)>,
    kv_bytes: u64,
    precision: Precision,
    /// How the warm-up's loads become ops (the context's).
    load_ops: Arc<dyn LoadOps>,
}

impl ResidentSet {
    /// Non-FFN weights, plus dense FFNs when `with_dense_ffn` (expert policies keep dense
    /// layers resident; neuron policies offload them), plus the KV cache.
    pub fn new(ctx: &PolicyContext, with_dense_ffn: bool) -> Self {
        let m: &ModelGeometry = &ctx.model;
        let p = ctx.resident_precision;
        let mut tensors = Vec::new();
        let mut add = |layer: u32, kind: TensorKind| {
            let bytes = m.bytes(layer, kind, p);
            if bytes > 0 {
                tensors.push((TensorRef::new(layer, kind), bytes));
            }
        };
        add(0, TensorKind::Embedding);
        for l in 0..m.layers {
            add(l, TensorKind::Attention);
            add(l, TensorKind::Router);
            if with_dense_ffn && !m.is_moe_layer(l) {
                add(l, TensorKind::DenseFfn);
            }
        }
        add(0, TensorKind::LmHead);
        ResidentSet {
            tensors,
            kv_bytes: m.kv_bytes_per_token() * ctx.max_context as u64,
            precision: p,
            load_ops: ctx.load_ops.clone(),
        }
    }

    /// Adds tensors of the policy's own that stay resident too (PowerInfer-2's predictors in
    /// its fixed region), loaded by the warm-up like the rest.
    pub fn add_extra(&mut self, tensors: impl IntoIterator<Item = (TensorRef, u64)>) {
        self.tensors.extend(tensors);
    }

    pub fn bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.1).sum::<u64>() + self.kv_bytes
    }

    /// Fails with the required size when the budget cannot hold the resident set plus
    /// `extra` bytes (the least a policy needs to make progress, e.g. one expert).
    pub fn check_budget(
        &self,
        ctx: &PolicyContext,
        extra: u64,
        what: &str,
    ) -> Result<(), PolicyError> {
        ctx.require_budget(self.bytes() + extra, what)
    }

    /// Loads every resident tensor, allocates the KV cache; returns the op marking the end of
    /// warm-up.
    pub fn plan_warmup(&self, b: &mut PlanBuilder) -> OpId {
        let mut reads = Vec::with_capacity(self.tensors.len() + 1);
        for &(tensor, bytes) in &self.tensors {
            let load = Load {
                tensor,
                precision: self.precision,
                bytes,
                request_bytes: BULK_REQUEST_BYTES,
                alloc_after: &[],
                read_after: &[],
                read: ReadOptions::default(),
            };
            reads.push(self.load_ops.load(&load, b));
        }
        let kv = b.push(
            Op::Alloc {
                tensor: TensorRef::new(0, TensorKind::KvCache),
                bytes: self.kv_bytes,
                secure: false,
            },
            &[],
        );
        reads.push(kv);
        let done = b.push(Op::Join, &reads);
        b.set_output(done);
        done
    }
}
