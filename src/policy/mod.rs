//! Policies: what to load, at which precision, what to keep and what to evict.
//!
//! A policy sees the model, the device, the budget, the forward pass to plan and its own
//! state, and emits a [`Plan`](crate::plan::Plan). It never learns how long anything took: it
//! does not import the simulator or the executor, so the same code drives both.
//!
//! Every policy owns its cache state and must keep the memory it holds within the budget at
//! every instant of the plan it emits: it frees (Evict) before it allocates (Alloc), and the
//! Alloc depends on the Evict. The simulator checks this as it runs the plan.
//!
//! | folder | holds |
//! | --- | --- |
//! | [`moe`] | MoE expert offloading: HOBBIT and its baselines, one file per policy |
//! | [`neuron`] | neuron offloading on dense models: `on-demand`, `lru`, PowerInfer-2, PowerInfer, LLM in a Flash, llama.cpp mmap |
//! | [`confidential`] | TZ-LLM and its baselines on dense models; `tzllm-hobbit`/`tzllm-lru` wrap an MoE policy's loads through [`PolicyContext::load_ops`] |
//! | [`machinery`] | what several policies call: pass planners, caches, eviction orders, the load seam, resident set, placement, prediction, future accesses |
//!
//! `docs/adding-a-policy.md` walks through a new policy (and is compiled as a doctest).

pub mod confidential;
mod context;
pub mod machinery;
pub mod moe;
pub mod neuron;
#[cfg(test)]
pub(crate) mod test_support;

pub use context::{parse_params, Counters, MemoryUse, PolicyContext, PolicyError};
pub use machinery::cache::eviction::Eviction;
pub use machinery::future::FutureAccesses;
pub use moe::on_demand::OnDemand;

use crate::plan::PlanBuilder;
use crate::trace::ForwardPass;

/// `docs/adding-a-policy.md`, whose worked example is compiled and run as this item's doctest
/// so that the guide cannot drift from the code.
#[cfg(doctest)]
#[doc = include_str!("../../docs/adding-a-policy.md")]
pub struct AddingAPolicyGuide;

pub trait Policy {
    /// The name used on the command line and in reports.
    fn name(&self) -> &str;

    /// Emits the plan that brings the always-resident set into memory before the first pass.
    /// Its time is reported as load time, separate from prefill and decode.
    fn plan_warmup(&mut self, b: &mut PlanBuilder) -> Result<(), PolicyError>;

    /// Emits the plan of one forward pass. The pass's sequence may be new
    /// ([`ForwardPass::starts_sequence`]); policies that reset per-sequence state do it here.
    fn plan_pass(&mut self, pass: &ForwardPass, b: &mut PlanBuilder) -> Result<(), PolicyError>;

    /// Memory the policy holds once every op it has emitted has run.
    fn memory(&self) -> MemoryUse;

    fn counters(&self) -> &Counters;

    /// Whether the policy plans with the trace's future accesses (Belady's optimal eviction).
    /// Such a policy is an offline bound, not something a device could run. The driver reads
    /// the trace beforehand and calls [`Policy::give_future`] once, before the first pass; no
    /// other policy is ever given the future.
    fn needs_future(&self) -> bool {
        false
    }

    /// Hands over the trace's future accesses (see [`Policy::needs_future`]).
    fn give_future(&mut self, _future: std::sync::Arc<FutureAccesses>) {}
}

