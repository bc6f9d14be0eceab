//! The importer on the real Mixtral-8x7B routing recordings in ../shared/data (skipped with a
//! message when the folder is absent). The imported trace's per-layer LRU hit rates are checked
//! against an independent count made here straight from the JSON lines, and against the
//! statistics stated in the data's SOURCE.md.

use edgesim::trace::import::{import_mixtral_jsonl, MixtralLayout};
use edgesim::trace::stats::stats_file;
use edgesim::trace::{validate_file, TraceKind};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn mixtral() -> edgesim::model::ModelGeometry {
    let profile = edgesim::scenario::load_model("mixtral-8x7b").unwrap();
    edgesim::model::ModelGeometry::from_profile(&profile).unwrap()
}

fn data_dir() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/mixtral-8x7b-routing");
    if d.is_dir() {
        Some(d)
    } else {
        eprintln!("skipped: {} is absent", d.display());
        None
    }
}

/// Per (problem, layer), the experts of every recorded line in file order, read with
/// serde_json::Value: nothing shared with the importer.
fn columns_from_jsonl(path: &std::path::Path) -> BTreeMap<(u64, u64), Vec<Vec<u64>>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut by_layer: BTreeMap<(u64, u64), Vec<Vec<u64>>> = BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let layer = (
            v["problem_id"].as_u64().unwrap(),
            v["layer"].as_u64().unwrap(),
        );
        let mut pairs: Vec<(f64, u64)> = v["experts"]
            .as_array()
            .unwrap()
            .iter()
            .zip(v["gating_probs"].as_array().unwrap())
            .map(|(e, w)| (w.as_f64().unwrap(), e.as_u64().unwrap()))
            .collect();
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        by_layer
            .entry(layer)
            .or_default()
            .push(pairs.iter().map(|p| p.1).collect());
    }
    by_layer
}

/// Per-layer LRU hit rate averaged over layers. With `keep_across_problems` one cache per layer
/// sees the problems one after another (as `trace stats` counts); without it each
/// (problem, layer) starts cold and hits are pooled per layer (as SOURCE.md's figures are).
fn lru_hit_rate(
    columns: &BTreeMap<(u64, u64), Vec<Vec<u64>>>,
    capacity: usize,
    keep_across_problems: bool,
) -> f64 {
    let mut rates = Vec::new();
    for layer in 0..32u64 {
        let mut cache: Vec<u64> = Vec::new();
        let (mut hits, mut accesses) = (0u64, 0u64);
        let tokens = columns
            .iter()
            .filter(|((_, l), _)| *l == layer)
            .flat_map(|(key, column)| column.iter().enumerate().map(move |(i, t)| (key.0, i, t)));
        let mut last_problem = None;
        for (problem, _, token) in tokens {
            if !keep_across_problems && last_problem != Some(problem) {
                cache.clear();
            }
            last_problem = Some(problem);
            for e in token {
                accesses += 1;
                if let Some(i) = cache.iter().position(|x| x == e) {
                    hits += 1;
                    cache.remove(i);
                }
                cache.push(*e);
                if cache.len() > capacity {
                    cache.remove(0);
                }
            }
        }
        rates.push(hits as f64 / accesses as f64);
    }
    rates.iter().sum::<f64>() / rates.len() as f64
}

#[test]
fn decode_trace_lru_hit_rates_match_an_independent_count_and_source_md() {
    let Some(dir) = data_dir() else { return };
    let input = dir.join("humaneval_2_routing.jsonl");
    let out = tempfile::tempdir().unwrap();
    let trace = out.path().join("humaneval2.est");
    let report = import_mixtral_jsonl(&input, &trace, &mixtral()).unwrap();
    assert_eq!(report.layout, MixtralLayout::DecodeOnly);
    assert_eq!(report.lines_read, 10_779);
    // SOURCE.md: 2 problems with 83 and 255 generated tokens.
    assert_eq!((report.sequences, report.tokens), (2, 83 + 255));
    // Every (token, layer) cell is either a line of the file or a filled cell.
    assert_eq!(report.cells_filled_at_layer_end + 10_779, (83 + 255) * 32);
    assert_eq!(report.cells_filled_in_place, 0);
    assert_eq!(report.cells_filled_at_layer_end, 37);
    let v = validate_file(&trace).unwrap();
    assert_eq!(v.header.kind, TraceKind::Expert);
    assert_eq!(v.summary.filled_cells, report.cells_filled_at_layer_end);
    assert!(v.header.source.description.contains("filled"));

    let stats = stats_file(&trace).unwrap();
    let e = stats.expert.unwrap();
    let columns = columns_from_jsonl(&input);
    for (capacity, source_md) in [(2usize, 0.34), (4, 0.60), (6, 0.80)] {
        let independent = lru_hit_rate(&columns, capacity, true);
        let per_problem = lru_hit_rate(&columns, capacity, false);
        let imported = e
            .layers
            .iter()
            .map(|l| l.lru_hit_rate[capacity - 1])
            .sum::<f64>()
            / 32.0;
        eprintln!(
            "LRU {capacity}: imported {imported:.4}, independent {independent:.4}, \
             cold per problem {per_problem:.4}, SOURCE.md {source_md}"
        );
        // The imported trace differs from the raw lines only by its 37 filled cells (0.3% of
        // accesses, each a hit), so the two counts agree to within 0.005.
        assert!(
            (imported - independent).abs() < 0.005,
            "{imported} vs {independent}"
        );
        // SOURCE.md gives two decimals, counted with a cold cache per problem.
        assert!(
            (per_problem - source_md).abs() < 0.006,
            "{per_problem} vs {source_md}"
        );
    }
    // SOURCE.md: mean fraction of the previous token's experts reused: 0.40.
    assert!(
        (e.mean_consecutive_reuse - 0.40).abs() < 0.01,
        "{}",
        e.mean_consecutive_reuse
    );
}

#[test]
fn prefill_decode_trace_has_exact_positions() {
    let Some(dir) = data_dir() else { return };
    let input = dir.join("humaneval_p0_routing_raw_prefill_decode.jsonl");
    let out = tempfile::tempdir().unwrap();
    let trace = out.path().join("p0.est");
    let report = import_mixtral_jsonl(&input, &trace, &mixtral()).unwrap();
    assert_eq!(report.layout, MixtralLayout::PrefillDecode);
    // SOURCE.md: 135 prefill + 83 decode tokens, 6,777 records.
    assert_eq!((report.tokens, report.prefill_tokens), (218, 135));
    assert_eq!(report.cells_filled_in_place + 6_777, 218 * 32);
    assert_eq!(report.cells_filled_at_layer_end, 0);
    let v = validate_file(&trace).unwrap();
    assert_eq!(
        (v.summary.prefill_tokens, v.summary.decode_tokens),
        (135, 83)
    );
}
