//! Encoding and decoding of one record's payload, and the rules a record must obey.
//!
//! The byte layout is documented in `traces/README.md` ("Record payload"). Decoding checks the
//! structure (every byte accounted for) and then the same rules the writer enforces, so a file
//! that was written by something other than [`super::TraceWriter`] is held to the same standard.

use super::header::{TraceHeader, TraceKind, SCORE_SUM_TOLERANCE};
use super::record::{Phase, TokenRecord, NO_PREDICTION};
use super::varint;

const PHASE_PREFILL: u8 = 0;
const PHASE_DECODE: u8 = 1;
const FLAG_FILLED_LAYERS: u8 = 1;
const SET_LIST: u8 = 0;
const SET_BITSET: u8 = 1;

/// Checks `rec` against the header's rules; `Err` says what is wrong.
pub fn validate(h: &TraceHeader, rec: &TokenRecord) -> Result<(), String> {
    match h.kind {
        TraceKind::Expert => validate_expert(h, rec),
        TraceKind::Neuron => validate_neuron(h, rec),
    }
}

fn validate_expert(h: &TraceHeader, rec: &TokenRecord) -> Result<(), String> {
    let k = h.top_k as usize;
    let layers = h.moe_layers as usize;
    if rec.experts.len() != layers * k {
        return Err(format!(
            "record has {} expert ids, expected {} ({} MoE layers x top-{k}): wrong layer count",
            rec.experts.len(),
            layers * k,
            layers
        ));
    }
    if rec.scores.len() != rec.experts.len() {
        return Err(format!(
            "record has {} gate scores for {} expert ids",
            rec.scores.len(),
            rec.experts.len()
        ));
    }
    if !rec.neurons.is_empty() || !rec.neuron_offsets.is_empty() {
        return Err("an expert trace record carries neuron ids".into());
    }
    for layer in 0..layers {
        let ids = &rec.experts[layer * k..(layer + 1) * k];
        check_expert_ids(h, ids, layer, None)?;
        let scores = &rec.scores[layer * k..(layer + 1) * k];
        for (slot, &s) in scores.iter().enumerate() {
            if !s.is_finite() {
                return Err(format!(
                    "MoE layer {layer}: gate score {slot} is {s}, expected a finite number"
                ));
            }
            if s < 0.0 {
                return Err(format!(
                    "MoE layer {layer}: gate score {slot} is negative ({s})"
                ));
            }
            if slot > 0 && s > scores[slot - 1] {
                return Err(format!(
                    "MoE layer {layer}: gate scores are not in descending order ({} then {s})",
                    scores[slot - 1]
                ));
            }
        }
        if h.scores_normalized {
            let sum: f32 = scores.iter().sum();
            if (sum - 1.0).abs() > SCORE_SUM_TOLERANCE {
                return Err(format!(
                    "MoE layer {layer}: gate scores sum to {sum}, but the header says they are \
                     normalised (sum 1 +/- {SCORE_SUM_TOLERANCE})"
                ));
            }
        }
    }
    let ahead = h.predicted_layers_ahead as usize;
    let expected_predicted = if ahead == 0 { 0 } else { layers * ahead * k };
    if rec.predicted.len() != expected_predicted {
        return Err(format!(
            "record has {} predicted expert ids, expected {expected_predicted} ({layers} MoE \
             layers x {ahead} layers ahead x top-{k})",
            rec.predicted.len()
        ));
    }
    for layer in 0..layers {
        for d in 1..=ahead {
            let start = (layer * ahead + d - 1) * k;
            let ids = &rec.predicted[start..start + k];
            if layer + d >= layers {
                if ids.iter().any(|&e| e != NO_PREDICTION) {
                    return Err(format!(
                        "MoE layer {layer}: prediction for {d} layers ahead points past the last \
                         MoE layer and must hold {NO_PREDICTION} (no prediction)"
                    ));
                }
            } else {
                check_expert_ids(h, ids, layer, Some(d))?;
            }
        }
    }
    check_filled_layers(h, rec)
}

