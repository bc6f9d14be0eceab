//! The validation bundle: what `edgesim validate` writes.
//!
//! | file | holds |
//! | --- | --- |
//! | `tokens.csv` | one row per pass of every run: predicted and measured latency, signed error |
//! | `summary.csv` | one row per policy × budget × metric (`decode_latency`, `ttft`): median and p90 absolute percentage error, signed bias, medians, and the inputs' identity |
//! | `breakdown.csv` | per run, backend and phase: time per op class and per resource |
//! | `runs.json` | per run: the executor's statistics (I/O mode, bytes, emulated ops), peak RSS, load |
//! | `bundle.json` | the inputs: edgesim commit, command, date, device profile (and its SHA-256), model and scale, store, trace, seed, experiment |
//! | `summary.md` | `summary.csv` as a table, each figure against its target, and the load during each run |
//! | `scatter_decode.svg` | predicted vs measured decode latency, every token of every run |
//! | `series_<policy>_<budget>.svg` | per-pass latency, predicted and measured, over the run |
//! | `breakdown_decode.svg` | op time per decode token by class, predicted beside measured |
//! | `quality.csv` | real-model stores only: per run, the output against the in-memory runs |

use super::metrics::{pct_error, summarize, ErrorSummary};
use super::{RunPair, Setup, ValidateOptions};
use crate::report::plots::{line_chart, stacked_bars, Series};
use crate::report::ReportDir;
use crate::trace::Phase;
use plotters::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One row of `summary.csv`.
#[derive(Clone, Debug, Serialize)]
pub struct SummaryRow {
    pub policy: String,
    pub label: String,
    pub budget_label: String,
    pub budget_bytes: u64,
    pub metric: String,
    pub samples: usize,
    pub median_abs_pct_error: f64,
    pub p90_abs_pct_error: f64,
    pub bias_pct: f64,
    pub predicted_median_ms: f64,
    pub measured_median_ms: f64,
    pub edgesim_commit: String,
    pub device_profile: String,
    pub device_profile_sha256: String,
    pub model: String,
    pub scale: u32,
    pub trace: String,
    pub seed: u64,
    pub io_mode: String,
    pub load_avg_1m: String,
}

/// The current time as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// `git rev-parse HEAD` of the working directory, with `-dirty` when tracked files changed;
/// "unknown" outside a git checkout.
pub fn edgesim_commit() -> String {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match run(&["rev-parse", "HEAD"]) {
        Some(head) if !head.is_empty() => {
            let dirty = run(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{head}-dirty")
            } else {
                head
            }
        }
        _ => "unknown".into(),
    }
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

fn ms(n: crate::units::Nanos) -> f64 {
    n.as_millis_f64()
}

/// Per-sequence TTFT: the sum of a sequence's prefill pass latencies before its first decode.
fn ttft(outcome: &crate::replay::ReplayOutcome) -> BTreeMap<u32, f64> {
    let mut out: BTreeMap<u32, (f64, bool)> = BTreeMap::new();
    for p in &outcome.passes {
        let e = out.entry(p.sequence).or_insert((0.0, false));
        match p.phase {
            Phase::Prefill if !e.1 => e.0 += ms(p.latency),
            Phase::Decode => e.1 = true,
            _ => {}
        }
    }
    out.into_iter()
        .filter(|(_, v)| v.0 > 0.0)
        .map(|(k, v)| (k, v.0))
        .collect()
}

#[derive(Serialize)]
struct BundleInfo<'a> {
    edgesim_version: &'static str,
    edgesim_commit: &'a str,
    generated_utc: String,
    command: &'a str,
    host: String,
    device_profile: &'a str,
    device_profile_sha256: &'a str,
    device: &'a crate::hw::DeviceProfile,
    model: &'a str,
    source_model: &'a str,
    scale: u32,
    scale_note: String,
    store: String,
    store_seed: u64,
    store_weights: &'a str,
    encrypted: bool,
    trace: String,
    trace_header: &'a crate::trace::TraceHeader,
    max_passes: Option<usize>,
    experiment: &'a crate::scenario::Experiment,
    seed: u64,
    /// How the predictions were made: one profile for all runs, or per run scaled to a disk
    /// probe taken right before it (`--probe-disk`; each probe is in `runs.json`).
    predictions: &'static str,
    targets: &'static str,
}

