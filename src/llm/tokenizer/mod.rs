//! GPT-2-style byte-level BPE, built from a GGUF file's `tokenizer.ggml.*` metadata.
//!
//! Encoding: split out special tokens (`<|im_start|>` …) when asked to, pre-tokenize the rest
//! into pieces ([`pretokenize`]), map each piece's bytes to their stand-in characters
//! ([`byte_level`]), start from one token per byte and apply the ranked merges ([`bpe`]).
//! Decoding maps each token's characters back to bytes.
//!
//! A few bytes have no token in SmolLM2's vocabulary: the control characters 0x04, 0x06, 0x13,
//! 0x14, 0x16 and 0x1d, the UTF-8 lead bytes 0xf1 and 0xf2 (characters U+40000–U+BFFFF, planes
//! that Unicode leaves unassigned) and bytes that never occur in UTF-8. Like llama.cpp, the
//! encoder drops them; [`Tokenizer::unrepresentable_bytes`] lists them.

pub mod bpe;
pub mod byte_level;
pub mod pretokenize;

use crate::llm::gguf::GgufFile;
use crate::llm::LlmError;
use bpe::MergeTable;
use pretokenize::Pretokenizer;
use std::collections::HashMap;

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
pub mod token_type {
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
    pub const BYTE: i32 = 6;
}

/// The vocabulary, merges and rules needed to turn text into token ids and back.
#[derive(Debug)]
pub struct Tokenizer {
    tokens: Vec<String>,
    /// Control and user-defined tokens: matched literally in text, decoded literally.
    is_special: Vec<bool>,
    vocab: HashMap<String, u32>,
    merges: MergeTable,
    byte_token: [Option<u32>; 256],
    char_byte: HashMap<char, u8>,
    /// Special tokens by descending length, so the longest match wins.
    specials: Vec<(String, u32)>,
    pretokenizer: Pretokenizer,
    bos: Option<u32>,
    eos: Option<u32>,
}

