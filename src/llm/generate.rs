//! Prompt in, text out: prefill, then one decode step per token, streaming text as it comes.

use crate::llm::model::{KvCache, LlamaModel, LogitsWanted};
use crate::llm::sampling::Sampler;
use crate::llm::tokenizer::{Tokenizer, Utf8Stream};
use crate::llm::LlmError;
use std::time::{Duration, Instant};

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced a stop token (end of turn or end of text).
    StopToken(u32),
    /// `max_tokens` were generated.
    MaxTokens,
    /// The KV cache (sized to the model's context) is full.
    ContextFull,
}

/// What a generation did and how long its phases took.
#[derive(Clone, Debug)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    /// Tokens sampled (a stop token counts; it is not printed).
    pub generated_tokens: usize,
    /// Forward pass over the whole prompt, up to the first token's logits.
    pub prefill_time: Duration,
    /// Single-token forward passes after the prompt.
    pub decode_steps: usize,
    pub decode_time: Duration,
    pub stop: StopReason,
}

impl GenerationStats {
    pub fn prefill_tokens_per_s(&self) -> f64 {
        self.prompt_tokens as f64 / self.prefill_time.as_secs_f64()
    }

    /// None when no decode step ran (the first token ended the reply, or `max_tokens` was 1).
    pub fn decode_tokens_per_s(&self) -> Option<f64> {
        (self.decode_steps > 0).then(|| self.decode_steps as f64 / self.decode_time.as_secs_f64())
    }
}

/// What to generate.
pub struct GenerationRequest<'a> {
    pub prompt_tokens: &'a [u32],
    pub max_tokens: usize,
    /// Tokens that end the reply (not printed).
    pub stop_tokens: &'a [u32],
}

/// Generates up to `max_tokens` after the prompt and calls `on_text` with each piece of text
/// as soon as it is complete UTF-8. Returns the generated token ids (stop token included).
pub fn generate(
    model: &LlamaModel,
    tokenizer: &Tokenizer,
    request: &GenerationRequest<'_>,
    sampler: &mut Sampler,
    on_text: &mut dyn FnMut(&str),
) -> Result<(Vec<u32>, GenerationStats), LlmError> {
    let prompt = request.prompt_tokens;
    if prompt.is_empty() {
        return Err(LlmError::Input("the prompt encodes to no tokens".into()));
    }
    let capacity = (prompt.len() + request.max_tokens).min(model.config().context_length);
    if prompt.len() >= capacity {
        return Err(LlmError::Input(format!(
            "prompt of {} tokens leaves no room in the model's context of {}",
            prompt.len(),
            model.config().context_length
        )));
    }
    let mut cache: KvCache = model.new_cache(capacity);
    let mut stream = Utf8Stream::default();
    let mut generated = Vec::new();

    let started = Instant::now();
    let mut logits = Vec::new();
    model.forward_into(prompt, &mut cache, LogitsWanted::Last, None, &mut logits)?;
    let prefill_time = started.elapsed();

    let decode_started = Instant::now();
    let mut decode_steps = 0;
    let stop = loop {
        let token = sampler.sample(&logits);
        generated.push(token);
        if request.stop_tokens.contains(&token) {
            break StopReason::StopToken(token);
        }
        let text = stream.push(&tokenizer.token_bytes(token)?);
        if !text.is_empty() {
            on_text(&text);
        }
        if generated.len() >= request.max_tokens {
            break StopReason::MaxTokens;
        }
        if cache.len() >= cache.capacity() {
            break StopReason::ContextFull;
        }
        model.forward_into(&[token], &mut cache, LogitsWanted::Last, None, &mut logits)?;
        decode_steps += 1;
    };
    let decode_time = decode_started.elapsed();
    let rest = stream.finish();
    if !rest.is_empty() {
        on_text(&rest);
    }
    let stats = GenerationStats {
        prompt_tokens: prompt.len(),
        generated_tokens: generated.len(),
        prefill_time,
        decode_steps,
        decode_time,
        stop,
    };
    Ok((generated, stats))
}
