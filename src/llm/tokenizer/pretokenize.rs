//! Splitting text into the pieces BPE runs on, the way the model's own tokenizer did.
//!
//! GGUF names the rule set in `tokenizer.ggml.pre`. SmolLM2's is "smollm": its Hugging Face
//! tokenizer runs a `Digits(individual_digits = true)` pre-tokenizer (every numeric character
//! alone) and then the `ByteLevel` one, which splits with GPT-2's regular expression. llama.cpp
//! groups "smollm" with "starcoder" and "refact" for the same reason. Plain "gpt2" (and
//! "default") skip the digit step.

use crate::llm::LlmError;
use fancy_regex::Regex;

/// GPT-2's split pattern (as in Hugging Face `ByteLevel` with `use_regex = true`): English
/// contractions, a letter run with an optional leading space, a number run, a punctuation run,
/// whitespace not followed by a non-space (so "  word" keeps one space for the word), and
/// whitespace.
pub const GPT2_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// A pre-tokenizer rule set.
#[derive(Debug)]
pub struct Pretokenizer {
    name: String,
    isolate_digits: bool,
    pattern: Regex,
}

impl Pretokenizer {
    /// The rule set named by `tokenizer.ggml.pre`.
    pub fn from_name(name: &str) -> Result<Pretokenizer, LlmError> {
        let isolate_digits = match name {
            "smollm" | "starcoder" | "refact" => true,
            "gpt2" | "default" => false,
            other => {
                return Err(LlmError::Tokenizer(format!(
                    "pre-tokenizer '{other}' (tokenizer.ggml.pre) is not supported; known: smollm, starcoder, refact, gpt2, default"
                )))
            }
        };
        let pattern = Regex::new(GPT2_PATTERN)
            .map_err(|e| LlmError::Tokenizer(format!("GPT-2 split pattern: {e}")))?;
        Ok(Pretokenizer {
            name: name.to_string(),
            isolate_digits,
            pattern,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pieces of `text`, in order; they concatenate back to `text`.
    pub fn split<'t>(&self, text: &'t str) -> Result<Vec<&'t str>, LlmError> {
        let mut pieces = Vec::new();
        if self.isolate_digits {
            let mut start = 0;
            for (at, c) in text.char_indices() {
                if c.is_numeric() {
                    self.split_regex(&text[start..at], &mut pieces)?;
                    pieces.push(&text[at..at + c.len_utf8()]);
                    start = at + c.len_utf8();
                }
            }
            self.split_regex(&text[start..], &mut pieces)?;
        } else {
            self.split_regex(text, &mut pieces)?;
        }
        Ok(pieces)
    }

    fn split_regex<'t>(&self, text: &'t str, pieces: &mut Vec<&'t str>) -> Result<(), LlmError> {
        let mut covered = 0;
        for found in self.pattern.find_iter(text) {
            let found = found.map_err(|e| LlmError::Tokenizer(format!("splitting text: {e}")))?;
            // The pattern matches every character class, so nothing falls between matches;
            // keep any gap anyway rather than lose text.
            if found.start() > covered {
                pieces.push(&text[covered..found.start()]);
            }
            pieces.push(found.as_str());
            covered = found.end();
        }
        if covered < text.len() {
            pieces.push(&text[covered..]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(name: &str, text: &str) -> Vec<String> {
        let p = Pretokenizer::from_name(name).unwrap();
        p.split(text)
            .unwrap()
            .into_iter()
            .map(String::from)
            .collect()
    }

    #[test]
    fn gpt2_rules() {
        assert_eq!(split("gpt2", "Hello world"), ["Hello", " world"]);
        assert_eq!(
            split("gpt2", "I'm here, it's 2024!"),
            ["I", "'m", " here", ",", " it", "'s", " 2024", "!"]
        );
        // Whitespace before a word leaves its last space to the word.
        assert_eq!(split("gpt2", "a   b"), ["a", "  ", " b"]);
        assert_eq!(split("gpt2", "a \n\nb"), ["a", " \n", "\n", "b"]);
        assert_eq!(split("gpt2", "end  "), ["end", "  "]);
        assert_eq!(split("gpt2", "héllo wörld"), ["héllo", " wörld"]);
    }

    #[test]
    fn smollm_isolates_every_digit() {
        assert_eq!(
            split("smollm", "in 2024!"),
            ["in", " ", "2", "0", "2", "4", "!"]
        );
        assert_eq!(split("smollm", "x1y"), ["x", "1", "y"]);
    }

    #[test]
    fn pieces_cover_the_text() {
        let text = "  Tabs\tand\r\nnewlines,   числа ١٢٣ and emoji 🙂🙂 ok?!  ";
        for name in ["smollm", "gpt2"] {
            assert_eq!(split(name, text).concat(), text);
        }
    }

    #[test]
    fn unknown_rule_set_is_named() {
        let error = Pretokenizer::from_name("llama-bpe")
            .unwrap_err()
            .to_string();
        assert!(error.contains("'llama-bpe'"), "{error}");
    }
}
