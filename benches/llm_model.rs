//! SmolLM2-135M-Instruct end to end: prefill and decode speed per weight format and thread
//! count, side by side in one run, as a markdown table with the machine's load average.
//!
//! `cargo bench --bench llm_model` (all formats: f32, 8, 4, 3, 2 bits on 1 and 2 threads), or
//! `cargo bench --bench llm_model -- 4 2` for some formats. Skips with a message when the model
//! is not in the cache (`edgesim model fetch smollm2`).
//!
//! What is measured, as llama.cpp's `llama-bench` does (`pp128` / `tg128`), so the figures can
//! be set beside its anchors in `docs/real-model.md`:
//! - prefill: one forward pass over a 128-token prompt from an empty cache (last token's
//!   logits only), tokens/s = 128 / time;
//! - decode: 128 single-token forward passes from an empty cache, each producing the full
//!   logits, tokens/s = 128 / total time.
//!
//! - matrices only: the matrix calls of one decode step (each layer's four fused matrices and
//!   the output head, on a fixed input vector) without attention, norms or activations:
//!   tokens/s if that were all, and the weight bytes per second it streams.
//!
//! Each figure is the median of `REPEATS` runs after one warm-up run. The 1-minute load
//! average (`/proc/loadavg`) is printed before and after each row: other processes on the
//! machine slow these figures down, so compare rows of the same run and prefer quiet runs.
//!
//! For the side-by-side script (`benches/vs-llama-cpp/run.sh`): `LLM_MODEL_THREADS=1,2`,
//! `LLM_MODEL_DECODE_TOKENS=64` (llama-bench's `-n 64`), `LLM_MODEL_REPEATS=3` and
//! `LLM_MODEL_CSV=1` (lines `csv,FORMAT,THREADS,PREFILL_TOKENS_PER_S,DECODE_TOKENS_PER_S`,
//! commas in the format name written as `;`, and no "matrices only" column).

use edgesim::llm::format::WeightFormat;
use edgesim::llm::model::{LlamaModel, LogitsWanted};
use edgesim::llm::parallel::ThreadTeam;
use edgesim::llm::LoadedModel;
use std::time::Instant;

/// Genesis 1–12, King James Version (public domain; `data-public/README.md`).
const TEXT: &str = include_str!("../data-public/kjv-genesis-1-12.txt");
const TOKENS: usize = 128;
const REPEATS: usize = 5;
const THREADS: [usize; 2] = [1, 2];

/// An environment setting, or `default` when unset.
fn setting(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value}: expected a count")),
        Err(_) => default,
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// Seconds for one prefill of `tokens`.
fn prefill_seconds(model: &LlamaModel, tokens: &[u32]) -> f64 {
    let mut cache = model.new_cache(tokens.len());
    let mut logits = Vec::new();
    let started = Instant::now();
    model
        .forward_into(tokens, &mut cache, LogitsWanted::Last, None, &mut logits)
        .expect("prefill");
    started.elapsed().as_secs_f64()
}

/// Seconds for single-token steps over `tokens` from an empty cache.
fn decode_seconds(model: &LlamaModel, tokens: &[u32]) -> f64 {
    let mut cache = model.new_cache(tokens.len());
    let mut logits = Vec::new();
    // The first step sizes the workspace; it is part of the measurement, as in a real reply.
    let started = Instant::now();
    for &token in tokens {
        model
            .forward_into(&[token], &mut cache, LogitsWanted::Last, None, &mut logits)
            .expect("decode step");
    }
    started.elapsed().as_secs_f64()
}

/// Seconds for the matrix calls of `steps` decode steps.
fn matrices_seconds(model: &LlamaModel, steps: usize) -> f64 {
    let weights = model.weights();
    let hidden = model.config().hidden_size;
    let ffn = model.config().ffn_size;
    let x: Vec<f32> = (0..hidden.max(ffn))
        .map(|i| ((i * 7919 % 1013) as f32 - 506.0) / 300.0)
        .collect();
    let mut y = vec![0.0f32; model.config().vocab_size.max(2 * ffn)];
    let started = Instant::now();
    for _ in 0..steps {
        for layer in &weights.layers {
            for (matrix, cols) in [
                (&layer.attn_qkv, hidden),
                (&layer.attn_output, hidden),
                (&layer.ffn_gate_up, hidden),
                (&layer.ffn_down, ffn),
            ] {
                matrix
                    .gemv(&x[..cols], &mut y[..matrix.rows()])
                    .expect("gemv");
            }
        }
        weights
            .output
            .gemv(&x[..hidden], &mut y[..weights.output.rows()])
            .expect("gemv");
    }
    started.elapsed().as_secs_f64()
}

