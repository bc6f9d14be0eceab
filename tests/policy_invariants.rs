//! Invariants every policy must keep, on random traces and budgets, checked by running its
//! plans on the simulator:
//! - the memory it holds never exceeds its budget (the simulator fails the run otherwise, and
//!   the replay loop checks the policy's own accounting after each pass);
//! - an expert's weights are in memory before its compute starts: every expert compute starts
//!   after a read of that expert ended (in this or an earlier pass), and after no eviction of
//!   it that came later;
//! - simulated time never goes backwards from pass to pass.

use edgesim::backend::{Backend, OpTiming};
use edgesim::hw::testing::{test_device, test_device_host_memory};
use edgesim::model::{ModelGeometry, ModelProfile, Precision, TensorKind, TensorRef};
use edgesim::plan::{Op, OpId, Plan, PlanBuilder};
use edgesim::policy::{self, PolicyContext, POLICIES};
use edgesim::scenario::Footprint;
use edgesim::sim::Simulator;
use edgesim::trace::{ForwardPass, Phase, TokenRecord};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::Arc;

fn small_moe() -> ModelGeometry {
    let json = r#"{
        "name": "tiny-moe", "description": "test model",
        "layers": {"value": 4, "source": "test"}, "hidden": {"value": 256, "source": "test"},
        "ffn": {"value": 512, "source": "test"}, "heads": {"value": 4, "source": "test"},
        "kv_heads": {"value": 2, "source": "test"}, "vocab": {"value": 1000, "source": "test"},
        "ffn_kind": "gated", "tied_embeddings": false, "native_bits": {"value": 16.0, "source": "test"},
        "moe": {"experts": {"value": 8, "source": "test"}, "top_k": {"value": 2, "source": "test"},
                "dense_layers": {"value": 1, "source": "test"}, "router": "softmax_topk"}
    }"#;
    let p: ModelProfile = serde_json::from_str(json).unwrap();
    ModelGeometry::from_profile(&p).unwrap()
}

/// Sequences of prefill chunks and decode tokens with random top-2 routing.
fn random_passes(
    model: &ModelGeometry,
    seed: u64,
    sequences: u32,
    decode: u32,
) -> Vec<ForwardPass> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let k = model.top_k as usize;
    let mut passes = Vec::new();
    let token = |rng: &mut ChaCha8Rng, seq: u32, pos: u32, phase: Phase| {
        let mut t = TokenRecord {
            sequence: seq,
            position: pos,
            phase,
            ..TokenRecord::default()
        };
        for _ in 0..model.moe_layers() {
            let mut chosen: Vec<u16> = Vec::new();
            while chosen.len() < k {
                let e = rng.gen_range(0..model.experts) as u16;
                if !chosen.contains(&e) {
                    chosen.push(e);
                }
            }
            let w: f32 = rng.gen_range(0.5..1.0);
            t.experts.extend(chosen);
            t.scores.extend([w, 1.0 - w]);
        }
        t
    };
    for seq in 0..sequences {
        let prefill = rng.gen_range(1..6u32);
        let tokens = (0..prefill)
            .map(|p| token(&mut rng, seq, p, Phase::Prefill))
            .collect();
        passes.push(ForwardPass {
            sequence: seq,
            phase: Phase::Prefill,
            tokens,
        });
        for d in 0..decode {
            passes.push(ForwardPass {
                sequence: seq,
                phase: Phase::Decode,
                tokens: vec![token(&mut rng, seq, prefill + d, Phase::Decode)],
            });
        }
    }
    passes
}

fn context(device: edgesim::hw::DeviceProfile, budget: u64) -> PolicyContext {
    PolicyContext {
        model: Arc::new(small_moe()),
        device: Arc::new(device),
        budget_bytes: budget,
        resident_precision: Precision::Int8,
        offload_precision: Precision::Int4,
        max_context: 64,
        seed: 7,
        params: serde_json::Value::Null,
    }
}

