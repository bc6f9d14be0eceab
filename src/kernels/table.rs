//! Activation tables: the 16-entry int8 lookup tables built once per activation vector and
//! shared by every matrix that reads it (Q/K/V, gate/up).
//!
//! For each group of four activations `(a0, a1, a2, a3)` entry `idx` is
//! `Σ_j (bit j of idx ? +a_j : −a_j)`, the ±1 convention of T-MAC (arXiv 2407.00088 §3.1).
//! Mirror consolidation: only the eight entries with bit 3 set are computed, the others are
//! their negations (`e[15 − idx] = −e[idx]`). Entries are quantized to int8 with one scale per
//! activation group: the group's largest `|a0|+|a1|+|a2|+|a3|` maps to 127, so every entry is
//! in −127..=127 and the kernels' int16 sums cannot overflow.
//!
//! Alongside the entries the table keeps, per activation group, half the table scale (the ½ of
//! `q − h = ½ Σ 2^i s_i` folded in), the exact f32 activation sum (for the centre term
//! `c·Σa`), and whether the group is all zeros (the kernels skip such groups, which is what
//! makes the column-sparse kernel cheap).

use super::error::KernelError;
use super::format::GroupSize;
use super::gemv::KernelPath;
use super::isa::Isa;

/// Lookup tables for one activation vector.
#[derive(Clone, Debug, PartialEq)]
pub struct ActivationTable {
    cols: usize,
    group: GroupSize,
    /// `cols/4` tables of 16 int8 entries, back to back.
    entries: Vec<i8>,
    /// Per activation group: table scale / 2 (one int8 step is worth `2·half_scale`).
    half_scales: Vec<f32>,
    /// Per activation group: sum of its activations (order: see [`summarize`]).
    sums: Vec<f32>,
    /// Per activation group: true when every activation is zero.
    zero_groups: Vec<bool>,
}

impl ActivationTable {
    /// Builds the tables for `x` with one int8 scale per `group` activations. A table can
    /// serve any matrix whose weight group size is a multiple of `group`.
    pub fn build(x: &[f32], group: GroupSize) -> Result<ActivationTable, KernelError> {
        let mut table = ActivationTable::empty(group);
        table.rebuild(x)?;
        Ok(table)
    }

    /// Builds the tables of `x` with every column not listed in `active_cols` set to zero:
    /// the input of the column-sparse kernel (down projection over active neurons).
    pub fn build_masked(
        x: &[f32],
        active_cols: &[usize],
        group: GroupSize,
    ) -> Result<ActivationTable, KernelError> {
        let mut masked = vec![0.0f32; x.len()];
        for &col in active_cols {
            let value = x.get(col).ok_or(KernelError::IndexOutOfRange {
                what: "active column",
                index: col,
                len: x.len(),
            })?;
            masked[col] = *value;
        }
        ActivationTable::build(&masked, group)
    }

    /// A table with no columns; fill it with [`ActivationTable::rebuild`].
    pub fn empty(group: GroupSize) -> ActivationTable {
        ActivationTable {
            cols: 0,
            group,
            entries: Vec::new(),
            half_scales: Vec::new(),
            sums: Vec::new(),
            zero_groups: Vec::new(),
        }
    }

    /// Rebuilds the tables in place for a new activation vector (no allocation when the length
    /// is unchanged). Uses AVX2 when the CPU has it; the result is bit-identical either way.
    pub fn rebuild(&mut self, x: &[f32]) -> Result<(), KernelError> {
        self.rebuild_with(x, KernelPath::Auto)
    }

