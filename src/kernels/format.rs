//! The weight format the lookup kernels read: bit widths, group sizes, tiles and the order in
//! which a tile's 32 rows leave the integer accumulators.
//!
//! # Dequantization rule (the meaning of the stored numbers)
//!
//! Every group of `group` consecutive weights of one row stores an unsigned code `q` per weight
//! (`0 <= q < 2^bits`) and two fp16 numbers, a scale `s` and a centre `c`:
//!
//! ```text
//! w = s * (q - h) + c,   h = (2^bits - 1) / 2
//! ```
//!
//! `h` is the midpoint of the code range, so `q - h = ½ Σ_i 2^i (2·bit_i − 1)`: every bit-plane
//! enters with a ±1 sign, which is what lets one 16-entry table of `±a0 ±a1 ±a2 ±a3` serve every
//! plane (T-MAC §3.1, arXiv 2407.00088). A group then contributes
//! `s · ½ · Σ_i 2^i T_i + c · Σa` to a dot product, where `T_i` are table sums and `Σa` is the
//! group's activation sum, so the zero point costs one multiply-add per group and row.
//!
//! # Layout (see `docs/kernels.md` for the byte-level picture)
//!
//! Rows are cut into tiles of [`TILE_ROWS`] rows; the last tile is padded with zero rows. A
//! tile's data for one weight group is one contiguous *block*:
//! `group / 8` macro steps of `32 · bits` bytes (8 activations each), then 32 fp16 scales and 32
//! fp16 centres in [`flush_order`]. Blocks are stored tile-major (`tile * n_groups + group`),
//! so a thread streaming its tiles reads memory sequentially.

use super::error::KernelError;

/// Rows per tile: one AVX2 pass over a macro step produces 32 rows at once.
pub const TILE_ROWS: usize = 32;

/// Activations per macro step: two groups of four, one table each (lo and hi nibble).
pub const STEP_COLS: usize = 8;

/// Bytes of fp16 scale and centre data at the end of each block (32 scales + 32 centres).
pub const BLOCK_SCALE_BYTES: usize = TILE_ROWS * 2 * 2;

/// Bit width of the stored weight codes. Ternary weights are stored as [`WeightBits::B2`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WeightBits {
    B1,
    B2,
    B3,
    B4,
    B8,
}

impl WeightBits {
    pub const ALL: [WeightBits; 5] = [
        WeightBits::B1,
        WeightBits::B2,
        WeightBits::B3,
        WeightBits::B4,
        WeightBits::B8,
    ];

    /// Parses a bit count; anything but 1, 2, 3, 4 or 8 is an error.
    pub fn from_bits(bits: u32) -> Result<WeightBits, KernelError> {
        match bits {
            1 => Ok(WeightBits::B1),
            2 => Ok(WeightBits::B2),
            3 => Ok(WeightBits::B3),
            4 => Ok(WeightBits::B4),
            8 => Ok(WeightBits::B8),
            other => Err(KernelError::UnsupportedBits(other)),
        }
    }

    /// Number of bit-planes (= bits per weight code).
    pub fn bits(self) -> usize {
        match self {
            WeightBits::B1 => 1,
            WeightBits::B2 => 2,
            WeightBits::B3 => 3,
            WeightBits::B4 => 4,
            WeightBits::B8 => 8,
        }
    }

    /// Largest code, `2^bits - 1`.
    pub fn max_code(self) -> u32 {
        (1u32 << self.bits()) - 1
    }

    /// The code midpoint `h = (2^bits - 1) / 2` of the dequantization rule.
    pub fn code_midpoint(self) -> f32 {
        self.max_code() as f32 * 0.5
    }

    /// Bytes of one macro step (32 rows × 8 activations) of this width.
    pub fn step_bytes(self) -> usize {
        TILE_ROWS * STEP_COLS * self.bits() / 8
    }

    /// Whether the tile's int32 sums leave the accumulators in the "unpacked" order (widths with
    /// more than one int16 accumulator per row: 4 and 8 bits) or the "even/odd" order.
    pub(crate) fn uses_split_accumulators(self) -> bool {
        matches!(self, WeightBits::B4 | WeightBits::B8)
    }
}

