//! `edgesim exec prepare` (write a weight store) and `edgesim exec run` (replay a policy on the
//! real executor and print what was measured beside what the simulator predicts).

use super::CliError;
use crate::exec::scale::scale_model;
use crate::exec::store::{self, PrepareOptions, StoreKey};
use crate::model::Precision;
use crate::scenario::BudgetSpec;
use crate::units::human_bytes;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ExecArgs {
    #[command(subcommand)]
    pub command: ExecCommand,
}

#[derive(Subcommand, Debug)]
pub enum ExecCommand {
    /// Write a model's weights in edgesim's layout (seeded synthetic weights, or a real
    /// model's with --gguf; packed for the LUT kernels, 4 KiB aligned, with an index of
    /// offsets, sizes and CRC-32s).
    Prepare(PrepareArgs),
    /// Replay an experiment's trace under one policy on the real executor.
    Run(RunArgs),
}

#[derive(Args, Debug)]
pub struct PrepareArgs {
    /// Bundled model name or path to a model profile.
    #[arg(long, value_name = "NAME|PATH")]
    pub model: String,
    /// Divide the matrix dimensions by this factor (layers, experts, top-k kept).
    #[arg(long, default_value_t = 1)]
    pub scale: u32,
    /// Store folder [default: target/edgesim-store/<model>-scaled-<S>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Precisions to store every tensor at (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "int8,int4")]
    pub precisions: Vec<Precision>,
    /// Encrypt every tensor (ChaCha20-Poly1305).
    #[arg(long)]
    pub encrypt: bool,
    /// Key for --encrypt: a file of 32 raw bytes or 64 hex digits [default: the environment
    /// variable EDGESIM_STORE_KEY; there is no built-in key]. A stand-in for a TEE-held key.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Seed of the weight generator.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Store a real model's weights instead of synthetic ones: a model name in the cache
    /// (`smollm2`, see `edgesim model fetch`) or a GGUF path. `--model` must then be the file's
    /// profile (`smollm2-135m`); the FFNs are stored as neuron clusters for the neuron-level
    /// policies.
    #[arg(long, value_name = "NAME|PATH")]
    pub gguf: Option<String>,
    /// With --gguf: neurons per stored cluster (the `cluster_neurons` the policies must use)
    /// [default: 1].
    #[arg(long, value_name = "N")]
    pub cluster: Option<u32>,
    /// With --gguf: the model cache folder [default: $EDGESIM_CACHE, else
    /// ~/.cache/edgesim/models].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The weight store (from `edgesim exec prepare`).
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// Experiment giving the trace, precisions and seed (its model must be the store's).
    #[arg(long, short = 'e', value_name = "NAME|PATH")]
    pub experiment: String,
    /// Policy to run.
    #[arg(long, short = 'p', value_name = "NAME")]
    pub policy: String,
    /// Device profile of this machine.
    #[arg(
        long,
        default_value = "scenarios/devices/host.json",
        value_name = "NAME|PATH"
    )]
    pub device: String,
    /// Memory budget as the resident set plus this fraction of the experts [default: the
    /// experiment's first budget].
    #[arg(long, value_name = "F")]
    pub cache_fraction: Option<f64>,
    /// Memory budget in GiB.
    #[arg(long, value_name = "GIB")]
    pub budget_gib: Option<f64>,
    /// Replay at most this many passes.
    #[arg(long, value_name = "N")]
    pub max_passes: Option<usize>,
    /// Key file of an encrypted store [default: the environment variable EDGESIM_STORE_KEY].
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
}

pub fn run(args: ExecArgs) -> Result<(), CliError> {
    match args.command {
        ExecCommand::Prepare(a) => prepare(a),
        ExecCommand::Run(a) => run_one(a),
    }
}

