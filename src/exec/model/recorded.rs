//! What a real-model run replays: the recorded trace's records with the token each describes.

use crate::trace::{TokenRecord, TokenSource, TraceKind, TraceReader};
use std::path::Path;

/// Every record of a recorded neuron trace, in order, with its token id.
#[derive(Clone, Debug)]
pub struct RecordedRun {
    pub records: Vec<TokenRecord>,
    /// `token_ids[i]` is the token record `i` describes.
    pub token_ids: Vec<u32>,
    /// Neurons per layer's FFN.
    pub ffn: u32,
    pub layers: usize,
}

impl RecordedRun {
    /// Reads `path`, a neuron trace recorded by `edgesim trace record` (its header keeps each
    /// sequence's token ids in `source.parameters.token_ids`).
    pub fn open(path: &Path) -> Result<RecordedRun, String> {
        let mut reader = TraceReader::open(path).map_err(|e| e.to_string())?;
        RecordedRun::read(&mut reader, &path.display().to_string())
    }

    /// Reads every record of `source` (named `name` in errors).
    pub fn read(source: &mut dyn TokenSource, name: &str) -> Result<RecordedRun, String> {
        let at = |m: String| format!("{name}: {m}");
        let header = source.header().clone();
        if header.kind != TraceKind::Neuron {
            return Err(at("a real-model run needs a neuron trace".into()));
        }
        let ids = header
            .source
            .parameters
            .get("token_ids")
            .and_then(|v| serde_json::from_value::<Vec<Vec<u32>>>(v.clone()).ok())
            .ok_or_else(|| {
                at("the header has no `source.parameters.token_ids` (record the trace with `edgesim trace record`; traces recorded before token ids were kept must be recorded again)".into())
            })?;
        let mut records = Vec::new();
        let mut token_ids = Vec::new();
        let mut record = TokenRecord::default();
        while source.next_into(&mut record).map_err(|e| e.to_string())? {
            let token = ids
                .get(record.sequence as usize)
                .and_then(|s| s.get(record.position as usize))
                .ok_or_else(|| {
                    at(format!(
                        "record {} (sequence {}, position {}) has no token id in the header",
                        records.len(),
                        record.sequence,
                        record.position
                    ))
                })?;
            token_ids.push(*token);
            records.push(record.clone());
        }
        let ffn = header.neurons_per_layer.first().copied().unwrap_or(0);
        if header.neurons_per_layer.iter().any(|&n| n != ffn) {
            return Err(at(
                "layers with different FFN widths are not supported by the real-model run".into(),
            ));
        }
        Ok(RecordedRun {
            records,
            token_ids,
            ffn,
            layers: header.layers as usize,
        })
    }

    /// The longest sequence, in tokens (the KV cache's capacity).
    pub fn longest_sequence(&self) -> usize {
        self.records
            .iter()
            .map(|r| r.position as usize + 1)
            .max()
            .unwrap_or(0)
    }
}