/// Writes the bundle into `options.out` (atomically) and returns its path and summary rows.
pub fn write(
    setup: &Setup,
    options: &ValidateOptions,
    pairs: &[RunPair],
) -> Result<(PathBuf, Vec<SummaryRow>), String> {
    let p = &setup.prepared;
    let workload = p.single_workload()?;
    let commit = edgesim_commit();
    let device_json = serde_json::to_string(&*p.device).map_err(|e| e.to_string())?;
    let device_sha = crate::exec::store::crypt::hex(&Sha256::digest(device_json.as_bytes()));
    let io_mode = pairs
        .first()
        .and_then(|r| r.exec.io_mode)
        .map_or("unknown", |m| m.describe())
        .to_string();

    let mut tokens = String::from(
        "policy,label,budget_label,budget_bytes,pass,sequence,phase,position,tokens,predicted_ms,measured_ms,error_pct\n",
    );
    let mut rows = Vec::new();
    for r in pairs {
        let mut decode = Vec::new();
        for (i, (a, b)) in r
            .predicted
            .outcome
            .passes
            .iter()
            .zip(&r.measured.outcome.passes)
            .enumerate()
        {
            let (pm, mm) = (ms(a.latency), ms(b.latency));
            let phase = match a.phase {
                Phase::Prefill => "prefill",
                Phase::Decode => "decode",
            };
            let _ = writeln!(
                tokens,
                "{},{},{},{},{i},{},{phase},{},{},{pm:.4},{mm:.4},{:.3}",
                r.policy,
                r.label,
                r.budget_label,
                r.budget_bytes,
                a.sequence,
                a.position,
                a.tokens,
                pct_error(pm, mm)
            );
            if a.phase == Phase::Decode {
                decode.push((pm, mm));
            }
        }
        let (tp, tm) = (ttft(&r.predicted.outcome), ttft(&r.measured.outcome));
        let ttft_pairs: Vec<(f64, f64)> = tp
            .iter()
            .filter_map(|(s, &v)| tm.get(s).map(|&m| (v, m)))
            .collect();
        let load = match (r.load_before, r.load_after) {
            (Some(a), Some(b)) => format!("{a:.2}..{b:.2}"),
            _ => "unknown".into(),
        };
        for (metric, pairs) in [("decode_latency", &decode), ("ttft", &ttft_pairs)] {
            let errors: ErrorSummary = summarize(pairs);
            rows.push(SummaryRow {
                policy: r.policy.clone(),
                label: r.label.clone(),
                budget_label: r.budget_label.clone(),
                budget_bytes: r.budget_bytes,
                metric: metric.into(),
                samples: errors.samples,
                median_abs_pct_error: round4(errors.median_abs_pct_error),
                p90_abs_pct_error: round4(errors.p90_abs_pct_error),
                bias_pct: round4(errors.bias_pct),
                predicted_median_ms: round4(errors.predicted_median_ms),
                measured_median_ms: round4(errors.measured_median_ms),
                edgesim_commit: commit.clone(),
                device_profile: setup.device_arg.clone(),
                device_profile_sha256: device_sha.clone(),
                model: p.model.name.clone(),
                scale: setup.store.index.scale,
                trace: workload.trace.name(),
                seed: p.experiment.seed,
                io_mode: io_mode.clone(),
                load_avg_1m: load.clone(),
            });
        }
    }

    let mut summary = csv::Writer::from_writer(Vec::new());
    for row in &rows {
        summary
            .serialize(row)
            .map_err(|e| format!("cannot format summary.csv: {e}"))?;
    }
    let summary = summary.into_inner().map_err(|e| e.to_string())?;

    let mut breakdown = String::from(
        "policy,label,budget_label,backend,phase,kind,name,ops,total_ms,per_token_ms\n",
    );
    for r in pairs {
        let passes_in = |phase: Phase| {
            let passes = &r.predicted.outcome.passes;
            passes.iter().filter(|p| p.phase == phase).count().max(1) as f64
        };
        let (decode_tokens, prefill_passes) = (passes_in(Phase::Decode), passes_in(Phase::Prefill));
        for (backend, data) in [("predicted", &r.predicted), ("measured", &r.measured)] {
            for (phase, b, per) in [
                ("decode", &data.decode, decode_tokens),
                ("prefill", &data.prefill, prefill_passes),
                ("warmup", &data.warmup, 1.0),
            ] {
                for (class, &(n, ns)) in &b.by_class {
                    let _ = writeln!(
                        breakdown,
                        "{},{},{},{backend},{phase},class,{class},{n},{:.4},{:.4}",
                        r.policy,
                        r.label,
                        r.budget_label,
                        ns as f64 / 1e6,
                        ns as f64 / 1e6 / per
                    );
                }
                for (res, &ns) in &b.by_resource {
                    let _ = writeln!(
                        breakdown,
                        "{},{},{},{backend},{phase},resource,{res},,{:.4},{:.4}",
                        r.policy,
                        r.label,
                        r.budget_label,
                        ns as f64 / 1e6,
                        ns as f64 / 1e6 / per
                    );
                }
            }
        }
    }

    let info = BundleInfo {
        edgesim_version: env!("CARGO_PKG_VERSION"),
        edgesim_commit: &commit,
        generated_utc: utc_now(),
        command: &options.command,
        host: host_description(),
        device_profile: &setup.device_arg,
        device_profile_sha256: &device_sha,
        device: &p.device,
        model: &p.model.name,
        source_model: &setup.store.index.source_model,
        scale: setup.store.index.scale,
        scale_note: match (&setup.real, setup.store.index.scale) {
            (Some(real), _) => format!(
                "the real model: weights from {}, attention and head computed in {}, FFN neurons computed from the bytes each policy read from the store",
                real.model_file, real.format
            ),
            (None, 1) => format!(
                "`{}` at full size, synthetic weights",
                setup.store.index.source_model
            ),
            (None, scale) => format!(
                "the model is `{}` SCALED DOWN by {scale} on its matrix dimensions (layers, experts, top-k and heads kept); see the store's model.json",
                setup.store.index.source_model
            ),
        },
        store: setup.store.dir.display().to_string(),
        store_seed: setup.store.index.seed,
        store_weights: &setup.store.index.weights,
        encrypted: setup.store.is_encrypted(),
        trace: workload.trace.name(),
        trace_header: &workload.header,
        max_passes: options.max_passes,
        experiment: &p.experiment,
        seed: p.experiment.seed,
        predictions: if options.probe_disk {
            "per measured run, with the profile's read curve scaled to a 1 s disk probe taken right before that run (runs.json: repetitions[].disk_probe); each pass's predicted latency is the median over the repetitions"
        } else {
            "once per run, with the device profile as given"
        },
        targets: "decode latency: median |error| <= 5 %, p90 <= 10 %, |bias| <= 3 % per policy; TTFT: median |error| <= 10 %",
    };

    let dir = ReportDir::create(&options.out, "bundle.json").map_err(|e| {
        format!(
            "{}: cannot create the bundle folder: {e}",
            options.out.display()
        )
    })?;
    let io = |e: std::io::Error| format!("{}: cannot write the bundle: {e}", options.out.display());
    dir.write("tokens.csv", tokens.as_bytes()).map_err(io)?;
    dir.write("summary.csv", &summary).map_err(io)?;
    dir.write("breakdown.csv", breakdown.as_bytes())
        .map_err(io)?;
    if pairs.iter().any(|p| p.quality.is_some()) {
        dir.write("quality.csv", quality_csv(pairs)?.as_bytes())
            .map_err(io)?;
    }
    let mut runs = serde_json::to_vec_pretty(pairs).map_err(|e| e.to_string())?;
    runs.push(b'\n');
    dir.write("runs.json", &runs).map_err(io)?;
    let mut bundle = serde_json::to_vec_pretty(&info).map_err(|e| e.to_string())?;
    bundle.push(b'\n');
    dir.write("bundle.json", &bundle).map_err(io)?;
    dir.write(
        "summary.md",
        summary_markdown(&info, &rows, pairs).as_bytes(),
    )
    .map_err(io)?;
    plots(&dir.path(""), pairs)?;
    let path = dir.commit().map_err(io)?;
    Ok((path, rows))
}

