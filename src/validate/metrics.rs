//! Prediction errors: per-sample percentage errors and their summaries.

use serde::Serialize;

/// Signed percentage error of a prediction: `100 · (predicted − measured) / measured`.
pub fn pct_error(predicted: f64, measured: f64) -> f64 {
    if measured == 0.0 {
        if predicted == 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        100.0 * (predicted - measured) / measured
    }
}

/// How far predictions are from measurements over a set of samples.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ErrorSummary {
    pub samples: usize,
    /// Median of |error| in percent.
    pub median_abs_pct_error: f64,
    /// 90th percentile (nearest rank) of |error| in percent.
    pub p90_abs_pct_error: f64,
    /// `100 · (Σ predicted − Σ measured) / Σ measured`: positive when the simulator predicts
    /// slower than measured overall.
    pub bias_pct: f64,
    pub predicted_median_ms: f64,
    pub measured_median_ms: f64,
}

fn nearest_rank(sorted: &[f64], pct: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((pct / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Summarises (predicted, measured) pairs, in milliseconds.
pub fn summarize(pairs: &[(f64, f64)]) -> ErrorSummary {
    if pairs.is_empty() {
        return ErrorSummary::default();
    }
    let mut abs: Vec<f64> = pairs.iter().map(|&(p, m)| pct_error(p, m).abs()).collect();
    abs.sort_by(f64::total_cmp);
    let (sp, sm) = pairs
        .iter()
        .fold((0.0, 0.0), |(a, b), &(p, m)| (a + p, b + m));
    let mut pred: Vec<f64> = pairs.iter().map(|p| p.0).collect();
    let mut meas: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    pred.sort_by(f64::total_cmp);
    meas.sort_by(f64::total_cmp);
    ErrorSummary {
        samples: pairs.len(),
        median_abs_pct_error: median(&abs),
        p90_abs_pct_error: nearest_rank(&abs, 90.0),
        bias_pct: pct_error(sp, sm),
        predicted_median_ms: median(&pred),
        measured_median_ms: median(&meas),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_known_pairs() {
        // Errors: +10 %, -20 %, 0 %, +5 %.
        let pairs = [(11.0, 10.0), (8.0, 10.0), (10.0, 10.0), (21.0, 20.0)];
        let s = summarize(&pairs);
        assert_eq!(s.samples, 4);
        // |errors| sorted: 0, 5, 10, 20 -> median 7.5, p90 (rank 4) 20.
        assert!((s.median_abs_pct_error - 7.5).abs() < 1e-9);
        assert!((s.p90_abs_pct_error - 20.0).abs() < 1e-9);
        // Σp = 50, Σm = 50: no bias.
        assert!(s.bias_pct.abs() < 1e-9);
        assert_eq!(summarize(&[]), ErrorSummary::default());
        assert!((pct_error(9.0, 10.0) + 10.0).abs() < 1e-9);
    }
}
