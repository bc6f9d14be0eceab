//! `on-demand` and `lru` for dense models: the same two policies as for experts, one level
//! down. A dense model's FFN neurons are offloaded in clusters of `cluster_neurons` consecutive
//! neurons; a pass loads the clusters holding a neuron some token activates (the trace's active
//! sets stand for a predictor that runs once the layer's input exists).
//!
//! - `on-demand`: no cache. The budget beyond the resident set is a staging area: every demanded
//!   cluster is read and dropped right after its compute; when the area is full a load waits
//!   for earlier drops.
//! - `lru`: the budget beyond the resident set caches clusters; a miss evicts the least recently
//!   used clusters the current layer does not need (see [`crate::policy::machinery::cache::cluster_lru`] for what happens
//!   when one layer's demand does not fit).
//!
//! - `belady`: the same cache evicting the cluster used farthest in the future (the ceiling).
//!
//! Parameters: `{"cluster_neurons": N}` (default 1). All need the resident set plus the
//! largest cluster.

//!
//! | file | holds |
//! | --- | --- |
//! | [`on_demand`] | `on-demand`: the staging area |
//! | [`lru`] | `lru`: the cluster cache |
//! | [`belady`] | `belady`: the cluster cache with Belady's eviction from the trace's future (the ceiling) |
//! | [`shell`] | the [`Policy`] shell both plan in: resident set, planner, supplier |
//! | [`powerinfer2`] | `powerinfer2` and `powerinfer` (v1): its own pass plan (`docs/powerinfer2.md`) |
//! | [`llm_in_a_flash`] | `llm-in-a-flash`: windowing, row-column bundling, no I/O-compute overlap |
//! | [`llama_cpp_mmap`] | `llama-cpp-mmap` on a dense model: every FFN row through mmap faults |

pub mod belady;
pub mod llama_cpp_mmap;
pub mod llm_in_a_flash;
pub mod lru;
pub mod on_demand;
pub mod powerinfer2;
pub mod shell;
#[cfg(test)]
mod tests;

use crate::policy::context::parse_params;
use crate::policy::machinery::pass::neuron::Clusters;
use crate::policy::machinery::resident::ResidentSet;
use crate::policy::{Policy, PolicyContext, PolicyError};
use lru::LruClusters;
use on_demand::Staging;
use serde::Deserialize;
use shell::NeuronPolicy;

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

/// The neuron-family policies that only plan dense models (they refuse MoE models); `on-demand`,
/// `lru` and `llama-cpp-mmap` plan both, at neuron level on a dense model.
pub const DENSE_ONLY: &[&str] = &["powerinfer2", "powerinfer", "llm-in-a-flash"];

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
    match name {
        "on-demand" => {
            let staging = Staging::new(&ctx, capacity);
            Ok(Box::new(NeuronPolicy::new(
                "on-demand",
                ctx,
                resident,
                clusters,
                staging,
            )))
        }
        "lru" => {
            let cache = LruClusters::new(&ctx, capacity);
            Ok(Box::new(NeuronPolicy::new(
                "lru", ctx, resident, clusters, cache,
            )))
        }
        "belady" => {
            let cache = belady::BeladyClusters::new(&ctx, capacity);
            Ok(Box::new(NeuronPolicy::new(
                "belady", ctx, resident, clusters, cache,
            )))
        }
        _ => Err(PolicyError::Unsupported(format!(
            "policy `{name}` has no neuron-level version for dense model `{}`",
            ctx.model.name
        ))),
    }
}
