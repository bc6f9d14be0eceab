//! `restoration.csv` and `restoration.md`: where each confidential run's prefill time went
//! (TZ-LLM's Fig. 12 breakdown) and its lower bound, max(I/O, CPU, computation), beside its
//! TTFT. Written for experiments with a dense confidential policy (`tzllm` and its baselines).

use super::run::RunResult;
use crate::report::{ReportDir, ResultRow};
use std::fmt::Write;

/// Cores the CPU work of a run spreads over: the first CPU cluster's (the one the family
/// runs on).
fn cores(r: &RunResult) -> u32 {
    r.resources
        .iter()
        .find(|x| x.name.starts_with("cpu."))
        .map_or(1, |x| x.servers)
}

/// Writes the two files when any run has a breakdown; returns whether it did.
pub fn write(
    results: &[RunResult],
    rows: &[ResultRow],
    dir: &ReportDir,
    io: &dyn Fn(std::io::Error) -> String,
) -> Result<bool, String> {
    if results
        .iter()
        .all(|r| r.outcome.prefill_breakdown.is_none())
    {
        return Ok(false);
    }
    let mut csv = String::from(
        "workload,label,budget_label,sequences,ttft_mean_ms,lower_bound_ms,ttft_over_bound,\
         alloc_ms,read_ms,decrypt_ms,cpu_compute_ms,npu_compute_ms,switch_ms,cpu_idle_ms\n",
    );
    let mut md = String::from(
        "# Restoration breakdown (mean per request, prefill only)\n\n\
         Lower bound = max(I/O, CPU work / cores, CPU + NPU computation), TZ-LLM §7.2.1. \
         alloc and decrypt are core-time summed over threads; read is the time any read was in \
         flight; cpu idle = cores x TTFT - CPU core-time, over cores.\n\n\
         | workload | policy | TTFT ms | bound ms | TTFT/bound | alloc | read | decrypt | CPU compute | NPU compute | switches | CPU idle |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for (r, row) in results.iter().zip(rows) {
        let Some(b) = r.outcome.prefill_breakdown else {
            continue;
        };
        let seq = row.summary.sequences.max(1) as f64;
        let ms = |ns: u64| ns as f64 / 1e6 / seq;
        let c = cores(r);
        let bound = ms(b.lower_bound_ns(c));
        let ttft = row.summary.ttft_mean_ms;
        let idle = (c as f64 * ms(b.latency_ns) - ms(b.cpu_busy_core_ns)).max(0.0) / c as f64;
        let ratio = if bound > 0.0 { ttft / bound } else { 0.0 };
        let fields = [
            ms(b.alloc_ns),
            ms(b.read_ns),
            ms(b.decrypt_ns),
            ms(b.cpu_compute_ns),
            ms(b.accel_compute_ns),
            ms(b.switch_ns),
            idle,
        ];
        let _ = write!(
            csv,
            "{},{},{},{},{:.3},{:.3},{:.4}",
            csv_field(&row.id.workload),
            csv_field(&row.id.label),
            csv_field(&row.id.budget_label),
            row.summary.sequences,
            ttft,
            bound,
            ratio
        );
        for f in fields {
            let _ = write!(csv, ",{f:.3}");
        }
        csv.push('\n');
        let _ = write!(
            md,
            "| {} | {} | {:.0} | {:.0} | {:.3} |",
            row.id.workload, row.id.label, ttft, bound, ratio
        );
        for f in fields {
            let _ = write!(md, " {f:.0} |");
        }
        md.push('\n');
    }
    dir.write("restoration.csv", csv.as_bytes()).map_err(io)?;
    dir.write("restoration.md", md.as_bytes()).map_err(io)?;
    plot_breakdown(results, rows, dir)?;
    plot_cache_fraction(results, rows, dir)?;
    Ok(true)
}

