//! An order-independent sum of f32 vectors, so a layer's FFN output does not depend on the
//! order in which its clusters' compute ops finish.
//!
//! The executor runs a layer's cluster ops as the plan and its threads allow, and a policy
//! decides which clusters are hits and which load first; float addition is not associative,
//! so summing their parts in completion order would make the output depend on timing. Each
//! part is rounded to a fixed-point integer (2⁻³² resolution: far below an f32 ulp at the
//! magnitudes of a hidden state) and integers add associatively: every order gives the same
//! bits, and the in-memory run that checks the offloaded one gets them too.

/// Fixed-point units per 1.0.
const SCALE: f64 = (1u64 << 32) as f64;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FixedSum {
    values: Vec<i64>,
}

impl FixedSum {
    /// A zero sum of `len` values.
    pub fn zeros(len: usize) -> FixedSum {
        FixedSum {
            values: vec![0; len],
        }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Adds `part` (same length), each value rounded to the fixed-point grid.
    pub fn add(&mut self, part: &[f32]) {
        debug_assert_eq!(part.len(), self.values.len());
        for (v, &p) in self.values.iter_mut().zip(part) {
            *v = v.wrapping_add((p as f64 * SCALE).round() as i64);
        }
    }

    /// The sum as f32 values.
    pub fn to_f32(&self, out: &mut [f32]) {
        for (o, &v) in out.iter_mut().zip(&self.values) {
            *o = (v as f64 / SCALE) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_order_gives_the_same_bits() {
        let parts: Vec<Vec<f32>> = (0..20)
            .map(|i| {
                (0..16)
                    .map(|j| ((i * 31 + j * 17) % 97) as f32 * 0.137 - 6.0 + 1e-3 * i as f32)
                    .collect()
            })
            .collect();
        let sum = |order: &[usize]| {
            let mut s = FixedSum::zeros(16);
            for &i in order {
                s.add(&parts[i]);
            }
            let mut out = vec![0.0; 16];
            s.to_f32(&mut out);
            out
        };
        let forward: Vec<usize> = (0..20).collect();
        let backward: Vec<usize> = (0..20).rev().collect();
        let shuffled: Vec<usize> = (0..20).map(|i| (i * 7) % 20).collect();
        let a = sum(&forward);
        assert_eq!(a, sum(&backward));
        assert_eq!(a, sum(&shuffled));
        // And it is the sum, up to the grid.
        for j in 0..16 {
            let exact: f64 = parts.iter().map(|p| p[j] as f64).sum();
            assert!((a[j] as f64 - exact).abs() < 1e-5, "{} vs {exact}", a[j]);
        }
    }
}
