//! The calibration search for HOBBIT's cache weights and cache split (open questions Q3, Q4).
//!
//! HOBBIT tunes its four weights "by minimizing the mixed precision expert cache miss
//! penalties on a calibration dataset" (H §3.4) and does not report them. edgesim does the
//! same on its own calibration traces, which share no seed or shape with any evaluation
//! workload: for every point of a grid over the weight simplex and the low-cache share, the
//! policy (dynamic loading on, prefetch off: the cache alone decides the misses) plans every
//! pass of every calibration case, and the miss penalty is the bytes its on-demand loads
//! read (a high-precision miss costs B_h, a low one B_l, HOBBIT's cost model). Each case's
//! penalty is divided by that of plain LRU caches at the default split, so every case weighs
//! the same; the objective is the mean ratio. Planning only: no simulation is needed to count
//! what a cache policy reads.
//!
//! `cargo run --release --example hobbit_weight_search` runs the search and writes its table.

use super::params::{CachePolicy, CacheWeights, HobbitParams};
use crate::model::{ModelGeometry, Precision};
use crate::plan::{Op, PlanBuilder};
use crate::policy::{Policy, PolicyContext, PolicyError};
use crate::trace::ForwardPass;
use rayon::prelude::*;
use serde::Serialize;
use std::sync::Arc;

/// One calibration case: a model, a precision pair, a budget and the passes of a trace.
pub struct SearchCase {
    pub name: String,
    pub context: PolicyContext,
    pub passes: Arc<Vec<ForwardPass>>,
}

/// One grid point and its result.
#[derive(Clone, Debug, Serialize)]
pub struct SearchPoint {
    pub weights: CacheWeights,
    pub low_cache_share: f64,
    /// Mean over cases of (miss bytes / reference miss bytes).
    pub objective: f64,
    /// Per case, the miss bytes.
    pub miss_bytes: Vec<u64>,
}

/// The weight grid: every (lru, lfu, lhu, fld) with components in steps of `1/steps` summing
/// to 1.
pub fn weight_grid(steps: u32) -> Vec<CacheWeights> {
    let mut out = Vec::new();
    let s = steps as f64;
    for a in 0..=steps {
        for b in 0..=steps - a {
            for c in 0..=steps - a - b {
                let d = steps - a - b - c;
                out.push(CacheWeights {
                    lru: a as f64 / s,
                    lfu: b as f64 / s,
                    lhu: c as f64 / s,
                    fld: d as f64 / s,
                });
            }
        }
    }
    out
}

/// Bytes `hobbit` with `params` reads on demand over the case's passes.
pub fn miss_bytes(case: &SearchCase, params: &HobbitParams) -> Result<u64, PolicyError> {
    let mut ctx = case.context.clone();
    ctx.params = serde_json::to_value(params)
        .map_err(|e| PolicyError::BadParameter(format!("cannot encode the parameters: {e}")))?;
    let mut policy = super::build(ctx)?;
    let mut next = 0;
    let mut bytes = 0u64;
    for pass in case.passes.iter() {
        let mut b = PlanBuilder::new(next);
        policy.plan_pass(pass, &mut b)?;
        let plan = b
            .finish()
            .map_err(|e| PolicyError::BadPass(format!("bad plan: {e}")))?;
        next = plan.end_id();
        bytes += plan
            .nodes()
            .iter()
            .map(|n| match n.op {
                Op::Read { bytes, .. } => bytes,
                _ => 0,
            })
            .sum::<u64>();
    }
    Ok(bytes)
}

/// The parameters a grid point evaluates: dynamic loading on, prefetch off, the
/// multidimensional cache with `weights` and `share`.
pub fn point_params(weights: CacheWeights, share: f64) -> HobbitParams {
    HobbitParams {
        prefetch: false,
        cache_policy: CachePolicy::Multidimensional,
        weights,
        low_cache_share: share,
        ..HobbitParams::default()
    }
}

