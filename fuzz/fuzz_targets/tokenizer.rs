//! The byte-level BPE tokenizer (prompts to `generate`, `trace record`, `validate`). The first
//! byte picks a mode:
//! - text: encode (with and without special tokens) and decode back, which must give the
//!   text again; stream the decoded bytes through `Utf8Stream`;
//! - ids: decode arbitrary token ids (an error for an unknown id, never a panic);
//! - vocabulary: build a tokenizer from fuzzed tokens and merges (`tokens` lines, then a line
//!   `#merges`, then merge lines), as a GGUF's `tokenizer.ggml.*` arrays give them.
#![no_main]

use edgesim::llm::tokenizer::byte_level::byte_to_char_table;
use edgesim::llm::tokenizer::token_type::{CONTROL, NORMAL};
use edgesim::llm::tokenizer::{Tokenizer, Utf8Stream};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// All 256 byte tokens, two specials and a few merges (as in the tokenizer's unit tests).
fn tiny() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let mut tokens: Vec<String> = vec!["<|im_start|>".into(), "<|im_end|>".into()];
        tokens.extend(byte_to_char_table().iter().map(|c| c.to_string()));
        tokens.extend(["he", "Ġt", "Ġthe", "in", "Ġin"].map(String::from));
        let mut types = vec![CONTROL; 2];
        types.extend(vec![NORMAL; tokens.len() - 2]);
        let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
        Tokenizer::new(
            &tokens,
            &types,
            &["h e", "Ġ t", "Ġt he", "i n", "Ġ in"],
            "smollm",
            None,
            Some(1),
        )
        .expect("the fixed vocabulary is valid")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            let t = tiny();
            let ids = t.encode(text).expect("every byte has a token");
            assert_eq!(t.decode(&ids).expect("ids from encode decode"), text);
            let with = t.encode_with_special(text).expect("every byte has a token");
            assert_eq!(t.decode(&with).expect("ids from encode decode"), text);
            let mut stream = Utf8Stream::default();
            let mut streamed = String::new();
            for &id in &ids {
                streamed.push_str(&stream.push(&t.token_bytes(id).expect("known id")));
            }
            streamed.push_str(&stream.finish());
            assert_eq!(streamed, text);
        }
        1 => {
            let ids: Vec<u32> = rest
                .chunks_exact(2)
                .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))
                .collect();
            let _ = tiny().decode(&ids);
        }
        _ => {
            let text = String::from_utf8_lossy(rest);
            let (tokens, merges) = text.split_once("\n#merges\n").unwrap_or((&text, ""));
            let tokens: Vec<&str> = tokens.lines().take(4096).collect();
            let merges: Vec<&str> = merges.lines().take(4096).collect();
            let types: Vec<i32> = (0..tokens.len())
                .map(|i| if i % 7 == 0 { CONTROL } else { NORMAL })
                .collect();
            if let Ok(t) = Tokenizer::new(&tokens, &types, &merges, "gpt2", None, None) {
                if let Ok(ids) = t.encode_with_special("the in <|x|> 42") {
                    let _ = t.decode(&ids);
                }
            }
        }
    }
});