    /// [`ActivationTable::rebuild`] on a chosen path (the scalar path exists on every CPU).
    pub fn rebuild_with(&mut self, x: &[f32], path: KernelPath) -> Result<(), KernelError> {
        let group = self.group.get();
        let groups = self.group.check_cols("activation vector", x.len())?;
        // A branch-free pass the compiler vectorizes; the index is looked up only on failure.
        if !x.iter().fold(true, |finite, a| finite & a.is_finite()) {
            let index = x.iter().position(|a| !a.is_finite()).unwrap_or(0);
            return Err(KernelError::NonFinite {
                what: "activation vector",
                index,
                value: x[index],
            });
        }
        let isa = path.resolve()?;
        self.cols = x.len();
        self.entries.resize(x.len() * 4, 0);
        self.half_scales.resize(groups, 0.0);
        self.sums.resize(groups, 0.0);
        self.zero_groups.resize(groups, false);
        for (g, activations) in x.chunks_exact(group).enumerate() {
            let first = g * group * 4;
            let out = &mut self.entries[first..first + group * 4];
            let (largest, sum) = if isa != Isa::Scalar {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `resolve` checked that the CPU has `isa` (AVX2 at least);
                // `activations` has `group` (a multiple of 8) values and `out` has four bytes
                // per activation.
                unsafe {
                    let summary = super::table_avx2::summarize(activations);
                    let inverse = inverse_of(summary.0);
                    if isa >= Isa::Avx512 {
                        super::table_avx2::fill_avx512(activations, inverse, out);
                    } else {
                        super::table_avx2::fill(activations, inverse, out);
                    }
                    summary
                }
                #[cfg(not(target_arch = "x86_64"))]
                unreachable!("only the scalar level is detected off x86-64")
            } else {
                let summary = summarize(activations);
                let inverse = inverse_of(summary.0);
                for (a, entries) in activations.chunks_exact(4).zip(out.chunks_exact_mut(16)) {
                    fill_entries(a, inverse, entries);
                }
                summary
            };
            if !largest.is_finite() || !sum.is_finite() {
                // Activations near f32::MAX: a sum of them overflows and no int8 scale can
                // represent the group.
                return Err(KernelError::NonFinite {
                    what: "activation group sum (overflows f32)",
                    index: g * group,
                    value: if largest.is_finite() { sum } else { largest },
                });
            }
            self.sums[g] = sum;
            // The largest |a0|+|a1|+|a2|+|a3| is zero exactly when every activation is.
            self.zero_groups[g] = largest == 0.0;
            self.half_scales[g] = largest / 127.0 * 0.5;
        }
        Ok(())
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Activations per table scale.
    pub fn group(&self) -> GroupSize {
        self.group
    }

    pub fn entries(&self) -> &[i8] {
        &self.entries
    }

    pub fn half_scales(&self) -> &[f32] {
        &self.half_scales
    }

    pub fn sums(&self) -> &[f32] {
        &self.sums
    }

    pub fn zero_groups(&self) -> &[bool] {
        &self.zero_groups
    }

    /// The table's exact (unquantized) entry `idx` for the four activations starting at
    /// `4·quad`, recomputed from the quantized value: `entry · 2 · half_scale`.
    pub fn dequantized_entry(&self, quad: usize, idx: usize) -> f32 {
        let g = quad * 4 / self.group.get();
        self.entries[quad * 16 + idx] as f32 * 2.0 * self.half_scales[g]
    }
}

/// The factor that maps the group's largest entry magnitude to 127 (0 for an all-zero group).
fn inverse_of(largest: f32) -> f32 {
    if largest > 0.0 {
        127.0 / largest
    } else {
        0.0
    }
}

/// Largest `(|a0|+|a1|) + (|a2|+|a3|)` over the group's fours, and the group's activation sum
/// in the order the AVX2 path uses: eight lane sums (`lane[l] += x[8j + l]`) reduced as
/// `((l0+l1)+(l2+l3)) + ((l4+l5)+(l6+l7))`.
pub(crate) fn summarize(activations: &[f32]) -> (f32, f32) {
    let mut largest = 0.0f32;
    let mut lanes = [0.0f32; 8];
    for eight in activations.chunks_exact(8) {
        for (lane, a) in lanes.iter_mut().zip(eight) {
            *lane += a;
        }
        for a in eight.chunks_exact(4) {
            let magnitude = (a[0].abs() + a[1].abs()) + (a[2].abs() + a[3].abs());
            largest = largest.max(magnitude);
        }
    }
    (largest, reduce_lanes(&lanes))
}

/// The fixed reduction tree both paths use for the activation sum.
pub(crate) fn reduce_lanes(lanes: &[f32; 8]) -> f32 {
    ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))
        + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))
}