/// Weights per group: each group of one row has its own fp16 scale and centre.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupSize(usize);

impl GroupSize {
    pub const G32: GroupSize = GroupSize(32);
    pub const G64: GroupSize = GroupSize(64);
    /// Divides SmolLM2's 576 and 1536 (as 32 and 64 do, 128 does not): 3 + 32/96 = 3.33 bits
    /// per weight at 3 bits, within llama.cpp's Q3_K (3.44).
    pub const G96: GroupSize = GroupSize(96);
    pub const G128: GroupSize = GroupSize(128);

    /// 32, 64, 96 or 128 (multiples of the 32 activations of a table or int8 block). Larger groups would let the int16 accumulators overflow at 3 bits
    /// (32 lookups × 7 × 127 = 28448 is the largest sum that still fits).
    pub fn new(size: usize) -> Result<GroupSize, KernelError> {
        match size {
            32 | 64 | 96 | 128 => Ok(GroupSize(size)),
            other => Err(KernelError::UnsupportedGroupSize(other)),
        }
    }

    pub fn get(self) -> usize {
        self.0
    }

    /// Checks that `cols` splits into whole groups.
    pub fn check_cols(self, what: &'static str, cols: usize) -> Result<usize, KernelError> {
        if cols == 0 || !cols.is_multiple_of(self.0) {
            return Err(KernelError::ColsNotMultipleOfGroup {
                what,
                cols,
                group: self.0,
            });
        }
        Ok(cols / self.0)
    }
}

/// Bytes of one block (one tile × one weight group): codes then scales and centres.
pub fn block_bytes(bits: WeightBits, group: GroupSize) -> usize {
    group.get() / STEP_COLS * bits.step_bytes() + BLOCK_SCALE_BYTES
}

/// Row (within its tile) of each of the 32 flush positions, in the order the AVX2 kernel
/// produces int32 sums: four vectors of eight lanes.
///
/// * even/odd order (1–3 bits): vector `2h` holds rows `16L + 8h + 2t`, vector `2h + 1` rows
///   `16L + 8h + 2t + 1`, for lane half `L` (0, 1) and `t` in 0..4;
/// * unpacked order (4 and 8 bits): vector `2h + u` holds rows `16L + 8h + 4u + t`.
pub fn flush_order(bits: WeightBits) -> [u8; TILE_ROWS] {
    let mut order = [0u8; TILE_ROWS];
    for (position, slot) in order.iter_mut().enumerate() {
        let vector = position / 8;
        let half = vector / 2; // h
        let second = vector % 2; // odd rows, or upper unpack half
        let lane = (position % 8) / 4; // L
        let t = position % 4;
        let row = if bits.uses_split_accumulators() {
            16 * lane + 8 * half + 4 * second + t
        } else {
            16 * lane + 8 * half + 2 * t + second
        };
        *slot = row as u8;
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_order_is_a_permutation_for_every_width() {
        for bits in WeightBits::ALL {
            let mut seen = [false; TILE_ROWS];
            for row in flush_order(bits) {
                assert!(!seen[row as usize], "{bits:?} repeats row {row}");
                seen[row as usize] = true;
            }
        }
    }

    #[test]
    fn unsupported_widths_and_groups_are_errors() {
        assert_eq!(
            WeightBits::from_bits(5),
            Err(KernelError::UnsupportedBits(5))
        );
        assert_eq!(
            WeightBits::from_bits(0),
            Err(KernelError::UnsupportedBits(0))
        );
        assert_eq!(
            GroupSize::new(256),
            Err(KernelError::UnsupportedGroupSize(256))
        );
        assert!(GroupSize::G128.check_cols("test", 576).is_err());
        assert_eq!(GroupSize::G64.check_cols("test", 576), Ok(9));
    }

    #[test]
    fn block_bytes_count_codes_and_scales() {
        // 32 rows × 128 weights × 2 bits = 1024 bytes, plus 128 bytes of fp16 scales/centres.
        assert_eq!(block_bytes(WeightBits::B2, GroupSize::G128), 1152);
        assert_eq!(
            block_bytes(WeightBits::B3, GroupSize::G32),
            32 * 32 * 3 / 8 + 128
        );
    }
}
