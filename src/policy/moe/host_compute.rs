//! Policies for a discrete accelerator whose experts live in host memory and that compute
//! the experts not in accelerator memory on the host CPU instead of copying them over:
//!
//! - `fiddler` (Kamahori et al., arXiv 2402.07033; HOBBIT's FD baseline): a fixed set of
//!   experts stays in accelerator memory; any other expert is computed where it is cheaper,
//!   on the CPU from host memory (only the activations cross the link) or on the accelerator
//!   after copying its weights, by Fiddler's latency model as its code has it
//!   (efeslab/fiddler @227715b, `src/fiddler/mixtral.py`: `latency_cpu = 7` per token,
//!   `latency_gpu = 70` per copy, "TODO: find this value based on device config"; the sum is
//!   minimised, so the CPU below 10 tokens, a copy from 10). Weights are bf16 (`self.dtype =
//!   torch.bfloat16`; README: "only supports a 16-bit Mixtral-8x7B"), edgesim's `fp16`.
//! - `llama-cpp-offload` (llama.cpp with all non-expert weights on the GPU and the expert
//!   tensors of the layers that do not fit kept in host memory, `--override-tensor exps=CPU`
//!   style; HOBBIT's LL baseline on the RTX 4090 + CPU): the experts of as many whole MoE
//!   layers as fit, from the first, stay on the accelerator; the other layers' experts are
//!   computed on the CPU, except in passes of at least 32 tokens, where ggml copies the
//!   weights to the GPU (ggml-backend's op offload of large batches).
//!
//! Fiddler places experts by offline-profiled popularity, which edgesim does not have; its
//! stand-in is a layer-balanced set (expert 0 of every layer, then expert 1, ...), which is
//! what popularity placement gives when popularity is near uniform (Mixtral-8x7B's per-layer
//! Gini is about 0.1). The activation copies to and from the host (a few KiB per token) are
//! not modelled. Neither policy evicts: the static set is loaded at warm-up; copies made for
//! large batches use the rest of the budget as a staging area, freed right after use.
//! Parameters: `fiddler`: `{"precision": "native" | "experiment", "placement_rule": "code" |
//! "profile"}` (the profile rule compares the device profile's CPU and copy costs);
//! `llama-cpp-offload`: none.

use crate::hw::cost::DeviceCosts;
use crate::hw::OffloadTier;
use crate::model::{ModelGeometry, Precision, TensorKind, TensorRef};
use crate::plan::{Op, OpId, PlanBuilder, Unit};
use crate::policy::context::parse_params;
use crate::policy::context::{Counters, PolicyContext, PolicyError};
use crate::policy::machinery::cache::tensor_cache::TensorCache;
use crate::policy::machinery::pass::moe::{
    expert_key, ExpertDemand, ExpertSupplier, LayerCx, Supply,
};
use crate::policy::machinery::placement::Placement;
use crate::policy::machinery::resident::BULK_REQUEST_BYTES;
use crate::policy::moe::shell::{cache_capacity, ExpertPolicy, ExpertState};
use crate::policy::moe::{native_precisions, PrecisionChoice};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Fiddler's hard-coded cost of one token of an expert on the CPU (`latency_cpu = 7`).
pub const FIDDLER_LATENCY_CPU: u64 = 7;
/// Fiddler's hard-coded cost of copying one expert to the GPU (`latency_gpu = 70`).
pub const FIDDLER_LATENCY_GPU: u64 = 70;

/// Smallest pass llama.cpp's scheduler offloads host-resident weights to the GPU for
/// (ggml-backend.cpp, `ggml_backend_sched` op offload: batch size >= 32).
pub const LLAMA_CPP_OFFLOAD_MIN_BATCH: u32 = 32;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FiddlerParams {
    precision: PrecisionChoice,
    placement_rule: PlacementRule,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParams {}

/// How Fiddler decides between the CPU and a copy for a non-resident expert.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum PlacementRule {
    /// The code's constants: the CPU below 10 tokens.
    #[default]
    Code,
    /// The device profile's cost functions (the paper's intent).
    Profile,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Fiddler,
    LlamaCpp,
}