/// Writes the 16 quantized entries for one group of four activations. The eight entries with
/// bit 3 set are computed as `(±a0 ± a1) + (±a2 + a3)` (the association of the magnitude, so
/// no entry exceeds it); the rest are their mirror negations.
fn fill_entries(a: &[f32], inverse: f32, entries: &mut [i8]) {
    for i in 0..8 {
        let pick = |bit: usize, value: f32| if (i >> bit) & 1 == 1 { value } else { -value };
        let entry = (pick(0, a[0]) + pick(1, a[1])) + (pick(2, a[2]) + a[3]);
        let q = (entry * inverse).round_ties_even() as i8;
        entries[8 + i] = q;
        entries[7 - i] = -q;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_signed_sums_of_four_activations() {
        let mut x = vec![0.0f32; 32];
        x[..4].copy_from_slice(&[1.0, 2.0, 4.0, 8.0]);
        let table = ActivationTable::build(&x, GroupSize::G32).unwrap();
        // Largest |a0|+..+|a3| = 15 maps to 127, so one step is 15/127.
        let step = 15.0 / 127.0;
        for idx in 0..16 {
            let exact: f32 = (0..4)
                .map(|j| if (idx >> j) & 1 == 1 { x[j] } else { -x[j] })
                .sum();
            let got = table.dequantized_entry(0, idx);
            assert!(
                (got - exact).abs() <= step / 2.0 + 1e-6,
                "idx {idx}: {got} vs {exact}"
            );
        }
        assert_eq!(table.entries()[15], 127);
        assert_eq!(table.entries()[0], -127);
        assert_eq!(table.sums()[0], 15.0);
        assert!(!table.zero_groups()[0]);
    }

    #[test]
    fn every_path_builds_the_scalar_tables_bit_for_bit() {
        let x: Vec<f32> = (0..768)
            .map(|i| {
                ((i * 7919 % 1013) as f32 - 506.0) * 0.013 * if i % 61 == 0 { 40.0 } else { 1.0 }
            })
            .collect();
        for (group, path) in [
            GroupSize::G32,
            GroupSize::G64,
            GroupSize::G96,
            GroupSize::G128,
        ]
        .into_iter()
        .flat_map(|g| KernelPath::available().into_iter().map(move |p| (g, p)))
        {
            let mut fast = ActivationTable::empty(group);
            fast.rebuild_with(&x, path).unwrap();
            let mut slow = ActivationTable::empty(group);
            slow.rebuild_with(&x, KernelPath::Scalar).unwrap();
            assert_eq!(fast.entries(), slow.entries());
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(fast.sums()), bits(slow.sums()));
            assert_eq!(bits(fast.half_scales()), bits(slow.half_scales()));
            assert_eq!(fast.zero_groups(), slow.zero_groups());
        }
    }

    #[test]
    fn mirror_entries_are_negations() {
        let x: Vec<f32> = (0..64)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.25)
            .collect();
        let table = ActivationTable::build(&x, GroupSize::G32).unwrap();
        for quad in 0..16 {
            for idx in 0..16 {
                assert_eq!(
                    table.entries()[quad * 16 + idx],
                    -table.entries()[quad * 16 + 15 - idx]
                );
            }
        }
    }

    #[test]
    fn masked_table_zeroes_inactive_groups_and_checks_indices() {
        let x = vec![1.0f32; 96];
        let table = ActivationTable::build_masked(&x, &[3, 70], GroupSize::G32).unwrap();
        assert_eq!(table.zero_groups(), &[false, true, false]);
        assert_eq!(table.sums(), &[1.0, 0.0, 1.0]);
        assert_eq!(table.half_scales()[1], 0.0);
        assert!(matches!(
            ActivationTable::build_masked(&x, &[96], GroupSize::G32),
            Err(KernelError::IndexOutOfRange { index: 96, .. })
        ));
        assert!(matches!(
            ActivationTable::build(&x[..40], GroupSize::G32),
            Err(KernelError::ColsNotMultipleOfGroup { .. })
        ));
        let mut huge = x.clone();
        huge[33..36].copy_from_slice(&[f32::MAX, f32::MAX, -f32::MAX]);
        assert!(matches!(
            ActivationTable::build(&huge, GroupSize::G32),
            Err(KernelError::NonFinite { index: 32, .. })
        ));
        let mut bad = x.clone();
        bad[5] = f32::INFINITY;
        assert!(matches!(
            ActivationTable::build(&bad, GroupSize::G32),
            Err(KernelError::NonFinite { index: 5, .. })
        ));
    }
}
