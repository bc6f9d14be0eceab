//! `edgesim validate`: simulator prediction beside executor measurement, as a bundle.

use super::exec::key;
use super::CliError;
use crate::validate::{validate, ValidateOptions};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Experiment to validate (bundled name or .json path): its trace, policies and budgets.
    #[arg(long, short = 'e', value_name = "NAME|PATH")]
    pub experiment: String,
    /// The weight store of the experiment's model (from `edgesim exec prepare`).
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// Device profile of this machine, used by both the simulator and the executor.
    #[arg(
        long,
        default_value = "scenarios/devices/host.json",
        value_name = "NAME|PATH"
    )]
    pub device: String,
    /// Bundle folder.
    #[arg(
        long,
        short = 'o',
        default_value = "reports/validation",
        value_name = "DIR"
    )]
    pub out: PathBuf,
    /// Policy to validate (repeat for several); replaces the experiment's list. A name the
    /// experiment lists (as a policy or a label) keeps its parameters.
    #[arg(long = "policy", value_name = "NAME")]
    pub policies: Vec<String>,
    /// Replay at most this many passes of the trace per run.
    #[arg(long, value_name = "N")]
    pub max_passes: Option<usize>,
    /// Measured runs per policy and budget, taken in turn across all runs; each pass's
    /// measured latency is their median.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub repeat: usize,
    /// Probe the disk's read rate (1 s of 1 MiB reads of the store) right before every
    /// measured run and predict that run with the profile's read curve scaled to it: for
    /// shared or throttled disks whose rate drifts during a validation.
    #[arg(long)]
    pub probe_disk: bool,
    /// Key file of an encrypted store [default: the environment variable EDGESIM_STORE_KEY].
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
}

pub fn run(a: ValidateArgs) -> Result<(), CliError> {
    crate::limits::check_count(
        "--repeat",
        a.repeat as u64,
        crate::limits::MAX_REPEAT as u64,
    )
    .map_err(CliError::new)?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let options = ValidateOptions {
        experiment: a.experiment,
        store: a.store,
        device: a.device,
        key: key(&a.key_file)?,
        policies: a.policies,
        budgets: Vec::new(),
        max_passes: a.max_passes,
        repeat: a.repeat,
        probe_disk: a.probe_disk,
        out: a.out,
        command,
    };
    let progress = |n: usize, total: usize, r: &crate::validate::RunPair| {
        let p = crate::report::RunSummary::from_outcome(&r.predicted.outcome);
        let m = crate::report::RunSummary::from_outcome(&r.measured.outcome);
        eprintln!(
            "  [{n}/{total}] {} @ {}: decode p50 predicted {:.2} ms, measured {:.2} ms; TTFT {:.1} / {:.1} ms ({:.0} s, load {})",
            r.label,
            r.budget_label,
            p.decode_latency_p50_ms,
            m.decode_latency_p50_ms,
            p.ttft_mean_ms,
            m.ttft_mean_ms,
            r.measured_seconds,
            r.load_before.map_or("?".into(), |l| format!("{l:.2}"))
        );
    };
    let (dir, rows) = validate(&options, &progress).map_err(CliError::new)?;
    println!(
        "{:<12} {:<14} {:<15} {:>7} {:>10} {:>10} {:>9}",
        "policy", "budget", "metric", "samples", "median|e|%", "p90|e|%", "bias%"
    );
    for r in &rows {
        println!(
            "{:<12} {:<14} {:<15} {:>7} {:>10.2} {:>10.2} {:>9.2}",
            r.label,
            r.budget_label,
            r.metric,
            r.samples,
            r.median_abs_pct_error,
            r.p90_abs_pct_error,
            r.bias_pct
        );
    }
    println!("bundle written to {}", dir.display());
    Ok(())
}
