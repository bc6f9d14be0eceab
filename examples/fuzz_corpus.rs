//! Writes the fuzz targets' seed corpora (`fuzz/run.sh` calls it; docs/fuzzing.md):
//! `cargo run --example fuzz_corpus -- DIR` fills `DIR/<target>/` from the bundled files —
//! the first records of each bundled trace, every device, model and experiment file, routing
//! lines in both importer layouts, a tiny GGUF with a tokenizer, a tiny store's index and the
//! bundled prompts — so nothing large is committed and the seeds follow the formats as they
//! change. Run from the repository root.

use edgesim::exec::store::{prepare, PrepareOptions};
use edgesim::llm::gguf::{GgufBuilder, MetadataValue};
use edgesim::model::{ModelProfile, Precision};
use edgesim::trace::{TokenSource, TraceReader, TraceWriter};
use std::fs;
use std::path::{Path, PathBuf};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: fuzz_corpus DIR (run from the repository root)")?,
    );
    traces(&out.join("trace_reader"))?;
    scenarios(&out.join("scenario"))?;
    experiments(&out.join("experiment"))?;
    routing(&out.join("mixtral_jsonl"))?;
    gguf(&out.join("gguf"))?;
    store_index(&out.join("store_index"))?;
    tokenizer(&out.join("tokenizer"))?;
    println!("seed corpora written to {}", out.display());
    Ok(())
}

fn files(dir: &str, ext: &str) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    v.retain(|p| p.extension().is_some_and(|e| e == ext));
    v.sort();
    Ok(v)
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// The first records of each bundled trace, rewritten as complete small traces (1 and 4
/// records), so seeds stay a few kB.
fn traces(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir)?;
    for path in files("traces", "est")? {
        for keep in [1usize, 4] {
            let mut reader = TraceReader::open(&path)?;
            let target = dir.join(format!("{}-{keep}.est", stem(&path)));
            let mut writer = TraceWriter::create(&target, reader.header().clone())?;
            let mut rec = Default::default();
            for _ in 0..keep {
                if !reader.next_into(&mut rec)? {
                    break;
                }
                writer.write(&rec)?;
            }
            writer.finish()?;
        }
    }
    Ok(())
}

/// Every bundled device (first byte 0) and model (first byte 1).
fn scenarios(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir)?;
    for (kind, folder) in [(0u8, "scenarios/devices"), (1u8, "scenarios/models")] {
        for path in files(folder, "json")? {
            let mut bytes = vec![kind];
            bytes.extend(fs::read(&path)?);
            fs::write(dir.join(format!("{}-{}.json", kind, stem(&path))), bytes)?;
        }
    }
    Ok(())
}

fn experiments(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir)?;
    for path in files("scenarios/experiments", "json")? {
        fs::copy(&path, dir.join(format!("{}.json", stem(&path))))?;
    }
    // A generated workload and policy parameters, so the fuzzer reaches `prepare` and the
    // policies' parameter parsing without reading a trace.
    let generated = r#"{
  "name": "fuzz-generated", "description": "seed", "device": "jetson-agx-orin",
  "model": "mixtral-8x7b",
  "workloads": [{"label": "g", "generate": {"sequences": 1, "prefill": 4, "decode": 4, "seed": 3}}],
  "resident_precision": "int8", "offload_precision": "int4",
  "budgets": [{"cache_fraction": 0.25}, {"gib": 20}],
  "policies": [{"name": "lru"}, {"name": "lfu", "params": {"reset_per_sequence": true}},
               {"name": "hobbit"}, {"name": "moe-infinity"}],
  "seed": 7
}"#;
    fs::write(dir.join("generated.json"), generated)?;
    Ok(())
}

/// Both layouts of the Mixtral routing files, one problem each, all 32 layers.
fn routing(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir)?;
    let line = |layer: u32, t: u32, key: &str, p: u32| {
        let a = (layer + t) % 8;
        let b = (layer + t + 3) % 8;
        format!(
            "{{\"dataset\": \"humaneval\", \"problem_id\": {p}, \"layer\": {layer}, \"experts\": [{a}, {b}], \"gating_probs\": [0.625, 0.375], \"{key}\": {t}}}\n"
        )
    };
    let mut decode_only = String::new();
    for layer in 0..32 {
        for t in 0..3 {
            decode_only += &line(layer, t, "token_idx", 0);
        }
    }
    fs::write(dir.join("decode-only.jsonl"), decode_only)?;
    let mut prefill_decode = String::new();
    for layer in 0..32 {
        for t in 0..2 {
            prefill_decode += &line(layer, t, "token_pos", 1);
        }
    }
    for _token in 0..2 {
        for layer in 0..32 {
            prefill_decode += &line(layer, 0, "token_pos", 1);
        }
    }
    fs::write(dir.join("prefill-decode.jsonl"), prefill_decode)?;
    Ok(())
}

