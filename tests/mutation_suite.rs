//! A fast seeded mutation suite over every input kind a user feeds edgesim (issue 16): traces,
//! device and model profiles, experiments, Mixtral routing lines and store indexes. Each
//! mutant (a flipped, inserted or deleted byte, a cut, or a number replaced by an extreme one)
//! must be accepted or refused with an error naming the file (and, for traces and routing
//! files, the record or line) — never a panic. A smaller set goes through the built binary:
//! exit code 0 or 2, the file named, no panic, and no report folder left by a failed run.
//!
//! The coverage-guided fuzz targets (`fuzz/`, docs/fuzzing.md) search far deeper; this suite
//! keeps the same properties checked on every `cargo test`.

use assert_cmd::Command;
use edgesim::compare::parse_experiment;
use edgesim::exec::store::check_index;
use edgesim::scenario::{parse_device, parse_model};
use edgesim::trace::import::read_mixtral_jsonl_from;
use edgesim::trace::{TokenSource, TraceReader};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

const EXTREMES: &[&str] = &[
    "-1",
    "0",
    "1e308",
    "-1e308",
    "18446744073709551616",
    "4294967296",
    "1000000000",
    "0.5",
    "null",
    "\"x\"",
];

/// One mutant of `input`.
fn mutate(rng: &mut ChaCha8Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    if v.is_empty() {
        return v;
    }
    match rng.gen_range(0..6) {
        0 => {
            let i = rng.gen_range(0..v.len());
            v[i] ^= 1 << rng.gen_range(0..8);
        }
        1 => {
            let i = rng.gen_range(0..=v.len());
            v.insert(i, rng.gen());
        }
        2 => {
            let i = rng.gen_range(0..v.len());
            let n = rng.gen_range(1..=16.min(v.len() - i));
            v.drain(i..i + n);
        }
        3 => v.truncate(rng.gen_range(0..v.len())),
        _ => {
            // Replace one number (a run of digits) with an extreme value.
            let starts: Vec<usize> = (0..v.len())
                .filter(|&i| v[i].is_ascii_digit() && (i == 0 || !v[i - 1].is_ascii_digit()))
                .collect();
            if starts.is_empty() {
                v[0] ^= 1;
            } else {
                let s = starts[rng.gen_range(0..starts.len())];
                let e = (s..v.len())
                    .find(|&i| !v[i].is_ascii_digit())
                    .unwrap_or(v.len());
                let x = EXTREMES[rng.gen_range(0..EXTREMES.len())];
                v.splice(s..e, x.bytes());
            }
        }
    }
    v
}

/// Runs `parse` on `count` mutants of `seed`; every error must contain every string of
/// `must_name`, and nothing may panic. Returns (accepted, refused).
fn campaign(
    kind: &str,
    seed: &[u8],
    count: usize,
    must_name: &[&str],
    parse: impl Fn(&[u8]) -> Result<(), String>,
) -> (usize, usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(16);
    let (mut ok, mut refused) = (0, 0);
    for n in 0..count {
        let mutant = mutate(&mut rng, seed);
        match catch_unwind(AssertUnwindSafe(|| parse(&mutant))) {
            Err(_) => panic!(
                "{kind} mutant {n} panicked: {:?}",
                String::from_utf8_lossy(&mutant)
            ),
            Ok(Ok(())) => ok += 1,
            Ok(Err(e)) => {
                refused += 1;
                for name in must_name {
                    assert!(
                        e.contains(name),
                        "{kind} mutant {n}: error does not name {name}: {e}"
                    );
                }
            }
        }
    }
    assert!(
        refused > count / 4,
        "{kind}: only {refused} of {count} mutants refused"
    );
    (ok, refused)
}

fn text(bytes: &[u8]) -> Result<&str, String> {
    // A file that is not UTF-8 is refused by the reader before any parser sees it.
    std::str::from_utf8(bytes).map_err(|_| "fuzz-file: not UTF-8 (named by the reader)".into())
}

/// The first records of the bundled Mixtral trace, rewritten as a small complete trace.
fn small_trace() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.est");
    let mut reader = TraceReader::open(Path::new("traces/mixtral-8x7b-synthetic.est")).unwrap();
    let mut writer = edgesim::trace::TraceWriter::create(&path, reader.header().clone()).unwrap();
    let mut rec = Default::default();
    for _ in 0..3 {
        assert!(reader.next_into(&mut rec).unwrap());
        writer.write(&rec).unwrap();
    }
    writer.finish().unwrap();
    std::fs::read(&path).unwrap()
}

