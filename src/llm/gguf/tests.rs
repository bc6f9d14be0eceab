//! Parser tests on hand-built GGUF bytes.

use super::*;
use crate::llm::LlmError;

fn every_value_type() -> Vec<(&'static str, MetadataValue)> {
    vec![
        ("a.u8", MetadataValue::U8(200)),
        ("a.i8", MetadataValue::I8(-5)),
        ("a.u16", MetadataValue::U16(60000)),
        ("a.i16", MetadataValue::I16(-30000)),
        ("a.u32", MetadataValue::U32(4_000_000_000)),
        ("a.i32", MetadataValue::I32(-2_000_000_000)),
        ("a.f32", MetadataValue::F32(1.5e-5)),
        ("a.bool", MetadataValue::Bool(true)),
        ("a.string", MetadataValue::String("héllo\n".into())),
        ("a.u64", MetadataValue::U64(u64::MAX)),
        ("a.i64", MetadataValue::I64(i64::MIN)),
        ("a.f64", MetadataValue::F64(100000.0)),
        (
            "a.strings",
            MetadataValue::Array(vec![
                MetadataValue::String("x".into()),
                MetadataValue::String(String::new()),
            ]),
        ),
        (
            "a.nested",
            MetadataValue::Array(vec![
                MetadataValue::Array(vec![MetadataValue::I32(1), MetadataValue::I32(2)]),
                MetadataValue::Array(vec![MetadataValue::I32(3)]),
            ]),
        ),
        ("a.empty", MetadataValue::Array(vec![])),
    ]
}

fn sample_builder() -> GgufBuilder {
    let mut builder = GgufBuilder::new();
    for (key, value) in every_value_type() {
        builder.metadata(key, value);
    }
    builder.tensor_f32("vector", &[3], &[1.0, -2.0, 3.5]);
    // Q8_0: one block, d = 0.5 (f16 0x3800), q = 0..32 minus 16.
    let mut q8 = vec![0x00, 0x38];
    q8.extend((0..32i8).map(|j| (j - 16) as u8));
    builder.tensor_raw("matrix", &[32, 1], GgmlType::Q8_0, q8);
    builder.tensor_raw("half", &[2], GgmlType::F16, vec![0x00, 0x3c, 0x00, 0xc0]);
    builder
}

fn parse(bytes: Vec<u8>) -> Result<GgufFile, LlmError> {
    GgufFile::parse(bytes, "test.gguf")
}

fn error_of(bytes: Vec<u8>) -> String {
    parse(bytes).expect_err("parse must fail").to_string()
}

#[test]
fn every_value_type_round_trips() {
    let file = parse(sample_builder().to_bytes()).unwrap();
    assert_eq!(file.version(), 3);
    for (key, value) in every_value_type() {
        assert_eq!(file.get(key), Some(&value), "key {key}");
    }
    assert_eq!(file.metadata().len(), every_value_type().len());
}

#[test]
fn tensors_are_found_aligned_and_dequantized() {
    let file = parse(sample_builder().to_bytes()).unwrap();
    assert_eq!(file.tensors().len(), 3);
    assert_eq!(file.data_offset() % 32, 0);
    for info in file.tensors() {
        assert_eq!(info.offset % 32, 0, "{}", info.name);
    }
    assert_eq!(file.dequantize("vector").unwrap(), vec![1.0, -2.0, 3.5]);
    let matrix = file.dequantize("matrix").unwrap();
    assert_eq!(matrix.len(), 32);
    assert_eq!(matrix[0], -8.0);
    assert_eq!(matrix[31], 7.5);
    assert_eq!(file.dequantize("half").unwrap(), vec![1.0, -2.0]);
    assert_eq!(file.tensor("matrix").unwrap().dims, vec![32, 1]);
}

#[test]
fn custom_alignment_is_honoured() {
    let mut builder = sample_builder();
    builder.alignment(64);
    let file = parse(builder.to_bytes()).unwrap();
    assert_eq!(file.alignment(), 64);
    assert_eq!(file.data_offset() % 64, 0);
    assert_eq!(file.dequantize("vector").unwrap(), vec![1.0, -2.0, 3.5]);
}

#[test]
fn typed_accessors_name_the_key_on_mismatch() {
    let file = parse(sample_builder().to_bytes()).unwrap();
    assert_eq!(file.require_u64("a.u32").unwrap(), 4_000_000_000);
    assert_eq!(file.require_f64("a.f64").unwrap(), 100000.0);
    assert_eq!(file.require_str("a.string").unwrap(), "héllo\n");
    assert_eq!(
        file.require_string_array("a.strings").unwrap(),
        vec!["x", ""]
    );
    let missing = file
        .require_u64("llama.block_count")
        .unwrap_err()
        .to_string();
    assert_eq!(
        missing,
        "test.gguf: metadata key 'llama.block_count': missing"
    );
    let negative = file.require_u64("a.i8").unwrap_err().to_string();
    assert!(
        negative.contains("'a.i8'") && negative.contains("non-negative"),
        "{negative}"
    );
    let wrong = file.require_str("a.f32").unwrap_err().to_string();
    assert!(wrong.contains("expected a string, found f32"), "{wrong}");
}

