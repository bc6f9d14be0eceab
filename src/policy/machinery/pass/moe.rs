//! The shape every expert-offloading plan shares, with the policy deciding only how each
//! demanded expert is supplied.
//!
//! Per layer: mixer → router → the layer's experts (each after its weights are ready) → join.
//! A dense layer runs its resident FFN instead. The pass ends with the LM head.

use crate::model::{ModelGeometry, Precision, TensorRef};
use crate::plan::{Kernel, Op, OpId, PlanBuilder, Unit};
use crate::policy::context::{Counters, PolicyError};
use crate::policy::machinery::pass::resident_ops::{expert_compute, ResidentOps};
use crate::policy::machinery::placement::Placement;
use crate::trace::ForwardPass;

/// What a pass asks of one expert at one layer, aggregated over the pass's tokens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExpertDemand {
    pub expert: u16,
    /// Tokens routed to the expert.
    pub tokens: u32,
    /// Best (lowest) rank the expert had among a token's top-k (0 = top-1).
    pub best_rank: u8,
    /// Highest gate score any token gave it.
    pub max_score: f32,
    /// Sum of its gate scores over tokens.
    pub score_sum: f32,
    /// Largest cumulative score of the experts ranked above it in any token (HOBBIT's
    /// "unimportance" s(e)); 0 for a top-1 expert.
    pub min_score_before: f32,
}

/// How the policy supplies one demanded expert.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Supply {
    /// Compute at `precision` on `unit` (default unit when `None`) once `ready` has ended.
    Compute {
        precision: Precision,
        ready: Option<OpId>,
        unit: Option<Unit>,
    },
    /// Not computed: dropped from the layer's weighted sum.
    Skip,
}

/// The layer being planned, handed to the supplier.
pub struct LayerCx<'a> {
    pub layer: u32,
    /// Index among MoE layers (0 = first MoE layer); trace records are indexed by it.
    pub moe_index: usize,
    pub pass: &'a ForwardPass,
    /// The router op: the layer's demands are known once it ends.
    pub router: OpId,
    pub builder: &'a mut PlanBuilder,
}

/// A policy's expert-level decisions, called in this order for each MoE layer:
/// `begin_layer`, then for each demand `supply` followed (unless skipped) by `computed`, then
/// `end_layer`. Interleaving lets a policy evict an expert right after its compute is planned
/// (on-demand loading) and pin the layer's remaining demands against eviction.
pub trait ExpertSupplier {
    /// The layer's demands are known (the router has run); a good place to prefetch ahead.
    fn begin_layer(
        &mut self,
        _cx: &mut LayerCx<'_>,
        _demands: &[ExpertDemand],
    ) -> Result<(), PolicyError> {
        Ok(())
    }

    /// How demand number `index` of the layer is supplied, emitting any loads and
    /// evictions that needs into `cx.builder`.
    fn supply(
        &mut self,
        cx: &mut LayerCx<'_>,
        index: usize,
        demand: &ExpertDemand,
    ) -> Result<Supply, PolicyError>;

    /// `op` computed `expert` of the layer: eviction of those weights must wait for it.
    fn computed(&mut self, cx: &mut LayerCx<'_>, expert: u16, op: OpId);

    /// The counters the planner updates alongside the supplier's own hit/miss counts.
    fn counters(&mut self) -> &mut Counters;

    /// Every expert of the layer is planned; `join` ends when they have all run.
    fn end_layer(&mut self, _cx: &mut LayerCx<'_>, _join: OpId) -> Result<(), PolicyError> {
        Ok(())
    }
}

/// Reusable planner state (buffers are kept between passes).
pub struct MoePassPlanner {
    pub placement: Placement,
    /// The precision that counts as full quality for the accuracy proxy.
    pub high_precision: Precision,
    /// The kernel every compute op of the pass runs on a CPU: LUT, or llama.cpp's
    /// dequantize-then-multiply kernels for the llama.cpp baselines.
    pub kernel: Kernel,
    demands: Vec<ExpertDemand>,
    slot: Vec<Option<usize>>,
    outputs: Vec<OpId>,
}

impl MoePassPlanner {
    pub fn new(placement: Placement, high_precision: Precision) -> Self {
        MoePassPlanner {
            placement,
            high_precision,
            kernel: Kernel::Lut,
            demands: Vec::new(),
            slot: Vec::new(),
            outputs: Vec::new(),
        }
    }

