//! Outputs are crash-safe (issue 16): a `compare` or `exec prepare` killed with SIGKILL at a
//! random moment leaves the old result or nothing, never a folder that looks complete; a full
//! disk (a 64 KiB tmpfs, where this machine lets the test mount one) fails with exit code 2 and
//! leaves nothing.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const EXPERIMENT: &str = r#"{
  "name": "kill", "device": "jetson-agx-orin", "model": "mixtral-8x7b",
  "workloads": [{"label": "g", "generate": {"sequences": 2, "prefill": 16, "decode": 32, "seed": 3}}],
  "resident_precision": "int8", "offload_precision": "int8",
  "budgets": [{"cache_fraction": 0.2}, {"cache_fraction": 0.4}],
  "policies": [{"name": "lru"}, {"name": "lfu"}, {"name": "on-demand"}],
  "seed": 7
}"#;

fn edgesim() -> Command {
    Command::new(assert_cmd::cargo::cargo_bin("edgesim"))
}

/// A report folder is complete: results.json parses and names every run of the CSV.
fn complete(out: &Path) -> bool {
    let Ok(json) = std::fs::read_to_string(out.join("results.json")) else {
        return false;
    };
    serde_json::from_str::<serde_json::Value>(&json).is_ok() && out.join("results.csv").exists()
}

#[test]
fn a_killed_compare_leaves_the_old_report_or_none() {
    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("kill.json");
    std::fs::write(&exp, EXPERIMENT).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(16);
    for round in 0..10 {
        let out = dir.path().join(format!("out{}", round % 2));
        let had_old = out.exists();
        let mut child = edgesim()
            .args(["compare", "-q", "-e"])
            .arg(&exp)
            .arg("-o")
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..400)));
        let _ = child.kill();
        let _ = child.wait();
        if had_old {
            assert!(
                complete(&out),
                "round {round}: the old report was lost or damaged"
            );
        } else {
            assert!(
                !out.exists() || complete(&out),
                "round {round}: a partial report"
            );
        }
    }
}

#[test]
fn a_killed_prepare_leaves_a_store_that_opens_or_none() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    for round in 0..6 {
        let out = dir.path().join(format!("store{round}"));
        let mut child = edgesim()
            .args([
                "exec",
                "prepare",
                "--model",
                "mixtral-8x7b",
                "--scale",
                "16",
                "--out",
            ])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..1500)));
        let _ = child.kill();
        let _ = child.wait();
        if out.exists() {
            edgesim::exec::store::WeightStore::open(&out, None)
                .unwrap_or_else(|e| panic!("round {round}: a store that does not open: {e}"));
        }
    }
}

/// Mounts a tiny tmpfs; `None` (and the test skips) where this machine does not allow it.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &Path) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(at)
            .stderr(Stdio::null())
            .status()
            .ok()?
            .success();
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_with_exit_2_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(&dir.path().join("disk")) else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let exp = dir.path().join("kill.json");
    std::fs::write(&exp, EXPERIMENT).unwrap();
    let out = disk.0.join("report");
    let o = edgesim()
        .args(["compare", "-q", "-e"])
        .arg(&exp)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("No space left"), "{stderr}");
    let store = disk.0.join("store");
    let o = edgesim()
        .args([
            "exec",
            "prepare",
            "--model",
            "mixtral-8x7b",
            "--scale",
            "16",
            "--out",
        ])
        .arg(&store)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let left: Vec<_> = std::fs::read_dir(&disk.0).unwrap().collect();
    assert!(left.is_empty(), "left on the full disk: {left:?}");
}