/// Targets of issue 5: decode median |error| <= 5 %, p90 <= 10 %, |bias| <= 3 %; TTFT median
/// |error| <= 10 %.
fn meets(row: &SummaryRow) -> (bool, bool, bool) {
    match row.metric.as_str() {
        "decode_latency" => (
            row.median_abs_pct_error <= 5.0,
            row.p90_abs_pct_error <= 10.0,
            row.bias_pct.abs() <= 3.0,
        ),
        _ => (row.median_abs_pct_error <= 10.0, true, true),
    }
}

fn summary_markdown(info: &BundleInfo<'_>, rows: &[SummaryRow], pairs: &[RunPair]) -> String {
    let mark = |ok: bool| if ok { "" } else { " ✗" };
    let mut out = String::new();
    let _ = writeln!(out, "# Validation summary\n");
    let _ = writeln!(
        out,
        "Generated by `{}` on {} at edgesim commit `{}`, device profile `{}` (SHA-256 `{}`), model `{}` ({}), trace `{}`, seed {}. Host: {}.\n",
        info.command, info.generated_utc, info.edgesim_commit, info.device_profile, info.device_profile_sha256, info.model, info.scale_note, info.trace, info.seed, info.host
    );
    let _ = writeln!(
        out,
        "Predictions: {}.\n\nTargets: {}. A ✗ marks a figure that misses its target.\n",
        info.predictions, info.targets
    );
    let _ = writeln!(out, "| policy | budget | metric | samples | median abs % error | p90 abs % error | bias % | predicted median ms | measured median ms |");
    let _ = writeln!(
        out,
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for r in rows {
        let (m, p, b) = meets(r);
        let p90 = if r.metric == "decode_latency" {
            format!("{:.2}{}", r.p90_abs_pct_error, mark(p))
        } else {
            format!("{:.2}", r.p90_abs_pct_error)
        };
        let bias = if r.metric == "decode_latency" {
            format!("{:+.2}{}", r.bias_pct, mark(b))
        } else {
            format!("{:+.2}", r.bias_pct)
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.2}{} | {} | {} | {:.3} | {:.3} |",
            r.label,
            r.budget_label,
            r.metric,
            r.samples,
            r.median_abs_pct_error,
            mark(m),
            p90,
            bias,
            r.predicted_median_ms,
            r.measured_median_ms
        );
    }
    if pairs.iter().any(|p| p.quality.is_some()) {
        let _ = writeln!(out, "\n## Output of the real model\n");
        let _ = writeln!(
            out,
            "Each pass's last token predicts the next. *Dense*: the whole model in memory in the same format; *recorded*: the token the trace's recording chose; *in-memory sparse*: the same neurons computed from bundles read into ordinary memory beforehand (must be bit-identical).\n"
        );
        let _ = writeln!(
            out,
            "| policy | budget | same choice as dense | same as recorded next | logits vs in-memory sparse |"
        );
        let _ = writeln!(out, "| --- | --- | ---: | ---: | --- |");
        for r in pairs {
            if let Some(q) = &r.quality {
                let _ = writeln!(
                    out,
                    "| {} | {} | {}/{} | {}/{} | {} |",
                    r.label,
                    r.budget_label,
                    q.agree_with_dense,
                    q.predictions,
                    q.agree_with_recorded,
                    q.with_recorded_next,
                    q.vs_in_memory()
                );
            }
        }
    }
    let _ = writeln!(out, "\n## Measured runs\n");
    let _ = writeln!(
        out,
        "| policy | budget | runs (wall s, 1-min load before) | I/O | emulated ops | peak RSS |"
    );
    let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- |");
    for r in pairs {
        let reps: Vec<String> = r
            .repetitions
            .iter()
            .map(|x| {
                format!(
                    "{:.1} s @ {}",
                    x.seconds,
                    x.load_before.map_or("?".into(), |l| format!("{l:.2}"))
                )
            })
            .collect();
        let emulated = if r.exec.emulated.is_empty() {
            "none".to_string()
        } else {
            r.exec
                .emulated
                .iter()
                .map(|e| format!("{} x {}", e.count, e.what))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            r.label,
            r.budget_label,
            reps.join("; "),
            r.exec.io_mode.map_or("unknown", |m| m.describe()),
            emulated,
            r.peak_rss_bytes
                .map_or("unknown".into(), crate::units::human_bytes)
        );
    }
    out
}

