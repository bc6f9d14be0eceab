//! The portable lookup kernel: the same integer sums and the same float operations, in the
//! same order, as the AVX2 kernel, so both give bit-identical results.
//!
//! It walks the packed bytes exactly as documented in [`super::packed`]: each nibble indexes a
//! 16-entry table, each plane's lookup is weighted by `2^plane`, the int sums of one activation
//! group are converted to f32 once and scaled (`fma(sum, s·half_scale, y)`, then
//! `fma(c, Σa, y)`).

use std::ops::Range;

use super::format::{flush_order, STEP_COLS, TILE_ROWS};
use super::packed::{block_centre, block_scale, PackedShape};
use super::table::ActivationTable;

/// Accumulates groups `groups` of one tile into `out` (32 values in flush order).
pub(crate) fn tile_kernel(
    tile: &[u8],
    shape: &PackedShape,
    table: &ActivationTable,
    groups: Range<usize>,
    out: &mut [f32; TILE_ROWS],
) {
    let bits = shape.bits.bits();
    let group = shape.group.get();
    let unit = table.group().get();
    let block_bytes = shape.block_bytes();
    let step_bytes = shape.bits.step_bytes();
    let steps_per_unit = unit / STEP_COLS;
    let order = flush_order(shape.bits);
    for g in groups {
        let block = &tile[g * block_bytes..(g + 1) * block_bytes];
        for u in 0..group / unit {
            let unit_index = g * group / unit + u;
            if table.zero_groups()[unit_index] {
                continue;
            }
            let mut sums = [0i32; TILE_ROWS];
            for step in 0..steps_per_unit {
                let data_start = (u * steps_per_unit + step) * step_bytes;
                let data = &block[data_start..data_start + step_bytes];
                let quad = (unit_index * unit + step * STEP_COLS) / 4;
                let table_a = &table.entries()[quad * 16..quad * 16 + 16];
                let table_b = &table.entries()[quad * 16 + 16..quad * 16 + 32];
                let lookup = |byte: u8| {
                    table_a[(byte & 15) as usize] as i32 + table_b[(byte >> 4) as usize] as i32
                };
                let mut chunk = 0;
                for pair in 0..bits / 2 {
                    for half in 0..2 {
                        for lane in 0..2 {
                            for i in 0..8 {
                                for e in 0..2 {
                                    let byte = data[32 * chunk + 16 * lane + 2 * i + e];
                                    let row = 16 * lane + 8 * half + i;
                                    sums[row] += lookup(byte) << (2 * pair + e);
                                }
                            }
                        }
                        chunk += 1;
                    }
                }
                if bits % 2 == 1 {
                    for lane in 0..2 {
                        for i in 0..16 {
                            let byte = data[32 * chunk + 16 * lane + i];
                            sums[16 * lane + i] += lookup(byte) << (bits - 1);
                        }
                    }
                }
            }
            let half_scale = table.half_scales()[unit_index];
            let activation_sum = table.sums()[unit_index];
            for (position, value) in out.iter_mut().enumerate() {
                let sum = sums[order[position] as usize] as f32;
                let scale = block_scale(block, position) * half_scale;
                *value = sum.mul_add(scale, *value);
                *value = block_centre(block, position).mul_add(activation_sum, *value);
            }
        }
    }
}
