//! Experiments: a device, a model, one trace or several workloads, memory budgets and the
//! policies to compare.
//!
//! Written as JSON in `scenarios/experiments/*.json`. Unknown fields are errors, and a field
//! left out never silently becomes zero: every default is stated here.
//!
//! An experiment replays either one `trace` or a list of `workloads`, each with its own trace
//! (a file, a bundled trace, or one generated at run time from a seed, so paper setups such as
//! HOBBIT's [input, output] = [16, 32] ... [128, 128] need no committed trace files). Runs are
//! workloads x budgets x policies. An optional `analysis` names the policy under study, its
//! ablations and a ceiling, and asks for speedup and ablation tables and plots.

use crate::model::{ModelGeometry, Precision};
use crate::policy::PolicyContext;
use crate::units::GIB;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// The file the experiment was read from, for messages (not part of the file).
    #[serde(skip)]
    pub file: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// A bundled device name or a path to a device profile.
    pub device: String,
    /// A bundled model name or a path to a model profile.
    pub model: String,
    /// `bundled:<name>` for a trace shipped in the binary, or a path (relative paths are taken
    /// from the experiment file's folder, or the working directory for bundled experiments).
    /// Give either this or `workloads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// Several workloads, each with its own trace; give either this or `trace`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<WorkloadSpec>,
    /// Precision of the always-resident weights.
    pub resident_precision: Precision,
    /// Precision of the offloaded weights' main copy.
    pub offload_precision: Precision,
    pub budgets: Vec<BudgetSpec>,
    pub policies: Vec<PolicySpec>,
    /// Seed for every random choice of every run.
    #[serde(default)]
    pub seed: u64,
    /// Prefill tokens of one sequence planned as one pass; longer prompts are chunked.
    /// Default: 512.
    #[serde(default)]
    pub max_prefill_chunk: Option<u32>,
    /// Context length the KV cache is sized for. Default: the longest sequence of any
    /// workload, so every workload runs at the same budgets.
    #[serde(default)]
    pub max_context: Option<u32>,
    /// Tables and plots beyond the standard ones: speedups of one policy over the others,
    /// its ablations, a ceiling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisSpec>,
}

/// One workload of an experiment: a label and where its trace comes from (exactly one of
/// `trace` and `generate`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    pub label: String,
    /// As the experiment's `trace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// A synthetic expert trace for the experiment's model, generated at run time by the same
    /// generator as `edgesim trace gen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate: Option<GenerateSpec>,
}

/// A seeded synthetic workload: `sequences` sequences of `prefill` prompt tokens followed by
/// `decode` generated tokens (HOBBIT's [input, output] = [prefill, decode], batch 1). Equal to
/// `edgesim trace gen --model M --seed S --sequences N --prefill P --tokens N*(P+D)
/// [--predict-accuracy ...]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GenerateSpec {
    pub seed: u64,
    pub sequences: u32,
    pub prefill: u32,
    pub decode: u32,
    /// Top-1 accuracy of recorded predictions 1, 2, ... layers ahead (empty: none recorded).
    #[serde(default)]
    pub predict_accuracy: Vec<f64>,
    /// Dense models get a neuron trace (`edgesim trace gen --kind neuron`); this records a
    /// neuron predictor's output with this recall and precision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neuron_predictor: Option<NeuronPredictorRates>,
    /// Dense models: the seed of the model's neurons (which neuron is hot), kept apart from
    /// `seed` (the tokens) so that a policy's calibration trace describes the same neurons
    /// (see `NeuronGenConfig::model_seed`). Absent: both come from `seed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_seed: Option<u64>,
}

/// A neuron predictor's recall and precision, as recorded in a generated neuron trace.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NeuronPredictorRates {
    pub recall: f64,
    pub precision: f64,
}

