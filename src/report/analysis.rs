//! The analysis an experiment asks for with `analysis`: how much faster the policy under study
//! is than every other policy, what each of its techniques is worth (its ablations), and how
//! far everyone is from a ceiling. Written next to the standard report:
//!
//! - `speedups.csv`: per workload and budget, the subject's decode speed and prefill latency
//!   against each other policy's (ratios > 1 mean the subject is faster);
//! - `ablation.csv`: per workload and budget, each ablation against the full subject;
//! - `precision_shares.csv`: per run, the share of expert invocations served at each precision
//!   or skipped, and the gate-weight share served below the high precision or skipped;
//! - `summary.md`: the same at the headline budget as Markdown tables;
//! - `speedup.svg` (bars per baseline and workload at the headline budget), `ablation.svg`,
//!   `tokens_per_s_vs_budget-<workload>.svg` (every policy, the ceiling dashed) and
//!   `time_breakdown.svg` (compute vs waiting at the headline budget).

use super::plots::{self, Panel, Series, Styles};
use super::table::ResultRow;
use crate::scenario::AnalysisSpec;
use std::fmt::Write as _;
use std::path::Path;

/// Writes the analysis files into `dir`; returns their names.
// Eight plain inputs, each used once; a struct for them would only be built here and taken apart
// below.
#[allow(clippy::too_many_arguments)]
pub fn write(
    dir: &Path,
    experiment: &str,
    spec: &AnalysisSpec,
    workloads: &[String],
    budgets: &[String],
    rows: &[ResultRow],
    headline_md: &str,
    styles: &Styles,
) -> Result<Vec<String>, String> {
    let a = Analysis::new(spec, workloads, budgets, rows)?;
    let mut written = Vec::new();
    let mut put = |name: &str, text: String| -> Result<(), String> {
        std::fs::write(dir.join(name), text)
            .map_err(|e| format!("{}: cannot write: {e}", dir.join(name).display()))?;
        written.push(name.to_string());
        Ok(())
    };
    put("speedups.csv", a.speedups_csv())?;
    put("ablation.csv", a.ablation_csv())?;
    put("precision_shares.csv", a.shares_csv())?;
    put("summary.md", a.summary_md(experiment, headline_md))?;
    written.extend(a.plots(dir, experiment, styles)?);
    Ok(written)
}

struct Analysis<'a> {
    spec: &'a AnalysisSpec,
    workloads: &'a [String],
    budgets: &'a [String],
    rows: &'a [ResultRow],
    headline: String,
    /// Labels in experiment order, by role.
    baselines: Vec<String>,
    labels: Vec<String>,
}

impl<'a> Analysis<'a> {
    fn new(
        spec: &'a AnalysisSpec,
        workloads: &'a [String],
        budgets: &'a [String],
        rows: &'a [ResultRow],
    ) -> Result<Self, String> {
        let mut labels: Vec<String> = Vec::new();
        for r in rows {
            if !labels.contains(&r.id.label) {
                labels.push(r.id.label.clone());
            }
        }
        let headline = match &spec.headline_budget {
            Some(b) if budgets.contains(b) => b.clone(),
            Some(b) => {
                return Err(format!(
                    "`analysis.headline_budget` is `{b}`, which is not one of the budgets ({})",
                    budgets.join(", ")
                ))
            }
            None => budgets
                .last()
                .cloned()
                .ok_or("the experiment has no budgets")?,
        };
        let baselines = labels
            .iter()
            .filter(|l| **l != spec.subject && !spec.ablations.contains(l))
            .cloned()
            .collect();
        Ok(Analysis {
            spec,
            workloads,
            budgets,
            rows,
            headline,
            baselines,
            labels,
        })
    }

    fn row(&self, workload: &str, budget: &str, label: &str) -> Option<&ResultRow> {
        self.rows.iter().find(|r| {
            r.id.workload == workload && r.id.budget_label == budget && r.id.label == label
        })
    }

    /// Decode speed ratio subject / other, and prefill latency ratio other / subject.
    fn speedup(&self, w: &str, b: &str, other: &str) -> Option<(f64, f64)> {
        let s = self.row(w, b, &self.spec.subject)?;
        let o = self.row(w, b, other)?;
        Some((
            ratio(s.summary.decode_tokens_per_s, o.summary.decode_tokens_per_s),
            ratio(o.summary.ttft_mean_ms, s.summary.ttft_mean_ms),
        ))
    }

