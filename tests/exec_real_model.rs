//! The real model's offloaded FFN path: a store made from the GGUF, the session computing
//! SmolLM2's forward pass from neuron bundles, and the in-memory references. Skips without
//! the cached model file.

mod llm_common;

use edgesim::exec::model::{dense_reference, in_memory_sparse, ModelSession, Quality, RecordedRun};
use edgesim::exec::store::{PrepareOptions, WeightStore};
use edgesim::llm::format::WeightFormat;
use edgesim::llm::LoadedModel;
use edgesim::model::Precision;
use edgesim::trace::{ForwardPass, PassGrouper, TraceReader};
use std::path::Path;
use std::sync::Arc;

const TRACE: &str = "traces/smollm2-135m-recorded.est";

fn passes(limit: usize) -> Vec<ForwardPass> {
    let reader = TraceReader::open(Path::new(TRACE)).unwrap();
    PassGrouper::new(reader, 512)
        .take(limit)
        .collect::<Result<_, _>>()
        .unwrap()
}

fn store(gguf: &Path, dir: &Path, cluster: u32) -> WeightStore {
    let profile = edgesim::scenario::load_model("smollm2-135m").unwrap();
    let options = PrepareOptions {
        source_model: "smollm2-135m".into(),
        scale: 1,
        precisions: vec![Precision::Int8],
        seed: 1,
        key: None,
        model_file: Some(gguf.display().to_string()),
        model_file_sha256: None,
    };
    edgesim::exec::model::prepare_real(gguf, &profile, dir, &options, cluster, &|_, _| {}).unwrap();
    WeightStore::open(dir, None).unwrap()
}

#[test]
fn sparse_runs_from_store_bytes_are_deterministic_and_close_to_dense() {
    let Some(gguf) = llm_common::smollm2_path() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = store(&gguf, dir.path(), 16);
    assert_eq!(store.index.neuron_cluster, Some(16));
    let loaded = LoadedModel::load(&gguf, WeightFormat::lut(8).unwrap()).unwrap();
    let run = Arc::new(RecordedRun::open(Path::new(TRACE)).unwrap());
    assert_eq!(run.records.len(), 170);
    let dense = dense_reference(&loaded.model, &run).unwrap();
    let model = Arc::new(loaded.model.without_ffn());
    // The first sequence: its prefill and decode passes.
    let passes = passes(20);
    let a = in_memory_sparse(
        &ModelSession::new(model.clone(), run.clone()).unwrap(),
        &store,
        Precision::Int8,
        &passes,
    )
    .unwrap();
    let b = in_memory_sparse(
        &ModelSession::new(model.clone(), run.clone()).unwrap(),
        &store,
        Precision::Int8,
        &passes,
    )
    .unwrap();
    assert_eq!(a.len(), passes.len());
    let q = Quality::compare(&run, &a, &b, &dense);
    eprintln!("sparse vs dense over {} passes: {q:?}", passes.len());
    assert!(q.identical_to_in_memory, "two runs differ: {q:?}");
    // Half the neurons (the trace's most active), 8-bit bundles: most greedy choices stay
    // the dense model's. A sparse path that computed the wrong neurons or mixed up gate, up
    // and down would agree on almost none.
    assert!(
        q.agree_with_dense * 10 >= q.predictions * 7,
        "only {} of {} agree with the dense model",
        q.agree_with_dense,
        q.predictions
    );
}

#[test]
fn a_plan_that_skips_a_demanded_cluster_is_an_error() {
    let Some(gguf) = llm_common::smollm2_path() else {
        return;
    };
    let loaded = LoadedModel::load(&gguf, WeightFormat::lut(8).unwrap()).unwrap();
    let run = Arc::new(RecordedRun::open(Path::new(TRACE)).unwrap());
    let model = Arc::new(loaded.model.without_ffn());
    let session = ModelSession::new(model, run.clone()).unwrap();
    let pass = &passes(1)[0];
    let attn = |l: u32| edgesim::model::TensorRef::new(l, edgesim::model::TensorKind::Attention);
    session
        .compute(attn(0), pass.batch(), Precision::Int8, &[])
        .unwrap();
    // Layer 0's FFN was never computed: moving to layer 1 must fail, naming the layer.
    let err = session
        .compute(attn(1), pass.batch(), Precision::Int8, &[])
        .unwrap_err();
    assert!(
        err.contains("layer 0") && err.contains("not computed"),
        "{err}"
    );
}

fn edgesim() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("edgesim").unwrap();
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// `edgesim exec prepare --gguf` of SmolLM2 at int8 in clusters of `cluster` into `out`.
fn prepare_cli(gguf: &Path, cluster: u32, out: &Path) {
    edgesim()
        .args(["exec", "prepare", "--model", "smollm2-135m", "--gguf"])
        .arg(gguf)
        .args([
            "--precisions",
            "int8",
            "--cluster",
            &cluster.to_string(),
            "--out",
        ])
        .arg(out)
        .assert()
        .success();
}

/// `edgesim validate` of the bundled SmolLM2 experiment (`lru` only, `passes` passes).
fn validate_cli(store: &Path, passes: u32, out: &Path) -> assert_cmd::assert::Assert {
    edgesim()
        .args([
            "validate",
            "-e",
            "scenarios/experiments/validation-smollm2.json",
            "--policy",
            "lru",
            "--max-passes",
            &passes.to_string(),
            "--store",
        ])
        .arg(store)
        .arg("-o")
        .arg(out)
        .assert()
}

/// `exec prepare --gguf` then `validate` on the real model through the built binary: every
/// run's output must be bit-identical to the in-memory sparse run, and the bundle says so.
#[test]
fn validate_runs_the_real_model_from_the_store() {
    let Some(gguf) = llm_common::smollm2_path() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    prepare_cli(&gguf, 16, &store);
    let out = dir.path().join("bundle");
    validate_cli(&store, 3, &out).success();
    let quality = std::fs::read_to_string(out.join("quality.csv")).unwrap();
    let rows: Vec<&str> = quality.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{quality}");
    for row in rows {
        let f: Vec<&str> = row.split(',').collect();
        // policy,label,budget,predictions,agree_dense,with_next,agree_next,identical,max_diff
        assert_eq!(f[3], "3", "{row}");
        assert_eq!(f[7], "true", "{row}");
    }
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(summary.contains("## Output of the real model"), "{summary}");
    // The plan's clusters must match the store's: a store of single neurons cannot serve
    // clusters of 16, and says so before anything runs.
    let single = dir.path().join("store1");
    prepare_cli(&gguf, 1, &single);
    let failed = validate_cli(&single, 2, &dir.path().join("bundle1"))
        .failure()
        .code(2);
    let err = String::from_utf8_lossy(&failed.get_output().stderr).into_owned();
    assert!(err.contains("clusters of 1 neurons"), "{err}");
    assert!(
        !dir.path().join("bundle1").exists(),
        "no bundle after a failure"
    );
}
