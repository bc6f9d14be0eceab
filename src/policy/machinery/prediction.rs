//! Which experts a later layer will pick, as a gate-based predictor would guess them.
//!
//! HOBBIT and mixtral-offloading apply the gate of layer l+d to layer l's hidden state and take
//! the top-k as the guess (HOBBIT §3.3: top-1 accuracy 96% for the next layer, about 90% two
//! or three layers ahead on Mixtral-8x7B). edgesim has no hidden states, so a guess comes
//! either from the trace, when it recorded predictions ([`TokenRecord::predicted_at`]), or from
//! a seeded stand-in with a stated accuracy per distance: each slot of the true top-k of layer
//! l+d is kept with that probability and otherwise replaced by a uniformly random expert not
//! already guessed. The stand-in reads the same token's routing at the later layer, which is
//! the quantity a real predictor estimates; it never reads other tokens.
//!
//! [`TokenRecord::predicted_at`]: crate::trace::TokenRecord::predicted_at

use crate::model::ModelGeometry;
use crate::policy::context::PolicyError;
use crate::trace::ForwardPass;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Where guesses come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionSource {
    /// The trace's recorded predictions for the distances it records, the seeded stand-in
    /// beyond them.
    #[default]
    Auto,
    /// Only the trace's recorded predictions; a distance the trace lacks is an error.
    Trace,
    /// Always the seeded stand-in, even if the trace records predictions.
    Seeded,
}

/// HOBBIT Fig. 7b (Mixtral-8x7B): top-1 accuracy of the gate-based predictor 1, 2 and 3 layers
/// ahead (96%, then "about 90%").
pub const HOBBIT_PREDICTOR_ACCURACY: [f64; 3] = [0.96, 0.90, 0.90];

/// One guessed expert of a later layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Guess {
    pub expert: u16,
    /// Best (lowest) rank it has among the guesses of any token of the pass (0 = top-1).
    pub rank: u8,
    /// HOBBIT's unimportance of the guess (the gate weight ranked above it), taking the
    /// target layer's gate weights at the guessed ranks as the predicted gate's weights (the
    /// gate inputs of nearby layers are nearly equal, H Fig. 7a); smallest over tokens.
    pub unimportance: f32,
}

pub struct ExpertPredictor {
    source: PredictionSource,
    /// Stand-in accuracy for distance 1, 2, ...; the last value holds for larger distances.
    accuracy: Vec<f64>,
    rng: ChaCha8Rng,
    experts: usize,
    k: usize,
    moe_layers: usize,
    token_guess: Vec<u16>,
}