/// What the analysis tables compare. Labels are policy labels; `headline_budget` a budget
/// label.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AnalysisSpec {
    /// The policy under study: its speedup over every other policy (except its ablations) is
    /// tabulated.
    pub subject: String,
    /// Variants of the subject with one technique off: tabulated against the subject.
    #[serde(default)]
    pub ablations: Vec<String>,
    /// A bound drawn as a dashed line on the budget plots (e.g. `belady`).
    #[serde(default)]
    pub ceiling: Option<String>,
    /// The budget of the speedup bars and the time breakdown. Default: the largest.
    #[serde(default)]
    pub headline_budget: Option<String>,
    /// What narrowing the run to fewer policies (`--policy`) dropped from this analysis, in
    /// words; written at the top of `summary.md`. Never read from a file.
    #[serde(skip)]
    pub notes: Vec<String>,
}

/// A memory budget, given in exactly one way.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BudgetSpec {
    /// Name in plots and tables; derived from the value when absent.
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub bytes: Option<u64>,
    #[serde(default)]
    pub gib: Option<f64>,
    /// The resident set plus this fraction of all offloadable weights (at the offload
    /// precision): 0 is the least a policy could run with, 1 holds the whole model.
    #[serde(default)]
    pub cache_fraction: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    pub name: String,
    /// Name in plots and tables; defaults to `name`. Ablations give each variant a label.
    #[serde(default)]
    pub label: Option<String>,
    /// Policy parameters; each policy documents and checks its own.
    #[serde(default)]
    pub params: serde_json::Value,
}

impl PolicySpec {
    pub fn label(&self) -> &str {
        self.label.as_deref().unwrap_or(&self.name)
    }
}

/// Bytes the resident set and the offloadable weights take, for resolving budgets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footprint {
    pub resident_bytes: u64,
    pub offloadable_bytes: u64,
}

impl Footprint {
    /// Expert policies keep non-FFN weights, dense FFNs and the KV cache resident; experts
    /// are offloadable. A dense model's FFNs are the offloadable part.
    pub fn of(
        model: &ModelGeometry,
        resident: Precision,
        offload: Precision,
        max_context: u32,
    ) -> Self {
        let kv = model.kv_bytes_per_token() * max_context as u64;
        if model.is_moe() {
            Footprint {
                resident_bytes: resident.bytes_for(model.non_ffn_params())
                    + resident.bytes_for(model.dense_ffn_params())
                    + kv,
                offloadable_bytes: offload.bytes_for(model.expert_params_total()),
            }
        } else {
            Footprint {
                resident_bytes: resident.bytes_for(model.non_ffn_params()) + kv,
                offloadable_bytes: offload.bytes_for(model.dense_ffn_params()),
            }
        }
    }
}

impl BudgetSpec {
    /// The budget in bytes, and its label. `field` names the spec in error messages.
    pub fn resolve(&self, footprint: Footprint, field: &str) -> Result<(u64, String), String> {
        let given = [
            self.bytes.is_some(),
            self.gib.is_some(),
            self.cache_fraction.is_some(),
        ]
        .iter()
        .filter(|&&g| g)
        .count();
        if given != 1 {
            return Err(format!(
                "`{field}` must give exactly one of `bytes`, `gib` or `cache_fraction` (it gives {given})"
            ));
        }
        let (bytes, auto_label) = if let Some(b) = self.bytes {
            (b, crate::units::human_bytes(b))
        } else if let Some(g) = self.gib {
            if !(g.is_finite() && g > 0.0) {
                return Err(format!(
                    "`{field}.gib` must be positive, got {}",
                    crate::limits::as_written(g)
                ));
            }
            if g > crate::limits::MAX_BUDGET_GIB {
                return Err(crate::limits::above(
                    &format!("{field}.gib"),
                    crate::limits::as_written(g),
                    crate::limits::MAX_BUDGET_GIB,
                ));
            }
            ((g * GIB as f64) as u64, format!("{g} GiB"))
        } else {
            let f = self.cache_fraction.unwrap_or_default();
            if !(0.0..=1.0).contains(&f) {
                return Err(format!(
                    "`{field}.cache_fraction` must be between 0 and 1, got {}",
                    crate::limits::as_written(f)
                ));
            }
            (
                footprint.resident_bytes + (f * footprint.offloadable_bytes as f64) as u64,
                format!("{:.0}% cached", f * 100.0),
            )
        };
        if bytes == 0 {
            return Err(format!("`{field}` resolves to a zero budget"));
        }
        Ok((bytes, self.label.clone().unwrap_or(auto_label)))
    }
}

