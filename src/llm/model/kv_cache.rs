//! The key/value cache: every past position's keys and values, per layer.

use super::config::LlamaConfig;

/// Keys and values of the positions processed so far, for every layer.
///
/// Capacity is fixed at creation (positions × layers × 2 × kv_width floats); the forward pass
/// refuses to run past it rather than grow.
#[derive(Clone, Debug)]
pub struct KvCache {
    kv_width: usize,
    capacity: usize,
    len: usize,
    /// Per layer: `capacity × kv_width` keys, then the same for values.
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
}

impl KvCache {
    pub fn new(config: &LlamaConfig, capacity: usize) -> KvCache {
        let kv_width = config.kv_width();
        KvCache {
            kv_width,
            capacity,
            len: 0,
            keys: vec![vec![0.0; capacity * kv_width]; config.layer_count],
            values: vec![vec![0.0; capacity * kv_width]; config.layer_count],
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

    /// Writes keys and values for positions `start..start + n` of `layer`.
    pub(crate) fn store(&mut self, layer: usize, start: usize, keys: &[f32], values: &[f32]) {
        let range = start * self.kv_width..start * self.kv_width + keys.len();
        self.keys[layer][range.clone()].copy_from_slice(keys);
        self.values[layer][range].copy_from_slice(values);
    }

    /// Keys and values of `layer` for positions `0..end`.
    pub(crate) fn layer(&self, layer: usize, end: usize) -> (&[f32], &[f32]) {
        let len = end * self.kv_width;
        (&self.keys[layer][..len], &self.values[layer][..len])
    }

    /// Marks positions up to `len` as stored (after every layer has stored them).
    pub(crate) fn set_len(&mut self, len: usize) {
        debug_assert!(len <= self.capacity);
        self.len = len;
    }
}
