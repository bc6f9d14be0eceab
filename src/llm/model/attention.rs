//! Causal grouped-query attention over the KV cache.

use crate::llm::matvec::dot_block;
use crate::llm::parallel::for_each_chunk_mut;
use std::sync::Mutex;

/// The shape of one attention call.
pub(crate) struct AttentionShape {
    pub head_count: usize,
    pub kv_head_count: usize,
    pub head_dim: usize,
    /// Position of the first query token (the cache held this many positions before).
    pub start: usize,
    /// Positions per head in the cache's head-major layout.
    pub capacity: usize,
    /// Distance between two tokens' queries in `queries` (the fused QKV row width); the
    /// queries of a token are the first `head_count · head_dim` values of its row.
    pub query_stride: usize,
}

/// For each query token i (at position `start + i`) and head h, attends over cache positions
/// `0..=start + i` with key/value head `h / (head_count / kv_head_count)`.
///
/// `out` is `n × head_count·head_dim`; `keys` and `values` are the cache's head-major
/// `[kv_head][capacity][head_dim]` blocks; `scores` holds one scratch buffer per thread of the
/// current team (at least one).
///
/// Work is split over (token, key/value head) units: the query heads that share a key/value
/// head are adjacent, so one unit scores all of them against each key in one pass of the dot
/// kernel and weights each value once for all of them (grouped-query attention reads the
/// cache once per group, not once per head). Each output value is reduced in one fixed order,
/// so the result does not depend on the thread count.
pub(crate) fn attend(
    shape: &AttentionShape,
    queries: &[f32],
    keys: &[f32],
    values: &[f32],
    out: &mut [f32],
    scores: &[Mutex<Vec<f32>>],
) {
    let AttentionShape {
        head_count,
        kv_head_count,
        head_dim,
        start,
        capacity,
        query_stride,
    } = *shape;
    let group = head_count / kv_head_count;
    let scale = 1.0 / (head_dim as f32).sqrt();
    for_each_chunk_mut(out, group * head_dim, &|at, chunk| {
        let mut scratch = scores[at.part].lock().unwrap_or_else(|e| e.into_inner());
        for (offset, group_out) in chunk.chunks_exact_mut(group * head_dim).enumerate() {
            let unit = at.first_unit + offset;
            let (token, kv_head) = (unit / kv_head_count, unit % kv_head_count);
            let query_at = token * query_stride + kv_head * group * head_dim;
            let group_queries = &queries[query_at..query_at + group * head_dim];
            let head_block = kv_head * capacity * head_dim;
            let visible = start + token + 1;
            let head_keys = &keys[head_block..head_block + visible * head_dim];
            let head_values = &values[head_block..head_block + visible * head_dim];
            if scratch.len() < visible * group {
                scratch.resize(visible * group, 0.0);
            }
            // weights[p·group + j]: query head j of the group against key p.
            let weights = &mut scratch[..visible * group];
            dot_block(head_keys, head_dim, group_queries, group, weights);
            for j in 0..group {
                let mut max = f32::NEG_INFINITY;
                for p in 0..visible {
                    let w = &mut weights[p * group + j];
                    *w *= scale;
                    max = max.max(*w);
                }
                let mut sum = 0.0f32;
                for p in 0..visible {
                    let w = &mut weights[p * group + j];
                    *w = (*w - max).exp();
                    sum += *w;
                }
                let inverse = 1.0 / sum;
                for p in 0..visible {
                    weights[p * group + j] *= inverse;
                }
            }
            group_out.fill(0.0);
            for (p, value) in head_values.chunks_exact(head_dim).enumerate() {
                for (j, head_out) in group_out.chunks_exact_mut(head_dim).enumerate() {
                    let weight = weights[p * group + j];
                    for (o, v) in head_out.iter_mut().zip(value) {
                        *o += weight * v;
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_position_returns_its_value() {
        let shape = AttentionShape {
            head_count: 2,
            kv_head_count: 1,
            head_dim: 2,
            start: 0,
            capacity: 1,
            query_stride: 4,
        };
        let mut out = [0.0; 4];
        let scores = [Mutex::new(Vec::new())];
        attend(
            &shape,
            &[1.0, 0.0, 0.0, 1.0],
            &[0.5, 0.5],
            &[3.0, -1.0],
            &mut out,
            &scores,
        );
        assert_eq!(out, [3.0, -1.0, 3.0, -1.0]);
    }

    #[test]
    fn causal_mask_hides_later_positions() {
        // Two tokens, one head: token 0 must ignore position 1's huge value.
        let shape = AttentionShape {
            head_count: 1,
            kv_head_count: 1,
            head_dim: 1,
            start: 0,
            capacity: 2,
            query_stride: 1,
        };
        let mut out = [0.0; 2];
        let scores = [Mutex::new(Vec::new())];
        attend(
            &shape,
            &[1.0, 1.0],
            &[0.0, 0.0],
            &[1.0, 1000.0],
            &mut out,
            &scores,
        );
        assert_eq!(out[0], 1.0);
        assert_eq!(out[1], 500.5); // equal scores: the mean of both values
    }
}
