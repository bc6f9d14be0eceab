//! `edgesim compare` with several workloads and an analysis: the report holds the analysis
//! files, its speedups are the ratios of the runs' own rows, and it is byte-identical when run
//! twice. Every bundled experiment resolves (profiles, budgets, workloads) without error.

use assert_cmd::Command;
use edgesim::compare::{load_experiment, prepare, BUNDLED_EXPERIMENTS};
use std::collections::BTreeMap;
use std::path::Path;

const EXPERIMENT: &str = r#"{
  "name": "tiny-hobbit",
  "device": "jetson-agx-orin",
  "model": "mixtral-8x7b",
  "workloads": [
    {"label": "[4,3]", "generate": {"seed": 11, "sequences": 1, "prefill": 4, "decode": 3, "predict_accuracy": [0.96, 0.9]}},
    {"label": "[2,5]", "generate": {"seed": 12, "sequences": 2, "prefill": 2, "decode": 5}}
  ],
  "resident_precision": "int8",
  "offload_precision": "int8",
  "budgets": [{"cache_fraction": 0.2}, {"cache_fraction": 0.4}],
  "policies": [
    {"name": "hobbit"},
    {"name": "hobbit", "label": "hobbit -prefetch", "params": {"prefetch": false}},
    {"name": "lru"},
    {"name": "belady"}
  ],
  "seed": 3,
  "analysis": {"subject": "hobbit", "ablations": ["hobbit -prefetch"], "ceiling": "belady"}
}"#;

fn run(dir: &Path, out: &str) -> std::path::PathBuf {
    let exp = dir.join("tiny.json");
    std::fs::write(&exp, EXPERIMENT).unwrap();
    let out = dir.join(out);
    Command::cargo_bin("edgesim")
        .unwrap()
        .args(["compare", "-q", "-e"])
        .arg(&exp)
        .arg("-o")
        .arg(&out)
        .assert()
        .success();
    out
}

fn csv_rows(path: &Path) -> Vec<BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let headers = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            headers
                .iter()
                .zip(rec.unwrap().iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

#[test]
fn workloads_and_analysis_make_a_consistent_deterministic_report() {
    let tmp = tempfile::tempdir().unwrap();
    let a = run(tmp.path(), "a");
    for f in [
        "results.csv",
        "speedups.csv",
        "ablation.csv",
        "precision_shares.csv",
        "summary.md",
        "speedup.svg",
        "ablation.svg",
        "time_breakdown.svg",
        "tokens_per_s_vs_budget-4-3.svg",
        "workload-4-3/decode_tokens_per_s.svg",
        "workload-2-5/hit_rate.svg",
    ] {
        assert!(a.join(f).is_file(), "missing {f}");
    }
    let results = csv_rows(&a.join("results.csv"));
    // 2 workloads x 2 budgets x 4 policies, workload-major.
    assert_eq!(results.len(), 16);
    assert_eq!(results[0]["workload"], "[4,3]");
    assert_eq!(results[15]["workload"], "[2,5]");
    let tok = |w: &str, b: &str, l: &str| -> f64 {
        results
            .iter()
            .find(|r| r["workload"] == w && r["budget_label"] == b && r["label"] == l)
            .unwrap()["decode_tokens_per_s"]
            .parse()
            .unwrap()
    };
    let speedups = csv_rows(&a.join("speedups.csv"));
    // Baselines: lru and belady (not the ablation), per workload and budget.
    assert_eq!(speedups.len(), 2 * 2 * 2);
    for s in &speedups {
        let want = tok(&s["workload"], &s["budget"], "hobbit")
            / tok(&s["workload"], &s["budget"], &s["baseline"]);
        let got: f64 = s["decode_speedup"].parse().unwrap();
        assert!((got - want).abs() < 1e-9 * want.max(1.0), "{s:?}");
    }
    // Belady is an upper bound for LRU's hit rate on every workload and budget.
    for r in results.iter().filter(|r| r["label"] == "lru") {
        let b = results
            .iter()
            .find(|x| {
                x["label"] == "belady"
                    && x["workload"] == r["workload"]
                    && x["budget_label"] == r["budget_label"]
            })
            .unwrap();
        assert!(b["hits"].parse::<u64>().unwrap() >= r["hits"].parse::<u64>().unwrap());
    }
    let b = run(tmp.path(), "b");
    for f in [
        "results.csv",
        "speedups.csv",
        "ablation.csv",
        "summary.md",
        "results.json",
    ] {
        let x = std::fs::read(a.join(f)).unwrap();
        let y = std::fs::read(b.join(f)).unwrap();
        assert!(x == y, "{f} differs between two runs");
    }
}

#[test]
fn every_bundled_experiment_resolves() {
    for (name, _) in BUNDLED_EXPERIMENTS {
        let (exp, base) = load_experiment(name).unwrap();
        let p = prepare(exp, base.as_deref()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!p.runs.is_empty(), "{name}");
        // Every policy can be built at every budget (budget floors, device support).
        for run in &p.runs {
            let ctx = edgesim::scenario::experiment::policy_context(
                p.model.clone(),
                p.device.clone(),
                &p.experiment,
                run.budget_bytes,
                p.max_context,
                run.params.clone(),
            );
            edgesim::policy::build(&run.policy, ctx)
                .unwrap_or_else(|e| panic!("{name}: {} at {}: {e}", run.label, run.budget_label));
        }
    }
}

#[test]
fn an_analysis_naming_an_unknown_policy_is_refused_with_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tmp.path().join("bad.json");
    std::fs::write(
        &exp,
        EXPERIMENT.replace("\"ceiling\": \"belady\"", "\"ceiling\": \"opt\""),
    )
    .unwrap();
    let out = Command::cargo_bin("edgesim")
        .unwrap()
        .args(["compare", "-q", "-e"])
        .arg(&exp)
        .assert()
        .code(2)
        .get_output()
        .stderr
        .clone();
    let msg = String::from_utf8_lossy(&out);
    assert!(msg.contains("bad.json") && msg.contains("`opt`"), "{msg}");
}
