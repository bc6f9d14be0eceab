//! `edgesim compare` and `edgesim replay`: run an experiment's policies at its budgets on the
//! simulator and write a report.

use super::CliError;
use crate::compare::{self, CompareOptions, Prepared, RunResult};
use crate::report::ResultRow;
use crate::scenario::{BudgetSpec, Experiment};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

/// Overrides of an experiment's parts, shared by `compare` and `replay`.
#[derive(Args, Debug, Clone)]
pub struct ExperimentArgs {
    /// Trace to replay instead of the experiment's (a file written by `edgesim trace`).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Device profile instead of the experiment's (bundled name or .json path).
    #[arg(long, value_name = "NAME|PATH")]
    pub device: Option<String>,
    /// Model profile instead of the experiment's (bundled name or .json path).
    #[arg(long, value_name = "NAME|PATH")]
    pub model: Option<String>,
    /// Memory budget in GiB (repeat for several); replaces the experiment's budgets.
    #[arg(long = "budget-gib", value_name = "GIB")]
    pub budget_gib: Vec<f64>,
    /// Memory budget as the resident set plus this fraction of the offloadable weights
    /// (repeat for several); replaces the experiment's budgets.
    #[arg(long = "cache-fraction", value_name = "F")]
    pub cache_fraction: Vec<f64>,
    /// Seed for every random choice (replaces the experiment's).
    #[arg(long)]
    pub seed: Option<u64>,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Bundled experiment name or path to an experiment .json file.
    #[arg(long, short = 'e', default_value = "default", value_name = "NAME|PATH")]
    pub experiment: String,
    /// Report folder [default: reports/<experiment name>].
    #[arg(long, short = 'o', value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Policy to run (repeat for several); replaces the experiment's policies. A label (or
    /// the one policy of a name) the experiment lists keeps its parameters; the analysis
    /// drops the ablations and ceiling left out (and says so).
    #[arg(long = "policy", value_name = "NAME")]
    pub policies: Vec<String>,
    #[command(flatten)]
    pub overrides: ExperimentArgs,
    /// Also write a Chrome/Perfetto timeline of each run's first N ops.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "20000")]
    pub timeline: Option<usize>,
    /// Worker threads for independent runs [default: one per core].
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub jobs: usize,
    /// Run only shard I of N (runs whose index mod N is I), for splitting a sweep over
    /// machines; merge the CSVs afterwards.
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    pub shard: Option<(usize, usize)>,
    /// Print no progress lines.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Bundled experiment name or path: the device, model, precisions and budgets to use.
    #[arg(long, short = 's', default_value = "default", value_name = "NAME|PATH")]
    pub scenario: String,
    /// The policy to replay.
    #[arg(long, short = 'p', value_name = "NAME")]
    pub policy: String,
    #[command(flatten)]
    pub overrides: ExperimentArgs,
    /// Also write a report folder here.
    #[arg(long, short = 'o', value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// With --out: also write a timeline of the first N ops.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "20000")]
    pub timeline: Option<usize>,
}

fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}` is not of the form I/N (e.g. 0/4)"))?;
    let i: usize = i
        .trim()
        .parse()
        .map_err(|_| format!("shard index `{i}` is not a number"))?;
    let n: usize = n
        .trim()
        .parse()
        .map_err(|_| format!("shard count `{n}` is not a number"))?;
    if n == 0 || i >= n {
        return Err(format!("shard {i}/{n}: need 0 <= I < N"));
    }
    Ok((i, n))
}

fn apply_overrides(exp: &mut Experiment, o: &ExperimentArgs) -> Result<(), CliError> {
    if let Some(t) = &o.trace {
        exp.trace = Some(t.display().to_string());
        exp.workloads.clear();
    }
    if let Some(d) = &o.device {
        exp.device = d.clone();
    }
    if let Some(m) = &o.model {
        exp.model = m.clone();
    }
    if let Some(s) = o.seed {
        exp.seed = s;
    }
    if !o.budget_gib.is_empty() || !o.cache_fraction.is_empty() {
        exp.budgets = o
            .budget_gib
            .iter()
            .map(|&g| BudgetSpec {
                label: None,
                bytes: None,
                gib: Some(g),
                cache_fraction: None,
            })
            .chain(o.cache_fraction.iter().map(|&f| BudgetSpec {
                label: None,
                bytes: None,
                gib: None,
                cache_fraction: Some(f),
            }))
            .collect();
    }
    exp.check().map_err(CliError::new)
}

fn prepare(
    name: &str,
    overrides: &ExperimentArgs,
    policies: &[String],
) -> Result<Prepared, CliError> {
    let (mut exp, base) = compare::load_experiment(name).map_err(CliError::new)?;
    if !policies.is_empty() {
        for note in compare::narrow_policies(&mut exp, policies).map_err(CliError::new)? {
            eprintln!("note: {note}");
        }
    }
    // A trace given on the command line is relative to the working directory.
    let base = if overrides.trace.is_some() {
        None
    } else {
        base
    };
    apply_overrides(&mut exp, overrides)?;
    compare::prepare(exp, base.as_deref()).map_err(CliError::new)
}

/// `--jobs` and `--timeline` against their bounds, before anything is read.
fn check_run_flags(jobs: usize, timeline: Option<usize>) -> Result<(), CliError> {
    use crate::limits::{check_count, MAX_THREADS, MAX_TIMELINE_OPS};
    check_count("--jobs", jobs as u64, MAX_THREADS as u64).map_err(CliError::new)?;
    check_count(
        "--timeline",
        timeline.unwrap_or(0) as u64,
        MAX_TIMELINE_OPS as u64,
    )
    .map_err(CliError::new)
}

pub fn run_compare(args: CompareArgs) -> Result<(), CliError> {
    check_run_flags(args.jobs, args.timeline)?;
    let p = prepare(&args.experiment, &args.overrides, &args.policies)?;
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from("reports").join(&p.experiment.name));
    let options = CompareOptions {
        jobs: args.jobs,
        shard: args.shard,
        timeline_ops: args.timeline.unwrap_or(0),
    };
    if !args.quiet {
        eprintln!(
            "edgesim compare: {} on {} with {}, {} runs ({} policies x {} budgets x {} workloads)",
            p.model.name,
            p.device.name,
            p.workloads
                .iter()
                .map(|w| w.trace.name())
                .collect::<Vec<_>>()
                .join(", "),
            p.runs.len(),
            p.experiment.policies.len(),
            p.experiment.budgets.len(),
            p.workloads.len()
        );
    }
    let quiet = args.quiet;
    let progress = move |n: usize, total: usize, r: &RunResult| {
        if !quiet {
            eprintln!(
                "  [{n}/{total}] {} @ {}: {:.2} decode tok/s",
                r.spec.label, r.spec.budget_label, r.summary.decode_tokens_per_s
            );
        }
    };
    let (dir, rows) = compare::compare(&p, &out, &options, &progress).map_err(CliError::new)?;
    let headline = compare::headline_of(&p, &rows).text();
    writeln!(std::io::stdout().lock(), "{headline}")
        .map_err(|e| CliError::new(format!("cannot write to stdout: {e}")))?;
    print_table(&rows)?;
    println!("report written to {}", dir.display());
    Ok(())
}

pub fn run_replay(args: ReplayArgs) -> Result<(), CliError> {
    check_run_flags(0, args.timeline)?;
    let p = prepare(
        &args.scenario,
        &args.overrides,
        std::slice::from_ref(&args.policy),
    )?;
    let options = CompareOptions {
        jobs: 0,
        shard: None,
        timeline_ops: args.timeline.unwrap_or(0),
    };
    match args.out {
        Some(out) => {
            let (dir, rows) =
                compare::compare(&p, &out, &options, &|_, _, _| {}).map_err(CliError::new)?;
            print_table(&rows)?;
            println!("report written to {}", dir.display());
        }
        None => {
            let replay_options = crate::replay::ReplayOptions::default();
            let mut rows = Vec::new();
            for spec in &p.runs {
                let r = compare::run_one(&p, spec, &replay_options).map_err(CliError::new)?;
                rows.push(row_of(&p, &r));
            }
            print_table(&rows)?;
        }
    }
    Ok(())
}

fn row_of(p: &Prepared, r: &RunResult) -> ResultRow {
    ResultRow::new(
        crate::report::RunIdentity {
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
}

/// The headline figures, one line per run, for the terminal.
fn print_table(rows: &[ResultRow]) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    let w = |e: std::io::Error| CliError::new(format!("cannot write to stdout: {e}"));
    writeln!(
        out,
        "{:<20} {:>14} {:>10} {:>11} {:>9} {:>10} {:>8}",
        "policy", "budget", "tok/s", "TTFT ms", "hit rate", "MiB/token", "waiting"
    )
    .map_err(w)?;
    for r in rows {
        writeln!(
            out,
            "{:<20} {:>14} {:>10.3} {:>11.1} {:>9.3} {:>10.1} {:>7.1}%",
            r.id.label,
            r.id.budget_label,
            r.summary.decode_tokens_per_s,
            r.summary.ttft_mean_ms,
            r.summary.hit_rate,
            r.summary.bytes_read_per_decode_token / (1u64 << 20) as f64,
            r.summary.decode_stall_share * 100.0
        )
        .map_err(w)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_are_checked() {
        assert_eq!(parse_shard("1/4").unwrap(), (1, 4));
        assert!(parse_shard("4/4").is_err());
        assert!(parse_shard("1-4").is_err());
        assert!(parse_shard("0/0").is_err());
    }
}
