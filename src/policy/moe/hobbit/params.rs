//! HOBBIT's switches and the answers edgesim gives to the questions the paper leaves open
//! (`shared/reference/hobbit.md` §1.13). Every field has a default; each default says why.

use super::loader::{HOBBIT_T1, HOBBIT_T2};
use crate::model::Precision;
use crate::policy::machinery::prediction::{PredictionSource, HOBBIT_PREDICTOR_ACCURACY};
use crate::policy::PolicyError;
use serde::{Deserialize, Serialize};

/// Parameters of `hobbit`, as given in an experiment's `params` (unknown keys are errors).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HobbitParams {
    /// Technique 1 (token level): load cache-miss experts at high or low precision, or skip
    /// them, by the T1/T2 rule. Off: every miss is loaded at high precision.
    pub dynamic_loading: bool,
    /// Thresholds of the rule; HOBBIT §3.2 (Mixtral-8x7B). The paper gives none for Phi-MoE
    /// (Q7); the same values are used for every model, and runs report the split they give.
    pub t1: f32,
    pub t2: f32,
    /// The low precision. Default: HOBBIT §5.1's pairs, int4 under fp16 (RTX 4090) and int2
    /// under int8 (Jetson Orin); int2 under int4 or int3.
    pub low_precision: Option<Precision>,

    /// Technique 2 (layer level): adaptive prefetch up to `prefetch_layers` ahead, stopping at
    /// the first layer whose predicted experts are not all cached; predicted experts pinned.
    pub prefetch: bool,
    /// p: HOBBIT §5.5.2 recommends 1-3, MoE-APEX 2-4; 2 is in both ranges.
    pub prefetch_layers: u32,
    /// Where predictions come from (trace when recorded, else the seeded stand-in).
    pub predictions: PredictionSource,
    /// Stand-in top-1 accuracy 1, 2, 3... layers ahead (HOBBIT Fig. 7b: 96%, ~90%, ~90%).
    pub prediction_accuracy: Vec<f64>,
    /// Q2: precision of prefetched experts.
    pub prefetch_precision: PrefetchPrecision,
    /// Q6: on-demand loads are queued ahead of prefetches not yet started (a prefetch in
    /// progress is never interrupted: HOBBIT's cudaMemcpy is not interruptible, §3.3).
    /// False: one first-come first-served queue.
    pub demand_first: bool,
    /// Q6: read prefetches in blocks of this many bytes so an on-demand load waits behind at
    /// most one block (MoE-APEX's block-wise loading, A §3.3); 0: whole experts (HOBBIT).
    pub prefetch_block_bytes: u64,

    /// Technique 3 (sequence level): the victim order of both caches.
    pub cache_policy: CachePolicy,
    /// Q4: weights of the multidimensional priority (they must sum to 1). The paper tunes them
    /// on a calibration set and does not report them; the default is edgesim's own search
    /// (see [`DEFAULT_WEIGHTS`]).
    pub weights: CacheWeights,
    /// Q3: share of the expert cache's bytes given to the low-precision cache ("typically"
    /// smaller than the high one, H §3.4), at least one low-precision expert. Default from the
    /// same search.
    pub low_cache_share: f64,
    /// Q1: what a high-precision demand does when only the low copy is cached.
    pub low_copy_for_high: LowCopyUse,
    /// Q5: keep cached experts when a new sequence starts (only the records are said to reset).
    pub keep_cache_across_sequences: bool,
    /// HOBBIT's CPU-GPU cooperative mode (H §4, §5.4): in decode, a cache-miss expert is
    /// computed by the host CPU from host memory at the precision the rule chose, instead of
    /// being copied to the GPU; prefill uses only the GPU. Only on devices whose experts live
    /// in host memory.
    pub cpu_misses: bool,
}

/// Q2: which precision a prefetch loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrefetchPrecision {
    /// The T1/T2 rule applied to the predicted gate weights (hobbit.md Q2's reading of "we
    /// preload versions of the experts with different precision levels"); a guess the rule
    /// would skip is not prefetched. The predicted weights are the target layer's weights at
    /// the guessed ranks ([`Guess::unimportance`](crate::policy::machinery::prediction::Guess)).
    Rule,
    /// A predicted top-1 expert at high precision, every other guess at low precision (no
    /// weights needed).
    Rank,
    High,
    Low,
}

/// The victim order of HOBBIT's caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CachePolicy {
    /// HOBBIT Eq. 3: weighted LRU, LFU, LHU and FLD with per-sequence records.
    Multidimensional,
    /// MoE-APEX Eq. 3-4: Least Costly Used, no weights.
    Lcu,
    /// Plain least recently used (the technique switched off).
    Lru,
    /// Least frequently used within the sequence.
    Lfu,
    /// Belady's optimal order from the trace's future: a ceiling for the cache technique,
    /// not something a device can run.
    Belady,
}

/// Weights of HOBBIT Eq. 3.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheWeights {
    pub lru: f64,
    pub lfu: f64,
    pub lhu: f64,
    pub fld: f64,
}

