//! A neuron cluster's weights as the store holds them, and the part of a layer's FFN output
//! that the cluster's active neurons contribute.
//!
//! A cluster of `count` neurons is one row-wise matrix of `3·count × hidden` (the store's
//! `bundles` matrix): for neuron `first + k`, row `3k` is its gate row, `3k + 1` its up row and
//! `3k + 2` its down column, each quantized in groups of 64 along the hidden dimension. A
//! neuron's three vectors sit side by side so one contiguous read brings everything the neuron
//! needs (PowerInfer-2's Gate-Up-Down bundle), and a cluster of consecutive neurons is one read.

use crate::exec::store::layout::GROUP;
use crate::exec::store::rowwise;
use crate::kernels::WeightBits;
use crate::llm::model::ops::silu;

/// Rows of one neuron in a bundle: gate, up, down.
pub const ROWS_PER_NEURON: usize = 3;

/// Bytes of one stored row of `hidden` weights at `bits`.
pub fn row_bytes(bits: WeightBits, hidden: usize) -> usize {
    hidden / GROUP.get() * (GROUP.get() * bits.bits() / 8 + 4)
}

/// The f32 rows of a cluster in store order (gate, up, down per neuron), for the store writer.
pub fn bundle_rows(gate: &[f32], up: &[f32], down_column: &[f32], out: &mut Vec<f32>) {
    out.extend_from_slice(gate);
    out.extend_from_slice(up);
    out.extend_from_slice(down_column);
}

/// What one cluster contributes to a layer's FFN output for the tokens of a pass.
pub struct ClusterInput<'a> {
    /// The cluster's stored payload (its `bundles` matrix).
    pub payload: &'a [u8],
    pub bits: WeightBits,
    pub hidden: usize,
    /// First neuron of the cluster and how many it holds.
    pub first: u32,
    pub count: u32,
    /// The FFN's input (the FFN norm's output), `tokens × hidden`.
    pub inputs: &'a [f32],
    pub tokens: usize,
}

/// Adds `SiLU(gate_i·m_t)·(up_i·m_t)·down_i` into `out[t]` (`tokens × hidden`) for every token
/// `t` and every neuron `i` of the cluster that `active(t)` (ascending neuron ids of the layer)
/// lists, neurons in ascending order. Returns how many (token, neuron) pairs it computed.
///
/// Only active neurons' rows are dequantized: a neuron no token needs costs nothing.
pub fn cluster_ffn<'t>(
    c: &ClusterInput<'_>,
    active: &dyn Fn(usize) -> &'t [u32],
    out: &mut [f32],
) -> Result<usize, String> {
    let hidden = c.hidden;
    let per_row = row_bytes(c.bits, hidden);
    let per_neuron = ROWS_PER_NEURON * per_row;
    if c.payload.len() < per_neuron * c.count as usize {
        return Err(format!(
            "neurons {}..{}: {} bytes hold fewer than {} bundles of {per_neuron} bytes",
            c.first,
            c.first + c.count,
            c.payload.len(),
            c.count
        ));
    }
    if c.inputs.len() != c.tokens * hidden || out.len() != c.tokens * hidden {
        return Err(format!(
            "cluster compute: {} inputs and {} outputs for {} tokens of width {hidden}",
            c.inputs.len(),
            out.len(),
            c.tokens
        ));
    }
    let range = c.first..c.first + c.count;
    // Per token, the slice of its active list that falls in this cluster.
    let in_cluster: Vec<&[u32]> = (0..c.tokens)
        .map(|t| {
            let a = active(t);
            let lo = a.partition_point(|&n| n < range.start);
            let hi = a.partition_point(|&n| n < range.end);
            &a[lo..hi]
        })
        .collect();
    let mut pairs = 0;
    for k in 0..c.count {
        let neuron = c.first + k;
        let users: Vec<usize> = (0..c.tokens)
            .filter(|&t| in_cluster[t].binary_search(&neuron).is_ok())
            .collect();
        if users.is_empty() {
            continue;
        }
        let at = k as usize * per_neuron;
        let rows = rowwise::dequantize(
            &c.payload[at..at + per_neuron],
            c.bits,
            ROWS_PER_NEURON,
            hidden,
        )?;
        let (gate, rest) = rows.split_at(hidden);
        let (up, down) = rest.split_at(hidden);
        for t in users {
            let m = &c.inputs[t * hidden..(t + 1) * hidden];
            let a = silu(dot(gate, m)) * dot(up, m);
            for (o, &d) in out[t * hidden..(t + 1) * hidden].iter_mut().zip(down) {
                *o += a * d;
            }
            pairs += 1;
        }
    }
    Ok(pairs)
}