/// Every policy edgesim knows, with a one-line description (for `--help` and errors).
pub const POLICIES: &[(&str, &str)] = &[
    (
        "on-demand",
        "no cache: every expert (MoE) or active neuron cluster (dense model, neuron trace) is read when needed and dropped after use",
    ),
    (
        "lru",
        "expert (MoE) or neuron-cluster (dense model, neuron trace) cache in the budget left after the resident set, least recently used evicted",
    ),
    (
        "lfu",
        "expert cache, least frequently used evicted (counts over the run; ties to LRU)",
    ),
    ("fifo", "expert cache, the entry loaded longest ago evicted"),
    (
        "hobbit",
        "HOBBIT: mixed-precision misses (T1/T2), adaptive prefetch of predicted experts, multidimensional high/low caches",
    ),
    (
        "mixtral-offloading",
        "LRU expert cache plus speculative loading of the next layer's guessed experts (Eliseev & Mazur)",
    ),
    (
        "moe-infinity",
        "activation-aware prefetch and caching guided by per-request expert activation matrices (MoE-Infinity)",
    ),
    (
        "llama-cpp-mmap",
        "llama.cpp reading experts (MoE) or every FFN row (dense model, no sparsity) through mmap: page-granular LRU page cache, faults in readahead windows, no prefetch",
    ),
    (
        "fiddler",
        "static experts on the accelerator; any other expert computed on the CPU from host memory when that is faster than copying it (Fiddler)",
    ),
    (
        "llama-cpp-offload",
        "llama.cpp with whole layers' experts on the GPU and the rest computed on the CPU from host memory",
    ),
    (
        "llm-in-a-flash",
        "LLM in a Flash (dense model, neuron trace): predicted neurons of the last k tokens kept in DRAM (windowing), row-column bundles, parallel reads not overlapped with compute",
    ),
    (
        "powerinfer2",
        "PowerInfer-2 (dense model, neuron trace): hot/cold split from calibration, segmented neuron cache, Gate-Up-Down bundles with two-phase reads, neuron-cluster pipeline, NPU prefill and hybrid decode; every technique a switch",
    ),
    (
        "powerinfer",
        "PowerInfer v1 on flash (dense model, neuron trace): hot neurons dense on the NPU, a static placement of the most frequent cold neurons, the rest read synchronously and dropped",
    ),
    (
        "belady",
        "expert (MoE) or neuron-cluster (dense model, neuron trace) cache with Belady's optimal eviction from the trace's future: the bound for any demand-loaded cache at the same budget",
    ),
    (
        "tzllm",
        "TZ-LLM (dense, TEE): pipelined alloc/read/decrypt restoration in micro-ops under the greedy priority, partial caching, NPU co-driver",
    ),
    (
        "ree-memory",
        "TZ-LLM baseline REE-LLM-Memory: no protection, every parameter resident, NPU through the REE driver",
    ),
    (
        "ree-flash",
        "TZ-LLM baseline REE-LLM-Flash: no protection, parameters loaded per request by the pipelined restoration, malloc, no decryption",
    ),
    (
        "tee-strawman",
        "TZ-LLM baseline Strawman: TEE cold start per request (allocate all, read all, decrypt all), then CPU-only compute",
    ),
    (
        "tzllm-hobbit",
        "confidential HOBBIT: HOBBIT's plans with every expert load read encrypted and decrypted in a secure expert cache (TZ-LLM's protection)",
    ),
    (
        "tzllm-lru",
        "confidential LRU expert cache: every load read encrypted and decrypted in secure memory",
    ),
];

/// Builds the policy called `name`. On a dense model, `on-demand` and `lru` are the
/// neuron-level policies, so "on-demand vs lru" compares the same idea on any model.
pub fn build(name: &str, ctx: PolicyContext) -> Result<Box<dyn Policy>, PolicyError> {
    match name {
        "on-demand" | "lru" | "belady" if !ctx.model.is_moe() => neuron::build(name, ctx),
        "powerinfer2" | "powerinfer" => neuron::powerinfer2::build(name, ctx),
        "llm-in-a-flash" => neuron::llm_in_a_flash::build(ctx),
        "llama-cpp-mmap" if !ctx.model.is_moe() => neuron::llama_cpp_mmap::build(ctx),
        "on-demand" => Ok(Box::new(moe::on_demand::build(ctx)?)),
        "lru" => Ok(Box::new(moe::demand_paging::build(
            "lru",
            Eviction::Lru,
            ctx,
        )?)),
        "lfu" => Ok(Box::new(moe::demand_paging::build(
            "lfu",
            Eviction::Lfu,
            ctx,
        )?)),
        "fifo" => Ok(Box::new(moe::demand_paging::build(
            "fifo",
            Eviction::Fifo,
            ctx,
        )?)),
        "belady" => Ok(Box::new(moe::demand_paging::build(
            "belady",
            Eviction::Belady,
            ctx,
        )?)),
        "hobbit" => Ok(Box::new(moe::hobbit::build(ctx)?)),
        "mixtral-offloading" => Ok(Box::new(moe::mixtral_offloading::build(ctx)?)),
        "moe-infinity" => Ok(Box::new(moe::moe_infinity::build(ctx)?)),
        "llama-cpp-mmap" => Ok(Box::new(moe::llama_cpp_mmap::build(ctx)?)),
        "fiddler" => Ok(Box::new(moe::host_compute::build(
            moe::host_compute::Mode::Fiddler,
            ctx,
        )?)),
        "llama-cpp-offload" => Ok(Box::new(moe::host_compute::build(
            moe::host_compute::Mode::LlamaCpp,
            ctx,
        )?)),
        "tzllm" | "ree-memory" | "ree-flash" | "tee-strawman" | "tzllm-hobbit" | "tzllm-lru" => {
            confidential::build(name, ctx)
        }
        _ => Err(PolicyError::BadParameter(format!(
            "unknown policy `{name}`; known policies: {}",
            POLICIES.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
        ))),
    }
}