impl ExpertPredictor {
    /// `accuracy` must hold at least one value, each in [0, 1]; `field` names the parameter
    /// in error messages.
    pub fn new(
        model: &ModelGeometry,
        source: PredictionSource,
        accuracy: &[f64],
        seed: u64,
        field: &str,
    ) -> Result<Self, PolicyError> {
        if accuracy.is_empty() {
            return Err(PolicyError::BadParameter(format!(
                "`{field}` needs at least one accuracy (distance 1)"
            )));
        }
        if let Some(a) = accuracy.iter().find(|a| !(0.0..=1.0).contains(*a)) {
            return Err(PolicyError::BadParameter(format!(
                "`{field}` holds {a}, which is not an accuracy in [0, 1]"
            )));
        }
        Ok(ExpertPredictor {
            source,
            accuracy: accuracy.to_vec(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            experts: model.experts as usize,
            k: model.top_k as usize,
            moe_layers: model.moe_layers() as usize,
            token_guess: Vec::new(),
        })
    }

    /// Guesses, seen from MoE layer `moe_index`, the experts of MoE layer `moe_index +
    /// distance` for every token of `pass`: the union over tokens, in order of first
    /// appearance, with each expert's best rank. Empty past the last MoE layer.
    pub fn predict(
        &mut self,
        pass: &ForwardPass,
        moe_index: usize,
        distance: usize,
        out: &mut Vec<Guess>,
    ) -> Result<(), PolicyError> {
        out.clear();
        let target = moe_index + distance;
        if distance == 0 || target >= self.moe_layers {
            return Ok(());
        }
        let per_distance = self.moe_layers * self.k;
        for t in &pass.tokens {
            let ahead = t.predicted.len().checked_div(per_distance).unwrap_or(0);
            let recorded = match self.source {
                PredictionSource::Seeded => None,
                _ => t.predicted_at(moe_index, distance, ahead, self.k),
            };
            self.token_guess.clear();
            match recorded {
                Some(p) => self.token_guess.extend_from_slice(p),
                None if self.source == PredictionSource::Trace => {
                    return Err(PolicyError::BadParameter(format!(
                        "predictions are taken from the trace, but the trace records none {distance} layer(s) ahead \
                         (token at position {} of sequence {} records {ahead} distance(s)); use `auto` or `seeded`",
                        t.position, t.sequence
                    )));
                }
                None => self.seeded_guess(t.experts_at(target, self.k), distance),
            }
            let weights = t.scores_at(target, self.k);
            let mut before = 0.0f32;
            for (rank, &e) in self.token_guess.iter().enumerate() {
                let s = before;
                before += weights.get(rank).copied().unwrap_or(0.0);
                match out.iter_mut().find(|g| g.expert == e) {
                    Some(g) => {
                        g.rank = g.rank.min(rank as u8);
                        g.unimportance = g.unimportance.min(s);
                    }
                    None => out.push(Guess {
                        expert: e,
                        rank: rank as u8,
                        unimportance: s,
                    }),
                }
            }
        }
        Ok(())
    }

    /// The stand-in: each true slot kept with the distance's accuracy, otherwise replaced by a
    /// uniformly random expert not guessed yet.
    fn seeded_guess(&mut self, truth: &[u16], distance: usize) {
        let accuracy = self.accuracy[(distance - 1).min(self.accuracy.len() - 1)];
        self.token_guess.extend_from_slice(truth);
        if self.experts <= self.k {
            return;
        }
        for slot in 0..truth.len() {
            if self.rng.gen::<f64>() < accuracy {
                continue;
            }
            let others = self.experts - self.token_guess.len();
            let mut pick = self.rng.gen_range(0..others);
            for e in 0..self.experts as u16 {
                if self.token_guess.contains(&e) {
                    continue;
                }
                if pick == 0 {
                    self.token_guess[slot] = e;
                    break;
                }
                pick -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::test_support::tiny;
    use crate::trace::{Phase, TokenRecord};

    fn decode(experts: Vec<u16>, predicted: Vec<u16>) -> ForwardPass {
        ForwardPass {
            sequence: 0,
            phase: Phase::Decode,
            tokens: vec![TokenRecord {
                scores: vec![0.5; experts.len()],
                experts,
                predicted,
                ..TokenRecord::default()
            }],
        }
    }

    #[test]
    fn perfect_stand_in_returns_the_truth_and_nothing_past_the_last_layer() {
        let m = tiny();
        let mut p =
            ExpertPredictor::new(&m, PredictionSource::Seeded, &[1.0], 1, "accuracy").unwrap();
        let pass = decode(vec![0, 1, 3, 2], vec![]);
        let mut out = Vec::new();
        p.predict(&pass, 0, 1, &mut out).unwrap();
        assert_eq!(
            out,
            vec![
                Guess {
                    expert: 3,
                    rank: 0,
                    unimportance: 0.0
                },
                Guess {
                    expert: 2,
                    rank: 1,
                    unimportance: 0.5
                }
            ]
        );
        p.predict(&pass, 1, 1, &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn recorded_predictions_are_used_when_present() {
        let m = tiny();
        // One distance recorded: layer 0 predicts [1, 0] for layer 1; layer 1's slot is empty.
        let pass = decode(vec![0, 1, 3, 2], vec![1, 0, u16::MAX, u16::MAX]);
        let mut out = Vec::new();
        let mut auto =
            ExpertPredictor::new(&m, PredictionSource::Auto, &[1.0], 1, "accuracy").unwrap();
        auto.predict(&pass, 0, 1, &mut out).unwrap();
        assert_eq!(out.iter().map(|g| g.expert).collect::<Vec<_>>(), vec![1, 0]);
        let mut trace_only =
            ExpertPredictor::new(&m, PredictionSource::Trace, &[1.0], 1, "accuracy").unwrap();
        let no_record = decode(vec![0, 1, 3, 2], vec![]);
        let err = trace_only.predict(&no_record, 0, 1, &mut out).unwrap_err();
        assert!(err.to_string().contains("records none"), "{err}");
    }

    #[test]
    fn stand_in_accuracy_is_the_share_of_correct_top1_guesses() {
        let m = tiny();
        let mut p =
            ExpertPredictor::new(&m, PredictionSource::Seeded, &[0.7], 9, "accuracy").unwrap();
        let pass = decode(vec![0, 1, 3, 2], vec![]);
        let mut out = Vec::new();
        let n = 4000;
        let mut right = 0;
        for _ in 0..n {
            p.predict(&pass, 0, 1, &mut out).unwrap();
            right += (out.iter().find(|g| g.rank == 0).unwrap().expert == 3) as u32;
            // A wrong guess never repeats an expert.
            assert_eq!(out.len(), 2);
        }
        let share = right as f64 / n as f64;
        // Binomial(4000, 0.7): standard error 0.0072; 5 of them is 0.036.
        assert!((share - 0.7).abs() < 0.036, "{share}");
    }

    #[test]
    fn bad_accuracies_are_rejected_naming_the_field() {
        let m = tiny();
        for acc in [vec![], vec![1.5]] {
            let e = ExpertPredictor::new(&m, PredictionSource::Auto, &acc, 0, "hobbit.accuracy")
                .err()
                .unwrap();
            assert!(e.to_string().contains("hobbit.accuracy"), "{e}");
        }
    }
}
