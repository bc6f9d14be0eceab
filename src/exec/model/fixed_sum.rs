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

/// `p` on the fixed-point grid, rounded half away from zero (for any finite value).
#[inline(always)]
fn to_fixed(p: f32) -> i64 {
    let y = p as f64 * SCALE;
    (y + 0.5f64.copysign(y)) as i64
}

/// 1.5·2⁵²: adding it to an f64 below 2⁵¹ in magnitude leaves the value, rounded to the
/// nearest integer (ties to even), in the low bits of the sum's mantissa.
const MAGIC: f64 = 6_755_399_441_055_744.0;
/// Parts below this magnitude take the fast conversion (|p|·2³² < 2⁵¹).
const FAST_LIMIT: f32 = (1u32 << 18) as f32;

/// The same grid as [`to_fixed`] but rounded ties-to-even, in a form the compiler vectorizes
/// (no float-to-integer instruction: an add and an integer subtract). A prefill's FFN parts
/// are tens of thousands of values per cluster, and the scalar conversion dominated.
#[inline(always)]
fn to_fixed_fast(p: f32) -> i64 {
    ((p as f64 * SCALE + MAGIC).to_bits() as i64).wrapping_sub(MAGIC.to_bits() as i64)
}

#[inline(always)]
fn add_part(values: &mut [i64], part: &[f32]) {
    let max = part.iter().fold(0.0f32, |m, p| m.max(p.abs()));
    if max < FAST_LIMIT {
        for (v, &p) in values.iter_mut().zip(part) {
            *v = v.wrapping_add(to_fixed_fast(p));
        }
    } else {
        // Huge or non-finite parts: rare, exact, slow.
        for (v, &p) in values.iter_mut().zip(part) {
            *v = v.wrapping_add(to_fixed(p));
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn add_part_avx2(values: &mut [i64], part: &[f32]) {
    add_part(values, part)
}

/// [`add_part`] in the AVX2 build where the CPU has it (same operations, same bits).
fn add_part_best(values: &mut [i64], part: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { add_part_avx2(values, part) };
    }
    add_part(values, part)
}

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

    /// Adds `rows` (each `width` values) into the rows `at` of the sum (a part that touches
    /// only some tokens of a pass).
    pub fn add_rows(&mut self, at: &[usize], rows: &[f32], width: usize) {
        for (&row, part) in at.iter().zip(rows.chunks_exact(width)) {
            add_part_best(&mut self.values[row * width..(row + 1) * width], part);
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
                s.add_rows(&[0], &parts[i], 16);
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
        // Huge values take the exact path and still sum.
        let mut big = FixedSum::zeros(2);
        big.add_rows(&[0], &[3.0e6, -1.5], 2);
        big.add_rows(&[0], &[1.0e6, 0.25], 2);
        let mut out = vec![0.0; 2];
        big.to_f32(&mut out);
        assert_eq!(out, vec![4.0e6, -1.25]);
        // And it is the sum, up to the grid.
        for j in 0..16 {
            let exact: f64 = parts.iter().map(|p| p[j] as f64).sum();
            assert!((a[j] as f64 - exact).abs() < 1e-5, "{} vs {exact}", a[j]);
        }
    }
}
