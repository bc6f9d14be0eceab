//! Bounds on every count and size a user can write: flags, profile numbers, experiment sweeps,
//! trace lengths. `docs/limits.md` is the table a user reads; this module is the one place the
//! numbers live.
//!
//! Why bounds at all: a number that is merely *valid* can still ask for hours of work or more
//! memory than the machine has (`--jobs 100000` started 732 threads; a device file with 10^6
//! CPU clusters started a sweep of hours). Each bound is far above what any real device, model
//! or study needs and far below what would exhaust a 24 GiB machine, and a run that would cross
//! one is refused before it starts (before a whole trace is read), with a message naming the
//! field, the value as written and the bound.

use serde_json::Value;

/// Worker threads of `compare --jobs`, `generate --threads`, `trace record --threads`.
pub const MAX_THREADS: usize = 256;
/// Budgets, policies and workloads of one experiment.
pub const MAX_BUDGETS: usize = 256;
pub const MAX_POLICIES: usize = 256;
pub const MAX_WORKLOADS: usize = 64;
/// Runs of one comparison (workloads × budgets × policies).
pub const MAX_RUNS: usize = 4096;
/// Records (tokens) of one trace a run reads or `trace gen` writes: 100 M.
pub const MAX_TRACE_TOKENS: u64 = 100_000_000;
/// Tokens of one generated workload, held in memory for the comparison: 1 M (~100 MB).
pub const MAX_GENERATED_TOKENS: u64 = 1_000_000;
/// Simulated work of one comparison: runs × tokens replayed per run (10^10: at the
/// simulator's ~10^6 tokens/s, about three hours of CPU; a sweep beyond is a cluster job).
pub const MAX_SWEEP_TOKEN_RUNS: u64 = 10_000_000_000;
/// Positions of one sequence (the KV cache a run sizes): 2^20.
pub const MAX_CONTEXT: u32 = 1 << 20;
/// Prefill tokens planned as one pass.
pub const MAX_PREFILL_CHUNK: u32 = 1 << 16;
/// Timeline ops per run (`--timeline N`): a Chrome trace of 10 M ops is ~2 GB of JSON.
pub const MAX_TIMELINE_OPS: usize = 10_000_000;
/// New tokens of `generate --max-tokens` and `trace record --max-tokens`.
pub const MAX_NEW_TOKENS: usize = 1 << 20;
/// Repetitions of a validation measurement (`validate --repeat`).
pub const MAX_REPEAT: usize = 1000;
/// Scale divisor of `exec prepare --scale`.
pub const MAX_SCALE: u32 = 1 << 16;
/// Bytes of one weight store `exec prepare` writes: 1 TiB.
pub const MAX_STORE_BYTES: u64 = 1 << 40;
/// A memory budget in GiB (`gib`, `--budget-gib`): 1 PiB.
pub const MAX_BUDGET_GIB: f64 = 1_048_576.0;
/// Scratch of `calibrate --scratch-mib`: 1 TiB.
pub const MAX_SCRATCH_MIB: u64 = 1 << 20;

/// Bounds on the numbers of device and model profiles, by field name. A profile's number
/// `{"value": V, "source": ...}` (or plain number) at a field whose name matches is checked
/// against the bound; the first matching rule applies. Units are the field's own.
pub const PROFILE_BOUNDS: &[(ProfileField, f64, &str)] = &[
    (ProfileField::Suffix("bytes_per_s"), 1e14, "100 TB/s"),
    (ProfileField::Suffix("ops_per_s"), 1e17, "10^17 op/s"),
    (ProfileField::Suffix("_ns"), 1e10, "10 s"),
    (ProfileField::Suffix("_bytes"), (1u64 << 50) as f64, "1 PiB"),
    (ProfileField::Exact("cores"), 1024.0, "1024"),
    (ProfileField::Exact("channels"), 1024.0, "1024"),
    (ProfileField::Exact("servers"), 1024.0, "1024"),
    (ProfileField::Exact("layers"), 4096.0, "4096"),
    (ProfileField::Exact("dense_layers"), 4096.0, "4096"),
    (ProfileField::Exact("experts"), 65_535.0, "65535"),
    (ProfileField::Exact("top_k"), 256.0, "256"),
    (ProfileField::Exact("hidden"), (1u32 << 20) as f64, "2^20"),
    (ProfileField::Exact("ffn"), (1u32 << 26) as f64, "2^26"),
    (ProfileField::Exact("heads"), 4096.0, "4096"),
    (ProfileField::Exact("kv_heads"), 4096.0, "4096"),
    (ProfileField::Exact("head_dim"), 65_536.0, "65536"),
    (ProfileField::Exact("vocab"), (1u32 << 24) as f64, "2^24"),
];
/// Elements of any list in a profile (CPU clusters, read-curve points, ...).
pub const MAX_PROFILE_LIST: usize = 256;

