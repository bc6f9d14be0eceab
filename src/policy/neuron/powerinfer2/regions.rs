//! PowerInfer-2's segmented neuron cache (§4.2) beyond the fixed region: the hot region (one
//! dense cluster per layer, cluster-level LRU), the cold region (neuron-level LRU; or, for
//! PowerInfer v1, a static placement of the most frequent cold neurons), and two staging areas
//! whose contents are dropped right after use (cold neurons that are not cached, and the
//! prefill's next-layer preload). "Evicted weights from both regions are simply discarded
//! from memory without being written back to storage": an eviction is an `Evict`, nothing else.
//!
//! Capacity split of the budget left after the fixed region: the prefill staging area first
//! (two layers' missing neurons, when NPU prefill is on), then the hot region (every layer's
//! hot cluster if they fit, leaving room for one cold cluster), then the cold region. With a
//! static or no cold cache, a cold staging area of one layer's worth of cold neurons is taken
//! out of the cold region.

use super::planner::NeuronPlan;
use super::NeuronLayout;
use crate::model::{ModelGeometry, Precision, TensorKind, TensorRef, DENSE_FFN};
use crate::plan::{Op, OpId, PlanBuilder};
use crate::policy::context::{PolicyContext, PolicyError};
use crate::policy::machinery::cache::cluster_lru::ClusterLru;
use crate::policy::machinery::cache::tensor_cache::TensorCache;
use crate::policy::machinery::load_ops::{Load, LoadOps, ReadOptions};
use crate::policy::machinery::resident::BULK_REQUEST_BYTES;
use serde::Deserialize;
use std::sync::Arc;

/// Marks the up/down part of a cold neuron (the gate part, or the whole bundle, uses
/// [`DENSE_FFN`]); both index the neuron by its rank in the neuron plan.
pub const UP_DOWN_PART: u16 = DENSE_FFN - 1;
/// Marks PowerInfer v1's static run of cold neurons of a layer.
pub const STATIC_RUN: u16 = DENSE_FFN - 2;
/// Marks the prefill's staging of a layer's missing neurons.
pub const PREFILL_STAGE: u16 = DENSE_FFN - 3;

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ColdMode {
    #[default]
    Lru,
    Static,
    None,
}

/// The key of a cold neuron's part: `up_down` false for the gate part (or whole bundle).
pub fn cold_key(layer: u32, rank: u32, up_down: bool) -> TensorRef {
    TensorRef::new(
        layer,
        TensorKind::Neurons {
            expert: if up_down { UP_DOWN_PART } else { DENSE_FFN },
            first: rank,
            count: 1,
        },
    )
}

/// The hot cluster of a layer: ranks `0..hot`.
pub fn hot_key(layer: u32, hot: u32) -> TensorRef {
    TensorRef::new(
        layer,
        TensorKind::Neurons {
            expert: DENSE_FFN,
            first: 0,
            count: hot,
        },
    )
}

pub struct Regions {
    pub mode: ColdMode,
    pub hot: ClusterLru,
    pub cold: ClusterLru,
    /// Per layer: the static run's length (ranks `hot..hot + len`) and its read.
    pub static_runs: Vec<(u32, Option<OpId>)>,
    static_bytes: u64,
    /// Cold neurons loaded for one use and dropped (static or no cold cache).
    pub cold_staging: TensorCache,
    /// The prefill's per-layer staging (NPU prefill).
    pub prefill: TensorCache,
    precision: Precision,
    load_ops: Arc<dyn LoadOps>,
}

