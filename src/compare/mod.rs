//! Comparing policies: an experiment's workloads × budgets × policies, each replayed on the
//! simulator, gathered into one report folder.
//!
//! Runs are independent and spread over threads with rayon; each opens its own trace reader,
//! so memory stays flat whatever a trace file's length. Generated workloads are generated once
//! per comparison and held in memory (their size is set in the experiment: a few MB for
//! HOBBIT's setups). Rows come out in the experiment's order (workload-major, then budget,
//! then policy) whatever the threads did, so reports are byte-identical for the same inputs.
//!
//! Offline policies (Belady) are given the trace's future: the run reads its workload's
//! trace once more beforehand and builds a [`FutureAccesses`](crate::policy::FutureAccesses)
//! from the very passes it will replay. No other policy is given it.
//!
//! | file | does |
//! | --- | --- |
//! | [`prepare`] | loads the experiment and its workloads' traces, checks them against the model, resolves budgets, lists the runs |
//! | [`headline`] | the report's headline: who wins where, by how much, why; which policies are bounds |
//! | [`narrow`] | narrows an experiment to some of its policies (`--policy`) and adapts its analysis |
//! | [`grid`] | runs every run of the grid in parallel and turns results into rows |
//! | [`run`] | one run: a policy at a budget on a workload, on the simulator |
//! | [`report_folder`] | writes the report folder: tables, plots, analysis, timelines |

pub mod grid;
pub mod headline;
pub mod narrow;
pub mod prepare;
pub mod report_folder;
mod restoration;
pub mod run;

pub use grid::{compare, CompareOptions};
pub use headline::headline_of;
pub use narrow::narrow_policies;
pub use prepare::{
    load_experiment, parse_experiment, prepare, Prepared, PreparedWorkload, RunSpec, TokenStream,
    TraceInput, BUNDLED_EXPERIMENTS, BUNDLED_TRACES, DEFAULT_MAX_PREFILL_CHUNK,
};
pub use run::{future_of, run_one, RunResult};