pub struct HostCompute {
    mode: Mode,
    /// Fiddler decides CPU or copy by the device profile's costs, not its code's constants.
    profile_rule: bool,
    model: Arc<ModelGeometry>,
    precision: Precision,
    costs: DeviceCosts,
    cpu: Unit,
    /// Experts kept in accelerator memory, loaded at warm-up.
    resident: BTreeSet<TensorRef>,
    /// The static set and, transiently, copies made for one use.
    area: TensorCache,
    /// Experts copied for this layer's use only: evicted once computed.
    staged: Vec<TensorRef>,
    counters: Counters,
}

pub fn build(mode: Mode, mut ctx: PolicyContext) -> Result<ExpertPolicy<HostCompute>, PolicyError> {
    let name = match mode {
        Mode::Fiddler => "fiddler",
        Mode::LlamaCpp => "llama-cpp-offload",
    };
    crate::policy::moe::require_moe(&ctx, name)?;
    let mut profile_rule = false;
    match mode {
        Mode::Fiddler => {
            let p: FiddlerParams = parse_params(name, &ctx.params)?;
            // `self.dtype = torch.bfloat16`; README: "only supports a 16-bit Mixtral-8x7B".
            native_precisions(&mut ctx, p.precision, Precision::Fp16, Precision::Fp16);
            profile_rule = p.placement_rule == PlacementRule::Profile;
        }
        Mode::LlamaCpp => {
            parse_params::<NoParams>(name, &ctx.params)?;
        }
    }
    if ctx.device.offload_tier != OffloadTier::HostMemory {
        return Err(PolicyError::Unsupported(format!(
            "policy `{name}` computes experts on the CPU from host memory, but device `{}` \
             offloads experts to flash; use it on a discrete-GPU host (e.g. rtx-4090-host)",
            ctx.device.name
        )));
    }
    if ctx.device.accelerator.is_none() {
        return Err(PolicyError::Unsupported(format!(
            "policy `{name}` splits experts between an accelerator and the CPU, but device `{}` has no accelerator",
            ctx.device.name
        )));
    }
    let costs = DeviceCosts::new(&ctx.device)
        .map_err(|e| PolicyError::Unsupported(format!("device `{}`: {e}", ctx.device.name)))?;
    let precision = ctx.offload_precision;
    let first = ctx.model.dense_layers;
    let expert = ctx.model.bytes(first, TensorKind::Expert(0), precision);
    // One expert of room: the staging slot for copies.
    let capacity = cache_capacity(&ctx, expert, "the resident set plus one expert")?;
    let static_bytes = capacity.saturating_sub(expert);
    let slots = (static_bytes / expert) as u32;
    let (layers, experts) = (ctx.model.moe_layers(), ctx.model.experts);
    let mut resident = BTreeSet::new();
    let total = layers * experts;
    for i in 0..slots.min(total) {
        let (layer, e) = match mode {
            // Expert-major: every layer gets its share.
            Mode::Fiddler => (i % layers, i / layers),
            // Layer-major: whole layers from the first.
            Mode::LlamaCpp => (i / experts, i % experts),
        };
        if mode == Mode::LlamaCpp && (i / experts + 1) * experts > slots {
            break;
        }
        resident.insert(expert_key(first + layer, e as u16));
    }
    let state = HostCompute {
        mode,
        profile_rule,
        cpu: Placement::new(&ctx.device).cpu(),
        model: ctx.model.clone(),
        precision,
        costs,
        resident,
        area: TensorCache::new(capacity, ctx.load_ops.clone()),
        staged: Vec::new(),
        counters: Counters::default(),
    };
    let name: &'static str = match mode {
        Mode::Fiddler => "fiddler",
        Mode::LlamaCpp => "llama-cpp-offload",
    };
    let policy = ExpertPolicy::new(name, ctx, precision, state);
    Ok(match mode {
        // Fiddler runs its CPU experts with its own kernels on unquantized weights: the
        // profile's best CPU rate (LUT kernels only matter for low-bit formats).
        Mode::Fiddler => policy,
        // llama.cpp's CPU backend computes quantized experts with its dequantize-then-multiply
        // kernels (`ggml_vec_dot_*_q8_*`).
        Mode::LlamaCpp => policy.with_kernel(crate::plan::Kernel::Dequant),
    })
}

