//! The shape every neuron-offloading plan of a dense model shares, with the policy deciding only
//! how each demanded neuron cluster is supplied.
//!
//! Per layer: mixer → for each demanded cluster, in ascending order, its supply (a hit's ready
//! op, or evictions, Alloc and a Read that waits for the mixer) and its compute → join. The pass
//! ends with the LM head. The executor runs these plans as they are, so the dependency shape
//! (documented in `docs/neuron-policies.md`) is a contract, not an implementation detail.
//!
//! A cluster's supply and compute are emitted one cluster after the other rather than all
//! supplies first: a supplier that drops a cluster right after its compute (on-demand
//! staging) can then free memory that the next cluster's Alloc waits for.

use crate::model::{ModelGeometry, Precision, TensorKind, TensorRef, DENSE_FFN};
use crate::plan::{Op, OpId, PlanBuilder, Unit};
use crate::policy::context::{Counters, PolicyError};
use crate::policy::machinery::pass::resident_ops::ResidentOps;
use crate::trace::ForwardPass;

/// How a layer's FFN neurons are grouped into load units: cluster `c` holds neurons
/// `c * size .. (c + 1) * size`, the last one shorter when the width is not a multiple.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clusters {
    size: u32,
}

impl Clusters {
    /// `size` neurons per cluster; at least one.
    pub fn new(size: u32) -> Result<Self, PolicyError> {
        if size == 0 {
            return Err(PolicyError::BadParameter(
                "`cluster_neurons` must be at least 1".into(),
            ));
        }
        Ok(Clusters { size })
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    /// Clusters of a layer whose FFN is `width` neurons wide.
    pub fn count(&self, width: u32) -> u32 {
        width.div_ceil(self.size)
    }

    /// The tensor of cluster `c` of `layer`: the unit that is allocated, read, computed with
    /// and evicted. Loads and computes must name the same `first`/`count`.
    pub fn tensor(&self, model: &ModelGeometry, layer: u32, c: u32) -> TensorRef {
        let width = model.ffn_width(layer);
        let first = c * self.size;
        TensorRef::new(
            layer,
            TensorKind::Neurons {
                expert: DENSE_FFN,
                first,
                count: self.size.min(width.saturating_sub(first)),
            },
        )
    }

    /// Bytes of the largest cluster of any layer at `precision`: the least memory beyond the
    /// resident set that lets a pass make progress.
    pub fn largest_bytes(&self, model: &ModelGeometry, precision: Precision) -> u64 {
        (0..model.layers)
            .map(|l| model.bytes(l, self.tensor(model, l, 0).kind, precision))
            .max()
            .unwrap_or(0)
    }
}

/// What a pass asks of one cluster at one layer, over the union of its tokens' active neurons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterDemand {
    pub cluster: u32,
    pub tensor: TensorRef,
    /// Neurons of the cluster active for at least one token of the pass.
    pub active: u32,
}

/// The layer being planned, handed to the supplier.
pub struct NeuronLayerCx<'a> {
    pub layer: u32,
    pub pass: &'a ForwardPass,
    /// The layer's mixer: its output is the FFN's input, so only once it ends is the active
    /// set known and may a demanded cluster's read start.
    pub mixer: OpId,
    pub builder: &'a mut PlanBuilder,
}

