//! Recording neuron-activation traces from the real model's FFN activations.
//!
//! For every token the model processes (the prompt's prefill, then each greedy decode step) and
//! every layer, the FFN intermediate activations `a_i = SiLU(gate_i)·up_i` arrive through the
//! [`FfnObserver`] hook. A neuron counts as *active* for that token when `|a_i|` exceeds its
//! layer's threshold: the magnitude that the requested fraction of the layer's activations
//! exceed over the whole recording. This is the per-layer magnitude threshold of CATS
//! (Lee et al. 2024, arXiv 2404.08763 §3: a quantile of |activation| per layer, calibrated on
//! sample data), applied to the product `SiLU(gate)·up` rather than CATS's `SiLU(gate)` alone:
//! the product is the coefficient with which neuron i's column of the down projection enters
//! the output, so a neuron below the threshold contributes least (CHESS, arXiv 2409.01366,
//! also thresholds the product's magnitude, per channel). The thresholds are calibrated on the
//! recording's own tokens, so the recorded active fraction equals the requested one (up to
//! ties), and they are written into the header with the rule.
//!
//! The header also keeps the token ids of every sequence (`parameters.token_ids`: the prompt's
//! tokens, then each greedy token fed back), so the offloaded real-model run
//! (`exec::model`) can process exactly the tokens each record describes without re-deriving
//! them from the prompts.
//!
//! Memory: the magnitudes of every recorded token are kept until the thresholds are known
//! (4 bytes × layers × FFN width per token: 184 KB per token for SmolLM2).

use crate::llm::model::{FfnObserver, LogitsWanted};
use crate::llm::sampling::argmax;
use crate::llm::{LlmError, LoadedModel};
use crate::trace::{
    Phase, SourceKind, TokenRecord, TraceHeader, TraceKind, TraceSource, TraceWriter, FORMAT_NAME,
    FORMAT_VERSION,
};
use std::path::Path;

/// What to record.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordOptions {
    /// Fraction of each layer's (token, neuron) activations to mark active, in (0, 1].
    pub keep_fraction: f64,
    /// Greedy decode steps per prompt at most (a stop token ends a reply earlier).
    pub max_new_tokens: usize,
    /// Feed prompts as they are instead of wrapping them in the chat template.
    pub raw: bool,
    /// Replace the chat template's default system message.
    pub system: Option<String>,
    /// Model id written into the trace header (`scenarios/models/*.json` name).
    pub model_id: String,
    /// Where the prompts came from, for the header.
    pub prompts_source: String,
}

/// The thresholds and counts of a recording.
#[derive(Clone, Debug, PartialEq)]
pub struct Recording {
    pub header: TraceHeader,
    pub records: Vec<TokenRecord>,
    /// Per layer: activations with |a| above this are active.
    pub thresholds: Vec<f32>,
    /// Per layer: the active fraction recorded (the requested one up to ties).
    pub active_fractions: Vec<f64>,
    pub prefill_tokens: usize,
    pub decode_tokens: usize,
}

/// |activations| of every recorded token, per layer, in recording order.
struct Magnitudes {
    per_layer: Vec<Vec<f32>>,
}

impl FfnObserver for Magnitudes {
    fn ffn_activations(&mut self, layer: usize, _first_position: usize, activations: &[f32]) {
        self.per_layer[layer].extend(activations.iter().map(|a| a.abs()));
    }
}

/// The token a record describes.
struct TokenPlace {
    sequence: u32,
    position: u32,
    phase: Phase,
}

