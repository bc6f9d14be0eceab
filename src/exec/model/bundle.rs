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

/// What one cluster contributes: a row of `hidden` values for each token that has an active
/// neuron in the cluster (tokens without one get nothing, so a prefill's part stays small).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterOutput {
    /// Indices (within the pass) of the tokens the rows belong to, ascending.
    pub tokens: Vec<usize>,
    /// `tokens.len() × hidden`.
    pub rows: Vec<f32>,
    /// (token, neuron) pairs computed.
    pub pairs: usize,
}

/// `SiLU(gate_i·m_t)·(up_i·m_t)·down_i` summed over the neurons `i` of the cluster that
/// `active(t)` (ascending neuron ids of the layer) lists, for every token `t`, neurons in
/// ascending order.
///
/// Only active neurons' rows are dequantized: a neuron no token needs costs nothing.
pub fn cluster_ffn<'t>(
    c: &ClusterInput<'_>,
    active: &dyn Fn(usize) -> &'t [u32],
) -> Result<ClusterOutput, String> {
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
    if c.inputs.len() != c.tokens * hidden {
        return Err(format!(
            "cluster compute: {} inputs for {} tokens of width {hidden}",
            c.inputs.len(),
            c.tokens
        ));
    }
    let range = c.first..c.first + c.count;
    // The tokens with an active neuron here, and for each the part of its list in the cluster.
    let mut tokens = Vec::new();
    let mut lists: Vec<&[u32]> = Vec::new();
    for t in 0..c.tokens {
        let a = active(t);
        let lo = a.partition_point(|&n| n < range.start);
        let hi = a.partition_point(|&n| n < range.end);
        if lo < hi {
            tokens.push(t);
            lists.push(&a[lo..hi]);
        }
    }
    let mut out = ClusterOutput {
        rows: vec![0.0; tokens.len() * hidden],
        tokens,
        pairs: 0,
    };
    let mut inputs = Vec::new();
    let mut rows = Vec::with_capacity(ROWS_PER_NEURON * hidden);
    for k in 0..c.count {
        let id = c.first + k;
        // (row in `out`, token) for each token that uses neuron `id`.
        let users: Vec<(usize, usize)> = lists
            .iter()
            .enumerate()
            .filter(|(_, l)| l.binary_search(&id).is_ok())
            .map(|(i, _)| (i, out.tokens[i]))
            .collect();
        if users.is_empty() {
            continue;
        }
        let at = k as usize * per_neuron;
        dequantize(&c.payload[at..at + per_neuron], c.bits, hidden, &mut rows)?;
        out.pairs += users.len();
        inputs.clear();
        inputs.extend(
            users
                .iter()
                .map(|&(row, t)| (row, &c.inputs[t * hidden..(t + 1) * hidden])),
        );
        neuron(&rows, &inputs, hidden, &mut out.rows);
    }
    Ok(out)
}

