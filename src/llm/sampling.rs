//! Choosing the next token from the logits: greedy, or seeded sampling at a temperature.

use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// How the next token is chosen.
#[derive(Clone, Debug)]
pub enum Sampler {
    /// The most likely token (the lowest id on a tie).
    Greedy,
    /// A draw from softmax(logits / temperature), from a seeded ChaCha8 stream: the same seed
    /// and logits give the same tokens on every machine.
    Temperature {
        temperature: f32,
        rng: Box<ChaCha8Rng>,
    },
}

impl Sampler {
    /// Greedy at temperature 0, seeded sampling above it.
    pub fn new(temperature: f32, seed: u64) -> Sampler {
        if temperature <= 0.0 {
            Sampler::Greedy
        } else {
            Sampler::Temperature {
                temperature,
                rng: Box::new(ChaCha8Rng::seed_from_u64(seed)),
            }
        }
    }

    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        match self {
            Sampler::Greedy => argmax(logits),
            Sampler::Temperature { temperature, rng } => {
                let t = *temperature as f64;
                let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
                let weights: Vec<f64> = logits
                    .iter()
                    .map(|&l| ((l as f64 - max) / t).exp())
                    .collect();
                let total: f64 = weights.iter().sum();
                let mut target = rng.gen::<f64>() * total;
                for (id, w) in weights.iter().enumerate() {
                    if target < *w {
                        return id as u32;
                    }
                    target -= w;
                }
                // Rounding left the draw past the end: the last token with any weight.
                weights.iter().rposition(|&w| w > 0.0).unwrap_or(0) as u32
            }
        }
    }
}

/// Index of the largest value; the first one on a tie; NaN never wins.
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] || values[best].is_nan() {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        assert_eq!(Sampler::new(0.0, 1).sample(&[0.0, 3.0, 3.0, -1.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 1.0]), 1);
    }

    #[test]
    fn same_seed_same_tokens_and_frequencies_follow_the_softmax() {
        let logits = [0.0f32, (2.0f32).ln(), f32::NEG_INFINITY];
        let draw = |seed| {
            let mut s = Sampler::new(1.0, seed);
            (0..3000).map(|_| s.sample(&logits)).collect::<Vec<u32>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let ones = draw(7).iter().filter(|&&t| t == 1).count() as f64 / 3000.0;
        // p(1) = 2/3; 3000 draws give a standard error of 0.009.
        assert!((ones - 2.0 / 3.0).abs() < 0.04, "{ones}");
        assert!(!draw(7).contains(&2));
    }

    #[test]
    fn low_temperature_approaches_greedy() {
        let mut s = Sampler::new(0.01, 3);
        for _ in 0..100 {
            assert_eq!(s.sample(&[1.0, 1.5, 0.5]), 1);
        }
    }
}
