//! Tokenizer tests on a small hand-made vocabulary (the real one is tested in
//! `tests/llm_tokenizer.rs`).

use super::*;
use proptest::prelude::*;

/// All 256 byte tokens, two specials, and merges for " the" and "he".
fn tiny() -> Tokenizer {
    let table = byte_level::byte_to_char_table();
    let mut tokens: Vec<String> = vec!["<|im_start|>".into(), "<|im_end|>".into()];
    tokens.extend(table.iter().map(|c| c.to_string()));
    tokens.extend(["he", "Ġt", "Ġthe"].map(String::from));
    let mut types = vec![token_type::CONTROL; 2];
    types.extend(vec![token_type::NORMAL; tokens.len() - 2]);
    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
    Tokenizer::new(
        &tokens,
        &types,
        &["h e", "Ġ t", "Ġt he"],
        "smollm",
        None,
        Some(1),
    )
    .unwrap()
}

#[test]
fn merges_apply_within_pieces() {
    let t = tiny();
    let ids = t.encode(" the hat").unwrap();
    let texts: Vec<&str> = ids.iter().map(|&id| t.token_text(id).unwrap()).collect();
    assert_eq!(texts, ["Ġthe", "Ġ", "h", "a", "t"]);
}

#[test]
fn specials_are_matched_only_when_asked() {
    let t = tiny();
    let with = t.encode_with_special("<|im_start|>he<|im_end|>").unwrap();
    assert_eq!(with, vec![0, t.token_id("he").unwrap(), 1]);
    let without = t.encode("<|im_start|>").unwrap();
    assert!(without.len() > 1 && !without.contains(&0));
    assert_eq!(t.decode(&with).unwrap(), "<|im_start|>he<|im_end|>");
}

#[test]
fn utf8_stream_holds_back_split_characters() {
    let mut stream = Utf8Stream::default();
    let bytes = "é🙂".as_bytes();
    assert_eq!(stream.push(&bytes[..1]), "");
    assert_eq!(stream.push(&bytes[1..3]), "é");
    assert_eq!(stream.push(&bytes[3..]), "🙂");
    assert_eq!(stream.push(&[0xff, b'a']), "\u{fffd}a");
    assert_eq!(stream.push(&[0xe2]), "");
    assert_eq!(stream.finish(), "\u{fffd}");
}

#[test]
fn out_of_range_id_is_an_error() {
    assert!(tiny().decode(&[100_000]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn tiny_vocabulary_round_trips_any_text(text in "\\PC*") {
        let t = tiny();
        let ids = t.encode(&text).unwrap();
        prop_assert_eq!(t.decode(&ids).unwrap(), text);
    }
}
