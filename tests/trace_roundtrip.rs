//! Property tests: any valid record sequence written and read back is unchanged, for expert and
//! neuron traces; the grouper's passes cover every token once, in order.

use edgesim::trace::{
    PassGrouper, Phase, SourceKind, TokenRecord, TraceHeader, TraceKind, TraceReader, TraceSource,
    TraceWriter, FORMAT_NAME, FORMAT_VERSION, NO_PREDICTION,
};
use proptest::prelude::*;

fn source() -> TraceSource {
    TraceSource {
        kind: SourceKind::Synthetic,
        description: "proptest".into(),
        parameters: serde_json::json!({"case": "roundtrip"}),
        targets: vec![],
    }
}

fn expert_header(layers: u32, experts: u32, k: u32, ahead: u32) -> TraceHeader {
    TraceHeader {
        format: FORMAT_NAME.into(),
        version: FORMAT_VERSION,
        kind: TraceKind::Expert,
        model: "prop".into(),
        layers: layers + 1,
        first_moe_layer: 1,
        moe_layers: layers,
        experts,
        top_k: k,
        scores_normalized: true,
        predicted_layers_ahead: ahead,
        neurons_per_layer: vec![],
        neuron_predictions: false,
        source: source(),
    }
}

/// A valid expert record from raw random material.
fn expert_record(h: &TraceHeader, seed: &[u32], position: u32, sequence: u32) -> TokenRecord {
    let (layers, e, k, ahead) = (
        h.moe_layers as usize,
        h.experts,
        h.top_k as usize,
        h.predicted_layers_ahead as usize,
    );
    let mut r = TokenRecord {
        sequence,
        position,
        phase: if seed[0].is_multiple_of(2) {
            Phase::Prefill
        } else {
            Phase::Decode
        },
        ..Default::default()
    };
    let pick = |salt: usize| -> Vec<u16> {
        let mut ids: Vec<u16> = Vec::new();
        // Jump after each pick, step by one on a collision: terminates because k <= e.
        let mut x = (seed[salt % seed.len()] as usize).wrapping_add(salt) % e as usize;
        while ids.len() < k {
            let id = x as u16;
            if !ids.contains(&id) {
                ids.push(id);
                x = (x + 7 * (salt + 1)) % e as usize;
            } else {
                x = (x + 1) % e as usize;
            }
        }
        ids
    };
    for l in 0..layers {
        r.experts.extend(pick(l));
        let raw: Vec<f32> = (0..k)
            .map(|i| 1.0 + (seed[(l + i) % seed.len()] % 1000) as f32)
            .collect();
        let mut sorted = raw.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let total: f32 = sorted.iter().sum();
        r.scores.extend(sorted.iter().map(|s| s / total));
    }
    for l in 0..layers {
        for d in 1..=ahead {
            if l + d < layers {
                r.predicted.extend(pick(100 + l * 7 + d));
            } else {
                r.predicted.extend(std::iter::repeat_n(NO_PREDICTION, k));
            }
        }
    }
    if seed[1].is_multiple_of(5) {
        r.filled_layers.push((seed[2] % layers as u32) as u16);
    }
    r
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn expert_traces_round_trip(
        layers in 1u32..6, experts in 2u32..40, k_raw in 1u32..5, ahead in 0u32..3,
        seeds in prop::collection::vec(prop::collection::vec(any::<u32>(), 3..8), 1..40),
        chunk in 1usize..6,
    ) {
        let k = k_raw.min(experts);
        let h = expert_header(layers, experts, k, ahead);
        let records: Vec<TokenRecord> = seeds.iter().enumerate()
            .map(|(i, s)| expert_record(&h, s, (i % 7) as u32, (i / 7) as u32)).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.est");
        let mut w = TraceWriter::create(&path, h.clone()).unwrap();
        for r in &records { w.write(r).unwrap(); }
        w.finish().unwrap();
        let back: Vec<TokenRecord> = TraceReader::open(&path).unwrap().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(&back, &records);
        // Passes cover every token exactly once and in order; prefill passes stay within one
        // sequence and the chunk size.
        let passes: Vec<_> = PassGrouper::new(TraceReader::open(&path).unwrap(), chunk).collect::<Result<Vec<_>, _>>().unwrap();
        let flat: Vec<TokenRecord> = passes.iter().flat_map(|p| p.tokens.clone()).collect();
        prop_assert_eq!(&flat, &records);
        for p in &passes {
            prop_assert!(p.tokens.iter().all(|t| t.sequence == p.sequence && t.phase == p.phase));
            let limit = if p.phase == Phase::Prefill { chunk } else { 1 };
            prop_assert!(p.tokens.len() <= limit);
        }
    }

    #[test]
    fn neuron_traces_round_trip(
        widths in prop::collection::vec(1u32..300, 1..5),
        densities in prop::collection::vec(0u32..100, 5),
        tokens in 1usize..12,
        predictions in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let h = TraceHeader {
            format: FORMAT_NAME.into(), version: FORMAT_VERSION, kind: TraceKind::Neuron,
            model: "prop".into(), layers: widths.len() as u32, first_moe_layer: 0, moe_layers: 0,
            experts: 0, top_k: 0, scores_normalized: false, predicted_layers_ahead: 0,
            neurons_per_layer: widths.clone(), neuron_predictions: predictions, source: source(),
        };
        let mut x = seed | 1;
        let mut next = move || { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x };
        let mut records = Vec::new();
        for t in 0..tokens {
            let mut r = TokenRecord { sequence: 0, position: t as u32, ..Default::default() };
            let sets = if predictions { 2 } else { 1 };
            for set in 0..sets {
                let (offsets, ids) = if set == 0 { (&mut r.neuron_offsets, &mut r.neurons) } else { (&mut r.predicted_neuron_offsets, &mut r.predicted_neurons) };
                offsets.push(0);
                for (l, &n) in widths.iter().enumerate() {
                    let density = u64::from(densities[l % densities.len()]);
                    for id in 0..n {
                        if next() % 100 < density { ids.push(id); }
                    }
                    offsets.push(ids.len() as u32);
                }
            }
            records.push(r);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.est");
        let mut w = TraceWriter::create(&path, h).unwrap();
        for r in &records { w.write(r).unwrap(); }
        w.finish().unwrap();
        let back: Vec<TokenRecord> = TraceReader::open(&path).unwrap().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(back, records);
    }
}