/// Dot product in eight lanes (a fixed order, so results do not depend on the caller).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    let mut sum = lanes.iter().sum::<f32>();
    for (x, y) in ra.iter().zip(rb) {
        sum += x * y;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::QuantScheme;

    fn encode(rows: &[f32], n_rows: usize, hidden: usize, bits: WeightBits) -> Vec<u8> {
        let q = QuantScheme::MinMax { bits, group: GROUP }
            .quantize(rows, n_rows, hidden)
            .unwrap();
        rowwise::encode(&q)
    }

    #[test]
    fn a_cluster_computes_its_active_neurons_like_dense_arithmetic() {
        let hidden = 128;
        let count = 3;
        let mut rows = Vec::new();
        let value = |i: usize| ((i * 7919 % 201) as f32 - 100.0) / 100.0;
        let mut weights = Vec::new();
        for k in 0..count {
            let row = |r: usize| -> Vec<f32> {
                (0..hidden)
                    .map(|j| value(k * 1000 + r * 300 + j))
                    .collect()
            };
            let (g, u, d) = (row(0), row(1), row(2));
            bundle_rows(&g, &u, &d, &mut rows);
            weights.push((g, u, d));
        }
        let payload = encode(&rows, count * 3, hidden, WeightBits::B8);
        assert_eq!(payload.len(), row_bytes(WeightBits::B8, hidden) * 3 * count);
        let inputs: Vec<f32> = (0..2 * hidden).map(|i| value(i + 5) * 0.5).collect();
        // Token 0 uses neurons 10 and 12, token 1 neuron 11 and one outside the cluster.
        let actives: [Vec<u32>; 2] = [vec![10, 12], vec![4, 11]];
        let mut out = vec![0.0f32; 2 * hidden];
        let c = ClusterInput {
            payload: &payload,
            bits: WeightBits::B8,
            hidden,
            first: 10,
            count: count as u32,
            inputs: &inputs,
            tokens: 2,
        };
        let pairs = cluster_ffn(&c, &|t| &actives[t], &mut out).unwrap();
        assert_eq!(pairs, 3);
        for (t, active) in actives.iter().enumerate() {
            let m = &inputs[t * hidden..(t + 1) * hidden];
            let mut want = vec![0.0f32; hidden];
            for &n in active.iter().filter(|&&n| (10..13).contains(&n)) {
                let (g, u, d) = &weights[n as usize - 10];
                let dotf = |w: &[f32]| w.iter().zip(m).map(|(a, b)| a * b).sum::<f32>();
                let a = silu(dotf(g)) * dotf(u);
                for (w, &dj) in want.iter_mut().zip(d) {
                    *w += a * dj;
                }
            }
            for (j, (&got, &w)) in out[t * hidden..(t + 1) * hidden].iter().zip(&want).enumerate() {
                // 8-bit weights: within a percent of the f32 arithmetic.
                assert!((got - w).abs() <= 0.01 * w.abs().max(0.1), "t{t} j{j}: {got} vs {w}");
            }
        }
    }

    #[test]
    fn a_short_payload_is_an_error() {
        let c = ClusterInput {
            payload: &[0u8; 10],
            bits: WeightBits::B4,
            hidden: 64,
            first: 0,
            count: 1,
            inputs: &[0.0; 64],
            tokens: 1,
        };
        let err = cluster_ffn(&c, &|_| &[0], &mut [0.0; 64]).unwrap_err();
        assert!(err.contains("fewer than 1 bundles"), "{err}");
    }
}
