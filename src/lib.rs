//! edgesim: which LLM offloading policy wins on this device and memory budget, by how much,
//! and why.
//!
//! A trace of recorded activations is replayed through a [`policy::Policy`], which emits a
//! [`plan::Plan`] per forward pass; a [`backend::Backend`] runs the plan — the simulator in
//! simulated time, or the executor for real — and the report compares policies.
//! See `docs/architecture.md` for the map.

pub mod backend;
pub mod cli;
pub mod compare;
pub mod exec;
pub mod hw;
pub mod kernels;
pub mod limits;
pub mod llm;
pub mod model;
pub mod plan;
pub mod policy;
pub mod replay;
pub mod report;
pub mod scenario;
pub mod sim;
pub mod sourced;
pub mod staged_dir;
pub mod trace;
pub mod units;
pub mod validate;