/// `predicted_distance`: `None` for the chosen experts, `Some(d)` for a prediction `d` layers
/// ahead (named in the message; formatted only on error, this runs for every record).
fn check_expert_ids(
    h: &TraceHeader,
    ids: &[u16],
    layer: usize,
    predicted_distance: Option<usize>,
) -> Result<(), String> {
    let what = || match predicted_distance {
        None => "expert".to_string(),
        Some(d) => format!("predicted ({d} ahead) expert"),
    };
    for (slot, &e) in ids.iter().enumerate() {
        if u32::from(e) >= h.experts {
            return Err(format!(
                "MoE layer {layer}: {} id {e} is out of range (the model has {} experts)",
                what(),
                h.experts
            ));
        }
        if ids[..slot].contains(&e) {
            return Err(format!(
                "MoE layer {layer}: {} id {e} is listed twice",
                what()
            ));
        }
    }
    Ok(())
}

fn check_filled_layers(h: &TraceHeader, rec: &TokenRecord) -> Result<(), String> {
    let limit = match h.kind {
        TraceKind::Expert => h.moe_layers,
        TraceKind::Neuron => h.layers,
    };
    for (i, &l) in rec.filled_layers.iter().enumerate() {
        if u32::from(l) >= limit {
            return Err(format!(
                "filled layer {l} is out of range (the trace has {limit} layers per record)"
            ));
        }
        if i > 0 && l <= rec.filled_layers[i - 1] {
            return Err("filled layers are not strictly ascending".into());
        }
    }
    Ok(())
}

fn validate_neuron(h: &TraceHeader, rec: &TokenRecord) -> Result<(), String> {
    if !rec.experts.is_empty() || !rec.scores.is_empty() || !rec.predicted.is_empty() {
        return Err("a neuron trace record carries expert ids or scores".into());
    }
    check_neuron_sets(h, &rec.neuron_offsets, &rec.neurons, "active")?;
    if h.neuron_predictions {
        check_neuron_sets(
            h,
            &rec.predicted_neuron_offsets,
            &rec.predicted_neurons,
            "predicted",
        )?;
    } else if !rec.predicted_neurons.is_empty() || !rec.predicted_neuron_offsets.is_empty() {
        return Err("record carries predicted neurons, but the header says it has none".into());
    }
    check_filled_layers(h, rec)
}

fn check_neuron_sets(
    h: &TraceHeader,
    offsets: &[u32],
    ids: &[u32],
    what: &str,
) -> Result<(), String> {
    let layers = h.layers as usize;
    if offsets.len() != layers + 1 {
        return Err(format!(
            "record has {} {what}-neuron layer offsets, expected {} ({layers} layers + 1): wrong \
             layer count",
            offsets.len(),
            layers + 1
        ));
    }
    if offsets[0] != 0 || offsets[layers] as usize != ids.len() {
        return Err(format!(
            "{what}-neuron offsets must start at 0 and end at the number of ids ({})",
            ids.len()
        ));
    }
    for layer in 0..layers {
        let (a, b) = (offsets[layer] as usize, offsets[layer + 1] as usize);
        if b < a {
            return Err(format!("{what}-neuron offsets decrease at layer {layer}"));
        }
        let n = h.neurons_per_layer[layer];
        let set = &ids[a..b];
        for (i, &id) in set.iter().enumerate() {
            if id >= n {
                return Err(format!(
                    "layer {layer}: {what} neuron id {id} is out of range (the layer has {n} \
                     neurons)"
                ));
            }
            if i > 0 && id <= set[i - 1] {
                return Err(format!(
                    "layer {layer}: {what} neuron ids are not strictly ascending ({} then {id})",
                    set[i - 1]
                ));
            }
        }
    }
    Ok(())
}

/// Appends the payload of `rec` to `out` (which the caller clears). The record must already
/// have passed [`validate`].
pub fn encode(h: &TraceHeader, rec: &TokenRecord, out: &mut Vec<u8>) {
    varint::put_u32(out, rec.sequence);
    varint::put_u32(out, rec.position);
    out.push(match rec.phase {
        Phase::Prefill => PHASE_PREFILL,
        Phase::Decode => PHASE_DECODE,
    });
    if rec.filled_layers.is_empty() {
        out.push(0);
    } else {
        out.push(FLAG_FILLED_LAYERS);
        varint::put_u32(out, rec.filled_layers.len() as u32);
        let mut prev = 0u16;
        for (i, &l) in rec.filled_layers.iter().enumerate() {
            varint::put_u32(out, u32::from(if i == 0 { l } else { l - prev }));
            prev = l;
        }
    }
    match h.kind {
        TraceKind::Expert => {
            let k = h.top_k as usize;
            for layer in 0..h.moe_layers as usize {
                for &e in &rec.experts[layer * k..(layer + 1) * k] {
                    out.extend_from_slice(&e.to_le_bytes());
                }
                for &s in &rec.scores[layer * k..(layer + 1) * k] {
                    out.extend_from_slice(&s.to_le_bytes());
                }
            }
            for &e in &rec.predicted {
                out.extend_from_slice(&e.to_le_bytes());
            }
        }
        TraceKind::Neuron => {
            encode_sets(h, &rec.neuron_offsets, &rec.neurons, out);
            if h.neuron_predictions {
                encode_sets(
                    h,
                    &rec.predicted_neuron_offsets,
                    &rec.predicted_neurons,
                    out,
                );
            }
        }
    }
}

