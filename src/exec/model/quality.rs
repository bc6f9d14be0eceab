//! The runs an offloaded real-model run is checked against, and the comparison.
//!
//! - **In-memory sparse**: the same session, fed the same compute calls a plan would make, with
//!   every cluster's bytes read from the store into ordinary memory beforehand. The offloaded
//!   run must give bit-identical logits: that shows the executor computed with the right bytes
//!   of the right neurons, whatever the policy loaded, evicted or reused.
//! - **Dense in memory**: the whole model (every FFN neuron) in memory, every matrix in the LUT
//!   format at the caller's bits, over the same tokens. Agreement with it measures what computing only the trace's active
//!   neurons costs.

use super::recorded::RecordedRun;
use super::session::{ModelSession, PassOutput};
use crate::exec::store::layout::stored_tensors_with_neurons;
use crate::exec::store::WeightStore;
use crate::llm::model::{LlamaModel, LogitsWanted};
use crate::llm::sampling::argmax;
use crate::model::{Precision, TensorKind, TensorRef};
use crate::trace::ForwardPass;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};

/// Runs `passes` (the trace grouped as the replay groups it) through `session` with every
/// cluster's weights at `precision` from `store`, read into memory first.
pub fn in_memory_sparse(
    session: &ModelSession,
    store: &WeightStore,
    precision: Precision,
    passes: &[ForwardPass],
) -> Result<Vec<PassOutput>, String> {
    let cluster = store.index.neuron_cluster.ok_or_else(|| {
        format!(
            "{}: the store holds no neuron clusters (prepare it with `edgesim exec prepare --gguf`)",
            store.dir.display()
        )
    })?;
    let path = store.data_path();
    let mut file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut payloads: BTreeMap<TensorRef, Vec<u8>> = BTreeMap::new();
    let mut clusters: Vec<Vec<TensorRef>> = vec![Vec::new(); store.geometry.layers as usize];
    for t in stored_tensors_with_neurons(&store.geometry, cluster) {
        if !matches!(t.kind, TensorKind::Neurons { .. }) {
            continue;
        }
        let (_, entry) = store
            .entry(t, precision)
            .ok_or_else(|| format!("the store has no {t} at {precision}"))?;
        let mut bytes = vec![0u8; entry.bytes as usize];
        file.seek(SeekFrom::Start(entry.offset))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(|e| format!("{}: reading {t}: {e}", path.display()))?;
        payloads.insert(t, bytes);
        clusters[t.layer as usize].push(t);
    }
    for pass in passes {
        for (layer, layer_clusters) in clusters.iter().enumerate() {
            session.compute(
                TensorRef::new(layer as u32, TensorKind::Attention),
                pass.batch(),
                precision,
                &[],
            )?;
            for &t in layer_clusters {
                let TensorKind::Neurons { first, count, .. } = t.kind else {
                    continue;
                };
                let demanded = pass.tokens.iter().any(|r| {
                    let a = r.neurons_at(layer);
                    let at = a.partition_point(|&n| n < first);
                    at < a.len() && a[at] < first + count
                });
                if demanded {
                    session.compute(t, pass.batch(), precision, &payloads[&t])?;
                }
            }
        }
        session.compute(TensorRef::new(0, TensorKind::Embedding), 1, precision, &[])?;
    }
    Ok(session.outputs())
}

/// The dense model's greedy choice after every token of `run` (each sequence in one pass).
pub fn dense_reference(model: &LlamaModel, run: &RecordedRun) -> Result<Vec<u32>, String> {
    let mut out = vec![0u32; run.records.len()];
    let mut start = 0;
    let mut logits = Vec::new();
    while start < run.records.len() {
        let sequence = run.records[start].sequence;
        let end = (start..run.records.len())
            .find(|&i| run.records[i].sequence != sequence)
            .unwrap_or(run.records.len());
        let mut cache = model.new_cache(end - start);
        model
            .forward_into(
                &run.token_ids[start..end],
                &mut cache,
                LogitsWanted::All,
                None,
                &mut logits,
            )
            .map_err(|e| e.to_string())?;
        let vocab = model.config().vocab_size;
        for (i, row) in logits.chunks_exact(vocab).enumerate() {
            out[start + i] = argmax(row);
        }
        start = end;
    }
    Ok(out)
}

