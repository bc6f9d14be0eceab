//! Confidential inference: the model's parameters stay secret from the normal world (TZ-LLM).
//!
//! | file | holds |
//! | --- | --- |
//! | [`tzllm`] | `tzllm`: pipelined restoration, greedy priority, preemption, partial caching, the NPU co-driver — each a switch |
//! | [`baselines`] | `ree-memory`, `ree-flash`, `tee-strawman`: TZ-LLM's baselines as its artifact runs them |
//! | [`secure_loads`] | `tzllm-hobbit`, `tzllm-lru`: an MoE policy's loads through [`LoadOps`](crate::policy::machinery::load_ops::LoadOps) as secure loads |
//! | [`dense`] | the policy shell of the dense members: cached set, per-request restoration and release |
//! | [`restoration`] | one tensor's alloc → read → decrypt chain in micro-ops, with the greedy priority |
//! | [`dense_pass`] | a pass's compute: CPU attention, NPU products, co-driver world switches |
//! | [`npu_jobs`] | how many NPU jobs a product is on the RK3588 (the artifact's tiling) |
//!
//! `docs/tzllm.md` describes the family, its experiments and what the figures mean.

pub mod baselines;
pub mod dense;
pub mod dense_pass;
pub mod npu_jobs;
pub mod restoration;
pub mod secure_loads;
#[cfg(test)]
mod tests;
pub mod tzllm;

use crate::policy::context::parse_params;
use crate::policy::{Policy, PolicyContext, PolicyError};
use secure_loads::SecureLoads;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct WrapperParams {
    decrypt_threads: u16,
    switches_per_read: u16,
    /// The wrapped policy's own parameters.
    inner: serde_json::Value,
}

impl Default for WrapperParams {
    fn default() -> Self {
        WrapperParams {
            decrypt_threads: 1,
            switches_per_read: 2,
            inner: serde_json::Value::Null,
        }
    }
}

/// Builds `tzllm-<inner>`: the MoE policy `inner` with every load secure.
fn wrapped(
    name: &str,
    inner: &str,
    mut ctx: PolicyContext,
) -> Result<Box<dyn Policy>, PolicyError> {
    if !ctx.model.is_moe() {
        return Err(PolicyError::Unsupported(format!(
            "policy `{name}` offloads experts under TZ-LLM's protection; model `{}` is dense (use `tzllm`)",
            ctx.model.name
        )));
    }
    if ctx.device.tee.is_none() {
        return Err(PolicyError::Unsupported(format!(
            "policy `{name}` runs in a TEE, but device `{}` has no `tee` section",
            ctx.device.name
        )));
    }
    let p: WrapperParams = parse_params(name, &ctx.params)?;
    if p.decrypt_threads == 0 {
        return Err(PolicyError::BadParameter(format!(
            "{name}: decrypt_threads must be at least 1"
        )));
    }
    ctx.load_ops = Arc::new(SecureLoads {
        decrypt_threads: p.decrypt_threads,
        switches_per_read: p.switches_per_read,
    });
    ctx.params = p.inner;
    let policy = crate::policy::build(inner, ctx)?;
    Ok(Box::new(Renamed {
        name: name.to_string(),
        inner: policy,
    }))
}

/// A wrapped policy under its own name.
struct Renamed {
    name: String,
    inner: Box<dyn Policy>,
}

impl Policy for Renamed {
    fn name(&self) -> &str {
        &self.name
    }
    fn plan_warmup(&mut self, b: &mut crate::plan::PlanBuilder) -> Result<(), PolicyError> {
        self.inner.plan_warmup(b)
    }
    fn plan_pass(
        &mut self,
        pass: &crate::trace::ForwardPass,
        b: &mut crate::plan::PlanBuilder,
    ) -> Result<(), PolicyError> {
        self.inner.plan_pass(pass, b)
    }
    fn memory(&self) -> crate::policy::MemoryUse {
        self.inner.memory()
    }
    fn counters(&self) -> &crate::policy::Counters {
        self.inner.counters()
    }
    fn needs_future(&self) -> bool {
        self.inner.needs_future()
    }
    fn give_future(&mut self, future: Arc<crate::policy::FutureAccesses>) {
        self.inner.give_future(future)
    }
}

/// Whether `name` is one of the family's dense policies (the ones whose prefill restores
/// parameters, so that a report shows where the time went).
pub fn is_dense_member(name: &str) -> bool {
    matches!(name, "tzllm" | "ree-memory" | "ree-flash" | "tee-strawman")
}

/// The family's policies (see the table above).
pub fn build(name: &str, ctx: PolicyContext) -> Result<Box<dyn Policy>, PolicyError> {
    match name {
        "tzllm" => Ok(Box::new(tzllm::build(ctx)?)),
        "ree-memory" | "ree-flash" | "tee-strawman" => Ok(Box::new(baselines::build(name, ctx)?)),
        "tzllm-hobbit" => wrapped(name, "hobbit", ctx),
        "tzllm-lru" => wrapped(name, "lru", ctx),
        other => Err(PolicyError::BadParameter(format!(
            "`{other}` is not a confidential policy"
        ))),
    }
}
