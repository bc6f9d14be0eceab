//! `lru`, `lfu`, `fifo` and `belady`: one expert cache at the offload precision filling the
//! budget left after the resident set; a miss is loaded on demand (the layer waits for it) and
//! evicts by the policy's rule. Nothing is prefetched, nothing is skipped, one precision: these
//! are the classical demand-paging caches, and `belady` is the optimum among them at the same
//! budget (it needs the trace's future, see [`crate::policy::machinery::future`]).
//!
//! Parameters: `lfu` takes `{"reset_per_sequence": bool}` (default false: counts over the whole
//! run, the model-level LFU HOBBIT compares with; true: HOBBIT's sequence-level LFU signal on
//! its own). The others take none.

use crate::model::TensorKind;
use crate::plan::OpId;
use crate::policy::context::parse_params;
use crate::policy::context::{Counters, PolicyContext, PolicyError};
use crate::policy::machinery::cache::eviction::Eviction;
use crate::policy::machinery::cache::single_precision::SinglePrecisionCache;
use crate::policy::machinery::future::FutureAccesses;
use crate::policy::machinery::load_ops::ReadOptions;
use crate::policy::machinery::pass::moe::{
    expert_key, ExpertDemand, ExpertSupplier, LayerCx, Supply,
};
use crate::policy::moe::shell::{cache_capacity, ExpertPolicy, ExpertState};
use crate::trace::ForwardPass;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParams {}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LfuParams {
    #[serde(default)]
    reset_per_sequence: bool,
}

pub struct CachingState {
    cache: SinglePrecisionCache,
    rule: Eviction,
    reset_per_sequence: bool,
    future: Option<Arc<FutureAccesses>>,
    /// Passes planned so far, the current one included.
    passes: u64,
    dense_layers: u32,
}

/// Builds `lru`, `lfu`, `fifo` or `belady`.
pub fn build(
    name: &'static str,
    rule: Eviction,
    ctx: PolicyContext,
) -> Result<ExpertPolicy<CachingState>, PolicyError> {
    crate::policy::moe::require_moe(&ctx, name)?;
    let reset_per_sequence = match rule {
        Eviction::Lfu => parse_params::<LfuParams>(name, &ctx.params)?.reset_per_sequence,
        _ => {
            parse_params::<NoParams>(name, &ctx.params)?;
            false
        }
    };
    let precision = ctx.offload_precision;
    let first = ctx.model.dense_layers;
    let expert_bytes = ctx.model.bytes(first, TensorKind::Expert(0), precision);
    let capacity = cache_capacity(&ctx, expert_bytes, "the resident set plus one expert")?;
    let state = CachingState {
        cache: SinglePrecisionCache::new(
            ctx.model.clone(),
            capacity,
            precision,
            ctx.load_ops.clone(),
        ),
        rule,
        reset_per_sequence,
        future: None,
        passes: 0,
        dense_layers: first,
    };
    Ok(ExpertPolicy::new(name, ctx, precision, state))
}

impl ExpertSupplier for CachingState {
    fn begin_layer(
        &mut self,
        cx: &mut LayerCx<'_>,
        demands: &[ExpertDemand],
    ) -> Result<(), PolicyError> {
        self.cache.begin_layer(cx.layer, demands);
        Ok(())
    }

    fn supply(
        &mut self,
        cx: &mut LayerCx<'_>,
        _index: usize,
        d: &ExpertDemand,
    ) -> Result<Supply, PolicyError> {
        let rule = self.rule;
        let future = self.future.clone();
        let step = future
            .as_ref()
            .map_or(0, |f| f.step(self.passes - 1, cx.moe_index));
        let dense = self.dense_layers;
        let score =
            move |k: &crate::model::TensorRef,
                  r: Option<&crate::policy::machinery::cache::eviction::UseRecord>| {
                rule.score(r, || match (&future, k.kind) {
                    (Some(f), TensorKind::Expert(e)) => {
                        f.next_use_or_never((k.layer as u32 - dense) as usize, e, step)
                    }
                    _ => u64::MAX,
                })
            };
        self.cache.supply(cx, d, &score, ReadOptions::default())
    }

    fn computed(&mut self, cx: &mut LayerCx<'_>, expert: u16, op: OpId) {
        self.cache.computed(expert_key(cx.layer, expert), op);
    }

    fn counters(&mut self) -> &mut Counters {
        &mut self.cache.counters
    }
}

impl ExpertState for CachingState {
    fn start_pass(&mut self, pass: &ForwardPass) -> Result<(), PolicyError> {
        if self.rule == Eviction::Belady {
            let Some(f) = &self.future else {
                return Err(PolicyError::Unsupported(
                    "policy `belady` evicts by the trace's future accesses, which it was not given; \
                     run it through `edgesim compare`/`replay`, which read the trace ahead for it"
                        .into(),
                ));
            };
            if self.passes >= f.passes() {
                return Err(PolicyError::BadPass(format!(
                    "policy `belady` was given the future of {} passes but is asked to plan pass {}",
                    f.passes(),
                    self.passes + 1
                )));
            }
        }
        if self.reset_per_sequence && pass.starts_sequence() {
            self.cache.reset_counts();
        }
        self.passes += 1;
        Ok(())
    }

    fn cache_bytes(&self) -> u64 {
        self.cache.cache.used_bytes()
    }

    fn counters_ref(&self) -> &Counters {
        &self.cache.counters
    }

