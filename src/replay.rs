//! The replay loop: forward passes in, plans through a backend, per-pass outcomes out.
//!
//! This is the one place where a policy meets a backend. It owns the op-id counter (ids run on
//! across plans so a plan can depend on an earlier plan's prefetch) and checks, after every
//! pass, that the policy's own accounting stays within its budget.
//!
//! A replay's memory does not grow with the trace: per-pass outcomes are summed into
//! [`PassStats`] as they happen and kept one by one only when [`ReplayOptions::keep_passes`]
//! asks for them (validation compares passes one by one; a comparison needs only the
//! summary). The plan buffers and the backend's step buffer are reused from pass to pass, so
//! once they have grown to the largest pass the loop allocates nothing of its own.

mod breakdown;
mod exact_percentiles;
mod pass_stats;

pub use breakdown::Breakdown;
pub use exact_percentiles::ExactPercentiles;
pub use pass_stats::PassStats;

use crate::backend::{Backend, BackendError, OpTiming, StepResult};
use crate::plan::{Op, Plan, PlanBuilder, PlanError};
use crate::policy::{Counters, Policy, PolicyError};
use crate::trace::{ForwardPass, PassGrouper, Phase, TokenSource};
use crate::units::Nanos;
use serde::Serialize;
use std::fmt;

/// What happened in one forward pass.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PassRecord {
    pub sequence: u32,
    pub phase: Phase,
    /// Tokens in the pass (1 for decode).
    pub tokens: u32,
    /// Position of the pass's first token in its sequence.
    pub position: u32,
    pub start: Nanos,
    pub latency: Nanos,
    /// Sum of the durations of the pass's compute ops.
    pub compute: Nanos,
    /// Bytes the pass's plan reads (on-demand loads and prefetches it issues).
    pub bytes_read: u64,
    pub ops: u32,
}

impl PassRecord {
    /// Time the pass waited on anything but compute (loads, switches): latency - compute.
    pub fn stall(&self) -> Nanos {
        self.latency - self.compute.min(self.latency)
    }
}

/// One op's timing with enough context to draw it on a timeline.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimelineEntry {
    pub timing: OpTiming,
    pub kind: &'static str,
    pub label: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ReplayOutcome {
    pub policy: String,
    /// Time to load the resident set before the first pass.
    pub warmup: Nanos,
    /// Every pass's record, in order, when [`ReplayOptions::keep_passes`] was set; else empty.
    pub passes: Vec<PassRecord>,
    /// Totals over every pass (kept whether or not the records are). A caller that rewrites
    /// `passes` recomputes them with [`PassStats::of`].
    #[serde(skip)]
    pub stats: PassStats,
    pub counters: Counters,
    /// Largest memory the policy held after any pass.
    pub peak_policy_memory: u64,
    pub ops_total: u64,
    /// Simulated (or measured) time at which the last pass's output was ready.
    pub end: Nanos,
    /// Op timings, when requested, up to the requested count.
    pub timeline: Vec<TimelineEntry>,
    /// Where the prefill passes' time went, when requested.
    #[serde(skip)]
    pub prefill_breakdown: Option<Breakdown>,
}

#[derive(Clone, Debug, Default)]
pub struct ReplayOptions {
    /// Keep at most this many op timings for a timeline (0: none).
    pub timeline_ops: usize,
    /// Keep every pass's [`PassRecord`] in [`ReplayOutcome::passes`] (memory grows with the
    /// trace); without it only [`ReplayOutcome::stats`] is kept.
    pub keep_passes: bool,
    /// Sum the prefill passes' time by kind of work ([`Breakdown`]).
    pub breakdown: bool,
}

#[derive(Debug)]
pub enum ReplayError {
    Policy(PolicyError),
    Backend(BackendError),
    Plan(PlanError),
    /// The pass source failed (a malformed trace).
    Source(String),
    /// The policy's own accounting exceeds its budget after a pass.
    OverBudget {
        pass: usize,
        held: u64,
        budget: u64,
    },
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayError::Policy(e) => write!(f, "{e}"),
            ReplayError::Backend(e) => write!(f, "{e}"),
            ReplayError::Plan(e) => write!(f, "policy emitted a bad plan: {e}"),
            ReplayError::Source(e) => write!(f, "{e}"),
            ReplayError::OverBudget { pass, held, budget } => write!(
                f,
                "policy holds {held} bytes after pass {pass}, over its budget of {budget} bytes"
            ),
        }
    }
}

impl std::error::Error for ReplayError {}

impl From<PolicyError> for ReplayError {
    fn from(e: PolicyError) -> Self {
        ReplayError::Policy(e)
    }
}
impl From<BackendError> for ReplayError {
    fn from(e: BackendError) -> Self {
        ReplayError::Backend(e)
    }
}
impl From<PlanError> for ReplayError {
    fn from(e: PlanError) -> Self {
        ReplayError::Plan(e)
    }
}

