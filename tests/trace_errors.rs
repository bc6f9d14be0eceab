//! Bad traces: every fault is an error (never a panic) naming the file, the record and byte
//! offset where it applies, and what is wrong; the CLI exits with code 2.
//!
//! Invalid files are built with `frame`, an independent implementation of the byte layout
//! documented in traces/README.md, so these tests also check the documentation.

use assert_cmd::Command;
use edgesim::trace::{
    validate_file, Phase, SourceKind, TokenRecord, TraceError, TraceErrorKind, TraceHeader,
    TraceKind, TraceSource, TraceWriter, FORMAT_NAME, FORMAT_VERSION,
};
use std::path::{Path, PathBuf};

const MAGIC: [u8; 8] = [0x89, b'E', b'S', b'T', b'\r', b'\n', 0x1a, b'\n'];

fn header() -> TraceHeader {
    TraceHeader {
        format: FORMAT_NAME.into(),
        version: FORMAT_VERSION,
        kind: TraceKind::Expert,
        model: "tiny".into(),
        layers: 2,
        first_moe_layer: 0,
        moe_layers: 2,
        experts: 4,
        top_k: 2,
        scores_normalized: true,
        predicted_layers_ahead: 0,
        neurons_per_layer: vec![],
        neuron_predictions: false,
        source: TraceSource {
            kind: SourceKind::Synthetic,
            description: "error tests".into(),
            parameters: serde_json::Value::Null,
            targets: vec![],
        },
    }
}

/// Payload of one expert record per the README: varint sequence, varint position, phase byte,
/// flags byte, then per MoE layer k u16 ids and k f32 scores.
fn payload(position: u8, layers: &[([u16; 2], [f32; 2])]) -> Vec<u8> {
    let mut p = vec![0, position, 1, 0];
    for (ids, scores) in layers {
        for id in ids {
            p.extend_from_slice(&id.to_le_bytes());
        }
        for s in scores {
            p.extend_from_slice(&s.to_le_bytes());
        }
    }
    p
}

fn good_payload(position: u8) -> Vec<u8> {
    payload(position, &[([1, 3], [0.75, 0.25]), ([0, 2], [0.5, 0.5])])
}

/// A whole file: magic, version, header length, header JSON, header CRC, framed records,
/// trailer.
fn frame(version: u32, json: &[u8], payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut f = MAGIC.to_vec();
    f.extend_from_slice(&version.to_le_bytes());
    f.extend_from_slice(&(json.len() as u32).to_le_bytes());
    f.extend_from_slice(json);
    let mut h = crc32fast::Hasher::new();
    h.update(&version.to_le_bytes());
    h.update(&(json.len() as u32).to_le_bytes());
    h.update(json);
    f.extend_from_slice(&h.finalize().to_le_bytes());
    let mut chain = crc32fast::Hasher::new();
    for p in payloads {
        f.extend_from_slice(&(p.len() as u32).to_le_bytes());
        f.extend_from_slice(p);
        let crc = crc32fast::hash(p);
        f.extend_from_slice(&crc.to_le_bytes());
        chain.update(&crc.to_le_bytes());
    }
    f.extend_from_slice(&u32::MAX.to_le_bytes());
    f.extend_from_slice(&(payloads.len() as u64).to_le_bytes());
    f.extend_from_slice(&chain.finalize().to_le_bytes());
    f.extend_from_slice(b"ESTR-END");
    f
}

fn good_file() -> Vec<u8> {
    let json = serde_json::to_vec(&header()).unwrap();
    frame(
        FORMAT_VERSION,
        &json,
        &[good_payload(0), good_payload(1), good_payload(2)],
    )
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn expect_error(path: &Path, kind: TraceErrorKind, words: &[&str]) -> TraceError {
    let e = validate_file(path).expect_err("a bad trace must not validate");
    let msg = e.to_string();
    assert_eq!(e.kind, kind, "{msg}");
    assert!(
        msg.contains(&path.display().to_string()),
        "message must name the file: {msg}"
    );
    for w in words {
        assert!(msg.contains(w), "message should contain {w:?}: {msg}");
    }
    e
}

#[test]
fn the_framing_helper_matches_the_writer_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.est");
    let mut w = TraceWriter::create(&path, header()).unwrap();
    for position in 0..3 {
        w.write(&TokenRecord {
            sequence: 0,
            position,
            phase: Phase::Decode,
            experts: vec![1, 3, 0, 2],
            scores: vec![0.75, 0.25, 0.5, 0.5],
            ..Default::default()
        })
        .unwrap();
    }
    w.finish().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), good_file());
    let v = validate_file(&path).unwrap();
    assert_eq!(v.summary.tokens, 3);
}

