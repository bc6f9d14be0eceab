//! The vocabulary both backends speak: ops, their dependencies, and the plans policies emit.
//!
//! A [`Plan`] is one forward pass (a decode token, or a prefill chunk) as a DAG of [`Op`]s.
//! Policies build plans with a [`PlanBuilder`]; the simulator prices and schedules them; the
//! executor performs them. Neither backend changes a plan.

mod builder;
mod op;

pub use crate::model::{TensorKind, TensorRef, DENSE_FFN};
pub use builder::{OpNode, Plan, PlanBuilder, PlanError};
pub use op::{Kernel, Op, OpId, Unit, World};
