//! The backend side of the contract: something that runs plans and says when each op ran.
//!
//! The simulator prices ops from a device profile; the executor performs them and measures.
//! Both return a [`StepResult`] of the same shape, which is what lets `validate` put a
//! prediction beside a measurement op for op. Which resource an op occupies, and how many of
//! its servers, is part of the contract too ([`resources`]): both backends schedule on the same
//! resources by the same names, and neither imports the other.

pub mod resources;

use crate::plan::{OpId, Plan};
use crate::units::Nanos;
use serde::Serialize;

/// A resource an op ran on, as an index into the backend's [`ResourceInfo`] list.
pub type ResourceId = u16;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResourceInfo {
    /// e.g. "flash", "link", "cpu.big", "accel", "tee".
    pub name: String,
    /// Ops it can run at once (channels, cores, NPU cores).
    pub servers: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct OpTiming {
    pub id: OpId,
    pub resource: Option<ResourceId>,
    pub start: Nanos,
    pub end: Nanos,
}

/// When one plan's ops ran.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StepResult {
    /// When the pass was released (the previous pass's output was ready).
    pub start: Nanos,
    /// When the plan's output op ended.
    pub output_ready: Nanos,
    /// Timings of the ops that finished while this plan ran, in the order they finished: ops
    /// of this plan upstream of the output, and ops of earlier plans (prefetches) that finished
    /// meanwhile. Ops of this plan still running at the output are reported by a later step
    /// (the simulator's `drain` reports the rest at the end), so every op is reported once.
    pub ops: Vec<OpTiming>,
}

impl StepResult {
    pub fn latency(&self) -> Nanos {
        self.output_ready - self.start
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum BackendError {
    /// The plan asks for something the backend cannot do (e.g. an accelerator the device lacks).
    Unsupported(String),
    /// The plan would hold more memory than the budget at some instant.
    BudgetExceeded {
        at: Nanos,
        used: u64,
        budget: u64,
        op: OpId,
    },
    /// The plan is malformed (dependency on an unknown op).
    BadPlan(String),
    Io(String),
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendError::Unsupported(m) => write!(f, "unsupported op: {m}"),
            BackendError::BudgetExceeded {
                at,
                used,
                budget,
                op,
            } => write!(
                f,
                "memory budget exceeded at {at} by op {op}: {used} bytes in use, budget {budget}"
            ),
            BackendError::BadPlan(m) => write!(f, "bad plan: {m}"),
            BackendError::Io(m) => write!(f, "I/O error: {m}"),
        }
    }
}

impl std::error::Error for BackendError {}

pub trait Backend {
    /// The resources op timings refer to.
    fn resources(&self) -> &[ResourceInfo];

    /// Runs `plan`, released no earlier than the previous plan's output. Ops of earlier plans
    /// may still be running (prefetches); the plan may depend on them.
    fn run(&mut self, plan: &Plan) -> Result<StepResult, BackendError>;

    /// [`Backend::run`] into `step`, whose buffers the backend may reuse (the simulator swaps
    /// its op-timing buffer with `step.ops`, so a replay allocates none per pass). On an error
    /// `step` is unspecified.
    fn run_into(&mut self, plan: &Plan, step: &mut StepResult) -> Result<(), BackendError> {
        *step = self.run(plan)?;
        Ok(())
    }
}