#[test]
fn header_faults() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    expect_error(
        &write(d, "empty.est", b""),
        TraceErrorKind::Header,
        &["empty"],
    );
    expect_error(
        &write(d, "text.est", b"{\"format\": \"edgesim-trace\"}\n"),
        TraceErrorKind::BadMagic,
        &["magic", "byte offset 0"],
    );
    expect_error(
        &write(d, "magic-only.est", &MAGIC),
        TraceErrorKind::Header,
        &["truncated", "header"],
    );
    let bad_json = frame(FORMAT_VERSION, b"{not json", &[good_payload(0)]);
    expect_error(
        &write(d, "json.est", &bad_json),
        TraceErrorKind::Header,
        &["header JSON is invalid"],
    );
    let mut h = serde_json::to_value(header()).unwrap();
    h["experts"] = serde_json::json!(1);
    let inconsistent = frame(
        FORMAT_VERSION,
        &serde_json::to_vec(&h).unwrap(),
        &[good_payload(0)],
    );
    expect_error(
        &write(d, "inconsistent.est", &inconsistent),
        TraceErrorKind::Header,
        &["experts"],
    );
    let mut future = good_file();
    future[8..12].copy_from_slice(&2u32.to_le_bytes());
    expect_error(
        &write(d, "v2.est", &future),
        TraceErrorKind::UnsupportedVersion,
        &["version 2", "byte offset 8"],
    );
}

#[test]
fn record_rule_violations_name_record_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let json = serde_json::to_vec(&header()).unwrap();
    let second_record_offset = 8 + 4 + 4 + json.len() + 4 + (4 + good_payload(0).len() + 4);
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        (
            "id",
            payload(1, &[([1, 4], [0.75, 0.25]), ([0, 2], [0.5, 0.5])]),
            &["expert id 4 is out of range"],
        ),
        (
            "layers",
            payload(1, &[([1, 3], [0.75, 0.25])]),
            &["wrong layer count", "1 MoE layers"],
        ),
        (
            "nan",
            payload(1, &[([1, 3], [f32::NAN, 0.25]), ([0, 2], [0.5, 0.5])]),
            &["NaN"],
        ),
        (
            "negative",
            payload(1, &[([1, 3], [1.25, -0.25]), ([0, 2], [0.5, 0.5])]),
            &["negative"],
        ),
        (
            "sum",
            payload(1, &[([1, 3], [0.5, 0.25]), ([0, 2], [0.5, 0.5])]),
            &["sum to 0.75"],
        ),
        (
            "order",
            payload(0, &[([1, 3], [0.75, 0.25]), ([0, 2], [0.5, 0.5])]),
            &["position 0 does not follow position 0"],
        ),
    ];
    for (name, bad, words) in cases {
        let bytes = frame(
            FORMAT_VERSION,
            &json,
            &[good_payload(0), bad, good_payload(2)],
        );
        let path = write(d, &format!("{name}.est"), &bytes);
        let e = expect_error(&path, TraceErrorKind::Invalid, words);
        assert_eq!(e.record, Some(1), "{e}");
        assert_eq!(e.offset, Some(second_record_offset as u64), "{e}");
        assert!(e
            .to_string()
            .contains(&format!("record 1 (byte offset {second_record_offset})")));
    }
}

