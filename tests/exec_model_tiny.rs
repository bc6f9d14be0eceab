//! The real-model path of the executor on a tiny random Llama (runs everywhere, no download):
//! `exec prepare --gguf` writes its weights with the FFN as neuron clusters, and `validate`
//! runs it under neuron-level policies, computing every FFN from the bytes each policy read.
//! The outputs must be bit-identical to the in-memory sparse run, and, with every neuron
//! active, the greedy choices must be the dense model's.

mod exec_common;
mod llm_common;

use assert_cmd::Command;
use edgesim::exec::model::RecordedRun;
use edgesim::trace::{
    Phase, SourceKind, TokenRecord, TraceHeader, TraceKind, TraceSource, TraceWriter, VecSource,
    FORMAT_NAME, FORMAT_VERSION,
};
use llm_common::tiny::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// The tiny GGUF's architecture as a model profile (head_dim and vocabulary included).
fn profile() -> String {
    format!(
        r#"{{
        "name": "tiny-llama", "description": "test model: the tiny random Llama of tests/llm_common/tiny.rs",
        "layers": {{"value": {LAYERS}, "source": "test"}}, "hidden": {{"value": {HIDDEN}, "source": "test"}},
        "ffn": {{"value": {FFN}, "source": "test"}}, "heads": {{"value": {HEADS}, "source": "test"}},
        "kv_heads": {{"value": {KV_HEADS}, "source": "test"}}, "head_dim": {{"value": {HEAD_DIM}, "source": "test"}},
        "vocab": {{"value": {VOCAB}, "source": "test"}},
        "ffn_kind": "gated", "tied_embeddings": true, "native_bits": {{"value": 32.0, "source": "test"}}
    }}"#
    )
}

/// A recorded-style neuron trace: two sequences (a 5-token prefill, then 4 decode tokens),
/// each token activating `keep` of every layer's neurons at random (all of them at 1.0), with
/// the token ids in the header as `trace record` writes them.
fn header_and_records(keep: f64, seed: u64) -> (TraceHeader, Vec<TokenRecord>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut ids = Vec::new();
    let mut records = Vec::new();
    for sequence in 0..2u32 {
        let tokens: Vec<u32> = (0..9).map(|_| rng.gen_range(0..VOCAB as u32)).collect();
        for position in 0..tokens.len() as u32 {
            let mut r = TokenRecord {
                sequence,
                position,
                phase: if position < 5 {
                    Phase::Prefill
                } else {
                    Phase::Decode
                },
                neuron_offsets: vec![0],
                ..TokenRecord::default()
            };
            for _ in 0..LAYERS {
                r.neurons
                    .extend((0..FFN as u32).filter(|_| keep >= 1.0 || rng.gen_bool(keep)));
                r.neuron_offsets.push(r.neurons.len() as u32);
            }
            records.push(r);
        }
        ids.push(tokens);
    }
    let header = TraceHeader {
        format: FORMAT_NAME.to_string(),
        version: FORMAT_VERSION,
        kind: TraceKind::Neuron,
        model: "tiny-llama".into(),
        layers: LAYERS as u32,
        first_moe_layer: 0,
        moe_layers: 0,
        experts: 0,
        top_k: 0,
        scores_normalized: false,
        predicted_layers_ahead: 0,
        neurons_per_layer: vec![FFN as u32; LAYERS],
        neuron_predictions: false,
        source: TraceSource {
            kind: SourceKind::Recorded,
            description: "test: random active neurons".into(),
            parameters: serde_json::json!({ "token_ids": ids }),
            targets: Vec::new(),
        },
    };
    (header, records)
}

fn write_trace(path: &Path, keep: f64) {
    let (header, records) = header_and_records(keep, 11);
    let mut w = TraceWriter::create(path, header).unwrap();
    for r in &records {
        w.write(r).unwrap();
    }
    w.finish().unwrap();
}

fn edgesim(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("edgesim").unwrap();
    c.current_dir(dir);
    c
}