impl Tokenizer {
    /// The tokenizer stored in a GGUF file (`tokenizer.ggml.model` must be "gpt2").
    pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer, LlmError> {
        let model = file.require_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(file.metadata_error(
                "tokenizer.ggml.model",
                format!("tokenizer '{model}' is not supported (only byte-level BPE, 'gpt2')"),
            ));
        }
        let tokens = file.require_string_array("tokenizer.ggml.tokens")?;
        let merges = file.require_string_array("tokenizer.ggml.merges")?;
        let types_key = "tokenizer.ggml.token_type";
        let token_types = match file.get(types_key) {
            None => vec![token_type::NORMAL; tokens.len()],
            Some(value) => {
                let array = value.as_array().ok_or_else(|| {
                    file.metadata_error(types_key, "expected an array of integers")
                })?;
                array
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        v.as_i64().map(|t| t as i32).ok_or_else(|| {
                            file.metadata_error(types_key, format!("element {i} is not an integer"))
                        })
                    })
                    .collect::<Result<Vec<i32>, LlmError>>()?
            }
        };
        let pre = match file.get("tokenizer.ggml.pre") {
            Some(_) => file.require_str("tokenizer.ggml.pre")?,
            None => "default",
        };
        let optional_id = |key: &str| -> Result<Option<u32>, LlmError> {
            match file.get(key) {
                None => Ok(None),
                Some(_) => {
                    let id = file.require_u64(key)?;
                    if id >= tokens.len() as u64 {
                        return Err(file.metadata_error(
                            key,
                            format!(
                                "token id {id} is outside the vocabulary of {}",
                                tokens.len()
                            ),
                        ));
                    }
                    Ok(Some(id as u32))
                }
            }
        };
        let bos = optional_id("tokenizer.ggml.bos_token_id")?;
        let eos = optional_id("tokenizer.ggml.eos_token_id")?;
        Tokenizer::new(&tokens, &token_types, &merges, pre, bos, eos).map_err(|e| match e {
            LlmError::Tokenizer(message) => LlmError::Gguf {
                file: file.file_name().to_string(),
                message: format!("tokenizer: {message}"),
            },
            other => other,
        })
    }

    /// Builds a tokenizer from its parts (what [`Tokenizer::from_gguf`] reads).
    pub fn new(
        tokens: &[&str],
        token_types: &[i32],
        merges: &[&str],
        pretokenizer: &str,
        bos: Option<u32>,
        eos: Option<u32>,
    ) -> Result<Tokenizer, LlmError> {
        if tokens.len() != token_types.len() {
            return Err(LlmError::Tokenizer(format!(
                "{} tokens but {} token types",
                tokens.len(),
                token_types.len()
            )));
        }
        if tokens.len() > u32::MAX as usize {
            return Err(LlmError::Tokenizer("vocabulary larger than u32 ids".into()));
        }
        let mut vocab = HashMap::with_capacity(tokens.len());
        for (id, token) in tokens.iter().enumerate() {
            // Duplicates keep the first id, as llama.cpp does.
            vocab.entry(token.to_string()).or_insert(id as u32);
        }
        let byte_chars = byte_level::byte_to_char_table();
        let mut byte_token = [None; 256];
        let mut char_byte = HashMap::with_capacity(256);
        for (byte, &c) in byte_chars.iter().enumerate() {
            byte_token[byte] = vocab.get(c.to_string().as_str()).copied();
            char_byte.insert(c, byte as u8);
        }
        let is_special: Vec<bool> = token_types
            .iter()
            .map(|&t| t == token_type::CONTROL || t == token_type::USER_DEFINED)
            .collect();
        let mut specials: Vec<(String, u32)> = tokens
            .iter()
            .enumerate()
            .filter(|&(id, token)| is_special[id] && !token.is_empty())
            .map(|(id, token)| (token.to_string(), id as u32))
            .collect();
        specials.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        Ok(Tokenizer {
            tokens: tokens.iter().map(|t| t.to_string()).collect(),
            is_special,
            merges: MergeTable::new(merges, &vocab)?,
            vocab,
            byte_token,
            char_byte,
            specials,
            pretokenizer: Pretokenizer::from_name(pretokenizer)?,
            bos,
            eos,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn merge_count(&self) -> usize {
        self.merges.len()
    }

    pub fn pretokenizer_name(&self) -> &str {
        self.pretokenizer.name()
    }

    /// The id of a token's exact vocabulary string (e.g. `"<|im_end|>"`, `"Ġthe"`).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.vocab.get(token).copied()
    }

    /// A token's vocabulary string (in the byte-level alphabet for normal tokens).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    pub fn is_special(&self, id: u32) -> bool {
        self.is_special.get(id as usize).copied().unwrap_or(false)
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// Bytes that no token represents; the encoder drops them.
    pub fn unrepresentable_bytes(&self) -> Vec<u8> {
        (0..=255u8)
            .filter(|&b| self.byte_token[b as usize].is_none())
            .collect()
    }

    /// Encodes `text` as plain text: special-token strings in it are ordinary characters.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, LlmError> {
        let mut ids = Vec::new();
        self.encode_plain(text, &mut ids)?;
        Ok(ids)
    }

    /// Encodes `text`, turning special-token strings (`<|im_start|>` …) into their ids, as
    /// Hugging Face tokenizers and llama.cpp do for chat prompts.
    pub fn encode_with_special(&self, text: &str) -> Result<Vec<u32>, LlmError> {
        let mut ids = Vec::new();
        let mut plain_start = 0;
        let mut at = 0;
        while at < text.len() {
            let rest = &text[at..];
            if let Some((special, id)) = self
                .specials
                .iter()
                .find(|(s, _)| rest.starts_with(s.as_str()))
            {
                self.encode_plain(&text[plain_start..at], &mut ids)?;
                ids.push(*id);
                at += special.len();
                plain_start = at;
            } else {
                at += rest.chars().next().map_or(1, char::len_utf8);
            }
        }
        self.encode_plain(&text[plain_start..], &mut ids)?;
        Ok(ids)
    }

    fn encode_plain(&self, text: &str, ids: &mut Vec<u32>) -> Result<(), LlmError> {
        for piece in self.pretokenizer.split(text)? {
            let mut symbols: Vec<u32> = piece
                .bytes()
                .filter_map(|b| self.byte_token[b as usize])
                .collect();
            self.merges.apply(&mut symbols);
            ids.extend_from_slice(&symbols);
        }
        Ok(())
    }

    /// The bytes token `id` stands for (special tokens: their literal text). Streaming output
    /// joins these and cuts at UTF-8 character boundaries.
    pub fn token_bytes(&self, id: u32) -> Result<Vec<u8>, LlmError> {
        let text = self.token_text(id).ok_or_else(|| {
            LlmError::Tokenizer(format!(
                "token id {id} is outside the vocabulary of {}",
                self.tokens.len()
            ))
        })?;
        if self.is_special(id) {
            return Ok(text.as_bytes().to_vec());
        }
        let mut bytes = Vec::with_capacity(text.len());
        for c in text.chars() {
            match self.char_byte.get(&c) {
                Some(&b) => bytes.push(b),
                // Not in the byte alphabet (never in a byte-level vocabulary): keep it as is.
                None => bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            }
        }
        Ok(bytes)
    }

    /// Decodes ids to text; invalid UTF-8 (a character cut between tokens) becomes U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String, LlmError> {
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend(self.token_bytes(id)?);
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// Turns a stream of token bytes into text pieces, holding back an incomplete UTF-8 character
/// until its last byte arrives.
#[derive(Debug, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Adds bytes and returns the text that is now complete.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(text) => {
                    out.push_str(text);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(
                        std::str::from_utf8(&self.pending[..valid]).expect("valid prefix"),
                    );
                    match e.error_len() {
                        // Incomplete character at the end: wait for more bytes.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        // Invalid bytes: replace them and go on.
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Whatever is left at the end of the stream (an incomplete character becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests;