#[test]
fn truncation_at_every_offset_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let full = good_file();
    let path = dir.path().join("cut.est");
    for cut in 0..full.len() {
        std::fs::write(&path, &full[..cut]).unwrap();
        let e = validate_file(&path).expect_err("a cut file must not validate");
        assert!(
            matches!(e.kind, TraceErrorKind::Truncated | TraceErrorKind::Header),
            "cut at {cut}: {e}"
        );
        assert!(e.to_string().contains("cut.est"), "{e}");
        assert!(e.offset.is_some(), "cut at {cut}: no offset in {e}");
    }
    // Cuts after the header block report a record and say "truncated".
    let json_len = serde_json::to_vec(&header()).unwrap().len();
    let mid_record = 8 + 4 + 4 + json_len + 4 + 10;
    std::fs::write(&path, &full[..mid_record]).unwrap();
    let e = validate_file(&path).unwrap_err();
    assert_eq!(
        (e.kind, e.record),
        (TraceErrorKind::Truncated, Some(0)),
        "{e}"
    );
    std::fs::write(&path, &full[..full.len() - 24]).unwrap();
    let e = validate_file(&path).unwrap_err();
    assert!(
        e.to_string()
            .contains("after 3 complete records, with no trailer"),
        "{e}"
    );
}

#[test]
fn a_flipped_byte_anywhere_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let full = good_file();
    let path = dir.path().join("flip.est");
    for at in 0..full.len() {
        let mut bytes = full.clone();
        bytes[at] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let e = validate_file(&path).expect_err("a changed byte must be detected");
        assert!(e.to_string().contains("flip.est"), "{e}");
    }
    // A flip inside a record payload is a checksum mismatch in that record.
    let json_len = serde_json::to_vec(&header()).unwrap().len();
    let mut bytes = full.clone();
    let second_payload = 8 + 4 + 4 + json_len + 4 + (4 + 24 + 4) + 4;
    bytes[second_payload + 6] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let e = validate_file(&path).unwrap_err();
    assert_eq!(
        (e.kind, e.record),
        (TraceErrorKind::Corrupt, Some(1)),
        "{e}"
    );
    assert!(e.to_string().contains("checksum mismatch"), "{e}");
    // Garbage appended after the trailer.
    let mut bytes = full.clone();
    bytes.extend_from_slice(b"junk");
    std::fs::write(&path, &bytes).unwrap();
    expect_error(
        &path,
        TraceErrorKind::Corrupt,
        &["4 unexpected bytes after the trailer"],
    );
}

#[test]
fn writer_rejects_bad_records_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.est");
    let mut w = TraceWriter::create(&path, header()).unwrap();
    let e = w
        .write(&TokenRecord {
            experts: vec![1, 3, 0, 2],
            scores: vec![0.75, 0.25, f32::NAN, 0.5],
            ..Default::default()
        })
        .unwrap_err();
    assert!(
        e.to_string().contains("record 0") && e.to_string().contains("NaN"),
        "{e}"
    );
    drop(w);
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
    // An empty trace is refused at finish, and nothing is left either.
    let w = TraceWriter::create(&path, header()).unwrap();
    assert!(w.finish().unwrap_err().to_string().contains("no records"));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn cli_exits_with_code_2_and_names_the_fault() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let json = serde_json::to_vec(&header()).unwrap();
    let bad = frame(
        FORMAT_VERSION,
        &json,
        &[
            good_payload(0),
            payload(1, &[([1, 3], [f32::NAN, 0.25]), ([0, 2], [0.5, 0.5])]),
        ],
    );
    let path = write(d, "nan.est", &bad);
    for sub in ["validate", "stats", "dump"] {
        let out = Command::cargo_bin("edgesim")
            .unwrap()
            .args(["trace", sub])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{sub}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("nan.est") && err.contains("record 1") && err.contains("NaN"),
            "{sub}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    let full = good_file();
    let cut = write(d, "cut.est", &full[..full.len() - 30]);
    let out = Command::cargo_bin("edgesim")
        .unwrap()
        .args(["trace", "validate"])
        .arg(&cut)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("truncated"));
    let out = Command::cargo_bin("edgesim")
        .unwrap()
        .args([
            "trace", "gen", "--model", "gpt-9", "--tokens", "10", "--seed", "1", "--out",
        ])
        .arg(d.join("x.est"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown model `gpt-9`"));
    assert!(!d.join("x.est").exists());
    let good = write(d, "good.est", &full);
    let out = Command::cargo_bin("edgesim")
        .unwrap()
        .args(["trace", "validate"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("3 tokens in 1 sequences (0 prefill, 3 decode)"));
}
