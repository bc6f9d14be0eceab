//! The synthetic routing process and its calibration.
//!
//! For each token and MoE layer the process picks k distinct experts in slot order:
//!
//! 1. **Cross-layer coupling**: with probability `coupling`, the first expert is the one of the
//!    same popularity rank at this layer as the token's top-1 expert at the previous layer (a
//!    fixed per-layer map). This makes layer l's top-1 predict layer l+1's, as the residual
//!    stream does in real MoEs.
//! 2. **Token-to-token reuse**: each expert the previous token of the same sequence chose at
//!    this layer is kept, in its slot order, with probability `keep_probability`.
//! 3. **Popularity**: the remaining slots are drawn without replacement from the layer's
//!    popularity distribution, `p(rank r) ∝ exp(-beta · r / (E - 1))` over a seeded random
//!    ranking of the experts.
//!
//! Gate scores are independent of identity: the softmax, renormalised over the top k, of the k
//! largest of E i.i.d. N(0, s²) logits (s = `gate_logit_scale`).
//!
//! Calibration solves `beta` per layer so that the expected selection shares (top-k inclusion
//! probabilities, Rosén's approximation `1 - exp(-λ p)`) have the target Gini, then solves
//! `keep_probability` and `coupling` by bisection on short seeded simulations so that the
//! consecutive-token reuse and the static next-layer top-1 predictability hit their targets.

use super::normal::standard_normal;
use super::targets::RoutingTargets;
use crate::trace::stats::skew::gini;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// The process's parameters after calibration (written into the trace header).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RoutingKnobs {
    pub popularity_beta: Vec<f64>,
    pub keep_probability: f64,
    pub coupling: f64,
    pub gate_logit_scale: f64,
}

/// Tokens simulated per calibration step, in sequences of `CALIBRATION_SEQUENCE` tokens, over
/// at most `CALIBRATION_LAYERS` layers: enough for a standard error of about 0.01 on reuse.
pub const CALIBRATION_TOKENS: usize = 2048;
pub const CALIBRATION_SEQUENCE: usize = 256;
pub const CALIBRATION_LAYERS: usize = 6;
const BISECTION_STEPS: usize = 11;
const CALIBRATION_ROUNDS: usize = 2;

pub struct RoutingProcess {
    experts: usize,
    k: usize,
    layers: usize,
    knobs: RoutingKnobs,
    /// popularity[l][e]
    popularity: Vec<Vec<f64>>,
    /// Experts already chosen for the current slot list (indexed by expert id).
    taken: Vec<bool>,
    /// coupled[l][e]: expert at layer l with the rank expert e has at layer l-1 (l >= 1).
    coupled: Vec<Vec<u16>>,
    chosen: Vec<u16>,
    logits: Vec<f64>,
}

impl RoutingProcess {
    /// Builds the process; the expert rankings are drawn from `rng`.
    pub fn new(
        experts: usize,
        k: usize,
        layers: usize,
        knobs: RoutingKnobs,
        rng: &mut ChaCha8Rng,
    ) -> Self {
        let mut popularity = Vec::with_capacity(layers);
        let mut ranking: Vec<Vec<u16>> = Vec::with_capacity(layers);
        for l in 0..layers {
            let weights = rank_weights(experts, knobs.popularity_beta[l]);
            let mut order: Vec<u16> = (0..experts as u16).collect();
            order.shuffle(rng);
            let mut p = vec![0.0; experts];
            for (r, &e) in order.iter().enumerate() {
                p[e as usize] = weights[r];
            }
            popularity.push(p);
            ranking.push(order);
        }
        let mut coupled = vec![Vec::new()];
        for l in 1..layers {
            let mut rank_before = vec![0usize; experts];
            for (r, &e) in ranking[l - 1].iter().enumerate() {
                rank_before[e as usize] = r;
            }
            coupled.push((0..experts).map(|e| ranking[l][rank_before[e]]).collect());
        }
        RoutingProcess {
            experts,
            k,
            layers,
            knobs,
            popularity,
            taken: vec![false; experts],
            coupled,
            chosen: Vec::with_capacity(k + 1),
            logits: Vec::with_capacity(experts),
        }
    }

    pub fn knobs(&self) -> &RoutingKnobs {
        &self.knobs
    }

