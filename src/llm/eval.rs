//! Quality measures of a model run: perplexity over a text, and agreement of next-token
//! predictions between two runs (a low-bit format against the f32 reference).

use crate::llm::model::{LlamaModel, LogitsWanted};
use crate::llm::sampling::argmax;
use crate::llm::LlmError;

/// Perplexity and what it was measured over.
#[derive(Clone, Debug, PartialEq)]
pub struct Perplexity {
    /// exp(mean negative log-likelihood per predicted token).
    pub perplexity: f64,
    /// Tokens whose likelihood was scored (each window's first token is only context).
    pub scored_tokens: usize,
    pub windows: usize,
}

/// Perplexity of `tokens` in consecutive, non-overlapping windows of `context` tokens, each run
/// from an empty cache (the llama.cpp `perplexity` convention without its half-window
/// warm-up). A last window shorter than two tokens is dropped.
pub fn perplexity(
    model: &LlamaModel,
    tokens: &[u32],
    context: usize,
) -> Result<Perplexity, LlmError> {
    if context < 2 {
        return Err(LlmError::Input(format!(
            "perplexity context {context}: must be at least 2"
        )));
    }
    let vocab = model.config().vocab_size;
    let mut negative_log_likelihood = 0.0f64;
    let mut scored_tokens = 0;
    let mut windows = 0;
    for window in tokens.chunks(context).filter(|w| w.len() >= 2) {
        let mut cache = model.new_cache(window.len());
        let logits = model.forward_with(window, &mut cache, LogitsWanted::All, None)?;
        for (position, &next) in window.iter().enumerate().skip(1) {
            let row = &logits[(position - 1) * vocab..position * vocab];
            negative_log_likelihood -= log_softmax_at(row, next as usize);
            scored_tokens += 1;
        }
        windows += 1;
    }
    if scored_tokens == 0 {
        return Err(LlmError::Input(format!(
            "perplexity needs at least 2 tokens, got {}",
            tokens.len()
        )));
    }
    Ok(Perplexity {
        perplexity: (negative_log_likelihood / scored_tokens as f64).exp(),
        scored_tokens,
        windows,
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