/// One neuron's contribution to each `(row, input)` of `users`. Runs the AVX2 build of the
/// same code where the CPU has it; both builds do the same operations in the same order (no
/// FMA contraction), so a machine gets the same bits whichever runs.
fn neuron(rows: &[f32], users: &[(usize, &[f32])], hidden: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { neuron_avx2(rows, users, hidden, out) };
    }
    neuron_body(rows, users, hidden, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn neuron_avx2(rows: &[f32], users: &[(usize, &[f32])], hidden: usize, out: &mut [f32]) {
    neuron_body(rows, users, hidden, out)
}

#[inline(always)]
fn neuron_body(rows: &[f32], users: &[(usize, &[f32])], hidden: usize, out: &mut [f32]) {
    let (gate, rest) = rows.split_at(hidden);
    let (up, down) = rest.split_at(hidden);
    for &(row, m) in users {
        let a = silu(dot(gate, m)) * dot(up, m);
        for (o, &d) in out[row * hidden..(row + 1) * hidden].iter_mut().zip(down) {
            *o += a * d;
        }
    }
}

/// A neuron's three rows in f32 (`w = s·(q − h) + c` per group of 64, as
/// [`rowwise::dequantize`] computes it). Bytes are codes at 8 bits, so that case reads them
/// directly instead of through the bit unpacker, which took longer than the neuron's
/// arithmetic.
fn dequantize(
    bytes: &[u8],
    bits: WeightBits,
    hidden: usize,
    out: &mut Vec<f32>,
) -> Result<(), String> {
    out.clear();
    if bits != WeightBits::B8 {
        out.extend(rowwise::dequantize(bytes, bits, ROWS_PER_NEURON, hidden)?);
        return Ok(());
    }
    let group = GROUP.get();
    let per_group = group + 4;
    let needed = ROWS_PER_NEURON * hidden / group * per_group;
    if bytes.len() < needed {
        return Err(format!(
            "a neuron's rows need {needed} bytes, {} given",
            bytes.len()
        ));
    }
    let h = bits.code_midpoint();
    for block in bytes[..needed].chunks_exact(per_group) {
        let codes = &block[..group];
        let (s, c) = rowwise::scale_and_centre(block);
        out.extend(codes.iter().map(|&q| s * (q as f32 - h) + c));
    }
    Ok(())
}

/// Dot product in eight lanes (a fixed order, so results do not depend on the caller).
#[inline(always)]
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
                (0..hidden).map(|j| value(k * 1000 + r * 300 + j)).collect()
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
        let c = ClusterInput {
            payload: &payload,
            bits: WeightBits::B8,
            hidden,
            first: 10,
            count: count as u32,
            inputs: &inputs,
            tokens: 2,
        };
        let got = cluster_ffn(&c, &|t| &actives[t]).unwrap();
        assert_eq!(got.pairs, 3);
        assert_eq!(got.tokens, vec![0, 1]);
        let out = got.rows;
        // The weights as stored: compare with f32 arithmetic on the dequantized rows.
        let q = QuantScheme::MinMax {
            bits: WeightBits::B8,
            group: GROUP,
        }
        .quantize(&rows, count * 3, hidden)
        .unwrap()
        .dequantize();
        let weights: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = (0..count)
            .map(|k| {
                let r = |i: usize| q[(3 * k + i) * hidden..(3 * k + i + 1) * hidden].to_vec();
                (r(0), r(1), r(2))
            })
            .collect();
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
            for (j, (&got, &w)) in out[t * hidden..(t + 1) * hidden]
                .iter()
                .zip(&want)
                .enumerate()
            {
                // Same weights, another summation order.
                assert!(
                    (got - w).abs() <= 1e-4 * w.abs().max(1.0),
                    "t{t} j{j}: {got} vs {w}"
                );
            }
        }
    }

    #[test]
    fn the_8_bit_fast_path_dequantizes_like_the_row_wise_format() {
        let hidden = 128;
        let rows: Vec<f32> = (0..3 * hidden)
            .map(|i| ((i * 37 % 113) as f32 - 56.0) * 0.03)
            .collect();
        let bytes = encode(&rows, 3, hidden, WeightBits::B8);
        let mut fast = Vec::new();
        dequantize(&bytes, WeightBits::B8, hidden, &mut fast).unwrap();
        let slow = rowwise::dequantize(&bytes, WeightBits::B8, 3, hidden).unwrap();
        assert_eq!(fast, slow);
    }

    #[test]
    fn the_avx2_build_gives_the_portable_builds_bits() {
        let hidden = 136; // not a multiple of 8: the remainder loop runs too
        let v = |i: usize| ((i * 7919 % 1009) as f32 - 504.0) / 333.0;
        let rows: Vec<f32> = (0..3 * hidden).map(v).collect();
        let m0: Vec<f32> = (0..hidden).map(|i| v(i + 11)).collect();
        let m1: Vec<f32> = (0..hidden).map(|i| v(i + 29)).collect();
        let users: Vec<(usize, &[f32])> = vec![(0, &m0), (1, &m1)];
        let (mut fast, mut portable) = (vec![0.5f32; 2 * hidden], vec![0.5f32; 2 * hidden]);
        neuron(&rows, &users, hidden, &mut fast);
        neuron_body(&rows, &users, hidden, &mut portable);
        let bits = |x: &[f32]| x.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&fast), bits(&portable));
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
        let err = cluster_ffn(&c, &|_| &[0]).unwrap_err();
        assert!(err.contains("fewer than 1 bundles"), "{err}");
    }
}
