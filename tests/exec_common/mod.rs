//! Shared fixtures of the executor tests: a tiny MoE model, its weight store, a host-like
//! device profile built in code, and random forward passes.
#![allow(dead_code)]

use edgesim::exec::store::{prepare, PrepareOptions, StoreKey};
use edgesim::hw::testing::test_device;
use edgesim::hw::DeviceProfile;
use edgesim::model::{ModelGeometry, ModelProfile, Precision};
use edgesim::trace::{ForwardPass, Phase, TokenRecord};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

pub const TINY_MODEL: &str = r#"{
    "name": "tiny-moe", "description": "test model: 4 layers, 4 experts, top-2",
    "layers": {"value": 4, "source": "test"}, "hidden": {"value": 128, "source": "test"},
    "ffn": {"value": 256, "source": "test"}, "heads": {"value": 2, "source": "test"},
    "kv_heads": {"value": 1, "source": "test"}, "head_dim": {"value": 64, "source": "test"},
    "vocab": {"value": 256, "source": "test"},
    "ffn_kind": "gated", "tied_embeddings": false, "native_bits": {"value": 16.0, "source": "test"},
    "moe": {"experts": {"value": 4, "source": "test"}, "top_k": {"value": 2, "source": "test"},
            "dense_layers": {"value": 1, "source": "test"}, "router": "softmax_topk"}
}"#;

pub fn tiny_profile() -> ModelProfile {
    serde_json::from_str(TINY_MODEL).unwrap()
}

pub fn tiny_geometry() -> ModelGeometry {
    ModelGeometry::from_profile(&tiny_profile()).unwrap()
}

/// Writes the tiny model's store (int8 and int4) into `dir`.
pub fn tiny_store(dir: &Path, key: Option<StoreKey>) {
    let options = PrepareOptions {
        model_file: None,
        model_file_sha256: None,
        source_model: "tiny-moe.json".into(),
        scale: 1,
        precisions: vec![Precision::Int8, Precision::Int4, Precision::Int2],
        seed: 3,
        key,
    };
    prepare(&tiny_profile(), dir, &options, &|_, _| {}).unwrap();
}

/// A host-like device: the test fixture with one 2-core CPU cluster, 2 I/O channels, no
/// accelerator (so nothing is emulated unless asked), and its TEE.
pub fn host_like() -> DeviceProfile {
    let mut d = test_device();
    d.name = "test-host".into();
    d.cpu.truncate(1);
    d.cpu[0].name = "all".into();
    d.cpu[0].cores.value = 2;
    d.storage.channels.value = 2;
    d.accelerator = None;
    d
}

/// Sequences of a prefill chunk and decode tokens with random top-2 routing.
pub fn passes(model: &ModelGeometry, seed: u64, sequences: u32, decode: u32) -> Vec<ForwardPass> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let k = model.top_k as usize;
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
    let mut out = Vec::new();
    for seq in 0..sequences {
        let prefill = 3;
        let tokens = (0..prefill)
            .map(|p| token(&mut rng, seq, p, Phase::Prefill))
            .collect();
        out.push(ForwardPass {
            sequence: seq,
            phase: Phase::Prefill,
            tokens,
        });
        for d in 0..decode {
            out.push(ForwardPass {
                sequence: seq,
                phase: Phase::Decode,
                tokens: vec![token(&mut rng, seq, prefill + d, Phase::Decode)],
            });
        }
    }
    out
}
