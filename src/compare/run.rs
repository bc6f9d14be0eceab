//! One run: a policy at a budget on a workload, replayed on the simulator; and the future
//! accesses an offline policy (Belady) is given beforehand, read from the very passes the
//! replay will plan.

use super::prepare::{Prepared, RunSpec, TraceInput};
use crate::backend::Backend;
use crate::policy::FutureAccesses;
use crate::replay::{replay, ReplayOptions, ReplayOutcome};
use crate::report::RunSummary;
use crate::scenario::experiment::policy_context;
use crate::sim::Simulator;
use crate::trace::{ForwardPass, PassGrouper};
use std::sync::Arc;

/// One finished run.
pub struct RunResult {
    pub spec: RunSpec,
    pub outcome: ReplayOutcome,
    pub summary: RunSummary,
    pub resources: Vec<crate::backend::ResourceInfo>,
}

/// Runs one policy at one budget on the simulator.
pub fn run_one(p: &Prepared, spec: &RunSpec, options: &ReplayOptions) -> Result<RunResult, String> {
    let ctx = policy_context(
        p.model.clone(),
        p.device.clone(),
        &p.experiment,
        spec.budget_bytes,
        p.max_context,
        spec.params.clone(),
    );
    let workload = &p.workloads[spec.workload];
    let what = if workload.label.is_empty() {
        format!("policy `{}` at budget {}", spec.label, spec.budget_label)
    } else {
        format!(
            "policy `{}` at budget {} on workload {}",
            spec.label, spec.budget_label, workload.label
        )
    };
    let mut policy = crate::policy::build(&spec.policy, ctx).map_err(|e| format!("{what}: {e}"))?;
    let mut sim =
        Simulator::new(&p.device, spec.budget_bytes).map_err(|e| format!("{what}: {e}"))?;
    let chunk = p.prefill_chunk();
    if policy.needs_future() {
        let future =
            future_of(p, &workload.trace, chunk, None).map_err(|e| format!("{what}: {e}"))?;
        policy.give_future(Arc::new(future));
    }
    let reader = workload.trace.open().map_err(|e| e.to_string())?;
    let mut grouper = PassGrouper::new(reader, chunk as usize);
    let outcome = replay(
        policy.as_mut(),
        &mut sim,
        spec.budget_bytes,
        &mut grouper,
        options,
    )
    .map_err(|e| format!("{what}: {e}"))?;
    let summary = RunSummary::from_outcome(&outcome);
    Ok(RunResult {
        spec: spec.clone(),
        resources: sim.resources().to_vec(),
        outcome,
        summary,
    })
}

/// Reads `trace` once, grouped exactly as the replay will group it (and cut after `max_passes`
/// as the replay will be), into the index of future accesses that offline policies plan with.
pub fn future_of(
    p: &Prepared,
    trace: &TraceInput,
    chunk: u32,
    max_passes: Option<usize>,
) -> Result<FutureAccesses, String> {
    let reader = trace.open().map_err(|e| e.to_string())?;
    let mut grouper = PassGrouper::new(reader, chunk as usize);
    let mut future = FutureAccesses::new(&p.model);
    let mut pass = ForwardPass::default();
    let mut left = max_passes.unwrap_or(usize::MAX);
    while left > 0
        && grouper
            .next_pass_into(&mut pass)
            .map_err(|e| e.to_string())?
    {
        left -= 1;
        future.push_pass(&pass);
    }
    Ok(future)
}
