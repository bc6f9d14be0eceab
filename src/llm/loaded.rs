//! A model ready to talk to: weights, tokenizer and chat template from one GGUF file.

use crate::llm::chat::{ChatTemplate, Message};
use crate::llm::format::WeightFormat;
use crate::llm::gguf::GgufFile;
use crate::llm::model::LlamaModel;
use crate::llm::tokenizer::Tokenizer;
use crate::llm::LlmError;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// End-of-turn and end-of-text tokens that stop a reply, when the vocabulary has them.
const STOP_TOKEN_TEXTS: [&str; 2] = ["<|im_end|>", "<|endoftext|>"];

pub struct LoadedModel {
    pub path: PathBuf,
    pub model: LlamaModel,
    pub tokenizer: Tokenizer,
    /// None when the file has no chat template (only raw prompts then).
    pub chat: Option<ChatTemplate>,
    /// `tokenizer.ggml.add_bos_token`: prepend the BOS token to every prompt.
    pub add_bos: bool,
    /// Reading, dequantizing and converting the weights.
    pub load_time: Duration,
}

impl LoadedModel {
    /// Loads `path` with its matrices in `format`.
    /// A format with the GPTQ requantizer first runs the f32 model over the calibration text
    /// ([`crate::llm::calibration`]); that is part of the load time.
    pub fn load(path: &Path, format: WeightFormat) -> Result<LoadedModel, LlmError> {
        let started = Instant::now();
        let file = GgufFile::open(path)?;
        let tokenizer = Tokenizer::from_gguf(&file)?;
        let builder = if format.needs_calibration() {
            let statistics = crate::llm::calibration::collect(&file, &tokenizer)?;
            format.calibrated_builder(std::sync::Arc::new(statistics))?
        } else {
            format.builder()?
        };
        let model = LlamaModel::load(&file, builder.as_ref())?;
        let chat = match file.get(crate::llm::chat::TEMPLATE_KEY) {
            Some(_) => Some(ChatTemplate::from_gguf(&file)?),
            None => None,
        };
        let add_bos = file
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        if model.config().vocab_size != tokenizer.vocab_size() {
            return Err(file.metadata_error(
                "tokenizer.ggml.tokens",
                format!(
                    "{} tokens, but the model's vocabulary is {}",
                    tokenizer.vocab_size(),
                    model.config().vocab_size
                ),
            ));
        }
        Ok(LoadedModel {
            path: path.to_path_buf(),
            model,
            tokenizer,
            chat,
            add_bos,
            load_time: started.elapsed(),
        })
    }

    /// The prompt text: `prompt` inside the chat template (with the template's default system
    /// message, or `system` if given), or `prompt` as is when `raw`.
    pub fn prompt_text(
        &self,
        prompt: &str,
        system: Option<&str>,
        raw: bool,
    ) -> Result<String, LlmError> {
        if raw {
            return Ok(prompt.to_string());
        }
        let template = self.chat.as_ref().ok_or_else(|| {
            LlmError::Input(format!(
                "{} has no chat template; use a raw prompt",
                self.path.display()
            ))
        })?;
        let mut messages = Vec::new();
        if let Some(system) = system {
            messages.push(Message::new("system", system));
        }
        messages.push(Message::new("user", prompt));
        Ok(template.render(&messages))
    }

    /// Token ids of a prompt (see [`LoadedModel::prompt_text`]); special-token strings in the
    /// text are parsed, as the model's own tokenizer does.
    pub fn prompt_tokens(
        &self,
        prompt: &str,
        system: Option<&str>,
        raw: bool,
    ) -> Result<Vec<u32>, LlmError> {
        let text = self.prompt_text(prompt, system, raw)?;
        let mut ids = Vec::new();
        if self.add_bos {
            ids.extend(self.tokenizer.bos_id());
        }
        ids.extend(self.tokenizer.encode_with_special(&text)?);
        Ok(ids)
    }

    /// Tokens that end a reply: the file's EOS plus end-of-turn/end-of-text if present.
    pub fn stop_tokens(&self) -> Vec<u32> {
        let mut stops: Vec<u32> = self.tokenizer.eos_id().into_iter().collect();
        stops.extend(
            STOP_TOKEN_TEXTS
                .iter()
                .filter_map(|t| self.tokenizer.token_id(t)),
        );
        stops.sort_unstable();
        stops.dedup();
        stops
    }
}
