//! Fixtures shared by the policies' unit tests.

use super::PolicyContext;
use crate::hw::testing::{test_device, test_device_host_memory};
use crate::model::{ModelGeometry, ModelProfile, Precision};
use crate::plan::{Op, Plan, PlanBuilder};
use crate::trace::{ForwardPass, Phase, TokenRecord};
use std::sync::Arc;

/// Two MoE layers of four experts, top-2.
pub fn tiny() -> ModelGeometry {
    tiny_with(2, 4)
}

/// `layers` MoE layers of `experts` experts, top-2.
pub fn tiny_with(layers: u32, experts: u32) -> ModelGeometry {
    let json = format!(
        r#"{{
        "name": "tiny-moe", "description": "test model",
        "layers": {{"value": {layers}, "source": "test"}}, "hidden": {{"value": 64, "source": "test"}},
        "ffn": {{"value": 128, "source": "test"}}, "heads": {{"value": 4, "source": "test"}},
        "kv_heads": {{"value": 2, "source": "test"}}, "vocab": {{"value": 100, "source": "test"}},
        "ffn_kind": "gated", "tied_embeddings": false, "native_bits": {{"value": 16.0, "source": "test"}},
        "moe": {{"experts": {{"value": {experts}, "source": "test"}}, "top_k": {{"value": 2, "source": "test"}},
                "router": "softmax_topk"}}
    }}"#
    );
    let p: ModelProfile = serde_json::from_str(&json).unwrap();
    ModelGeometry::from_profile(&p).unwrap()
}

/// A context for `tiny()` with `cache_experts` experts of cache at `offload` precision beyond
/// the resident set, on a flash device (or a host-memory one when `host`).
pub fn context(
    cache_experts: f64,
    offload: Precision,
    host: bool,
    params: serde_json::Value,
) -> PolicyContext {
    context_for(tiny(), cache_experts, offload, host, params)
}

/// [`context`] for another model.
pub fn context_for(
    model: ModelGeometry,
    cache_experts: f64,
    offload: Precision,
    host: bool,
    params: serde_json::Value,
) -> PolicyContext {
    let resident = crate::scenario::Footprint::of(&model, Precision::Int8, offload, 16);
    let expert = model.bytes(0, crate::model::TensorKind::Expert(0), offload);
    PolicyContext {
        budget_bytes: resident.resident_bytes + (cache_experts * expert as f64) as u64,
        model: Arc::new(model),
        device: Arc::new(if host {
            test_device_host_memory()
        } else {
            test_device()
        }),
        resident_precision: Precision::Int8,
        offload_precision: offload,
        max_context: 16,
        seed: 3,
        params,
    }
}

/// A decode pass of one token: `experts[l]` are layer l's (expert, score) pairs, best first.
pub fn decode(sequence: u32, position: u32, experts: &[&[(u16, f32)]]) -> ForwardPass {
    let mut t = TokenRecord {
        sequence,
        position,
        phase: Phase::Decode,
        ..TokenRecord::default()
    };
    for layer in experts {
        for &(e, s) in layer.iter() {
            t.experts.push(e);
            t.scores.push(s);
        }
    }
    ForwardPass {
        sequence,
        phase: Phase::Decode,
        tokens: vec![t],
    }
}

/// Plans `pass` with `policy` starting at op id `first`; returns the plan.
/// Plans decode tokens `positions` of `sequence`, every one routed as `experts`, one plan
/// after another from op id `first`; returns the next free op id.
pub fn plan_decodes(
    policy: &mut dyn super::Policy,
    sequence: u32,
    positions: std::ops::Range<u32>,
    experts: &[&[(u16, f32)]],
    first: u64,
) -> u64 {
    positions.fold(first, |next, pos| {
        plan(policy, &decode(sequence, pos, experts), next).end_id()
    })
}

pub fn plan(policy: &mut dyn super::Policy, pass: &ForwardPass, first: u64) -> Plan {
    let mut b = PlanBuilder::new(first);
    policy.plan_pass(pass, &mut b).unwrap();
    b.finish().unwrap()
}

/// The (tensor, precision, bytes) of every Read in `plan`, in order.
pub fn reads(plan: &Plan) -> Vec<(crate::model::TensorRef, Precision, u64)> {
    plan.nodes()
        .iter()
        .filter_map(|n| match n.op {
            Op::Read {
                tensor,
                precision,
                bytes,
                ..
            } => Some((tensor, precision, bytes)),
            _ => None,
        })
        .collect()
}
