//! The headline of a report: which policy wins on this device and memory budget, by how much,
//! and why — in plain words, computed from the run's own rows. `compare` prints it first, and
//! it opens `summary.md` and `index.html`.
//!
//! Rules, so a reader can check a sentence against `results.csv`:
//! - Contenders are the policies that do not know the trace's future; policies that do
//!   (Belady's eviction) are bounds, reported on a line of their own.
//! - Two policies *tie* when their decode tokens/s differ by less than [`TIE_RELATIVE`].
//! - "Why" splits each policy's decode time per token into computing and waiting
//!   (`decode_stall_share`), and says which part makes most of the gap, with the bytes read per
//!   token and the hit rates behind the wait.
//! - The headline budget is the experiment's `analysis.headline_budget`, else its largest.

use super::table::ResultRow;
use std::fmt::Write as _;

/// Relative difference in decode tokens/s below which two policies are said to tie.
pub const TIE_RELATIVE: f64 = 0.005;

/// What the headline is computed over.
pub struct HeadlineSpec<'a> {
    /// Workload labels in experiment order (one empty label for a single trace).
    pub workloads: &'a [String],
    /// Budget labels in experiment order.
    pub budgets: &'a [String],
    /// The budget to headline; `None` for the largest (last) one.
    pub headline_budget: Option<&'a str>,
    /// Labels of policies that plan with the trace's future (bounds, not contenders).
    pub offline: &'a [String],
    /// The experiment's policy under study and its variants (`analysis`), if any: the
    /// headline then also puts the subject against the best policy that is neither.
    pub subject: Option<(&'a str, &'a [String])>,
}

/// The headline as paragraphs of plain text (no markup beyond backticks around labels).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Headline {
    pub paragraphs: Vec<String>,
}

impl Headline {
    /// For the terminal: each paragraph on its own line(s), indented.
    pub fn text(&self) -> String {
        let mut out = String::from("Headline (simulated):\n");
        for p in &self.paragraphs {
            let _ = writeln!(out, "  {}", p.replace('`', ""));
        }
        out
    }

    /// For `summary.md`: a `## Headline` section.
    pub fn markdown(&self) -> String {
        let mut out = String::from("## Headline\n\n");
        for p in &self.paragraphs {
            let _ = writeln!(out, "{p}\n");
        }
        out
    }
}

/// Per-token time of one run, split as the summary splits it.
struct Split {
    total_ms: f64,
    wait_ms: f64,
    compute_ms: f64,
}

fn split(r: &ResultRow) -> Split {
    let total_ms = if r.summary.decode_tokens_per_s > 0.0 {
        1e3 / r.summary.decode_tokens_per_s
    } else {
        0.0
    };
    let wait_ms = total_ms * r.summary.decode_stall_share;
    Split {
        total_ms,
        wait_ms,
        compute_ms: total_ms - wait_ms,
    }
}

/// Builds the headline from `rows`; empty when there is nothing to compare.
pub fn headline(spec: &HeadlineSpec, rows: &[ResultRow]) -> Headline {
    let mut paragraphs = Vec::new();
    let Some(budget) = spec
        .headline_budget
        .map(str::to_string)
        .or_else(|| spec.budgets.last().cloned())
    else {
        return Headline::default();
    };
    let Some(first) = rows.first() else {
        return Headline::default();
    };
    let setting = format!("{} on {}", first.id.model, first.id.device);
    for (wi, w) in spec.workloads.iter().enumerate() {
        let of = |b: &str| -> Vec<&ResultRow> {
            rows.iter()
                .filter(|r| r.id.workload == *w && r.id.budget_label == b)
                .collect()
        };
        let at = of(&budget);
        let contenders = ranked(&at, spec.offline, false);
        let where_ = if w.is_empty() {
            String::new()
        } else {
            format!(" on workload {w}")
        };
        if contenders.is_empty() {
            continue;
        }
        if wi == 0 || spec.workloads.len() == 1 {
            paragraphs.push(winner_paragraph(&setting, &budget, &where_, &contenders));
            if let Some(why) = why_paragraph(&contenders) {
                paragraphs.push(why);
            }
            if let Some(p) = subject_paragraph(spec, &contenders) {
                paragraphs.push(p);
            }
            if let Some(by_budget) = by_budget_paragraph(spec, &of) {
                paragraphs.push(by_budget);
            }
            if let Some(bounds) = bounds_paragraph(&at, spec.offline, contenders[0]) {
                paragraphs.push(bounds);
            }
        } else {
            paragraphs.push(short_paragraph(&budget, &where_, &contenders));
        }
    }
    Headline { paragraphs }
}