/// Runs `passes` and checks the invariants; returns a description of the first violation.
fn check_policy(
    name: &str,
    device: edgesim::hw::DeviceProfile,
    fraction: f64,
    passes: &[ForwardPass],
) -> Result<(), String> {
    let model = small_moe();
    let fp = Footprint::of(&model, Precision::Int8, Precision::Int4, 64);
    let one_expert = model.bytes(1, TensorKind::Expert(0), Precision::Int4);
    let budget = fp.resident_bytes + one_expert + (fraction * fp.offloadable_bytes as f64) as u64;
    let mut sim = Simulator::new(&device, budget).map_err(|e| e.to_string())?;
    let mut pol = policy::build(name, context(device, budget)).map_err(|e| e.to_string())?;

    let mut plans: BTreeMap<OpId, Op> = BTreeMap::new();
    let mut deps: BTreeMap<OpId, Vec<OpId>> = BTreeMap::new();
    let mut timings: BTreeMap<OpId, OpTiming> = BTreeMap::new();
    let mut record = |plan: &Plan, ops: &[OpTiming]| {
        for n in plan.nodes() {
            plans.insert(n.id, n.op);
            deps.insert(n.id, plan.deps(n).to_vec());
        }
        for t in ops {
            timings.insert(t.id, *t);
        }
    };
    let mut b = PlanBuilder::new(0);
    pol.plan_warmup(&mut b).map_err(|e| e.to_string())?;
    let warm = b.finish().map_err(|e| e.to_string())?;
    let step = sim.run(&warm).map_err(|e| e.to_string())?;
    record(&warm, &step.ops);
    let mut next = warm.end_id();
    let mut last_start = step.start;
    for pass in passes {
        let mut b = PlanBuilder::new(next);
        pol.plan_pass(pass, &mut b).map_err(|e| e.to_string())?;
        let plan = b.finish().map_err(|e| e.to_string())?;
        next = plan.end_id();
        let step = sim.run(&plan).map_err(|e| format!("{name}: {e}"))?;
        if step.start < last_start {
            return Err(format!(
                "{name}: pass released at {} before {}",
                step.start, last_start
            ));
        }
        last_start = step.start;
        if pol.memory().total() > budget {
            return Err(format!(
                "{name}: holds {} > budget {budget}",
                pol.memory().total()
            ));
        }
        record(&plan, &step.ops);
    }
    let rest = sim.drain().map_err(|e| e.to_string())?;
    for t in rest {
        timings.insert(t.id, t);
    }
    if sim.memory_peak_bytes() > budget {
        return Err(format!(
            "{name}: simulator peak {} > budget {budget}",
            sim.memory_peak_bytes()
        ));
    }
    // Residency: for each expert compute, the latest read of that expert issued before it
    // ended before the compute started, and no evict of the expert ended in between.
    let mut last_read: BTreeMap<TensorRef, OpId> = BTreeMap::new();
    let mut last_evict: BTreeMap<TensorRef, OpId> = BTreeMap::new();
    for (&id, op) in &plans {
        match *op {
            Op::Read { tensor, .. } if matches!(tensor.kind, TensorKind::Expert(_)) => {
                last_read.insert(tensor, id);
            }
            Op::Evict { tensor, .. } => {
                last_evict.insert(tensor, id);
            }
            Op::Compute { tensor, .. } if matches!(tensor.kind, TensorKind::Expert(_)) => {
                let start = timings[&id].start;
                let read = last_read
                    .get(&tensor)
                    .ok_or_else(|| format!("{name}: {tensor} computed (op {id}) but never read"))?;
                if timings[read].end > start {
                    return Err(format!(
                        "{name}: {tensor} computed at {start} before its read ended"
                    ));
                }
                if let Some(ev) = last_evict.get(&tensor) {
                    if ev > read {
                        return Err(format!(
                            "{name}: {tensor} computed (op {id}) after its eviction {ev}"
                        ));
                    }
                }
            }
            _ => {}
        }
        for d in &deps[&id] {
            if let (Some(td), Some(t)) = (timings.get(d), timings.get(&id)) {
                if t.start < td.end {
                    return Err(format!(
                        "{name}: op {id} started before its dependency {d} ended"
                    ));
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn every_policy_keeps_its_budget_and_residency(seed in any::<u64>(), fraction in 0.0f64..1.0, host in any::<bool>()) {
        let model = small_moe();
        let passes = random_passes(&model, seed, 3, 6);
        for &(name, _) in POLICIES {
            let device = if host { test_device_host_memory() } else { test_device() };
            if let Err(e) = check_policy(name, device, fraction, &passes) {
                prop_assert!(false, "{}", e);
            }
        }
    }
}

#[test]
fn a_budget_below_the_resident_set_names_what_is_needed() {
    let model = small_moe();
    let fp = Footprint::of(&model, Precision::Int8, Precision::Int4, 64);
    for &(name, _) in POLICIES {
        let err = policy::build(name, context(test_device(), fp.resident_bytes / 2))
            .err()
            .unwrap_or_else(|| panic!("{name} accepted a budget below its resident set"))
            .to_string();
        assert!(err.contains("must stay resident"), "{name}: {err}");
    }
}