impl HostCompute {
    /// Whether computing `tokens` tokens of an expert not in accelerator memory should copy
    /// it over rather than run on the CPU.
    fn copy_over(&self, key: &TensorRef, tokens: u32) -> Result<bool, PolicyError> {
        match self.mode {
            Mode::LlamaCpp => Ok(tokens >= LLAMA_CPP_OFFLOAD_MIN_BATCH),
            // Fiddler's code (efeslab/fiddler @227715b, `src/fiddler/mixtral.py`): cost
            // `latency_cpu = 7` per token on the CPU, `latency_gpu = 70` per expert copy, the
            // sum minimised over assignments: a non-resident expert runs on the CPU below 10
            // tokens. `"placement_rule": "profile"` compares the device profile's costs.
            Mode::Fiddler if !self.profile_rule => {
                Ok(tokens as u64 * FIDDLER_LATENCY_CPU >= FIDDLER_LATENCY_GPU)
            }
            Mode::Fiddler => {
                let op = crate::policy::machinery::pass::resident_ops::expert_compute(
                    &self.model,
                    key.layer as u32,
                    0,
                    self.precision,
                    self.cpu,
                    tokens,
                );
                let Op::Compute { flops, bytes, .. } = op else {
                    unreachable!("expert_compute builds a Compute op");
                };
                let err = |e: crate::hw::cost::CostError| PolicyError::Unsupported(e.to_string());
                let Unit::Cpu { threads, .. } = self.cpu else {
                    unreachable!("Placement::cpu is a CPU unit");
                };
                let cpu = self.costs.cpu(0).map_err(err)?.compute(
                    threads as u32,
                    self.precision,
                    flops,
                    bytes,
                );
                let Ok(cpu) = cpu else {
                    // No CPU kernel at this precision: copying is the only way.
                    return Ok(true);
                };
                let Ok(gpu) =
                    self.costs
                        .accel()
                        .map_err(err)?
                        .compute(self.precision, flops, bytes)
                else {
                    // No accelerator kernel at this precision: the CPU is the only way.
                    return Ok(false);
                };
                let copy = self.costs.link().map_err(err)?.transfer(bytes) + gpu;
                Ok(copy < cpu)
            }
        }
    }

    pub fn resident_experts(&self) -> &BTreeSet<TensorRef> {
        &self.resident
    }
}

impl ExpertSupplier for HostCompute {
    fn begin_layer(
        &mut self,
        _cx: &mut LayerCx<'_>,
        _demands: &[ExpertDemand],
    ) -> Result<(), PolicyError> {
        self.staged.clear();
        Ok(())
    }

    fn supply(
        &mut self,
        cx: &mut LayerCx<'_>,
        _index: usize,
        d: &ExpertDemand,
    ) -> Result<Supply, PolicyError> {
        let key = expert_key(cx.layer, d.expert);
        if let Some(e) = self.area.get(&key) {
            self.counters.hits += 1;
            return Ok(Supply::Compute {
                precision: e.precision,
                ready: Some(e.ready),
                unit: None,
            });
        }
        self.counters.misses += 1;
        if !self.copy_over(&key, d.tokens)? {
            return Ok(Supply::Compute {
                precision: self.precision,
                ready: None,
                unit: Some(self.cpu),
            });
        }
        let bytes = self.model.bytes(cx.layer, key.kind, self.precision);
        // Staged copies are evicted as soon as their compute is planned, so the staging slot
        // is free here; the Alloc waits for the eviction whose memory it takes.
        let ready = self.area.load(
            key,
            self.precision,
            bytes,
            BULK_REQUEST_BYTES,
            &[],
            &[cx.router],
            false,
            cx.builder,
        );
        self.staged.push(key);
        Ok(Supply::Compute {
            precision: self.precision,
            ready: Some(ready),
            unit: None,
        })
    }

    fn computed(&mut self, cx: &mut LayerCx<'_>, expert: u16, op: OpId) {
        let key = expert_key(cx.layer, expert);
        if self.area.contains(&key) {
            self.area.record_use(&key, op);
        }
        if let Some(i) = self.staged.iter().position(|k| *k == key) {
            self.staged.swap_remove(i);
            self.area.evict(key, cx.builder);
            self.counters.evictions += 1;
        }
    }

