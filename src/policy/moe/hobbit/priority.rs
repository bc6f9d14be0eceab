//! Sequence-level multidimensional caching (HOBBIT §3.4) and MoE-APEX's LCU (A §3.4): the
//! records kept per cached expert and the priority that orders eviction (lowest first).
//!
//! HOBBIT Eq. 3, for cached expert t when expert i of layer l_i is inserted:
//!
//! ```text
//! p_t = w_lru·R_t/T + w_lfu·F_t/T + w_lhu·H_t/T + w_fld·(1 − ((l_t − l_i + l_n) mod l_n)/l_n)
//! ```
//!
//! R_t: token number of t's last use; F_t: t's uses in the sequence; H_t: its high-precision
//! uses; T: tokens of the sequence so far; l_n: MoE layers. edgesim counts uses in tokens
//! (a prefill pass routing 40 tokens to an expert uses it 40 times), so F_t/T, H_t/T and R_t/T
//! stay in [0, 1] in prefill and decode alike.
//!
//! MoE-APEX Eq. 3-4 (LCU): `C_t = H_t + (B_l/B_h)·L_t` (L_t: low-precision uses) and
//! `p_t = C_t/T + 1/D_t` if t was used in the last forward pass, else `C_t/T`, with
//! `D_t = ((l_t − l_i + l_n) mod l_n) + 0.1`.

use super::params::{CachePolicy, CacheWeights};
use crate::model::TensorRef;
use crate::policy::machinery::future::FutureAccesses;
use crate::policy::machinery::tensor_map::{TensorMap, TensorSet};

/// What the cache remembers about one expert. `last_token`, `uses`, `high_uses` and
/// `low_uses` reset at each sequence start; `clock` (for plain LRU) never does.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ExpertRecord {
    pub last_token: u32,
    pub uses: u64,
    pub high_uses: u64,
    pub low_uses: u64,
    pub clock: u64,
}

/// Per-expert records and the sets the priorities read. The map and sets are only looked up
/// (a victim search asks for every cached entry's record), never walked in an order that
/// reaches a plan, so they hash with [`TensorMap`]'s fast hasher.
#[derive(Clone, Debug, Default)]
pub struct Records {
    pub by_expert: TensorMap<ExpertRecord>,
    /// Tokens of the current sequence so far (T).
    pub tokens: u32,
    /// Experts used in the previous forward pass (MoE-APEX's FR).
    pub last_pass: TensorSet,
    pub this_pass: TensorSet,
    clock: u64,
}

impl Records {
    /// A new sequence starts: R, F, H and L are forgotten.
    pub fn reset_sequence(&mut self) {
        for r in self.by_expert.values_mut() {
            *r = ExpertRecord {
                clock: r.clock,
                ..ExpertRecord::default()
            };
        }
        self.last_pass.clear();
        self.this_pass.clear();
    }

    /// A pass starts with `tokens_so_far` tokens in its sequence (this pass included).
    pub fn start_pass(&mut self, tokens_so_far: u32) {
        self.tokens = tokens_so_far;
        self.last_pass = std::mem::take(&mut self.this_pass);
    }

    /// `key` served `tokens` tokens, at high precision when `high`.
    pub fn used(&mut self, key: TensorRef, tokens: u32, high: bool) {
        self.clock += 1;
        let r = self.by_expert.entry(key).or_default();
        r.last_token = self.tokens;
        r.uses += tokens as u64;
        if high {
            r.high_uses += tokens as u64;
        } else {
            r.low_uses += tokens as u64;
        }
        r.clock = self.clock;
        self.this_pass.insert(key);
    }
}

/// Everything a priority needs besides the records.
pub struct PriorityCx<'a> {
    pub policy: CachePolicy,
    pub weights: CacheWeights,
    /// B_l / B_h.
    pub low_over_high_bytes: f64,
    /// MoE layers (l_n) and the first MoE layer's index among all layers.
    pub moe_layers: u32,
    pub dense_layers: u32,
    /// MoE index of the expert being inserted (l_i).
    pub inserting_moe_layer: u32,
    /// For Belady: the future and the current step.
    pub future: Option<&'a FutureAccesses>,
    pub step: u64,
}

