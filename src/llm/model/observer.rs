//! A hook into the forward pass for the FFN's intermediate activations.

/// Receives, for every layer of every forward call, the FFN intermediate activations
/// `SiLU(gate)·up` — the per-neuron values whose magnitude decides which neurons a sparse
/// policy must load (CATS/CHESS threshold |SiLU(gate)·up| for SiLU models).
///
/// `activations` holds one row of `ffn_size` signed values per token, for the tokens at
/// positions `first_position..first_position + rows` (a prefill passes the whole prompt at
/// once, a decode step one token). Layers arrive in order 0, 1, …
pub trait FfnObserver {
    fn ffn_activations(&mut self, layer: usize, first_position: usize, activations: &[f32]);
}

impl<F: FnMut(usize, usize, &[f32])> FfnObserver for F {
    fn ffn_activations(&mut self, layer: usize, first_position: usize, activations: &[f32]) {
        self(layer, first_position, activations)
    }
}