/// How an offloaded run's outputs compare with the in-memory runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Quality {
    /// Passes compared (each pass's last token predicts the next).
    pub predictions: usize,
    /// Predictions equal to the dense in-memory model's.
    pub agree_with_dense: usize,
    /// Predictions that have a recorded next token (not a sequence's last), and how many equal
    /// it (the recorded replies are the recording model's greedy tokens).
    pub with_recorded_next: usize,
    pub agree_with_recorded: usize,
    /// Every logit bit-identical to the in-memory sparse run's (whose passes may run further:
    /// a run limited to its first passes is compared with the first passes).
    pub identical_to_in_memory: bool,
    /// Largest |logit difference| from the in-memory sparse run (0 when identical).
    pub max_logit_difference: f32,
}

impl Quality {
    /// "bit-identical", or how far the logits are from the in-memory sparse run's.
    pub fn vs_in_memory(&self) -> String {
        if self.identical_to_in_memory {
            "bit-identical".to_string()
        } else {
            format!("DIFFERENT (max |Δ| {})", self.max_logit_difference)
        }
    }

    pub fn compare(
        run: &RecordedRun,
        offloaded: &[PassOutput],
        in_memory: &[PassOutput],
        dense: &[u32],
    ) -> Quality {
        let mut q = Quality {
            predictions: offloaded.len(),
            agree_with_dense: 0,
            with_recorded_next: 0,
            agree_with_recorded: 0,
            identical_to_in_memory: offloaded.len() <= in_memory.len(),
            max_logit_difference: 0.0,
        };
        for (i, out) in offloaded.iter().enumerate() {
            let choice = argmax(&out.logits);
            if dense.get(out.token) == Some(&choice) {
                q.agree_with_dense += 1;
            }
            let this = &run.records[out.token];
            if let Some(next) = run.records.get(out.token + 1) {
                if next.sequence == this.sequence {
                    q.with_recorded_next += 1;
                    if run.token_ids[out.token + 1] == choice {
                        q.agree_with_recorded += 1;
                    }
                }
            }
            match in_memory.get(i) {
                Some(m) if m.token == out.token && m.logits.len() == out.logits.len() => {
                    for (a, b) in out.logits.iter().zip(&m.logits) {
                        if a.to_bits() != b.to_bits() {
                            q.identical_to_in_memory = false;
                            q.max_logit_difference = q.max_logit_difference.max((a - b).abs());
                        }
                    }
                }
                _ => q.identical_to_in_memory = false,
            }
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::TokenRecord;

    fn run() -> RecordedRun {
        // Two sequences: tokens 0..3 of sequence 0, tokens 3..5 of sequence 1.
        let record = |sequence, position| TokenRecord {
            sequence,
            position,
            neuron_offsets: vec![0, 0],
            ..TokenRecord::default()
        };
        RecordedRun {
            records: vec![
                record(0, 0),
                record(0, 1),
                record(0, 2),
                record(1, 0),
                record(1, 1),
            ],
            token_ids: vec![5, 1, 2, 7, 0],
            ffn: 1,
            layers: 1,
        }
    }

    fn output(token: usize, best: usize) -> PassOutput {
        let mut logits = vec![0.0f32; 4];
        logits[best] = 1.0;
        PassOutput { token, logits }
    }

    #[test]
    fn choices_are_counted_against_dense_and_recorded_tokens() {
        let run = run();
        // Passes end at tokens 1 (predicts token 2, recorded id 2), 2 (the end of sequence 0:
        // nothing recorded next) and 4.
        let offloaded = vec![output(1, 2), output(2, 3), output(4, 1)];
        let dense = vec![0, 2, 0, 0, 0];
        let q = Quality::compare(&run, &offloaded, &offloaded, &dense);
        assert_eq!(q.predictions, 3);
        assert_eq!(q.agree_with_dense, 1);
        assert_eq!(q.with_recorded_next, 1);
        assert_eq!(q.agree_with_recorded, 1);
        assert!(q.identical_to_in_memory);
        assert_eq!(q.max_logit_difference, 0.0);
    }

    #[test]
    fn one_differing_bit_breaks_identity_and_a_longer_reference_does_not() {
        let run = run();
        let offloaded = vec![output(1, 2)];
        let mut reference = vec![output(1, 2), output(4, 1)];
        let q = Quality::compare(&run, &offloaded, &reference, &[0; 5]);
        assert!(
            q.identical_to_in_memory,
            "a limited run compares with the first passes"
        );
        reference[0].logits[0] = f32::from_bits(1);
        let q = Quality::compare(&run, &offloaded, &reference, &[0; 5]);
        assert!(!q.identical_to_in_memory);
        assert!(q.max_logit_difference > 0.0);
        let q = Quality::compare(
            &run,
            &[output(1, 2), output(4, 1), output(4, 1)],
            &reference,
            &[0; 5],
        );
        assert!(!q.identical_to_in_memory, "more passes than the reference");
    }
}
