//! Statistics of an expert trace, accumulated in one streaming pass.
//!
//! Memory is O(MoE layers × experts²) for the layer-to-layer transition counts and
//! O(MoE layers × experts) for the rest, independent of the trace's length.

use super::skew::{gini, normalized_entropy, top_share};
use crate::trace::header::TraceHeader;
use crate::trace::record::TokenRecord;
use serde::Serialize;

/// Reuse-distance buckets: distance 1, 2, 3-4, 5-8, ..., 513-1024, more, never used before.
pub const REUSE_DISTANCE_BUCKETS: [&str; 13] = [
    "1", "2", "3-4", "5-8", "9-16", "17-32", "33-64", "65-128", "129-256", "257-512", "513-1024",
    ">1024", "never",
];
/// Layer distances for which the static cross-layer predictor is evaluated.
pub const MAX_CROSS_LAYER_DISTANCE: usize = 3;
/// HOBBIT's thresholds on the cumulative gate score for Mixtral (H §3.2): at most T1 loads
/// high precision, at most T2 low precision, beyond T2 the expert is skipped.
pub const HOBBIT_T1: f64 = 0.6;
pub const HOBBIT_T2: f64 = 0.9;

fn reuse_bucket(distance: u64) -> usize {
    if distance > 1024 {
        11
    } else {
        // ceil(log2(d)): 1 -> 0, 2 -> 1, 3..4 -> 2, 5..8 -> 3, ...
        (64 - (distance - 1).leading_zeros()) as usize
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExpertLayerStats {
    /// 0-based index among MoE layers.
    pub moe_layer: u32,
    /// Index among all layers of the model.
    pub layer: u32,
    /// Times each expert was selected (any of the top-k slots).
    pub selections: Vec<u64>,
    /// Share of selections taken by the most popular expert (uniform: 1/experts).
    pub top_share: f64,
    pub gini: f64,
    pub normalized_entropy: f64,
    /// Mean fraction of the previous token's experts selected again (same sequence).
    pub consecutive_reuse: f64,
    /// `lru_hit_rate[c-1]`: hit rate of an LRU cache of `c` experts of this layer alone,
    /// accesses in the record's slot order, the cache kept across sequences.
    pub lru_hit_rate: Vec<f64>,
    /// Counts per [`REUSE_DISTANCE_BUCKETS`]: tokens since the same expert was last used at
    /// this layer (across sequences).
    pub reuse_distance: Vec<u64>,
    /// Accuracy of the best static predictor of layer l+1's top-1 expert from this layer's
    /// top-1 (the most frequent successor of each expert, evaluated on the trace itself).
    /// `None` for the last MoE layer.
    pub next_layer_top1_accuracy: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PredictionAccuracy {
    pub distance: u32,
    /// Predictions evaluated (token × MoE layer pairs with a layer `distance` ahead).
    pub predictions: u64,
    /// Predicted top-1 equals the actual top-1.
    pub top1_accuracy: f64,
    /// Fraction of the actual top-k found in the predicted top-k.
    pub recall: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExpertStats {
    pub layers: Vec<ExpertLayerStats>,
    pub mean_top_share: f64,
    pub mean_gini: f64,
    pub mean_normalized_entropy: f64,
    pub mean_consecutive_reuse: f64,
    /// Mean over layers of `lru_hit_rate` at capacities top_k, 2·top_k, 3·top_k (those below
    /// the expert count), as `(capacity, rate)`.
    pub mean_lru_hit_rate: Vec<(u32, f64)>,
    /// Reuse-distance histogram summed over layers, per [`REUSE_DISTANCE_BUCKETS`].
    pub reuse_distance: Vec<u64>,
    /// Static cross-layer predictor accuracy for distances 1..=3, mean over layer pairs, as
    /// `(distance, accuracy)`.
    pub static_top1_accuracy: Vec<(u32, f64)>,
    /// Accuracy of the predictions recorded in the trace, per distance (empty if none).
    pub recorded_predictions: Vec<PredictionAccuracy>,
    /// HOBBIT's precision split of all selections at T1 = 0.6, T2 = 0.9: shares loaded high,
    /// low, skipped.
    pub hobbit_split: [f64; 3],
    /// Second expert's gate weight (top-k ≥ 2): shares ≥ 0.4, in [0.1, 0.4), < 0.1.
    pub second_weight_split: Option<[f64; 3]>,
}

pub struct ExpertAccumulator {
    layers: usize,
    experts: usize,
    k: usize,
    ahead: usize,
    first_moe_layer: u32,
    token_index: u64,
    selections: Vec<u64>,
    /// Per layer: experts in most-recently-used order (move-to-front list).
    recency: Vec<Vec<u16>>,
    /// Per layer: histogram of positions in the recency list at access (last = never seen).
    stack_positions: Vec<Vec<u64>>,
    last_use: Vec<u64>,
    reuse_distance: Vec<u64>,
    reuse_sum: Vec<f64>,
    reuse_tokens: u64,
    previous: Option<(u32, Vec<u16>)>,
    /// transitions[d-1][(layer * E + a) * E + b]
    transitions: Vec<Vec<u32>>,
    prediction_counts: Vec<[u64; 3]>,
    hobbit: [u64; 3],
    second: [u64; 3],
}

impl ExpertAccumulator {
    pub fn new(h: &TraceHeader) -> Self {
        let layers = h.moe_layers as usize;
        let experts = h.experts as usize;
        let transitions = (1..=MAX_CROSS_LAYER_DISTANCE.min(layers.saturating_sub(1)))
            .map(|d| vec![0u32; (layers - d) * experts * experts])
            .collect();
        ExpertAccumulator {
            layers,
            experts,
            k: h.top_k as usize,
            ahead: h.predicted_layers_ahead as usize,
            first_moe_layer: h.first_moe_layer,
            token_index: 0,
            selections: vec![0; layers * experts],
            recency: vec![Vec::with_capacity(experts); layers],
            stack_positions: vec![vec![0; experts + 1]; layers],
            last_use: vec![u64::MAX; layers * experts],
            reuse_distance: vec![0; layers * REUSE_DISTANCE_BUCKETS.len()],
            reuse_sum: vec![0.0; layers],
            reuse_tokens: 0,
            previous: None,
            transitions,
            prediction_counts: vec![[0; 3]; h.predicted_layers_ahead as usize],
            hobbit: [0; 3],
            second: [0; 3],
        }
    }

    pub fn add(&mut self, rec: &TokenRecord) {
        let (k, e_count) = (self.k, self.experts);
        let same_sequence = matches!(&self.previous, Some((s, _)) if *s == rec.sequence);
        if same_sequence {
            self.reuse_tokens += 1;
        }
        for layer in 0..self.layers {
            let ids = rec.experts_at(layer, k);
            for &e in ids {
                let e = e as usize;
                self.selections[layer * e_count + e] += 1;
                let last = &mut self.last_use[layer * e_count + e];
                let bucket = if *last == u64::MAX {
                    REUSE_DISTANCE_BUCKETS.len() - 1
                } else {
                    reuse_bucket(self.token_index - *last)
                };
                self.reuse_distance[layer * REUSE_DISTANCE_BUCKETS.len() + bucket] += 1;
                *last = self.token_index;
                let list = &mut self.recency[layer];
                let position = list.iter().position(|&x| x as usize == e);
                match position {
                    Some(p) => {
                        self.stack_positions[layer][p] += 1;
                        list.remove(p);
                    }
                    None => self.stack_positions[layer][e_count] += 1,
                }
                list.insert(0, e as u16);
            }
            if same_sequence {
                let prev = &self
                    .previous
                    .as_ref()
                    .expect("same_sequence implies previous")
                    .1[layer * k..(layer + 1) * k];
                let reused = ids.iter().filter(|e| prev.contains(e)).count();
                self.reuse_sum[layer] += reused as f64 / k as f64;
            }
            for (d_index, counts) in self.transitions.iter_mut().enumerate() {
                let d = d_index + 1;
                if layer + d < self.layers {
                    let a = ids[0] as usize;
                    let b = rec.experts_at(layer + d, k)[0] as usize;
                    counts[(layer * e_count + a) * e_count + b] += 1;
                }
            }
            for d in 1..=self.ahead {
                if let Some(pred) = rec.predicted_at(layer, d, self.ahead, k) {
                    if layer + d < self.layers {
                        let actual = rec.experts_at(layer + d, k);
                        let c = &mut self.prediction_counts[d - 1];
                        c[0] += 1;
                        c[1] += u64::from(pred[0] == actual[0]);
                        c[2] += actual.iter().filter(|a| pred.contains(a)).count() as u64;
                    }
                }
            }
            let scores = rec.scores_at(layer, k);
            let total: f64 = scores.iter().map(|&s| f64::from(s)).sum();
            let mut cumulative = 0.0;
            for (slot, &s) in scores.iter().enumerate() {
                let unimportance = if slot == 0 || total <= 0.0 {
                    0.0
                } else {
                    cumulative / total
                };
                cumulative += f64::from(s);
                let class = if unimportance <= HOBBIT_T1 {
                    0
                } else if unimportance <= HOBBIT_T2 {
                    1
                } else {
                    2
                };
                self.hobbit[class] += 1;
            }
            if k >= 2 && total > 0.0 {
                let w = f64::from(scores[1]) / total;
                let class = if w >= 0.4 {
                    0
                } else if w >= 0.1 {
                    1
                } else {
                    2
                };
                self.second[class] += 1;
            }
        }
        match &mut self.previous {
            Some((s, v)) => {
                *s = rec.sequence;
                v.clear();
                v.extend_from_slice(&rec.experts);
            }
            None => self.previous = Some((rec.sequence, rec.experts.clone())),
        }
        self.token_index += 1;
    }

    pub fn finish(self) -> ExpertStats {
        let e_count = self.experts;
        let buckets = REUSE_DISTANCE_BUCKETS.len();
        let mut layers = Vec::with_capacity(self.layers);
        for layer in 0..self.layers {
            let selections = self.selections[layer * e_count..(layer + 1) * e_count].to_vec();
            let accesses: u64 = self.stack_positions[layer].iter().sum();
            let mut hits = 0u64;
            let mut lru_hit_rate = Vec::with_capacity(e_count);
            for c in 0..e_count {
                hits += self.stack_positions[layer][c];
                lru_hit_rate.push(ratio(hits, accesses));
            }
            let next_layer_top1_accuracy = self
                .transitions
                .first()
                .filter(|_| layer + 1 < self.layers)
                .map(|t| {
                    static_accuracy(
                        &t[layer * e_count * e_count..(layer + 1) * e_count * e_count],
                        e_count,
                    )
                });
            layers.push(ExpertLayerStats {
                moe_layer: layer as u32,
                layer: self.first_moe_layer + layer as u32,
                top_share: top_share(&selections),
                gini: gini(&selections),
                normalized_entropy: normalized_entropy(&selections),
                consecutive_reuse: if self.reuse_tokens == 0 {
                    0.0
                } else {
                    self.reuse_sum[layer] / self.reuse_tokens as f64
                },
                lru_hit_rate,
                reuse_distance: self.reuse_distance[layer * buckets..(layer + 1) * buckets]
                    .to_vec(),
                next_layer_top1_accuracy,
                selections,
            });
        }
        let mean = |f: &dyn Fn(&ExpertLayerStats) -> f64| {
            layers.iter().map(f).sum::<f64>() / layers.len().max(1) as f64
        };
        let mean_lru_hit_rate = (1..=3)
            .map(|m| m * self.k)
            .filter(|&c| c < e_count)
            .map(|c| (c as u32, mean(&|l| l.lru_hit_rate[c - 1])))
            .collect();
        let mut reuse_distance = vec![0u64; buckets];
        for l in &layers {
            for (sum, v) in reuse_distance.iter_mut().zip(&l.reuse_distance) {
                *sum += v;
            }
        }
        let static_top1_accuracy = self
            .transitions
            .iter()
            .enumerate()
            .map(|(d_index, t)| {
                let pairs = self.layers - d_index - 1;
                let acc: f64 = (0..pairs)
                    .map(|l| {
                        static_accuracy(
                            &t[l * e_count * e_count..(l + 1) * e_count * e_count],
                            e_count,
                        )
                    })
                    .sum();
                ((d_index + 1) as u32, acc / pairs as f64)
            })
            .collect();
        let recorded_predictions = self
            .prediction_counts
            .iter()
            .enumerate()
            .filter(|(_, c)| c[0] > 0)
            .map(|(d_index, c)| PredictionAccuracy {
                distance: d_index as u32 + 1,
                predictions: c[0],
                top1_accuracy: ratio(c[1], c[0]),
                recall: ratio(c[2], c[0] * self.k as u64),
            })
            .collect();
        let split = |c: [u64; 3]| {
            let t = c.iter().sum::<u64>();
            [ratio(c[0], t), ratio(c[1], t), ratio(c[2], t)]
        };
        ExpertStats {
            mean_top_share: mean(&|l| l.top_share),
            mean_gini: mean(&|l| l.gini),
            mean_normalized_entropy: mean(&|l| l.normalized_entropy),
            mean_consecutive_reuse: mean(&|l| l.consecutive_reuse),
            mean_lru_hit_rate,
            reuse_distance,
            static_top1_accuracy,
            recorded_predictions,
            hobbit_split: split(self.hobbit),
            second_weight_split: (self.k >= 2).then(|| split(self.second)),
            layers,
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Accuracy of predicting b from a by the most frequent b for each a, over an E×E count matrix.
fn static_accuracy(counts: &[u32], experts: usize) -> f64 {
    let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
    let best: u64 = counts
        .chunks_exact(experts)
        .map(|row| u64::from(*row.iter().max().unwrap_or(&0)))
        .sum();
    ratio(best, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuse_buckets_are_powers_of_two() {
        let got: Vec<usize> = [1, 2, 3, 4, 5, 8, 9, 1024, 1025]
            .iter()
            .map(|&d| reuse_bucket(d))
            .collect();
        assert_eq!(got, vec![0, 1, 2, 2, 3, 3, 4, 10, 11]);
    }
}
