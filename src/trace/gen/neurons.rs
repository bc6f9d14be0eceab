//! The seeded synthetic neuron-trace generator for dense (non-MoE) models.
//!
//! Each neuron has an activation probability; across a layer these follow a log-normal shape
//! whose spread is solved so that the Gini coefficient of activation counts matches the
//! ReluLLaMA-7B layer at the same relative depth, with mean equal to the model's active
//! fraction (probabilities capped at 1). With the Gini matched, the log-normal shape also
//! reproduces ReluLLaMA's Hot@80% within 0.017 for layers 0-29 and 0.035 for the last two
//! (checked by a test). Over tokens each
//! neuron is a two-state Markov chain with that stationary probability and lag-1
//! autocorrelation `autocorrelation`, so consecutive tokens share active neurons.

use super::normal::inverse_cdf;
use super::schedule::Schedule;
use super::targets::{
    relullama_layer, RELULLAMA_7B_GINI, RELULLAMA_7B_HOT80_FRACTION, RELULLAMA_SOURCE,
};
use crate::model::ModelGeometry;
use crate::sourced::Sourced;
use crate::trace::error::{TraceError, TraceErrorKind};
use crate::trace::header::{SourceKind, StatTarget, TraceHeader, TraceSource};
use crate::trace::reader::TokenSource;
use crate::trace::record::TokenRecord;
use rand::seq::SliceRandom;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::path::Path;

/// Default lag-1 autocorrelation of a neuron's activity between consecutive tokens.
pub const DEFAULT_AUTOCORRELATION: f64 = 0.3;
const AUTOCORRELATION_SOURCE: &str = "assumption: no published per-neuron lag-1 correlation in edgesim's references; LLM-in-a-flash \
     (arXiv 2312.11514) windowing presupposes a positive one; 0.3 chosen as moderate";
/// Quantile points used when solving a layer's log-normal spread (the Gini of the shape does
/// not depend on the layer's width).
const SOLVE_POINTS: usize = 2000;

/// A predictor whose output the trace records: it finds `recall` of the active neurons and
/// `precision` of what it predicts is active.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct NeuronPredictorSpec {
    pub recall: f64,
    pub precision: f64,
}

#[derive(Clone, Debug)]
pub struct NeuronGenConfig {
    pub seed: u64,
    pub tokens: u64,
    pub sequences: u32,
    pub prefill_per_sequence: u32,
    /// Mean fraction of a layer's neurons active per token, with its source.
    pub active_fraction: Sourced<f64>,
    pub autocorrelation: f64,
    pub predictor: Option<NeuronPredictorSpec>,
    /// Seed of the *model*: which neuron gets which activation probability. `None` draws it
    /// from `seed` (one stream for the model and the tokens, as traces generated before this
    /// option). `Some(m)` keeps the model fixed across token seeds, so a calibration trace
    /// (another `seed`) and an evaluation trace describe the same neurons, as PowerInfer-2's
    /// offline profiling and its evaluation run the same model on different text.
    pub model_seed: Option<u64>,
}

impl NeuronGenConfig {
    pub fn new(seed: u64, tokens: u64, active_fraction: Sourced<f64>) -> Self {
        NeuronGenConfig {
            seed,
            tokens,
            sequences: 1,
            prefill_per_sequence: 0,
            active_fraction,
            autocorrelation: DEFAULT_AUTOCORRELATION,
            predictor: None,
            model_seed: None,
        }
    }
}

struct LayerChain {
    /// Per neuron id: P(active | active before), P(active | inactive before), P(active) as
    /// thresholds on a uniform u32.
    stay_on: Vec<u32>,
    turn_on: Vec<u32>,
    start_on: Vec<u32>,
    active: Vec<bool>,
}

pub struct NeuronTraceGenerator {
    header: TraceHeader,
    layers: Vec<LayerChain>,
    rng: ChaCha8Rng,
    schedule: Schedule,
    previous_sequence: Option<u32>,
    predictor: Option<NeuronPredictorSpec>,
    false_positive: Vec<u32>,
    recall: u32,
}

/// Probability (0..=1) as a threshold on a uniform u32 draw.
fn threshold(p: f64) -> u32 {
    (p.clamp(0.0, 1.0) * 4_294_967_295.0).round() as u32
}

/// Activation probabilities at `n` evenly spaced quantiles of a log-normal with spread `sigma`,
/// scaled to mean `mean` and capped at 1 (ascending).
fn lognormal_probabilities(n: usize, sigma: f64, mean: f64) -> Vec<f64> {
    let raw: Vec<f64> = (0..n)
        .map(|i| (sigma * inverse_cdf((i as f64 + 0.5) / n as f64)).exp())
        .collect();
    let raw_mean = raw.iter().sum::<f64>() / n as f64;
    let mut p: Vec<f64> = raw.iter().map(|x| (mean * x / raw_mean).min(1.0)).collect();
    // Capping lowers the mean; rescale the uncapped part until the mean is right.
    for _ in 0..100 {
        let m = p.iter().sum::<f64>() / n as f64;
        if (m - mean).abs() < 1e-12 * mean.max(1e-12) {
            break;
        }
        let scale = mean / m;
        for x in p.iter_mut() {
            *x = (*x * scale).min(1.0);
        }
    }
    p
}

