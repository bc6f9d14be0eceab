//! The rows of `results.csv` and `results.json`: one per policy x budget of an experiment.

use super::summary::RunSummary;
use serde::Serialize;

/// Identity of a run: enough to reproduce it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunIdentity {
    pub experiment: String,
    pub device: String,
    pub model: String,
    pub trace: String,
    /// The workload's label (empty for an experiment with a single trace).
    pub workload: String,
    /// The policy's name on the command line.
    pub policy: String,
    /// The label it carries in plots (differs from `policy` for ablations).
    pub label: String,
    pub budget_label: String,
    pub budget_bytes: u64,
    pub seed: u64,
}

/// One run's identity and results, flattened for CSV.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ResultRow {
    #[serde(flatten)]
    pub id: RunIdentity,
    #[serde(flatten)]
    pub summary: RunSummary,
    pub lookups: u64,
    pub hits: u64,
    pub misses: u64,
    pub prefetches: u64,
    pub evictions: u64,
    pub served_fp16: u64,
    pub served_int8: u64,
    pub served_int4: u64,
    pub served_int3: u64,
    pub served_int2: u64,
    pub skipped: u64,
    /// Gate-weight share served below the high precision or skipped (accuracy proxy).
    pub degraded_gate_share: f64,
}

impl ResultRow {
    pub fn new(id: RunIdentity, summary: RunSummary, c: &crate::policy::Counters) -> Self {
        ResultRow {
            id,
            summary,
            lookups: c.lookups,
            hits: c.hits,
            misses: c.misses,
            prefetches: c.prefetches,
            evictions: c.evictions,
            served_fp16: c.served_by_precision[0],
            served_int8: c.served_by_precision[1],
            served_int4: c.served_by_precision[2],
            served_int3: c.served_by_precision[3],
            served_int2: c.served_by_precision[4],
            skipped: c.skipped,
            degraded_gate_share: if c.gate_weight_total > 0.0 {
                c.gate_weight_degraded / c.gate_weight_total
            } else {
                0.0
            },
        }
    }
}