/// The store key: from `--key-file`, else from the environment variable
/// [`crate::exec::store::crypt::KEY_ENV`]; never a built-in one, never a flag's value.
pub fn key(path: &Option<PathBuf>) -> Result<Option<StoreKey>, CliError> {
    match path {
        Some(p) => StoreKey::from_file(p).map(Some).map_err(CliError::new),
        None => StoreKey::from_env().map_err(CliError::new),
    }
}

fn prepare(a: PrepareArgs) -> Result<(), CliError> {
    crate::limits::check_count(
        "--scale",
        u64::from(a.scale),
        u64::from(crate::limits::MAX_SCALE),
    )
    .map_err(CliError::new)?;
    let profile = crate::scenario::load_model(&a.model)?;
    let scaled = scale_model(&profile, a.scale)
        .map_err(|e| CliError::new(format!("model `{}`: {e}", a.model)))?;
    let out = a
        .out
        .unwrap_or_else(|| PathBuf::from("target/edgesim-store").join(&scaled.name));
    let key = if a.encrypt {
        Some(key(&a.key_file)?.ok_or_else(|| {
            CliError::new(format!(
                "--encrypt needs a key: --key-file FILE (32 raw bytes or 64 hex digits, e.g. from `head -c 32 /dev/urandom`) or the environment variable {}; edgesim has no built-in key",
                crate::exec::store::crypt::KEY_ENV
            ))
        })?)
    } else {
        if a.key_file.is_some() {
            return Err(CliError::new("--key-file is only used with --encrypt"));
        }
        None
    };
    eprintln!(
        "edgesim exec prepare: {} (scale {}{}) at {} into {}",
        scaled.name,
        a.scale,
        if a.scale > 1 {
            ": matrix dimensions divided, structure kept"
        } else {
            ""
        },
        a.precisions
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join(", "),
        out.display()
    );
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("  {bar:40} {pos}/{len} tensors ({eta} left)")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let progress = |done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    if a.gguf.is_none() && (a.cluster.is_some() || a.cache_dir.is_some()) {
        return Err(CliError::new(
            "--cluster and --cache-dir are only used with --gguf (a real model's store)",
        ));
    }
    let gguf = match &a.gguf {
        Some(model) => {
            let cache = crate::llm::fetch::cache_dir(a.cache_dir.as_deref())?;
            let path = crate::llm::fetch::locate_model(model, &cache)?;
            // The index keeps the path for later runs from any folder.
            Some(std::fs::canonicalize(&path).unwrap_or(path))
        }
        None => None,
    };
    let options = PrepareOptions {
        source_model: a.model.clone(),
        scale: a.scale,
        precisions: a.precisions.clone(),
        seed: a.seed,
        key,
        model_file: gguf.as_ref().map(|p| p.display().to_string()),
        model_file_sha256: None,
    };
    let done = match &gguf {
        Some(path) => {
            let cluster = a.cluster.unwrap_or(1);
            eprintln!(
                "  weights from {}, FFN neurons in clusters of {cluster}",
                path.display()
            );
            crate::exec::model::prepare_real(path, &scaled, &out, &options, cluster, &progress)
        }
        None => store::prepare(&scaled, &out, &options, &progress),
    }
    .map_err(CliError::new)?;
    bar.finish_and_clear();
    println!(
        "wrote {} tensors ({} entries, {}) to {}{}",
        done.tensors,
        done.entries,
        human_bytes(done.data_bytes),
        done.dir.display(),
        if a.encrypt {
            " (encrypted; the key is a stand-in for a TEE-held key)"
        } else {
            ""
        }
    );
    Ok(())
}

fn budgets(cache_fraction: Option<f64>, gib: Option<f64>) -> Vec<BudgetSpec> {
    let mut out = Vec::new();
    if let Some(f) = cache_fraction {
        out.push(BudgetSpec {
            label: None,
            bytes: None,
            gib: None,
            cache_fraction: Some(f),
        });
    }
    if let Some(g) = gib {
        out.push(BudgetSpec {
            label: None,
            bytes: None,
            gib: Some(g),
            cache_fraction: None,
        });
    }
    out
}

