//! The `edgesim trace` commands end to end through the built binary.

use assert_cmd::Command;
use std::path::PathBuf;

fn edgesim() -> Command {
    Command::cargo_bin("edgesim").unwrap()
}

fn run_ok(args: &[&str]) -> String {
    let out = edgesim().args(args).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn gen_stats_and_dump_are_deterministic_and_parseable() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.est");
    let b = dir.path().join("b.est");
    for path in [&a, &b] {
        run_ok(&[
            "trace",
            "gen",
            "--model",
            "olmoe-1b-7b",
            "--tokens",
            "300",
            "--seed",
            "9",
            "--sequences",
            "3",
            "--prefill",
            "20",
            "--predict-accuracy",
            "0.9,0.8",
            "--out",
            path.to_str().unwrap(),
        ]);
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let json_a = run_ok(&["trace", "stats", "--json", a.to_str().unwrap()]);
    let json_b = run_ok(&["trace", "stats", "--json", b.to_str().unwrap()]);
    assert_eq!(json_a, json_b);
    let v: serde_json::Value = serde_json::from_str(&json_a).unwrap();
    assert_eq!(v["summary"]["tokens"], 300);
    assert_eq!(v["summary"]["prefill_tokens"], 60);
    assert_eq!(v["expert"]["layers"].as_array().unwrap().len(), 16);
    assert_eq!(
        v["expert"]["recorded_predictions"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let table = run_ok(&["trace", "stats", a.to_str().unwrap()]);
    assert!(table.contains("lru@8") && table.contains("reuse distance") && table.contains("d=2"));
    let dump = run_ok(&["trace", "dump", "--limit", "2", a.to_str().unwrap()]);
    let lines: Vec<serde_json::Value> = dump
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["header"]["source"]["kind"], "synthetic");
    assert_eq!(lines[1]["experts"].as_array().unwrap().len(), 16);
    assert_eq!(lines[2]["position"], 1);
}

#[test]
fn neuron_gen_needs_a_sparsity_and_accepts_a_profile_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("n.est");
    // SmolLM2 states no sparsity: refused with a message, exit 2, nothing written.
    let o = edgesim()
        .args([
            "trace",
            "gen",
            "--model",
            "smollm2-135m",
            "--tokens",
            "20",
            "--seed",
            "1",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--active-fraction"));
    assert!(!out.exists());
    // The same model from a profile file, with an active fraction and predictor output.
    let profile = dir.path().join("smol.json");
    std::fs::write(
        &profile,
        serde_json::to_string(&edgesim::scenario::load_model("smollm2-135m").unwrap()).unwrap(),
    )
    .unwrap();
    run_ok(&[
        "trace",
        "gen",
        "--model",
        profile.to_str().unwrap(),
        "--tokens",
        "40",
        "--seed",
        "1",
        "--active-fraction",
        "0.2",
        "--neuron-predictor",
        "0.9,0.7",
        "--out",
        out.to_str().unwrap(),
    ]);
    let summary = run_ok(&["trace", "validate", out.to_str().unwrap()]);
    assert!(summary.contains("neuron trace of smollm2-135m (30 layers, 1536 to 1536 neurons per layer, with predictor output)"), "{summary}");
    let v: serde_json::Value = serde_json::from_str(&run_ok(&[
        "trace",
        "stats",
        "--json",
        out.to_str().unwrap(),
    ]))
    .unwrap();
    let active = v["neuron"]["mean_active_fraction"].as_f64().unwrap();
    // 40 tokens x 30 x 1536 neurons: within 0.01 of 0.2.
    assert!((active - 0.2).abs() < 0.01, "{active}");
}

#[test]
fn import_reports_its_repairs() {
    let input = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/mixtral-8x7b-routing/humaneval_2_routing.jsonl");
    if !input.exists() {
        eprintln!("skipped: {} is absent", input.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("h.est");
    let text = run_ok(&[
        "trace",
        "import",
        "--format",
        "mixtral-jsonl",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        text.contains("10779 lines -> 338 tokens")
            && text.contains("37 filled at the end of their layer"),
        "{text}"
    );
    let summary = run_ok(&["trace", "validate", out.to_str().unwrap()]);
    assert!(
        summary.contains("imported") && summary.contains("37 (token, layer) cells were filled in"),
        "{summary}"
    );
}
