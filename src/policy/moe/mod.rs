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