/// Rows sorted fastest first (ties keep experiment order); `offline_only` picks the bounds.
fn ranked<'r>(
    rows: &[&'r ResultRow],
    offline: &[String],
    offline_only: bool,
) -> Vec<&'r ResultRow> {
    let mut v: Vec<&ResultRow> = rows
        .iter()
        .copied()
        .filter(|r| offline.contains(&r.id.label) == offline_only)
        .collect();
    v.sort_by(|a, b| {
        b.summary
            .decode_tokens_per_s
            .total_cmp(&a.summary.decode_tokens_per_s)
    });
    v
}

fn ties(a: &ResultRow, b: &ResultRow) -> bool {
    let (x, y) = (a.summary.decode_tokens_per_s, b.summary.decode_tokens_per_s);
    x.max(y) <= 0.0 || (x - y).abs() / x.max(y) < TIE_RELATIVE
}

fn ratio(a: &ResultRow, b: &ResultRow) -> f64 {
    a.summary.decode_tokens_per_s / b.summary.decode_tokens_per_s
}

fn winner_paragraph(setting: &str, budget: &str, where_: &str, c: &[&ResultRow]) -> String {
    let best = c[0];
    let mut s = format!("{setting}, at {budget}{where_}: ");
    let tied: Vec<&&ResultRow> = c.iter().filter(|r| ties(r, best)).collect();
    if c.len() == 1 {
        let _ = write!(
            s,
            "`{}` is the only policy run: {} decode tokens/s.",
            best.id.label,
            rate(best)
        );
        return s;
    }
    if tied.len() > 1 {
        let names: Vec<String> = tied.iter().map(|r| format!("`{}`", r.id.label)).collect();
        let _ = write!(
            s,
            "{} tie for the fastest at {} decode tokens/s",
            join_and(&names),
            rate(best)
        );
    } else {
        let next = c[1];
        let _ = write!(
            s,
            "`{}` is the fastest policy, {} decode tokens/s: {:.2}x the next best, `{}` ({})",
            best.id.label,
            rate(best),
            ratio(best, next),
            next.id.label,
            rate(next)
        );
    }
    let slowest = c[c.len() - 1];
    if !ties(slowest, best) && c.len() > 2 {
        let _ = write!(
            s,
            ", and {:.2}x the slowest, `{}` ({})",
            ratio(best, slowest),
            slowest.id.label,
            rate(slowest)
        );
    }
    s.push('.');
    s
}