/// Where forward passes come from: a trace through a [`PassGrouper`], or passes in memory.
pub trait PassSource {
    /// Overwrites `pass` with the next pass (reusing its buffers); `Ok(false)` at the end.
    fn next_pass(&mut self, pass: &mut ForwardPass) -> Result<bool, String>;
}

impl<S: TokenSource> PassSource for PassGrouper<S> {
    fn next_pass(&mut self, pass: &mut ForwardPass) -> Result<bool, String> {
        self.next_pass_into(pass).map_err(|e| e.to_string())
    }
}

/// Passes held in memory (tests, small experiments).
pub struct PassList<I>(pub I);

impl<I: Iterator<Item = ForwardPass>> PassSource for PassList<I> {
    fn next_pass(&mut self, pass: &mut ForwardPass) -> Result<bool, String> {
        match self.0.next() {
            Some(p) => {
                *pass = p;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// Replays the passes of `source` through `policy` on `backend`.
pub fn replay<B>(
    policy: &mut dyn Policy,
    backend: &mut B,
    budget_bytes: u64,
    source: &mut dyn PassSource,
    options: &ReplayOptions,
) -> Result<ReplayOutcome, ReplayError>
where
    B: Backend + ?Sized,
{
    let mut out = ReplayOutcome {
        policy: policy.name().to_string(),
        ..ReplayOutcome::default()
    };
    let mut b = PlanBuilder::new(0);
    policy.plan_warmup(&mut b)?;
    let warmup = b.finish()?;
    let mut next_id = warmup.end_id();
    let mut step = StepResult::default();
    backend.run_into(&warmup, &mut step)?;
    out.warmup = step.output_ready;
    out.ops_total += warmup.len() as u64;
    keep_timeline(&mut out.timeline, &warmup, &step.ops, options);

    // The last pass's plan, whose buffers the next one is built in.
    let mut spare = warmup;
    let mut pass = ForwardPass::default();
    let mut i = 0usize;
    while source.next_pass(&mut pass).map_err(ReplayError::Source)? {
        i += 1;
        let mut b = PlanBuilder::reusing(std::mem::take(&mut spare), next_id);
        policy.plan_pass(&pass, &mut b)?;
        let plan = b.finish()?;
        next_id = plan.end_id();
        backend.run_into(&plan, &mut step)?;
        let held = policy.memory().total();
        if held > budget_bytes {
            return Err(ReplayError::OverBudget {
                pass: i - 1,
                held,
                budget: budget_bytes,
            });
        }
        out.peak_policy_memory = out.peak_policy_memory.max(held);
        out.ops_total += plan.len() as u64;
        let record = PassRecord {
            sequence: pass.sequence,
            phase: pass.phase,
            tokens: pass.batch(),
            position: pass.context_before(),
            start: step.start,
            latency: step.latency(),
            compute: compute_time(&plan, &step.ops),
            bytes_read: bytes_read(&plan),
            ops: plan.len() as u32,
        };
        out.stats.add(&record);
        if options.keep_passes {
            out.passes.push(record);
        }
        out.end = step.output_ready;
        if options.breakdown && pass.phase == Phase::Prefill {
            out.prefill_breakdown
                .get_or_insert_with(Breakdown::default)
                .add(&plan, &step.ops, step.latency().0);
        }
        keep_timeline(&mut out.timeline, &plan, &step.ops, options);
        spare = plan;
    }
    out.counters = policy.counters().clone();
    Ok(out)
}

fn bytes_read(plan: &Plan) -> u64 {
    plan.nodes()
        .iter()
        .map(|n| match n.op {
            Op::Read { bytes, .. } => bytes,
            _ => 0,
        })
        .sum()
}

fn compute_time(plan: &Plan, timings: &[OpTiming]) -> Nanos {
    timings
        .iter()
        .filter_map(|t| plan.get(t.id).map(|n| (n, t)))
        .filter(|(n, _)| matches!(n.op, Op::Compute { .. }))
        .map(|(_, t)| t.end - t.start)
        .fold(Nanos::ZERO, |a, d| a + d)
}

fn keep_timeline(
    into: &mut Vec<TimelineEntry>,
    plan: &Plan,
    timings: &[OpTiming],
    options: &ReplayOptions,
) {
    if into.len() >= options.timeline_ops {
        return;
    }
    for t in timings {
        if into.len() >= options.timeline_ops {
            return;
        }
        // Ops of earlier plans that finished now are labelled by kind only.
        let (kind, label) = match plan.get(t.id) {
            Some(n) => (
                n.op.kind_name(),
                n.op.tensor()
                    .map_or_else(|| n.op.kind_name().to_string(), |x| x.to_string()),
            ),
            None => ("earlier", format!("op {}", t.id)),
        };
        into.push(TimelineEntry {
            timing: *t,
            kind,
            label,
        });
    }
}
