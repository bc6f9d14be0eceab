//! `edgesim compare` and `edgesim replay` through the built binary: the report folder, its
//! determinism, a golden pin of the default report, and every kind of bad input.

use assert_cmd::Command;
use std::path::{Path, PathBuf};

fn edgesim() -> Command {
    Command::cargo_bin("edgesim").unwrap()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs edgesim with `args`; returns (exit code, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let out = edgesim().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn default_compare_writes_a_complete_report() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("report");
    let (code, stdout, stderr) = run(&["compare", "--quiet", "--out", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("report written to"), "{stdout}");
    let names = files(&out);
    for want in [
        "results.csv",
        "results.json",
        "decode_tokens_per_s.svg",
        "time_breakdown.svg",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    // A header and one row per policy x budget of the default experiment (2 x 5).
    assert_eq!(csv.lines().count(), 1 + 10);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(json["rows"].as_array().unwrap().len(), 10);
    assert_eq!(json["experiment"]["name"], "default");
    let svg = std::fs::read_to_string(out.join("decode_tokens_per_s.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("lru") && svg.contains("on-demand"));
}

#[test]
fn same_inputs_give_byte_identical_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for dir in [&a, &b] {
        let (code, _, stderr) = run(&[
            "compare",
            "-q",
            "--jobs",
            "2",
            "--out",
            dir.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{stderr}");
    }
    let names = files(&a);
    assert_eq!(names, files(&b));
    for n in names {
        assert!(
            std::fs::read(a.join(&n)).unwrap() == std::fs::read(b.join(&n)).unwrap(),
            "{n} differs between two identical runs"
        );
    }
}

/// A regression pin, not a truth: the default report's figures as of the commit that last
/// updated `reports/golden/default/results.csv`. A change to the simulator, a profile or a
/// policy that moves them must update the file on purpose (`EDGESIM_UPDATE_GOLDEN=1 cargo test
/// --test cli_compare`) and say why in its commit.
#[test]
fn default_report_matches_the_golden_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r");
    let (code, _, stderr) = run(&["compare", "-q", "--out", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let got = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let golden = root().join("reports/golden/default/results.csv");
    if std::env::var_os("EDGESIM_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, &got).unwrap();
    }
    let want = std::fs::read_to_string(&golden).unwrap();
    assert!(
        got == want,
        "results.csv moved from {}; if the change is intended, update it with \
         EDGESIM_UPDATE_GOLDEN=1 and explain the change in the commit",
        golden.display()
    );
}

#[test]
fn replay_prints_one_policy() {
    let (code, stdout, stderr) = run(&["replay", "--policy", "lru", "--cache-fraction", "0.3"]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[1].starts_with("lru"), "{stdout}");
}

/// Runs a compare that must fail: exit code 2, the message contains every `needle`, and no
/// report folder (or staging folder) is left behind.
fn assert_rejected(args: &[&str], needles: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("report");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--out", out.to_str().unwrap()]);
    let (code, _, stderr) = run(&all);
    assert_eq!(code, 2, "args {args:?}: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "args {args:?}: `{n}` not in: {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        files(tmp.path()).is_empty(),
        "left behind: {:?}",
        files(tmp.path())
    );
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

fn default_experiment() -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(root().join("scenarios/experiments/default.json")).unwrap(),
    )
    .unwrap()
}

#[test]
fn unknown_experiment_field_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let mut e = default_experiment();
    e["budget"] = serde_json::json!(3);
    let path = write(
        tmp.path(),
        "exp.json",
        &serde_json::to_string_pretty(&e).unwrap(),
    );
    assert_rejected(
        &["compare", "-q", "--experiment", &path],
        &["exp.json", "unknown field `budget`"],
    );
}

#[test]
fn bad_device_bandwidth_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("scenarios/devices/jetson-agx-orin.json")).unwrap(),
    )
    .unwrap();
    d["memory"]["bandwidth_bytes_per_s"]["value"] = serde_json::json!(-5.0);
    let path = write(tmp.path(), "dev.json", &serde_json::to_string(&d).unwrap());
    assert_rejected(
        &["compare", "-q", "--device", &path],
        &["dev.json", "memory.bandwidth_bytes_per_s", "positive"],
    );
    d["memory"]["bandwidth_bytes_per_s"]["value"] = serde_json::json!(0.0);
    let path = write(tmp.path(), "dev0.json", &serde_json::to_string(&d).unwrap());
    assert_rejected(
        &["compare", "-q", "--device", &path],
        &["dev0.json", "memory.bandwidth_bytes_per_s"],
    );
}

#[test]
fn budget_below_the_resident_set_says_what_is_needed() {
    assert_rejected(
        &["compare", "-q", "--budget-gib", "0.5"],
        &["must stay resident", "budget"],
    );
}

#[test]
fn budget_above_device_memory_is_refused() {
    assert_rejected(
        &["compare", "-q", "--budget-gib", "100"],
        &["jetson-agx-orin", "usable memory"],
    );
}

#[test]
fn unknown_policy_and_model_list_the_known_ones() {
    assert_rejected(
        &["compare", "-q", "--policy", "no-such-policy"],
        &["unknown policy `no-such-policy`", "lru", "on-demand"],
    );
    assert_rejected(
        &["compare", "-q", "--model", "mixtral-8x22b"],
        &["unknown model `mixtral-8x22b`", "mixtral-8x7b"],
    );
}

#[test]
fn bad_traces_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let bundled = std::fs::read(root().join("traces/mixtral-8x7b-synthetic.est")).unwrap();
    let cut = tmp.path().join("cut.est");
    std::fs::write(&cut, &bundled[..bundled.len() / 2]).unwrap();
    assert_rejected(
        &["compare", "-q", "--trace", cut.to_str().unwrap()],
        &["cut.est", "truncated"],
    );
    let garbage = tmp.path().join("garbage.est");
    std::fs::write(&garbage, b"definitely not a trace file").unwrap();
    assert_rejected(
        &["compare", "-q", "--trace", garbage.to_str().unwrap()],
        &["garbage.est"],
    );
    let missing = tmp.path().join("missing.est");
    assert_rejected(
        &["compare", "-q", "--trace", missing.to_str().unwrap()],
        &["missing.est"],
    );
}

#[test]
fn a_trace_of_another_model_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let olmoe = tmp.path().join("olmoe.est");
    let (code, _, stderr) = run(&[
        "trace",
        "gen",
        "--model",
        "olmoe-1b-7b",
        "--tokens",
        "20",
        "--seed",
        "1",
        "--out",
        olmoe.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_rejected(
        &["compare", "-q", "--trace", olmoe.to_str().unwrap()],
        &["olmoe.est", "olmoe-1b-7b", "mixtral-8x7b"],
    );
}

/// A dense model with a neuron trace compares the neuron-level `on-demand` and `lru`: with the
/// whole FFN cached, `lru` reads only first loads (a neuron no earlier token activated) while
/// `on-demand` reads every active neuron of every decode token.
#[test]
fn a_dense_model_compares_neuron_policies_on_a_neuron_trace() {
    let tmp = tempfile::tempdir().unwrap();
    let trace = tmp.path().join("smollm2.est");
    let (code, _, stderr) = run(&[
        "trace",
        "gen",
        "--model",
        "smollm2-135m",
        "--tokens",
        "24",
        "--seed",
        "1",
        "--prefill",
        "4",
        "--active-fraction",
        "0.5",
        "--out",
        trace.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let out = tmp.path().join("report");
    let experiment = root().join("scenarios/experiments/smollm2-host.json");
    let (code, _, stderr) = run(&[
        "compare",
        "-q",
        "--experiment",
        experiment.to_str().unwrap(),
        "--trace",
        trace.to_str().unwrap(),
        "--cache-fraction",
        "1.0",
        "--policy",
        "on-demand",
        "--policy",
        "lru",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    let rows = json["rows"].as_array().unwrap();
    let field = |policy: &str, name: &str| {
        rows.iter()
            .find(|r| r["policy"] == policy)
            .and_then(|r| r[name].as_f64())
            .unwrap_or_else(|| panic!("{policy}: no {name} in {rows:?}"))
    };
    let on_demand = field("on-demand", "bytes_read_per_decode_token");
    let lru = field("lru", "bytes_read_per_decode_token");
    assert!(
        on_demand > 0.0 && lru < on_demand / 10.0,
        "{lru} vs {on_demand}"
    );
    assert!(field("lru", "hit_rate") > 0.5);
    assert_eq!(field("on-demand", "hit_rate"), 0.0);
    // The same neuron trace does not fit another dense model.
    assert_rejected(
        &[
            "compare",
            "-q",
            "--experiment",
            experiment.to_str().unwrap(),
            "--trace",
            trace.to_str().unwrap(),
            "--model",
            "qwen2.5-3b",
        ],
        &["smollm2.est", "layers", "qwen2.5-3b", "smollm2-135m"],
    );
}

/// Issue 11: `--policy` on an experiment with an analysis narrows the analysis to the
/// policies run (dropping absent ablations and the ceiling, and saying so) instead of failing;
/// without its subject, no analysis is written.
#[test]
fn policy_narrows_an_analysed_experiment() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("narrow");
    let (code, _, stderr) = run(&[
        "compare",
        "-q",
        "-e",
        "hobbit-orin",
        "--policy",
        "hobbit",
        "--policy",
        "hobbit -prefetch",
        "--policy",
        "lru",
        "--cache-fraction",
        "0.4",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("ablations not run, left out: `hobbit -dynamic loading`"),
        "{stderr}"
    );
    assert!(stderr.contains("ceiling `belady` not run"), "{stderr}");
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(summary.contains("narrowed to some of the experiment's policies"));
    assert!(
        summary.contains("`hobbit + Belady cache order`"),
        "{summary}"
    );
    // The kept ablation keeps its parameters (no prefetch) and is tabulated; lru is a baseline.
    let ablation = std::fs::read_to_string(out.join("ablation.csv")).unwrap();
    assert!(ablation.contains(",hobbit -prefetch,"), "{ablation}");
    assert!(!ablation.contains("dynamic loading"), "{ablation}");
    let speedups = std::fs::read_to_string(out.join("speedups.csv")).unwrap();
    assert!(speedups.contains(",lru,hobbit,"), "{speedups}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    let no_prefetch = json["experiment"]["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["label"] == "hobbit -prefetch")
        .unwrap();
    assert_eq!(no_prefetch["params"]["prefetch"], false);

    let out = tmp.path().join("no-subject");
    let (code, _, stderr) = run(&[
        "compare",
        "-q",
        "-e",
        "hobbit-orin",
        "--policy",
        "lru",
        "--cache-fraction",
        "0.4",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("analysis not written: its subject `hobbit`"),
        "{stderr}"
    );
    assert!(out.join("results.csv").exists());
    // Every report has a summary.md now (the headline); the analysis' own files are absent.
    assert!(!out.join("speedups.csv").exists());
    assert!(!out.join("ablation.csv").exists());
}
