//! The headline of a prepared comparison's rows (see [`crate::report::headline`]), with the
//! policies that plan with the trace's future found by asking each policy, not by its name.

use super::prepare::Prepared;
use crate::report::headline::{headline, Headline, HeadlineSpec};
use crate::report::ResultRow;
use crate::scenario::experiment::policy_context;

/// The experiment's budget labels in order (the first workload's runs list each once).
pub fn budget_labels(p: &Prepared) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for r in p.runs.iter().filter(|r| r.workload == 0) {
        if !v.contains(&r.budget_label) {
            v.push(r.budget_label.clone());
        }
    }
    v
}

/// Labels of the experiment's policies whose [`needs_future`](crate::policy::Policy::needs_future)
/// is true (Belady and anything with Belady's eviction): bounds, not contenders. A policy that
/// cannot be built here is not marked (its runs would have failed first).
pub fn offline_labels(p: &Prepared) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for spec in p.runs.iter().filter(|r| r.workload == 0) {
        if out.contains(&spec.label) {
            continue;
        }
        let ctx = policy_context(
            p.model.clone(),
            p.device.clone(),
            &p.experiment,
            spec.budget_bytes,
            p.max_context,
            spec.params.clone(),
        );
        if crate::policy::build(&spec.policy, ctx).is_ok_and(|pol| pol.needs_future()) {
            out.push(spec.label.clone());
        }
    }
    out
}

/// The headline of `rows`, which came from `p`.
pub fn headline_of(p: &Prepared, rows: &[ResultRow]) -> Headline {
    let workloads: Vec<String> = p.workloads.iter().map(|w| w.label.clone()).collect();
    let budgets = budget_labels(p);
    let offline = offline_labels(p);
    let headline_budget = p
        .experiment
        .analysis
        .as_ref()
        .and_then(|a| a.headline_budget.as_deref());
    headline(
        &HeadlineSpec {
            workloads: &workloads,
            budgets: &budgets,
            headline_budget,
            offline: &offline,
            subject: p
                .experiment
                .analysis
                .as_ref()
                .map(|a| (a.subject.as_str(), a.ablations.as_slice())),
        },
        rows,
    )
}
