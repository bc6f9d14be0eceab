//! The trace's future, for offline policies only.
//!
//! Belady's optimal eviction needs to know when each expert is next used. That knowledge does
//! not exist online, so no ordinary policy may see it: the driver (`compare`, or a test) reads
//! the trace once beforehand, builds a [`FutureAccesses`] from the same forward passes the
//! policy will plan, and hands it only to policies whose [`Policy::needs_future`] says so.
//!
//! Time is counted in *steps*: one step per MoE layer of each forward pass, in the order the
//! planner visits them, `step = pass_index * moe_layers + moe_index` (passes counted from 0
//! after warm-up). Within a step an expert is demanded at most once (a prefill pass aggregates
//! its tokens), which is the granularity at which cache policies see accesses.
//!
//! [`Policy::needs_future`]: crate::policy::Policy::needs_future

use crate::model::ModelGeometry;
use crate::trace::ForwardPass;

/// For every (MoE layer, expert), the steps at which it is demanded, ascending.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FutureAccesses {
    experts: usize,
    moe_layers: usize,
    k: usize,
    /// Indexed by `moe_index * experts + expert`.
    uses: Vec<Vec<u64>>,
    passes: u64,
    /// Dense models only: layers, the first index of each layer's neurons in `neuron_uses`,
    /// and per (layer, neuron) the steps (`pass * layers + layer`) at which it is active.
    layers: usize,
    neuron_base: Vec<usize>,
    neuron_uses: Vec<Vec<u64>>,
}

impl FutureAccesses {
    /// An empty index for `model`; add passes with [`FutureAccesses::push_pass`].
    pub fn new(model: &ModelGeometry) -> Self {
        let experts = model.experts as usize;
        let moe_layers = model.moe_layers() as usize;
        let (layers, mut neuron_base) = if model.is_moe() {
            (0, Vec::new())
        } else {
            (model.layers as usize, vec![0])
        };
        for l in 0..layers {
            let next = neuron_base[l] + model.ffn_width(l as u32) as usize;
            neuron_base.push(next);
        }
        FutureAccesses {
            experts,
            moe_layers,
            k: model.top_k as usize,
            uses: vec![Vec::new(); experts * moe_layers],
            passes: 0,
            layers,
            neuron_uses: vec![Vec::new(); neuron_base.last().copied().unwrap_or(0)],
            neuron_base,
        }
    }

    /// Builds the index from every pass of a trace, in replay order.
    pub fn from_passes<'a>(
        model: &ModelGeometry,
        passes: impl IntoIterator<Item = &'a ForwardPass>,
    ) -> Self {
        let mut f = FutureAccesses::new(model);
        for p in passes {
            f.push_pass(p);
        }
        f
    }

    /// Records the next pass's demands. Tokens whose records do not fit the model are ignored
    /// here; the planner rejects them with a clear error when the pass is planned.
    pub fn push_pass(&mut self, pass: &ForwardPass) {
        let base = self.passes * self.moe_layers as u64;
        for m in 0..self.moe_layers {
            let step = base + m as u64;
            for t in &pass.tokens {
                if t.experts.len() < (m + 1) * self.k {
                    continue;
                }
                for &e in t.experts_at(m, self.k) {
                    let Some(slot) = self.uses.get_mut(m * self.experts + e as usize) else {
                        continue;
                    };
                    if slot.last() != Some(&step) {
                        slot.push(step);
                    }
                }
            }
        }
        for l in 0..self.layers {
            let step = self.passes * self.layers as u64 + l as u64;
            let (lo, hi) = (self.neuron_base[l], self.neuron_base[l + 1]);
            for t in &pass.tokens {
                if t.neuron_offsets.len() < l + 2 {
                    continue;
                }
                for &n in t.neurons_at(l) {
                    let Some(slot) = self.neuron_uses[lo..hi].get_mut(n as usize) else {
                        continue;
                    };
                    if slot.last() != Some(&step) {
                        slot.push(step);
                    }
                }
            }
        }
        self.passes += 1;
    }

    /// Passes recorded.
    pub fn passes(&self) -> u64 {
        self.passes
    }

    /// The step of pass `pass` at MoE layer `moe_index`.
    pub fn step(&self, pass: u64, moe_index: usize) -> u64 {
        pass * self.moe_layers as u64 + moe_index as u64
    }

    /// The first step strictly after `step` at which `expert` of MoE layer `moe_index` is
    /// demanded, or `None` if never again.
    pub fn next_use_after(&self, moe_index: usize, expert: u16, step: u64) -> Option<u64> {
        let uses = self.uses.get(moe_index * self.experts + expert as usize)?;
        let i = uses.partition_point(|&s| s <= step);
        uses.get(i).copied()
    }

    /// Dense models: the step of pass `pass` at layer `layer`.
    pub fn dense_step(&self, pass: u64, layer: u32) -> u64 {
        pass * self.layers as u64 + layer as u64
    }

    /// Dense models: the first step strictly after `step` at which neuron `neuron` of
    /// `layer` is active, or `None` if never again (or not a neuron of the model).
    pub fn next_neuron_use_after(&self, layer: u32, neuron: u32, step: u64) -> Option<u64> {
        let l = layer as usize;
        let lo = *self.neuron_base.get(l)?;
        let hi = *self.neuron_base.get(l + 1)?;
        let uses = self.neuron_uses[lo..hi].get(neuron as usize)?;
        let i = uses.partition_point(|&s| s <= step);
        uses.get(i).copied()
    }

    /// Distance used to rank eviction victims: the next use, `u64::MAX` for never.
    pub fn next_use_or_never(&self, moe_index: usize, expert: u16, step: u64) -> u64 {
        self.next_use_after(moe_index, expert, step)
            .unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::test_support::tiny;
    use crate::trace::{Phase, TokenRecord};

    fn pass(experts: &[&[u16]]) -> ForwardPass {
        ForwardPass {
            sequence: 0,
            phase: if experts.len() > 1 {
                Phase::Prefill
            } else {
                Phase::Decode
            },
            tokens: experts
                .iter()
                .map(|e| TokenRecord {
                    experts: e.to_vec(),
                    scores: vec![0.5; e.len()],
                    ..TokenRecord::default()
                })
                .collect(),
        }
    }

    #[test]
    fn next_use_is_strictly_after_and_counts_steps_per_layer() {
        let m = tiny();
        // Two MoE layers, top-2: a token's experts are [layer0 e, e, layer1 e, e].
        let passes = [
            pass(&[&[0, 1, 2, 3], &[1, 2, 3, 0]]), // prefill of two tokens: step 0 and 1
            pass(&[&[0, 3, 3, 1]]),                // steps 2, 3
            pass(&[&[2, 1, 2, 3]]),                // steps 4, 5
        ];
        let f = FutureAccesses::from_passes(&m, &passes);
        assert_eq!(f.passes(), 3);
        // Layer 0 expert 1: used at steps 0 (twice, aggregated) and 4.
        assert_eq!(f.next_use_after(0, 1, 0), Some(4));
        assert_eq!(f.next_use_after(0, 1, 4), None);
        assert_eq!(f.next_use_or_never(0, 1, 4), u64::MAX);
        // Layer 1 expert 3: steps 1, 3 and 5.
        assert_eq!(f.next_use_after(1, 3, 1), Some(3));
        assert_eq!(f.next_use_after(1, 3, 0), Some(1));
        assert_eq!(f.step(2, 1), 5);
        // Out of range experts have no future.
        assert_eq!(f.next_use_after(0, 9, 0), None);
    }
}
