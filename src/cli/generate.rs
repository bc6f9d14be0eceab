//! `edgesim generate`: run a real model on a prompt, streaming the reply.

use super::CliError;
use crate::llm::fetch;
use crate::llm::format::WeightFormat;
use crate::llm::generate::{generate, GenerationRequest, StopReason};
use crate::llm::parallel::ThreadTeam;
use crate::llm::sampling::Sampler;
use crate::llm::LoadedModel;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Model name in the cache (smollm2) or a path to a .gguf file.
    #[arg(long, default_value = "smollm2")]
    pub model: String,
    /// Weight format: LUT kernels at 8, 4, 3 or 2 bits per weight, or f32 (the weights
    /// dequantized from the file: the quality reference).
    #[arg(long, default_value = "4")]
    pub bits: String,
    /// Weights per fp16 scale and centre in the LUT formats (32 or 64).
    #[arg(long)]
    pub group: Option<u16>,
    /// Bit width of the output head (logits) in the LUT formats [default: --bits].
    #[arg(long)]
    pub output_bits: Option<u8>,
    /// The user message (or the whole prompt with --raw).
    #[arg(long)]
    pub prompt: String,
    /// Replace the chat template's default system message.
    #[arg(long)]
    pub system: Option<String>,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Seed of the sampling stream (ChaCha8).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Feed the prompt as is, without the chat template.
    #[arg(long)]
    pub raw: bool,
    /// Worker threads [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Model cache directory (see `edgesim model fetch --help`).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

pub fn run(args: GenerateArgs) -> Result<(), CliError> {
    let mut format: WeightFormat = args.bits.parse()?;
    if let Some(group) = args.group {
        format = format.with_group(group)?;
    }
    if let Some(bits) = args.output_bits {
        format = format.with_output_bits(bits)?;
    }
    if !(args.temperature.is_finite() && args.temperature >= 0.0) {
        return Err(CliError::new(format!(
            "--temperature {}: must be a finite number ≥ 0",
            args.temperature
        )));
    }
    if args.max_tokens == 0 {
        return Err(CliError::new("--max-tokens must be at least 1"));
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
    // Refuse an unavailable format before reading 100 MB.
    format.builder()?;
    let cache = fetch::cache_dir(args.cache_dir.as_deref())?;
    let path = fetch::locate_model(&args.model, &cache)?;
    let loaded = LoadedModel::load(&path, format)?;
    let team = ThreadTeam::new(threads);

    team.install(|| -> Result<(), CliError> {
        eprintln!(
            "loaded {} as {} in {:.2} s; threads: {}",
            path.display(),
            loaded.model.format(),
            loaded.load_time.as_secs_f64(),
            threads
        );
        let prompt_tokens = loaded.prompt_tokens(&args.prompt, args.system.as_deref(), args.raw)?;
        let stop_tokens = loaded.stop_tokens();
        let request = GenerationRequest {
            prompt_tokens: &prompt_tokens,
            max_tokens: args.max_tokens,
            stop_tokens: &stop_tokens,
        };
        let mut sampler = Sampler::new(args.temperature, args.seed);
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let mut write_error = None;
        let (_, stats) = generate(
            &loaded.model,
            &loaded.tokenizer,
            &request,
            &mut sampler,
            &mut |text| {
                if write_error.is_none() {
                    if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
                        write_error = Some(e);
                    }
                }
            },
        )?;
        if let Some(e) = write_error {
            return Err(CliError::new(format!("writing to stdout: {e}")));
        }
        let _ = writeln!(out);
        let stop = match stats.stop {
            StopReason::StopToken(id) => format!(
                "stop token {}",
                loaded.tokenizer.token_text(id).unwrap_or("?")
            ),
            StopReason::MaxTokens => "--max-tokens reached".into(),
            StopReason::ContextFull => "context full".into(),
        };
        let decode = match stats.decode_tokens_per_s() {
            Some(rate) => format!(
                "{} tokens in {:.3} s = {rate:.1} tokens/s",
                stats.decode_steps,
                stats.decode_time.as_secs_f64()
            ),
            None => "no steps".into(),
        };
        eprintln!(
            "prefill: {} tokens in {:.3} s = {:.1} tokens/s; decode: {decode}; {stop}",
            stats.prompt_tokens,
            stats.prefill_time.as_secs_f64(),
            stats.prefill_tokens_per_s(),
        );
        Ok(())
    })
}