fn encode_sets(h: &TraceHeader, offsets: &[u32], ids: &[u32], out: &mut Vec<u8>) {
    for (layer, &n) in h.neurons_per_layer.iter().enumerate() {
        let set = &ids[offsets[layer] as usize..offsets[layer + 1] as usize];
        let mut list_bytes = varint::len_u32(set.len() as u32);
        let mut prev = 0u32;
        for (i, &id) in set.iter().enumerate() {
            list_bytes += varint::len_u32(if i == 0 { id } else { id - prev });
            prev = id;
        }
        let bitset_bytes = (n as usize).div_ceil(8);
        if list_bytes <= bitset_bytes {
            out.push(SET_LIST);
            varint::put_u32(out, set.len() as u32);
            let mut prev = 0u32;
            for (i, &id) in set.iter().enumerate() {
                varint::put_u32(out, if i == 0 { id } else { id - prev });
                prev = id;
            }
        } else {
            out.push(SET_BITSET);
            let start = out.len();
            out.resize(start + bitset_bytes, 0);
            for &id in set {
                out[start + (id / 8) as usize] |= 1 << (id % 8);
            }
        }
    }
}

/// Decodes `payload` into `rec` (cleared first, buffers reused) and validates it.
pub fn decode(h: &TraceHeader, payload: &[u8], rec: &mut TokenRecord) -> Result<(), String> {
    rec.clear();
    let mut pos = 0usize;
    rec.sequence = varint::get_u32(payload, &mut pos).map_err(|e| format!("sequence id: {e}"))?;
    rec.position = varint::get_u32(payload, &mut pos).map_err(|e| format!("position: {e}"))?;
    let phase = *payload
        .get(pos)
        .ok_or("record ends before its phase byte")?;
    rec.phase = match phase {
        PHASE_PREFILL => Phase::Prefill,
        PHASE_DECODE => Phase::Decode,
        other => {
            return Err(format!(
                "phase byte is {other}, expected 0 (prefill) or 1 (decode)"
            ))
        }
    };
    let flags = *payload
        .get(pos + 1)
        .ok_or("record ends before its flags byte")?;
    pos += 2;
    if flags & !FLAG_FILLED_LAYERS != 0 {
        return Err(format!("flags byte is {flags:#04x}; only bit 0 is defined"));
    }
    if flags & FLAG_FILLED_LAYERS != 0 {
        let count =
            varint::get_u32(payload, &mut pos).map_err(|e| format!("filled layers: {e}"))?;
        if count == 0 || count > h.layers {
            return Err(format!("filled-layer count {count} is out of range"));
        }
        let mut layer = 0u32;
        for i in 0..count {
            let v =
                varint::get_u32(payload, &mut pos).map_err(|e| format!("filled layers: {e}"))?;
            layer = if i == 0 { v } else { layer.saturating_add(v) };
            let l = u16::try_from(layer)
                .map_err(|_| format!("filled layer {layer} is out of range"))?;
            rec.filled_layers.push(l);
        }
    }
    let rest = &payload[pos..];
    match h.kind {
        TraceKind::Expert => decode_expert(h, rest, rec)?,
        TraceKind::Neuron => {
            let mut at = 0usize;
            decode_sets(
                h,
                rest,
                &mut at,
                &mut rec.neuron_offsets,
                &mut rec.neurons,
                "active",
            )?;
            if h.neuron_predictions {
                decode_sets(
                    h,
                    rest,
                    &mut at,
                    &mut rec.predicted_neuron_offsets,
                    &mut rec.predicted_neurons,
                    "predicted",
                )?;
            }
            if at != rest.len() {
                return Err(format!(
                    "{} bytes left over after the last layer: wrong layer count or corrupt record",
                    rest.len() - at
                ));
            }
        }
    }
    validate(h, rec)
}

