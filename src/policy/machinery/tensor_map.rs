//! Hash maps keyed by [`TensorRef`] with a fixed, fast hasher.
//!
//! The standard `HashMap` hashes with SipHash-1-3 under a random per-process key: resistant to
//! hash flooding, but a TensorRef key (a layer and a small enum, about 12 bytes) costs ~20 ns
//! to hash, and the caches look keys up several times per op. Keys here come from the model's
//! geometry and the trace, not from an adversary, so [`TensorHasher`] multiplies and rotates
//! each written word (the FxHash scheme used inside rustc), which is a few cycles.
//!
//! **Only for maps whose iteration order never reaches a plan or a report**: lookups, inserts
//! and removals only. The hasher has no random key, so even iteration would be deterministic,
//! but it would still depend on the hash function and the map's growth history; a map whose
//! entries are walked in an order that matters is a `BTreeMap` or a slab instead.

use crate::model::TensorRef;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` from tensors, hashed by [`TensorHasher`]. Create with `TensorMap::default()`.
pub type TensorMap<V> = HashMap<TensorRef, V, BuildHasherDefault<TensorHasher>>;

/// A `HashSet` of tensors, hashed by [`TensorHasher`]. Create with `TensorSet::default()`.
pub type TensorSet = HashSet<TensorRef, BuildHasherDefault<TensorHasher>>;

/// FxHash: `h = (h.rotl(5) ^ word) · K` per written word. Not keyed, not flood-resistant.
#[derive(Clone, Copy, Debug, Default)]
pub struct TensorHasher {
    hash: u64,
}

/// The multiplier of rustc's FxHasher (an odd constant with well-mixed bits).
const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl TensorHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl Hasher for TensorHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8-byte chunk")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn write_isize(&mut self, i: isize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{TensorKind, DENSE_FFN};
    use std::hash::BuildHasher;

    fn hash(t: &TensorRef) -> u64 {
        BuildHasherDefault::<TensorHasher>::default().hash_one(t)
    }

    #[test]
    fn equal_keys_hash_equal_and_neighbours_apart() {
        let a = TensorRef::expert(3, 5);
        assert_eq!(hash(&a), hash(&TensorRef::expert(3, 5)));
        // Keys that differ in one field (layer, expert, neuron run, kind) hash differently.
        let neurons = |layer, first| {
            TensorRef::new(
                layer,
                TensorKind::Neurons {
                    expert: DENSE_FFN,
                    first,
                    count: 1,
                },
            )
        };
        let keys = [
            a,
            TensorRef::expert(4, 5),
            TensorRef::expert(3, 6),
            TensorRef::new(3, TensorKind::Router),
            neurons(3, 5),
            neurons(3, 6),
            neurons(4, 5),
        ];
        let mut hashes: Vec<u64> = keys.iter().map(hash).collect();
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), keys.len());
    }

    #[test]
    fn a_map_of_many_neuron_runs_finds_every_key() {
        let mut m = TensorMap::default();
        let key = |layer: u32, first: u32| {
            TensorRef::new(
                layer,
                TensorKind::Neurons {
                    expert: DENSE_FFN,
                    first,
                    count: 1,
                },
            )
        };
        for layer in 0..24 {
            for first in 0..2048 {
                m.insert(key(layer, first), layer * 10_000 + first);
            }
        }
        assert_eq!(m.len(), 24 * 2048);
        assert_eq!(m.get(&key(17, 1234)), Some(&171_234));
        assert_eq!(m.remove(&key(0, 0)), Some(0));
        assert!(!m.contains_key(&key(0, 0)));
        let mut s = TensorSet::default();
        assert!(s.insert(key(1, 2)) && !s.insert(key(1, 2)));
    }
}