/// Runs every prompt (sequence i = prompt i) through `loaded` and builds the trace in memory.
pub fn record_neuron_trace(
    loaded: &LoadedModel,
    prompts: &[String],
    options: &RecordOptions,
) -> Result<Recording, LlmError> {
    if !(options.keep_fraction > 0.0 && options.keep_fraction <= 1.0) {
        return Err(LlmError::Input(format!(
            "keep fraction {}: must be in (0, 1]",
            options.keep_fraction
        )));
    }
    if prompts.is_empty() {
        return Err(LlmError::Input(format!(
            "{}: no prompts to record",
            options.prompts_source
        )));
    }
    let config = loaded.model.config();
    let (layers, ffn) = (config.layer_count, config.ffn_size);
    let stops = loaded.stop_tokens();
    let mut magnitudes = Magnitudes {
        per_layer: vec![Vec::new(); layers],
    };
    let mut places = Vec::new();
    let mut token_ids: Vec<Vec<u32>> = Vec::with_capacity(prompts.len());
    let mut logits = Vec::new();
    for (sequence, prompt) in prompts.iter().enumerate() {
        let tokens = loaded.prompt_tokens(prompt, options.system.as_deref(), options.raw)?;
        if tokens.is_empty() {
            return Err(LlmError::Input(format!(
                "{}: prompt {} encodes to no tokens",
                options.prompts_source,
                sequence + 1
            )));
        }
        let capacity = (tokens.len() + options.max_new_tokens).min(config.context_length);
        if tokens.len() >= capacity && options.max_new_tokens > 0 {
            return Err(LlmError::Input(format!(
                "{}: prompt {} has {} tokens, more than the model's context of {}",
                options.prompts_source,
                sequence + 1,
                tokens.len(),
                config.context_length
            )));
        }
        let mut cache = loaded.model.new_cache(capacity.max(tokens.len()));
        loaded.model.forward_into(
            &tokens,
            &mut cache,
            LogitsWanted::Last,
            Some(&mut magnitudes),
            &mut logits,
        )?;
        let place = |position: usize, phase| TokenPlace {
            sequence: sequence as u32,
            position: position as u32,
            phase,
        };
        places.extend((0..tokens.len()).map(|p| place(p, Phase::Prefill)));
        let mut fed = tokens.clone();
        for _ in 0..options.max_new_tokens {
            let token = argmax(&logits);
            if stops.contains(&token) || cache.len() >= cache.capacity() {
                break;
            }
            let position = cache.len();
            loaded.model.forward_into(
                &[token],
                &mut cache,
                LogitsWanted::Last,
                Some(&mut magnitudes),
                &mut logits,
            )?;
            places.push(place(position, Phase::Decode));
            fed.push(token);
        }
        token_ids.push(fed);
    }

    let thresholds: Vec<f32> = magnitudes
        .per_layer
        .iter()
        .map(|values| threshold_keeping(values, options.keep_fraction))
        .collect();
    let mut records = Vec::with_capacity(places.len());
    let mut active_counts = vec![0u64; layers];
    for (t, place) in places.iter().enumerate() {
        let mut record = TokenRecord {
            sequence: place.sequence,
            position: place.position,
            phase: place.phase,
            neuron_offsets: vec![0],
            ..TokenRecord::default()
        };
        for (layer, values) in magnitudes.per_layer.iter().enumerate() {
            let row = &values[t * ffn..(t + 1) * ffn];
            let before = record.neurons.len();
            record.neurons.extend(
                row.iter()
                    .enumerate()
                    .filter(|(_, &m)| m > thresholds[layer])
                    .map(|(i, _)| i as u32),
            );
            active_counts[layer] += (record.neurons.len() - before) as u64;
            record.neuron_offsets.push(record.neurons.len() as u32);
        }
        records.push(record);
    }
    let cells = (places.len() * ffn) as f64;
    let active_fractions: Vec<f64> = active_counts.iter().map(|&c| c as f64 / cells).collect();
    let prefill_tokens = places.iter().filter(|p| p.phase == Phase::Prefill).count();
    let decode_tokens = places.len() - prefill_tokens;

    let file_name = loaded
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parameters = serde_json::json!({
        "rule": "neuron i of layer l is active for a token when |SiLU(gate_i)·up_i| > thresholds[l]",
        "threshold_rule": "per layer, the magnitude exceeded by keep_fraction of all (token, neuron) activations of that layer in this recording (CATS-style per-layer quantile, calibrated on the recording's own prompts; applied to SiLU(gate)·up)",
        "keep_fraction": options.keep_fraction,
        "thresholds": thresholds,
        "recorded_active_fraction": active_fractions.iter().sum::<f64>() / layers as f64,
        "model_file": file_name,
        "weight_format": loaded.model.format(),
        "prompts": options.prompts_source,
        "sequences": prompts.len(),
        "chat_template": !options.raw,
        "system_message": options.system,
        "decoding": "greedy",
        "max_new_tokens": options.max_new_tokens,
        "prefill_tokens": prefill_tokens,
        "decode_tokens": decode_tokens,
        "token_ids": token_ids,
    });
    let header = TraceHeader {
        format: FORMAT_NAME.to_string(),
        version: FORMAT_VERSION,
        kind: TraceKind::Neuron,
        model: options.model_id.clone(),
        layers: layers as u32,
        first_moe_layer: 0,
        moe_layers: 0,
        experts: 0,
        top_k: 0,
        scores_normalized: false,
        predicted_layers_ahead: 0,
        neurons_per_layer: vec![ffn as u32; layers],
        neuron_predictions: false,
        source: TraceSource {
            kind: SourceKind::Recorded,
            description: format!(
                "Recorded by edgesim (`edgesim trace record`) from {file_name} running in edgesim's \
                 own runtime as {}: the FFN activations SiLU(gate)·up of every layer for every \
                 prefill and greedy decode token of {} prompts ({}); a neuron is active when \
                 |SiLU(gate)·up| exceeds its layer's threshold, chosen so that {} of the layer's \
                 activations in this recording do (parameters.thresholds).",
                loaded.model.format(),
                prompts.len(),
                options.prompts_source,
                options.keep_fraction
            ),
            parameters,
            targets: Vec::new(),
        },
    };
    Ok(Recording {
        header,
        records,
        thresholds,
        active_fractions,
        prefill_tokens,
        decode_tokens,
    })
}

