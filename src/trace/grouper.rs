//! Turning the token stream into forward passes, the unit a policy plans for.
//!
//! Consecutive prefill tokens of one sequence form one pass (at most `max_prefill_chunk`
//! tokens; longer prompts are split into chunks, as engines with chunked prefill do); every
//! decode token is a pass of its own (batch 1, the setting of HOBBIT, PowerInfer-2 and TZ-LLM).

use super::error::TraceError;
use super::reader::TokenSource;
use super::record::{ForwardPass, Phase, TokenRecord};

pub struct PassGrouper<S: TokenSource> {
    source: S,
    max_prefill_chunk: usize,
    /// A record read ahead that belongs to the next pass.
    pending: Option<TokenRecord>,
    /// Spare records whose buffers are reused for the next reads.
    spare: Vec<TokenRecord>,
    done: bool,
}

impl<S: TokenSource> PassGrouper<S> {
    /// `max_prefill_chunk` of 0 is treated as 1.
    pub fn new(source: S, max_prefill_chunk: usize) -> Self {
        PassGrouper {
            source,
            max_prefill_chunk: max_prefill_chunk.max(1),
            pending: None,
            spare: Vec::new(),
            done: false,
        }
    }

    pub fn source(&self) -> &S {
        &self.source
    }

    fn read(&mut self) -> Result<Option<TokenRecord>, TraceError> {
        if let Some(r) = self.pending.take() {
            return Ok(Some(r));
        }
        if self.done {
            return Ok(None);
        }
        let mut rec = self.spare.pop().unwrap_or_default();
        if self.source.next_into(&mut rec)? {
            Ok(Some(rec))
        } else {
            self.done = true;
            self.spare.push(rec);
            Ok(None)
        }
    }

    /// Fills `pass` with the next forward pass, reusing its token buffers. `Ok(false)` at the
    /// end of the trace.
    pub fn next_pass_into(&mut self, pass: &mut ForwardPass) -> Result<bool, TraceError> {
        self.spare.append(&mut pass.tokens);
        let first = match self.read()? {
            Some(r) => r,
            None => return Ok(false),
        };
        pass.sequence = first.sequence;
        pass.phase = first.phase;
        let grouping = first.phase == Phase::Prefill;
        pass.tokens.push(first);
        while grouping && pass.tokens.len() < self.max_prefill_chunk {
            match self.read()? {
                Some(r) if r.phase == Phase::Prefill && r.sequence == pass.sequence => {
                    pass.tokens.push(r)
                }
                Some(r) => {
                    self.pending = Some(r);
                    break;
                }
                None => break,
            }
        }
        Ok(true)
    }
}

impl<S: TokenSource> Iterator for PassGrouper<S> {
    type Item = Result<ForwardPass, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut pass = ForwardPass::default();
        match self.next_pass_into(&mut pass) {
            Ok(true) => Some(Ok(pass)),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::header::{
        SourceKind, TraceHeader, TraceKind, TraceSource, FORMAT_NAME, FORMAT_VERSION,
    };
    use crate::trace::reader::VecSource;

    fn header() -> TraceHeader {
        TraceHeader {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            kind: TraceKind::Expert,
            model: "m".into(),
            layers: 1,
            first_moe_layer: 0,
            moe_layers: 1,
            experts: 4,
            top_k: 1,
            scores_normalized: true,
            predicted_layers_ahead: 0,
            neurons_per_layer: vec![],
            neuron_predictions: false,
            source: TraceSource {
                kind: SourceKind::Synthetic,
                description: String::new(),
                parameters: serde_json::Value::Null,
                targets: vec![],
            },
        }
    }

    fn tok(sequence: u32, position: u32, phase: Phase) -> TokenRecord {
        TokenRecord {
            sequence,
            position,
            phase,
            experts: vec![0],
            scores: vec![1.0],
            ..Default::default()
        }
    }

    #[test]
    fn groups_prefill_chunks_and_splits_decode() {
        use Phase::*;
        let mut recs = Vec::new();
        for p in 0..5 {
            recs.push(tok(0, p, Prefill));
        }
        recs.push(tok(0, 5, Decode));
        recs.push(tok(0, 6, Decode));
        recs.push(tok(1, 0, Prefill));
        recs.push(tok(2, 0, Prefill));
        recs.push(tok(2, 1, Prefill));
        recs.push(tok(2, 2, Decode));
        let passes: Vec<ForwardPass> = PassGrouper::new(VecSource::new(header(), recs), 3)
            .collect::<Result<_, _>>()
            .unwrap();
        let shape: Vec<(u32, Phase, u32, u32)> = passes
            .iter()
            .map(|p| (p.sequence, p.phase, p.context_before(), p.batch()))
            .collect();
        assert_eq!(
            shape,
            vec![
                (0, Prefill, 0, 3),
                (0, Prefill, 3, 2),
                (0, Decode, 5, 1),
                (0, Decode, 6, 1),
                (1, Prefill, 0, 1),
                (2, Prefill, 0, 2),
                (2, Decode, 2, 1),
            ]
        );
        assert!(passes[0].starts_sequence() && !passes[1].starts_sequence());
    }
}