/// Why the winner wins: its time per token against the runner-up's (or the slowest's, when
/// the runner-up ties).
fn why_paragraph(c: &[&ResultRow]) -> Option<String> {
    let best = c[0];
    let other = *c.iter().find(|r| !ties(r, best))?;
    let (a, b) = (split(best), split(other));
    let gap = b.total_ms - a.total_ms;
    let mut s = format!(
        "Why: per decode token `{}` waits {} for loads and computes {}; `{}` waits {} and computes {}. ",
        best.id.label,
        ms(a.wait_ms),
        ms(a.compute_ms),
        other.id.label,
        ms(b.wait_ms),
        ms(b.compute_ms)
    );
    if gap > 0.0 {
        let wait_share = (b.wait_ms - a.wait_ms) / gap;
        if wait_share >= 0.5 {
            let _ = write!(
                s,
                "{:.0}% of the {} gap is waiting: `{}` reads {:.0} MiB per token against {:.0} MiB (hit rate {:.3} against {:.3}).",
                wait_share * 100.0,
                ms(gap),
                best.id.label,
                mib(best),
                mib(other),
                best.summary.hit_rate,
                other.summary.hit_rate
            );
        } else {
            let _ = write!(
                s,
                "{:.0}% of the {} gap is compute.",
                (1.0 - wait_share) * 100.0,
                ms(gap)
            );
        }
    }
    let degraded = degraded_share(best);
    if degraded > 0.0 {
        let _ = write!(
            s,
            " `{}` serves {:.1}% of expert invocations below its high precision or skips them (degraded gate-weight share {:.3}, an accuracy proxy): part of its speed is bought with quality.",
            best.id.label,
            degraded * 100.0,
            best.degraded_gate_share
        );
    }
    Some(s.trim_end().to_string())
}

/// The winner at every budget, consecutive budgets with the same outcome merged.
fn by_budget_paragraph<'r>(
    spec: &HeadlineSpec,
    of: &dyn Fn(&str) -> Vec<&'r ResultRow>,
) -> Option<String> {
    if spec.budgets.len() < 2 {
        return None;
    }
    struct Step {
        budget: String,
        key: String,
        text: Outcome,
    }
    enum Outcome {
        Tie {
            names: Vec<String>,
            rate: String,
            same_bytes: Option<f64>,
        },
        Win {
            name: String,
            ratio: f64,
            next: String,
        },
    }
    let mut steps = Vec::new();
    for b in spec.budgets {
        let rows = of(b);
        let c = ranked(&rows, spec.offline, false);
        if c.len() < 2 {
            continue;
        }
        let best = c[0];
        let tied: Vec<&ResultRow> = c.iter().copied().filter(|r| ties(r, best)).collect();
        let (key, text) = if tied.len() > 1 {
            let names: Vec<String> = tied.iter().map(|r| r.id.label.clone()).collect();
            let b0 = tied[0].summary.bytes_read_per_decode_token;
            let same = tied
                .iter()
                .all(|r| (r.summary.bytes_read_per_decode_token - b0).abs() <= 0.005 * b0.max(1.0));
            (
                format!("tie:{}", names.join("|")),
                Outcome::Tie {
                    names,
                    rate: rate(best),
                    same_bytes: same.then_some(b0 / (1u64 << 20) as f64),
                },
            )
        } else {
            (
                format!("win:{}:{}", best.id.label, c[1].id.label),
                Outcome::Win {
                    name: best.id.label.clone(),
                    ratio: ratio(best, c[1]),
                    next: c[1].id.label.clone(),
                },
            )
        };
        steps.push(Step {
            budget: b.clone(),
            key,
            text,
        });
    }
    if steps.is_empty() {
        return None;
    }
    let mut parts = Vec::new();
    let mut i = 0;
    while i < steps.len() {
        let mut j = i;
        while j + 1 < steps.len() && steps[j + 1].key == steps[i].key {
            j += 1;
        }
        let range = if i == j {
            steps[i].budget.clone()
        } else {
            format!("{} to {}", steps[i].budget, steps[j].budget)
        };
        let text = match &steps[i].text {
            Outcome::Tie {
                names,
                rate,
                same_bytes,
            } => {
                let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
                let mut t = format!("{range}: {} tie ({rate} tokens/s", join_and(&names));
                if let Some(m) = same_bytes {
                    let _ = write!(t, "; they read the same {m:.0} MiB per token");
                }
                t.push(')');
                t
            }
            Outcome::Win { name, next, .. } => {
                let ratios: Vec<f64> = steps[i..=j]
                    .iter()
                    .filter_map(|s| match s.text {
                        Outcome::Win { ratio, .. } => Some(ratio),
                        _ => None,
                    })
                    .collect();
                let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = ratios.iter().copied().fold(0.0, f64::max);
                let by = if (hi - lo) < 0.005 {
                    format!("{lo:.2}x")
                } else {
                    format!("{lo:.2}x to {hi:.2}x")
                };
                format!("{range}: `{name}` wins, {by} `{next}`")
            }
        };
        parts.push(text);
        i = j + 1;
    }
    Some(format!("By budget: {}.", parts.join("; ")))
}

