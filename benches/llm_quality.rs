//! Quality of SmolLM2-135M-Instruct per weight format, against the f32-dequantized model: the
//! table of `docs/real-model.md`.
//!
//! `cargo bench --bench llm_quality` (the default formats), or with format specs:
//! `cargo bench --bench llm_quality -- 4 4/g64 2/minmax`. A spec is `f32` or
//! `BITS[/gGROUP][/oOUTPUT_BITS][/minmax|/refined|/gptq][/lut8]` (`lut8`: 8-bit matrices on the
//! LUT kernels instead of the dot-product ones). Skips with a message when the model is not
//! in the cache (`edgesim model fetch smollm2`).
//!
//! Columns:
//! - top-1 agreement: for each prompt of `data-public/chat-prompts.txt` (chat template), the
//!   f32 model's greedy reply (up to `REPLY_TOKENS` tokens) is the reference; the candidate
//!   runs prompt + reply in one pass and must predict each next token of the reply the same
//!   way. Reported as matching predictions / all predictions.
//! - perplexity: Genesis 1–12 (KJV, `data-public/kjv-genesis-1-12.txt`, 9,488 tokens) by
//!   llama.cpp's method (`eval::PerplexityMethod::LlamaCpp`): 18 windows of 512 tokens, each
//!   from an empty cache, the last 255 tokens of each scored, so the figures can be set beside
//!   `llama-perplexity -c 512` on the same file.
//!
//! The figures are deterministic (no timing involved): rerunning gives the same table.

use edgesim::llm::eval::{next_token_predictions, perplexity, PerplexityMethod};
use edgesim::llm::format::WeightFormat;
use edgesim::llm::generate::{generate, GenerationRequest};
use edgesim::llm::matvec::{EightBitKernel, Requantizer};
use edgesim::llm::parallel::ThreadTeam;
use edgesim::llm::sampling::Sampler;
use edgesim::llm::LoadedModel;

const TEXT: &str = include_str!("../data-public/kjv-genesis-1-12.txt");
const PROMPTS: &str = include_str!("../data-public/chat-prompts.txt");
const CONTEXT: usize = 512;
const REPLY_TOKENS: usize = 32;
const DEFAULT_SPECS: [&str; 9] = [
    "f32", "8", "4", "4/g64", "4/o4", "3", "3/minmax", "2", "2/minmax",
];

fn parse_spec(spec: &str) -> Result<WeightFormat, String> {
    let mut parts = spec.split('/');
    let mut format: WeightFormat = parts
        .next()
        .unwrap_or_default()
        .parse()
        .map_err(|e| format!("{spec}: {e}"))?;
    for part in parts {
        let digits = |rest: &str| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit());
        format = if let Some(group) = part.strip_prefix('g').filter(|g| digits(g)) {
            let group = group.parse().map_err(|_| format!("{spec}: bad group"))?;
            format.with_group(group).map_err(|e| e.to_string())?
        } else if let Some(bits) = part.strip_prefix('o') {
            let bits = bits
                .parse()
                .map_err(|_| format!("{spec}: bad output bits"))?;
            format.with_output_bits(bits).map_err(|e| e.to_string())?
        } else if part == "minmax" {
            format.with_requantizer(Requantizer::MinMax)
        } else if part == "refined" {
            format.with_requantizer(Requantizer::Refined)
        } else if part == "gptq" {
            format.with_requantizer(Requantizer::Gptq)
        } else if part == "lut8" {
            format.with_eight_bit_kernel(EightBitKernel::Lut)
        } else {
            return Err(format!("{spec}: unknown part '{part}'"));
        };
    }
    Ok(format)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn main() {
    let requested: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let specs: Vec<String> = if requested.is_empty() {
        DEFAULT_SPECS.map(String::from).to_vec()
    } else {
        requested
    };
    let formats: Vec<WeightFormat> = match specs.iter().map(|s| parse_spec(s)).collect() {
        Ok(formats) => formats,
        Err(e) => return eprintln!("{e}"),
    };
    let cache = match edgesim::llm::fetch::cache_dir(None) {
        Ok(cache) => cache,
        Err(e) => return eprintln!("SKIPPED llm_quality: {e}"),
    };
    let path = match edgesim::llm::fetch::locate_model("smollm2", &cache) {
        Ok(path) => path,
        Err(e) => return eprintln!("SKIPPED llm_quality: {e}"),
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let team = ThreadTeam::new(threads);
    let reference = LoadedModel::load(&path, WeightFormat::F32).expect("the cached model loads");
    let text_tokens = reference.tokenizer.encode(TEXT).expect("encodes");
    let prompts: Vec<&str> = PROMPTS
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    // The reference: each prompt followed by the f32 model's greedy reply.
    let stops = reference.stop_tokens();
    let sequences: Vec<(Vec<u32>, usize, Vec<u32>)> = team.install(|| {
        prompts
            .iter()
            .map(|prompt| {
                let prompt_tokens = reference.prompt_tokens(prompt, None, false).unwrap();
                let request = GenerationRequest {
                    prompt_tokens: &prompt_tokens,
                    max_tokens: REPLY_TOKENS,
                    stop_tokens: &stops,
                };
                let (reply, _) = generate(
                    &reference.model,
                    &reference.tokenizer,
                    &request,
                    &mut Sampler::new(0.0, 0),
                    &mut |_| {},
                )
                .unwrap();
                let mut sequence = prompt_tokens.clone();
                sequence.extend(&reply[..reply.len() - 1]);
                (sequence, prompt_tokens.len() - 1, reply)
            })
            .collect()
    });
    let predictions: usize = sequences.iter().map(|(_, _, reply)| reply.len()).sum();
    println!(
        "SmolLM2-135M-Instruct quality per weight format: top-1 agreement with f32 over {} \
         greedy-reply predictions ({} chat prompts, replies up to {REPLY_TOKENS} tokens); \
         perplexity of KJV Genesis 1–12 ({} tokens), {}",
        predictions,
        prompts.len(),
        text_tokens.len(),
        PerplexityMethod::default().describe(CONTEXT)
    );
    println!();
    println!("| format | bits/weight (all matrices) | matrix MB | top-1 agreement | perplexity |");
    println!("|---|---|---|---|---|");
    for format in formats {
        let loaded = if format == WeightFormat::F32 {
            None
        } else {
            Some(LoadedModel::load(&path, format).expect("loads"))
        };
        let model = &loaded.as_ref().unwrap_or(&reference).model;
        let (agree, ppl) = team.install(|| {
            let mut agree = 0usize;
            for (sequence, from, reply) in &sequences {
                let predicted = next_token_predictions(model, sequence, *from).unwrap();
                agree += predicted.iter().zip(reply).filter(|(a, b)| a == b).count();
            }
            (agree, perplexity(model, &text_tokens, CONTEXT).unwrap())
        });
        let weights = model.weights();
        println!(
            "| {} | {:.2} | {:.1} | {:.3} ({agree}/{predictions}) | {:.3} |",
            model.format(),
            weights.matrix_bytes() as f64 * 8.0 / weights.matrix_weights() as f64,
            weights.matrix_bytes() as f64 / 1e6,
            agree as f64 / predictions as f64,
            ppl.perplexity
        );
    }
    println!();
    println!("load average at the end: {}", load_average());
}
