//! `summary.md` of an experiment without an `analysis`: the headline, then every run's main
//! figures. (Experiments with an `analysis` get theirs from [`super::analysis`], with the same
//! headline on top.)

use super::headline::Headline;
use super::table::ResultRow;
use std::fmt::Write as _;

/// The Markdown summary of a plain comparison.
pub fn overview_md(
    experiment: &str,
    description: &str,
    headline: &Headline,
    rows: &[ResultRow],
) -> String {
    let mut md = format!("# {experiment}\n\n");
    if !description.is_empty() {
        let _ = writeln!(md, "{description}\n");
    }
    md.push_str(
        "Simulated by edgesim; every number below is a model prediction, not a measurement.\n\n",
    );
    md.push_str(&headline.markdown());
    md.push_str("## Every run\n\n");
    md.push_str(
        "| workload | policy | budget | budget GiB | decode tok/s | TTFT s | hit rate | MiB read / token | waiting |\n",
    );
    md.push_str("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for r in rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.2} | {:.3} | {:.2} | {:.3} | {:.0} | {:.0}% |",
            if r.id.workload.is_empty() {
                "-"
            } else {
                &r.id.workload
            },
            r.id.label.replace('|', "\\|"),
            r.id.budget_label,
            r.id.budget_bytes as f64 / (1u64 << 30) as f64,
            r.summary.decode_tokens_per_s,
            r.summary.ttft_mean_ms / 1e3,
            r.summary.hit_rate,
            r.summary.bytes_read_per_decode_token / (1u64 << 20) as f64,
            r.summary.decode_stall_share * 100.0
        );
    }
    md
}