/// Gini of an ascending sequence.
fn gini_sorted(x: &[f64]) -> f64 {
    let n = x.len() as f64;
    let total: f64 = x.iter().sum();
    if total <= 0.0 {
        return 0.0;
    }
    x.iter()
        .enumerate()
        .map(|(i, &v)| (2.0 * i as f64 - n + 1.0) * v)
        .sum::<f64>()
        / (n * total)
}

/// Log-normal spread whose capped probabilities have Gini `target` at mean `mean`.
pub fn sigma_for_gini(target: f64, mean: f64) -> f64 {
    let (mut lo, mut hi) = (0.0, 6.0);
    for _ in 0..40 {
        let mid = 0.5 * (lo + hi);
        if gini_sorted(&lognormal_probabilities(SOLVE_POINTS, mid, mean)) < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

impl NeuronTraceGenerator {
    pub fn new(model: &ModelGeometry, cfg: &NeuronGenConfig) -> Result<Self, TraceError> {
        let bad = |m: String| TraceError::new(TraceErrorKind::Input, Path::new("trace gen"), m);
        if model.is_moe() {
            return Err(bad(format!(
                "model {} is an MoE: synthetic neuron traces are generated for dense models only \
                 (generate an expert trace instead)",
                model.name
            )));
        }
        let f = cfg.active_fraction.value;
        if !(f > 0.0 && f < 1.0) {
            return Err(bad(format!("active fraction {f} must be in (0, 1)")));
        }
        if !(0.0..1.0).contains(&cfg.autocorrelation) {
            return Err(bad(format!(
                "autocorrelation {} must be in [0, 1)",
                cfg.autocorrelation
            )));
        }
        if let Some(p) = cfg.predictor {
            if !(p.recall > 0.0 && p.recall <= 1.0 && p.precision > 0.0 && p.precision <= 1.0) {
                return Err(bad(
                    "predictor recall and precision must be in (0, 1]".into()
                ));
            }
        }
        let schedule =
            Schedule::new(cfg.tokens, cfg.sequences, cfg.prefill_per_sequence).map_err(bad)?;
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut model_rng = cfg.model_seed.map(ChaCha8Rng::seed_from_u64);
        let rho = cfg.autocorrelation;
        let mut layers = Vec::new();
        let mut sigmas = Vec::new();
        let mut gini_targets = Vec::new();
        let mut false_positive = Vec::new();
        for l in 0..model.layers {
            let n = model.neurons_in_layer(l) as usize;
            let target = RELULLAMA_7B_GINI[relullama_layer(l, model.layers)];
            let sigma = sigma_for_gini(target, f);
            let p = lognormal_probabilities(n, sigma, f);
            let mut ids: Vec<u32> = (0..n as u32).collect();
            match model_rng.as_mut() {
                Some(m) => ids.shuffle(m),
                None => ids.shuffle(&mut rng),
            }
            let mut by_id = vec![0.0; n];
            for (q, &id) in ids.iter().enumerate() {
                by_id[id as usize] = p[q];
            }
            layers.push(LayerChain {
                stay_on: by_id
                    .iter()
                    .map(|&p| threshold(p + rho * (1.0 - p)))
                    .collect(),
                turn_on: by_id.iter().map(|&p| threshold(p * (1.0 - rho))).collect(),
                start_on: by_id.iter().map(|&p| threshold(p)).collect(),
                active: vec![false; n],
            });
            if let Some(spec) = cfg.predictor {
                // Expected false positives recall·f·n·(1-precision)/precision spread over the
                // (1-f)·n inactive neurons.
                let rate = spec.recall * f * (1.0 - spec.precision) / (spec.precision * (1.0 - f));
                false_positive.push(threshold(rate));
            }
            sigmas.push(sigma);
            gini_targets.push(target);
        }
        let mut targets = vec![StatTarget {
            statistic: "mean_active_fraction".into(),
            value: f,
            source: cfg.active_fraction.source.clone(),
        }];
        let depth_map: Vec<usize> = (0..model.layers)
            .map(|l| relullama_layer(l, model.layers))
            .collect();
        let hot80: Vec<f64> = depth_map
            .iter()
            .map(|&r| RELULLAMA_7B_HOT80_FRACTION[r])
            .collect();
        targets.push(StatTarget {
            statistic: "mean_gini".into(),
            value: gini_targets.iter().sum::<f64>() / gini_targets.len() as f64,
            source: format!("{RELULLAMA_SOURCE}; calibrated per layer"),
        });
        targets.push(StatTarget {
            statistic: "mean_hot_set_80_fraction".into(),
            value: hot80.iter().sum::<f64>() / hot80.len() as f64,
            source: format!("{RELULLAMA_SOURCE}; checked, not calibrated"),
        });
        targets.push(StatTarget {
            statistic: "neuron_autocorrelation".into(),
            value: rho,
            source: AUTOCORRELATION_SOURCE.into(),
        });
        let mut parameters = json!({
            "generator": "edgesim neuron generator v1",
            "seed": cfg.seed,
            "tokens": cfg.tokens,
            "sequences": cfg.sequences,
            "prefill_per_sequence": cfg.prefill_per_sequence,
            "active_fraction": f,
            "autocorrelation": rho,
            "predictor": cfg.predictor,
            "relullama_7b_layer_per_layer": depth_map,
            "gini_per_layer": gini_targets,
            "calibrated": { "lognormal_sigma_per_layer": sigmas },
        });
        if let (Some(m), Some(obj)) = (cfg.model_seed, parameters.as_object_mut()) {
            obj.insert("model_seed".into(), json!(m));
        }
        let description = format!(
            "synthetic {} FFN neuron activity from edgesim's seeded generator (seed {}): {} \
             tokens in {} sequences; per-neuron activation probabilities log-normal with the \
             per-layer Gini of ReluLLaMA-7B at the same relative depth and mean active fraction \
             {f}; each neuron a two-state Markov chain over tokens with lag-1 autocorrelation \
             {rho}{}",
            model.name,
            cfg.seed,
            cfg.tokens,
            cfg.sequences,
            cfg.predictor.map_or(String::new(), |p| format!(
                "; predictor output with recall {} and precision {} (errors independent per neuron)",
                p.recall, p.precision
            ))
        );
        let header = TraceHeader::neuron(
            model,
            cfg.predictor.is_some(),
            TraceSource {
                kind: SourceKind::Synthetic,
                description,
                parameters,
                targets,
            },
        );
        header
            .check()
            .map_err(|e| bad(format!("generated header is inconsistent: {e}")))?;
        Ok(NeuronTraceGenerator {
            header,
            layers,
            rng,
            schedule,
            previous_sequence: None,
            recall: cfg.predictor.map_or(0, |p| threshold(p.recall)),
            predictor: cfg.predictor,
            false_positive,
        })
    }
}

impl TokenSource for NeuronTraceGenerator {
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
        let continues = self.previous_sequence == Some(sequence);
        rec.neuron_offsets.push(0);
        if self.predictor.is_some() {
            rec.predicted_neuron_offsets.push(0);
        }
        for (l, chain) in self.layers.iter_mut().enumerate() {
            for id in 0..chain.active.len() {
                let t = if !continues {
                    chain.start_on[id]
                } else if chain.active[id] {
                    chain.stay_on[id]
                } else {
                    chain.turn_on[id]
                };
                let on = self.rng.next_u32() < t;
                chain.active[id] = on;
                if on {
                    rec.neurons.push(id as u32);
                }
                if self.predictor.is_some() {
                    let t = if on {
                        self.recall
                    } else {
                        self.false_positive[l]
                    };
                    if self.rng.next_u32() < t {
                        rec.predicted_neurons.push(id as u32);
                    }
                }
            }
            rec.neuron_offsets.push(rec.neurons.len() as u32);
            if self.predictor.is_some() {
                rec.predicted_neuron_offsets
                    .push(rec.predicted_neurons.len() as u32);
            }
        }
        self.previous_sequence = Some(sequence);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::gen::targets::RELULLAMA_7B_HOT80_FRACTION;

    /// The log-normal shape, once its Gini is matched, gives ReluLLaMA-7B's Hot@80% too: a
    /// check of the shape, since Hot@80% is not calibrated. Measured: within 0.017 for layers
    /// 0-29, 0.035 for the last two (their activation counts have a heavier hot tail).
    #[test]
    fn lognormal_matching_gini_reproduces_relullama_hot80() {
        for layer in 0..32 {
            let sigma = sigma_for_gini(RELULLAMA_7B_GINI[layer], 0.10);
            let p = lognormal_probabilities(11008, sigma, 0.10);
            assert!((gini_sorted(&p) - RELULLAMA_7B_GINI[layer]).abs() < 0.005);
            let total: f64 = p.iter().sum();
            let mut covered = 0.0;
            let mut hot = 0;
            for x in p.iter().rev() {
                covered += x;
                hot += 1;
                if covered >= 0.8 * total {
                    break;
                }
            }
            let fraction = hot as f64 / p.len() as f64;
            let tolerance = if layer < 30 { 0.02 } else { 0.04 };
            assert!(
                (fraction - RELULLAMA_7B_HOT80_FRACTION[layer]).abs() < tolerance,
                "layer {layer}: hot@80 {fraction} vs {}",
                RELULLAMA_7B_HOT80_FRACTION[layer]
            );
        }
    }
}
