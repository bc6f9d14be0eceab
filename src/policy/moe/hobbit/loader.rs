//! Token-level dynamic expert loading (HOBBIT §3.2): which precision a cache-miss expert is
//! loaded at, from how unimportant it is.
//!
//! The K experts a token selects are ranked by gate weight, largest first. Expert i's
//! "unimportance" is the sum of the weights ranked above it, `s(e_0) = 0`,
//! `s(e_i) = g(e_0) + ... + g(e_{i-1})`. With thresholds `0 <= T1 <= T2 <= 1`:
//! `s <= T1` loads the high-precision copy, `T1 < s <= T2` the low-precision one, `s > T2`
//! skips the expert (it is not computed); the top expert is always high. For Mixtral-8x7B
//! HOBBIT uses T1 = 0.6, T2 = 0.9 (67% high, 30% low, 3% skip).
//!
//! In a pass of several tokens (prefill) an expert's unimportance is the smallest it has for
//! any of them ([`ExpertDemand::min_score_before`]): if one token needs it at high precision,
//! it is loaded at high precision.
//!
//! [`ExpertDemand::min_score_before`]: crate::policy::machinery::pass::moe::ExpertDemand::min_score_before

use serde::Serialize;

/// HOBBIT §3.2: the thresholds used for Mixtral-8x7B.
pub const HOBBIT_T1: f32 = 0.6;
pub const HOBBIT_T2: f32 = 0.9;

/// What to do with an expert that is not in the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum LoadChoice {
    High,
    Low,
    Skip,
}

/// The T1/T2 rule. `best_rank` 0 (a top-1 expert) is always high. Thresholds are compared in
/// `f32`, the type the scores are summed in, so a score exactly at a threshold counts as at
/// most the threshold.
pub fn choose(best_rank: u8, unimportance: f32, t1: f32, t2: f32) -> LoadChoice {
    if best_rank == 0 || unimportance <= t1 {
        LoadChoice::High
    } else if unimportance <= t2 {
        LoadChoice::Low
    } else {
        LoadChoice::Skip
    }
}

/// The unimportance of each of a token's experts, given their weights in descending order.
pub fn unimportance(weights_descending: &[f32]) -> Vec<f32> {
    let mut before = 0.0f32;
    weights_descending
        .iter()
        .map(|w| {
            let s = before;
            before += w;
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use LoadChoice::*;

    fn rule(weights: &[f32]) -> Vec<LoadChoice> {
        unimportance(weights)
            .iter()
            .enumerate()
            .map(|(i, &s)| choose(i as u8, s, HOBBIT_T1, HOBBIT_T2))
            .collect()
    }

    #[test]
    fn top2_reduces_to_the_second_weight() {
        // Second weight 0.45 >= 0.4: s = 0.55 <= 0.6, high.
        assert_eq!(rule(&[0.55, 0.45]), vec![High, High]);
        // Second weight 0.3: s = 0.7 in (0.6, 0.9], low.
        assert_eq!(rule(&[0.7, 0.3]), vec![High, Low]);
        // Second weight 0.05: s = 0.95 > 0.9, skipped.
        assert_eq!(rule(&[0.95, 0.05]), vec![High, Skip]);
        // Exactly at the thresholds: s = 0.6 is high, s = 0.9 is low.
        assert_eq!(rule(&[0.6, 0.4]), vec![High, High]);
        assert_eq!(rule(&[0.9, 0.1]), vec![High, Low]);
    }

    #[test]
    fn top6_walks_through_all_three_bands() {
        // s = 0, 0.30, 0.55, 0.75, 0.85, 0.95.
        assert_eq!(
            rule(&[0.30, 0.25, 0.20, 0.10, 0.10, 0.05]),
            vec![High, High, High, Low, Low, Skip]
        );
    }

    #[test]
    fn top_expert_is_high_whatever_the_thresholds() {
        assert_eq!(choose(0, 0.0, 0.0, 0.0), High);
        // T1 = T2 = 0: every other expert is skipped.
        assert_eq!(rule_with(&[0.5, 0.5], 0.0, 0.0), vec![High, Skip]);
        // T1 = T2 = 1: nothing is low or skipped.
        assert_eq!(
            rule_with(&[0.4, 0.3, 0.3], 1.0, 1.0),
            vec![High, High, High]
        );
    }

    fn rule_with(weights: &[f32], t1: f32, t2: f32) -> Vec<LoadChoice> {
        unimportance(weights)
            .iter()
            .enumerate()
            .map(|(i, &s)| choose(i as u8, s, t1, t2))
            .collect()
    }
}