/// How a [`PROFILE_BOUNDS`] rule matches a field name.
#[derive(Clone, Copy, Debug)]
pub enum ProfileField {
    Suffix(&'static str),
    Exact(&'static str),
}

impl ProfileField {
    fn matches(self, name: &str) -> bool {
        match self {
            ProfileField::Suffix(s) => name.ends_with(s),
            ProfileField::Exact(s) => name == s,
        }
    }
}

/// `field` is `value`, above `bound`: the message every check here gives.
pub fn above(field: &str, value: impl std::fmt::Display, bound: impl std::fmt::Display) -> String {
    format!("`{field}` is {value}, above its bound of {bound} (docs/limits.md)")
}

/// A user's floating-point number as JSON writes it (`1e+308`, not 309 digits; `0.5`).
pub fn as_written(x: f64) -> String {
    serde_json::Number::from_f64(x)
        .map(|n| n.to_string())
        .unwrap_or_else(|| format!("{x}"))
}

/// Checks a count against its bound.
pub fn check_count(field: &str, value: u64, bound: u64) -> Result<(), String> {
    if value > bound {
        return Err(above(field, value, bound));
    }
    Ok(())
}

/// Every number and list of a profile's JSON tree against [`PROFILE_BOUNDS`] and
/// [`MAX_PROFILE_LIST`]; problems name the field path and print the number as written.
pub fn profile_problems(tree: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    walk(tree, "", "", &mut problems);
    problems
}

fn walk(v: &Value, path: &str, name: &str, problems: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            // A cited number: `{"value": N, "source": ...}` is checked under its field's name.
            if let (Some(n @ Value::Number(_)), true) =
                (map.get("value"), map.contains_key("source"))
            {
                check_number(n, path, name, problems);
                return;
            }
            for (k, x) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(x, &p, k, problems);
            }
        }
        Value::Array(items) => {
            if items.len() > MAX_PROFILE_LIST {
                problems.push(above(
                    path,
                    format!("a list of {} elements", items.len()),
                    format!("{MAX_PROFILE_LIST} elements"),
                ));
                return;
            }
            for (i, x) in items.iter().enumerate() {
                walk(x, &format!("{path}[{i}]"), name, problems);
            }
        }
        Value::Number(_) => check_number(v, path, name, problems),
        _ => {}
    }
}

fn check_number(n: &Value, path: &str, name: &str, problems: &mut Vec<String>) {
    let Some(x) = n.as_f64() else { return };
    if let Some((_, bound, shown)) = PROFILE_BOUNDS.iter().find(|(f, _, _)| f.matches(name)) {
        if x > *bound {
            // `n` prints as serde_json read it: 1e308 stays 1e308.
            problems.push(above(path, n, shown));
        }
    }
}

