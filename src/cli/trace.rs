//! `edgesim trace ...`: check, measure, generate, import and dump activation traces. Parsing and
//! printing only; the work is in [`crate::trace`].

use super::CliError;
use crate::model::{ModelGeometry, ModelProfile};
use crate::sourced::Sourced;
use crate::trace::gen::{
    write_trace, ExpertGenConfig, ExpertTraceGenerator, NeuronGenConfig, NeuronPredictorSpec,
    NeuronTraceGenerator, DEFAULT_AUTOCORRELATION,
};
use crate::trace::import::import_mixtral_jsonl;
use crate::trace::stats::stats_file;
use crate::trace::{validate_file, Phase, TokenRecord, TokenSource, TraceError, TraceReader};
use clap::{Args, Subcommand, ValueEnum};
use std::io::Write;
use std::path::{Path, PathBuf};

impl From<TraceError> for CliError {
    fn from(e: TraceError) -> Self {
        CliError::new(e.to_string())
    }
}

#[derive(Args, Debug)]
pub struct TraceArgs {
    #[command(subcommand)]
    pub command: TraceCommand,
}

#[derive(Subcommand, Debug)]
pub enum TraceCommand {
    /// Read and check every record; print a one-paragraph summary.
    Validate { file: PathBuf },
    /// Expert popularity skew, reuse distance, LRU hit rates, cross-layer predictability;
    /// neuron hot sets.
    Stats {
        file: PathBuf,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Generate a seeded synthetic trace calibrated to published statistics.
    Gen(GenArgs),
    /// Convert someone else's recording into an edgesim trace.
    Import {
        #[arg(long, value_enum)]
        format: ImportFormat,
        input: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Record a neuron-activation trace from a real model's FFN activations.
    Record(super::trace_record::RecordArgs),
    /// Print records as JSON lines (the header first).
    Dump {
        file: PathBuf,
        /// Records to print at most.
        #[arg(long)]
        limit: Option<u64>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ImportFormat {
    /// Mixtral-8x7B routing JSON lines (github.com/Mario928/speculative-moe).
    MixtralJsonl,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GenKind {
    /// Expert routing (MoE models).
    Expert,
    /// Active FFN neurons (dense models).
    Neuron,
}

#[derive(Args, Debug)]
pub struct GenArgs {
    /// Model: a bundled profile name (see scenarios/models/, e.g. mixtral-8x7b) or a path to a
    /// model profile .json.
    #[arg(long, value_name = "NAME|PATH")]
    pub model: String,
    /// Tokens in the whole trace.
    #[arg(long)]
    pub tokens: u64,
    #[arg(long)]
    pub seed: u64,
    #[arg(long)]
    pub out: PathBuf,
    /// Sequences the tokens are split into.
    #[arg(long, default_value_t = 1)]
    pub sequences: u32,
    /// Prefill tokens at the start of each sequence.
    #[arg(long, default_value_t = 0)]
    pub prefill: u32,
    /// Trace kind; default: expert for MoE models, neuron otherwise.
    #[arg(long, value_enum)]
    pub kind: Option<GenKind>,
    /// Expert traces: top-1 accuracy of recorded predictions for 1, 2, ... layers ahead,
    /// comma-separated (HOBBIT's Mixtral figures: 0.96,0.90,0.90).
    #[arg(long, value_delimiter = ',')]
    pub predict_accuracy: Vec<f64>,
    /// Neuron traces: mean active fraction (default: the model's sparsity).
    #[arg(long)]
    pub active_fraction: Option<f64>,
    /// Neuron traces: lag-1 autocorrelation of each neuron's activity.
    #[arg(long, default_value_t = DEFAULT_AUTOCORRELATION)]
    pub autocorrelation: f64,
    /// Neuron traces: record predictor output with this recall and precision (`R,P`).
    #[arg(long, value_delimiter = ',')]
    pub neuron_predictor: Vec<f64>,
}

pub fn run(args: TraceArgs) -> Result<(), CliError> {
    match args.command {
        TraceCommand::Validate { file } => {
            let v = validate_file(&file)?;
            println!("{}: {v}", file.display());
            Ok(())
        }
        TraceCommand::Stats { file, json } => {
            let s = stats_file(&file)?;
            if json {
                let text = serde_json::to_string_pretty(&s)
                    .map_err(|e| CliError::new(format!("cannot render statistics: {e}")))?;
                println!("{text}");
            } else {
                print!("{}", s.to_table());
            }
            Ok(())
        }
        TraceCommand::Gen(g) => generate(g),
        TraceCommand::Import { format, input, out } => match format {
            ImportFormat::MixtralJsonl => {
                let model = mixtral_geometry()?;
                let report = import_mixtral_jsonl(&input, &out, &model)?;
                println!("{} -> {}: {report}", input.display(), out.display());
                Ok(())
            }
        },
        TraceCommand::Dump { file, limit } => dump(&file, limit),
        TraceCommand::Record(args) => super::trace_record::run(args),
    }
}

fn load_profile(g: &GenArgs) -> Result<ModelProfile, CliError> {
    Ok(crate::scenario::load_model(&g.model)?)
}

/// The routing files the importer reads were recorded from Mixtral-8x7B.
fn mixtral_geometry() -> Result<ModelGeometry, CliError> {
    let profile = crate::scenario::load_model("mixtral-8x7b")?;
    ModelGeometry::from_profile(&profile).map_err(CliError::new)
}

fn generate(g: GenArgs) -> Result<(), CliError> {
    crate::limits::check_count("--tokens", g.tokens, crate::limits::MAX_TRACE_TOKENS)
        .map_err(CliError::new)?;
    let profile = load_profile(&g)?;
    let model = ModelGeometry::from_profile(&profile)
        .map_err(|e| CliError::new(format!("model {}: {e}", profile.name)))?;
    let kind = g.kind.unwrap_or(if model.is_moe() {
        GenKind::Expert
    } else {
        GenKind::Neuron
    });
    let written = match kind {
        GenKind::Expert => {
            let mut cfg = ExpertGenConfig::new(&model, g.seed, g.tokens);
            cfg.sequences = g.sequences;
            cfg.prefill_per_sequence = g.prefill;
            cfg.prediction_accuracy = g.predict_accuracy.clone();
            let mut generator = ExpertTraceGenerator::new(&model, &cfg)?;
            write_trace(&mut generator, &g.out)?
        }
        GenKind::Neuron => {
            if model.is_moe() {
                return Err(CliError::new(format!(
                    "model {} is an MoE: synthetic neuron traces are generated for dense models \
                     only (generate an expert trace instead)",
                    model.name
                )));
            }
            let active_fraction = match (g.active_fraction, &profile.sparsity) {
                (Some(f), _) => Sourced::new(f, "given with --active-fraction"),
                (None, Some(s)) => s.active_fraction.clone(),
                (None, None) => {
                    return Err(CliError::new(format!(
                        "model {} states no activation sparsity; pass --active-fraction",
                        model.name
                    )))
                }
            };
            let mut cfg = NeuronGenConfig::new(g.seed, g.tokens, active_fraction);
            cfg.sequences = g.sequences;
            cfg.prefill_per_sequence = g.prefill;
            cfg.autocorrelation = g.autocorrelation;
            match g.neuron_predictor[..] {
                [] => {}
                [recall, precision] => {
                    cfg.predictor = Some(NeuronPredictorSpec { recall, precision })
                }
                _ => {
                    return Err(CliError::new(
                        "--neuron-predictor takes two numbers, RECALL,PRECISION",
                    ))
                }
            }
            let mut generator = NeuronTraceGenerator::new(&model, &cfg)?;
            write_trace(&mut generator, &g.out)?
        }
    };
    println!(
        "{}: synthetic {} trace of {}, {written} tokens (seed {})",
        g.out.display(),
        match kind {
            GenKind::Expert => "expert",
            GenKind::Neuron => "neuron",
        },
        model.name,
        g.seed
    );
    Ok(())
}

fn dump(file: &Path, limit: Option<u64>) -> Result<(), CliError> {
    let mut reader = TraceReader::open(file)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let write_err = |e: std::io::Error| CliError::new(format!("cannot write to stdout: {e}"));
    let header = serde_json::json!({ "header": reader.header() });
    writeln!(out, "{header}").map_err(write_err)?;
    let mut rec = TokenRecord::default();
    let mut printed = 0u64;
    while limit.is_none_or(|l| printed < l) && reader.next_into(&mut rec)? {
        writeln!(out, "{}", record_json(reader.header(), &rec)).map_err(write_err)?;
        printed += 1;
    }
    out.flush().map_err(write_err)?;
    Ok(())
}

fn record_json(h: &crate::trace::TraceHeader, rec: &TokenRecord) -> serde_json::Value {
    use serde_json::json;
    let phase = match rec.phase {
        Phase::Prefill => "prefill",
        Phase::Decode => "decode",
    };
    let mut v = json!({ "sequence": rec.sequence, "position": rec.position, "phase": phase });
    match h.kind {
        crate::trace::TraceKind::Expert => {
            let k = h.top_k as usize;
            v["experts"] = json!(rec.experts.chunks(k).collect::<Vec<_>>());
            v["scores"] = json!(rec.scores.chunks(k).collect::<Vec<_>>());
            if !rec.predicted.is_empty() {
                let ahead = h.predicted_layers_ahead as usize;
                let per_layer: Vec<Vec<Option<&[u16]>>> = (0..h.moe_layers as usize)
                    .map(|l| {
                        (1..=ahead)
                            .map(|d| rec.predicted_at(l, d, ahead, k))
                            .collect()
                    })
                    .collect();
                v["predicted"] = json!(per_layer);
            }
        }
        crate::trace::TraceKind::Neuron => {
            let layers: Vec<&[u32]> = (0..h.layers as usize).map(|l| rec.neurons_at(l)).collect();
            v["neurons"] = json!(layers);
            if h.neuron_predictions {
                let p: Vec<Option<&[u32]>> = (0..h.layers as usize)
                    .map(|l| rec.predicted_neurons_at(l))
                    .collect();
                v["predicted_neurons"] = json!(p);
            }
        }
    }
    if !rec.filled_layers.is_empty() {
        v["filled_layers"] = json!(rec.filled_layers);
    }
    v
}
