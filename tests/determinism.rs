//! Same inputs, same bytes: a report folder (tables, plots, analysis-free JSON, timelines) is
//! byte-identical across two runs, across `--jobs 1`, `--jobs 2` and `--jobs 4`, and the rows
//! of `--shard 0/2` and `--shard 1/2` put together are the unsharded rows, in the unsharded
//! order.
//!
//! The experiment is small on purpose (a 200-token generated Mixtral trace, two budgets, six
//! policies including the offline Belady and HOBBIT with its recorded predictions, timelines
//! on): the whole file runs in seconds, and every run still crosses threads.

use assert_cmd::Command;
use std::path::{Path, PathBuf};

fn edgesim() -> Command {
    Command::cargo_bin("edgesim").unwrap()
}

/// Every file under `dir`, as paths relative to it, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The trace and experiment of this file's runs, in `dir`.
fn inputs(dir: &Path) {
    edgesim()
        .current_dir(dir)
        .args([
            "trace",
            "gen",
            "--model",
            "mixtral-8x7b",
            "--tokens",
            "200",
            "--seed",
            "11",
            "--sequences",
            "4",
            "--prefill",
            "10",
            "--predict-accuracy",
            "0.96,0.90,0.90",
            "--out",
            "t.est",
        ])
        .assert()
        .success();
    let exp = r#"{
        "name": "determinism", "description": "small Mixtral sweep for the determinism test",
        "device": "jetson-agx-orin", "model": "mixtral-8x7b", "trace": "t.est",
        "resident_precision": "int8", "offload_precision": "int8",
        "budgets": [{"cache_fraction": 0.1}, {"cache_fraction": 0.4}],
        "policies": [{"name": "on-demand"}, {"name": "lru"}, {"name": "belady"},
                     {"name": "lfu"}, {"name": "hobbit"}, {"name": "mixtral-offloading"}],
        "seed": 5
    }"#;
    std::fs::write(dir.join("exp.json"), exp).unwrap();
}

/// `compare` of the experiment into `dir/out` with `extra` flags; returns the folder.
fn compare(dir: &Path, out: &str, extra: &[&str]) -> PathBuf {
    edgesim()
        .current_dir(dir)
        .args([
            "compare",
            "-q",
            "-e",
            "exp.json",
            "--timeline",
            "300",
            "-o",
            out,
        ])
        .args(extra)
        .assert()
        .success();
    dir.join(out)
}

fn assert_identical(a: &Path, b: &Path, what: &str) {
    let names = files(a);
    assert_eq!(names, files(b), "{what}: different files");
    assert!(names.len() > 5, "{what}: only {names:?}");
    for n in names {
        assert!(
            std::fs::read(a.join(&n)).unwrap() == std::fs::read(b.join(&n)).unwrap(),
            "{what}: {} differs",
            n.display()
        );
    }
}

/// `results.csv` split into its header and rows.
fn csv(dir: &Path) -> (String, Vec<String>) {
    let text = std::fs::read_to_string(dir.join("results.csv")).unwrap();
    let mut lines = text.lines().map(str::to_string);
    let header = lines.next().unwrap();
    (header, lines.collect())
}

/// `results.json`'s rows.
fn json_rows(dir: &Path) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
    v["rows"].as_array().unwrap().clone()
}

#[test]
fn reports_are_byte_identical_across_runs_and_thread_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    inputs(dir);
    let first = compare(dir, "jobs2-a", &["--jobs", "2"]);
    let second = compare(dir, "jobs2-b", &["--jobs", "2"]);
    assert_identical(&first, &second, "two runs with --jobs 2");
    let one = compare(dir, "jobs1", &["--jobs", "1"]);
    assert_identical(&first, &one, "--jobs 2 against --jobs 1");
    let four = compare(dir, "jobs4", &["--jobs", "4"]);
    assert_identical(&first, &four, "--jobs 2 against --jobs 4");
    // The timelines are part of what is compared.
    assert!(files(&first)
        .iter()
        .any(|f| f.to_string_lossy().starts_with("timeline-")));
}

#[test]
fn two_shards_together_are_the_unsharded_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    inputs(dir);
    let whole = compare(dir, "whole", &["--jobs", "2"]);
    let s0 = compare(dir, "shard0", &["--jobs", "2", "--shard", "0/2"]);
    let s1 = compare(dir, "shard1", &["--jobs", "1", "--shard", "1/2"]);
    let (header, rows) = csv(&whole);
    assert_eq!(rows.len(), 12);
    let (h0, rows0) = csv(&s0);
    let (h1, rows1) = csv(&s1);
    assert_eq!((&h0, &h1), (&header, &header));
    assert_eq!((rows0.len(), rows1.len()), (6, 6));
    // Run i of the sweep is in shard i % 2, at place i / 2.
    let merged: Vec<String> = (0..rows.len())
        .map(|i| [&rows0, &rows1][i % 2][i / 2].clone())
        .collect();
    assert_eq!(merged, rows, "results.csv rows");
    let (j, j0, j1) = (json_rows(&whole), json_rows(&s0), json_rows(&s1));
    let merged: Vec<serde_json::Value> = (0..j.len())
        .map(|i| [&j0, &j1][i % 2][i / 2].clone())
        .collect();
    assert_eq!(merged, j, "results.json rows");
    // Each shard's timelines are the unsharded run's timelines of its runs, byte for byte.
    for shard in [&s0, &s1] {
        let timelines: Vec<PathBuf> = files(shard)
            .into_iter()
            .filter(|f| f.to_string_lossy().starts_with("timeline-"))
            .collect();
        assert_eq!(timelines.len(), 6);
        for t in timelines {
            assert!(
                std::fs::read(shard.join(&t)).unwrap() == std::fs::read(whole.join(&t)).unwrap(),
                "{} differs between a shard and the whole sweep",
                t.display()
            );
        }
    }
}