    /// One markdown row per baseline: the speedup `pick` takes from (decode, prefill) at the
    /// headline budget for every workload, then their geometric mean.
    fn speedup_rows(&self, md: &mut String, pick: impl Fn((f64, f64)) -> f64) {
        for base in &self.baselines {
            let mut line = format!("| {} |", md_cell(base));
            let mut logs = Vec::new();
            for w in self.workloads {
                match self.speedup(w, &self.headline, base).map(&pick) {
                    Some(x) if x.is_finite() && x > 0.0 => {
                        logs.push(x.ln());
                        let _ = write!(line, " {x:.2}x |");
                    }
                    _ => line.push_str(" - |"),
                }
            }
            let _ = write!(line, " {} |", geo(&logs));
            let _ = writeln!(md, "{line}");
        }
    }

    fn speedups_csv(&self) -> String {
        let mut out = String::from(
            "workload,budget,baseline,subject,subject_decode_tokens_per_s,baseline_decode_tokens_per_s,decode_speedup,subject_prefill_ms,baseline_prefill_ms,prefill_speedup\n",
        );
        for w in self.workloads {
            for b in self.budgets {
                let Some(s) = self.row(w, b, &self.spec.subject) else {
                    continue;
                };
                for base in &self.baselines {
                    let Some(o) = self.row(w, b, base) else {
                        continue;
                    };
                    let (d, p) = self.speedup(w, b, base).unwrap_or_default();
                    let _ = writeln!(
                        out,
                        "{},{},{},{},{},{},{},{},{},{}",
                        csv(w),
                        csv(b),
                        csv(base),
                        csv(&self.spec.subject),
                        s.summary.decode_tokens_per_s,
                        o.summary.decode_tokens_per_s,
                        d,
                        s.summary.ttft_mean_ms,
                        o.summary.ttft_mean_ms,
                        p
                    );
                }
            }
        }
        out
    }

    fn ablation_csv(&self) -> String {
        let mut out = String::from(
            "workload,budget,variant,decode_tokens_per_s,relative_to_subject,prefill_ms,hit_rate,bytes_read_per_decode_token,degraded_gate_share\n",
        );
        for w in self.workloads {
            for b in self.budgets {
                let Some(s) = self.row(w, b, &self.spec.subject) else {
                    continue;
                };
                for v in std::iter::once(&self.spec.subject).chain(&self.spec.ablations) {
                    let Some(r) = self.row(w, b, v) else { continue };
                    let _ = writeln!(
                        out,
                        "{},{},{},{},{},{},{},{},{}",
                        csv(w),
                        csv(b),
                        csv(v),
                        r.summary.decode_tokens_per_s,
                        ratio(r.summary.decode_tokens_per_s, s.summary.decode_tokens_per_s),
                        r.summary.ttft_mean_ms,
                        r.summary.hit_rate,
                        r.summary.bytes_read_per_decode_token,
                        r.degraded_gate_share
                    );
                }
            }
        }
        out
    }