fn main() {
    let requested: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let formats: Vec<String> = if requested.is_empty() {
        ["f32", "8", "4", "3", "2"].map(String::from).to_vec()
    } else {
        requested
    };
    let cache = match edgesim::llm::fetch::cache_dir(None) {
        Ok(cache) => cache,
        Err(e) => return eprintln!("SKIPPED llm_model: {e}"),
    };
    let path = match edgesim::llm::fetch::locate_model("smollm2", &cache) {
        Ok(path) => path,
        Err(e) => return eprintln!("SKIPPED llm_model: {e}"),
    };
    let decode_tokens = setting("LLM_MODEL_DECODE_TOKENS", TOKENS);
    let repeats = setting("LLM_MODEL_REPEATS", REPEATS).max(1);
    let csv = std::env::var("LLM_MODEL_CSV").is_ok();
    let threads: Vec<usize> = match std::env::var("LLM_MODEL_THREADS") {
        Ok(list) => list
            .split([',', ' '])
            .filter(|t| !t.is_empty())
            .map(|t| {
                t.parse()
                    .expect("LLM_MODEL_THREADS: a list of thread counts")
            })
            .collect(),
        Err(_) => THREADS.to_vec(),
    };
    if !csv {
        println!(
            "SmolLM2-135M-Instruct, {TOKENS}-token prefill and {decode_tokens} decode steps, \
             median of {repeats}; load average before → after each row"
        );
        println!();
        println!(
            "| format | weight MB read per token | threads | prefill tokens/s | decode tokens/s | \
             matrices only: tokens/s (GB/s) | load |"
        );
        println!("|---|---|---|---|---|---|---|");
    }
    let teams: Vec<ThreadTeam> = threads.iter().map(|&t| ThreadTeam::new(t)).collect();
    for spec in &formats {
        let format: WeightFormat = match spec.parse() {
            Ok(format) => format,
            Err(e) => return eprintln!("bad format {spec}: {e}"),
        };
        let loaded = LoadedModel::load(&path, format).expect("the cached model loads");
        let mut tokens = loaded.tokenizer.encode(TEXT).expect("encodes");
        tokens.truncate(TOKENS.max(decode_tokens));
        let prompt = &tokens[..TOKENS];
        let steps = &tokens[..decode_tokens];
        let model = &loaded.model;
        let megabytes = model.weights().matrix_bytes() as f64 / 1e6;
        for team in &teams {
            let before = load_average();
            let (prefill, decode, matrices) = team.install(|| {
                prefill_seconds(model, prompt);
                decode_seconds(model, steps);
                let repeat = |f: &dyn Fn() -> f64| median((0..repeats).map(|_| f()).collect());
                (
                    repeat(&|| prefill_seconds(model, prompt)),
                    repeat(&|| decode_seconds(model, steps)),
                    if csv {
                        f64::NAN
                    } else {
                        repeat(&|| matrices_seconds(model, TOKENS))
                    },
                )
            });
            if csv {
                println!(
                    "csv,{},{},{:.2},{:.2}",
                    model.format().replace(',', ";"),
                    team.threads(),
                    TOKENS as f64 / prefill,
                    decode_tokens as f64 / decode
                );
                continue;
            }
            println!(
                "| {} | {megabytes:.1} | {} | {:.1} | {:.1} | {:.1} ({:.1}) | {before} → {} |",
                model.format(),
                team.threads(),
                TOKENS as f64 / prefill,
                decode_tokens as f64 / decode,
                TOKENS as f64 / matrices,
                megabytes * TOKENS as f64 / matrices / 1e3,
                load_average()
            );
        }
    }
}
