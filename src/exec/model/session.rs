//! The real model's forward pass, driven block by block by a plan's compute ops.
//!
//! The executor calls [`ModelSession::compute`] for each compute op of a neuron-level
//! policy's plan (`docs/neuron-policies.md` gives the plan's shape):
//!
//! | op's tensor | what the session does |
//! | --- | --- |
//! | `L0.attn`, batch b | starts a pass with the next b recorded tokens (a new sequence empties the KV cache), then layer 0's attention |
//! | `Ll.attn`, l > 0 | adds layer l−1's FFN output to the residual stream (checking that every (token, neuron) activation the trace lists was computed once), then layer l's attention |
//! | `Ll.n<first>+<count>` | the cluster's active neurons for each token of the pass, from the cluster's weights **as read into the executor's memory** ([`super::bundle`]) |
//! | `embedding` (the tied head) | adds the last FFN output, then the last token's logits |
//!
//! Attention, norms and the output head are computed from the in-process model (loaded from
//! the GGUF without its FFN matrices); the plan's warm-up still reads their bytes from the
//! store into the budget, so memory and load time are the run's. Which neurons each token
//! computes is the trace's: the run is trace-driven, like the simulator's replay of the same
//! trace.

use super::bundle::{cluster_ffn, ClusterInput};
use super::fixed_sum::FixedSum;
use super::recorded::RecordedRun;
use crate::exec::store::layout::weight_bits;
use crate::llm::model::{KvCache, LlamaModel, LogitsWanted, SteppedPass};
use crate::model::{Precision, TensorKind, TensorRef};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// The logits at the end of one pass: the last token's.
#[derive(Clone, Debug, PartialEq)]
pub struct PassOutput {
    /// Index (into the run's records) of the token whose logits these are.
    pub token: usize,
    pub logits: Vec<f32>,
}

struct Pass {
    stepped: SteppedPass,
    /// Index of the pass's first token in the run.
    first: usize,
    /// The layer whose attention ran last (its FFN is being computed).
    layer: usize,
    /// That layer's FFN input, shared read-only with the cluster ops.
    input: Arc<Vec<f32>>,
    sum: FixedSum,
    /// Clusters (by first neuron) computed for `layer`.
    computed: BTreeSet<u32>,
    /// Cluster ops of `layer` started and not yet added in.
    in_flight: usize,
    /// Numbers passes, so a cluster op can tell that its pass is still the current one.
    serial: u64,
    pairs: usize,
}

struct State {
    cache: KvCache,
    cursor: usize,
    pass: Option<Pass>,
    passes_started: u64,
    /// The sequence the KV cache holds.
    sequence: Option<u32>,
    outputs: Vec<PassOutput>,
    scratch: Vec<f32>,
}

/// One run of the real model over a recorded trace (see the module docs).
pub struct ModelSession {
    model: Arc<LlamaModel>,
    run: Arc<RecordedRun>,
    hidden: usize,
    state: Mutex<State>,
}

impl std::fmt::Debug for ModelSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelSession")
            .field("format", &self.model.format())
            .field("tokens", &self.run.records.len())
            .finish()
    }
}