fn decode_expert(h: &TraceHeader, rest: &[u8], rec: &mut TokenRecord) -> Result<(), String> {
    let k = h.top_k as usize;
    let layers = h.moe_layers as usize;
    let expected = h.expert_layers_bytes();
    if rest.len() != expected {
        let per_layer = k * 6 + h.predicted_layers_ahead as usize * k * 2;
        let implied = if rest.len().is_multiple_of(per_layer) {
            format!(" (that is {} MoE layers)", rest.len() / per_layer)
        } else {
            String::new()
        };
        return Err(format!(
            "per-layer data is {} bytes{implied}, expected {expected} for {layers} MoE layers x \
             top-{k}: wrong layer count or corrupt record",
            rest.len()
        ));
    }
    for layer in 0..layers {
        let base = layer * k * 6;
        for slot in 0..k {
            let b = &rest[base + slot * 2..base + slot * 2 + 2];
            rec.experts.push(u16::from_le_bytes([b[0], b[1]]));
        }
        for slot in 0..k {
            let o = base + k * 2 + slot * 4;
            let b = &rest[o..o + 4];
            rec.scores
                .push(f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        }
    }
    let pred_start = layers * k * 6;
    for b in rest[pred_start..].chunks_exact(2) {
        rec.predicted.push(u16::from_le_bytes([b[0], b[1]]));
    }
    Ok(())
}

fn decode_sets(
    h: &TraceHeader,
    bytes: &[u8],
    at: &mut usize,
    offsets: &mut Vec<u32>,
    ids: &mut Vec<u32>,
    what: &str,
) -> Result<(), String> {
    offsets.push(0);
    for (layer, &n) in h.neurons_per_layer.iter().enumerate() {
        let tag = *bytes
            .get(*at)
            .ok_or_else(|| format!("record ends before layer {layer}'s {what} neurons: wrong layer count or corrupt record"))?;
        *at += 1;
        match tag {
            SET_LIST => {
                let count = varint::get_u32(bytes, at).map_err(|e| format!("layer {layer}: {e}"))?;
                if count > n {
                    return Err(format!(
                        "layer {layer}: {count} {what} neurons listed, but the layer has {n}"
                    ));
                }
                let mut prev = 0u32;
                for i in 0..count {
                    let v = varint::get_u32(bytes, at).map_err(|e| format!("layer {layer}: {e}"))?;
                    if i > 0 && v == 0 {
                        return Err(format!(
                            "layer {layer}: {what} neuron ids are not strictly ascending (neuron {prev} repeated)"
                        ));
                    }
                    let id = if i == 0 { v } else { prev.saturating_add(v) };
                    ids.push(id);
                    prev = id;
                }
            }
            SET_BITSET => {
                let len = (n as usize).div_ceil(8);
                let set = bytes
                    .get(*at..*at + len)
                    .ok_or_else(|| format!("layer {layer}: {what}-neuron bitset runs past the end of the record"))?;
                *at += len;
                for (byte_index, &byte) in set.iter().enumerate() {
                    let mut bits = byte;
                    while bits != 0 {
                        let bit = bits.trailing_zeros();
                        bits &= bits - 1;
                        ids.push(byte_index as u32 * 8 + bit);
                    }
                }
            }
            other => {
                return Err(format!(
                    "layer {layer}: {what}-neuron set encoding tag is {other}, expected 0 (list) or 1 (bitset)"
                ))
            }
        }
        offsets.push(ids.len() as u32);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::header::{SourceKind, TraceSource, FORMAT_NAME, FORMAT_VERSION};

    pub(crate) fn neuron_header(neurons: Vec<u32>, predictions: bool) -> TraceHeader {
        TraceHeader {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            kind: TraceKind::Neuron,
            model: "m".into(),
            layers: neurons.len() as u32,
            first_moe_layer: 0,
            moe_layers: 0,
            experts: 0,
            top_k: 0,
            scores_normalized: false,
            predicted_layers_ahead: 0,
            neurons_per_layer: neurons,
            neuron_predictions: predictions,
            source: TraceSource {
                kind: SourceKind::Synthetic,
                description: "test".into(),
                parameters: serde_json::Value::Null,
                targets: vec![],
            },
        }
    }

    fn expert_header(ahead: u32) -> TraceHeader {
        let mut h = neuron_header(vec![], false);
        h.kind = TraceKind::Expert;
        h.layers = 3;
        h.first_moe_layer = 1;
        h.moe_layers = 2;
        h.experts = 4;
        h.top_k = 2;
        h.scores_normalized = true;
        h.predicted_layers_ahead = ahead;
        h
    }

    fn round_trip(h: &TraceHeader, rec: &TokenRecord) -> TokenRecord {
        validate(h, rec).unwrap();
        let mut bytes = Vec::new();
        encode(h, rec, &mut bytes);
        assert!(bytes.len() <= h.max_record_bytes());
        let mut back = TokenRecord::default();
        decode(h, &bytes, &mut back).unwrap();
        back
    }

    #[test]
    fn expert_record_round_trips_with_predictions_and_filled_layers() {
        let h = expert_header(1);
        let rec = TokenRecord {
            sequence: 3,
            position: 300,
            phase: Phase::Prefill,
            experts: vec![1, 3, 0, 2],
            scores: vec![0.7, 0.3, 0.5, 0.5],
            predicted: vec![0, 2, NO_PREDICTION, NO_PREDICTION],
            filled_layers: vec![1],
            ..Default::default()
        };
        assert_eq!(round_trip(&h, &rec), rec);
    }

    #[test]
    fn neuron_sets_pick_list_or_bitset_and_round_trip() {
        let h = neuron_header(vec![1000, 16], true);
        // Layer 0 sparse (list), layer 1 dense (bitset).
        let rec = TokenRecord {
            neuron_offsets: vec![0, 3, 13],
            neurons: vec![0, 500, 999, 0, 1, 2, 3, 4, 5, 6, 7, 8, 15],
            predicted_neuron_offsets: vec![0, 0, 1],
            predicted_neurons: vec![15],
            ..Default::default()
        };
        let back = round_trip(&h, &rec);
        assert_eq!(back, rec);
        let mut bytes = Vec::new();
        encode(&h, &rec, &mut bytes);
        // seq, pos, phase, flags | tag 0, count 3, 0, 500 (2 bytes), 499 (2 bytes) | tag 1 + 2 bytes
        // | tag 0 count 0 | tag 0 count 1 id 15
        assert_eq!(bytes.len(), 4 + (1 + 1 + 1 + 2 + 2) + 3 + 2 + 3);
    }

    #[test]
    fn rule_violations_are_named() {
        let h = expert_header(0);
        let good = TokenRecord {
            experts: vec![1, 3, 0, 2],
            scores: vec![0.7, 0.3, 0.5, 0.5],
            ..Default::default()
        };
        validate(&h, &good).unwrap();
        type Mutation = Box<dyn Fn(&mut TokenRecord)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|r| r.experts[0] = 4), "out of range"),
            (Box::new(|r| r.experts[1] = 1), "listed twice"),
            (Box::new(|r| r.scores[0] = f32::NAN), "finite"),
            (Box::new(|r| r.scores[1] = -0.1), "negative"),
            (
                Box::new(|r| r.scores = vec![0.3, 0.7, 0.5, 0.5]),
                "descending",
            ),
            (Box::new(|r| r.scores = vec![0.6, 0.3, 0.5, 0.5]), "sum to"),
            (
                Box::new(|r| {
                    r.experts.truncate(2);
                    r.scores.truncate(2)
                }),
                "wrong layer count",
            ),
        ];
        for (mutate, expect) in cases {
            let mut r = good.clone();
            mutate(&mut r);
            let e = validate(&h, &r).unwrap_err();
            assert!(e.contains(expect), "{e:?} should mention {expect:?}");
        }
        let hn = neuron_header(vec![8], false);
        let r = TokenRecord {
            neuron_offsets: vec![0, 2],
            neurons: vec![5, 3],
            ..Default::default()
        };
        assert!(validate(&hn, &r).unwrap_err().contains("ascending"));
        let r = TokenRecord {
            neuron_offsets: vec![0, 1],
            neurons: vec![8],
            ..Default::default()
        };
        assert!(validate(&hn, &r).unwrap_err().contains("out of range"));
    }

    #[test]
    fn payload_with_a_layer_missing_reports_layer_count() {
        let h = expert_header(0);
        let rec = TokenRecord {
            experts: vec![1, 3, 0, 2],
            scores: vec![0.7, 0.3, 0.5, 0.5],
            ..Default::default()
        };
        let mut bytes = Vec::new();
        encode(&h, &rec, &mut bytes);
        bytes.truncate(bytes.len() - 12);
        let e = decode(&h, &bytes, &mut TokenRecord::default()).unwrap_err();
        assert!(
            e.contains("that is 1 MoE layers") && e.contains("wrong layer count"),
            "{e}"
        );
    }
}