/// The tiny model's GGUF, profile, device, store (clusters of 16) and an experiment over
/// `trace`, in `dir`.
fn setup(dir: &Path, trace: &str) {
    std::fs::write(
        dir.join("tiny.gguf"),
        gguf_bytes(&random_tensors(42), "llama"),
    )
    .unwrap();
    std::fs::write(dir.join("tiny-llama.json"), profile()).unwrap();
    std::fs::write(
        dir.join("device.json"),
        serde_json::to_vec_pretty(&exec_common::host_like()).unwrap(),
    )
    .unwrap();
    edgesim(dir)
        .args([
            "exec",
            "prepare",
            "--model",
            "tiny-llama.json",
            "--gguf",
            "tiny.gguf",
            "--cluster",
            "16",
            "--precisions",
            "int8",
            "--out",
            "store",
        ])
        .assert()
        .success();
    let exp = format!(
        r#"{{
        "name": "tiny-real", "device": "device.json", "model": "tiny-llama.json", "trace": "{trace}",
        "resident_precision": "int8", "offload_precision": "int8",
        "budgets": [{{"cache_fraction": 0.2}}, {{"cache_fraction": 1.0}}],
        "policies": [{{"name": "on-demand", "params": {{"cluster_neurons": 16}}}},
                     {{"name": "lru", "params": {{"cluster_neurons": 16}}}}],
        "seed": 4
    }}"#
    );
    std::fs::write(dir.join("exp.json"), exp).unwrap();
}

/// `quality.csv` rows as (predictions, agree_with_dense, identical).
fn quality(bundle: &Path) -> Vec<(u32, u32, bool)> {
    let text = std::fs::read_to_string(bundle.join("quality.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|row| {
            let f: Vec<&str> = row.split(',').collect();
            (f[3].parse().unwrap(), f[4].parse().unwrap(), f[7] == "true")
        })
        .collect()
}

/// `edgesim validate` of `exp.json` on `store` in `dir`, with `extra` arguments.
fn validate(dir: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    edgesim(dir)
        .args([
            "validate",
            "-e",
            "exp.json",
            "--store",
            "store",
            "--device",
            "device.json",
        ])
        .args(extra)
        .assert()
}

/// The error output of a command that must be refused (exit code 2).
fn refused(a: assert_cmd::assert::Assert) -> String {
    let a = a.failure().code(2);
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

#[test]
fn offloaded_runs_are_bit_identical_to_in_memory_and_dense_when_every_neuron_is_active() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write_trace(&dir.join("all.est"), 1.0);
    setup(dir, "all.est");
    validate(dir, &["-o", "bundle"]).success();
    let rows = quality(&dir.join("bundle"));
    assert_eq!(rows.len(), 4, "2 policies x 2 budgets");
    eprintln!("quality rows: {rows:?}");
    for (predictions, agree, identical) in rows {
        // Two prefill passes and 2 x 4 decode passes.
        assert_eq!(predictions, 10);
        assert!(identical, "not bit-identical to the in-memory sparse run");
        // Every neuron computed from 8-bit bundles: the dense model's choices, up to near ties
        // flipped by the 8-bit weights (9 of 10 here; bundles with gate and up swapped give 1).
        assert!(
            agree >= 8,
            "only {agree} of 10 choices are the dense model's"
        );
    }
}

#[test]
fn half_the_neurons_still_run_bit_identically() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write_trace(&dir.join("half.est"), 0.5);
    setup(dir, "half.est");
    validate(dir, &["-o", "bundle"]).success();
    let rows = quality(&dir.join("bundle"));
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|r| r.2), "{rows:?}");
    let summary = std::fs::read_to_string(dir.join("bundle/summary.md")).unwrap();
    assert!(
        summary.contains("the real model: weights from"),
        "{summary}"
    );
}

#[test]
fn a_trace_without_token_ids_is_refused_with_a_fix() {
    let (mut header, records) = header_and_records(0.5, 3);
    header.source.parameters = serde_json::json!({});
    let err = RecordedRun::read(&mut VecSource::new(header, records), "old.est").unwrap_err();
    assert!(
        err.contains("old.est") && err.contains("token_ids") && err.contains("record"),
        "{err}"
    );
}

