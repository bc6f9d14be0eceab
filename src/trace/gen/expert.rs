//! The seeded synthetic expert-trace generator: a [`TokenSource`], so it can stream into a
//! [`crate::trace::TraceWriter`] or straight into a simulation without touching disk.

use super::routing::{
    calibrate, RoutingProcess, CALIBRATION_LAYERS, CALIBRATION_SEQUENCE, CALIBRATION_TOKENS,
};
use super::schedule::Schedule;
use super::targets::RoutingTargets;
use crate::model::ModelGeometry;
use crate::trace::error::{TraceError, TraceErrorKind};
use crate::trace::header::{SourceKind, TraceHeader, TraceSource};
use crate::trace::reader::TokenSource;
use crate::trace::record::{TokenRecord, NO_PREDICTION};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::path::Path;

/// HOBBIT (arXiv 2411.01433, Fig. 7b): its gate-based predictor's top-1 accuracy on
/// Mixtral-8x7B is 96% for the next layer and about 90% for 2-3 layers ahead.
pub const HOBBIT_PREDICTION_ACCURACY: [f64; 3] = [0.96, 0.90, 0.90];

#[derive(Clone, Debug)]
pub struct ExpertGenConfig {
    pub seed: u64,
    /// Tokens in the whole trace.
    pub tokens: u64,
    pub sequences: u32,
    /// Prefill tokens at the start of each sequence (fewer if the sequence is shorter).
    pub prefill_per_sequence: u32,
    /// Top-1 accuracy of the recorded predictions for 1, 2, ... layers ahead; empty for none.
    pub prediction_accuracy: Vec<f64>,
    pub targets: RoutingTargets,
}

impl ExpertGenConfig {
    /// Defaults: the model's cited targets, no predictions.
    pub fn new(model: &ModelGeometry, seed: u64, tokens: u64) -> Self {
        ExpertGenConfig {
            seed,
            tokens,
            sequences: 1,
            prefill_per_sequence: 0,
            prediction_accuracy: Vec::new(),
            targets: RoutingTargets::for_model(model),
        }
    }
}

pub struct ExpertTraceGenerator {
    header: TraceHeader,
    process: RoutingProcess,
    rng: ChaCha8Rng,
    schedule: Schedule,
    accuracy: Vec<f64>,
    previous: Vec<u16>,
    previous_sequence: Option<u32>,
    experts: usize,
    k: usize,
    layers: usize,
}

impl ExpertTraceGenerator {
    /// Calibrates the routing process for `model` and `cfg` and prepares to stream.
    pub fn new(model: &ModelGeometry, cfg: &ExpertGenConfig) -> Result<Self, TraceError> {
        let bad = |m: String| TraceError::new(TraceErrorKind::Input, Path::new("trace gen"), m);
        if !model.is_moe() {
            return Err(bad(format!(
                "model {} has no experts: generate a neuron trace instead",
                model.name
            )));
        }
        let schedule =
            Schedule::new(cfg.tokens, cfg.sequences, cfg.prefill_per_sequence).map_err(bad)?;
        let layers = model.moe_layers() as usize;
        if cfg.prediction_accuracy.len() > layers.max(1) || cfg.prediction_accuracy.len() > 64 {
            return Err(bad(format!(
                "{} prediction distances requested, but the model has {layers} MoE layers",
                cfg.prediction_accuracy.len()
            )));
        }
        if let Some(a) = cfg
            .prediction_accuracy
            .iter()
            .find(|a| !(0.0..=1.0).contains(*a))
        {
            return Err(bad(format!("prediction accuracy {a} is not in [0, 1]")));
        }
        if cfg.targets.gini_per_moe_layer.len() != layers {
            return Err(bad(format!(
                "targets give {} layers of popularity skew, the model has {layers} MoE layers",
                cfg.targets.gini_per_moe_layer.len()
            )));
        }
        let (experts, k) = (model.experts as usize, model.top_k as usize);
        let knobs = calibrate(experts, k, layers, &cfg.targets, cfg.seed);
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let process = RoutingProcess::new(experts, k, layers, knobs.clone(), &mut rng);
        let description = format!(
            "synthetic {} routing from edgesim's seeded generator (seed {}): {} tokens in {} \
             sequences, {} prefill tokens each; experts picked by cross-layer coupling, \
             token-to-token reuse and per-layer popularity, calibrated to the cited targets; \
             gate scores independent of expert identity{}",
            model.name,
            cfg.seed,
            cfg.tokens,
            cfg.sequences,
            cfg.prefill_per_sequence,
            if cfg.prediction_accuracy.is_empty() {
                String::new()
            } else {
                format!(
                    "; predictions for {} layers ahead with top-1 accuracy {:?} (errors \
                     uniformly random among the other experts)",
                    cfg.prediction_accuracy.len(),
                    cfg.prediction_accuracy
                )
            }
        );
        let parameters = json!({
            "generator": "edgesim routing generator v1",
            "seed": cfg.seed,
            "tokens": cfg.tokens,
            "sequences": cfg.sequences,
            "prefill_per_sequence": cfg.prefill_per_sequence,
            "prediction_accuracy": cfg.prediction_accuracy,
            "targets": {
                "gini_per_moe_layer": cfg.targets.gini_per_moe_layer,
                "consecutive_reuse": cfg.targets.consecutive_reuse,
                "next_layer_top1_accuracy": cfg.targets.next_layer_top1_accuracy,
            },
            "calibrated": knobs,
            "calibration": {
                "tokens": CALIBRATION_TOKENS,
                "sequence_length": CALIBRATION_SEQUENCE,
                "layers": layers.min(CALIBRATION_LAYERS),
            },
        });
        let header = TraceHeader::expert(
            model,
            cfg.prediction_accuracy.len() as u32,
            TraceSource {
                kind: SourceKind::Synthetic,
                description,
                parameters,
                targets: cfg.targets.cited.clone(),
            },
        );
        header
            .check()
            .map_err(|e| bad(format!("generated header is inconsistent: {e}")))?;
        Ok(ExpertTraceGenerator {
            header,
            process,
            rng,
            schedule,
            accuracy: cfg.prediction_accuracy.clone(),
            previous: Vec::new(),
            previous_sequence: None,
            experts,
            k,
            layers,
        })
    }

