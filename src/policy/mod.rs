//! Policies: what to load, at which precision, what to keep and what to evict.
//!
//! A policy sees the model, the device, the budget, the forward pass to plan and its own
//! state, and emits a [`Plan`](crate::plan::Plan). It never learns how long anything took: it
//! does not import the simulator or the executor, so the same code drives both.
//!
//! Every policy owns its cache state and must keep the memory it holds within the budget at
//! every instant of the plan it emits: it frees (Evict) before it allocates (Alloc), and the
//! Alloc depends on the Evict. The simulator checks this as it runs the plan.

mod context;
pub mod expert_cache;
pub mod layer_ops;
mod lru;
pub mod moe_pass;
mod on_demand;
pub mod placement;
pub mod resident;

pub use context::{Counters, MemoryUse, PolicyContext, PolicyError};
pub use lru::Lru;
pub use on_demand::OnDemand;

use crate::plan::PlanBuilder;
use crate::trace::ForwardPass;

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
}

/// Every policy edgesim knows, with a one-line description (for `--help` and errors).
pub const POLICIES: &[(&str, &str)] = &[
    (
        "on-demand",
        "no expert cache: every expert is read when the router picks it and dropped after use",
    ),
    (
        "lru",
        "expert cache in the budget left after the resident set, least recently used evicted",
    ),
];

/// Builds the policy called `name`.
pub fn build(name: &str, ctx: PolicyContext) -> Result<Box<dyn Policy>, PolicyError> {
    match name {
        "on-demand" => Ok(Box::new(OnDemand::new(ctx)?)),
        "lru" => Ok(Box::new(Lru::new(ctx)?)),
        _ => Err(PolicyError::BadParameter(format!(
            "unknown policy `{name}`; known policies: {}",
            POLICIES.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
        ))),
    }
}

fn require_moe(ctx: &PolicyContext, policy: &str) -> Result<(), PolicyError> {
    if ctx.model.is_moe() {
        Ok(())
    } else {
        Err(PolicyError::Unsupported(format!(
            "policy `{policy}` offloads MoE experts, but model `{}` is dense",
            ctx.model.name
        )))
    }
}
