//! The SmolLM2 tokenizer from the real GGUF file: known ids, round trips, special tokens.
//! Skips (passing, with a message) when the model is not in the cache.

mod llm_common;

use edgesim::llm::gguf::GgufFile;
use edgesim::llm::tokenizer::Tokenizer;
use proptest::prelude::*;
use std::sync::OnceLock;

fn tokenizer() -> Option<&'static Tokenizer> {
    static TOKENIZER: OnceLock<Option<Tokenizer>> = OnceLock::new();
    TOKENIZER
        .get_or_init(|| {
            let path = llm_common::smollm2_path()?;
            let file = GgufFile::open(&path).expect("the cached model parses");
            Some(Tokenizer::from_gguf(&file).expect("its tokenizer builds"))
        })
        .as_ref()
}

/// Ids produced by Hugging Face `tokenizers` 0.23.3 (Python), a separate implementation, built
/// from this file's `tokenizer.ggml.tokens`/`merges` with SmolLM2's pre-tokenizer
/// (Digits(individual_digits) then ByteLevel(add_prefix_space = false)) and the 17 control
/// tokens added as special tokens.
const HF_ENCODINGS: [(&str, &[u32]); 9] = [
    ("Hello world", &[19556, 905]),
    ("The capital of France is", &[504, 3575, 282, 4649, 314]),
    (
        "I'm here, it's 2024! We've 3.14159 apples.",
        &[
            57, 5248, 1535, 28, 357, 506, 216, 34, 32, 34, 36, 17, 1046, 3543, 216, 35, 30, 33, 36,
            33, 37, 41, 13855, 30,
        ],
    ),
    ("a   b\n\n\tc  \n", &[81, 256, 278, 1116, 197, 83, 32057]),
    (
        "héllo wörld, naïve café",
        &[88, 2756, 31394, 267, 29989, 400, 28, 15486, 46494, 37366],
    ),
    (
        "def f(x):\n    return x**2  # square\n",
        &[
            1604, 275, 24, 104, 727, 472, 1003, 1792, 828, 34, 216, 907, 5222, 198,
        ],
    ),
    (
        "<|im_start|>user\nHi<|im_end|>\n",
        &[1, 4093, 198, 26843, 2, 198],
    ),
    (
        "don't DON'T y'all'd",
        &[12420, 982, 422, 2154, 23, 68, 329, 23, 449, 6737],
    ),
    ("tab\there\r\nwindows", &[15999, 197, 1531, 201, 198, 37066]),
];

#[test]
fn vocabulary_facts_from_the_file() {
    let Some(t) = tokenizer() else { return };
    assert_eq!(t.vocab_size(), 49152);
    assert_eq!(t.merge_count(), 48900);
    assert_eq!(t.pretokenizer_name(), "smollm");
    // The chat special tokens are the first entries of the vocabulary, typed CONTROL.
    assert_eq!(t.token_id("<|endoftext|>"), Some(0));
    assert_eq!(t.token_id("<|im_start|>"), Some(1));
    assert_eq!(t.token_id("<|im_end|>"), Some(2));
    assert!(t.is_special(1) && t.is_special(2) && !t.is_special(216));
    assert_eq!(t.eos_id(), Some(2));
    // Single bytes map to their stand-in character's token.
    assert_eq!(t.encode(" ").unwrap(), vec![t.token_id("Ġ").unwrap()]);
    assert_eq!(t.encode("\n").unwrap(), vec![t.token_id("Ċ").unwrap()]);
    assert_eq!(t.encode("a").unwrap(), vec![t.token_id("a").unwrap()]);
    assert_eq!(t.token_bytes(t.token_id("Ġthe").unwrap()).unwrap(), b" the");
}

#[test]
fn encodings_match_hugging_face_tokenizers() {
    let Some(t) = tokenizer() else { return };
    for (text, ids) in HF_ENCODINGS {
        assert_eq!(t.encode_with_special(text).unwrap(), ids, "{text:?}");
    }
}

#[test]
fn special_strings_are_plain_text_unless_asked() {
    let Some(t) = tokenizer() else { return };
    let plain = t.encode("<|im_start|>").unwrap();
    assert!(!plain.contains(&1) && plain.len() > 1);
    assert_eq!(t.decode(&plain).unwrap(), "<|im_start|>");
}

#[test]
fn bytes_without_a_token_are_only_rare_control_characters_and_non_utf8_bytes() {
    let Some(t) = tokenizer() else { return };
    let mut expected = vec![0x04, 0x06, 0x13, 0x14, 0x16, 0x1d, 0xc0, 0xc1, 0xf1, 0xf2];
    expected.extend(0xf5..=0xff);
    assert_eq!(t.unrepresentable_bytes(), expected);
    assert_eq!(t.decode(&t.encode("a\u{4}b").unwrap()).unwrap(), "ab");
}

const VARIED_TEXTS: [&str; 12] = [
    "",
    "   ",
    "a   b\n\n\tc  \n",
    "Привет, как дела?",
    "日本語のテキストです。",
    "emoji 🙂🙂 and 👨\u{200d}👩\u{200d}👧",
    "numbers ١٢٣ and ²³ and Ⅻ",
    "हिन्दी भाषा",
    "  trailing and leading  ",
    "\r\n\r\n\u{a0}\u{3000}mixed\u{2028}spaces",
    "tab\there\r\nwindows",
    "don't stop: \"quoted\" (parens) [brackets] {braces} <angle> &amp; 100% #1",
];

#[test]
fn varied_text_round_trips() {
    let Some(t) = tokenizer() else { return };
    for text in VARIED_TEXTS {
        let ids = t.encode(text).unwrap();
        assert_eq!(t.decode(&ids).unwrap(), text, "ids {ids:?}");
    }
    let long = "All work and no play makes Jack a dull boy. ".repeat(200);
    assert_eq!(t.decode(&t.encode(&long).unwrap()).unwrap(), long);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any text round-trips except the six control characters the vocabulary lacks and the
    /// unassigned planes 4–11 (U+40000–U+BFFFF), whose UTF-8 lead bytes 0xF1/0xF2 have no token.
    #[test]
    fn any_representable_text_round_trips(
        text in "[^\u{4}\u{6}\u{13}\u{14}\u{16}\u{1d}\u{40000}-\u{bffff}]{0,64}"
    ) {
        if let Some(t) = tokenizer() {
            let ids = t.encode(&text).unwrap();
            prop_assert_eq!(t.decode(&ids).unwrap(), text);
        }
    }
}