    fn counters(&mut self) -> &mut Counters {
        &mut self.counters
    }
}

impl ExpertState for HostCompute {
    fn warmup(
        &mut self,
        b: &mut PlanBuilder,
        resident_done: OpId,
    ) -> Result<Option<OpId>, PolicyError> {
        if self.resident.is_empty() {
            return Ok(None);
        }
        let mut reads = Vec::with_capacity(self.resident.len());
        for &key in &self.resident {
            let bytes = self.model.bytes(key.layer as u32, key.kind, self.precision);
            reads.push(self.area.load(
                key,
                self.precision,
                bytes,
                BULK_REQUEST_BYTES,
                &[],
                &[resident_done],
                false,
                b,
            ));
        }
        Ok(Some(b.push(Op::Join, &reads)))
    }

    fn cache_bytes(&self) -> u64 {
        self.area.used_bytes()
    }

    fn counters_ref(&self) -> &Counters {
        &self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::test_support::{context_for, decode, plan, reads, tiny_with};
    use crate::policy::Policy;

    fn warm(p: &mut dyn Policy) -> u64 {
        let mut b = PlanBuilder::new(0);
        p.plan_warmup(&mut b).unwrap();
        b.finish().unwrap().end_id()
    }

    #[test]
    fn fiddler_computes_misses_on_the_cpu_at_batch_one() {
        let m = tiny_with(2, 4);
        // Room for 3 experts: one staging slot, two static experts (layer-balanced).
        let mut p = build(
            Mode::Fiddler,
            context_for(
                m,
                3.0,
                Precision::Fp16,
                true,
                serde_json::json!({"precision": "experiment"}),
            ),
        )
        .unwrap();
        assert_eq!(
            p.state
                .resident_experts()
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            vec![TensorRef::expert(0, 0), TensorRef::expert(1, 0)]
        );
        let next = warm(&mut p);
        let w = [(0u16, 0.6f32), (1, 0.4)];
        let pl = plan(&mut p, &decode(0, 0, &[&w, &w]), next);
        // Experts 0 hit; experts 1 run on the CPU: nothing is read.
        assert!(reads(&pl).is_empty());
        let cpu_experts = pl
            .nodes()
            .iter()
            .filter(|n| {
                matches!(
                    n.op,
                    Op::Compute {
                        tensor: TensorRef {
                            kind: TensorKind::Expert(1),
                            ..
                        },
                        unit: Unit::Cpu { .. },
                        ..
                    }
                )
            })
            .count();
        assert_eq!(cpu_experts, 2);
        assert_eq!((p.counters().hits, p.counters().misses), (2, 2));
    }

    #[test]
    fn fiddler_copies_from_ten_tokens_as_its_code_does() {
        let m = tiny_with(2, 4);
        let p = build(
            Mode::Fiddler,
            context_for(m, 3.0, Precision::Fp16, true, serde_json::json!({})),
        )
        .unwrap();
        let key = TensorRef::expert(0, 3);
        assert!(!p.state.copy_over(&key, 9).unwrap());
        assert!(p.state.copy_over(&key, 10).unwrap());
        assert!(p.state.copy_over(&key, 128).unwrap());
    }

    #[test]
    fn llama_cpp_keeps_whole_layers_and_refuses_flash_devices() {
        let m = tiny_with(2, 4);
        let p = build(
            Mode::LlamaCpp,
            context_for(
                m.clone(),
                7.0,
                Precision::Fp16,
                true,
                serde_json::Value::Null,
            ),
        )
        .unwrap();
        // 6 static slots, 4 experts per layer: one whole layer.
        assert_eq!(p.state.resident_experts().len(), 4);
        assert!(p.state.resident_experts().iter().all(|k| k.layer == 0));
        let err = build(
            Mode::LlamaCpp,
            context_for(m, 7.0, Precision::Fp16, false, serde_json::Value::Null),
        )
        .err()
        .unwrap();
        assert!(matches!(err, PolicyError::Unsupported(_)), "{err}");
    }
}
