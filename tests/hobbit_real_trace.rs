//! Expert policies on the real Mixtral-8x7B routing trace in ../shared/data (skipped with a
//! message when the folder is absent).
//!
//! - The `lru` policy's hit count equals an independent count: a plain LRU over (layer,
//!   expert) written here, with the one rule the planner adds (a layer's other demand, not yet
//!   computed, is never the victim), fed from the imported trace's records.
//! - Every expert policy plans the whole trace, and `belady` hits at least as often as `lru`.

use edgesim::model::{ModelGeometry, Precision, TensorKind};
use edgesim::plan::PlanBuilder;
use edgesim::policy::{self, FutureAccesses, PolicyContext, POLICIES};
use edgesim::scenario::Footprint;
use edgesim::trace::import::import_mixtral_jsonl;
use edgesim::trace::{ForwardPass, PassGrouper, TraceReader};
use std::path::PathBuf;
use std::sync::Arc;

fn data_dir() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/mixtral-8x7b-routing");
    if d.is_dir() {
        Some(d)
    } else {
        eprintln!("skipped: {} is absent", d.display());
        None
    }
}

fn mixtral() -> ModelGeometry {
    let p = edgesim::scenario::load_model("mixtral-8x7b").unwrap();
    ModelGeometry::from_profile(&p).unwrap()
}

fn passes(trace: &std::path::Path) -> Vec<ForwardPass> {
    let reader = TraceReader::open(trace).unwrap();
    let mut g = PassGrouper::new(reader, 512);
    let mut out = Vec::new();
    let mut p = ForwardPass::default();
    while g.next_pass_into(&mut p).unwrap() {
        out.push(p.clone());
    }
    out
}

/// Global LRU of `capacity` entries over the passes' (layer, expert) demands, in the order a
/// pass is planned (layer by layer; a layer's distinct experts in order of first appearance).
fn independent_lru_hits(passes: &[ForwardPass], capacity: usize) -> (u64, u64) {
    let mut cache: Vec<(usize, u16)> = Vec::new(); // least recent first
    let (mut hits, mut lookups) = (0u64, 0u64);
    for p in passes {
        for layer in 0..32 {
            let mut demands: Vec<u16> = Vec::new();
            for t in &p.tokens {
                for &e in &t.experts[layer * 2..layer * 2 + 2] {
                    if !demands.contains(&e) {
                        demands.push(e);
                    }
                }
            }
            for (i, &e) in demands.iter().enumerate() {
                lookups += 1;
                let key = (layer, e);
                if let Some(pos) = cache.iter().position(|k| *k == key) {
                    hits += 1;
                    cache.remove(pos);
                    cache.push(key);
                    continue;
                }
                if cache.len() == capacity {
                    let pending = &demands[i + 1..];
                    let victim = cache
                        .iter()
                        .position(|k| !(k.0 == layer && pending.contains(&k.1)))
                        .expect("a victim");
                    cache.remove(victim);
                }
                cache.push(key);
            }
        }
    }
    (hits, lookups)
}

fn context(m: &ModelGeometry, entries: u64, params: serde_json::Value) -> PolicyContext {
    let fp = Footprint::of(m, Precision::Int8, Precision::Int8, 512);
    let expert = m.bytes(0, TensorKind::Expert(0), Precision::Int8);
    PolicyContext {
        model: Arc::new(m.clone()),
        device: Arc::new(edgesim::scenario::load_device("jetson-agx-orin").unwrap()),
        // Half an expert of slack for the per-tensor rounding of the resident set.
        budget_bytes: fp.resident_bytes + entries * expert + expert / 2,
        resident_precision: Precision::Int8,
        offload_precision: Precision::Int8,
        max_context: 512,
        seed: 1,
        params,
        load_ops: edgesim::policy::machinery::load_ops::plain(),
    }
}

fn run(
    m: &ModelGeometry,
    name: &str,
    entries: u64,
    params: serde_json::Value,
    ps: &[ForwardPass],
) -> Option<(u64, u64)> {
    let mut p = match policy::build(name, context(m, entries, params)) {
        Ok(p) => p,
        Err(policy::PolicyError::Unsupported(_)) => return None,
        Err(e) => panic!("{name}: {e}"),
    };
    if p.needs_future() {
        p.give_future(Arc::new(FutureAccesses::from_passes(m, ps)));
    }
    let mut next = 0;
    for pass in ps {
        let mut b = PlanBuilder::new(next);
        p.plan_pass(pass, &mut b).unwrap();
        next = b.finish().unwrap().end_id();
    }
    Some((p.counters().hits, p.counters().lookups))
}

#[test]
fn lru_hits_on_the_real_trace_match_an_independent_count() {
    let Some(dir) = data_dir() else { return };
    let out = tempfile::tempdir().unwrap();
    let trace = out.path().join("humaneval2.est");
    import_mixtral_jsonl(&dir.join("humaneval_2_routing.jsonl"), &trace, &mixtral()).unwrap();
    let m = mixtral();
    let ps = passes(&trace);
    assert_eq!(ps.len(), 83 + 255);
    for entries in [16u64, 64, 128, 192] {
        let (h, l) = run(&m, "lru", entries, serde_json::Value::Null, &ps).unwrap();
        let (ih, il) = independent_lru_hits(&ps, entries as usize);
        eprintln!("LRU of {entries} experts: policy {h}/{l}, independent {ih}/{il}");
        assert_eq!((h, l), (ih, il));
        let (b, _) = run(&m, "belady", entries, serde_json::Value::Null, &ps).unwrap();
        assert!(b >= h, "belady {b} < lru {h}");
    }
}

#[test]
fn every_expert_policy_plans_the_real_traces() {
    let Some(dir) = data_dir() else { return };
    let out = tempfile::tempdir().unwrap();
    let m = mixtral();
    for file in [
        "humaneval_2_routing.jsonl",
        "humaneval_p0_routing_raw_prefill_decode.jsonl",
    ] {
        let trace = out.path().join(format!("{file}.est"));
        import_mixtral_jsonl(&dir.join(file), &trace, &m).unwrap();
        let ps = passes(&trace);
        for &(name, _) in POLICIES {
            if let Some((h, l)) = run(&m, name, 96, serde_json::Value::Null, &ps) {
                assert!(h <= l, "{name}: {h} hits of {l}");
                assert!(l > 0, "{name}");
            }
        }
    }
}
