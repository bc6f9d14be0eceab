//! The one-paragraph summary `edgesim trace validate` prints: what the trace is and how much of
//! it there is. Collected in the same pass that checks every record.

use super::error::TraceError;
use super::header::{SourceKind, TraceHeader, TraceKind};
use super::reader::{TokenSource, TraceReader};
use super::record::{Phase, TokenRecord};
use serde::Serialize;
use std::fmt;
use std::path::Path;

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TraceSummary {
    pub tokens: u64,
    pub sequences: u64,
    pub prefill_tokens: u64,
    pub decode_tokens: u64,
    /// (token, layer) cells an importer filled in because the source lacked them.
    pub filled_cells: u64,
    #[serde(skip)]
    last_sequence: Option<u32>,
}

impl TraceSummary {
    pub fn add(&mut self, rec: &TokenRecord) {
        self.tokens += 1;
        if self.last_sequence != Some(rec.sequence) {
            self.sequences += 1;
            self.last_sequence = Some(rec.sequence);
        }
        match rec.phase {
            Phase::Prefill => self.prefill_tokens += 1,
            Phase::Decode => self.decode_tokens += 1,
        }
        self.filled_cells += rec.filled_layers.len() as u64;
    }
}

/// A checked trace: its header and its counts.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ValidatedTrace {
    pub header: TraceHeader,
    pub summary: TraceSummary,
}

/// Reads every record of `path`, checking all of them; the first fault is the error.
pub fn validate_file(path: &Path) -> Result<ValidatedTrace, TraceError> {
    let mut reader = TraceReader::open(path)?;
    let mut rec = TokenRecord::default();
    let mut summary = TraceSummary::default();
    while reader.next_into(&mut rec)? {
        summary.add(&rec);
    }
    Ok(ValidatedTrace {
        header: reader.header().clone(),
        summary,
    })
}

impl fmt::Display for ValidatedTrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = &self.header;
        let s = &self.summary;
        let shape = match h.kind {
            TraceKind::Expert => format!(
                "expert trace of {} ({} MoE layers from layer {}, {} experts, top-{}{})",
                h.model,
                h.moe_layers,
                h.first_moe_layer,
                h.experts,
                h.top_k,
                if h.predicted_layers_ahead > 0 {
                    format!(", predictions {} layers ahead", h.predicted_layers_ahead)
                } else {
                    String::new()
                }
            ),
            TraceKind::Neuron => format!(
                "neuron trace of {} ({} layers, {} to {} neurons per layer{})",
                h.model,
                h.layers,
                h.neurons_per_layer.iter().min().copied().unwrap_or(0),
                h.neurons_per_layer.iter().max().copied().unwrap_or(0),
                if h.neuron_predictions {
                    ", with predictor output"
                } else {
                    ""
                }
            ),
        };
        let source = match h.source.kind {
            SourceKind::Recorded => "recorded",
            SourceKind::Synthetic => "synthetic",
            SourceKind::Imported => "imported",
        };
        write!(
            f,
            "valid {shape}, {source}: {} tokens in {} sequences ({} prefill, {} decode)",
            s.tokens, s.sequences, s.prefill_tokens, s.decode_tokens
        )?;
        if s.filled_cells > 0 {
            write!(
                f,
                "; {} (token, layer) cells were filled in by the importer",
                s.filled_cells
            )?;
        }
        write!(f, ". Source: {}", h.source.description)
    }
}