/// `restoration.svg`: one stacked bar per run (workload / label), the prefill's time by kind.
fn plot_breakdown(
    results: &[RunResult],
    rows: &[ResultRow],
    dir: &ReportDir,
) -> Result<(), String> {
    let mut categories = Vec::new();
    let mut values = Vec::new();
    for (r, row) in results.iter().zip(rows) {
        let Some(b) = r.outcome.prefill_breakdown else {
            continue;
        };
        let seq = row.summary.sequences.max(1) as f64;
        let s = |ns: u64| ns as f64 / 1e9 / seq;
        let c = cores(r) as f64;
        categories.push(if row.id.workload.is_empty() {
            row.id.label.clone()
        } else {
            format!("{} / {}", row.id.workload, row.id.label)
        });
        // Core-time shares as wall-clock equivalents over the cores.
        values.push(vec![
            s(b.alloc_ns) / c,
            s(b.decrypt_ns) / c,
            s(b.cpu_compute_ns),
            s(b.accel_compute_ns),
            s(b.switch_ns),
            s(b.read_ns),
        ]);
    }
    crate::report::plots::stacked_bars(
        &dir.path("restoration.svg"),
        "prefill time by kind of work (alloc and decrypt: core-time / cores)",
        "seconds per request",
        &categories,
        &[
            "alloc",
            "decrypt",
            "CPU compute",
            "NPU compute",
            "world switches",
            "read (in flight)",
        ],
        &values,
    )
}

/// `ttft_vs_cache_fraction-<workload>.svg` when runs differ by `cache_fraction`: TTFT per
/// policy name against the cached share, with TZ-LLM's lower bound of the `tzllm` runs dashed.
fn plot_cache_fraction(
    results: &[RunResult],
    rows: &[ResultRow],
    dir: &ReportDir,
) -> Result<(), String> {
    use crate::report::plots::{line_panels, Bound, Panel, Series, Styles};
    let fraction = |r: &RunResult| r.spec.params.get("cache_fraction").and_then(|v| v.as_f64());
    let mut workloads: Vec<&str> = Vec::new();
    for row in rows {
        if !workloads.contains(&row.id.workload.as_str()) {
            workloads.push(&row.id.workload);
        }
    }
    for w in workloads {
        let mut series: Vec<Series> = Vec::new();
        let mut bound = Series {
            name: "lower bound (tzllm)".into(),
            points: Vec::new(),
        };
        for (r, row) in results.iter().zip(rows) {
            let (Some(f), Some(b)) = (fraction(r), r.outcome.prefill_breakdown) else {
                continue;
            };
            if row.id.workload != w {
                continue;
            }
            let ttft_s = row.summary.ttft_mean_ms / 1e3;
            match series.iter_mut().find(|s| s.name == row.id.policy) {
                Some(s) => s.points.push((f, ttft_s)),
                None => series.push(Series {
                    name: row.id.policy.clone(),
                    points: vec![(f, ttft_s)],
                }),
            }
            if row.id.policy == "tzllm" {
                let seq = row.summary.sequences.max(1) as f64;
                bound
                    .points
                    .push((f, b.lower_bound_ns(cores(r)) as f64 / 1e9 / seq));
            }
        }
        if series.iter().all(|s| s.points.len() < 2) {
            continue;
        }
        for s in &mut series {
            s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        bound.points.sort_by(|a, b| a.0.total_cmp(&b.0));
        series.push(bound);
        let file = if w.is_empty() {
            "ttft_vs_cache_fraction.svg".to_string()
        } else {
            format!(
                "ttft_vs_cache_fraction-{}.svg",
                crate::report::file_name_part(w)
            )
        };
        let styles = Styles::new(series.iter().map(|s| s.name.as_str()));
        line_panels(
            &dir.path(&file),
            &format!("TTFT vs cached share of parameters {w}"),
            "share of parameters cached in secure memory",
            "TTFT (s)",
            &[Panel {
                title: String::new(),
                series,
            }],
            &styles,
            Some(Bound {
                name: "lower bound (tzllm)",
                note: "max(I/O, CPU, compute)",
            }),
        )?;
    }
    Ok(())
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
