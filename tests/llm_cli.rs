//! `edgesim model`, `edgesim generate` and `edgesim trace record` from the outside.

mod llm_common;

use assert_cmd::Command;

fn edgesim() -> Command {
    Command::cargo_bin("edgesim").expect("binary builds")
}

#[test]
fn bad_weight_format_options_are_named() {
    for (args, message) in [
        (&["--bits", "4", "--group", "128"][..], "group size 128"),
        (
            &["--bits", "2", "--output-bits", "6"][..],
            "output head: 6 bits",
        ),
    ] {
        let output = edgesim()
            .arg("generate")
            .args(args)
            .args(["--prompt", "hi"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{stderr}");
        assert!(output.stdout.is_empty());
    }
}

#[test]
fn trace_record_names_bad_prompts_and_fractions_before_loading_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.est");
    let missing = dir.path().join("missing.txt");
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "# only a comment\n\n").unwrap();
    let good = dir.path().join("good.txt");
    std::fs::write(&good, "Hello\n").unwrap();
    let cases: [(&std::path::Path, &[&str], &str); 3] = [
        (&missing, &[], "missing.txt: cannot read prompts"),
        (&empty, &[], "empty.txt: no prompts"),
        (&good, &["--keep-fraction", "1.5"], "--keep-fraction 1.5"),
    ];
    for (prompts, extra, message) in cases {
        let output = edgesim()
            .args(["trace", "record", "--prompts"])
            .arg(prompts)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{stderr}");
        assert!(!out.exists());
    }
}

#[test]
fn bad_arguments_are_named() {
    let output = edgesim()
        .args(["generate", "--bits", "5", "--prompt", "hi"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("weight format '5'"));

    let dir = tempfile::tempdir().unwrap();
    let output = edgesim()
        .args(["generate", "--prompt", "hi", "--cache-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("edgesim model fetch smollm2"), "{stderr}");

    let output = edgesim().args(["model", "fetch", "gpt5"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("unknown model 'gpt5'; known: smollm2")
    );
}

#[test]
fn a_file_that_is_not_gguf_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    std::fs::write(&path, b"not a model at all").unwrap();
    let output = edgesim()
        .args(["model", "info"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("model.gguf: bad magic"), "{stderr}");
}

#[test]
fn info_and_a_short_raw_generation_on_the_real_model() {
    let Some(path) = llm_common::smollm2_path() else {
        return;
    };
    let info = edgesim()
        .args(["model", "info"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(info.status.success());
    let stdout = String::from_utf8_lossy(&info.stdout);
    assert!(
        stdout.contains("30 layers, hidden 576, FFN 1536, 9 heads / 3 KV heads"),
        "{stdout}"
    );

    // The default format: 4-bit LUT blocks with an 8-bit output head.
    let output = edgesim()
        .args([
            "generate",
            "--raw",
            "--prompt",
            "The capital of France is",
            "--max-tokens",
            "3",
        ])
        .args(["--threads", "1", "--model"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("stdout: {stdout}\nstderr: {stderr}");
    assert!(output.status.success());
    assert!(stdout.contains("Paris"), "{stdout}");
    assert!(
        stderr.contains("as lut-int4-g32, output int8")
            && stderr.contains("prefill: 5 tokens")
            && stderr.contains("tokens/s"),
        "{stderr}"
    );

    // A short recorded trace (f32: the quickest to load in a debug build) that validates.
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("prompts.txt");
    std::fs::write(&prompts, "# one prompt\nIn the beginning\n").unwrap();
    let trace = dir.path().join("recorded.est");
    let output = edgesim()
        .args([
            "trace",
            "record",
            "--bits",
            "f32",
            "--raw",
            "--max-tokens",
            "2",
        ])
        .args(["--keep-fraction", "0.3", "--threads", "1", "--prompts"])
        .arg(&prompts)
        .arg("--out")
        .arg(&trace)
        .arg("--model")
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("recorded neuron trace of smollm2-135m (f32)")
            && stdout.contains("(3 prefill, 2 decode) in 1 sequences")
            && stdout.contains("active fraction 0.3000"),
        "{stdout}"
    );
    let validate = edgesim()
        .args(["trace", "validate"])
        .arg(&trace)
        .output()
        .unwrap();
    assert!(validate.status.success());
    assert!(String::from_utf8_lossy(&validate.stdout).contains("5 tokens in 1 sequences"));
}