    /// Plans one pass. `resident` prices the always-resident ops.
    pub fn plan(
        &mut self,
        model: &ModelGeometry,
        resident: &ResidentOps<'_>,
        pass: &ForwardPass,
        supplier: &mut dyn ExpertSupplier,
        b: &mut PlanBuilder,
    ) -> Result<(), PolicyError> {
        check_pass(model, pass)?;
        let main_unit = self.placement.unit_for(resident.precision);
        let k = model.top_k as usize;
        let mut prev: Vec<OpId> = Vec::new();
        let mut moe_index = 0usize;
        for layer in 0..model.layers {
            let kernel = self.kernel;
            let mixer = b.push(
                resident.mixer(layer, pass, main_unit).with_kernel(kernel),
                &prev,
            );
            if !model.is_moe_layer(layer) {
                let ffn = b.push(
                    resident
                        .dense_ffn(layer, pass, main_unit)
                        .with_kernel(kernel),
                    &[mixer],
                );
                prev.clear();
                prev.push(ffn);
                continue;
            }
            let router = b.push(
                resident.router(layer, pass, main_unit).with_kernel(kernel),
                &[mixer],
            );
            self.collect_demands(model, pass, moe_index, k);
            supplier.counters().lookups += self.demands.len() as u64;
            self.outputs.clear();
            let mut cx = LayerCx {
                layer,
                moe_index,
                pass,
                router,
                builder: b,
            };
            supplier.begin_layer(&mut cx, &self.demands)?;
            for (i, d) in self.demands.iter().enumerate() {
                let supply = supplier.supply(&mut cx, i, d)?;
                let counters = supplier.counters();
                counters.gate_weight_total += d.score_sum as f64;
                match supply {
                    Supply::Skip => {
                        counters.skipped += d.tokens as u64;
                        counters.gate_weight_degraded += d.score_sum as f64;
                    }
                    Supply::Compute {
                        precision,
                        ready,
                        unit,
                    } => {
                        counters.served_by_precision[precision.index()] += d.tokens as u64;
                        if precision.bits() < self.high_precision.bits() {
                            counters.gate_weight_degraded += d.score_sum as f64;
                        }
                        let unit = unit.unwrap_or_else(|| self.placement.unit_for(precision));
                        let op = expert_compute(model, layer, d.expert, precision, unit, d.tokens)
                            .with_kernel(kernel);
                        let c = match ready {
                            Some(r) => cx.builder.push(op, &[router, r]),
                            None => cx.builder.push(op, &[router]),
                        };
                        supplier.computed(&mut cx, d.expert, c);
                        self.outputs.push(c);
                    }
                }
            }
            let join = match self.outputs.len() {
                0 => router,
                1 => self.outputs[0],
                _ => cx.builder.push(Op::Join, &self.outputs),
            };
            supplier.end_layer(&mut cx, join)?;
            prev.clear();
            prev.push(join);
            moe_index += 1;
        }
        let head = b.push(resident.lm_head(main_unit).with_kernel(self.kernel), &prev);
        b.set_output(head);
        Ok(())
    }

    fn collect_demands(
        &mut self,
        model: &ModelGeometry,
        pass: &ForwardPass,
        moe_index: usize,
        k: usize,
    ) {
        self.demands.clear();
        self.slot.clear();
        self.slot.resize(model.experts as usize, None);
        for t in &pass.tokens {
            let ids = t.experts_at(moe_index, k);
            let scores = t.scores_at(moe_index, k);
            let mut before = 0.0f32;
            for (rank, (&e, &s)) in ids.iter().zip(scores).enumerate() {
                let i = match self.slot[e as usize] {
                    Some(i) => i,
                    None => {
                        self.slot[e as usize] = Some(self.demands.len());
                        self.demands.push(ExpertDemand {
                            expert: e,
                            tokens: 0,
                            best_rank: u8::MAX,
                            max_score: 0.0,
                            score_sum: 0.0,
                            min_score_before: f32::INFINITY,
                        });
                        self.demands.len() - 1
                    }
                };
                let d = &mut self.demands[i];
                d.tokens += 1;
                d.best_rank = d.best_rank.min(rank as u8);
                d.max_score = d.max_score.max(s);
                d.score_sum += s;
                d.min_score_before = d.min_score_before.min(before);
                before += s;
            }
        }
    }
}

/// A pass must match the model: every token carries k experts per MoE layer, all in range.
pub fn check_pass(model: &ModelGeometry, pass: &ForwardPass) -> Result<(), PolicyError> {
    let k = model.top_k as usize;
    let want = model.moe_layers() as usize * k;
    if pass.tokens.is_empty() {
        return Err(PolicyError::BadPass("a forward pass has no tokens".into()));
    }
    for t in &pass.tokens {
        if t.experts.len() != want || t.scores.len() != want {
            return Err(PolicyError::BadPass(format!(
                "token at position {} of sequence {} has {} expert ids and {} scores; model `{}` needs {} ({} MoE layers x top-{})",
                t.position,
                t.sequence,
                t.experts.len(),
                t.scores.len(),
                model.name,
                want,
                model.moe_layers(),
                k
            )));
        }
        if let Some(&e) = t.experts.iter().find(|&&e| e as u32 >= model.experts) {
            return Err(PolicyError::BadPass(format!(
                "token at position {} of sequence {} names expert {e}; model `{}` has {} experts",
                t.position, t.sequence, model.name, model.experts
            )));
        }
    }
    Ok(())
}

/// The cache key of expert `e` at `layer`.
pub fn expert_key(layer: u32, e: u16) -> TensorRef {
    TensorRef::expert(layer, e as u32)
}
