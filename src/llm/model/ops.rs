//! The element-wise and per-vector operations of a Llama block.

/// `out = x / rms(x) · weight`, with rms(x) = sqrt(mean(x²) + eps). The sum of squares is
/// accumulated in f64 so the norm does not depend on the width's rounding.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    debug_assert_eq!(x.len(), weight.len());
    debug_assert_eq!(x.len(), out.len());
    let mean_square = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / x.len() as f64;
    let scale = (1.0 / (mean_square + eps as f64).sqrt()) as f32;
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
        *o = v * scale * w;
    }
}

/// SiLU(x) = x · sigmoid(x).
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// Softmax in place, shifted by the maximum for range.
pub fn softmax(values: &mut [f32]) {
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for v in values.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inverse = 1.0 / sum;
    for v in values.iter_mut() {
        *v *= inverse;
    }
}

/// Which dimensions of a head RoPE rotates together; pair i turns by
/// `position · base^(−2i/rope_dim)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeLayout {
    /// Pairs (2i, 2i+1): llama.cpp's "normal" RoPE (`LLAMA_ROPE_TYPE_NORM`). GGUF Llama files
    /// are written for it: llama.cpp's converter permutes the rows of the Q and K projections
    /// of Hugging Face checkpoints so that the pairs become adjacent.
    Interleaved,
    /// Pairs (i, i + rope_dim/2): Hugging Face's `rotate_half`, GPT-NeoX style.
    Halves,
}

/// Rotary position embedding over the first `rope_dim` dimensions of each head.
#[derive(Clone, Debug)]
pub struct Rope {
    head_dim: usize,
    layout: RopeLayout,
    /// `base^(−2i/rope_dim)` for each pair i.
    inverse_frequencies: Vec<f64>,
}

impl Rope {
    pub fn new(head_dim: usize, rope_dim: usize, base: f32, layout: RopeLayout) -> Rope {
        let inverse_frequencies = (0..rope_dim / 2)
            .map(|i| (base as f64).powf(-2.0 * i as f64 / rope_dim as f64))
            .collect();
        Rope {
            head_dim,
            layout,
            inverse_frequencies,
        }
    }

    /// Rotates every head in `vector` (heads concatenated, `head_dim` each) for `position`.
    pub fn apply(&self, vector: &mut [f32], position: usize) {
        let mut rotations = vec![(0.0, 0.0); self.pairs()];
        self.rotations(position, &mut rotations);
        self.apply_rotations(vector, &rotations);
    }

    /// Dimension pairs rotated per head (`rope_dim / 2`).
    pub fn pairs(&self) -> usize {
        self.inverse_frequencies.len()
    }

    /// The (cos, sin) of each pair's angle at `position` into `out` (`pairs()` long), so that
    /// a forward call computes them once per token for all layers.
    pub fn rotations(&self, position: usize, out: &mut [(f32, f32)]) {
        for (slot, &f) in out.iter_mut().zip(&self.inverse_frequencies) {
            let angle = position as f64 * f;
            *slot = (angle.cos() as f32, angle.sin() as f32);
        }
    }

    /// Rotates every head in `vector` by precomputed [`Rope::rotations`].
    pub fn apply_rotations(&self, vector: &mut [f32], rotations: &[(f32, f32)]) {
        let half = rotations.len();
        for head in vector.chunks_exact_mut(self.head_dim) {
            for (i, &(cos, sin)) in rotations.iter().enumerate() {
                let (a, b) = match self.layout {
                    RopeLayout::Interleaved => (2 * i, 2 * i + 1),
                    RopeLayout::Halves => (i, i + half),
                };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * cos - x1 * sin;
                head[b] = x0 * sin + x1 * cos;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_of_a_constant_vector_is_the_weight() {
        let mut out = [0.0; 4];
        rms_norm(&[3.0; 4], &[1.0, 2.0, 3.0, 4.0], 0.0, &mut out);
        assert_eq!(out, [1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn silu_values() {
        assert_eq!(silu(0.0), 0.0);
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
        assert!((silu(-20.0)).abs() < 1e-7);
    }

    #[test]
    fn softmax_sums_to_one_and_survives_large_values() {
        let mut v = [1000.0, 1000.0, 999.0];
        softmax(&mut v);
        assert!((v.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(v[0], v[1]);
        assert!(v[2] < v[0]);
    }

    #[test]
    fn rope_rotates_adjacent_pairs_and_keeps_norms() {
        let rope = Rope::new(4, 4, 10_000.0, RopeLayout::Interleaved);
        let mut v = [1.0, 0.0, 1.0, 0.0, 0.0, 2.0, 0.0, 2.0];
        rope.apply(&mut v, 0);
        assert_eq!(v, [1.0, 0.0, 1.0, 0.0, 0.0, 2.0, 0.0, 2.0]);
        rope.apply(&mut v, 1);
        // Pair 0 turns by 1 radian, pair 1 by 10000^(-1/2) = 0.01 radian.
        assert!((v[0] - 1f32.cos()).abs() < 1e-6 && (v[1] - 1f32.sin()).abs() < 1e-6);
        assert!((v[2] - 0.01f32.cos()).abs() < 1e-6 && (v[3] - 0.01f32.sin()).abs() < 1e-6);
        assert!((v[4] + 2.0 * 1f32.sin()).abs() < 1e-6 && (v[5] - 2.0 * 1f32.cos()).abs() < 1e-6);
    }

    #[test]
    fn halves_layout_pairs_i_with_i_plus_half() {
        let rope = Rope::new(4, 4, 10_000.0, RopeLayout::Halves);
        let mut v = [1.0, 1.0, 0.0, 0.0];
        rope.apply(&mut v, 1);
        // Pair (0, 2) turns by 1 radian, pair (1, 3) by 0.01 radian.
        assert!((v[0] - 1f32.cos()).abs() < 1e-6 && (v[2] - 1f32.sin()).abs() < 1e-6);
        assert!((v[1] - 0.01f32.cos()).abs() < 1e-6 && (v[3] - 0.01f32.sin()).abs() < 1e-6);
    }

    #[test]
    fn rope_scores_depend_only_on_relative_position() {
        let rope = Rope::new(8, 8, 100_000.0, RopeLayout::Interleaved);
        let q: Vec<f32> = (0..8).map(|i| i as f32 * 0.3 - 1.0).collect();
        let k: Vec<f32> = (0..8).map(|i| 1.0 - i as f32 * 0.2).collect();
        let score = |pq: usize, pk: usize| {
            let (mut a, mut b) = (q.clone(), k.clone());
            rope.apply(&mut a, pq);
            rope.apply(&mut b, pk);
            a.iter().zip(&b).map(|(x, y)| x * y).sum::<f32>()
        };
        assert!((score(5, 2) - score(13, 10)).abs() < 1e-4);
    }
}