fn run_one(a: RunArgs) -> Result<(), CliError> {
    let mut budget_list = budgets(a.cache_fraction, a.budget_gib);
    let setup = crate::validate::setup(
        &a.experiment,
        &a.store,
        &a.device,
        key(&a.key_file)?,
        std::slice::from_ref(&a.policy),
        &budget_list,
    )
    .map_err(CliError::new)?;
    budget_list.clear();
    let spec = setup
        .prepared
        .runs
        .first()
        .cloned()
        .ok_or_else(|| CliError::new("the experiment has no runs"))?;
    eprintln!(
        "edgesim exec run: `{}` at {} ({}) on {} with {} (model {}, scale {})",
        spec.label,
        spec.budget_label,
        human_bytes(spec.budget_bytes),
        setup.prepared.device.name,
        setup
            .prepared
            .single_workload()
            .map_err(CliError::new)?
            .trace
            .name(),
        setup.prepared.model.name,
        setup.store.index.scale
    );
    let pair = crate::validate::run_pair(&setup, &spec, a.max_passes).map_err(CliError::new)?;
    let (p, m) = (
        crate::report::RunSummary::from_outcome(&pair.predicted.outcome),
        crate::report::RunSummary::from_outcome(&pair.measured.outcome),
    );
    println!("{:<28} {:>12} {:>12}", "", "predicted", "measured");
    println!(
        "{:<28} {:>12.2} {:>12.2}",
        "decode tokens/s", p.decode_tokens_per_s, m.decode_tokens_per_s
    );
    println!(
        "{:<28} {:>12.2} {:>12.2}",
        "decode latency p50 (ms)", p.decode_latency_p50_ms, m.decode_latency_p50_ms
    );
    println!(
        "{:<28} {:>12.2} {:>12.2}",
        "decode latency p90 (ms)", p.decode_latency_p90_ms, m.decode_latency_p90_ms
    );
    println!(
        "{:<28} {:>12.2} {:>12.2}",
        "TTFT mean (ms)", p.ttft_mean_ms, m.ttft_mean_ms
    );
    println!(
        "{:<28} {:>12.2} {:>12.2}",
        "warm-up (ms)", p.warmup_ms, m.warmup_ms
    );
    let s = &pair.exec;
    println!(
        "I/O: {}; {} reads, {} named by the plans, {} transferred; {} I/O threads",
        s.io_mode.map_or("unknown", |m| m.describe()),
        s.reads,
        human_bytes(s.plan_bytes_read),
        human_bytes(s.bytes_transferred),
        s.io_threads
    );
    println!(
        "memory: budget {}, peak allocated {}, arena {}, peak RSS of the process {}",
        human_bytes(s.budget_bytes),
        human_bytes(s.peak_allocated_bytes),
        human_bytes(s.arena_bytes),
        pair.peak_rss_bytes.map_or("unknown".into(), human_bytes)
    );
    if s.emulated.is_empty() {
        println!("emulated ops: none (every op ran for real)");
    }
    if let (Some(q), Some(real)) = (&pair.quality, &setup.real) {
        println!(
            "real model: {} ({} attention and head, FFN neurons from the store at {})",
            real.model_file, real.format, setup.prepared.experiment.offload_precision
        );
        println!(
            "  output: {} of {} next-token choices equal the dense in-memory model's, {} of {} the recorded next token; logits vs the in-memory sparse run's: {}",
            q.agree_with_dense,
            q.predictions,
            q.agree_with_recorded,
            q.with_recorded_next,
            q.vs_in_memory()
        );
    }
    for e in &s.emulated {
        println!("emulated: {} x {}: {}", e.count, e.what, e.how);
    }
    if setup.store.index.scale > 1 {
        println!(
            "note: `{}` is scaled down by {} on its matrix dimensions",
            setup.store.index.source_model, setup.store.index.scale
        );
    }
    Ok(())
}