impl Experiment {
    /// Checks what can be checked without loading profiles.
    pub fn check(&self) -> Result<(), String> {
        match (&self.trace, self.workloads.is_empty()) {
            (Some(_), false) => {
                return Err("give either `trace` or `workloads`, not both".into());
            }
            (None, true) => {
                return Err("no trace: give `trace` or at least one of `workloads`".into());
            }
            _ => {}
        }
        for (i, w) in self.workloads.iter().enumerate() {
            if w.trace.is_some() == w.generate.is_some() {
                return Err(format!(
                    "`workloads[{i}]` ({}) must give exactly one of `trace` and `generate`",
                    w.label
                ));
            }
            if let Some(g) = &w.generate {
                if g.sequences == 0 || g.prefill + g.decode == 0 {
                    return Err(format!(
                        "`workloads[{i}].generate` needs at least one sequence of at least one token"
                    ));
                }
            }
            if self.workloads[..i].iter().any(|o| o.label == w.label) {
                return Err(format!(
                    "two workloads share the label `{}`; give each its own",
                    w.label
                ));
            }
        }
        if let Some(a) = &self.analysis {
            let known = |l: &str| self.policies.iter().any(|p| p.label() == l);
            for l in std::iter::once(&a.subject)
                .chain(&a.ablations)
                .chain(a.ceiling.iter())
            {
                if !known(l) {
                    return Err(format!(
                        "`analysis` names `{l}`, which is not the label of any policy of the experiment"
                    ));
                }
            }
        }
        if self.budgets.is_empty() {
            return Err("`budgets` is empty: give at least one memory budget".into());
        }
        if self.policies.is_empty() {
            return Err("`policies` is empty: give at least one policy".into());
        }
        if self.max_prefill_chunk == Some(0) {
            return Err("`max_prefill_chunk` must be at least 1".into());
        }
        let mut labels: Vec<&str> = self.policies.iter().map(|p| p.label()).collect();
        labels.sort_unstable();
        if let Some(w) = labels.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!(
                "two policies share the label `{}`; give each variant its own `label`",
                w[0]
            ));
        }
        if let Some(problem) = crate::limits::experiment_problem(self) {
            return Err(problem);
        }
        Ok(())
    }
}

/// A policy context for one run of an experiment.
pub fn policy_context(
    model: std::sync::Arc<ModelGeometry>,
    device: std::sync::Arc<crate::hw::DeviceProfile>,
    exp: &Experiment,
    budget_bytes: u64,
    max_context: u32,
    params: serde_json::Value,
) -> PolicyContext {
    PolicyContext {
        model,
        device,
        budget_bytes,
        resident_precision: exp.resident_precision,
        offload_precision: exp.offload_precision,
        max_context,
        seed: exp.seed,
        params,
        load_ops: crate::policy::machinery::load_ops::plain(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp() -> Footprint {
        Footprint {
            resident_bytes: 1000,
            offloadable_bytes: 10_000,
        }
    }

    #[test]
    fn budgets_resolve_each_way() {
        let f = BudgetSpec {
            label: None,
            bytes: None,
            gib: None,
            cache_fraction: Some(0.5),
        };
        assert_eq!(
            f.resolve(fp(), "budgets[0]").unwrap(),
            (6000, "50% cached".into())
        );
        let b = BudgetSpec {
            label: Some("small".into()),
            bytes: Some(42),
            gib: None,
            cache_fraction: None,
        };
        assert_eq!(b.resolve(fp(), "budgets[1]").unwrap(), (42, "small".into()));
    }

    #[test]
    fn budget_needs_exactly_one_value() {
        let none = BudgetSpec {
            label: None,
            bytes: None,
            gib: None,
            cache_fraction: None,
        };
        assert!(none
            .resolve(fp(), "budgets[2]")
            .unwrap_err()
            .contains("budgets[2]"));
        let two = BudgetSpec {
            bytes: Some(1),
            gib: Some(1.0),
            ..none.clone()
        };
        assert!(two.resolve(fp(), "b").is_err());
        let neg = BudgetSpec {
            gib: Some(-1.0),
            ..none
        };
        assert!(neg.resolve(fp(), "b").unwrap_err().contains("positive"));
    }
}
