//! Causal grouped-query attention over the KV cache.

use crate::llm::matvec::dot_block;
use rayon::prelude::*;

/// The shape of one attention call.
pub(crate) struct AttentionShape {
    pub head_count: usize,
    pub kv_head_count: usize,
    pub head_dim: usize,
    /// Position of the first query token (the cache held this many positions before).
    pub start: usize,
    /// Positions per head in the cache's head-major layout.
    pub capacity: usize,
}

/// For each query token i (at position `start + i`) and head h, attends over cache positions
/// `0..=start + i` with key/value head `h / (head_count / kv_head_count)`.
///
/// `queries` and `out` are `n × head_count·head_dim`; `keys` and `values` are the cache's
/// head-major `[kv_head][capacity][head_dim]` blocks. Work is split over (token, head) pairs
/// and each pair is computed in one fixed order, so the result does not depend on the thread
/// count.
pub(crate) fn attend(
    shape: &AttentionShape,
    queries: &[f32],
    keys: &[f32],
    values: &[f32],
    out: &mut [f32],
) {
    let AttentionShape {
        head_count,
        kv_head_count,
        head_dim,
        start,
        capacity,
    } = *shape;
    let group = head_count / kv_head_count;
    let scale = 1.0 / (head_dim as f32).sqrt();
    out.par_chunks_mut(head_dim)
        .enumerate()
        .for_each(|(unit, head_out)| {
            let (token, head) = (unit / head_count, unit % head_count);
            let query = &queries[unit * head_dim..(unit + 1) * head_dim];
            let head_block = (head / group) * capacity * head_dim;
            let visible = start + token + 1;
            let head_keys = &keys[head_block..head_block + visible * head_dim];
            let head_values = &values[head_block..head_block + visible * head_dim];
            let mut scores = vec![0.0f32; visible];
            dot_block(head_keys, head_dim, query, 1, &mut scores);
            for score in scores.iter_mut() {
                *score *= scale;
            }
            super::ops::softmax(&mut scores);
            head_out.fill(0.0);
            for (&weight, value) in scores.iter().zip(head_values.chunks_exact(head_dim)) {
                for (o, v) in head_out.iter_mut().zip(value) {
                    *o += weight * v;
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
        };
        let mut out = [0.0; 4];
        attend(
            &shape,
            &[1.0, 0.0, 0.0, 1.0],
            &[0.5, 0.5],
            &[3.0, -1.0],
            &mut out,
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
        };
        let mut out = [0.0; 2];
        attend(&shape, &[1.0, 1.0], &[0.0, 0.0], &[1.0, 1000.0], &mut out);
        assert_eq!(out[0], 1.0);
        assert_eq!(out[1], 500.5); // equal scores: the mean of both values
    }
}