#[test]
fn library_parsers_refuse_mutants_by_file_and_place() {
    let trace = small_trace();
    campaign("trace", &trace, 1200, &["fuzz-file.est"], |b| {
        let r =
            TraceReader::from_reader(b, Path::new("fuzz-file.est")).map_err(|e| e.to_string())?;
        for rec in r {
            let e = match rec {
                Ok(_) => continue,
                Err(e) => e.to_string(),
            };
            // Past the header, an error names the record or the byte offset.
            assert!(
                e.contains("record") || e.contains("byte offset") || e.contains("no records"),
                "{e}"
            );
            return Err(e);
        }
        Ok(())
    });
    let device = std::fs::read("scenarios/devices/oneplus-12.json").unwrap();
    campaign("device", &device, 500, &["fuzz-file"], |b| {
        parse_device(text(b)?, "fuzz-file.json")
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    let model = std::fs::read("scenarios/models/mixtral-8x7b.json").unwrap();
    campaign("model", &model, 500, &["fuzz-file"], |b| {
        parse_model(text(b)?, "fuzz-file.json")
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    let experiment = std::fs::read("scenarios/experiments/hobbit-orin.json").unwrap();
    campaign("experiment", &experiment, 600, &["fuzz-file"], |b| {
        parse_experiment(text(b)?, "fuzz-file.json").map(|_| ())
    });
    let mut routing = String::new();
    for layer in 0..32 {
        for t in 0..2 {
            routing += &format!(
                "{{\"dataset\": \"h\", \"problem_id\": 0, \"layer\": {layer}, \"experts\": [{}, {}], \"gating_probs\": [0.6, 0.4], \"token_idx\": {t}}}\n",
                (layer + t) % 8,
                (layer + t + 1) % 8
            );
        }
    }
    let mixtral = edgesim::model::ModelGeometry::from_profile(
        &edgesim::scenario::load_model("mixtral-8x7b").unwrap(),
    )
    .unwrap();
    campaign(
        "routing",
        routing.as_bytes(),
        600,
        &["fuzz-file.jsonl"],
        |b| {
            read_mixtral_jsonl_from(b, Path::new("fuzz-file.jsonl"), &mixtral)
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let options = edgesim::exec::store::PrepareOptions {
        source_model: "mixtral-8x7b".into(),
        scale: 64,
        precisions: vec![edgesim::model::Precision::Int4],
        seed: 1,
        key: None,
        model_file: None,
        model_file_sha256: None,
    };
    let profile = edgesim::scenario::load_model("mixtral-8x7b").unwrap();
    let scaled = edgesim::exec::scale::scale_model(&profile, 64).unwrap();
    edgesim::exec::store::prepare(&scaled, &dir.path().join("s"), &options, &|_, _| {}).unwrap();
    let index = std::fs::read(dir.path().join("s/index.json")).unwrap();
    campaign(
        "store index",
        &index,
        300,
        &["fuzz-store/index.json"],
        |b| {
            check_index(
                text(b).map_err(|_| "fuzz-store/index.json: not UTF-8".to_string())?,
                Path::new("fuzz-store/index.json"),
            )
            .map(|_| ())
        },
    );
}

/// Mutants through the built binary: exit 0 or 2, the file named, no panic, no report left by
/// a failed run.
#[test]
fn the_binary_exits_2_naming_the_file_and_leaves_no_report() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1616);
    let trace = small_trace();
    let experiment = r#"{
  "name": "mutant", "device": "jetson-agx-orin", "model": "mixtral-8x7b",
  "workloads": [{"label": "g", "generate": {"sequences": 1, "prefill": 4, "decode": 4, "seed": 3}}],
  "resident_precision": "int8", "offload_precision": "int8",
  "budgets": [{"cache_fraction": 0.25}],
  "policies": [{"name": "lru"}, {"name": "hobbit", "params": {"thresholds": [0.5, 0.8]}}],
  "max_context": 16, "seed": 7
}"#;
    for n in 0..60 {
        let (file, args): (std::path::PathBuf, Vec<String>) = if n % 2 == 0 {
            let f = dir.path().join(format!("t{n}.est"));
            std::fs::write(&f, mutate(&mut rng, &trace)).unwrap();
            (
                f.clone(),
                vec!["trace".into(), "validate".into(), f.display().to_string()],
            )
        } else {
            let f = dir.path().join(format!("e{n}.json"));
            std::fs::write(&f, mutate(&mut rng, experiment.as_bytes())).unwrap();
            let out = dir.path().join(format!("out{n}"));
            (
                f.clone(),
                vec![
                    "compare".into(),
                    "-q".into(),
                    "--jobs".into(),
                    "1".into(),
                    "-e".into(),
                    f.display().to_string(),
                    "-o".into(),
                    out.display().to_string(),
                ],
            )
        };
        let output = Command::cargo_bin("edgesim")
            .unwrap()
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !stderr.contains("panicked"),
            "mutant {n} panicked: {stderr}"
        );
        let code = output.status.code();
        assert!(
            code == Some(0) || code == Some(2),
            "mutant {n}: exit {code:?}: {stderr}"
        );
        if code == Some(2) {
            assert!(
                stderr.contains(&file.display().to_string()),
                "mutant {n}: {stderr}"
            );
            let out = dir.path().join(format!("out{n}"));
            assert!(!out.exists(), "mutant {n} left {}", out.display());
        }
    }
    // No staging folder survives either.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.contains(".partial"), "{name} left behind");
    }
}
