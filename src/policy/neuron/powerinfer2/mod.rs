//! **PowerInfer-2** (Xue, Song et al., arXiv 2406.06282 v3) and, as a preset of the same
//! code, **PowerInfer** v1 (Song et al., arXiv 2312.12456, extended to flash as PowerInfer-2
//! §2.4 did). Each technique is a switch (`Params`), so an ablation is one flag away.
//!
//! The paper's decode step (§4.1.2–4.4, Fig. 5b, Fig. 6), as [`pass`] plans it per layer:
//!
//! ```text
//! attention(l)                              NPU (npu) or the CPU compute cluster
//!   || hot cluster of l read sequentially   if not in the hot region (preload during attention)
//! hot:  dense GEMM over ranks 0..hot[l]     NPU (npu) or the CPU pool
//! cold: predicted = predictor(x)            CPU, costed as a GEMV (predictor_rank)
//!       for each cold cluster c (cold_cluster_neurons ranks):      the neuron-cluster pipeline
//!           GIO: read the gate part of each predicted neuron not cached   (one I/O queue)
//!           GC:  gate rows × x                                            (any free core)
//!           UDIO: read the up/down part of those whose gate is non-zero   (two_phase)
//!           UDC: up · gate, accumulate down
//! join(l) = merge of NPU and CPU partial outputs
//! ```
//!
//! Prefill with `npu` (§4.1.1): no predictor; all of a layer's neurons form one cluster
//! computed on the NPU, and one big core reads the next layer's missing neurons sequentially
//! into a staging area while the NPU computes.
//!
//! Memory (§4.2): the fixed region (resident set: attention, embeddings, LM head, KV cache,
//! plus the predictors), the hot region (one dense cluster per layer, cluster-level LRU) and
//! the cold region (neuron-level LRU, or a static placement for `powerinfer`, or none).
//! Evicted weights are discarded. The prefill staging area is taken from the cache.
//!
//! | file | holds |
//! | --- | --- |
//! | [`planner`] | the offline planner: calibration, neuron order, hot cluster cap |
//! | [`regions`] | the hot and cold regions and the prefill staging area |
//! | [`pass`] | the plan of one forward pass |

pub mod pass;
pub mod planner;
pub mod regions;
#[cfg(test)]
mod tests;

use crate::hw::cost::DeviceCosts;
use crate::model::{ModelGeometry, Precision};
use crate::plan::{PlanBuilder, Unit};
use crate::policy::context::{parse_params, Counters, MemoryUse, PolicyContext, PolicyError};
use crate::policy::machinery::resident::{ResidentSet, BULK_REQUEST_BYTES};
use crate::policy::Policy;
use crate::trace::ForwardPass;
use planner::{CalibrationSpec, NeuronPlan};
use regions::{ColdMode, Regions};
use serde::Deserialize;

/// Predictor hidden width when not given: derived from Bamboo-7B's published predictors
/// (`bamboo-7b-v0.1.Q4_0.powerinfer.gguf` 4.68 GB vs the dense Q4_0 4.26 GB: 0.42 GB of Q4_0
/// predictors ≈ 0.75 B parameters; per layer 23.4 M = r × (4096 + 14336), r ≈ 1270).
pub const DEFAULT_PREDICTOR_RANK: u32 = 1270;

