//! PowerInfer-2's offline planner (arXiv 2406.06282 v3 §5): profile per-neuron activation
//! frequency on a **calibration** trace (never the trace being evaluated), order each layer's
//! neurons by it, and split them into a hot cluster and cold neurons. The hot cluster is capped
//! so that reading it from flash sequentially hides behind the layer's attention ("I/O
//! bandwidth × attention time", §5), which is what lets the hot region be preloaded during
//! attention when it is not resident.
//!
//! The order is PowerInfer-2's neuron plan: the planner lays neurons out in flash in this order,
//! so the policy's neuron tensors index neurons by **rank** (0 = most frequently active), not by
//! the model's neuron id. Hot cluster of layer l = ranks `0..hot[l]`; cold neuron of rank r is
//! the tensor `Neurons { first: r, count: 1 }`.

use crate::hw::cost::{DeviceCosts, Kernel};
use crate::model::{ModelGeometry, Precision, TensorKind};
use crate::policy::context::PolicyError;
use crate::sourced::Sourced;
use crate::trace::gen::{NeuronGenConfig, NeuronTraceGenerator};
use crate::trace::{TokenRecord, TokenSource};
use serde::Deserialize;

/// Where the activation frequencies come from: a calibration trace generated from the same
/// model neurons (`model_seed`) as the evaluation workload but another token `seed`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CalibrationSpec {
    /// The model's neuron seed: must be the evaluation workload's `model_seed`.
    pub model_seed: u64,
    /// The calibration text's seed: should differ from the workload's.
    pub seed: u64,
    pub tokens: u64,
    /// The model's mean active fraction (its profile's `sparsity.active_fraction`).
    pub active_fraction: f64,
}

/// The neuron plan of every layer.
#[derive(Clone, Debug, PartialEq)]
pub struct NeuronPlan {
    /// Per layer: rank of each neuron id (0 = most frequently active).
    pub rank: Vec<Vec<u32>>,
    /// Per layer: neurons in the hot cluster (ranks `0..hot[l]`).
    pub hot: Vec<u32>,
    /// Per layer: calibration activation frequency by rank (descending).
    pub frequency: Vec<Vec<f64>>,
}

impl NeuronPlan {
    /// Ranks neurons by `counts` (per layer, per neuron id) descending, ties by id.
    pub fn from_counts(counts: &[Vec<u64>], tokens: u64) -> Self {
        let mut rank = Vec::with_capacity(counts.len());
        let mut frequency = Vec::with_capacity(counts.len());
        for c in counts {
            let mut ids: Vec<u32> = (0..c.len() as u32).collect();
            ids.sort_by(|&a, &b| c[b as usize].cmp(&c[a as usize]).then(a.cmp(&b)));
            let mut r = vec![0u32; c.len()];
            for (pos, &id) in ids.iter().enumerate() {
                r[id as usize] = pos as u32;
            }
            frequency.push(
                ids.iter()
                    .map(|&id| c[id as usize] as f64 / tokens.max(1) as f64)
                    .collect(),
            );
            rank.push(r);
        }
        NeuronPlan {
            hot: vec![0; counts.len()],
            rank,
            frequency,
        }
    }

    /// Counts activations of every neuron over a calibration trace.
    pub fn calibrate(model: &ModelGeometry, spec: &CalibrationSpec) -> Result<Self, PolicyError> {
        let bad = |m: String| PolicyError::BadParameter(format!("`calibration`: {m}"));
        if spec.tokens == 0 {
            return Err(bad("`tokens` must be at least 1".into()));
        }
        let mut cfg = NeuronGenConfig::new(
            spec.seed,
            spec.tokens,
            Sourced::new(spec.active_fraction, "calibration"),
        );
        cfg.model_seed = Some(spec.model_seed);
        let mut g = NeuronTraceGenerator::new(model, &cfg).map_err(|e| bad(e.to_string()))?;
        let mut counts: Vec<Vec<u64>> = (0..model.layers)
            .map(|l| vec![0; model.ffn_width(l) as usize])
            .collect();
        let mut rec = TokenRecord::default();
        let mut tokens = 0;
        while g.next_into(&mut rec).map_err(|e| bad(e.to_string()))? {
            tokens += 1;
            for (l, c) in counts.iter_mut().enumerate() {
                for &n in rec.neurons_at(l) {
                    c[n as usize] += 1;
                }
            }
        }
        Ok(Self::from_counts(&counts, tokens))
    }

    /// Caps each layer's hot cluster at what a sequential read hides behind that layer's
    /// attention: `hot_neuron_bytes × H ≤ sequential bandwidth × attention time` (§5). Neurons
    /// never seen active in calibration are never hot.
    pub fn cap_hot(&mut self, cap: &dyn Fn(u32) -> u32) {
        for (l, f) in self.frequency.iter().enumerate() {
            let seen = f.iter().take_while(|&&x| x > 0.0).count() as u32;
            self.hot[l] = cap(l as u32).min(seen);
        }
    }
}

/// Attention time of one decode token at `context` on `threads` cores of CPU cluster
/// `cluster` (or the accelerator when `accel`), from the device's cost model: the planner's
/// "profile the device's compute speed" step.
pub fn attention_time_ns(
    costs: &DeviceCosts,
    model: &ModelGeometry,
    precision: Precision,
    layer: u32,
    context: u64,
    unit: crate::plan::Unit,
) -> u64 {
    let params = model.params(layer, TensorKind::Attention);
    let flops = 2 * params + 4 * context * (model.heads * model.head_dim) as u64;
    let bytes =
        precision.bytes_for(params) + context * 4 * (model.kv_heads * model.head_dim) as u64;
    let t = match unit {
        crate::plan::Unit::Accel => costs
            .accel
            .as_ref()
            .and_then(|a| a.compute(precision, flops, bytes).ok()),
        crate::plan::Unit::Cpu { cluster, threads } => {
            costs.cpu.get(cluster as usize).and_then(|c| {
                c.compute_kernel(Kernel::Lut, threads as u32, precision, flops, bytes, params)
                    .ok()
            })
        }
    };
    t.map_or(0, |n| n.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_follow_frequency_and_hot_is_capped_and_never_cold_unseen() {
        let counts = vec![vec![1, 9, 0, 5]];
        let mut plan = NeuronPlan::from_counts(&counts, 10);
        assert_eq!(plan.rank[0], vec![2, 0, 3, 1]);
        assert_eq!(plan.frequency[0], vec![0.9, 0.5, 0.1, 0.0]);
        plan.cap_hot(&|_| 10);
        assert_eq!(plan.hot, vec![3], "the never-active neuron is not hot");
        plan.cap_hot(&|_| 2);
        assert_eq!(plan.hot, vec![2]);
    }
}
