//! The executor's commands end to end: `calibrate --quick` writes a profile that passes the
//! profile checks with every number's source saying how it was measured; `exec prepare`,
//! `exec run` and `validate` work on a tiny model; bad input exits 2 before any timing, with
//! nothing written.

mod exec_common;

use assert_cmd::Command;
use exec_common::*;
use std::path::Path;

fn edgesim() -> Command {
    Command::cargo_bin("edgesim").unwrap()
}

/// `edgesim validate` on the inputs of [`inputs`] in `dir`, with `extra` arguments.
fn validate(dir: &Path, extra: &[&str]) -> Command {
    let mut c = edgesim();
    c.current_dir(dir).args([
        "validate",
        "-e",
        "exp.json",
        "--store",
        "store",
        "--device",
        "device.json",
    ]);
    c.args(extra);
    c
}

/// `edgesim exec run` on the inputs of [`inputs`] in `dir`, with `extra` arguments.
fn exec_run(dir: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    edgesim()
        .current_dir(dir)
        .args([
            "exec",
            "run",
            "--store",
            "store",
            "-e",
            "exp.json",
            "--device",
            "device.json",
        ])
        .args(extra)
        .assert()
}

/// A tiny model profile, a trace for it, a host-like device profile and an experiment, in `dir`.
fn inputs(dir: &Path) {
    std::fs::write(dir.join("tiny.json"), TINY_MODEL).unwrap();
    std::fs::write(
        dir.join("device.json"),
        serde_json::to_vec_pretty(&host_like()).unwrap(),
    )
    .unwrap();
    edgesim()
        .current_dir(dir)
        .args([
            "trace",
            "gen",
            "--model",
            "tiny.json",
            "--tokens",
            "16",
            "--seed",
            "3",
            "--sequences",
            "2",
            "--prefill",
            "3",
            "--out",
            "t.est",
        ])
        .assert()
        .success();
    let exp = r#"{
        "name": "tiny-validation", "device": "device.json", "model": "tiny.json", "trace": "t.est",
        "resident_precision": "int8", "offload_precision": "int4",
        "budgets": [{"cache_fraction": 0.25}, {"cache_fraction": 0.5}, {"cache_fraction": 1.0}],
        "policies": [{"name": "on-demand"}, {"name": "lru"}], "seed": 4
    }"#;
    std::fs::write(dir.join("exp.json"), exp).unwrap();
    edgesim()
        .current_dir(dir)
        .args(["exec", "prepare", "--model", "tiny.json", "--out", "store"])
        .assert()
        .success();
}

#[test]
fn quick_calibration_writes_a_valid_profile_whose_numbers_say_how_they_were_measured() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("host.json");
    edgesim()
        .args(["calibrate", "--quick", "--out"])
        .arg(&out)
        .arg("--scratch-dir")
        .arg(dir.path().join("scratch"))
        .assert()
        .success();
    let text = std::fs::read_to_string(&out).unwrap();
    let profile = edgesim::scenario::parse_device(&text, &out.display().to_string()).unwrap();
    profile.check().unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(edgesim::scenario::citation_problems(&v).is_empty());
    let mut sources = Vec::new();
    collect_sources(&v, &mut sources);
    assert!(sources.len() > 10);
    for s in sources {
        assert!(
            s.contains("measured by `edgesim calibrate`") || s.starts_with("NOT measured"),
            "{s}"
        );
    }
    // The scratch file is gone.
    assert_eq!(
        std::fs::read_dir(dir.path().join("scratch"))
            .unwrap()
            .count(),
        0
    );
}

/// `calibrate --cpu-only` rewrites the `cpu` section alone: every other field of the profile
/// it updates stays as it was, and the new sources name the command, the CPU and the kernels'
/// instruction-set path. A profile that is not there is an error naming it (exit 2).
#[test]
fn cpu_only_calibration_rewrites_only_the_cpu_section() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("host.json");
    let bundled = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/devices/host.json"),
    )
    .unwrap();
    std::fs::write(&out, &bundled).unwrap();
    edgesim()
        .args(["calibrate", "--quick", "--cpu-only", "--out"])
        .arg(&out)
        .assert()
        .success();
    let before: serde_json::Value = serde_json::from_str(&bundled).unwrap();
    let after: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let (before, after) = (before.as_object().unwrap(), after.as_object().unwrap());
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (key, value) in before {
        if key != "cpu" {
            assert_eq!(value, &after[key], "{key} changed");
        }
    }
    assert_ne!(before["cpu"], after["cpu"]);
    let mut sources = Vec::new();
    collect_sources(&after["cpu"], &mut sources);
    let isa = edgesim::kernels::Isa::detected().describe();
    for s in sources {
        assert!(
            s.contains("measured by `edgesim calibrate` (--cpu-only, QUICK mode")
                && s.contains(&format!("the kernels' {isa} path")),
            "{s}"
        );
    }
    let absent = edgesim()
        .args(["calibrate", "--quick", "--cpu-only", "--out"])
        .arg(dir.path().join("absent.json"))
        .assert()
        .code(2);
    let message = String::from_utf8_lossy(&absent.get_output().stderr).to_string();
    assert!(message.contains("absent.json"), "{message}");
}