/// The switches and sizes. Defaults are PowerInfer-2 as published.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Hot/cold split by calibration frequency (off: every neuron is cold).
    pub hot_cold: bool,
    /// Gate-Up-Down bundles stored together, aligned to 4 KiB (off: gate, up and down rows in
    /// three matrices, a read per row).
    pub bundles: bool,
    /// INT4 two-phase reads: the gate part, then the up/down part only when the gate is
    /// non-zero (off, or at FP16: the whole bundle in one read).
    pub two_phase: bool,
    /// Cold region: `lru` (neuron-level LRU, PowerInfer-2), `static` (the most frequent cold
    /// neurons that fit stay resident, the rest staged and dropped: PowerInfer v1's fixed
    /// placement), `none` (every cold neuron staged and dropped).
    pub cold_cache: ColdMode,
    /// The neuron-cluster pipeline: each cluster's compute starts when its own reads end, across
    /// the matrix barrier (off: all gate reads, then all gate computes, then all up/down reads,
    /// then all up/down computes).
    pub pipeline: bool,
    /// NPU prefill and hybrid decode (hot rows dense on the NPU); off: all on the CPU.
    pub npu: bool,
    /// Neurons (ranks) per cold cluster: the unit of a CPU compute op (§4.1.2: chunks such as
    /// 512×4096).
    pub cold_cluster_neurons: u32,
    /// Predicted set: `trace` (the trace's recorded predictor output, when it has one) or
    /// `oracle` (the true active set).
    pub predictor: PredictorSource,
    /// Cost the predictor: a GEMV of `predictor_rank × (hidden + ffn)` weights per layer, and
    /// its weights in the fixed region.
    pub predictor_cost: bool,
    pub predictor_rank: u32,
    /// Name of the CPU cluster that runs attention (without NPU) and the compute pool.
    pub compute_cluster: Option<String>,
    /// Overrides the planner's hot cap (neurons per layer).
    pub hot_neurons: Option<u32>,
    /// The calibration trace of the offline planner (required when `hot_cold` or `static`).
    pub calibration: Option<CalibrationSpec>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PredictorSource {
    Trace,
    Oracle,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            hot_cold: true,
            bundles: true,
            two_phase: true,
            cold_cache: ColdMode::Lru,
            pipeline: true,
            npu: true,
            cold_cluster_neurons: 512,
            predictor: PredictorSource::Trace,
            predictor_cost: true,
            predictor_rank: DEFAULT_PREDICTOR_RANK,
            compute_cluster: None,
            hot_neurons: None,
            calibration: None,
        }
    }
}

impl Params {
    /// PowerInfer v1 on a phone with flash (PowerInfer-2 §2.4's extension): hot neurons dense
    /// on the fast unit, cold neurons on the CPU from a fixed placement, the rest loaded
    /// synchronously per token; no bundles, no pipeline, no NPU prefill.
    fn powerinfer_v1() -> Self {
        Params {
            bundles: false,
            two_phase: false,
            cold_cache: ColdMode::Static,
            pipeline: false,
            ..Params::default()
        }
    }
}

/// Bytes and read requests of one cold neuron's parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeuronLayout {
    /// Gate part (two-phase) or the whole bundle (one read).
    pub first_bytes: u64,
    pub first_request: u32,
    /// Up/down part (two-phase only; 0 otherwise).
    pub second_bytes: u64,
    pub second_request: u32,
    /// Bytes a neuron occupies in the hot region (dense, unpadded).
    pub dense_bytes: u64,
}

impl NeuronLayout {
    /// §4.4: INT4 bundles are 7.5 KB stored aligned to 8 KB and read as two 4 KB parts; FP16
    /// bundles are one 24 KB read. Without bundles each of the neuron's rows is a read of its
    /// own (the gate, then up and down).
    pub fn new(
        model: &ModelGeometry,
        precision: Precision,
        bundles: bool,
        two_phase: bool,
    ) -> Self {
        let matrices = model.ffn_kind.matrices();
        let row = precision.bytes_for(model.hidden as u64);
        let dense = precision.bytes_for(matrices * model.hidden as u64);
        let two_phase = two_phase && precision.is_quantized() && matrices == 3;
        if bundles {
            let aligned = dense.div_ceil(4096) * 4096;
            if two_phase {
                NeuronLayout {
                    first_bytes: aligned / 2,
                    first_request: (aligned / 2) as u32,
                    second_bytes: aligned / 2,
                    second_request: (aligned / 2) as u32,
                    dense_bytes: dense,
                }
            } else {
                NeuronLayout {
                    first_bytes: aligned,
                    first_request: aligned.min(BULK_REQUEST_BYTES as u64) as u32,
                    second_bytes: 0,
                    second_request: 0,
                    dense_bytes: dense,
                }
            }
        } else if two_phase {
            NeuronLayout {
                first_bytes: row,
                first_request: row as u32,
                second_bytes: row * (matrices - 1),
                second_request: row as u32,
                dense_bytes: dense,
            }
        } else {
            NeuronLayout {
                first_bytes: row * matrices,
                first_request: row as u32,
                second_bytes: 0,
                second_request: 0,
                dense_bytes: dense,
            }
        }
    }

    pub fn two_phase(&self) -> bool {
        self.second_bytes > 0
    }

    pub fn cached_bytes(&self) -> u64 {
        self.first_bytes + self.second_bytes
    }
}

/// What the policy measured about its predictor, for the report's notes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PredictorCounts {
    /// Active cold neurons (true set), predicted cold neurons, and both.
    pub active: u64,
    pub predicted: u64,
    pub both: u64,
}