    /// Appends one token's experts (layers × k) and, if `scores` is given, their gate scores.
    /// `previous` is the previous token's experts in the same sequence, if any.
    pub fn token(
        &mut self,
        rng: &mut ChaCha8Rng,
        previous: Option<&[u16]>,
        experts: &mut Vec<u16>,
        mut scores: Option<&mut Vec<f32>>,
    ) {
        let k = self.k;
        for l in 0..self.layers {
            self.chosen.clear();
            if l > 0 && rng.gen::<f64>() < self.knobs.coupling {
                let up = experts[experts.len() - k] as usize;
                self.chosen.push(self.coupled[l][up]);
            }
            if let Some(prev) = previous {
                for &e in &prev[l * k..(l + 1) * k] {
                    let keep = rng.gen::<f64>() < self.knobs.keep_probability;
                    if keep && self.chosen.len() < k && !self.chosen.contains(&e) {
                        self.chosen.push(e);
                    }
                }
            }
            if self.chosen.len() < k {
                for &e in &self.chosen {
                    self.taken[e as usize] = true;
                }
                while self.chosen.len() < k {
                    let e = self.draw(rng, l);
                    self.taken[e as usize] = true;
                    self.chosen.push(e);
                }
                for &e in &self.chosen {
                    self.taken[e as usize] = false;
                }
            }
            experts.extend_from_slice(&self.chosen);
            if let Some(scores) = scores.as_deref_mut() {
                self.gate_scores(rng, scores);
            }
        }
    }

    /// One expert of layer `l` by popularity, excluding those marked taken.
    fn draw(&self, rng: &mut ChaCha8Rng, l: usize) -> u16 {
        let p = &self.popularity[l];
        // Popularity sums to 1 per layer; remove what the taken experts hold.
        let taken_mass: f64 = self.chosen.iter().map(|&e| p[e as usize]).sum();
        let mut x = rng.gen::<f64>() * (1.0 - taken_mass).max(0.0);
        let mut last = 0u16;
        for (e, &w) in p.iter().enumerate() {
            if self.taken[e] {
                continue;
            }
            last = e as u16;
            if x < w {
                return last;
            }
            x -= w;
        }
        last
    }

    fn gate_scores(&mut self, rng: &mut ChaCha8Rng, scores: &mut Vec<f32>) {
        self.logits.clear();
        for _ in 0..self.experts {
            self.logits
                .push(standard_normal(rng) * self.knobs.gate_logit_scale);
        }
        self.logits.sort_unstable_by(|a, b| b.total_cmp(a));
        let top = &self.logits[..self.k];
        let max = top[0];
        let sum: f64 = top.iter().map(|z| (z - max).exp()).sum();
        for z in top {
            scores.push(((z - max).exp() / sum) as f32);
        }
    }
}

/// Popularity by rank: `exp(-beta · r / (E - 1))`, normalised.
fn rank_weights(experts: usize, beta: f64) -> Vec<f64> {
    let span = (experts.max(2) - 1) as f64;
    let w: Vec<f64> = (0..experts)
        .map(|r| (-beta * r as f64 / span).exp())
        .collect();
    let s: f64 = w.iter().sum();
    w.into_iter().map(|x| x / s).collect()
}

/// Expected top-k inclusion probabilities of successive sampling from `p` (Rosén's
/// approximation: `1 - exp(-λ p_e)` with λ such that they sum to k).
fn inclusion(p: &[f64], k: usize) -> Vec<f64> {
    let f = |lambda: f64| p.iter().map(|&x| 1.0 - (-lambda * x).exp()).sum::<f64>();
    let (mut lo, mut hi) = (0.0, 1.0);
    while f(hi) < k as f64 - 1e-9 && hi < 1e12 {
        hi *= 2.0;
    }
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if f(mid) < k as f64 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    p.iter().map(|&x| 1.0 - (-hi * x).exp()).collect()
}

fn inclusion_gini(experts: usize, k: usize, beta: f64) -> f64 {
    let incl = inclusion(&rank_weights(experts, beta), k);
    // Gini of expected counts: scale to integers finely enough.
    let counts: Vec<u64> = incl.iter().map(|&x| (x * 1e9) as u64).collect();
    gini(&counts)
}

