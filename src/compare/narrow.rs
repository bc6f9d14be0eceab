//! Narrowing an experiment to some of its policies (`--policy` of `compare`, `replay` and
//! `validate`), and what that leaves of its analysis.
//!
//! A name picks the experiment's policy of that label (a policy without a label is labelled by
//! its name), else the one policy of that name, keeping its parameters; a name the experiment
//! does not list is that policy with default parameters. A policy listed several times under
//! other labels must be named by one of them.
//!
//! The analysis then keeps what the remaining policies can answer: ablations and a ceiling
//! that are no longer run are dropped; without its subject no analysis is written at all. Each
//! drop is returned as a note for the command's output, and kept in the analysis for the top
//! of `summary.md`.

use crate::scenario::{Experiment, PolicySpec};

/// Replaces `exp`'s policies by those `names` pick and adapts its analysis; returns what was
/// dropped, in words.
pub fn narrow_policies(exp: &mut Experiment, names: &[String]) -> Result<Vec<String>, String> {
    exp.policies = names
        .iter()
        .map(|n| pick(exp, n))
        .collect::<Result<Vec<_>, String>>()?;
    Ok(narrow_analysis(exp))
}

/// The experiment's policy that `name` means (see the module docs).
fn pick(exp: &Experiment, name: &str) -> Result<PolicySpec, String> {
    if let Some(s) = exp.policies.iter().find(|s| s.label() == name) {
        return Ok(s.clone());
    }
    let named: Vec<&PolicySpec> = exp.policies.iter().filter(|s| s.name == name).collect();
    match named.as_slice() {
        [] => Ok(PolicySpec {
            name: name.to_string(),
            label: None,
            params: serde_json::Value::Null,
        }),
        [one] => Ok((*one).clone()),
        several => Err(format!(
            "experiment `{}` lists policy `{name}` {} times with different parameters; name one by its label: {}",
            exp.name,
            several.len(),
            several
                .iter()
                .map(|s| s.label())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Drops the parts of `exp.analysis` that name policies no longer in `exp.policies`.
fn narrow_analysis(exp: &mut Experiment) -> Vec<String> {
    let Some(a) = exp.analysis.as_mut() else {
        return Vec::new();
    };
    let run = |l: &str| exp.policies.iter().any(|p| p.label() == l);
    let mut notes = Vec::new();
    if !run(&a.subject) {
        notes.push(format!(
            "analysis not written: its subject `{}` is not among the policies run",
            a.subject
        ));
        exp.analysis = None;
        return notes;
    }
    let (kept, dropped): (Vec<String>, Vec<String>) = a.ablations.drain(..).partition(|l| run(l));
    a.ablations = kept;
    if !dropped.is_empty() {
        notes.push(format!(
            "analysis: ablations not run, left out: {}",
            dropped
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(c) = a.ceiling.take_if(|c| !run(c)) {
        notes.push(format!(
            "analysis: ceiling `{c}` not run, so the budget plots draw none"
        ));
    }
    a.notes.extend(notes.iter().cloned());
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, label: Option<&str>, params: serde_json::Value) -> PolicySpec {
        PolicySpec {
            name: name.into(),
            label: label.map(str::to_string),
            params,
        }
    }

    fn experiment() -> Experiment {
        let (mut exp, _) = crate::compare::load_experiment("hobbit-orin").unwrap();
        exp.policies
            .push(spec("lru", Some("lru-2"), serde_json::json!({"unused": 1})));
        exp
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_name_picks_by_label_then_by_the_one_policy_of_that_name() {
        let mut exp = experiment();
        let notes = narrow_policies(
            &mut exp,
            &names(&["hobbit", "hobbit -prefetch", "moe-infinity", "fifo"]),
        )
        .unwrap();
        let picked: Vec<(&str, &str)> = exp
            .policies
            .iter()
            .map(|p| (p.name.as_str(), p.label()))
            .collect();
        assert_eq!(
            picked,
            vec![
                ("hobbit", "hobbit"),
                ("hobbit", "hobbit -prefetch"),
                ("moe-infinity", "moe-infinity"),
                ("fifo", "fifo")
            ]
        );
        assert_eq!(exp.policies[1].params["prefetch"], false);
        // Four ablations and the ceiling are gone; the kept ablation stays.
        let a = exp.analysis.as_ref().unwrap();
        assert_eq!(a.ablations, names(&["hobbit -prefetch"]));
        assert_eq!(a.ceiling, None);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("`hobbit -dynamic loading`"), "{notes:?}");
        assert!(!notes[0].contains("`hobbit -prefetch`"), "{notes:?}");
        assert!(notes[1].contains("ceiling `belady`"), "{notes:?}");
        assert_eq!(a.notes, notes);
        exp.check().unwrap();
    }

    #[test]
    fn without_its_subject_the_analysis_is_dropped() {
        let mut exp = experiment();
        let notes = narrow_policies(&mut exp, &names(&["lru-2", "belady"])).unwrap();
        assert!(exp.analysis.is_none());
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("subject `hobbit`"), "{notes:?}");
        exp.check().unwrap();
    }

    #[test]
    fn a_policy_listed_under_several_other_labels_must_be_named_by_one() {
        let mut exp = experiment();
        exp.policies.retain(|p| p.name != "lru");
        exp.policies
            .push(spec("lru", Some("lru-1"), serde_json::Value::Null));
        exp.policies
            .push(spec("lru", Some("lru-2"), serde_json::Value::Null));
        let err = narrow_policies(&mut exp, &names(&["lru"])).unwrap_err();
        assert!(err.contains("name one by its label: lru-1, lru-2"), "{err}");
    }

    #[test]
    fn an_experiment_without_analysis_has_nothing_to_narrow() {
        let (mut exp, _) = crate::compare::load_experiment("default").unwrap();
        assert!(exp.analysis.is_none());
        assert!(narrow_policies(&mut exp, &names(&["lru"]))
            .unwrap()
            .is_empty());
    }
}
