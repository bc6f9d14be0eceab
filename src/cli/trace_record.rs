//! `edgesim trace record`: a neuron-activation trace from a real model's FFN activations.
//! Parsing and printing only; the work is in [`crate::llm::record`].

use super::CliError;
use crate::llm::fetch;
use crate::llm::format::WeightFormat;
use crate::llm::parallel::ThreadTeam;
use crate::llm::record::{record_neuron_trace, RecordOptions};
use crate::llm::LoadedModel;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct RecordArgs {
    /// Model name in the cache (smollm2) or a path to a .gguf file.
    #[arg(long, default_value = "smollm2")]
    pub model: String,
    /// Prompts, one per line (blank lines and lines starting with # are skipped); each prompt
    /// is one sequence of the trace.
    #[arg(long)]
    pub prompts: PathBuf,
    /// The trace file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Weight format the model runs in while recording: 8, 4, 3, 2 (LUT kernels) or f32.
    #[arg(long, default_value = "4")]
    pub bits: String,
    /// Fraction of each layer's activations marked active (per-layer threshold on
    /// |SiLU(gate)·up|).
    #[arg(long, default_value_t = 0.5)]
    pub keep_fraction: f64,
    /// Greedy decode steps per prompt at most (a stop token ends a reply earlier).
    #[arg(long, default_value_t = 32)]
    pub max_tokens: usize,
    /// Feed prompts as they are, without the chat template.
    #[arg(long)]
    pub raw: bool,
    /// Replace the chat template's default system message.
    #[arg(long)]
    pub system: Option<String>,
    /// Model id for the trace header [default: the known model's profile name (smollm2-135m),
    /// else the file name without extension].
    #[arg(long)]
    pub model_id: Option<String>,
    /// Worker threads [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Model cache directory (see `edgesim model fetch --help`).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

/// Prompts of a file: one per line, blank lines and `#` comments skipped.
fn read_prompts(path: &Path) -> Result<Vec<String>, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::new(format!("{}: cannot read prompts: {e}", path.display())))?;
    let prompts: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .collect();
    if prompts.is_empty() {
        return Err(CliError::new(format!(
            "{}: no prompts (one per line; blank lines and lines starting with # are skipped)",
            path.display()
        )));
    }
    Ok(prompts)
}

pub fn run(args: RecordArgs) -> Result<(), CliError> {
    let format: WeightFormat = args.bits.parse()?;
    if !(args.keep_fraction > 0.0 && args.keep_fraction <= 1.0) {
        return Err(CliError::new(format!(
            "--keep-fraction {}: must be in (0, 1]",
            args.keep_fraction
        )));
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    crate::limits::check_count(
        "--threads",
        threads as u64,
        crate::limits::MAX_THREADS as u64,
    )
    .map_err(CliError::new)?;
    crate::limits::check_count(
        "--max-tokens",
        args.max_tokens as u64,
        crate::limits::MAX_NEW_TOKENS as u64,
    )
    .map_err(CliError::new)?;
    if threads == 0 {
        return Err(CliError::new("--threads must be at least 1"));
    }
    let prompts = read_prompts(&args.prompts)?;
    let cache = fetch::cache_dir(args.cache_dir.as_deref())?;
    let path = fetch::locate_model(&args.model, &cache)?;
    // A known model, by name or by its file's name, carries its catalog profile name.
    let known = fetch::known_model(&args.model).or_else(|| {
        let file_name = path.file_name()?.to_str()?;
        fetch::KNOWN_MODELS
            .iter()
            .find(|m| m.file_name == file_name)
    });
    let model_id = match (&args.model_id, known) {
        (Some(id), _) => id.clone(),
        (None, Some(known)) => known.profile.to_string(),
        (None, None) => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| args.model.clone()),
    };
    let loaded = LoadedModel::load(&path, format)?;
    let prompts_source = args
        .prompts
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| args.prompts.display().to_string());
    let options = RecordOptions {
        keep_fraction: args.keep_fraction,
        max_new_tokens: args.max_tokens,
        raw: args.raw,
        system: args.system.clone(),
        model_id,
        prompts_source,
    };
    let team = ThreadTeam::new(threads);
    let recording = team.install(|| record_neuron_trace(&loaded, &prompts, &options))?;
    let written = recording.write(&args.out)?;
    let mean_fraction =
        recording.active_fractions.iter().sum::<f64>() / recording.active_fractions.len() as f64;
    println!(
        "{}: recorded neuron trace of {} ({}), {written} tokens ({} prefill, {} decode) in {} \
         sequences; active fraction {mean_fraction:.4} (requested {})",
        args.out.display(),
        recording.header.model,
        loaded.model.format(),
        recording.prefill_tokens,
        recording.decode_tokens,
        prompts.len(),
        args.keep_fraction
    );
    Ok(())
}