impl PriorityCx<'_> {
    /// Eviction priority of cached `key` (lowest evicted first).
    pub fn priority(&self, key: &TensorRef, records: &Records) -> f64 {
        let r = records.by_expert.get(key).copied().unwrap_or_default();
        let t = records.tokens.max(1) as f64;
        let l_n = self.moe_layers.max(1);
        let l_t = (key.layer as u32).saturating_sub(self.dense_layers);
        let distance = ((l_t + l_n - self.inserting_moe_layer % l_n) % l_n) as f64;
        match self.policy {
            CachePolicy::Multidimensional => {
                let w = self.weights;
                w.lru * r.last_token as f64 / t
                    + w.lfu * r.uses as f64 / t
                    + w.lhu * r.high_uses as f64 / t
                    + w.fld * (1.0 - distance / l_n as f64)
            }
            CachePolicy::Lcu => {
                let cost = r.high_uses as f64 + self.low_over_high_bytes * r.low_uses as f64;
                let recent = if records.last_pass.contains(key) {
                    1.0 / (distance + 0.1)
                } else {
                    0.0
                };
                cost / t + recent
            }
            CachePolicy::Lru => r.clock as f64,
            CachePolicy::Lfu => r.uses as f64 + r.clock as f64 * 1e-12,
            CachePolicy::Belady => match (self.future, key.kind) {
                (Some(f), crate::model::TensorKind::Expert(e)) => {
                    -(f.next_use_or_never(l_t as usize, e, self.step) as f64)
                }
                _ => f64::NEG_INFINITY,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx(policy: CachePolicy, weights: CacheWeights, inserting: u32) -> PriorityCx<'static> {
        PriorityCx {
            policy,
            weights,
            low_over_high_bytes: 0.25,
            moe_layers: 4,
            dense_layers: 0,
            inserting_moe_layer: inserting,
            future: None,
            step: 0,
        }
    }

    const ONLY_FLD: CacheWeights = CacheWeights {
        lru: 0.0,
        lfu: 0.0,
        lhu: 0.0,
        fld: 1.0,
    };

    #[test]
    fn fld_favours_the_layers_that_run_next() {
        let r = Records::default();
        let c = cx(CachePolicy::Multidimensional, ONLY_FLD, 1);
        let p = |layer: u32| c.priority(&TensorRef::expert(layer, 0), &r);
        // Inserting at layer 1 of 4: layer 2 runs next (1 - 1/4), layer 0 last (1 - 3/4).
        assert_eq!(p(1), 1.0);
        assert_eq!(p(2), 0.75);
        assert_eq!(p(3), 0.5);
        assert_eq!(p(0), 0.25);
    }

    #[test]
    fn hand_worked_eq3() {
        let mut r = Records::default();
        let a = TensorRef::expert(0, 0);
        let b = TensorRef::expert(0, 1);
        r.start_pass(1);
        r.used(a, 1, true);
        r.start_pass(2);
        r.used(a, 1, false);
        r.used(b, 1, true);
        r.start_pass(3);
        r.start_pass(4);
        let w = CacheWeights {
            lru: 0.4,
            lfu: 0.3,
            lhu: 0.2,
            fld: 0.1,
        };
        let c = cx(CachePolicy::Multidimensional, w, 2);
        // a: R = 2, F = 2, H = 1, T = 4, layer 0 seen from layer 2 of 4: distance 2.
        let pa = 0.4 * 2.0 / 4.0 + 0.3 * 2.0 / 4.0 + 0.2 * 1.0 / 4.0 + 0.1 * (1.0 - 2.0 / 4.0);
        assert!((c.priority(&a, &r) - pa).abs() < 1e-12);
        // b: R = 2, F = 1, H = 1.
        let pb = 0.4 * 0.5 + 0.3 * 0.25 + 0.2 * 0.25 + 0.1 * 0.5;
        assert!((c.priority(&b, &r) - pb).abs() < 1e-12);
        // LCU: a costs H + 0.25 L = 1.25, b 1; neither was used in the last pass (pass 3 used
        // nothing).
        let l = cx(CachePolicy::Lcu, w, 2);
        assert!((l.priority(&a, &r) - 1.25 / 4.0).abs() < 1e-12);
        assert!((l.priority(&b, &r) - 1.0 / 4.0).abs() < 1e-12);
        // A new sequence forgets R, F, H, L.
        r.reset_sequence();
        r.start_pass(1);
        assert_eq!(c.priority(&a, &r), 0.1 * 0.5);
    }

    #[test]
    fn lcu_adds_the_inverse_layer_distance_for_last_pass_experts() {
        let mut r = Records::default();
        let k = TensorRef::expert(3, 0);
        r.start_pass(1);
        r.used(k, 1, true);
        r.start_pass(2);
        let l = cx(CachePolicy::Lcu, ONLY_FLD, 2);
        // C = 1, T = 2; used in the last pass; distance from layer 2 to 3 is 1: 1/(1 + 0.1).
        assert!((l.priority(&k, &r) - (0.5 + 1.0 / 1.1)).abs() < 1e-12);
    }
}