/// The subject against the best contender that is neither the subject nor one of its variants.
fn subject_paragraph(spec: &HeadlineSpec, c: &[&ResultRow]) -> Option<String> {
    let (subject, variants) = spec.subject?;
    let s = c.iter().find(|r| r.id.label == subject)?;
    let base = c
        .iter()
        .find(|r| r.id.label != subject && !variants.contains(&r.id.label))?;
    let (a, b) = (split(s), split(base));
    Some(format!(
        "The experiment's subject, `{subject}`: {} tokens/s, {:.2}x the best other policy, `{}` ({}); it reads {:.0} MiB per token against {:.0} MiB and waits {} against {} per token.",
        rate(s),
        ratio(s, base),
        base.id.label,
        rate(base),
        mib(s),
        mib(base),
        ms(a.wait_ms),
        ms(b.wait_ms)
    ))
}

/// Policies that know the future, against the winner.
fn bounds_paragraph(at: &[&ResultRow], offline: &[String], best: &ResultRow) -> Option<String> {
    let bounds = ranked(at, offline, true);
    if bounds.is_empty() {
        return None;
    }
    let parts: Vec<String> = bounds
        .iter()
        .map(|r| {
            format!(
                "`{}` {} tokens/s ({:.2}x `{}`)",
                r.id.label,
                rate(r),
                ratio(r, best),
                best.id.label
            )
        })
        .collect();
    Some(format!(
        "Policies that plan with the trace's future are bounds, not contenders: {}. Belady's eviction bounds demand-loaded caching at one precision; a policy that changes precision or skips work can exceed it.",
        parts.join(", ")
    ))
}

fn short_paragraph(budget: &str, where_: &str, c: &[&ResultRow]) -> String {
    let best = c[0];
    match c.get(1) {
        Some(next) if ties(next, best) => format!(
            "At {budget}{where_}: `{}` and `{}` tie at {} tokens/s.",
            best.id.label,
            next.id.label,
            rate(best)
        ),
        Some(next) => format!(
            "At {budget}{where_}: `{}` wins, {} tokens/s, {:.2}x `{}`.",
            best.id.label,
            rate(best),
            ratio(best, next),
            next.id.label
        ),
        None => format!(
            "At {budget}{where_}: `{}`, {} tokens/s.",
            best.id.label,
            rate(best)
        ),
    }
}

/// Share of expert invocations served below the run's highest precision, or skipped.
fn degraded_share(r: &ResultRow) -> f64 {
    let served = [
        r.served_fp16,
        r.served_int8,
        r.served_int4,
        r.served_int3,
        r.served_int2,
    ];
    let total: u64 = served.iter().sum::<u64>() + r.skipped;
    let high = served.iter().copied().find(|&x| x > 0).unwrap_or(0);
    if total == 0 {
        0.0
    } else {
        (total - high) as f64 / total as f64
    }
}