/// An experiment's counts: sweep size, generated workloads, context, prefill chunk. Called by
/// [`crate::scenario::Experiment::check`], so overrides from the command line are checked too.
pub fn experiment_problem(exp: &crate::scenario::Experiment) -> Option<String> {
    let counts = [
        ("budgets", exp.budgets.len(), MAX_BUDGETS),
        ("policies", exp.policies.len(), MAX_POLICIES),
        ("workloads", exp.workloads.len(), MAX_WORKLOADS),
    ];
    for (field, n, bound) in counts {
        if n > bound {
            return Some(above(
                field,
                format!("a list of {n} elements"),
                format!("{bound} elements"),
            ));
        }
    }
    let runs = exp.budgets.len() * exp.policies.len() * exp.workloads.len().max(1);
    if runs > MAX_RUNS {
        return Some(format!(
            "the sweep has {runs} runs ({} budgets x {} policies x {} workloads), above the bound of {MAX_RUNS} runs (docs/limits.md); split it with `compare --shard` or fewer budgets",
            exp.budgets.len(),
            exp.policies.len(),
            exp.workloads.len().max(1)
        ));
    }
    for (i, w) in exp.workloads.iter().enumerate() {
        if let Some(g) = &w.generate {
            let tokens = u64::from(g.sequences) * (u64::from(g.prefill) + u64::from(g.decode));
            if tokens > MAX_GENERATED_TOKENS {
                return Some(above(
                    &format!("workloads[{i}].generate"),
                    format!(
                        "{} sequences x ({} + {}) = {tokens} tokens",
                        g.sequences, g.prefill, g.decode
                    ),
                    format!("{MAX_GENERATED_TOKENS} tokens (held in memory)"),
                ));
            }
            if u64::from(g.prefill) + u64::from(g.decode) > u64::from(MAX_CONTEXT) {
                return Some(above(
                    &format!("workloads[{i}].generate"),
                    format!(
                        "a sequence of {} tokens",
                        u64::from(g.prefill) + u64::from(g.decode)
                    ),
                    format!("{MAX_CONTEXT} positions"),
                ));
            }
        }
    }
    if let Some(c) = exp.max_context.filter(|&c| c > MAX_CONTEXT) {
        return Some(above("max_context", c, MAX_CONTEXT));
    }
    if let Some(c) = exp.max_prefill_chunk.filter(|&c| c > MAX_PREFILL_CHUNK) {
        return Some(above("max_prefill_chunk", c, MAX_PREFILL_CHUNK));
    }
    None
}

/// The work of a comparison, known once every trace's length is (from its trailer, before
/// any record is read): each trace within [`MAX_TRACE_TOKENS`] and runs × tokens within
/// [`MAX_SWEEP_TOKEN_RUNS`]. `tokens` lists (trace name, tokens, runs on it).
pub fn sweep_problem(tokens: &[(String, u64, usize)]) -> Option<String> {
    let mut total = 0u64;
    for (name, n, runs) in tokens {
        if *n > MAX_TRACE_TOKENS {
            return Some(format!(
                "{name}: the trace holds {n} tokens, above the bound of {MAX_TRACE_TOKENS} tokens per trace (docs/limits.md)"
            ));
        }
        total = total.saturating_add(n.saturating_mul(*runs as u64));
    }
    if total > MAX_SWEEP_TOKEN_RUNS {
        return Some(format!(
            "the comparison would replay {total} tokens in all (runs x trace tokens), above the bound of {MAX_SWEEP_TOKEN_RUNS} (docs/limits.md); use fewer runs, a shorter trace, or `--shard`"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_numbers_are_bounded_and_printed_as_written() {
        let tree: Value = serde_json::from_str(
            r#"{"memory": {"bandwidth_bytes_per_s": {"value": 1e308, "source": "x"}},
                "cpu": [{"cores": {"value": 7, "source": "x"}}, {"cores": 100000}]}"#,
        )
        .unwrap();
        let p = profile_problems(&tree);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].contains("`memory.bandwidth_bytes_per_s` is 1e+308"),
            "{}",
            p[0]
        );
        assert!(
            p[1].contains("`cpu[1].cores` is 100000, above its bound of 1024"),
            "{}",
            p[1]
        );
    }

    #[test]
    fn bundled_profiles_are_within_bounds() {
        for (kind, folder) in [
            (
                crate::scenario::ProfileKind::Device,
                crate::scenario::device_names(),
            ),
            (
                crate::scenario::ProfileKind::Model,
                crate::scenario::model_names(),
            ),
        ] {
            for name in folder {
                let text = crate::scenario::bundled_text(kind, name).unwrap();
                let tree: Value = serde_json::from_str(text).unwrap();
                assert!(profile_problems(&tree).is_empty(), "{name}");
            }
        }
    }

    #[test]
    fn numbers_print_as_written() {
        assert_eq!(as_written(1e308), "1e+308");
        assert_eq!(as_written(0.25), "0.25");
    }

    #[test]
    fn long_lists_are_refused() {
        let tree = serde_json::json!({ "cpu": vec![serde_json::json!({}); 300] });
        assert!(profile_problems(&tree)[0].contains("a list of 300 elements"));
    }
}
