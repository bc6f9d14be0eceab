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

/// Lookup tables for one activation vector.
#[derive(Clone, Debug, PartialEq)]
pub struct ActivationTable {
    cols: usize,
    group: GroupSize,
    /// `cols/4` tables of 16 int8 entries, back to back.
    entries: Vec<i8>,
    /// Per activation group: table scale / 2 (one int8 step is worth `2·half_scale`).
    half_scales: Vec<f32>,
    /// Per activation group: sum of its activations, computed as
    /// `Σ_groups-of-4 (((a0 + a1) + a2) + a3)` in order.
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
    /// is unchanged).
    pub fn rebuild(&mut self, x: &[f32]) -> Result<(), KernelError> {
        let group = self.group.get();
        let groups = self.group.check_cols("activation vector", x.len())?;
        if let Some(index) = x.iter().position(|a| !a.is_finite()) {
            return Err(KernelError::NonFinite {
                what: "activation vector",
                index,
                value: x[index],
            });
        }
        self.cols = x.len();
        self.entries.resize(x.len() * 4, 0);
        self.half_scales.resize(groups, 0.0);
        self.sums.resize(groups, 0.0);
        self.zero_groups.resize(groups, false);
        for (g, activations) in x.chunks_exact(group).enumerate() {
            let mut largest = 0.0f32;
            let mut sum = 0.0f32;
            for a in activations.chunks_exact(4) {
                let magnitude = ((a[0].abs() + a[1].abs()) + a[2].abs()) + a[3].abs();
                largest = largest.max(magnitude);
                sum += ((a[0] + a[1]) + a[2]) + a[3];
            }
            self.sums[g] = sum;
            self.zero_groups[g] = activations.iter().all(|&a| a == 0.0);
            let scale = largest / 127.0;
            self.half_scales[g] = scale * 0.5;
            let inverse = if largest > 0.0 { 127.0 / largest } else { 0.0 };
            let first = g * group * 4;
            let out = &mut self.entries[first..first + group * 4];
            for (a, entries) in activations.chunks_exact(4).zip(out.chunks_exact_mut(16)) {
                fill_entries(a, inverse, entries);
            }
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

/// Writes the 16 quantized entries for one group of four activations. The eight entries with
/// bit 3 set are computed as `((±a0 ± a1) ± a2) + a3`; the rest are their mirror negations.
fn fill_entries(a: &[f32], inverse: f32, entries: &mut [i8]) {
    for i in 0..8 {
        let pick = |bit: usize, value: f32| if (i >> bit) & 1 == 1 { value } else { -value };
        let entry = ((pick(0, a[0]) + pick(1, a[1])) + pick(2, a[2])) + a[3];
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
        assert!(matches!(
            ActivationTable::build_masked(&x, &[96], GroupSize::G32),
            Err(KernelError::IndexOutOfRange { index: 96, .. })
        ));
        assert!(matches!(
            ActivationTable::build(&x[..40], GroupSize::G32),
            Err(KernelError::ColsNotMultipleOfGroup { .. })
        ));
        let mut bad = x.clone();
        bad[5] = f32::INFINITY;
        assert!(matches!(
            ActivationTable::build(&bad, GroupSize::G32),
            Err(KernelError::NonFinite { index: 5, .. })
        ));
    }
}
