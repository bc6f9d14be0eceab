//! Scenarios: experiments that combine a device, a model, a trace, budgets and policies.

pub mod experiment;

pub use experiment::{BudgetSpec, Experiment, Footprint, PolicySpec};