/// One row per real-model run: how its output compares with the in-memory runs.
fn quality_csv(pairs: &[RunPair]) -> Result<String, String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "policy",
        "label",
        "budget_label",
        "predictions",
        "agree_with_dense",
        "with_recorded_next",
        "agree_with_recorded",
        "identical_to_in_memory",
        "max_logit_difference",
    ])
    .map_err(|e| e.to_string())?;
    for p in pairs {
        if let Some(q) = &p.quality {
            w.write_record([
                p.policy.clone(),
                p.label.clone(),
                p.budget_label.clone(),
                q.predictions.to_string(),
                q.agree_with_dense.to_string(),
                q.with_recorded_next.to_string(),
                q.agree_with_recorded.to_string(),
                q.identical_to_in_memory.to_string(),
                q.max_logit_difference.to_string(),
            ])
            .map_err(|e| e.to_string())?;
        }
    }
    String::from_utf8(w.into_inner().map_err(|e| e.to_string())?).map_err(|e| e.to_string())
}

fn host_description() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores available")
}

fn plots(dir: &Path, pairs: &[RunPair]) -> Result<(), String> {
    scatter(&dir.join("scatter_decode.svg"), pairs)?;
    for r in pairs {
        let pts = |o: &crate::replay::ReplayOutcome| -> Vec<(f64, f64)> {
            o.passes
                .iter()
                .enumerate()
                .filter(|(_, p)| p.phase == Phase::Decode)
                .map(|(i, p)| (i as f64, ms(p.latency)))
                .collect()
        };
        let name = format!(
            "series_{}_{}.svg",
            crate::report::file_name_part(&r.label),
            crate::report::file_name_part(&r.budget_label)
        );
        line_chart(
            &dir.join(name),
            &format!("{} @ {}: decode latency per pass", r.label, r.budget_label),
            "pass",
            "latency (ms)",
            &[
                Series {
                    name: "predicted (simulator)".into(),
                    points: pts(&r.predicted.outcome),
                },
                Series {
                    name: "measured (executor)".into(),
                    points: pts(&r.measured.outcome),
                },
            ],
        )?;
    }
    let classes: Vec<&str> = {
        let mut c: Vec<&str> = pairs
            .iter()
            .flat_map(|r| {
                r.predicted
                    .decode
                    .by_class
                    .keys()
                    .chain(r.measured.decode.by_class.keys())
                    .copied()
            })
            .filter(|c| *c != "join")
            .collect();
        c.sort_unstable();
        c.dedup();
        c
    };
    let mut categories = Vec::new();
    let mut values = Vec::new();
    for r in pairs {
        let tokens = r
            .predicted
            .outcome
            .passes
            .iter()
            .filter(|p| p.phase == Phase::Decode)
            .count()
            .max(1) as f64;
        for (tag, b) in [("pred", &r.predicted.decode), ("meas", &r.measured.decode)] {
            categories.push(format!("{} {} {tag}", r.label, r.budget_label));
            values.push(
                classes
                    .iter()
                    .map(|c| b.by_class.get(c).map_or(0.0, |v| v.1 as f64 / 1e6 / tokens))
                    .collect(),
            );
        }
    }
    stacked_bars(
        &dir.join("breakdown_decode.svg"),
        "op time per decode token by class (ops overlap, so bars exceed latency)",
        "ms per decode token",
        &categories,
        &classes,
        &values,
    )
}

