//! MoE expert offloading: HOBBIT and the baselines it is compared with. Every policy here
//! plans with [`MoePassPlanner`](crate::policy::machinery::pass::moe::MoePassPlanner) inside
//! the [`shell::ExpertPolicy`] shell and differs only in its
//! [`ExpertSupplier`](crate::policy::machinery::pass::moe::ExpertSupplier): how each demanded
//! expert is supplied (hit, load at some precision, skip, compute elsewhere), and what it
//! prefetches and evicts.
//!
//! | file | policies |
//! | --- | --- |
//! | [`on_demand`] | `on-demand` (llama.cpp-style: no cache) |
//! | [`demand_paging`] | `lru`, `lfu`, `fifo`, `belady` (the classical demand-paging caches) |
//! | [`mixtral_offloading`] | `mixtral-offloading` (LRU + speculative next-layer loads) |
//! | [`moe_infinity`] | `moe-infinity` (activation-aware prefetch and caching) |
//! | [`llama_cpp_mmap`] | `llama-cpp-mmap` (experts through the OS page cache) |
//! | [`host_compute`] | `fiddler`, `llama-cpp-offload` (experts computed on the host CPU) |
//! | [`hobbit`] | `hobbit` (mixed-precision loads, adaptive prefetch, multidimensional cache) |

pub mod demand_paging;
pub mod hobbit;
pub mod host_compute;
pub mod llama_cpp_mmap;
pub mod mixtral_offloading;
pub mod moe_infinity;
pub mod on_demand;
pub mod shell;

use crate::policy::{PolicyContext, PolicyError};

/// Fails unless the model has MoE layers: every policy of this family offloads experts.
pub(crate) fn require_moe(ctx: &PolicyContext, policy: &str) -> Result<(), PolicyError> {
    if ctx.model.is_moe() {
        Ok(())
    } else {
        Err(PolicyError::Unsupported(format!(
            "policy `{policy}` offloads MoE experts, but model `{}` is dense",
            ctx.model.name
        )))
    }
}

/// Which precisions a baseline runs at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrecisionChoice {
    /// What the real system's code supports (each policy's doc comment cites it).
    #[default]
    Native,
    /// The experiment's `resident_precision` / `offload_precision` (an ablation: the system
    /// as if it could run at HOBBIT's precisions).
    Experiment,
}

/// Sets `ctx`'s precisions to the baseline's own (`resident`, `offload`) unless `choice`
/// asks for the experiment's. The budget stays the experiment's: the memory the system may
/// use, which it fills its own way at its own precisions.
pub(crate) fn native_precisions(
    ctx: &mut PolicyContext,
    choice: PrecisionChoice,
    resident: crate::model::Precision,
    offload: crate::model::Precision,
) {
    if choice == PrecisionChoice::Native {
        ctx.resident_precision = resident;
        ctx.offload_precision = offload;
    }
}
