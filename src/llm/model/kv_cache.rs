//! The key/value cache: every past position's keys and values, per layer.

use super::config::LlamaConfig;
use super::workspace::Workspace;

/// Keys and values of the positions processed so far, for every layer, and the scratch
/// buffers of the forward passes that fill it.
///
/// Capacity is fixed at creation (positions × layers × 2 × kv_width floats); the forward pass
/// refuses to run past it rather than grow.
///
/// Layout per layer: head-major, `[kv_head][position][head_dim]`, so the keys one attention
/// head reads are one contiguous block (a matrix the dot kernels can take as is).
#[derive(Debug)]
pub struct KvCache {
    kv_head_count: usize,
    head_dim: usize,
    capacity: usize,
    len: usize,
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    /// Activations of the last forward call, kept so that decode steps allocate nothing.
    pub(crate) workspace: Workspace,
}

impl Clone for KvCache {
    fn clone(&self) -> KvCache {
        KvCache {
            kv_head_count: self.kv_head_count,
            head_dim: self.head_dim,
            capacity: self.capacity,
            len: self.len,
            keys: self.keys.clone(),
            values: self.values.clone(),
            workspace: Workspace::default(),
        }
    }
}

impl KvCache {
    pub fn new(config: &LlamaConfig, capacity: usize) -> KvCache {
        let kv_width = config.kv_width();
        KvCache {
            kv_head_count: config.kv_head_count,
            head_dim: config.head_dim,
            capacity,
            len: 0,
            keys: vec![vec![0.0; capacity * kv_width]; config.layer_count],
            values: vec![vec![0.0; capacity * kv_width]; config.layer_count],
            workspace: Workspace::default(),
        }
    }

    /// Positions stored.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets everything from `len` on (e.g. to rerun a prompt without its last token).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Writes keys and values for positions `start..start + n` of `layer`. `rows` holds one
    /// row of `row_width` values per token (the fused QKV output), with the token's keys at
    /// `k_offset..k_offset + kv_width` and its values at `v_offset..`.
    pub(crate) fn store(
        &mut self,
        layer: usize,
        start: usize,
        rows: &[f32],
        row_width: usize,
        k_offset: usize,
        v_offset: usize,
    ) {
        let (hd, capacity) = (self.head_dim, self.capacity);
        for (i, row) in rows.chunks_exact(row_width).enumerate() {
            for head in 0..self.kv_head_count {
                let at = (head * capacity + start + i) * hd;
                let k = k_offset + head * hd;
                let v = v_offset + head * hd;
                self.keys[layer][at..at + hd].copy_from_slice(&row[k..k + hd]);
                self.values[layer][at..at + hd].copy_from_slice(&row[v..v + hd]);
            }
        }
    }

    /// Keys and values of `layer`, head-major with room for `capacity` positions per head.
    pub(crate) fn layer(&self, layer: usize) -> (&[f32], &[f32]) {
        (&self.keys[layer], &self.values[layer])
    }

    /// Marks positions up to `len` as stored (after every layer has stored them).
    pub(crate) fn set_len(&mut self, len: usize) {
        debug_assert!(len <= self.capacity);
        self.len = len;
    }
}