    pub fn knobs(&self) -> &super::routing::RoutingKnobs {
        self.process.knobs()
    }

    fn predict(&mut self, rec: &mut TokenRecord) {
        let (k, ahead) = (self.k, self.accuracy.len());
        for l in 0..self.layers {
            for d in 1..=ahead {
                let start = rec.predicted.len();
                if l + d >= self.layers {
                    rec.predicted.extend(std::iter::repeat_n(NO_PREDICTION, k));
                    continue;
                }
                rec.predicted
                    .extend_from_slice(&rec.experts[(l + d) * k..(l + d + 1) * k]);
                for slot in 0..k {
                    if self.rng.gen::<f64>() >= self.accuracy[d - 1] {
                        // Wrong: any expert not already in the predicted set, uniformly.
                        let others = self.experts - k;
                        let mut pick = self.rng.gen_range(0..others);
                        for e in 0..self.experts as u16 {
                            if rec.predicted[start..start + k].contains(&e) {
                                continue;
                            }
                            if pick == 0 {
                                rec.predicted[start + slot] = e;
                                break;
                            }
                            pick -= 1;
                        }
                    }
                }
            }
        }
    }
}

impl TokenSource for ExpertTraceGenerator {
    fn header(&self) -> &TraceHeader {
        &self.header
    }

    fn next_into(&mut self, rec: &mut TokenRecord) -> Result<bool, TraceError> {
        let Some((sequence, position, phase)) = self.schedule.next_token() else {
            return Ok(false);
        };
        rec.clear();
        rec.sequence = sequence;
        rec.position = position;
        rec.phase = phase;
        let previous = (self.previous_sequence == Some(sequence)).then_some(&self.previous[..]);
        self.process.token(
            &mut self.rng,
            previous,
            &mut rec.experts,
            Some(&mut rec.scores),
        );
        if !self.accuracy.is_empty() && self.experts > self.k {
            self.predict(rec);
        } else if !self.accuracy.is_empty() {
            // Every expert is selected: predictions are trivially right.
            for l in 0..self.layers {
                for d in 1..=self.accuracy.len() {
                    if l + d < self.layers {
                        let s = (l + d) * self.k;
                        let copy: Vec<u16> = rec.experts[s..s + self.k].to_vec();
                        rec.predicted.extend_from_slice(&copy);
                    } else {
                        rec.predicted
                            .extend(std::iter::repeat_n(NO_PREDICTION, self.k));
                    }
                }
            }
        }
        self.previous.clear();
        self.previous.extend_from_slice(&rec.experts);
        self.previous_sequence = Some(sequence);
        Ok(true)
    }
}
