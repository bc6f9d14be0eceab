//! The compute of one forward pass of a dense model as TZ-LLM runs it on the RK3588.
//!
//! TZ-LLM (§4.1) runs layer norm and self-attention on the CPU and the matrix multiplications
//! on the NPU; its NPU backend offloads every weight product, in prefill and in decode, and
//! the LM head only when the vocabulary is under 50,000 (`TZ-LLM/llama.cpp@158b3bd`,
//! `ggml/src/ggml-rknpu-re.cpp`, `ggml_backend_rknpure_supports_op`). Per layer:
//! `QKV (NPU) → attention core (CPU) → O (NPU) → FFN (NPU)`. Each NPU product is issued as
//! its submissions ([`npu_jobs`](super::npu_jobs)), one op each, so the NPU's per-job
//! dispatch latency is paid per job, and computes whole tiles (a prompt's rows are padded to
//! the tile height); under the co-driver each job is wrapped in a world-switch pair. Without the NPU (the strawman) every product runs on the CPU with llama.cpp's
//! dequantize-then-multiply kernels.
//!
//! Not modelled: the CPU's share of each NPU product (activation quantization, layout change,
//! cache maintenance, output dequantization; tzllm notes §4.2) and the norms; both are small
//! next to the products.

use super::npu_jobs;
use crate::model::{ModelGeometry, Precision, TensorKind, TensorRef};
use crate::plan::{Kernel, Op, OpId, PlanBuilder, Unit, World};
use crate::trace::ForwardPass;
use std::collections::BTreeMap;

/// Where the products run and what a secure NPU job costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NpuMode {
    /// The NPU in the normal world, driven by the REE driver (the REE baselines).
    Ree,
    /// TZ-LLM's co-driver: one world-switch pair per NPU job (§4.3).
    CoDriver,
    /// The NPU handed to the TEE for the whole request, with the full driver detach/attach
    /// (32 ms, §2.3) at the request's start; REE apps cannot use it meanwhile.
    Exclusive,
    /// No NPU: every product on the CPU (the strawman, `supports_op` returns false).
    CpuOnly,
}

/// LM heads with a vocabulary this large stay on the CPU (the artifact's `k, n < 50,000`).
pub const NPU_MAX_DIM: u32 = 50_000;

/// Plans the compute ops of a pass.
#[derive(Clone, Debug)]
pub struct DensePass<'a> {
    pub model: &'a ModelGeometry,
    pub precision: Precision,
    pub npu: NpuMode,
    /// Phi-3's fused QKV and gate-up projections (one product each on the NPU).
    pub fused_projections: bool,
    /// CPU threads of the big cluster the inference runs on.
    pub threads: u16,
    pub compute_priority: i16,
}

/// The ops of a pass: the output, and per tensor the last op that used it.
pub struct PassOps {
    pub output: OpId,
    pub uses: Vec<(TensorRef, OpId)>,
}

