//! In-memory form of trace records: one token's activations across all layers, and the
//! forward passes built from them.

use serde::{Deserialize, Serialize};

/// Expert id stored in a prediction slot that predicts nothing: the slots of layer `i` for a
/// distance `d` with `i + d` past the last MoE layer.
pub const NO_PREDICTION: u16 = u16::MAX;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Prefill,
    #[default]
    Decode,
}

/// What one token activated, in every layer the trace covers.
///
/// Expert traces fill `experts`/`scores` (and `predicted` when the trace records predictions);
/// neuron traces fill `neuron_offsets`/`neurons`. Storage is flat so a record costs a handful
/// of allocations however many layers the model has, and can be reused between reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TokenRecord {
    pub sequence: u32,
    /// Position of the token in its sequence (0-based).
    pub position: u32,
    pub phase: Phase,
    /// `moe_layers * top_k` expert ids; layer `i`'s are `experts[i*k..(i+1)*k]`, in descending
    /// gate-score order.
    pub experts: Vec<u16>,
    /// Gate scores matching `experts`, normalised over the chosen k.
    pub scores: Vec<f32>,
    /// Predicted experts for layers ahead: `moe_layers * predicted_layers_ahead * top_k` ids;
    /// for layer `i` and distance `d` (1-based) they are at
    /// `((i * ahead) + (d - 1)) * k ..` . Empty when the trace records no predictions. Slots
    /// for layers past the last MoE layer hold [`NO_PREDICTION`].
    pub predicted: Vec<u16>,
    /// Neuron traces: layer `l`'s active neurons are `neurons[neuron_offsets[l]..neuron_offsets[l+1]]`,
    /// sorted ascending.
    pub neuron_offsets: Vec<u32>,
    pub neurons: Vec<u32>,
    /// Neuron traces with predictor output: layer `l`'s predicted active neurons are
    /// `predicted_neurons[predicted_neuron_offsets[l]..predicted_neuron_offsets[l+1]]`, sorted
    /// ascending. Empty when the trace records no predictor output.
    pub predicted_neuron_offsets: Vec<u32>,
    pub predicted_neurons: Vec<u32>,
    /// MoE layer indices (ascending) whose routing was missing in the source recording and was
    /// filled in by an importer; the header's source description says how. Empty for complete
    /// records, which is every record of a generated trace.
    pub filled_layers: Vec<u16>,
}

impl TokenRecord {
    /// Expert ids chosen at MoE layer index `moe_layer` (0 = first MoE layer).
    pub fn experts_at(&self, moe_layer: usize, top_k: usize) -> &[u16] {
        &self.experts[moe_layer * top_k..(moe_layer + 1) * top_k]
    }

    pub fn scores_at(&self, moe_layer: usize, top_k: usize) -> &[f32] {
        &self.scores[moe_layer * top_k..(moe_layer + 1) * top_k]
    }

    /// Experts predicted at MoE layer `moe_layer` for the layer `distance` ahead, if recorded
    /// (`None` past the last MoE layer).
    pub fn predicted_at(
        &self,
        moe_layer: usize,
        distance: usize,
        ahead: usize,
        top_k: usize,
    ) -> Option<&[u16]> {
        if distance == 0 || distance > ahead || self.predicted.is_empty() {
            return None;
        }
        let start = ((moe_layer * ahead) + (distance - 1)) * top_k;
        self.predicted
            .get(start..start + top_k)
            .filter(|p| p.first() != Some(&NO_PREDICTION))
    }

    pub fn neurons_at(&self, layer: usize) -> &[u32] {
        let (a, b) = (
            self.neuron_offsets[layer] as usize,
            self.neuron_offsets[layer + 1] as usize,
        );
        &self.neurons[a..b]
    }

    /// Predicted active neurons of layer `layer`, if the trace records predictor output.
    pub fn predicted_neurons_at(&self, layer: usize) -> Option<&[u32]> {
        let a = *self.predicted_neuron_offsets.get(layer)? as usize;
        let b = *self.predicted_neuron_offsets.get(layer + 1)? as usize;
        self.predicted_neurons.get(a..b)
    }

    /// Empties every per-layer vector, keeping their capacity, so a reader can refill the record
    /// without allocating.
    pub fn clear(&mut self) {
        self.experts.clear();
        self.scores.clear();
        self.predicted.clear();
        self.neuron_offsets.clear();
        self.neurons.clear();
        self.predicted_neuron_offsets.clear();
        self.predicted_neurons.clear();
        self.filled_layers.clear();
    }
}

/// One forward pass: a decode token, or a chunk of prefill tokens of one sequence processed
/// together. This is what a policy plans for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ForwardPass {
    pub sequence: u32,
    pub phase: Phase,
    pub tokens: Vec<TokenRecord>,
}

impl ForwardPass {
    pub fn batch(&self) -> u32 {
        self.tokens.len() as u32
    }

    /// Tokens already in the sequence's context before this pass (its KV-cache length).
    pub fn context_before(&self) -> u32 {
        self.tokens.first().map_or(0, |t| t.position)
    }

    /// True when this pass starts a new sequence.
    pub fn starts_sequence(&self) -> bool {
        self.context_before() == 0
    }
}
