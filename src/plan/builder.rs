//! `Plan` and `PlanBuilder`: a DAG of ops, built in topological order.

use super::op::{Op, OpId};
use std::fmt;

/// One op with its place in the DAG.
#[derive(Clone, Debug, PartialEq)]
pub struct OpNode {
    pub id: OpId,
    pub op: Op,
    /// Lower runs first among ops waiting for the same resource; ties go to the op that became
    /// ready first, then to the lower id. TZ-LLM's "compute before restoration" rule uses it.
    pub priority: i16,
    deps_start: u32,
    deps_len: u32,
}

/// The work one forward pass needs, as ops with dependencies.
///
/// Invariants, enforced by [`PlanBuilder`]: ids are consecutive from `first_id`; every
/// dependency names an op with a smaller id (so the plan is acyclic and index order is a
/// topological order); a dependency below `first_id` names an op of an earlier plan.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    first_id: OpId,
    nodes: Vec<OpNode>,
    deps: Vec<OpId>,
    output: Option<OpId>,
}

impl Plan {
    pub fn first_id(&self) -> OpId {
        self.first_id
    }

    /// The id the next plan should start from.
    pub fn end_id(&self) -> OpId {
        self.first_id + self.nodes.len() as OpId
    }

    pub fn nodes(&self) -> &[OpNode] {
        &self.nodes
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn deps(&self, node: &OpNode) -> &[OpId] {
        &self.deps[node.deps_start as usize..(node.deps_start + node.deps_len) as usize]
    }

    pub fn get(&self, id: OpId) -> Option<&OpNode> {
        id.checked_sub(self.first_id)
            .and_then(|i| self.nodes.get(i as usize))
    }

    /// The op whose end marks the pass's output (the token's logits). The next pass cannot
    /// start before it; ops not upstream of it (prefetches) may run on past it.
    pub fn output(&self) -> Option<OpId> {
        self.output
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// A dependency on an op that does not exist yet.
    ForwardDependency {
        op: OpId,
        dep: OpId,
    },
    NoOutput,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::ForwardDependency { op, dep } => {
                write!(
                    f,
                    "op {op} depends on op {dep}, which is not issued before it"
                )
            }
            PlanError::NoOutput => write!(f, "plan has no output op"),
        }
    }
}

impl std::error::Error for PlanError {}

/// Builds a [`Plan`]. Ops are appended in an order where every dependency comes first.
#[derive(Debug)]
pub struct PlanBuilder {
    plan: Plan,
    error: Option<PlanError>,
}

impl PlanBuilder {
    /// A builder whose first op gets id `first_id` (the previous plan's `end_id`).
    pub fn new(first_id: OpId) -> Self {
        PlanBuilder {
            plan: Plan {
                first_id,
                ..Plan::default()
            },
            error: None,
        }
    }

    /// A builder whose first op gets id `first_id`, building in `plan`'s buffers (its ops are
    /// dropped, its capacity kept): a loop that plans pass after pass allocates nothing once
    /// the buffers have grown to the largest plan.
    pub fn reusing(mut plan: Plan, first_id: OpId) -> Self {
        plan.nodes.clear();
        plan.deps.clear();
        plan.output = None;
        plan.first_id = first_id;
        PlanBuilder { plan, error: None }
    }

    /// The id the next pushed op will get.
    pub fn next_id(&self) -> OpId {
        self.plan.end_id()
    }

    /// Appends `op` after `deps`. A dependency on a not-yet-issued op is recorded as an error
    /// that [`PlanBuilder::finish`] returns, so policies can chain pushes without checking each.
    pub fn push(&mut self, op: Op, deps: &[OpId]) -> OpId {
        self.push_with_priority(op, deps, 0)
    }

    pub fn push_with_priority(&mut self, op: Op, deps: &[OpId], priority: i16) -> OpId {
        let id = self.next_id();
        let deps_start = self.plan.deps.len() as u32;
        for &d in deps {
            if d >= id {
                self.error
                    .get_or_insert(PlanError::ForwardDependency { op: id, dep: d });
                continue;
            }
            self.plan.deps.push(d);
        }
        let deps_len = self.plan.deps.len() as u32 - deps_start;
        self.plan.nodes.push(OpNode {
            id,
            op,
            priority,
            deps_start,
            deps_len,
        });
        id
    }

    pub fn set_output(&mut self, id: OpId) {
        self.plan.output = Some(id);
    }

    /// Ops pushed so far in this plan.
    pub fn len(&self) -> usize {
        self.plan.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.plan.nodes.is_empty()
    }

    pub fn finish(self) -> Result<Plan, PlanError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.plan.output.is_none() && !self.plan.nodes.is_empty() {
            return Err(PlanError::NoOutput);
        }
        Ok(self.plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{TensorKind, TensorRef, World};

    fn switch() -> Op {
        Op::WorldSwitch { to: World::Secure }
    }

    #[test]
    fn ids_continue_from_first_id() {
        let mut b = PlanBuilder::new(10);
        let a = b.push(switch(), &[]);
        let c = b.push(switch(), &[a, 3]);
        b.set_output(c);
        let p = b.finish().unwrap();
        assert_eq!((a, c, p.end_id()), (10, 11, 12));
        assert_eq!(p.deps(&p.nodes()[1]), &[10, 3]);
        assert_eq!(p.get(11).unwrap().id, 11);
        assert!(p.get(9).is_none());
    }

    #[test]
    fn forward_dependency_is_an_error() {
        let mut b = PlanBuilder::new(0);
        let a = b.push(switch(), &[5]);
        b.set_output(a);
        assert_eq!(
            b.finish().unwrap_err(),
            PlanError::ForwardDependency { op: 0, dep: 5 }
        );
    }

    #[test]
    fn matmul_counts_flops_and_bytes() {
        let t = TensorRef::new(0, TensorKind::DenseFfn);
        let op = Op::matmul(
            t,
            crate::plan::Unit::Accel,
            crate::model::Precision::Int4,
            128,
            64,
            2,
        );
        match op {
            Op::Compute { flops, bytes, .. } => {
                assert_eq!(flops, 2 * 128 * 64 * 2);
                assert_eq!(bytes, crate::model::Precision::Int4.bytes_for(128 * 64));
            }
            _ => unreachable!(),
        }
    }
}