impl ModelSession {
    /// A session over `run` with `model`'s attention and head (its FFN matrices are not used).
    pub fn new(model: Arc<LlamaModel>, run: Arc<RecordedRun>) -> Result<ModelSession, String> {
        let c = model.config();
        if c.layer_count != run.layers || c.ffn_size != run.ffn as usize {
            return Err(format!(
                "the trace has {} layers of {} neurons but the model {} of {}",
                run.layers, run.ffn, c.layer_count, c.ffn_size
            ));
        }
        let cache = model.new_cache(run.longest_sequence().max(1));
        Ok(ModelSession {
            hidden: c.hidden_size,
            model,
            run,
            state: Mutex::new(State {
                cache,
                cursor: 0,
                pass: None,
                passes_started: 0,
                sequence: None,
                outputs: Vec::new(),
                scratch: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The logits of every finished pass, in order.
    pub fn outputs(&self) -> Vec<PassOutput> {
        self.lock().outputs.clone()
    }

    /// Tokens processed so far.
    pub fn tokens_done(&self) -> usize {
        self.lock().cursor
    }

    /// Performs one compute op (see the module docs); `weights` are the op's tensor's bytes in
    /// memory at `precision`.
    pub fn compute(
        &self,
        tensor: TensorRef,
        batch: u32,
        precision: Precision,
        weights: &[u8],
    ) -> Result<(), String> {
        match tensor.kind {
            TensorKind::Attention => self.attention(tensor.layer as usize, batch as usize),
            TensorKind::Neurons { first, count, .. } => {
                self.cluster(tensor.layer as usize, first, count, precision, weights)
            }
            TensorKind::Embedding | TensorKind::LmHead => self.head(),
            other => Err(format!(
                "the real model has no compute for {other:?} (a neuron-level policy's plan computes attention, neuron clusters and the head)"
            )),
        }
    }

    fn attention(&self, layer: usize, batch: usize) -> Result<(), String> {
        let mut guard = self.lock();
        let s = &mut *guard;
        if layer == 0 {
            if s.pass.is_some() {
                return Err("a pass began before the previous one reached its head".into());
            }
            let first = s.cursor;
            let end = first + batch;
            let records = self.run.records.get(first..end).ok_or_else(|| {
                format!(
                    "the plan runs {batch} tokens after {first}, but the trace has {}",
                    self.run.records.len()
                )
            })?;
            let head = &records[0];
            for (i, r) in records.iter().enumerate() {
                if r.sequence != head.sequence || r.position != head.position + i as u32 {
                    return Err(format!(
                        "tokens {first}..{end} are not consecutive positions of one sequence"
                    ));
                }
            }
            if s.sequence != Some(head.sequence) && head.position != 0 {
                return Err(format!(
                    "token {first} starts sequence {} at position {}: the real-model run needs every sequence from position 0 (record the trace with `edgesim trace record`)",
                    head.sequence, head.position
                ));
            }
            if head.position == 0 {
                s.cache.clear();
                s.sequence = Some(head.sequence);
            } else if s.cache.len() != head.position as usize {
                return Err(format!(
                    "token {first} is at position {} but the KV cache holds {}",
                    head.position,
                    s.cache.len()
                ));
            }
            let stepped = self
                .model
                .begin_pass(&self.run.token_ids[first..end], &mut s.cache)
                .map_err(|e| e.to_string())?;
            s.passes_started += 1;
            s.pass = Some(Pass {
                stepped,
                first,
                layer: 0,
                input: Arc::new(Vec::new()),
                sum: FixedSum::zeros(batch * self.hidden),
                computed: BTreeSet::new(),
                in_flight: 0,
                serial: s.passes_started,
                pairs: 0,
            });
        } else {
            self.fold(s, layer - 1)?;
        }
        let pass = s.pass.as_mut().expect("started above");
        self.model
            .attention_block(layer, &pass.stepped, &mut s.cache)
            .map_err(|e| e.to_string())?;
        pass.layer = layer;
        pass.input = Arc::new(self.model.ffn_input(&pass.stepped, &s.cache).to_vec());
        pass.sum = FixedSum::zeros(pass.stepped.n * self.hidden);
        pass.computed.clear();
        pass.pairs = 0;
        Ok(())
    }

    /// Adds layer `layer`'s FFN output to the residual stream, after checking it is complete.
    fn fold(&self, s: &mut State, layer: usize) -> Result<(), String> {
        let pass = s
            .pass
            .as_mut()
            .ok_or_else(|| format!("layer {}: no pass is running", layer + 1))?;
        if pass.layer != layer {
            return Err(format!(
                "the plan moved past layer {layer} while layer {} was running",
                pass.layer
            ));
        }
        if pass.in_flight > 0 {
            return Err(format!(
                "layer {layer} ended with {} cluster computes still running (the layer's join must depend on every cluster compute)",
                pass.in_flight
            ));
        }
        let expected: usize = (pass.first..pass.first + pass.stepped.n)
            .map(|t| self.run.records[t].neurons_at(layer).len())
            .sum();
        if pass.pairs != expected {
            return Err(format!(
                "layer {layer}: the plan computed {} of the {expected} (token, neuron) activations the trace lists (a demanded neuron cluster was not computed)",
                pass.pairs
            ));
        }
        let out = &mut s.scratch;
        out.resize(pass.sum.len(), 0.0);
        pass.sum.to_f32(out);
        self.model.add_ffn_output(&pass.stepped, &mut s.cache, out);
        Ok(())
    }

    fn cluster(
        &self,
        layer: usize,
        first: u32,
        count: u32,
        precision: Precision,
        weights: &[u8],
    ) -> Result<(), String> {
        let (input, first_token, tokens, serial) = {
            let mut s = self.lock();
            let pass = s
                .pass
                .as_mut()
                .ok_or_else(|| format!("L{layer}.n{first}: no pass is running"))?;
            if pass.layer != layer {
                return Err(format!(
                    "L{layer}.n{first}: computed while layer {} is running",
                    pass.layer
                ));
            }
            if !pass.computed.insert(first) {
                return Err(format!(
                    "L{layer}.n{first}+{count}: computed twice in one pass"
                ));
            }
            pass.in_flight += 1;
            (pass.input.clone(), pass.first, pass.stepped.n, pass.serial)
        };
        let records = &self.run.records[first_token..first_token + tokens];
        let part = weight_bits(precision).and_then(|bits| {
            cluster_ffn(
                &ClusterInput {
                    payload: weights,
                    bits,
                    hidden: self.hidden,
                    first,
                    count,
                    inputs: &input,
                    tokens,
                },
                &|t| records[t].neurons_at(layer),
            )
        });
        let mut s = self.lock();
        let pass = match s.pass.as_mut() {
            Some(p) if p.serial == serial && p.layer == layer => p,
            _ => {
                return Err(format!(
                    "L{layer}.n{first}+{count} finished after its layer ended (the layer's join must depend on every cluster compute)"
                ))
            }
        };
        pass.in_flight -= 1;
        let part = part.map_err(|m| format!("L{layer}.n{first}+{count}: {m}"))?;
        if part.rows.iter().any(|v| !v.is_finite()) {
            return Err(format!(
                "L{layer}.n{first}+{count}: the FFN output is not finite (are the stored weights damaged?)"
            ));
        }
        pass.sum.add_rows(&part.tokens, &part.rows, self.hidden);
        pass.pairs += part.pairs;
        Ok(())
    }

    fn head(&self) -> Result<(), String> {
        let mut guard = self.lock();
        let s = &mut *guard;
        self.fold(s, self.run.layers - 1)?;
        let pass = s.pass.take().expect("fold checked it");
        let mut logits = Vec::new();
        self.model
            .finish_pass(&pass.stepped, &mut s.cache, LogitsWanted::Last, &mut logits)
            .map_err(|e| e.to_string())?;
        s.cursor = pass.first + pass.stepped.n;
        s.outputs.push(PassOutput {
            token: s.cursor - 1,
            logits,
        });
        Ok(())
    }
}