impl Regions {
    pub fn new(
        ctx: &PolicyContext,
        model: &ModelGeometry,
        plan: &mut NeuronPlan,
        layout: &NeuronLayout,
        mode: ColdMode,
        capacity: u64,
        prefill_staging: u64,
    ) -> Self {
        let mut left = capacity - prefill_staging;
        let one_cold = layout.cached_bytes();
        // The hot region holds every hot cluster when they fit beside one cold neuron;
        // otherwise the hot clusters are shortened to what half of it can hold per layer.
        let hot_total: u64 = plan
            .hot
            .iter()
            .map(|&h| h as u64 * layout.dense_bytes)
            .sum();
        let hot_capacity = if hot_total + one_cold <= left {
            hot_total
        } else {
            let cap = (left / 2) / layout.dense_bytes.max(1);
            let per_layer = (cap / model.layers.max(1) as u64) as u32;
            for h in plan.hot.iter_mut() {
                *h = (*h).min(per_layer);
            }
            plan.hot
                .iter()
                .map(|&h| h as u64 * layout.dense_bytes)
                .sum()
        };
        left -= hot_capacity;
        let widest = (0..model.layers)
            .map(|l| model.ffn_width(l))
            .max()
            .unwrap_or(0) as u64;
        let (cold_capacity, staging_capacity) = match mode {
            ColdMode::Lru => (left, 0),
            ColdMode::None => (0, left),
            ColdMode::Static => {
                let staging = (widest * one_cold).min(left / 2).max(one_cold.min(left));
                (left - staging, staging)
            }
        };
        let mut static_runs = vec![(0u32, None); model.layers as usize];
        let mut static_bytes = 0;
        if mode == ColdMode::Static {
            // PowerInfer's solver with threshold 0 and one capacity constraint takes the
            // globally most frequent rows until capacity is full (SJTU-IPADS/PowerInfer
            // powerinfer-py/powerinfer/solver.py `solve_gpu_split`): the same greedy rule over
            // the cold neurons of every layer.
            let mut all: Vec<(f64, u32, u32)> = Vec::new();
            for (l, f) in plan.frequency.iter().enumerate() {
                for (r, &x) in f.iter().enumerate().skip(plan.hot[l] as usize) {
                    all.push((x, l as u32, r as u32));
                }
            }
            all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
            let fit = (cold_capacity / layout.dense_bytes.max(1)) as usize;
            for &(_, l, _) in all.iter().take(fit) {
                static_runs[l as usize].0 += 1;
            }
            static_bytes = static_runs
                .iter()
                .map(|r| r.0 as u64 * layout.dense_bytes)
                .sum();
        }
        Regions {
            mode,
            hot: ClusterLru::new(hot_capacity, ctx.load_ops.clone()),
            cold: ClusterLru::new(
                if mode == ColdMode::Lru {
                    cold_capacity
                } else {
                    0
                },
                ctx.load_ops.clone(),
            ),
            static_runs,
            static_bytes,
            cold_staging: TensorCache::new(staging_capacity, ctx.load_ops.clone()),
            prefill: TensorCache::new(prefill_staging, ctx.load_ops.clone()),
            precision: ctx.offload_precision,
            load_ops: ctx.load_ops.clone(),
        }
    }

    pub fn used_bytes(&self) -> u64 {
        self.hot.used_bytes()
            + self.cold.used_bytes()
            + self.static_bytes
            + self.cold_staging.used_bytes()
            + self.prefill.used_bytes()
    }

    /// The warm-up after the fixed region (`done`): every hot cluster and static run, read
    /// sequentially; the warm-up ends when they are in.
    pub fn plan_warmup(
        &mut self,
        plan: &NeuronPlan,
        layout: &NeuronLayout,
        done: OpId,
        b: &mut PlanBuilder,
    ) -> Result<(), PolicyError> {
        let mut ends = vec![done];
        for (l, &h) in plan.hot.iter().enumerate() {
            if h == 0 {
                continue;
            }
            let key = hot_key(l as u32, h);
            let bytes = h as u64 * layout.dense_bytes;
            if self.hot.used_bytes() + bytes > self.hot.capacity_bytes() {
                continue;
            }
            let read = self
                .hot
                .load(key, self.precision, bytes, BULK_REQUEST_BYTES, &[done], b);
            self.hot.used(key, read);
            ends.push(read);
        }
        for (l, run) in self.static_runs.iter_mut().enumerate() {
            if run.0 == 0 {
                continue;
            }
            let tensor = TensorRef::new(
                l as u32,
                TensorKind::Neurons {
                    expert: STATIC_RUN,
                    first: plan.hot[l],
                    count: run.0,
                },
            );
            let bytes = run.0 as u64 * layout.dense_bytes;
            let read = self.load_ops.load(
                &Load {
                    tensor,
                    precision: self.precision,
                    bytes,
                    request_bytes: BULK_REQUEST_BYTES,
                    alloc_after: &[done],
                    read_after: &[],
                    read: ReadOptions::default(),
                },
                b,
            );
            run.1 = Some(read);
            ends.push(read);
        }
        let end = b.push(Op::Join, &ends);
        b.set_output(end);
        Ok(())
    }

    /// Whether rank `rank` of `layer` is in the static run (PowerInfer v1), with its read.
    pub fn static_hit(&self, plan: &NeuronPlan, layer: u32, rank: u32) -> Option<OpId> {
        let (len, ready) = self.static_runs[layer as usize];
        let hot = plan.hot[layer as usize];
        (rank >= hot && rank < hot + len).then_some(ready).flatten()
    }
}
