//! The run grid: every (workload, budget, policy) run of a prepared experiment, spread over
//! threads, gathered into rows in the experiment's order, then written as one report folder.

use super::prepare::{Prepared, RunSpec};
use super::report_folder;
use super::run::{run_one, RunResult};
use crate::replay::ReplayOptions;
use crate::report::{ResultRow, RunIdentity};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Options of a comparison beyond the experiment itself.
#[derive(Clone, Debug, Default)]
pub struct CompareOptions {
    /// Threads for independent runs (0: rayon's default).
    pub jobs: usize,
    /// Run only the runs with `index % n == i`.
    pub shard: Option<(usize, usize)>,
    /// Write a Chrome trace-event timeline of each run's first this-many ops (0: none).
    pub timeline_ops: usize,
}

/// Runs a prepared comparison and writes its report folder to `out`. `progress` is told about
/// each run as it finishes.
pub fn compare(
    p: &Prepared,
    out: &Path,
    options: &CompareOptions,
    progress: &(dyn Fn(usize, usize, &RunResult) + Sync),
) -> Result<(PathBuf, Vec<ResultRow>), String> {
    let results = run_all(p, options, progress)?;
    let rows = rows_of(p, &results);
    let path = report_folder::write(p, out, options, &results, &rows)?;
    Ok((path, rows))
}

/// Runs this shard's runs, in parallel; results come back in the runs' order whatever the
/// threads did.
fn run_all(
    p: &Prepared,
    options: &CompareOptions,
    progress: &(dyn Fn(usize, usize, &RunResult) + Sync),
) -> Result<Vec<RunResult>, String> {
    let runs: Vec<&RunSpec> = p
        .runs
        .iter()
        .filter(|r| options.shard.is_none_or(|(i, n)| r.index % n == i))
        .collect();
    let replay_options = ReplayOptions {
        timeline_ops: options.timeline_ops,
        // The restoration breakdown is written for experiments with confidential policies.
        breakdown: p
            .runs
            .iter()
            .any(|r| crate::policy::confidential::is_dense_member(&r.policy)),
        ..ReplayOptions::default()
    };
    let done = std::sync::atomic::AtomicUsize::new(0);
    let total = runs.len();
    let execute = || {
        runs.par_iter()
            .map(|spec| {
                let r = run_one(p, spec, &replay_options)?;
                let n = done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                progress(n, total, &r);
                Ok(r)
            })
            .collect::<Result<Vec<RunResult>, String>>()
    };
    if options.jobs > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(options.jobs)
            .build()
            .map_err(|e| format!("cannot start {} worker threads: {e}", options.jobs))?
            .install(execute)
    } else {
        execute()
    }
}

/// One result row per run, naming what was run.
fn rows_of(p: &Prepared, results: &[RunResult]) -> Vec<ResultRow> {
    results
        .iter()
        .map(|r| {
            ResultRow::new(
                RunIdentity {
                    experiment: p.experiment.name.clone(),
                    device: p.device.name.clone(),
                    model: p.model.name.clone(),
                    trace: p.workloads[r.spec.workload].trace.name(),
                    workload: p.workloads[r.spec.workload].label.clone(),
                    policy: r.spec.policy.clone(),
                    label: r.spec.label.clone(),
                    budget_label: r.spec.budget_label.clone(),
                    budget_bytes: r.spec.budget_bytes,
                    seed: p.experiment.seed,
                },
                r.summary.clone(),
                &r.outcome.counters,
            )
        })
        .collect()
}
