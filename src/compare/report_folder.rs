//! Writing a comparison's report folder: `results.csv`, `results.json`, the comparison plots
//! (per workload in `workload-<label>/`), the experiment's analysis, and the timelines. The
//! folder is assembled in a staging folder and renamed into place, so a failed write leaves
//! no half-written report.

use super::grid::CompareOptions;
use super::prepare::Prepared;
use super::run::RunResult;
use crate::hw::DeviceProfile;
use crate::report::{file_name_part, plots, timeline, ReportDir, ResultRow};
use crate::scenario::Experiment;
use crate::trace::TraceHeader;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What the report's `results.json` holds besides the rows.
#[derive(Serialize)]
struct ReportJson<'a> {
    edgesim_version: &'static str,
    experiment: &'a Experiment,
    device: &'a DeviceProfile,
    model: &'a str,
    workloads: Vec<WorkloadJson<'a>>,
    max_context: u32,
    resident_bytes: u64,
    offloadable_bytes: u64,
    shard: Option<String>,
    rows: &'a [ResultRow],
}

#[derive(Serialize)]
struct WorkloadJson<'a> {
    label: &'a str,
    trace: String,
    trace_header: &'a TraceHeader,
}

/// Writes the report of `results` (one `rows` entry each, same order) to `out`; returns the
/// folder's path.
pub fn write(
    p: &Prepared,
    out: &Path,
    options: &CompareOptions,
    results: &[RunResult],
    rows: &[ResultRow],
) -> Result<PathBuf, String> {
    let dir = ReportDir::create(out, crate::report::write::REPORT_MARKER)
        .map_err(|e| format!("{}: cannot create the report folder: {e}", out.display()))?;
    let io = |e: std::io::Error| format!("{}: cannot write the report: {e}", out.display());
    write_tables(p, options, rows, &dir, &io)?;
    write_plots(p, results, rows, &dir, &io)?;
    let headline = super::headline_of(p, rows);
    if let Some(analysis) = &p.experiment.analysis {
        let workloads: Vec<String> = p.workloads.iter().map(|w| w.label.clone()).collect();
        crate::report::analysis::write(
            &dir.path(""),
            &p.experiment.name,
            analysis,
            &workloads,
            &super::headline::budget_labels(p),
            rows,
            &headline.markdown(),
            &plots::Styles::of_rows(rows),
        )?;
    } else {
        let md = crate::report::summary_md::overview_md(
            &p.experiment.name,
            &p.experiment.description,
            &headline,
            rows,
        );
        dir.write("summary.md", md.as_bytes()).map_err(io)?;
    }
    super::restoration::write(results, rows, &dir, &io)?;
    if options.timeline_ops > 0 {
        write_timelines(p, results, &dir, &io)?;
    }
    crate::report::page::write_index(&dir.path(""), &p.experiment.name)?;
    dir.commit().map_err(io)
}

/// `results.csv` and `results.json` (the rows with the experiment, profiles and traces echoed).
fn write_tables(
    p: &Prepared,
    options: &CompareOptions,
    rows: &[ResultRow],
    dir: &ReportDir,
    io: &dyn Fn(std::io::Error) -> String,
) -> Result<(), String> {
    let csv = crate::report::csv_rows::to_csv(rows)
        .map_err(|e| format!("cannot format results.csv: {e}"))?;
    dir.write("results.csv", &csv).map_err(io)?;
    let json = ReportJson {
        edgesim_version: env!("CARGO_PKG_VERSION"),
        experiment: &p.experiment,
        device: &p.device,
        model: &p.model.name,
        workloads: p
            .workloads
            .iter()
            .map(|w| WorkloadJson {
                label: &w.label,
                trace: w.trace.name(),
                trace_header: &w.header,
            })
            .collect(),
        max_context: p.max_context,
        resident_bytes: p.footprint.resident_bytes,
        offloadable_bytes: p.footprint.offloadable_bytes,
        shard: options.shard.map(|(i, n)| format!("{i}/{n}")),
        rows,
    };
    let mut text =
        serde_json::to_vec_pretty(&json).map_err(|e| format!("cannot format results.json: {e}"))?;
    text.push(b'\n');
    dir.write("results.json", &text).map_err(io)
}

/// The comparison plots of each workload: in the folder itself for a single `trace`, else in
/// `workload-<label>/`.
fn write_plots(
    p: &Prepared,
    results: &[RunResult],
    rows: &[ResultRow],
    dir: &ReportDir,
    io: &dyn Fn(std::io::Error) -> String,
) -> Result<(), String> {
    let styles = plots::Styles::of_rows(rows);
    for (wi, w) in p.workloads.iter().enumerate() {
        let of_workload: Vec<ResultRow> = rows
            .iter()
            .zip(results)
            .filter(|(_, r)| r.spec.workload == wi)
            .map(|(row, _)| row.clone())
            .collect();
        if w.label.is_empty() {
            plots::comparison_plots(&dir.path(""), &p.experiment.name, &of_workload, &styles)?;
        } else {
            let sub = format!("workload-{}", file_name_part(&w.label));
            std::fs::create_dir_all(dir.path(&sub)).map_err(io)?;
            plots::comparison_plots(
                &dir.path(&sub),
                &format!("{} {}", p.experiment.name, w.label),
                &of_workload,
                &styles,
            )?;
        }
    }
    Ok(())
}

/// One Chrome trace-event timeline per run: `timeline-[<workload>-]<label>-<budget>.json`.
fn write_timelines(
    p: &Prepared,
    results: &[RunResult],
    dir: &ReportDir,
    io: &dyn Fn(std::io::Error) -> String,
) -> Result<(), String> {
    for r in results {
        let events = timeline::chrome_trace(&r.outcome.timeline, &r.resources);
        let workload = &p.workloads[r.spec.workload].label;
        let name = if workload.is_empty() {
            format!(
                "timeline-{}-{}.json",
                file_name_part(&r.spec.label),
                file_name_part(&r.spec.budget_label)
            )
        } else {
            format!(
                "timeline-{}-{}-{}.json",
                file_name_part(workload),
                file_name_part(&r.spec.label),
                file_name_part(&r.spec.budget_label)
            )
        };
        let text = serde_json::to_vec(&events).map_err(|e| format!("cannot format {name}: {e}"))?;
        dir.write(&name, &text).map_err(io)?;
    }
    Ok(())
}
