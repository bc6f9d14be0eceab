//! A store key never leaves the key file or the environment variable it was given in: after
//! every command that can see a key (encrypted `exec prepare` from a key file and from
//! `EDGESIM_STORE_KEY`, `exec run` and `validate` with the right key, a wrong key, no key and
//! malformed keys, and `compare` / `validate` with the variable set), nothing the tool wrote —
//! report folders, timelines, validation bundles, store files and indexes, anything left in the
//! working folder, stdout and stderr of every command — holds the key as raw bytes, as hex
//! (either case, or any 8-byte run of it), or as base64 (standard or URL-safe, padded or not).

mod exec_common;

use assert_cmd::Command;
use exec_common::{host_like, TINY_MODEL};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

fn edgesim(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("edgesim").unwrap();
    c.current_dir(dir).env_remove("EDGESIM_STORE_KEY");
    c
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Base64 of `bytes` with the given alphabet, padded with `=`.
fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Every form of `key` that must not appear in any output.
fn needles(key: &[u8; 32]) -> Vec<(String, Vec<u8>)> {
    const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let lower = hex(key);
    let mut n = vec![
        ("raw bytes".to_string(), key.to_vec()),
        ("hex".to_string(), lower.clone().into_bytes()),
        ("HEX".to_string(), lower.to_uppercase().into_bytes()),
    ];
    for (name, alphabet) in [("base64", STD), ("base64url", URL)] {
        let padded = base64(key, alphabet);
        n.push((
            name.to_string(),
            padded.trim_end_matches('=').as_bytes().to_vec(),
        ));
    }
    // Any 8 consecutive key bytes, as hex: a message quoting part of a key file is caught too.
    for start in (0..=lower.len() - 16).step_by(2) {
        let part = &lower[start..start + 16];
        n.push((format!("hex digits {start}.."), part.as_bytes().to_vec()));
        n.push((
            format!("HEX digits {start}.."),
            part.to_uppercase().into_bytes(),
        ));
    }
    n
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every file under `dir` except `skip`.
fn files(dir: &Path, skip: &[PathBuf], out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if skip.contains(&p) {
            continue;
        }
        if p.is_dir() {
            files(&p, skip, out);
        } else {
            out.push(p);
        }
    }
}

/// Captured output of the commands, by description.
struct Outputs(Vec<(String, Vec<u8>)>);

impl Outputs {
    /// Runs `c`, keeps its stdout and stderr, and returns its exit code.
    fn run(&mut self, what: &str, c: &mut Command) -> i32 {
        let o = c.output().unwrap();
        let code = o.status.code().unwrap_or(-1);
        let stderr = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(!stderr.contains("panicked"), "{what} panicked: {stderr}");
        self.0.push((format!("{what}: stdout"), o.stdout));
        self.0.push((format!("{what}: stderr"), o.stderr));
        code
    }

    fn stderr(&self, what: &str) -> String {
        let key = format!("{what}: stderr");
        let (_, bytes) = self.0.iter().find(|(w, _)| *w == key).unwrap();
        String::from_utf8_lossy(bytes).to_string()
    }
}

#[test]
fn no_output_holds_the_store_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut key = [0u8; 32];
    ChaCha8Rng::seed_from_u64(0x5ec2e7).fill_bytes(&mut key);
    let mut other = [0u8; 32];
    ChaCha8Rng::seed_from_u64(0x0bad).fill_bytes(&mut other);
    let key_hex = hex(&key);
    // The key files are the one place the key may be; they live apart from the outputs.
    let keys = tempfile::tempdir().unwrap();
    let raw_file = keys.path().join("store.key");
    let hex_file = keys.path().join("store.hex");
    let other_file = keys.path().join("other.hex");
    let bad_file = keys.path().join("bad.hex");
    let short_file = keys.path().join("short.hex");
    std::fs::write(&raw_file, key).unwrap();
    std::fs::write(&hex_file, format!("{key_hex}\n")).unwrap();
    std::fs::write(&other_file, hex(&other)).unwrap();
    // A key file with one digit mistyped, and one with a digit missing: their messages must
    // not quote them.
    std::fs::write(&bad_file, format!("{}z", &key_hex[..63])).unwrap();
    std::fs::write(&short_file, &key_hex[..63]).unwrap();

    std::fs::write(dir.join("tiny.json"), TINY_MODEL).unwrap();
    std::fs::write(
        dir.join("device.json"),
        serde_json::to_vec_pretty(&host_like()).unwrap(),
    )
    .unwrap();
    let exp = r#"{
        "name": "key-secrecy", "device": "device.json", "model": "tiny.json", "trace": "t.est",
        "resident_precision": "int8", "offload_precision": "int4",
        "budgets": [{"cache_fraction": 0.5}],
        "policies": [{"name": "on-demand"}, {"name": "lru"}], "seed": 4
    }"#;
    std::fs::write(dir.join("exp.json"), exp).unwrap();

    let mut out = Outputs(Vec::new());
    let gen = out.run(
        "trace gen",
        edgesim(dir).args([
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
        ]),
    );
    assert_eq!(gen, 0);
    let prepare = |store: &str| {
        let mut c = edgesim(dir);
        c.args([
            "exec",
            "prepare",
            "--model",
            "tiny.json",
            "--precisions",
            "int8,int4",
            "--out",
            store,
        ]);
        c
    };
    let code = out.run(
        "prepare --encrypt --key-file (raw)",
        prepare("store-file")
            .arg("--encrypt")
            .arg("--key-file")
            .arg(&raw_file),
    );
    assert_eq!(
        code,
        0,
        "{}",
        out.stderr("prepare --encrypt --key-file (raw)")
    );
    let code = out.run(
        "prepare --encrypt with EDGESIM_STORE_KEY",
        prepare("store-env")
            .arg("--encrypt")
            .env("EDGESIM_STORE_KEY", &key_hex),
    );
    assert_eq!(code, 0);
    let code = out.run(
        "prepare (unencrypted)",
        prepare("store-plain").env("EDGESIM_STORE_KEY", &key_hex),
    );
    assert_eq!(code, 0);

    // The two encrypted stores are the same key's: the raw and hex forms are one key.
    let id = |store: &str| {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(store).join("index.json")).unwrap())
                .unwrap();
        v["encryption"]["key_id"].clone()
    };
    assert_eq!(id("store-file"), id("store-env"));
    assert!(id("store-file").is_string());

    let exec_run = |store: &str| {
        let mut c = edgesim(dir);
        c.args([
            "exec",
            "run",
            "--store",
            store,
            "-e",
            "exp.json",
            "--device",
            "device.json",
            "-p",
            "lru",
        ]);
        c
    };
    let mut refusals = vec![];
    let mut refused = |out: &mut Outputs, what: &str, c: &mut Command| {
        let code = out.run(what, c);
        assert_eq!(code, 2, "{what}: {}", out.stderr(what));
        refusals.push(what.to_string());
    };
    // The right key: the run is refused (the executor's plans do not decrypt yet), naming why.
    refused(
        &mut out,
        "exec run, right key file",
        exec_run("store-file").arg("--key-file").arg(&hex_file),
    );
    refused(
        &mut out,
        "exec run, right key in EDGESIM_STORE_KEY",
        exec_run("store-env").env("EDGESIM_STORE_KEY", &key_hex),
    );
    refused(
        &mut out,
        "exec run, wrong key file",
        exec_run("store-file").arg("--key-file").arg(&other_file),
    );
    refused(
        &mut out,
        "exec run, wrong key in EDGESIM_STORE_KEY",
        exec_run("store-file").env("EDGESIM_STORE_KEY", hex(&other)),
    );
    refused(&mut out, "exec run, no key", &mut exec_run("store-file"));
    refused(
        &mut out,
        "exec run, mistyped key file",
        exec_run("store-file").arg("--key-file").arg(&bad_file),
    );
    refused(
        &mut out,
        "exec run, short key file",
        exec_run("store-file").arg("--key-file").arg(&short_file),
    );
    refused(
        &mut out,
        "exec run, mistyped EDGESIM_STORE_KEY",
        exec_run("store-file").env("EDGESIM_STORE_KEY", format!("{}z", &key_hex[..63])),
    );
    refused(
        &mut out,
        "exec prepare --encrypt, short EDGESIM_STORE_KEY",
        prepare("store-short")
            .arg("--encrypt")
            .env("EDGESIM_STORE_KEY", &key_hex[..63]),
    );
    assert!(out
        .stderr("exec run, wrong key file")
        .contains("not the key"));
    assert!(out.stderr("exec run, no key").contains("EDGESIM_STORE_KEY"));

    let validate = |store: &str, bundle: &str| {
        let mut c = edgesim(dir);
        c.args([
            "validate",
            "-e",
            "exp.json",
            "--store",
            store,
            "--device",
            "device.json",
            "--out",
            bundle,
        ]);
        c
    };
    refused(
        &mut out,
        "validate, encrypted store, right key",
        validate("store-file", "bundle-encrypted")
            .arg("--key-file")
            .arg(&raw_file),
    );
    assert!(!dir.join("bundle-encrypted").exists());
    // A bundle and a report written while the key is in the environment.
    let code = out.run(
        "validate, plain store, key in the environment",
        validate("store-plain", "bundle").env("EDGESIM_STORE_KEY", &key_hex),
    );
    assert_eq!(
        code,
        0,
        "{}",
        out.stderr("validate, plain store, key in the environment")
    );
    let code = out.run(
        "compare --timeline, key in the environment",
        edgesim(dir)
            .args(["compare", "-e", "exp.json", "--timeline", "-o", "report"])
            .env("EDGESIM_STORE_KEY", &key_hex),
    );
    assert_eq!(code, 0);
    assert!(dir.join("bundle/bundle.json").exists() && dir.join("report/results.json").exists());

    // Now look everywhere.
    let mut written = Vec::new();
    files(dir, &[], &mut written);
    assert!(
        written.iter().any(|f| f.ends_with("weights.bin")) && written.len() > 20,
        "{written:?}"
    );
    let needles = needles(&key);
    let mut leaks = Vec::new();
    for f in &written {
        let bytes = std::fs::read(f).unwrap();
        for (form, n) in &needles {
            if contains(&bytes, n) {
                leaks.push(format!("{} holds the key as {form}", f.display()));
            }
        }
    }
    for (what, bytes) in &out.0 {
        for (form, n) in &needles {
            if contains(bytes, n) {
                leaks.push(format!("{what} holds the key as {form}"));
            }
        }
    }
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
    // The search itself finds the key where it is.
    let raw = std::fs::read(&raw_file).unwrap();
    let hexed = std::fs::read(&hex_file).unwrap();
    assert!(contains(&raw, &needles[0].1) && contains(&hexed, &needles[1].1));
    assert!(refusals.len() >= 10);
}
