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
        load_ops: crate::policy::machinery::load_ops::plain(),
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

/// A dense model of `layers` layers whose FFN is `ffn` neurons wide (gated: three matrices).
pub fn tiny_dense(layers: u32, ffn: u32) -> ModelGeometry {
    let json = format!(
        r#"{{
        "name": "tiny-dense", "description": "test model",
        "layers": {{"value": {layers}, "source": "test"}}, "hidden": {{"value": 64, "source": "test"}},
        "ffn": {{"value": {ffn}, "source": "test"}}, "heads": {{"value": 4, "source": "test"}},
        "kv_heads": {{"value": 2, "source": "test"}}, "vocab": {{"value": 100, "source": "test"}},
        "ffn_kind": "gated", "tied_embeddings": false, "native_bits": {{"value": 16.0, "source": "test"}}
    }}"#
    );
    let p: ModelProfile = serde_json::from_str(&json).unwrap();
    ModelGeometry::from_profile(&p).unwrap()
}

/// A context for a dense `model` with `cache_neurons` neurons of cache at int4 beyond the
/// resident set (attention, embeddings, KV cache; no FFN), on the flash test device.
pub fn dense_context(
    model: ModelGeometry,
    cache_neurons: u64,
    params: serde_json::Value,
) -> PolicyContext {
    let neuron = model.neuron_bytes(Precision::Int4);
    let mut ctx = PolicyContext {
        budget_bytes: 0,
        model: Arc::new(model),
        device: Arc::new(test_device()),
        resident_precision: Precision::Int8,
        offload_precision: Precision::Int4,
        max_context: 16,
        seed: 3,
        params,
        load_ops: crate::policy::machinery::load_ops::plain(),
    };
    ctx.budget_bytes =
        super::machinery::resident::ResidentSet::new(&ctx, false).bytes() + cache_neurons * neuron;
    ctx
}

/// One token of `sequence` at `position` whose active neurons at layer l are `neurons[l]`
/// (sorted ascending).
pub fn neuron_token(sequence: u32, position: u32, neurons: &[&[u32]]) -> TokenRecord {
    let mut t = TokenRecord {
        sequence,
        position,
        phase: Phase::Decode,
        ..TokenRecord::default()
    };
    t.neuron_offsets.push(0);
    for layer in neurons {
        t.neurons.extend_from_slice(layer);
        t.neuron_offsets.push(t.neurons.len() as u32);
    }
    t
}

/// A pass of `tokens` (a decode token when one, else a prefill chunk).
pub fn neuron_pass(tokens: Vec<TokenRecord>) -> ForwardPass {
    let phase = if tokens.len() == 1 {
        Phase::Decode
    } else {
        Phase::Prefill
    };
    ForwardPass {
        sequence: tokens[0].sequence,
        phase,
        tokens,
    }
}