/// A policy's cluster-level decisions, called per layer as `begin_layer`, then for each demand
/// in ascending cluster order `supply` followed by `computed`.
pub trait ClusterSupplier {
    /// The layer's demands are known; a cache pins them here.
    fn begin_layer(&mut self, _cx: &mut NeuronLayerCx<'_>, _demands: &[ClusterDemand]) {}

    /// Makes demand `d` computable, emitting any evictions and loads into `cx.builder`;
    /// returns the op the compute must wait for (a read, or a hit's ready op).
    fn supply(
        &mut self,
        cx: &mut NeuronLayerCx<'_>,
        d: &ClusterDemand,
    ) -> Result<OpId, PolicyError>;

    /// `op` computed with `d`'s weights: their eviction must wait for it.
    fn computed(&mut self, cx: &mut NeuronLayerCx<'_>, d: &ClusterDemand, op: OpId);

    fn counters(&mut self) -> &mut Counters;
}

/// Reusable planner state; the buffers are kept between passes.
pub struct NeuronPassPlanner {
    clusters: Clusters,
    unit: Unit,
    precision: Precision,
    demands: Vec<ClusterDemand>,
    /// Per neuron, the stamp of the last layer-pass that counted it: a union over tokens with
    /// no clearing between layers.
    seen: Vec<u64>,
    stamp: u64,
    active: Vec<u32>,
    touched: Vec<u32>,
    outputs: Vec<OpId>,
}

impl NeuronPassPlanner {
    /// Computes every op on `unit`; clusters are computed at `precision` (the offload one).
    pub fn new(clusters: Clusters, unit: Unit, precision: Precision) -> Self {
        NeuronPassPlanner {
            clusters,
            unit,
            precision,
            demands: Vec::new(),
            seen: Vec::new(),
            stamp: 0,
            active: Vec::new(),
            touched: Vec::new(),
            outputs: Vec::new(),
        }
    }

    pub fn clusters(&self) -> Clusters {
        self.clusters
    }

    /// Plans one pass of a dense model. `resident` prices the always-resident ops.
    pub fn plan(
        &mut self,
        model: &ModelGeometry,
        resident: &ResidentOps<'_>,
        pass: &ForwardPass,
        supplier: &mut dyn ClusterSupplier,
        b: &mut PlanBuilder,
    ) -> Result<(), PolicyError> {
        check_pass(model, pass)?;
        let matrices = model.ffn_kind.matrices() as u32;
        let mut prev: Option<OpId> = None;
        for layer in 0..model.layers {
            let mixer_op = resident.mixer(layer, pass, self.unit);
            let mixer = match prev {
                Some(p) => b.push(mixer_op, &[p]),
                None => b.push(mixer_op, &[]),
            };
            self.collect_demands(model, pass, layer);
            supplier.counters().lookups += self.demands.len() as u64;
            self.outputs.clear();
            self.outputs.push(mixer);
            let mut cx = NeuronLayerCx {
                layer,
                pass,
                mixer,
                builder: b,
            };
            supplier.begin_layer(&mut cx, &self.demands);
            for d in &self.demands {
                let ready = supplier.supply(&mut cx, d)?;
                let op = Op::matmul(
                    d.tensor,
                    self.unit,
                    self.precision,
                    matrices * d.active,
                    model.hidden,
                    pass.batch(),
                );
                let compute = cx.builder.push(op, &[mixer, ready]);
                supplier.counters().served_by_precision[self.precision.index()] += 1;
                supplier.computed(&mut cx, d, compute);
                self.outputs.push(compute);
            }
            prev = Some(b.push(Op::Join, &self.outputs));
        }
        let head = match prev {
            Some(p) => b.push(resident.lm_head(self.unit), &[p]),
            None => b.push(resident.lm_head(self.unit), &[]),
        };
        b.set_output(head);
        Ok(())
    }

    /// Fills `demands` with layer `layer`'s demanded clusters in ascending order, each with the
    /// number of its neurons active for at least one of the pass's tokens.
    fn collect_demands(&mut self, model: &ModelGeometry, pass: &ForwardPass, layer: u32) {
        let width = model.ffn_width(layer);
        let size = self.clusters.size();
        if self.seen.len() < width as usize {
            self.seen.resize(width as usize, 0);
        }
        let count = self.clusters.count(width) as usize;
        if self.active.len() < count {
            self.active.resize(count, 0);
        }
        self.stamp += 1;
        self.touched.clear();
        for t in &pass.tokens {
            for &n in t.neurons_at(layer as usize) {
                let seen = &mut self.seen[n as usize];
                if *seen == self.stamp {
                    continue;
                }
                *seen = self.stamp;
                let c = n / size;
                if self.active[c as usize] == 0 {
                    self.touched.push(c);
                }
                self.active[c as usize] += 1;
            }
        }
        self.touched.sort_unstable();
        self.demands.clear();
        for &c in &self.touched {
            self.demands.push(ClusterDemand {
                cluster: c,
                tensor: self.clusters.tensor(model, layer, c),
                active: self.active[c as usize],
            });
            self.active[c as usize] = 0;
        }
    }
}

/// A pass must match the dense model: every token carries a sorted, in-range active set for
/// every layer.
pub fn check_pass(model: &ModelGeometry, pass: &ForwardPass) -> Result<(), PolicyError> {
    if pass.tokens.is_empty() {
        return Err(PolicyError::BadPass("a forward pass has no tokens".into()));
    }
    let layers = model.layers as usize;
    for t in &pass.tokens {
        if t.neuron_offsets.len() != layers + 1
            || t.neuron_offsets.last().copied() != Some(t.neurons.len() as u32)
        {
            return Err(PolicyError::BadPass(format!(
                "token at position {} of sequence {} has no neuron activations for the {} layers of model `{}` (neuron policies need a neuron trace)",
                t.position, t.sequence, model.layers, model.name
            )));
        }
        for l in 0..layers {
            let (a, b) = (t.neuron_offsets[l], t.neuron_offsets[l + 1]);
            if a > b {
                return Err(PolicyError::BadPass(format!(
                    "token at position {} of sequence {}: layer {l}'s neuron offsets decrease",
                    t.position, t.sequence
                )));
            }
            let width = model.ffn_width(l as u32);
            if let Some(&n) = t.neurons_at(l).iter().find(|&&n| n >= width) {
                return Err(PolicyError::BadPass(format!(
                    "token at position {} of sequence {} names neuron {n} at layer {l}; model `{}` has {width}",
                    t.position, t.sequence, model.name
                )));
            }
        }
    }
    Ok(())
}