fn rate(r: &ResultRow) -> String {
    let x = r.summary.decode_tokens_per_s;
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

fn mib(r: &ResultRow) -> f64 {
    r.summary.bytes_read_per_decode_token / (1u64 << 20) as f64
}

fn ms(x: f64) -> String {
    if x >= 1e3 {
        format!("{:.2} s", x / 1e3)
    } else if x >= 10.0 {
        format!("{x:.0} ms")
    } else {
        format!("{x:.2} ms")
    }
}

fn join_and(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [a] => a.clone(),
        [a, b] => format!("{a} and {b}"),
        [rest @ .., last] => format!("{}, and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{RunIdentity, RunSummary};

    fn row(
        budget: &str,
        label: &str,
        tok_s: f64,
        stall: f64,
        mib_read: f64,
        hit: f64,
    ) -> ResultRow {
        ResultRow::new(
            RunIdentity {
                experiment: "x".into(),
                device: "dev".into(),
                model: "mod".into(),
                trace: "t".into(),
                workload: String::new(),
                policy: label.into(),
                label: label.into(),
                budget_label: budget.into(),
                budget_bytes: 1 << 30,
                seed: 0,
            },
            RunSummary {
                decode_tokens_per_s: tok_s,
                decode_stall_share: stall,
                bytes_read_per_decode_token: mib_read * (1u64 << 20) as f64,
                hit_rate: hit,
                ..RunSummary::default()
            },
            &crate::policy::Counters::default(),
        )
    }

    fn spec<'a>(w: &'a [String], b: &'a [String], offline: &'a [String]) -> HeadlineSpec<'a> {
        HeadlineSpec {
            workloads: w,
            budgets: b,
            headline_budget: None,
            offline,
            subject: None,
        }
    }

    #[test]
    fn winner_ratio_and_why_come_from_the_rows() {
        // lru: 0.5 tok/s = 2000 ms/token, 75% waiting (1500 ms), 500 ms compute.
        // on-demand: 0.25 tok/s = 4000 ms/token, 87.5% waiting (3500 ms), 500 ms compute.
        let rows = vec![
            row("small", "on-demand", 0.25, 0.875, 100.0, 0.0),
            row("small", "lru", 0.25, 0.875, 100.0, 0.0),
            row("big", "on-demand", 0.25, 0.875, 100.0, 0.0),
            row("big", "lru", 0.5, 0.75, 40.0, 0.6),
        ];
        let w = vec![String::new()];
        let b = vec!["small".to_string(), "big".to_string()];
        let h = headline(&spec(&w, &b, &[]), &rows);
        let all = h.paragraphs.join("\n");
        assert!(
            all.contains("at big: `lru` is the fastest policy, 0.500 decode tokens/s: 2.00x the next best, `on-demand` (0.250)"),
            "{all}"
        );
        assert!(
            all.contains("`lru` waits 1.50 s for loads and computes 500 ms; `on-demand` waits 3.50 s and computes 500 ms"),
            "{all}"
        );
        // The 2 s gap is all waiting.
        assert!(all.contains("100% of the 2.00 s gap is waiting"), "{all}");
        assert!(
            all.contains("reads 40 MiB per token against 100 MiB"),
            "{all}"
        );
        assert!(
            all.contains("small: `on-demand` and `lru` tie (0.250 tokens/s; they read the same 100 MiB per token); big: `lru` wins, 2.00x `on-demand`"),
            "{all}"
        );
    }

    #[test]
    fn offline_policies_are_bounds_not_winners() {
        let rows = vec![
            row("b", "lru", 0.5, 0.5, 10.0, 0.5),
            row("b", "on-demand", 0.25, 0.75, 20.0, 0.0),
            row("b", "belady", 1.0, 0.2, 5.0, 0.8),
        ];
        let w = vec![String::new()];
        let b = vec!["b".to_string()];
        let offline = vec!["belady".to_string()];
        let h = headline(&spec(&w, &b, &offline), &rows);
        let all = h.paragraphs.join("\n");
        assert!(all.contains("`lru` is the fastest policy"), "{all}");
        assert!(
            all.contains("`belady` 1.000 tokens/s (2.00x `lru`)"),
            "{all}"
        );
        // Without the offline mark, belady would win.
        let h = headline(&spec(&w, &b, &[]), &rows);
        assert!(
            h.paragraphs[0].contains("`belady` is the fastest"),
            "{:?}",
            h
        );
    }

    #[test]
    fn nothing_to_say_without_rows() {
        let w = vec![String::new()];
        let b = vec!["b".to_string()];
        assert!(headline(&spec(&w, &b, &[]), &[]).paragraphs.is_empty());
    }
}
