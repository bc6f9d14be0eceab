//! Standard normal draws from a seeded generator (Box-Muller), so that no distribution crate's
//! algorithm choice can change a generated trace.

use rand::RngCore;

/// One N(0, 1) draw.
pub fn standard_normal(rng: &mut impl RngCore) -> f64 {
    // 53 random bits in (0, 1]: never 0, so the logarithm is finite.
    let u1 = ((rng.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64;
    let u2 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Inverse of the standard normal CDF (statrs's; deterministic, no randomness involved).
pub fn inverse_cdf(p: f64) -> f64 {
    use statrs::distribution::{ContinuousCDF, Normal};
    let n = Normal::new(0.0, 1.0).expect("unit normal");
    n.inverse_cdf(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn draws_have_unit_moments() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let n = 20_000;
        let xs: Vec<f64> = (0..n).map(|_| standard_normal(&mut rng)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        // Standard errors: 0.007 for the mean, 0.01 for the variance.
        assert!(mean.abs() < 0.03, "{mean}");
        assert!((var - 1.0).abs() < 0.04, "{var}");
        assert!((inverse_cdf(0.975) - 1.959964).abs() < 1e-5);
    }
}