impl Recording {
    /// Writes the trace file (validated record by record by the writer).
    pub fn write(&self, path: &Path) -> Result<u64, LlmError> {
        let to_error = |e: crate::trace::TraceError| LlmError::Input(e.to_string());
        let mut writer = TraceWriter::create(path, self.header.clone()).map_err(to_error)?;
        for record in &self.records {
            writer.write(record).map_err(to_error)?;
        }
        writer.finish().map_err(to_error)
    }
}

/// The largest magnitude that `keep` of `values` exceed: keeping `|a| > threshold` keeps
/// `round(keep · n)` values (fewer only when values tie at the threshold). Keeping everything
/// gives a threshold below every value.
pub fn threshold_keeping(values: &[f32], keep: f64) -> f32 {
    let n = values.len();
    let kept = ((keep * n as f64).round() as usize).min(n);
    if n == 0 || kept == n {
        return -1.0;
    }
    let mut sorted = values.to_vec();
    // The (n − kept)-th smallest value: `kept` values lie above it.
    let (_, threshold, _) = sorted.select_nth_unstable_by(n - kept - 1, |a, b| a.total_cmp(b));
    *threshold
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_keeps_the_requested_share() {
        let values: Vec<f32> = (0..1000)
            .map(|i| ((i * 7919) % 1000) as f32 / 10.0)
            .collect();
        for keep in [0.1, 0.3, 0.5, 0.999] {
            let t = threshold_keeping(&values, keep);
            let kept = values.iter().filter(|&&v| v > t).count();
            assert_eq!(kept, (keep * 1000.0).round() as usize, "keep {keep}");
        }
        assert!(values.iter().all(|&v| v > threshold_keeping(&values, 1.0)));
        let t = threshold_keeping(&values, 0.0001);
        assert_eq!(values.iter().filter(|&&v| v > t).count(), 0);
    }
}
