//! What policies depend on, measured on a trace in one streaming pass: expert popularity skew,
//! reuse distance, consecutive-token reuse, LRU hit rates, cross-layer predictability and the
//! recorded predictions' accuracy; for neuron traces the hot-set size, active fraction and
//! token-to-token overlap. `edgesim trace stats` prints these.

mod expert;
mod neuron;
mod render;
pub mod skew;

pub use expert::{
    ExpertAccumulator, ExpertLayerStats, ExpertStats, PredictionAccuracy, HOBBIT_T1, HOBBIT_T2,
    MAX_CROSS_LAYER_DISTANCE, REUSE_DISTANCE_BUCKETS,
};
pub use neuron::{NeuronAccumulator, NeuronLayerStats, NeuronStats, HOT_SET_COVERAGE};

use super::error::TraceError;
use super::header::{TraceHeader, TraceKind};
use super::reader::{TokenSource, TraceReader};
use super::record::TokenRecord;
use super::summary::TraceSummary;
use serde::Serialize;
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TraceStats {
    pub model: String,
    pub kind: TraceKind,
    pub summary: TraceSummary,
    pub expert: Option<ExpertStats>,
    pub neuron: Option<NeuronStats>,
}

/// Accumulates statistics over records; usable incrementally (e.g. alongside a replay).
pub struct StatsAccumulator {
    model: String,
    kind: TraceKind,
    summary: TraceSummary,
    expert: Option<ExpertAccumulator>,
    neuron: Option<NeuronAccumulator>,
}

impl StatsAccumulator {
    pub fn new(h: &TraceHeader) -> Self {
        StatsAccumulator {
            model: h.model.clone(),
            kind: h.kind,
            summary: TraceSummary::default(),
            expert: (h.kind == TraceKind::Expert).then(|| ExpertAccumulator::new(h)),
            neuron: (h.kind == TraceKind::Neuron).then(|| NeuronAccumulator::new(h)),
        }
    }

    pub fn add(&mut self, rec: &TokenRecord) {
        self.summary.add(rec);
        if let Some(e) = &mut self.expert {
            e.add(rec);
        }
        if let Some(n) = &mut self.neuron {
            n.add(rec);
        }
    }

    pub fn finish(self) -> TraceStats {
        TraceStats {
            model: self.model,
            kind: self.kind,
            summary: self.summary,
            expert: self.expert.map(ExpertAccumulator::finish),
            neuron: self.neuron.map(NeuronAccumulator::finish),
        }
    }
}

/// Reads every record from `source` and measures it.
pub fn collect(source: &mut impl TokenSource) -> Result<TraceStats, TraceError> {
    let mut acc = StatsAccumulator::new(source.header());
    let mut rec = TokenRecord::default();
    while source.next_into(&mut rec)? {
        acc.add(&rec);
    }
    Ok(acc.finish())
}

/// Statistics of the trace file at `path` (every record is checked on the way).
pub fn stats_file(path: &Path) -> Result<TraceStats, TraceError> {
    collect(&mut TraceReader::open(path)?)
}

impl TraceStats {
    /// Human-readable tables (what `edgesim trace stats` prints without `--json`).
    pub fn to_table(&self) -> String {
        render::table(self)
    }
}
