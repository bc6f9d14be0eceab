//! A [`Backend`] wrapper that remembers what every op was and when it ran, so a run's time can
//! be broken down by op class and resource after the fact.

use crate::backend::{Backend, BackendError, OpTiming, ResourceInfo, StepResult};
use crate::model::TensorKind;
use crate::plan::{Op, OpId, Plan, Unit};
use serde::Serialize;
use std::collections::BTreeMap;

/// What an op was, coarsely: the classes the breakdown reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpClass {
    ReadExpert,
    ReadResident,
    ComputeAttention,
    ComputeRouter,
    ComputeExpert,
    ComputeDenseFfn,
    ComputeLmHead,
    ComputeAccel,
    Decrypt,
    Alloc,
    Evict,
    Join,
    WorldSwitch,
    Other,
}

impl OpClass {
    pub fn of(op: &Op) -> OpClass {
        match *op {
            Op::Read { tensor, .. } => match tensor.kind {
                TensorKind::Expert(_) | TensorKind::Neurons { .. } => OpClass::ReadExpert,
                _ => OpClass::ReadResident,
            },
            Op::Compute {
                unit: Unit::Accel, ..
            } => OpClass::ComputeAccel,
            Op::Compute { tensor, .. } => match tensor.kind {
                TensorKind::Attention => OpClass::ComputeAttention,
                TensorKind::Router => OpClass::ComputeRouter,
                TensorKind::Expert(_) | TensorKind::Neurons { .. } => OpClass::ComputeExpert,
                TensorKind::DenseFfn => OpClass::ComputeDenseFfn,
                TensorKind::LmHead | TensorKind::Embedding => OpClass::ComputeLmHead,
                _ => OpClass::Other,
            },
            Op::Decrypt { .. } => OpClass::Decrypt,
            Op::Alloc { .. } => OpClass::Alloc,
            Op::Evict { .. } => OpClass::Evict,
            Op::Join => OpClass::Join,
            Op::WorldSwitch { .. } | Op::NpuHandover { .. } => OpClass::WorldSwitch,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            OpClass::ReadExpert => "read_expert",
            OpClass::ReadResident => "read_resident",
            OpClass::ComputeAttention => "compute_attention",
            OpClass::ComputeRouter => "compute_router",
            OpClass::ComputeExpert => "compute_expert",
            OpClass::ComputeDenseFfn => "compute_dense_ffn",
            OpClass::ComputeLmHead => "compute_lm_head",
            OpClass::ComputeAccel => "compute_accel",
            OpClass::Decrypt => "decrypt",
            OpClass::Alloc => "alloc",
            OpClass::Evict => "evict",
            OpClass::Join => "join",
            OpClass::WorldSwitch => "world_switch",
            OpClass::Other => "other",
        }
    }
}

/// One op as recorded: its class, the plan (pass) that issued it, and its timing.
#[derive(Clone, Copy, Debug)]
pub struct RecordedOp {
    pub class: OpClass,
    /// Index of the plan that issued it (0 = warm-up).
    pub plan: usize,
    pub timing: Option<OpTiming>,
}

/// Wraps a backend and records every op's class and timing.
pub struct Recording<B> {
    pub inner: B,
    ops: BTreeMap<OpId, RecordedOp>,
    plans: usize,
}

impl<B: Backend> Recording<B> {
    pub fn new(inner: B) -> Self {
        Recording {
            inner,
            ops: BTreeMap::new(),
            plans: 0,
        }
    }

    /// Records timings reported outside `run` (a backend's `drain`).
    pub fn record(&mut self, timings: &[OpTiming]) {
        for t in timings {
            if let Some(r) = self.ops.get_mut(&t.id) {
                r.timing = Some(*t);
            }
        }
    }

    pub fn ops(&self) -> &BTreeMap<OpId, RecordedOp> {
        &self.ops
    }
}

impl<B: Backend> Backend for Recording<B> {
    fn resources(&self) -> &[ResourceInfo] {
        self.inner.resources()
    }

    fn run(&mut self, plan: &Plan) -> Result<StepResult, BackendError> {
        for n in plan.nodes() {
            self.ops.insert(
                n.id,
                RecordedOp {
                    class: OpClass::of(&n.op),
                    plan: self.plans,
                    timing: None,
                },
            );
        }
        self.plans += 1;
        let step = self.inner.run(plan)?;
        self.record(&step.ops);
        Ok(step)
    }
}

/// Time spent per op class and per resource in one run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Breakdown {
    /// class -> (ops, total op time in ns)
    pub by_class: BTreeMap<&'static str, (u64, u64)>,
    /// resource name -> total op time in ns (an op on k servers counts once)
    pub by_resource: BTreeMap<String, u64>,
}

impl Breakdown {
    /// Sums the ops of plans `plans` (e.g. the decode passes).
    pub fn of(
        ops: &BTreeMap<OpId, RecordedOp>,
        resources: &[ResourceInfo],
        include: impl Fn(usize) -> bool,
    ) -> Breakdown {
        let mut b = Breakdown::default();
        for r in ops.values() {
            let Some(t) = r.timing else { continue };
            if !include(r.plan) {
                continue;
            }
            let d = (t.end - t.start).0;
            let e = b.by_class.entry(r.class.name()).or_default();
            e.0 += 1;
            e.1 += d;
            if let Some(res) = t.resource.and_then(|i| resources.get(i as usize)) {
                *b.by_resource.entry(res.name.clone()).or_default() += d;
            }
        }
        b
    }
}
