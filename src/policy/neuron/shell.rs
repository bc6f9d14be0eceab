//! The [`Policy`] shell every neuron-level policy plans in: the resident set without dense
//! FFNs, the [`NeuronPassPlanner`], and the policy's own [`ClusterSupplier`].

use crate::model::{ModelGeometry, Precision};
use crate::plan::PlanBuilder;
use crate::policy::context::{Counters, MemoryUse, PolicyContext, PolicyError};
use crate::policy::machinery::pass::neuron::{
    ClusterDemand, ClusterSupplier, Clusters, NeuronPassPlanner,
};
use crate::policy::machinery::pass::resident_ops::ResidentOps;
use crate::policy::machinery::placement::Placement;
use crate::policy::machinery::resident::{ResidentSet, BULK_REQUEST_BYTES};
use crate::policy::Policy;
use crate::trace::ForwardPass;

/// What a neuron policy's supplier adds to [`ClusterSupplier`].
pub trait NeuronState: ClusterSupplier {
    fn cache_bytes(&self) -> u64;
    fn counters_ref(&self) -> &Counters;
    /// An offline supplier (`belady`) reads the trace's future.
    fn needs_future(&self) -> bool {
        false
    }
    fn give_future(&mut self, _future: std::sync::Arc<crate::policy::FutureAccesses>) {}
}

/// The [`Policy`] shell: the resident set without dense FFNs, the planner, and a supplier.
pub struct NeuronPolicy<S: NeuronState> {
    name: &'static str,
    ctx: PolicyContext,
    resident: ResidentSet,
    planner: NeuronPassPlanner,
    state: S,
}

impl<S: NeuronState> NeuronPolicy<S> {
    pub fn new(
        name: &'static str,
        ctx: PolicyContext,
        resident: ResidentSet,
        clusters: Clusters,
        state: S,
    ) -> Self {
        // Cluster computes are small matrix-vector products on weights just read into host
        // memory: they run on the CPU, like the mixer whose output they consume.
        let unit = Placement::new(&ctx.device).cpu();
        NeuronPolicy {
            name,
            planner: NeuronPassPlanner::new(clusters, unit, ctx.offload_precision),
            resident,
            ctx,
            state,
        }
    }
}

impl<S: NeuronState> Policy for NeuronPolicy<S> {
    fn name(&self) -> &str {
        self.name
    }

    fn plan_warmup(&mut self, b: &mut PlanBuilder) -> Result<(), PolicyError> {
        self.resident.plan_warmup(b);
        Ok(())
    }

    fn plan_pass(&mut self, pass: &ForwardPass, b: &mut PlanBuilder) -> Result<(), PolicyError> {
        let ops = ResidentOps {
            model: &self.ctx.model,
            precision: self.ctx.resident_precision,
        };
        self.planner
            .plan(&self.ctx.model, &ops, pass, &mut self.state, b)
    }

    fn memory(&self) -> MemoryUse {
        MemoryUse {
            resident_bytes: self.resident.bytes(),
            cache_bytes: self.state.cache_bytes(),
        }
    }

    fn counters(&self) -> &Counters {
        self.state.counters_ref()
    }

    fn needs_future(&self) -> bool {
        self.state.needs_future()
    }

    fn give_future(&mut self, future: std::sync::Arc<crate::policy::FutureAccesses>) {
        self.state.give_future(future)
    }
}

pub fn cluster_bytes(model: &ModelGeometry, d: &ClusterDemand, precision: Precision) -> u64 {
    model.bytes(d.tensor.layer as u32, d.tensor.kind, precision)
}

/// Whole cluster in one request: a cluster is contiguous in the weight store.
pub fn request_bytes(bytes: u64) -> u32 {
    bytes.min(BULK_REQUEST_BYTES as u64).max(1) as u32
}