/// The `beta` whose expected selection shares have Gini `target` (0 if the target is 0).
pub fn beta_for_gini(experts: usize, k: usize, target: f64) -> f64 {
    if target <= 0.0 || k >= experts {
        return 0.0;
    }
    let (mut lo, mut hi) = (0.0, 200.0);
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if inclusion_gini(experts, k, mid) < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// What a calibration simulation measured.
#[derive(Clone, Copy, Debug)]
struct Measured {
    reuse: f64,
    next_layer_top1: f64,
}

fn simulate(experts: usize, k: usize, knobs: &RoutingKnobs, seed: u64) -> Measured {
    let layers = knobs.popularity_beta.len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut process = RoutingProcess::new(experts, k, layers, knobs.clone(), &mut rng);
    let mut previous: Vec<u16> = Vec::new();
    let mut current: Vec<u16> = Vec::new();
    let mut reuse_sum = 0.0;
    let mut reuse_n = 0u64;
    let mut transitions = vec![0u32; layers.saturating_sub(1) * experts * experts];
    for t in 0..CALIBRATION_TOKENS {
        current.clear();
        let starts = t % CALIBRATION_SEQUENCE == 0;
        process.token(
            &mut rng,
            (!starts).then_some(&previous[..]),
            &mut current,
            None,
        );
        for l in 0..layers {
            if !starts {
                let prev = &previous[l * k..(l + 1) * k];
                let now = &current[l * k..(l + 1) * k];
                reuse_sum += now.iter().filter(|e| prev.contains(e)).count() as f64 / k as f64;
                reuse_n += 1;
            }
            if l + 1 < layers {
                let a = current[l * k] as usize;
                let b = current[(l + 1) * k] as usize;
                transitions[(l * experts + a) * experts + b] += 1;
            }
        }
        std::mem::swap(&mut previous, &mut current);
    }
    let best: u64 = transitions
        .chunks_exact(experts)
        .map(|row| u64::from(*row.iter().max().unwrap_or(&0)))
        .sum();
    let pairs = (layers.saturating_sub(1) * CALIBRATION_TOKENS) as f64;
    Measured {
        reuse: reuse_sum / reuse_n.max(1) as f64,
        next_layer_top1: if pairs > 0.0 {
            best as f64 / pairs
        } else {
            0.0
        },
    }
}

/// Solves the knobs for `targets` on a model with `experts`, top-`k` and `layers` MoE layers.
/// Deterministic for a given `seed`.
pub fn calibrate(
    experts: usize,
    k: usize,
    layers: usize,
    targets: &RoutingTargets,
    seed: u64,
) -> RoutingKnobs {
    let popularity_beta: Vec<f64> = targets
        .gini_per_moe_layer
        .iter()
        .map(|&g| beta_for_gini(experts, k, g))
        .collect();
    let mut knobs = RoutingKnobs {
        popularity_beta: popularity_beta.clone(),
        keep_probability: 0.2,
        coupling: 0.2,
        gate_logit_scale: targets.gate_logit_scale,
    };
    if k >= experts {
        knobs.keep_probability = 0.0;
        knobs.coupling = 0.0;
        return knobs;
    }
    // Simulate the middle layers (their betas), as many as CALIBRATION_LAYERS.
    let sim_layers = layers.min(CALIBRATION_LAYERS);
    let start = (layers - sim_layers) / 2;
    let mut sim = knobs.clone();
    sim.popularity_beta = popularity_beta[start..start + sim_layers].to_vec();
    let seed = seed ^ 0x5eed_ca1b_0000_0001;
    for _ in 0..CALIBRATION_ROUNDS {
        sim.keep_probability = bisect(|q| {
            let mut s = sim.clone();
            s.keep_probability = q;
            simulate(experts, k, &s, seed).reuse - targets.consecutive_reuse
        });
        if sim_layers > 1 {
            sim.coupling = bisect(|c| {
                let mut s = sim.clone();
                s.coupling = c;
                simulate(experts, k, &s, seed).next_layer_top1 - targets.next_layer_top1_accuracy
            });
        }
    }
    knobs.keep_probability = sim.keep_probability;
    knobs.coupling = sim.coupling;
    knobs
}

/// Root of an increasing function on [0, 1] (clamped to the ends when there is none).
fn bisect(f: impl Fn(f64) -> f64) -> f64 {
    let (mut lo, mut hi) = (0.0, 1.0);
    for _ in 0..BISECTION_STEPS {
        let mid = 0.5 * (lo + hi);
        if f(mid) < 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beta_hits_the_inclusion_gini() {
        for (e, k, g) in [(8, 2, 0.108), (64, 8, 0.45), (16, 2, 0.3)] {
            let b = beta_for_gini(e, k, g);
            assert!(
                (inclusion_gini(e, k, b) - g).abs() < 1e-6,
                "{e} {k} {g} -> {b}"
            );
        }
        assert_eq!(beta_for_gini(8, 2, 0.0), 0.0);
    }

    #[test]
    fn gate_scale_reproduces_hobbit_split() {
        // HOBBIT §3.2 on Mixtral (8 experts, top-2): second weight >= 0.4 in 34%, 0.1-0.4 in
        // 60%, < 0.1 in 6%. 20,000 draws: standard error about 0.0035 per share.
        let knobs = RoutingKnobs {
            popularity_beta: vec![0.0],
            keep_probability: 0.0,
            coupling: 0.0,
            gate_logit_scale: super::super::targets::GATE_LOGIT_SCALE,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut p = RoutingProcess::new(8, 2, 1, knobs, &mut rng);
        let (mut experts, mut scores) = (Vec::new(), Vec::new());
        let mut split = [0u32; 3];
        let n = 20_000;
        for _ in 0..n {
            experts.clear();
            scores.clear();
            p.token(&mut rng, None, &mut experts, Some(&mut scores));
            let w = scores[1];
            split[if w >= 0.4 {
                0
            } else if w >= 0.1 {
                1
            } else {
                2
            }] += 1;
        }
        let got: Vec<f64> = split.iter().map(|&c| f64::from(c) / n as f64).collect();
        for (g, want) in got.iter().zip([0.34, 0.60, 0.06]) {
            assert!((g - want).abs() < 0.02, "split {got:?}");
        }
    }
}