/// A one-layer Llama of width 32 with a 40-token byte-level vocabulary, and the same
/// metadata without tensors.
fn gguf(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir)?;
    let mut tokens: Vec<String> = vec!["<|endoftext|>".into(), "Ġ".into()];
    tokens.extend(('a'..='z').map(String::from));
    tokens.extend(["he", "Ġt", "Ġthe", "in", "Ġin", "er"].map(String::from));
    tokens.extend(('0'..='5').map(String::from));
    let vocab = tokens.len();
    let mut types = vec![MetadataValue::I32(3)];
    types.extend(vec![MetadataValue::I32(1); vocab - 1]);
    let strings = |v: &[&str]| {
        MetadataValue::Array(
            v.iter()
                .map(|s| MetadataValue::String(s.to_string()))
                .collect(),
        )
    };
    let token_refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let (hidden, ffn) = (32usize, 32usize);
    let mut metadata_only = GgufBuilder::new();
    let mut with_tensors = GgufBuilder::new();
    for b in [&mut metadata_only, &mut with_tensors] {
        b.metadata(
            "general.architecture",
            MetadataValue::String("llama".into()),
        )
        .metadata("llama.block_count", MetadataValue::U32(1))
        .metadata("llama.context_length", MetadataValue::U32(64))
        .metadata("llama.embedding_length", MetadataValue::U32(hidden as u32))
        .metadata("llama.feed_forward_length", MetadataValue::U32(ffn as u32))
        .metadata("llama.attention.head_count", MetadataValue::U32(2))
        .metadata("llama.attention.head_count_kv", MetadataValue::U32(1))
        .metadata("llama.rope.freq_base", MetadataValue::F32(10_000.0))
        .metadata(
            "llama.attention.layer_norm_rms_epsilon",
            MetadataValue::F32(1e-5),
        )
        .metadata("llama.vocab_size", MetadataValue::U32(vocab as u32))
        .metadata("tokenizer.ggml.model", MetadataValue::String("gpt2".into()))
        .metadata("tokenizer.ggml.pre", MetadataValue::String("smollm".into()))
        .metadata("tokenizer.ggml.tokens", strings(&token_refs))
        .metadata(
            "tokenizer.ggml.token_type",
            MetadataValue::Array(types.clone()),
        )
        .metadata(
            "tokenizer.ggml.merges",
            strings(&["h e", "Ġ t", "Ġt he", "i n", "Ġ in", "e r"]),
        )
        .metadata("tokenizer.ggml.eos_token_id", MetadataValue::U32(0));
    }
    let ramp = |n: usize| {
        (0..n)
            .map(|i| (i % 17) as f32 / 17.0 - 0.5)
            .collect::<Vec<f32>>()
    };
    let h = hidden as u64;
    let f = ffn as u64;
    with_tensors
        .tensor_f32(
            "token_embd.weight",
            &[h, vocab as u64],
            &ramp(hidden * vocab),
        )
        .tensor_f32("output_norm.weight", &[h], &ramp(hidden))
        .tensor_f32("blk.0.attn_norm.weight", &[h], &ramp(hidden))
        .tensor_f32("blk.0.attn_q.weight", &[h, h], &ramp(hidden * hidden))
        .tensor_f32("blk.0.attn_k.weight", &[h, 16], &ramp(hidden * 16))
        .tensor_f32("blk.0.attn_v.weight", &[h, 16], &ramp(hidden * 16))
        .tensor_f32("blk.0.attn_output.weight", &[h, h], &ramp(hidden * hidden))
        .tensor_f32("blk.0.ffn_norm.weight", &[h], &ramp(hidden))
        .tensor_f32("blk.0.ffn_gate.weight", &[h, f], &ramp(hidden * ffn))
        .tensor_f32("blk.0.ffn_up.weight", &[h, f], &ramp(hidden * ffn))
        .tensor_f32("blk.0.ffn_down.weight", &[f, h], &ramp(hidden * ffn));
    fs::write(dir.join("metadata-only.gguf"), metadata_only.to_bytes())?;
    fs::write(dir.join("tiny-llama.gguf"), with_tensors.to_bytes())?;
    Ok(())
}

/// A tiny MoE model's store index (2 layers, 4 experts, int8 and int4).
fn store_index(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir)?;
    let model: ModelProfile = serde_json::from_str(
        r#"{
    "name": "tiny-moe", "description": "fuzz seed: 2 layers, 4 experts, top-2",
    "layers": {"value": 2, "source": "seed"}, "hidden": {"value": 128, "source": "seed"},
    "ffn": {"value": 256, "source": "seed"}, "heads": {"value": 2, "source": "seed"},
    "kv_heads": {"value": 1, "source": "seed"}, "head_dim": {"value": 64, "source": "seed"},
    "vocab": {"value": 256, "source": "seed"},
    "ffn_kind": "gated", "tied_embeddings": false, "native_bits": {"value": 16.0, "source": "seed"},
    "moe": {"experts": {"value": 4, "source": "seed"}, "top_k": {"value": 2, "source": "seed"},
            "dense_layers": {"value": 1, "source": "seed"}, "router": "softmax_topk"}
}"#,
    )?;
    let work = std::env::temp_dir().join(format!("edgesim-fuzz-store-{}", std::process::id()));
    let options = PrepareOptions {
        source_model: "tiny-moe.json".into(),
        scale: 1,
        precisions: vec![Precision::Int8, Precision::Int4],
        seed: 1,
        key: None,
        model_file: None,
        model_file_sha256: None,
    };
    prepare(&model, &work, &options, &|_, _| {})?;
    fs::copy(work.join("index.json"), dir.join("tiny-moe-index.json"))?;
    fs::remove_dir_all(&work)?;
    Ok(())
}

/// The bundled prompts (mode 0: text), a few ids (mode 1) and a vocabulary (mode 2).
fn tokenizer(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir)?;
    for (i, prompt) in fs::read_to_string("traces/smollm2-prompts.txt")?
        .lines()
        .enumerate()
    {
        let mut bytes = vec![0u8];
        bytes.extend(prompt.as_bytes());
        fs::write(dir.join(format!("prompt-{i}.txt")), bytes)?;
    }
    fs::write(
        dir.join("special.txt"),
        b"\0<|im_start|>user\nhe in the<|im_end|>\n",
    )?;
    fs::write(
        dir.join("ids.bin"),
        [1u8, 0, 0, 1, 0, 7, 1, 3, 1, 0xff, 0xff],
    )?;
    fs::write(
        dir.join("vocab.txt"),
        "\x02a\nb\nab\nĠ\nĠa\n<|x|>\n#merges\na b\nĠ a\n",
    )?;
    Ok(())
}
