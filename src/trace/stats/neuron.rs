//! Statistics of a neuron trace, accumulated in one streaming pass. Memory is one counter per
//! neuron of the model plus the previous record.

use super::skew::{gini, hot_set_size};
use crate::trace::header::TraceHeader;
use crate::trace::record::TokenRecord;
use serde::Serialize;

/// Share of activations the reported hot set covers (PowerInfer's "80% of activations").
pub const HOT_SET_COVERAGE: f64 = 0.8;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NeuronLayerStats {
    pub layer: u32,
    pub neurons: u32,
    /// Mean over tokens of active neurons / neurons.
    pub mean_active_fraction: f64,
    /// Fewest neurons covering 80% of all activations of this layer.
    pub hot_set_80: u64,
    pub hot_set_80_fraction: f64,
    /// Gini coefficient of per-neuron activation counts.
    pub gini: f64,
    /// Neurons never active in the trace.
    pub never_active: u64,
    /// Mean fraction of the previous token's active neurons active again (same sequence).
    pub consecutive_reuse: f64,
    /// Predictor output, if recorded: fraction of active neurons predicted, and fraction of
    /// predicted neurons that were active.
    pub predictor_recall: Option<f64>,
    pub predictor_precision: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NeuronStats {
    pub layers: Vec<NeuronLayerStats>,
    pub mean_active_fraction: f64,
    pub mean_hot_set_80_fraction: f64,
    pub mean_gini: f64,
    pub mean_consecutive_reuse: f64,
}

pub struct NeuronAccumulator {
    neurons: Vec<u32>,
    counts: Vec<Vec<u64>>,
    active_fraction_sum: Vec<f64>,
    tokens: u64,
    reuse_sum: Vec<f64>,
    reuse_tokens: Vec<u64>,
    predicted_hits: Vec<u64>,
    predicted_total: Vec<u64>,
    actual_total: Vec<u64>,
    has_predictions: bool,
    previous: Option<TokenRecord>,
}

impl NeuronAccumulator {
    pub fn new(h: &TraceHeader) -> Self {
        let layers = h.neurons_per_layer.len();
        NeuronAccumulator {
            neurons: h.neurons_per_layer.clone(),
            counts: h
                .neurons_per_layer
                .iter()
                .map(|&n| vec![0; n as usize])
                .collect(),
            active_fraction_sum: vec![0.0; layers],
            tokens: 0,
            reuse_sum: vec![0.0; layers],
            reuse_tokens: vec![0; layers],
            predicted_hits: vec![0; layers],
            predicted_total: vec![0; layers],
            actual_total: vec![0; layers],
            has_predictions: h.neuron_predictions,
            previous: None,
        }
    }

    pub fn add(&mut self, rec: &TokenRecord) {
        let same_sequence = matches!(&self.previous, Some(p) if p.sequence == rec.sequence);
        for (layer, &n) in self.neurons.iter().enumerate() {
            let active = rec.neurons_at(layer);
            for &id in active {
                self.counts[layer][id as usize] += 1;
            }
            self.active_fraction_sum[layer] += active.len() as f64 / f64::from(n);
            if same_sequence {
                let prev = self.previous.as_ref().expect("checked").neurons_at(layer);
                if !prev.is_empty() {
                    self.reuse_sum[layer] +=
                        sorted_overlap(prev, active) as f64 / prev.len() as f64;
                    self.reuse_tokens[layer] += 1;
                }
            }
            if let Some(predicted) = rec.predicted_neurons_at(layer) {
                self.predicted_hits[layer] += sorted_overlap(predicted, active) as u64;
                self.predicted_total[layer] += predicted.len() as u64;
                self.actual_total[layer] += active.len() as u64;
            }
        }
        self.tokens += 1;
        match &mut self.previous {
            Some(p) => p.clone_from(rec),
            None => self.previous = Some(rec.clone()),
        }
    }

    pub fn finish(self) -> NeuronStats {
        let mut layers = Vec::with_capacity(self.neurons.len());
        for (layer, &n) in self.neurons.iter().enumerate() {
            let counts = &self.counts[layer];
            let hot = hot_set_size(counts, HOT_SET_COVERAGE) as u64;
            let div = |a: f64, b: u64| if b == 0 { 0.0 } else { a / b as f64 };
            layers.push(NeuronLayerStats {
                layer: layer as u32,
                neurons: n,
                mean_active_fraction: div(self.active_fraction_sum[layer], self.tokens),
                hot_set_80: hot,
                hot_set_80_fraction: hot as f64 / f64::from(n),
                gini: gini(counts),
                never_active: counts.iter().filter(|&&c| c == 0).count() as u64,
                consecutive_reuse: div(self.reuse_sum[layer], self.reuse_tokens[layer]),
                predictor_recall: self
                    .has_predictions
                    .then(|| div(self.predicted_hits[layer] as f64, self.actual_total[layer])),
                predictor_precision: self.has_predictions.then(|| {
                    div(
                        self.predicted_hits[layer] as f64,
                        self.predicted_total[layer],
                    )
                }),
            });
        }
        let mean = |f: &dyn Fn(&NeuronLayerStats) -> f64| {
            layers.iter().map(f).sum::<f64>() / layers.len().max(1) as f64
        };
        NeuronStats {
            mean_active_fraction: mean(&|l| l.mean_active_fraction),
            mean_hot_set_80_fraction: mean(&|l| l.hot_set_80_fraction),
            mean_gini: mean(&|l| l.gini),
            mean_consecutive_reuse: mean(&|l| l.consecutive_reuse),
            layers,
        }
    }
}

/// Size of the intersection of two ascending id lists.
fn sorted_overlap(a: &[u32], b: &[u32]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                n += 1;
                i += 1;
                j += 1;
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_of_sorted_lists() {
        assert_eq!(sorted_overlap(&[1, 3, 5, 7], &[3, 4, 5, 8]), 2);
        assert_eq!(sorted_overlap(&[], &[1]), 0);
    }
}