/// Evaluates every (weights, share) point on every case; returns the points sorted by
/// objective (ties by grid order), and the reference penalties (LRU caches at the default
/// share).
pub fn search(
    cases: &[SearchCase],
    weights: &[CacheWeights],
    shares: &[f64],
) -> Result<(Vec<SearchPoint>, Vec<u64>), PolicyError> {
    let reference_params = HobbitParams {
        prefetch: false,
        cache_policy: CachePolicy::Lru,
        ..HobbitParams::default()
    };
    let reference = cases
        .par_iter()
        .map(|c| miss_bytes(c, &reference_params))
        .collect::<Result<Vec<u64>, _>>()?;
    let grid: Vec<(CacheWeights, f64)> = shares
        .iter()
        .flat_map(|&s| weights.iter().map(move |&w| (w, s)))
        .collect();
    let mut points = grid
        .par_iter()
        .map(|&(w, s)| {
            let params = point_params(w, s);
            let bytes = cases
                .iter()
                .map(|c| miss_bytes(c, &params))
                .collect::<Result<Vec<u64>, _>>()?;
            let objective = bytes
                .iter()
                .zip(&reference)
                .map(|(&b, &r)| b as f64 / r.max(1) as f64)
                .sum::<f64>()
                / cases.len().max(1) as f64;
            Ok(SearchPoint {
                weights: w,
                low_cache_share: s,
                objective,
                miss_bytes: bytes,
            })
        })
        .collect::<Result<Vec<SearchPoint>, PolicyError>>()?;
    // Stable sort keeps grid order among equal objectives.
    points.sort_by(|a, b| a.objective.total_cmp(&b.objective));
    Ok((points, reference))
}

/// A context for a calibration case.
pub fn case_context(
    model: Arc<ModelGeometry>,
    device: Arc<crate::hw::DeviceProfile>,
    high: Precision,
    resident: Precision,
    cache_fraction: f64,
    max_context: u32,
) -> PolicyContext {
    let fp = crate::scenario::Footprint::of(&model, resident, high, max_context);
    PolicyContext {
        budget_bytes: fp.resident_bytes + (cache_fraction * fp.offloadable_bytes as f64) as u64,
        model,
        device,
        resident_precision: resident,
        offload_precision: high,
        max_context,
        seed: 0,
        params: serde_json::Value::Null,
        load_ops: crate::policy::machinery::load_ops::plain(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::test_support::{context_for, decode, tiny_with};

    #[test]
    fn grid_covers_the_simplex() {
        let g = weight_grid(10);
        assert_eq!(g.len(), 286);
        assert!(g
            .iter()
            .all(|w| ((w.lru + w.lfu + w.lhu + w.fld) - 1.0).abs() < 1e-9));
        assert_eq!(weight_grid(1).len(), 4);
    }

    #[test]
    fn objective_is_the_mean_ratio_of_read_bytes_and_points_are_sorted() {
        let m = tiny_with(3, 8);
        let w = |a: u16, b: u16| [(a, 0.7f32), (b, 0.3f32)];
        let passes: Vec<ForwardPass> = (0..6)
            .map(|t| {
                decode(
                    0,
                    t,
                    &[
                        &w(t as u16 % 3, 4),
                        &w(2, 5 + t as u16 % 3),
                        &w(6, t as u16 % 2),
                    ],
                )
            })
            .collect();
        let case = SearchCase {
            name: "tiny".into(),
            context: context_for(m, 4.0, Precision::Int8, false, serde_json::Value::Null),
            passes: Arc::new(passes),
        };
        let weights = weight_grid(2);
        let (points, reference) =
            search(std::slice::from_ref(&case), &weights, &[0.2, 0.3]).unwrap();
        assert_eq!(points.len(), weights.len() * 2);
        assert!(points.windows(2).all(|p| p[0].objective <= p[1].objective));
        for p in &points {
            let again = miss_bytes(&case, &point_params(p.weights, p.low_cache_share)).unwrap();
            assert_eq!(p.miss_bytes, vec![again]);
            assert!((p.objective - again as f64 / reference[0] as f64).abs() < 1e-12);
        }
    }
}
