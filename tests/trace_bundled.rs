//! The bundled trace is what the command documented in traces/README.md generates, byte for
//! byte, and it passes validation.

use assert_cmd::Command;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `edgesim trace gen ...` line that follows the "regenerate" marker in traces/README.md.
fn documented_command() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("traces/README.md")).unwrap();
    let after = readme
        .split("<!-- regenerate: the test reads the next command line -->")
        .nth(1)
        .expect("README has the regenerate marker");
    let line = after
        .lines()
        .find(|l| l.starts_with("edgesim trace gen"))
        .expect("a command line follows the marker");
    line.split_whitespace().skip(1).map(String::from).collect()
}

#[test]
fn regenerating_reproduces_the_bundled_trace_byte_for_byte() {
    let mut args = documented_command();
    let out_flag = args
        .iter()
        .position(|a| a == "--out")
        .expect("--out in the command");
    let bundled = root().join(&args[out_flag + 1]);
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("fresh.est");
    args[out_flag + 1] = fresh.display().to_string();
    Command::cargo_bin("edgesim")
        .unwrap()
        .args(&args)
        .assert()
        .success();
    let want = std::fs::read(&bundled).unwrap();
    let got = std::fs::read(&fresh).unwrap();
    assert!(
        want.len() < 1 << 20,
        "bundled trace must stay well under 1 MB"
    );
    assert!(
        got == want,
        "regenerated trace differs from {}",
        bundled.display()
    );
    let v = edgesim::trace::validate_file(&bundled).unwrap();
    assert_eq!(
        (
            v.summary.sequences,
            v.summary.prefill_tokens,
            v.summary.decode_tokens
        ),
        (4, 256, 256)
    );
    assert_eq!(v.header.predicted_layers_ahead, 3);
}