impl DensePass<'_> {
    fn cpu(&self) -> Unit {
        Unit::Cpu {
            cluster: 0,
            threads: self.threads,
        }
    }

    /// Emits the pass. `ready` gives, per tensor, the op its weights wait for (absent: already
    /// in memory); `first_after` what the first op also waits for.
    pub fn plan(
        &self,
        pass: &ForwardPass,
        ready: &BTreeMap<TensorRef, OpId>,
        first_after: &[OpId],
        b: &mut PlanBuilder,
    ) -> PassOps {
        let m = self.model;
        let batch = pass.batch();
        let mut uses = Vec::new();
        let deps = |t: TensorRef, prev: OpId| -> Vec<OpId> {
            let mut d = vec![prev];
            d.extend(ready.get(&t).copied());
            d
        };
        let embedding = TensorRef::new(0, TensorKind::Embedding);
        // The embedding lookup: one row per token.
        let mut d: Vec<OpId> = first_after.to_vec();
        d.extend(ready.get(&embedding).copied());
        let rows = batch as u64 * m.hidden as u64;
        let mut prev = b.push_with_priority(
            Op::Compute {
                tensor: embedding,
                unit: Unit::Cpu {
                    cluster: 0,
                    threads: 1,
                },
                precision: self.precision,
                rows: batch,
                cols: m.hidden,
                batch: 1,
                flops: rows,
                bytes: self.precision.bytes_for(rows),
                kernel: Kernel::Dequant,
            },
            &d,
            self.compute_priority,
        );
        uses.push((embedding, prev));
        let q = m.heads * m.head_dim;
        let kv = m.kv_heads * m.head_dim;
        for l in 0..m.layers {
            let attn = TensorRef::new(l, TensorKind::Attention);
            let ffn = TensorRef::new(l, TensorKind::DenseFfn);
            let qkv: Vec<(u32, u32)> = if self.fused_projections {
                vec![(q + 2 * kv, m.hidden)]
            } else {
                vec![(q, m.hidden), (kv, m.hidden), (kv, m.hidden)]
            };
            prev = self.products(attn, &qkv, batch, &deps(attn, prev), b);
            prev =
                b.push_with_priority(self.attention_core(l, pass), &[prev], self.compute_priority);
            prev = self.products(attn, &[(m.hidden, q)], batch, &[prev], b);
            uses.push((attn, prev));
            let width = m.ffn_width(l);
            let ffn_products: Vec<(u32, u32)> = if self.fused_projections {
                vec![(2 * width, m.hidden), (m.hidden, width)]
            } else {
                vec![(width, m.hidden), (width, m.hidden), (m.hidden, width)]
            };
            prev = self.products(ffn, &ffn_products, batch, &deps(ffn, prev), b);
            uses.push((ffn, prev));
        }
        // Only the last token's logits are needed.
        let head = if m.tied_embeddings {
            embedding
        } else {
            TensorRef::new(0, TensorKind::LmHead)
        };
        let on_npu = m.vocab < NPU_MAX_DIM;
        prev = if on_npu {
            self.products(head, &[(m.vocab, m.hidden)], 1, &deps(head, prev), b)
        } else {
            self.cpu_product(head, m.vocab, m.hidden, 1, &deps(head, prev), b)
        };
        uses.push((head, prev));
        PassOps { output: prev, uses }
    }

    /// QK^T and attention × V over the context, on the CPU; bytes are the KV cache read.
    fn attention_core(&self, layer: u32, pass: &ForwardPass) -> Op {
        let m = self.model;
        let batch = pass.batch() as u64;
        let context = pass.context_before() as u64 + batch;
        let flops = 4 * batch * context * (m.heads * m.head_dim) as u64;
        let bytes = context * 2 * (m.kv_heads * m.head_dim) as u64 * 2;
        Op::Compute {
            tensor: TensorRef::new(layer, TensorKind::Attention),
            unit: self.cpu(),
            precision: self.precision,
            rows: 1,
            cols: 1,
            batch: pass.batch(),
            flops,
            bytes,
            kernel: Kernel::Dequant,
        }
    }

    fn cpu_product(
        &self,
        tensor: TensorRef,
        rows: u32,
        cols: u32,
        batch: u32,
        deps: &[OpId],
        b: &mut PlanBuilder,
    ) -> OpId {
        b.push_with_priority(
            Op::matmul(tensor, self.cpu(), self.precision, rows, cols, batch)
                .with_kernel(Kernel::Dequant),
            deps,
            self.compute_priority,
        )
    }

    /// The products `(n, k)` of `tensor` applied to `batch` tokens, one after another.
    fn products(
        &self,
        tensor: TensorRef,
        shapes: &[(u32, u32)],
        batch: u32,
        deps: &[OpId],
        b: &mut PlanBuilder,
    ) -> OpId {
        let mut after: Vec<OpId> = deps.to_vec();
        for &(n, k) in shapes {
            let last = match self.npu {
                NpuMode::CpuOnly => self.cpu_product(tensor, n, k, batch, &after, b),
                _ => self.npu_product(tensor, n, k, batch, &after, b),
            };
            after = vec![last];
        }
        after[0]
    }

    /// One NPU product as its submissions, each with its world-switch pair under the
    /// co-driver. The submissions split the product's work evenly.
    fn npu_product(
        &self,
        tensor: TensorRef,
        n: u32,
        k: u32,
        batch: u32,
        deps: &[OpId],
        b: &mut PlanBuilder,
    ) -> OpId {
        let jobs = npu_jobs::submissions(batch as u64, k as u64, n as u64);
        // The NPU computes whole tiles: a short prompt pays for the padded rows.
        let rows = npu_jobs::padded_rows(batch as u64, k as u64).min(u32::MAX as u64) as u32;
        let whole = Op::matmul(tensor, Unit::Accel, self.precision, n, k, rows);
        let Op::Compute { flops, bytes, .. } = whole else {
            unreachable!("matmul builds a Compute")
        };
        let mut prev: Vec<OpId> = deps.to_vec();
        for j in 0..jobs {
            let share = |x: u64| x * (j + 1) / jobs - x * j / jobs;
            if self.npu == NpuMode::CoDriver {
                let enter = b.push_with_priority(
                    Op::WorldSwitch { to: World::Secure },
                    &prev,
                    self.compute_priority,
                );
                prev = vec![enter];
            }
            let job = b.push_with_priority(
                Op::Compute {
                    tensor,
                    unit: Unit::Accel,
                    precision: self.precision,
                    rows: n,
                    cols: k,
                    batch,
                    flops: share(flops),
                    bytes: share(bytes),
                    kernel: Kernel::Lut,
                },
                &prev,
                self.compute_priority,
            );
            prev = vec![job];
            if self.npu == NpuMode::CoDriver {
                let exit = b.push_with_priority(
                    Op::WorldSwitch { to: World::Normal },
                    &prev,
                    self.compute_priority,
                );
                prev = vec![exit];
            }
        }
        prev[0]
    }
}
