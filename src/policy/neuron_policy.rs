//! `on-demand` and `lru` for dense models: the same two policies as for experts, one level
//! down. A dense model's FFN neurons are offloaded in clusters of `cluster_neurons` consecutive
//! neurons; a pass loads the clusters holding a neuron some token activates (the trace's active
//! sets stand for a predictor that runs once the layer's input exists).
//!
//! - `on-demand`: no cache. The budget beyond the resident set is a staging area: every demanded
//!   cluster is read and dropped right after its compute; when the area is full a load waits
//!   for earlier drops.
//! - `lru`: the budget beyond the resident set caches clusters; a miss evicts the least recently
//!   used clusters the current layer does not need (see [`super::neuron_cache`] for what happens
//!   when one layer's demand does not fit).
//!
//! Parameters: `{"cluster_neurons": N}` (default 1). Both need the resident set plus the
//! largest cluster.

use super::context::{Counters, MemoryUse, PolicyContext, PolicyError};
use super::expert_cache::ExpertCache;
use super::expert_policy::parse_params;
use super::layer_ops::ResidentOps;
use super::neuron_cache::ClusterLru;
use super::neuron_pass::{
    ClusterDemand, ClusterSupplier, Clusters, NeuronLayerCx, NeuronPassPlanner,
};
use super::placement::Placement;
use super::resident::{ResidentSet, BULK_REQUEST_BYTES};
use super::Policy;
use crate::model::{ModelGeometry, Precision};
use crate::plan::{OpId, PlanBuilder};
use crate::trace::ForwardPass;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct NeuronParams {
    /// Consecutive neurons loaded as one unit. One neuron is PowerInfer's granularity; larger
    /// clusters trade read efficiency (fewer, larger requests) for bytes of inactive neurons.
    cluster_neurons: u32,
}

impl Default for NeuronParams {
    fn default() -> Self {
        NeuronParams { cluster_neurons: 1 }
    }
}

/// Builds the neuron-level `on-demand` or `lru` for a dense model.
pub fn build(name: &str, ctx: PolicyContext) -> Result<Box<dyn Policy>, PolicyError> {
    let params: NeuronParams = parse_params(name, &ctx.params)?;
    let clusters = Clusters::new(params.cluster_neurons).map_err(|_| {
        PolicyError::BadParameter(format!(
            "policy `{name}`: `cluster_neurons` must be at least 1"
        ))
    })?;
    let resident = ResidentSet::new(&ctx, false);
    let precision = ctx.offload_precision;
    let largest = clusters.largest_bytes(&ctx.model, precision);
    resident.check_budget(&ctx, largest, "the resident set plus one neuron cluster")?;
    let capacity = ctx.budget_bytes - resident.bytes();
    let model = ctx.model.clone();
    match name {
        "on-demand" => Ok(Box::new(NeuronPolicy::new(
            "on-demand",
            ctx,
            resident,
            clusters,
            Staging {
                area: ExpertCache::new(capacity),
                model,
                precision,
                counters: Counters::default(),
            },
        ))),
        "lru" => Ok(Box::new(NeuronPolicy::new(
            "lru",
            ctx,
            resident,
            clusters,
            LruClusters {
                cache: ClusterLru::new(capacity),
                model,
                precision,
                counters: Counters::default(),
            },
        ))),
        _ => Err(PolicyError::Unsupported(format!(
            "policy `{name}` has no neuron-level version for dense model `{}`",
            ctx.model.name
        ))),
    }
}

/// What a neuron policy's supplier adds to [`ClusterSupplier`].
trait NeuronState: ClusterSupplier {
    fn cache_bytes(&self) -> u64;
    fn counters_ref(&self) -> &Counters;
}

/// The [`Policy`] shell: the resident set without dense FFNs, the planner, and a supplier.
struct NeuronPolicy<S: NeuronState> {
    name: &'static str,
    ctx: PolicyContext,
    resident: ResidentSet,
    planner: NeuronPassPlanner,
    state: S,
}

impl<S: NeuronState> NeuronPolicy<S> {
    fn new(
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
}

fn cluster_bytes(model: &ModelGeometry, d: &ClusterDemand, precision: Precision) -> u64 {
    model.bytes(d.tensor.layer as u32, d.tensor.kind, precision)
}

/// Whole cluster in one request: a cluster is contiguous in the weight store.
fn request_bytes(bytes: u64) -> u32 {
    bytes.min(BULK_REQUEST_BYTES as u64).max(1) as u32
}

/// `on-demand`: every demanded cluster is staged, computed and dropped.
struct Staging {
    area: ExpertCache,
    model: Arc<ModelGeometry>,
    precision: Precision,
    counters: Counters,
}

impl ClusterSupplier for Staging {
    fn supply(
        &mut self,
        cx: &mut NeuronLayerCx<'_>,
        d: &ClusterDemand,
    ) -> Result<OpId, PolicyError> {
        self.counters.misses += 1;
        let bytes = cluster_bytes(&self.model, d, self.precision);
        // Every staged cluster is dropped as soon as its compute is planned, so the area's
        // accounting is empty here; the Alloc waits for the drops whose memory it takes, which
        // is what bounds the loads in flight.
        Ok(self.area.load(
            d.tensor,
            self.precision,
            bytes,
            request_bytes(bytes),
            &[],
            &[cx.mixer],
            false,
            cx.builder,
        ))
    }

    fn computed(&mut self, cx: &mut NeuronLayerCx<'_>, d: &ClusterDemand, op: OpId) {
        self.area.record_use(&d.tensor, op);
        self.area.evict(d.tensor, cx.builder);
        self.counters.evictions += 1;
    }

    fn counters(&mut self) -> &mut Counters {
        &mut self.counters
    }
}

impl NeuronState for Staging {
    fn cache_bytes(&self) -> u64 {
        self.area.used_bytes()
    }

    fn counters_ref(&self) -> &Counters {
        &self.counters
    }
}

/// `lru`: a cache of clusters, least recently used evicted first.
struct LruClusters {
    cache: ClusterLru,
    model: Arc<ModelGeometry>,
    precision: Precision,
    counters: Counters,
}

impl ClusterSupplier for LruClusters {
    fn begin_layer(&mut self, _cx: &mut NeuronLayerCx<'_>, demands: &[ClusterDemand]) {
        self.cache.pin(demands.iter().map(|d| d.tensor));
    }

    fn supply(
        &mut self,
        cx: &mut NeuronLayerCx<'_>,
        d: &ClusterDemand,
    ) -> Result<OpId, PolicyError> {
        if let Some(ready) = self.cache.ready(&d.tensor) {
            self.counters.hits += 1;
            return Ok(ready);
        }
        self.counters.misses += 1;
        let bytes = cluster_bytes(&self.model, d, self.precision);
        self.counters.evictions += self.cache.make_room(bytes, cx.builder)?;
        Ok(self.cache.load(
            d.tensor,
            self.precision,
            bytes,
            request_bytes(bytes),
            &[cx.mixer],
            cx.builder,
        ))
    }

    fn computed(&mut self, _cx: &mut NeuronLayerCx<'_>, d: &ClusterDemand, op: OpId) {
        self.cache.used(d.tensor, op);
    }

    fn counters(&mut self) -> &mut Counters {
        &mut self.counters
    }
}

impl NeuronState for LruClusters {
    fn cache_bytes(&self) -> u64 {
        self.cache.used_bytes()
    }

    fn counters_ref(&self) -> &Counters {
        &self.counters
    }
}
