//! Quality measures of a model run: perplexity over a text, and agreement of next-token
//! predictions between two runs (a low-bit format against the f32 reference).

use crate::llm::model::{LlamaModel, LogitsWanted};
use crate::llm::sampling::argmax;
use crate::llm::LlmError;

/// How a text is cut into windows and which tokens of each window are scored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PerplexityMethod {
    /// llama.cpp's `llama-perplexity` (`tools/perplexity/perplexity.cpp`, `perplexity()`):
    /// consecutive, non-overlapping windows of `context` tokens (a last partial window is
    /// dropped), each from an empty cache, with the first window token replaced by BOS when the
    /// model's tokenizer adds one; only the second half of each window is scored (the logits of
    /// positions `context/2 .. context−1` predict the tokens after them), so every scored token
    /// has at least `context/2` tokens of context. Figures are comparable with llama.cpp's
    /// "Final estimate: PPL" on the same text and context.
    #[default]
    LlamaCpp,
    /// Every token from a window's second on is scored (consecutive windows of `context`, a
    /// last window of two or more tokens kept). Early tokens have little context, so this reads
    /// higher than [`PerplexityMethod::LlamaCpp`] (about 15 % on SmolLM2 and KJV Genesis 1–12).
    AllTokens,
}

impl PerplexityMethod {
    /// One line for reports: what was scored, so a figure is never read against the other
    /// method's.
    pub fn describe(self, context: usize) -> String {
        match self {
            PerplexityMethod::LlamaCpp => format!(
                "llama.cpp's method: windows of {context} tokens, the last {} of each scored",
                context - 1 - context / 2
            ),
            PerplexityMethod::AllTokens => {
                format!("every token after the first of each {context}-token window scored")
            }
        }
    }
}

/// Perplexity and what it was measured over.
#[derive(Clone, Debug, PartialEq)]
pub struct Perplexity {
    /// exp(mean negative log-likelihood per predicted token).
    pub perplexity: f64,
    /// Tokens whose likelihood was scored.
    pub scored_tokens: usize,
    pub windows: usize,
    pub method: PerplexityMethod,
    pub context: usize,
}

/// Perplexity of `tokens` by llama.cpp's method ([`PerplexityMethod::LlamaCpp`]) with windows
/// of `context` tokens; `bos` is the token a window starts with when the tokenizer adds one
/// (`None` for SmolLM2, whose file says `tokenizer.ggml.add_bos_token = false`).
pub fn perplexity(
    model: &LlamaModel,
    tokens: &[u32],
    context: usize,
) -> Result<Perplexity, LlmError> {
    perplexity_with(model, tokens, context, PerplexityMethod::LlamaCpp, None)
}

/// Perplexity of `tokens` by `method`; see [`PerplexityMethod`].
pub fn perplexity_with(
    model: &LlamaModel,
    tokens: &[u32],
    context: usize,
    method: PerplexityMethod,
    bos: Option<u32>,
) -> Result<Perplexity, LlmError> {
    if context < 4 {
        return Err(LlmError::Input(format!(
            "perplexity context {context}: must be at least 4"
        )));
    }
    let vocab = model.config().vocab_size;
    let (windows, first_scored): (Vec<&[u32]>, usize) = match method {
        PerplexityMethod::LlamaCpp => (tokens.chunks_exact(context).collect(), context / 2),
        PerplexityMethod::AllTokens => {
            (tokens.chunks(context).filter(|w| w.len() >= 2).collect(), 0)
        }
    };
    if windows.is_empty() {
        return Err(LlmError::Input(format!(
            "perplexity ({}) needs at least {} tokens, got {}",
            method.describe(context),
            if method == PerplexityMethod::LlamaCpp {
                context
            } else {
                2
            },
            tokens.len()
        )));
    }
    let mut negative_log_likelihood = 0.0f64;
    let mut scored_tokens = 0;
    let mut input = Vec::with_capacity(context);
    for window in &windows {
        input.clear();
        input.extend_from_slice(window);
        if let Some(bos) = bos {
            input[0] = bos;
        }
        let mut cache = model.new_cache(input.len());
        let logits = model.forward_with(&input, &mut cache, LogitsWanted::All, None)?;
        // The logits at position p predict window[p + 1].
        for position in first_scored..window.len() - 1 {
            let row = &logits[position * vocab..(position + 1) * vocab];
            negative_log_likelihood -= log_softmax_at(row, window[position + 1] as usize);
            scored_tokens += 1;
        }
    }
    Ok(Perplexity {
        perplexity: (negative_log_likelihood / scored_tokens as f64).exp(),
        scored_tokens,
        windows: windows.len(),
        method,
        context,
    })
}

/// `log softmax(logits)` at `index`, computed in f64.
pub fn log_softmax_at(logits: &[f32], index: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    logits[index] as f64 - max - sum.ln()
}

/// The model's greedy next-token prediction at every position from `from` on, given the whole
/// of `sequence` as context (one batched pass, teacher forcing): position p's prediction is
/// the argmax of the logits after `sequence[..=p]`.
pub fn next_token_predictions(
    model: &LlamaModel,
    sequence: &[u32],
    from: usize,
) -> Result<Vec<u32>, LlmError> {
    if from >= sequence.len() {
        return Err(LlmError::Input(format!(
            "predictions from position {from} of a {}-token sequence",
            sequence.len()
        )));
    }
    let vocab = model.config().vocab_size;
    let mut cache = model.new_cache(sequence.len());
    let logits = model.forward_with(sequence, &mut cache, LogitsWanted::All, None)?;
    Ok((from..sequence.len())
        .map(|p| argmax(&logits[p * vocab..(p + 1) * vocab]))
        .collect())
}

/// Fraction of positions where two `n × vocab` logit matrices have the same argmax.
pub fn top1_agreement(reference: &[f32], candidate: &[f32], vocab: usize) -> Result<f64, LlmError> {
    if reference.len() != candidate.len()
        || vocab == 0
        || !reference.len().is_multiple_of(vocab)
        || reference.is_empty()
    {
        return Err(LlmError::Input(format!(
            "top-1 agreement needs two equal n × {vocab} logit matrices, got {} and {} values",
            reference.len(),
            candidate.len()
        )));
    }
    let positions = reference.len() / vocab;
    let same = reference
        .chunks_exact(vocab)
        .zip(candidate.chunks_exact(vocab))
        .filter(|(a, b)| argmax(a) == argmax(b))
        .count();
    Ok(same as f64 / positions as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_of_uniform_logits() {
        let value = log_softmax_at(&[3.0; 4], 2);
        assert!((value - (0.25f64).ln()).abs() < 1e-12);
    }

    #[test]
    fn agreement_counts_matching_argmaxes() {
        let reference = [1.0, 0.0, 0.0, 1.0, 5.0, 1.0];
        let candidate = [2.0, 0.0, 1.0, 0.0, 9.0, 1.0];
        assert_eq!(
            top1_agreement(&reference, &candidate, 2).unwrap(),
            2.0 / 3.0
        );
        assert!(top1_agreement(&reference, &candidate[..4], 2).is_err());
    }
}
