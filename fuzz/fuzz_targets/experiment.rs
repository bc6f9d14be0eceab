//! Experiment files (`scenarios/experiments/*.json`, `compare -e PATH`): parsed and checked,
//! resolved against their device, model and trace headers (`compare::prepare`, with
//! `max_context` pinned so no trace is read whole), and every policy built from its params.
#![no_main]

use edgesim::compare::{parse_experiment, prepare};
use edgesim::scenario::experiment::policy_context;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut experiment) = parse_experiment(text, "fuzz-experiment.json") else {
        return;
    };
    // Generated workloads are made in memory: keep them small so one input stays fast (the
    // limits module bounds what a user may ask for; the fuzzer needs less).
    let small = experiment.workloads.iter().all(|w| {
        w.generate.as_ref().is_none_or(|g| {
            u64::from(g.sequences) * (u64::from(g.prefill) + u64::from(g.decode)) <= 64
        })
    });
    if !small {
        return;
    }
    experiment.max_context = Some(experiment.max_context.unwrap_or(256).min(4096));
    let Ok(prepared) = prepare(experiment, None) else {
        return;
    };
    for spec in prepared.runs.iter().take(64) {
        let ctx = policy_context(
            prepared.model.clone(),
            prepared.device.clone(),
            &prepared.experiment,
            spec.budget_bytes,
            prepared.max_context,
            spec.params.clone(),
        );
        let _ = edgesim::policy::build(&spec.policy, ctx);
    }
});