fn scatter(path: &Path, pairs: &[RunPair]) -> Result<(), String> {
    let e = |x: &dyn std::fmt::Display| format!("cannot draw {}: {x}", path.display());
    let mut max = 0f64;
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for r in pairs {
        let pts = series
            .entry(format!("{} @ {}", r.label, r.budget_label))
            .or_default();
        for (a, b) in r
            .predicted
            .outcome
            .passes
            .iter()
            .zip(&r.measured.outcome.passes)
        {
            if a.phase == Phase::Decode {
                let (x, y) = (ms(b.latency), ms(a.latency));
                max = max.max(x).max(y);
                pts.push((x, y));
            }
        }
    }
    let top = if max > 0.0 { max * 1.1 } else { 1.0 };
    let root = SVGBackend::new(path, (760, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "decode latency per token: predicted vs measured",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d(0f64..top, 0f64..top)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("measured (executor), ms")
        .y_desc("predicted (simulator), ms")
        .draw()
        .map_err(|x| e(&x))?;
    chart
        .draw_series(LineSeries::new([(0.0, 0.0), (top, top)], BLACK.mix(0.5)))
        .map_err(|x| e(&x))?
        .label("predicted = measured")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.mix(0.5)));
    for (i, (name, pts)) in series.iter().enumerate() {
        let c = crate::report::plots::color(i);
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 2, c.filled())))
            .map_err(|x| e(&x))?
            .label(name.clone())
            .legend(move |(x, y)| Circle::new((x + 9, y), 4, c.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