    fn needs_future(&self) -> bool {
        self.rule == Eviction::Belady
    }

    fn give_future(&mut self, future: Arc<FutureAccesses>) {
        self.future = Some(future);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Precision;
    use crate::policy::test_support::{context, decode, plan};
    use crate::policy::Policy;

    /// Four decode tokens over a two-layer model whose cache holds three experts: LRU, FIFO
    /// and Belady choose different victims, and each hit count is worked out by hand.
    #[test]
    fn hand_worked_hit_counts() {
        // Layer 0 and layer 1 experts per token (top-2; scores irrelevant here).
        let tokens: [[[u16; 2]; 2]; 4] = [
            [[0, 1], [0, 1]],
            [[0, 2], [0, 1]],
            [[0, 1], [2, 1]],
            [[0, 1], [0, 1]],
        ];
        let passes: Vec<_> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                decode(
                    0,
                    i as u32,
                    &[
                        &[(t[0][0], 0.6), (t[0][1], 0.4)],
                        &[(t[1][0], 0.6), (t[1][1], 0.4)],
                    ],
                )
            })
            .collect();
        let run = |name: &'static str, rule: Eviction| {
            let mut p = build(
                name,
                rule,
                context(3.0, Precision::Int4, false, serde_json::Value::Null),
            )
            .unwrap();
            if rule == Eviction::Belady {
                p.give_future(Arc::new(FutureAccesses::from_passes(
                    &crate::policy::test_support::tiny(),
                    &passes,
                )));
            }
            let mut next = 0;
            for pass in &passes {
                next = plan(&mut p, pass, next).end_id();
            }
            p.counters().hits
        };
        // Access sequence (layer.expert), cache of 3 entries:
        //   t0: 0.0 0.1 1.0 1.1 | t1: 0.0 0.2 1.0 1.1 | t2: 0.0 0.1 1.2 1.1 | t3: 0.0 0.1 1.0 1.1
        // The layer's other demand is pinned until it is computed, so LRU evicts the least
        // recently used of the rest: victims 0.0 | 0.1 1.0 0.0 | 0.2 1.0 0.0 | 1.2 0.0, and
        // hits are t1's 1.1, t2's 1.1, t3's 0.1 and 1.1.
        assert_eq!(run("lru", Eviction::Lru), 4);
        // Belady must reach the optimum, found here by exhaustive search over eviction choices.
        let belady = run("belady", Eviction::Belady);
        assert_eq!(belady, brute_force_best(&tokens, 3));
        assert!(belady > 0);
        assert!(run("fifo", Eviction::Fifo) <= belady);
        assert!(run("lfu", Eviction::Lfu) <= belady);
    }

    /// The most hits any demand-paging cache of `capacity` entries can get on the accesses of
    /// `tokens` (layer-major per token), by exhaustive search over eviction choices.
    fn brute_force_best(tokens: &[[[u16; 2]; 2]], capacity: usize) -> u64 {
        let accesses: Vec<(u16, u16)> = tokens
            .iter()
            .flat_map(|t| (0..2u16).flat_map(move |l| t[l as usize].iter().map(move |&e| (l, e))))
            .collect();
        fn go(acc: &[(u16, u16)], i: usize, cache: &mut Vec<(u16, u16)>, cap: usize) -> u64 {
            if i == acc.len() {
                return 0;
            }
            let a = acc[i];
            if cache.contains(&a) {
                return 1 + go(acc, i + 1, cache, cap);
            }
            if cache.len() < cap {
                cache.push(a);
                let r = go(acc, i + 1, cache, cap);
                cache.pop();
                return r;
            }
            // The other expert of the same layer and token must not be evicted before its use:
            // the planner pins it. Accesses come in pairs per (token, layer).
            let partner_pending = if i.is_multiple_of(2) {
                Some(acc[i + 1])
            } else {
                None
            };
            let mut best = 0;
            for v in 0..cache.len() {
                if Some(cache[v]) == partner_pending {
                    continue;
                }
                let old = cache[v];
                cache[v] = a;
                best = best.max(go(acc, i + 1, cache, cap));
                cache[v] = old;
            }
            best
        }
        go(&accesses, 0, &mut Vec::new(), capacity)
    }

    #[test]
    fn belady_without_its_future_says_how_to_run_it() {
        let mut p = build(
            "belady",
            Eviction::Belady,
            context(3.0, Precision::Int4, false, serde_json::Value::Null),
        )
        .unwrap();
        assert!(p.needs_future());
        let mut b = crate::plan::PlanBuilder::new(0);
        let err = p
            .plan_pass(
                &decode(0, 0, &[&[(0, 0.5), (1, 0.5)], &[(0, 0.5), (1, 0.5)]]),
                &mut b,
            )
            .unwrap_err();
        assert!(err.to_string().contains("future"), "{err}");
    }

    #[test]
    fn unknown_parameters_are_rejected_with_the_policy_name() {
        let ctx = context(
            3.0,
            Precision::Int4,
            false,
            serde_json::json!({"reset": true}),
        );
        let err = build("lfu", Eviction::Lfu, ctx).err().unwrap().to_string();
        assert!(err.contains("lfu") && err.contains("reset"), "{err}");
        let ctx = context(3.0, Precision::Int4, false, serde_json::json!({"x": 1}));
        assert!(build("lru", Eviction::Lru, ctx).is_err());
    }
}