    fn shares_csv(&self) -> String {
        let mut out = String::from(
            "workload,budget,label,share_fp16,share_int8,share_int4,share_int3,share_int2,share_skipped,degraded_gate_share\n",
        );
        for r in self.rows {
            let s = shares(r);
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{}",
                csv(&r.id.workload),
                csv(&r.id.budget_label),
                csv(&r.id.label),
                s[0],
                s[1],
                s[2],
                s[3],
                s[4],
                s[5],
                r.degraded_gate_share
            );
        }
        out
    }

    fn summary_md(&self, experiment: &str, headline_md: &str) -> String {
        let mut md = String::new();
        let subject = &self.spec.subject;
        let _ = writeln!(
            md,
            "# {experiment}: `{subject}` against the other policies\n"
        );
        let _ = writeln!(
            md,
            "Simulated by edgesim; every number below is a model prediction, not a measurement. \
             Headline budget: {}. Speedup = {subject}'s decode tokens/s over the other policy's; \
             prefill speedup = the other's prefill latency over {subject}'s.\n",
            self.headline
        );
        md.push_str(headline_md);
        if !self.spec.notes.is_empty() {
            let _ = writeln!(
                md,
                "This run was narrowed to some of the experiment's policies:\n"
            );
            for note in &self.spec.notes {
                let _ = writeln!(md, "- {note}");
            }
            md.push('\n');
        }
        let _ = writeln!(
            md,
            "## Decode speedup of `{subject}` at {}\n",
            self.headline
        );
        let mut header = String::from("| baseline |");
        let mut rule = String::from("| --- |");
        for w in self.workloads {
            let _ = write!(header, " {} |", md_cell(&workload_name(w)));
            rule.push_str(" ---: |");
        }
        header.push_str(" geometric mean |");
        rule.push_str(" ---: |");
        let _ = writeln!(md, "{header}\n{rule}");
        self.speedup_rows(&mut md, |(decode, _)| decode);
        let _ = writeln!(
            md,
            "\n## Prefill speedup of `{subject}` at {}\n",
            self.headline
        );
        let _ = writeln!(md, "{header}\n{rule}");
        self.speedup_rows(&mut md, |(_, prefill)| prefill);
        if !self.spec.ablations.is_empty() {
            let _ = writeln!(
                md,
                "\n## Ablation at {}: decode tokens/s relative to the full `{subject}`\n",
                self.headline
            );
            let _ = writeln!(md, "{}\n{}", header.replace("baseline", "variant"), rule);
            for v in std::iter::once(subject).chain(&self.spec.ablations) {
                let mut line = format!("| {} |", md_cell(v));
                let mut logs = Vec::new();
                for w in self.workloads {
                    match (
                        self.row(w, &self.headline, v),
                        self.row(w, &self.headline, subject),
                    ) {
                        (Some(r), Some(s)) => {
                            let x =
                                ratio(r.summary.decode_tokens_per_s, s.summary.decode_tokens_per_s);
                            if x.is_finite() && x > 0.0 {
                                logs.push(x.ln());
                            }
                            let _ = write!(line, " {x:.3} |");
                        }
                        _ => line.push_str(" - |"),
                    }
                }
                let _ = write!(line, " {} |", geo(&logs));
                let _ = writeln!(md, "{line}");
            }
        }
        for w in self.workloads {
            let title = if w.is_empty() {
                "the trace".to_string()
            } else {
                format!("workload {w}")
            };
            let _ = writeln!(md, "\n## Every policy on {title} at {}\n", self.headline);
            let _ = writeln!(
                md,
                "| policy | decode tok/s | prefill s | hit rate | MiB read / token | waiting | high / low / skipped share | degraded gate share | {subject} speedup |"
            );
            let _ = writeln!(
                md,
                "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |"
            );
            for l in &self.labels {
                let Some(r) = self.row(w, &self.headline, l) else {
                    continue;
                };
                let s = shares(r);
                // The highest precision the run served at is its "high" one.
                let high = s[..5].iter().copied().find(|&x| x > 0.0).unwrap_or(0.0);
                let served: f64 = s[..5].iter().sum();
                let speed = if l == subject {
                    "-".to_string()
                } else {
                    self.speedup(w, &self.headline, l)
                        .map_or("-".into(), |(d, _)| format!("{d:.2}x"))
                };
                let _ = writeln!(
                    md,
                    "| {} | {:.3} | {:.2} | {:.3} | {:.0} | {:.0}% | {:.2} / {:.2} / {:.2} | {:.3} | {} |",
                    md_cell(l),
                    r.summary.decode_tokens_per_s,
                    r.summary.ttft_mean_ms / 1e3,
                    r.summary.hit_rate,
                    r.summary.bytes_read_per_decode_token / (1u64 << 20) as f64,
                    r.summary.decode_stall_share * 100.0,
                    high,
                    served - high,
                    s[5],
                    r.degraded_gate_share,
                    speed
                );
            }
        }
        md
    }

    fn plots(&self, dir: &Path, experiment: &str, styles: &Styles) -> Result<Vec<String>, String> {
        let mut written = Vec::new();
        let setting = self
            .rows
            .first()
            .map(|r| format!(" ({} on {})", r.id.model, r.id.device))
            .unwrap_or_default();
        let groups: Vec<String> = self
            .workloads
            .iter()
            .map(|w| {
                if w.is_empty() {
                    "trace".to_string()
                } else {
                    format!("workload {w}")
                }
            })
            .collect();
        // Speedup bars at the headline budget: one row per baseline, one bar per workload.
        let values: Vec<Vec<f64>> = self
            .baselines
            .iter()
            .map(|b| {
                self.workloads
                    .iter()
                    .map(|w| self.speedup(w, &self.headline, b).map_or(0.0, |s| s.0))
                    .collect()
            })
            .collect();
        plots::hbar_panels(
            &dir.join("speedup.svg"),
            &format!(
                "{experiment}: decode speedup of {} over each policy at {}{setting}",
                self.spec.subject, self.headline
            ),
            &format!(
                "{} decode tokens/s / the policy's (x; right of the dashed line: {} is faster)",
                self.spec.subject, self.spec.subject
            ),
            &groups,
            plots::BarMode::Grouped,
            &[plots::BarPanel {
                title: String::new(),
                categories: self.baselines.clone(),
                values,
            }],
            Some(1.0),
            &|x| format!("{x:.2}x"),
        )?;
        written.push("speedup.svg".into());
        if !self.spec.ablations.is_empty() {
            let variants: Vec<String> = std::iter::once(self.spec.subject.clone())
                .chain(self.spec.ablations.iter().cloned())
                .collect();
            let values: Vec<Vec<f64>> = variants
                .iter()
                .map(|v| {
                    self.workloads
                        .iter()
                        .map(|w| {
                            match (
                                self.row(w, &self.headline, v),
                                self.row(w, &self.headline, &self.spec.subject),
                            ) {
                                (Some(r), Some(s)) => ratio(
                                    r.summary.decode_tokens_per_s,
                                    s.summary.decode_tokens_per_s,
                                ),
                                _ => 0.0,
                            }
                        })
                        .collect()
                })
                .collect();
            plots::hbar_panels(
                &dir.join("ablation.svg"),
                &format!(
                    "{experiment}: ablation of {} at {}{setting}",
                    self.spec.subject, self.headline
                ),
                &format!(
                    "decode tokens/s relative to the full {} (x; left of the dashed line: slower)",
                    self.spec.subject
                ),
                &groups,
                plots::BarMode::Grouped,
                &[plots::BarPanel {
                    title: String::new(),
                    categories: variants,
                    values,
                }],
                Some(1.0),
                &|x| format!("{x:.2}x"),
            )?;
            written.push("ablation.svg".into());
        }
        let subject = &self.spec.subject;
        let bound_note = "offline bound, one precision";
        for w in self.workloads {
            let series_of = |l: &String| -> Series {
                let mut points: Vec<(f64, f64)> = self
                    .rows
                    .iter()
                    .filter(|r| r.id.workload == *w && r.id.label == *l)
                    .map(|r| {
                        (
                            r.id.budget_bytes as f64 / (1u64 << 30) as f64,
                            r.summary.decode_tokens_per_s,
                        )
                    })
                    .collect();
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                Series {
                    name: l.clone(),
                    points,
                }
            };
            // Two panels when there are ablations: the subject's variants, and the subject
            // against the other policies; the ceiling in both.
            let ceiling: Vec<&String> = self
                .labels
                .iter()
                .filter(|l| Some(l.as_str()) == self.spec.ceiling.as_deref())
                .collect();
            let mut panels = Vec::new();
            if !self.spec.ablations.is_empty() {
                panels.push(Panel {
                    title: format!("{subject} and its variants"),
                    series: self
                        .labels
                        .iter()
                        .filter(|l| *l == subject || self.spec.ablations.contains(l))
                        .chain(ceiling.iter().copied())
                        .map(series_of)
                        .collect(),
                });
            }
            let others: Vec<&String> = self
                .labels
                .iter()
                .filter(|l| *l == subject || self.baselines.contains(l))
                .collect();
            for (k, chunk) in others.chunks(plots::MAX_SERIES_PER_PANEL).enumerate() {
                let mut series: Vec<Series> = chunk.iter().map(|l| series_of(l)).collect();
                if k > 0 {
                    series.insert(0, series_of(subject));
                }
                panels.push(Panel {
                    title: format!("{subject} and the other policies"),
                    series,
                });
            }
            let file = format!(
                "tokens_per_s_vs_budget-{}.svg",
                super::file_name_part(&workload_name(w))
            );
            plots::line_panels(
                &dir.join(&file),
                &format!(
                    "{experiment} {}: decode speed vs memory budget{setting}",
                    workload_name(w)
                ),
                "memory budget (GiB)",
                "decode speed (tokens/s)",
                &panels,
                styles,
                self.spec.ceiling.as_deref().map(|name| plots::Bound {
                    name,
                    note: bound_note,
                }),
            )?;
            written.push(file);
        }
        // Time per token at the headline budget: one panel per workload.
        let panels: Vec<plots::BarPanel> = self
            .workloads
            .iter()
            .map(|w| {
                let mut categories = Vec::new();
                let mut values = Vec::new();
                for l in &self.labels {
                    if let Some(r) = self.row(w, &self.headline, l) {
                        categories.push(l.clone());
                        values.push(plots::compute_and_wait_ms(r));
                    }
                }
                plots::BarPanel {
                    title: if w.is_empty() {
                        String::new()
                    } else {
                        format!("workload {w}")
                    },
                    categories,
                    values,
                }
            })
            .collect();
        plots::hbar_panels(
            &dir.join("time_breakdown.svg"),
            &format!(
                "{experiment}: decode time per token at {}{setting}",
                self.headline
            ),
            "time per decode token (ms)",
            &["computing".to_string(), "waiting for loads".to_string()],
            plots::BarMode::Stacked,
            &panels,
            None,
            &plots::ms_label,
        )?;
        written.push("time_breakdown.svg".into());
        Ok(written)
    }
}