fn collect_sources(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(serde_json::Value::String(s)) = m.get("source") {
                out.push(s.clone());
            }
            m.values().for_each(|x| collect_sources(x, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_sources(x, out)),
        _ => {}
    }
}

#[test]
fn validate_writes_a_bundle_for_every_policy_and_budget() {
    let dir = tempfile::tempdir().unwrap();
    inputs(dir.path());
    validate(dir.path(), &["--out", "bundle"])
        .assert()
        .success();
    let b = dir.path().join("bundle");
    for f in [
        "tokens.csv",
        "summary.csv",
        "breakdown.csv",
        "runs.json",
        "bundle.json",
        "scatter_decode.svg",
        "breakdown_decode.svg",
        "series_lru_25-cached.svg",
    ] {
        assert!(b.join(f).exists(), "{f} missing");
    }
    let summary = std::fs::read_to_string(b.join("summary.csv")).unwrap();
    let header = summary.lines().next().unwrap();
    for col in [
        "policy",
        "metric",
        "median_abs_pct_error",
        "p90_abs_pct_error",
        "bias_pct",
        "edgesim_commit",
        "device_profile",
        "trace",
        "seed",
    ] {
        assert!(header.split(',').any(|c| c == col), "{col} not in {header}");
    }
    // 2 policies x 3 budgets x 2 metrics.
    assert_eq!(summary.lines().count(), 1 + 12);
    // 2 sequences x (1 prefill pass + 5 decode passes) per run, 6 runs.
    let tokens = std::fs::read_to_string(b.join("tokens.csv")).unwrap();
    assert_eq!(tokens.lines().count(), 1 + 6 * 12);
    let bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("bundle.json")).unwrap()).unwrap();
    assert_eq!(bundle["seed"], 4);
    assert_eq!(bundle["scale"], 1);
}

#[test]
fn validate_with_disk_probes_records_a_probe_per_measured_run() {
    let dir = tempfile::tempdir().unwrap();
    inputs(dir.path());
    validate(
        dir.path(),
        &[
            "--policy",
            "on-demand",
            "--repeat",
            "2",
            "--probe-disk",
            "--out",
            "bundle",
        ],
    )
    .assert()
    .success();
    let runs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("bundle/runs.json")).unwrap())
            .unwrap();
    let runs = runs.as_array().unwrap();
    // One policy at three budgets, two repetitions each, a probe before every one.
    assert_eq!(runs.len(), 3);
    for run in runs {
        let reps = run["repetitions"].as_array().unwrap();
        assert_eq!(reps.len(), 2);
        for rep in reps {
            let probe = &rep["disk_probe"];
            let measured = probe["measured_bytes_per_s"].as_f64().unwrap();
            let profile = probe["profile_bytes_per_s"].as_f64().unwrap();
            assert!(measured > 0.0 && profile > 0.0, "{probe}");
            let scale = probe["scale"].as_f64().unwrap();
            assert!((scale - measured / profile).abs() < 1e-9 * scale, "{probe}");
        }
    }
    let summary = std::fs::read_to_string(dir.path().join("bundle/summary.md")).unwrap();
    assert!(summary.contains("disk probe"), "{summary}");
}

#[test]
fn exec_run_prints_prediction_and_measurement() {
    let dir = tempfile::tempdir().unwrap();
    inputs(dir.path());
    let out = exec_run(dir.path(), &["-p", "lru", "--cache-fraction", "0.5"]).success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(
        text.contains("decode tokens/s") && text.contains("O_DIRECT") || text.contains("buffered"),
        "{text}"
    );
    assert!(text.contains("emulated ops: none"), "{text}");
}

#[test]
fn a_damaged_store_is_refused_before_timing_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    inputs(dir.path());
    let data = dir.path().join("store/weights.bin");
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&data, bytes).unwrap();
    let out = validate(dir.path(), &["--out", "bundle"]).assert().code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        err.contains("weights.bin") && err.contains("fails its checksum"),
        "{err}"
    );
    assert!(!err.contains("[1/"), "no run started: {err}");
    assert!(!dir.path().join("bundle").exists());
}

#[test]
fn a_budget_too_small_for_the_resident_set_names_what_is_needed() {
    let dir = tempfile::tempdir().unwrap();
    inputs(dir.path());
    let out = exec_run(dir.path(), &["-p", "on-demand", "--budget-gib", "0.0001"]).code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        err.contains("must stay resident") && err.contains("bytes"),
        "{err}"
    );
}

#[test]
fn a_store_of_another_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    inputs(dir.path());
    let out = edgesim()
        .current_dir(dir.path())
        .args(["validate", "-e"])
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("scenarios/experiments/validation-host.json"),
        )
        .args([
            "--store",
            "store",
            "--device",
            "device.json",
            "--out",
            "bundle",
        ])
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        err.contains("holds model `tiny.json`") && err.contains("mixtral-8x7b"),
        "{err}"
    );
    assert!(!dir.path().join("bundle").exists());
}
