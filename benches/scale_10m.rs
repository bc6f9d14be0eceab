//! Scale: a long trace generated, validated, summarised and replayed, with each step's wall time
//! and peak resident memory, at 1 M and 10 M tokens, and how the peak grows between them.
//!
//! Each step runs in a child process of this benchmark (the benchmark binary re-executing
//! itself with the step's command line) so that its peak RSS — `VmHWM` from
//! `/proc/self/status`, read by the child when the command has finished — is the step's alone.
//! The steps are the command lines a user types (`edgesim trace gen`, `trace validate`,
//! `trace stats`, `replay`), run through the library's CLI entry point:
//!
//! * trace: Mixtral-8x7B routing, `N / 1000` sequences of 1,000 tokens (128 prefill), with
//!   HOBBIT's recorded prediction accuracies, written to a temporary file as it is generated;
//! * replay: the `default` experiment's device and precisions (Jetson AGX Orin, int8),
//!   `lru` at 30 % of the experts cached, the trace file replacing the bundled one.
//!
//! `cargo bench --bench scale_10m` (release profile). `EDGESIM_SCALE_TOKENS=1000000,10000000`
//! sets the lengths (comma-separated, the first two are compared); `EDGESIM_SCALE_DIR` the
//! folder for the trace files (default: a temporary folder; a 10 M-token trace is ~7.3 GiB);
//! `EDGESIM_SCALE_STEPS=gen,validate,stats` runs only the steps named (`gen` is always run, the
//! others need its file; default: all four, `replay` included).
//! Prints measurements only; nothing is asserted (timings never are).

use clap::Parser;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// Set in a child: the step's arguments, separated by U+001F.
const CHILD_ENV: &str = "EDGESIM_SCALE_CHILD";

/// Peak resident set of this process in KiB (`VmHWM`).
fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// In a child: runs one command line and prints `wall_ns peak_kib` on the last stdout line.
fn child(args: &str) -> ! {
    let argv = std::iter::once("edgesim").chain(args.split('\u{1f}'));
    let cli = edgesim::cli::Cli::parse_from(argv);
    let start = Instant::now();
    if let Err(e) = edgesim::cli::run(cli) {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    let wall = start.elapsed().as_nanos();
    println!("\nSCALE {wall} {}", vm_hwm_kib());
    std::process::exit(0);
}

struct Step {
    name: &'static str,
    tokens: u64,
    wall_s: f64,
    peak_mib: f64,
}

/// Runs `args` in a child process; returns its wall time (s) and peak RSS (MiB).
fn measure(args: &[String]) -> (f64, f64) {
    let exe = std::env::current_exe().expect("the benchmark's own path");
    let out = Command::new(exe)
        .env(CHILD_ENV, args.join("\u{1f}"))
        .output()
        .expect("the benchmark can start itself");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout.lines().rev().find(|l| l.starts_with("SCALE ")) else {
        panic!(
            "step `{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let mut f = line.split_whitespace().skip(1);
    let wall: f64 = f.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let kib: f64 = f.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    (wall / 1e9, kib / 1024.0)
}

fn steps_for(tokens: u64, dir: &Path) -> Vec<(&'static str, Vec<String>)> {
    let trace = dir.join(format!("mixtral-{tokens}.est"));
    let t = trace.display().to_string();
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let sequences = (tokens / 1000).max(1).to_string();
    let tokens_s = tokens.to_string();
    vec![
        (
            "trace gen",
            s(&[
                "trace",
                "gen",
                "--model",
                "mixtral-8x7b",
                "--tokens",
                &tokens_s,
                "--seed",
                "1",
                "--sequences",
                &sequences,
                "--prefill",
                "128",
                "--predict-accuracy",
                "0.96,0.90,0.90",
                "--out",
                &t,
            ]),
        ),
        ("trace validate", s(&["trace", "validate", &t])),
        ("trace stats", s(&["trace", "stats", &t])),
        (
            "replay lru",
            s(&[
                "replay",
                "-s",
                "default",
                "-p",
                "lru",
                "--cache-fraction",
                "0.3",
                "--trace",
                &t,
            ]),
        ),
    ]
}

fn main() {
    if let Ok(args) = std::env::var(CHILD_ENV) {
        child(&args);
    }
    let tokens: Vec<u64> = std::env::var("EDGESIM_SCALE_TOKENS")
        .unwrap_or_else(|_| "1000000,10000000".into())
        .split(',')
        .map(|t| {
            t.trim()
                .parse()
                .expect("EDGESIM_SCALE_TOKENS: token counts")
        })
        .collect();
    let tmp;
    let dir = match std::env::var_os("EDGESIM_SCALE_DIR") {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            tmp = tempfile::tempdir().expect("a temporary folder");
            tmp.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&dir).expect("the trace folder");
    let wanted =
        std::env::var("EDGESIM_SCALE_STEPS").unwrap_or_else(|_| "gen,validate,stats,replay".into());
    let wanted: Vec<&str> = wanted.split(',').map(str::trim).collect();
    println!("scale_10m: Mixtral-8x7B trace, 1,000-token sequences; replay: default experiment, lru at 30%");
    let mut results: Vec<Step> = Vec::new();
    for &n in &tokens {
        for (name, args) in steps_for(n, &dir) {
            let short = name
                .trim_start_matches("trace ")
                .split(' ')
                .next()
                .unwrap_or(name);
            if short != "gen" && !wanted.contains(&short) {
                continue;
            }
            let (wall_s, peak_mib) = measure(&args);
            println!(
                "{name:<15} {n:>11} tokens  {wall_s:>9.2} s  peak RSS {peak_mib:>8.1} MiB  ({:.0} ktok/s)",
                n as f64 / wall_s / 1e3
            );
            results.push(Step {
                name,
                tokens: n,
                wall_s,
                peak_mib,
            });
        }
        let trace = dir.join(format!("mixtral-{n}.est"));
        if let Ok(m) = std::fs::metadata(&trace) {
            println!(
                "  trace file: {:.1} MiB ({:.1} bytes/token)",
                m.len() as f64 / (1 << 20) as f64,
                m.len() as f64 / n as f64
            );
        }
        let _ = std::fs::remove_file(trace);
    }
    if tokens.len() >= 2 {
        let (a, b) = (tokens[0], tokens[1]);
        println!("growth of peak RSS from {a} to {b} tokens:");
        for s in results.iter().filter(|s| s.tokens == a) {
            if let Some(t) = results.iter().find(|t| t.tokens == b && t.name == s.name) {
                println!(
                    "{:<15} {:>8.1} -> {:>8.1} MiB: {:+.1} bytes/token; wall {:.2} -> {:.2} s (x{:.2})",
                    s.name,
                    s.peak_mib,
                    t.peak_mib,
                    (t.peak_mib - s.peak_mib) * (1 << 20) as f64 / (b - a) as f64,
                    s.wall_s,
                    t.wall_s,
                    t.wall_s / s.wall_s
                );
            }
        }
    }
}