#[test]
fn bad_magic_is_named() {
    let mut bytes = sample_builder().to_bytes();
    bytes[0] = b'X';
    let message = error_of(bytes);
    assert!(message.starts_with("test.gguf: bad magic"), "{message}");
}

#[test]
fn unsupported_version_is_named() {
    let mut bytes = sample_builder().to_bytes();
    bytes[4..8].copy_from_slice(&1u32.to_le_bytes());
    let message = error_of(bytes);
    assert!(message.contains("unsupported GGUF version 1"), "{message}");
}

#[test]
fn truncation_anywhere_is_an_error_not_a_panic() {
    let bytes = sample_builder().to_bytes();
    let file = parse(bytes.clone()).unwrap();
    let data_offset = file.data_offset() as usize;
    // Every cut inside the header and infos, and a cut inside the last tensor's data.
    for cut in (0..data_offset).chain([bytes.len() - 1]) {
        let result = parse(bytes[..cut].to_vec());
        assert!(result.is_err(), "a file cut at byte {cut} parsed");
    }
    let message = error_of(bytes[..20].to_vec());
    assert!(message.contains("truncated"), "{message}");
}

#[test]
fn cut_inside_tensor_data_names_the_tensor() {
    let bytes = sample_builder().to_bytes();
    let message = error_of(bytes[..bytes.len() - 1].to_vec());
    assert!(
        message.contains("tensor 'half'") && message.contains("beyond"),
        "{message}"
    );
}

#[test]
fn unknown_tensor_type_is_named() {
    let mut builder = GgufBuilder::new();
    builder.tensor_raw("w", &[4], GgmlType::F32, vec![0; 16]);
    let mut bytes = builder.to_bytes();
    // The type id sits after: magic, version, 2 counts, name (8 + 1), n_dims (4), dim (8).
    let type_at = 4 + 4 + 8 + 8 + 8 + 1 + 4 + 8;
    bytes[type_at..type_at + 4].copy_from_slice(&99u32.to_le_bytes());
    let message = error_of(bytes);
    assert_eq!(message, "test.gguf: tensor 'w': unknown ggml type id 99");
}

#[test]
fn known_but_unsupported_type_fails_on_use_with_its_name() {
    let mut builder = GgufBuilder::new();
    builder.tensor_raw("w", &[256], GgmlType::from_id(14).unwrap(), vec![0; 210]);
    let file = parse(builder.to_bytes()).unwrap();
    let message = file.dequantize("w").unwrap_err().to_string();
    assert!(
        message.contains("tensor 'w'")
            && message.contains("type Q6_K")
            && message.contains("not supported"),
        "{message}"
    );
}

#[test]
fn unknown_value_type_names_the_key() {
    let mut builder = GgufBuilder::new();
    builder.metadata("k", MetadataValue::U8(1));
    let mut bytes = builder.to_bytes();
    let type_at = 4 + 4 + 8 + 8 + 8 + 1;
    bytes[type_at..type_at + 4].copy_from_slice(&77u32.to_le_bytes());
    let message = error_of(bytes);
    assert!(
        message.contains("key 'k': unknown value type 77"),
        "{message}"
    );
}

#[test]
fn huge_counts_are_rejected_before_allocating() {
    let mut bytes = GgufBuilder::new().to_bytes();
    bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(error_of(bytes).contains("tensor count"));
    let mut builder = GgufBuilder::new();
    builder.metadata("k", MetadataValue::Array(vec![MetadataValue::U8(1)]));
    let mut bytes = builder.to_bytes();
    let count_at = 4 + 4 + 8 + 8 + 8 + 1 + 4 + 4;
    bytes[count_at..count_at + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(error_of(bytes).contains("cannot fit"));
}

#[test]
fn misaligned_tensor_offset_is_named() {
    let mut builder = GgufBuilder::new();
    builder.tensor_raw("w", &[4], GgmlType::F32, vec![0; 16]);
    let mut bytes = builder.to_bytes();
    let offset_at = 4 + 4 + 8 + 8 + 8 + 1 + 4 + 8 + 4;
    bytes[offset_at..offset_at + 8].copy_from_slice(&3u64.to_le_bytes());
    let message = error_of(bytes);
    assert!(
        message.contains("tensor 'w'") && message.contains("alignment"),
        "{message}"
    );
}

#[test]
fn duplicate_key_is_an_error() {
    let mut builder = GgufBuilder::new();
    builder.metadata("k", MetadataValue::U8(1));
    builder.metadata("k", MetadataValue::U8(2));
    assert!(error_of(builder.to_bytes()).contains("'k' appears twice"));
}
