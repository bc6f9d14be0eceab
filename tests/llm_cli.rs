//! `edgesim model` and `edgesim generate` from the outside.

mod llm_common;

use assert_cmd::Command;

fn edgesim() -> Command {
    Command::cargo_bin("edgesim").expect("binary builds")
}

#[test]
fn lut_bit_widths_are_refused_honestly_until_the_kernels_are_integrated() {
    let output = edgesim()
        .args(["generate", "--bits", "4", "--prompt", "hi"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--bits 4") && stderr.contains("not integrated"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
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
        stderr.contains("prefill: 5 tokens") && stderr.contains("tokens/s"),
        "{stderr}"
    );
}