#[test]
fn prepare_refuses_a_profile_that_is_not_the_files_and_cluster_without_a_model_file() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(
        dir.join("tiny.gguf"),
        gguf_bytes(&random_tensors(42), "llama"),
    )
    .unwrap();
    let stderr = |args: &[&str]| refused(edgesim(dir).args(args).assert());
    let err = stderr(&[
        "exec",
        "prepare",
        "--model",
        "smollm2-135m",
        "--gguf",
        "tiny.gguf",
        "--out",
        "s1",
    ]);
    assert!(
        err.contains("tiny.gguf") && err.contains("give the profile of this file"),
        "{err}"
    );
    let err = stderr(&[
        "exec",
        "prepare",
        "--model",
        "smollm2-135m",
        "--cluster",
        "4",
        "--out",
        "s2",
    ]);
    assert!(err.contains("only used with --gguf"), "{err}");
    assert!(!dir.join("s1").exists() && !dir.join("s2").exists());
}

/// A sequence that does not start at position 0 would continue the previous sequence's KV
/// cache; the session refuses it instead.
#[test]
fn a_sequence_not_starting_at_zero_is_refused() {
    use edgesim::exec::model::ModelSession;
    use edgesim::model::{Precision, TensorKind, TensorRef};
    let file =
        edgesim::llm::gguf::GgufFile::parse(gguf_bytes(&random_tensors(42), "llama"), "tiny.gguf")
            .unwrap();
    let model =
        edgesim::llm::model::LlamaModel::load(&file, &edgesim::llm::matvec::F32Builder).unwrap();
    let record = |sequence, position| TokenRecord {
        sequence,
        position,
        neuron_offsets: vec![0; LAYERS + 1],
        ..TokenRecord::default()
    };
    let run = RecordedRun {
        records: vec![record(0, 0), record(0, 1), record(1, 2), record(1, 3)],
        token_ids: vec![1, 2, 3, 4],
        ffn: FFN as u32,
        layers: LAYERS,
    };
    let session = ModelSession::new(
        std::sync::Arc::new(model.without_ffn()),
        std::sync::Arc::new(run),
    )
    .unwrap();
    let attn = |l: u32| TensorRef::new(l, TensorKind::Attention);
    let head = TensorRef::new(0, TensorKind::Embedding);
    for l in 0..LAYERS as u32 {
        session.compute(attn(l), 2, Precision::Int8, &[]).unwrap();
    }
    session.compute(head, 1, Precision::Int8, &[]).unwrap();
    let err = session
        .compute(attn(0), 2, Precision::Int8, &[])
        .unwrap_err();
    assert!(err.contains("sequence 1 at position 2"), "{err}");
}

/// The store's attention and head come from the model file at run time: a file replaced since
/// the store was written is refused rather than paired with the store's FFN.
#[test]
fn a_replaced_model_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write_trace(&dir.join("half.est"), 0.5);
    setup(dir, "half.est");
    std::fs::write(
        dir.join("tiny.gguf"),
        gguf_bytes(&random_tensors(43), "llama"),
    )
    .unwrap();
    let err = refused(validate(dir, &["-o", "bundle"]));
    assert!(
        err.contains("not the file the store was made from"),
        "{err}"
    );
    assert!(!dir.join("bundle").exists());
}

/// `validate --policy NAME` keeps the experiment's parameters for NAME: a label picks its
/// spec, and a policy without a label is labelled by its name (the ambiguous case, a name
/// listed only under other labels, is `compare::narrow`'s unit test).
#[test]
fn a_policy_listed_twice_is_chosen_by_label() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write_trace(&dir.join("half.est"), 0.5);
    setup(dir, "half.est");
    let exp = std::fs::read_to_string(dir.join("exp.json"))
        .unwrap()
        .replace(
            r#"{"name": "on-demand", "params": {"cluster_neurons": 16}}"#,
            r#"{"name": "lru", "label": "lru-1", "params": {"cluster_neurons": 1}}"#,
        );
    std::fs::write(dir.join("exp.json"), exp).unwrap();
    let run = |policy: &str, out: &str| {
        validate(dir, &["--policy", policy, "--max-passes", "2", "-o", out])
    };
    // `lru` is the unlabelled lru: clusters of 16, as the store holds them.
    run("lru", "b1").success();
    // The label picks its spec: `lru-1` plans clusters of 1, which this store (16) refuses.
    let err = refused(run("lru-1", "b2"));
    assert!(err.contains("clusters of 16 neurons"), "{err}");
}