/// Q1: a high-precision demand finds only the low-precision copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LowCopyUse {
    /// Count a miss and load the high copy: the scorer's choice stands, so the accuracy the
    /// T1/T2 split promises is kept (hobbit.md Q1's "simplest faithful choice").
    Reload,
    /// Compute with the low copy now (faster, degrades an important expert).
    Use,
}

/// Cache weights and low-cache share found by `cargo run --release --example
/// hobbit_weight_search` on its calibration traces (a Mixtral-8x7B and a Phi-3.5-MoE synthetic
/// trace with seeds and shapes unlike every evaluation workload, both precision pairs, three
/// budgets): the best of 1,430 grid points, 13.3% fewer on-demand bytes than LRU caches on
/// average. The miss penalty fell steadily as the low-precision cache shrank (0.918 of LRU's
/// at share 0.2, 0.867 at 0 for these weights): a high copy serves high and low demands alike,
/// a low copy only the rarer low ones, so bytes are better spent on high copies. At share 0
/// the low cache keeps its floor (the low copies one decode step can pin, see `build`).
/// Table and method: `docs/hobbit-weight-search.md`.
pub const DEFAULT_WEIGHTS: CacheWeights = CacheWeights {
    lru: 0.9,
    lfu: 0.0,
    lhu: 0.0,
    fld: 0.1,
};
pub const DEFAULT_LOW_CACHE_SHARE: f64 = 0.0;

impl Default for HobbitParams {
    fn default() -> Self {
        HobbitParams {
            dynamic_loading: true,
            t1: HOBBIT_T1,
            t2: HOBBIT_T2,
            low_precision: None,
            prefetch: true,
            prefetch_layers: 2,
            predictions: PredictionSource::Auto,
            prediction_accuracy: HOBBIT_PREDICTOR_ACCURACY.to_vec(),
            prefetch_precision: PrefetchPrecision::Rule,
            demand_first: true,
            prefetch_block_bytes: 0,
            cache_policy: CachePolicy::Multidimensional,
            weights: DEFAULT_WEIGHTS,
            low_cache_share: DEFAULT_LOW_CACHE_SHARE,
            low_copy_for_high: LowCopyUse::Reload,
            keep_cache_across_sequences: true,
            cpu_misses: false,
        }
    }
}

impl HobbitParams {
    /// Checks ranges and resolves the low precision for `high`.
    pub fn check(&self, high: Precision) -> Result<Precision, PolicyError> {
        let bad = |m: String| Err(PolicyError::BadParameter(format!("policy `hobbit`: {m}")));
        if !(0.0..=1.0).contains(&self.t1) || !(0.0..=1.0).contains(&self.t2) || self.t1 > self.t2 {
            return bad(format!(
                "thresholds must satisfy 0 <= t1 <= t2 <= 1, got t1 = {}, t2 = {}",
                self.t1, self.t2
            ));
        }
        let w = self.weights;
        let ws = [w.lru, w.lfu, w.lhu, w.fld];
        if ws.iter().any(|x| !(0.0..=1.0).contains(x))
            || (ws.iter().sum::<f64>() - 1.0).abs() > 1e-6
        {
            return bad(format!(
                "`weights` must be in [0, 1] and sum to 1 (HOBBIT Eq. 3), got {ws:?}"
            ));
        }
        if !(0.0..1.0).contains(&self.low_cache_share) {
            return bad(format!(
                "`low_cache_share` must be in [0, 1), got {}",
                self.low_cache_share
            ));
        }
        if self.prefetch && self.prefetch_layers == 0 {
            return bad("`prefetch_layers` must be at least 1 (or set `prefetch` to false)".into());
        }
        let low = match self.low_precision {
            Some(p) => p,
            None => match high {
                Precision::Fp16 => Precision::Int4,
                Precision::Int8 | Precision::Int4 | Precision::Int3 => Precision::Int2,
                Precision::Int2 => {
                    if self.dynamic_loading {
                        return bad("the offload precision is int2, there is no lower one: set `low_precision` or turn `dynamic_loading` off".into());
                    }
                    Precision::Int2
                }
            },
        };
        if self.dynamic_loading && low.bits() >= high.bits() {
            return bad(format!(
                "`low_precision` {low} is not below the high (offload) precision {high}"
            ));
        }
        Ok(low)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_paper_pairs() {
        let p = HobbitParams::default();
        assert_eq!(p.check(Precision::Fp16).unwrap(), Precision::Int4);
        assert_eq!(p.check(Precision::Int8).unwrap(), Precision::Int2);
        assert!(p.check(Precision::Int2).is_err());
    }

    #[test]
    fn bad_values_are_named() {
        let mut p = HobbitParams {
            t1: 0.95,
            ..HobbitParams::default()
        };
        assert!(p
            .check(Precision::Fp16)
            .unwrap_err()
            .to_string()
            .contains("t1"));
        p.t1 = 0.6;
        p.weights.lru = 0.5;
        assert!(p
            .check(Precision::Fp16)
            .unwrap_err()
            .to_string()
            .contains("sum to 1"));
        let e: Result<HobbitParams, _> =
            serde_json::from_value(serde_json::json!({"thresholds": [0.5, 0.8]}));
        assert!(e.unwrap_err().to_string().contains("thresholds"));
    }
}