pub struct PowerInfer2 {
    name: &'static str,
    ctx: PolicyContext,
    params: Params,
    resident: ResidentSet,
    plan: NeuronPlan,
    layout: NeuronLayout,
    regions: Regions,
    attention_unit: Unit,
    /// One core of the compute cluster: the pool's unit of work.
    pool: Unit,
    /// Every core of the compute cluster (the predictor's GEMV, attention without the NPU).
    cpu_all: Unit,
    counters: Counters,
    predictor_counts: PredictorCounts,
    scratch: pass::Scratch,
}

/// Builds `powerinfer2` or `powerinfer` (v1) for a dense model with a neuron trace.
pub fn build(name: &str, ctx: PolicyContext) -> Result<Box<dyn Policy>, PolicyError> {
    let (static_name, defaults) = match name {
        "powerinfer2" => ("powerinfer2", Params::default()),
        "powerinfer" => ("powerinfer", Params::powerinfer_v1()),
        _ => return Err(PolicyError::Unsupported(format!("no policy `{name}` here"))),
    };
    if ctx.model.is_moe() {
        return Err(PolicyError::Unsupported(format!(
            "policy `{name}` plans dense models with a neuron trace; `{}` is an MoE (TurboSparse-Mixtral's neurons inside experts are not modelled yet)",
            ctx.model.name
        )));
    }
    let params = merge_params(name, defaults, &ctx.params)?;
    if params.cold_cluster_neurons == 0 || params.predictor_rank == 0 {
        return Err(PolicyError::BadParameter(format!(
            "policy `{name}`: `cold_cluster_neurons` and `predictor_rank` must be at least 1"
        )));
    }
    let costs = DeviceCosts::new(&ctx.device)
        .map_err(|e| PolicyError::BadParameter(format!("device `{}`: {e}", ctx.device.name)))?;
    let cluster = match &params.compute_cluster {
        Some(n) => ctx
            .device
            .cpu
            .iter()
            .position(|c| &c.name == n)
            .ok_or_else(|| {
                PolicyError::BadParameter(format!(
                    "policy `{name}`: device `{}` has no CPU cluster `{n}`",
                    ctx.device.name
                ))
            })?,
        // The planner's default: the cluster with the most cores among the fast ones, i.e.
        // "mid" on a 1+5+2 phone (Fig. 6 uses 4 compute cores and 1 I/O core; the I/O
        // thread issues reads and holds no core in this model).
        None => ctx
            .device
            .cpu
            .iter()
            .position(|c| c.name == "mid")
            .unwrap_or(0),
    };
    let cores = ctx.device.cpu[cluster].cores.value.max(1) as u16;
    let pool = Unit::Cpu {
        cluster: cluster as u8,
        threads: 1,
    };
    let cpu_all = Unit::Cpu {
        cluster: cluster as u8,
        threads: cores,
    };
    let has_npu = ctx.device.accelerator.is_some()
        && ctx.device.accel_rate(ctx.resident_precision).is_some()
        && ctx.device.accel_rate(ctx.offload_precision).is_some();
    if params.npu && !has_npu {
        return Err(PolicyError::Unsupported(format!(
            "policy `{name}` with `npu` needs an accelerator with {} and {} rates; device `{}` has none (set `\"npu\": false`)",
            ctx.resident_precision, ctx.offload_precision, ctx.device.name
        )));
    }
    let attention_unit = if params.npu { Unit::Accel } else { cpu_all };
    let model = ctx.model.clone();
    let precision = ctx.offload_precision;
    let layout = NeuronLayout::new(&model, precision, params.bundles, params.two_phase);
    let mut plan = match (&params.calibration, params.hot_cold || params.cold_cache == ColdMode::Static) {
        (Some(c), _) => NeuronPlan::calibrate(&model, c)?,
        (None, false) => NeuronPlan::from_counts(
            &(0..model.layers)
                .map(|l| vec![0; model.ffn_width(l) as usize])
                .collect::<Vec<_>>(),
            1,
        ),
        (None, true) => {
            return Err(PolicyError::BadParameter(format!(
                "policy `{name}`: the hot/cold split (and a static cold placement) needs `calibration` (model_seed, seed, tokens, active_fraction): the offline planner profiles a calibration trace, never the evaluated one"
            )))
        }
    };
    if params.hot_cold {
        let seq = costs.flash.curve_bytes_per_s(BULK_REQUEST_BYTES as u64);
        let context = ctx.max_context as u64 / 2;
        let m = model.clone();
        let dense = layout.dense_bytes;
        let fixed = params.hot_neurons;
        plan.cap_hot(&|l| {
            if let Some(h) = fixed {
                return h;
            }
            let t = planner::attention_time_ns(
                &costs,
                &m,
                ctx.resident_precision,
                l,
                context,
                attention_unit,
            );
            ((seq * t as f64 * 1e-9) / dense as f64).floor() as u32
        });
    }
    let mut resident = ResidentSet::new(&ctx, false);
    let predictor_bytes: Vec<u64> = (0..model.layers)
        .map(|l| {
            if params.predictor_cost {
                ctx.resident_precision.bytes_for(
                    params.predictor_rank as u64 * (model.hidden + model.ffn_width(l)) as u64,
                )
            } else {
                0
            }
        })
        .collect();
    resident.add_extra(
        predictor_bytes
            .iter()
            .enumerate()
            .filter(|(_, &b)| b > 0)
            .map(|(l, &b)| (pass::predictor_tensor(l as u32), b)),
    );
    let staging = if params.npu {
        2 * (0..model.layers)
            .map(|l| model.ffn_width(l) as u64 * layout.dense_bytes)
            .max()
            .unwrap_or(0)
    } else {
        0
    };
    let least = layout.cached_bytes().max(layout.dense_bytes) * params.cold_cluster_neurons as u64
        + staging;
    resident.check_budget(
        &ctx,
        least,
        "the fixed region (with the predictors), the prefill staging area and one cold cluster",
    )?;
    let capacity = ctx.budget_bytes - resident.bytes();
    let regions = Regions::new(
        &ctx,
        &model,
        &mut plan,
        &layout,
        params.cold_cache,
        capacity,
        staging,
    );
    Ok(Box::new(PowerInfer2 {
        name: static_name,
        attention_unit,
        pool,
        cpu_all,
        layout,
        plan,
        regions,
        resident,
        params,
        ctx,
        counters: Counters::default(),
        predictor_counts: PredictorCounts::default(),
        scratch: pass::Scratch::default(),
    }))
}

