//! Scratch buffers of the forward pass, reused from one call to the next.

use std::sync::Mutex;

/// The activations of one forward call (`n` tokens). Buffers only grow, so a decode step after
/// the first reuses them without allocating. Lives in the [`super::KvCache`], which is per
/// sequence and passed mutably to every call.
#[derive(Debug, Default)]
pub(crate) struct Workspace {
    /// Residual stream, `n × hidden`.
    pub x: Vec<f32>,
    /// RMSNorm output, `n × hidden`.
    pub normed: Vec<f32>,
    /// Fused Q/K/V projections, `n × (q_width + 2·kv_width)`.
    pub qkv: Vec<f32>,
    /// Attention output before its projection, `n × q_width`.
    pub attention: Vec<f32>,
    /// A matrix output added to the residual stream, `n × hidden`.
    pub projected: Vec<f32>,
    /// Fused gate/up projections, `n × 2·ffn`.
    pub gate_up: Vec<f32>,
    /// FFN activations SiLU(gate)·up, `n × ffn`.
    pub activations: Vec<f32>,
    /// RoPE (cos, sin) per token and dimension pair, `n × rope_dim/2`.
    pub rotations: Vec<(f32, f32)>,
    /// Attention scores, one buffer per thread of the team.
    pub scores: Vec<Mutex<Vec<f32>>>,
}

/// Sets `buffer` to `len` values (contents unspecified), allocating only to grow.
pub(crate) fn sized<T: Copy + Default>(buffer: &mut Vec<T>, len: usize) -> &mut [T] {
    if buffer.len() < len {
        buffer.resize(len, T::default());
    }
    &mut buffer[..len]
}