/// Share of expert invocations served at fp16, int8, int4, int3, int2, and skipped.
fn shares(r: &ResultRow) -> [f64; 6] {
    let counts = [
        r.served_fp16,
        r.served_int8,
        r.served_int4,
        r.served_int3,
        r.served_int2,
        r.skipped,
    ];
    let total: u64 = counts.iter().sum();
    let mut out = [0.0; 6];
    if total > 0 {
        for (o, c) in out.iter_mut().zip(counts) {
            *o = c as f64 / total as f64;
        }
    }
    out
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

fn geo(logs: &[f64]) -> String {
    if logs.is_empty() {
        "-".into()
    } else {
        format!(
            "{:.2}x",
            (logs.iter().sum::<f64>() / logs.len() as f64).exp()
        )
    }
}

fn csv(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn workload_name(w: &str) -> String {
    if w.is_empty() {
        "trace".into()
    } else {
        w.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{RunIdentity, RunSummary};

    fn row(workload: &str, budget: &str, label: &str, tok_s: f64, ttft: f64) -> ResultRow {
        let mut c = crate::policy::Counters::default();
        c.served_by_precision[1] = 6;
        c.served_by_precision[4] = 3;
        c.skipped = 1;
        ResultRow::new(
            RunIdentity {
                experiment: "x".into(),
                device: "d".into(),
                model: "m".into(),
                trace: "t".into(),
                workload: workload.into(),
                policy: label.into(),
                label: label.into(),
                budget_label: budget.into(),
                budget_bytes: 1 << 30,
                seed: 0,
            },
            RunSummary {
                decode_tokens_per_s: tok_s,
                ttft_mean_ms: ttft,
                ..RunSummary::default()
            },
            &c,
        )
    }

    #[test]
    fn speedups_and_ablations_are_ratios_of_the_rows() {
        let rows = vec![
            row("[16,32]", "b", "hobbit", 4.0, 100.0),
            row("[16,32]", "b", "lru", 1.0, 300.0),
            row("[16,32]", "b", "hobbit -prefetch", 3.0, 100.0),
        ];
        let spec = AnalysisSpec {
            subject: "hobbit".into(),
            ablations: vec!["hobbit -prefetch".into()],
            ceiling: None,
            headline_budget: None,
            notes: Vec::new(),
        };
        let w = vec!["[16,32]".to_string()];
        let b = vec!["b".to_string()];
        let a = Analysis::new(&spec, &w, &b, &rows).unwrap();
        assert_eq!(a.baselines, vec!["lru".to_string()]);
        let csv = a.speedups_csv();
        assert!(
            csv.lines().nth(1).unwrap().contains(",4,1,4,100,300,3"),
            "{csv}"
        );
        let abl = a.ablation_csv();
        assert!(abl.contains("hobbit -prefetch,3,0.75,"), "{abl}");
        let shares = a.shares_csv();
        // 6 int8, 3 int2, 1 skipped of 10.
        assert!(shares.contains(",0,0.6,0,0,0.3,0.1,"), "{shares}");
        let md = a.summary_md("x", "");
        assert!(md.contains("| lru | 4.00x | 4.00x |"), "{md}");
        assert!(md.contains("| hobbit -prefetch | 0.750 |"), "{md}");
    }

    #[test]
    fn an_unknown_headline_budget_is_named() {
        let spec = AnalysisSpec {
            subject: "hobbit".into(),
            ablations: vec![],
            ceiling: None,
            headline_budget: Some("huge".into()),
            notes: Vec::new(),
        };
        let err = Analysis::new(&spec, &[], &["b".to_string()], &[])
            .err()
            .unwrap();
        assert!(err.contains("huge"), "{err}");
    }
}