/// The preset's defaults with the experiment's parameters on top (unknown keys refused).
fn merge_params(
    name: &str,
    defaults: Params,
    given: &serde_json::Value,
) -> Result<Params, PolicyError> {
    let _: Params = parse_params(name, given)?;
    let mut base = serde_json::to_value(ParamsView::from(&defaults))
        .map_err(|e| PolicyError::BadParameter(e.to_string()))?;
    if let (Some(b), Some(g)) = (base.as_object_mut(), given.as_object()) {
        for (k, v) in g {
            b.insert(k.clone(), v.clone());
        }
    }
    parse_params(name, &base)
}

/// Serialisable mirror of the switches (for merging a preset with given parameters).
#[derive(serde::Serialize)]
struct ParamsView {
    hot_cold: bool,
    bundles: bool,
    two_phase: bool,
    cold_cache: &'static str,
    pipeline: bool,
    npu: bool,
}

impl From<&Params> for ParamsView {
    fn from(p: &Params) -> Self {
        ParamsView {
            hot_cold: p.hot_cold,
            bundles: p.bundles,
            two_phase: p.two_phase,
            cold_cache: match p.cold_cache {
                ColdMode::Lru => "lru",
                ColdMode::Static => "static",
                ColdMode::None => "none",
            },
            pipeline: p.pipeline,
            npu: p.npu,
        }
    }
}

impl PowerInfer2 {
    pub fn neuron_plan(&self) -> &NeuronPlan {
        &self.plan
    }

    pub fn predictor_counts(&self) -> PredictorCounts {
        self.predictor_counts
    }
}

impl Policy for PowerInfer2 {
    fn name(&self) -> &str {
        self.name
    }

    fn plan_warmup(&mut self, b: &mut PlanBuilder) -> Result<(), PolicyError> {
        let done = self.resident.plan_warmup(b);
        self.regions
            .plan_warmup(&self.plan, &self.layout, done, b)?;
        Ok(())
    }

    fn plan_pass(&mut self, pass: &ForwardPass, b: &mut PlanBuilder) -> Result<(), PolicyError> {
        pass::plan(self, pass, b)
    }

    fn memory(&self) -> MemoryUse {
        MemoryUse {
            resident_bytes: self.resident.bytes(),
            cache_bytes: self.regions.used_bytes(),
        }
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }
}
