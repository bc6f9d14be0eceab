//! Byte matrices: codes stored one per byte, the layout the dot-product kernels
//! ([`super::dot`]) read with `vpdpbusd` (16 rows × 4 columns of codes per 64-byte load).
//!
//! The numbers are the same as in a [`QuantizedMatrix`]: per group of one row an fp16 scale
//! `s` and centre `c`, `w = s·(q − h) + c` with `h = (2^bits − 1)/2`. Only the arrangement
//! differs from the lookup layout ([`super::PackedMatrix`]): bit-planes serve table lookups,
//! whose cost grows with the bit width; whole bytes serve 8-bit dot products, whose cost does
//! not. At 8 bits and group 32 both layouts take 9 bits per weight.
//!
//! # Layout
//!
//! Rows are cut into tiles of [`DOT_TILE_ROWS`] = 16 (the last padded with zero codes and zero
//! scales). A *block* is one tile × one weight group: `group/4` steps of 64 bytes, step `k`
//! holding columns `4k..4k+4` with byte `4r + j` = the code of row `r`, column `4k + j`; then
//! 16 fp16 scales and 16 fp16 centres in row order (64 bytes). Blocks are tile-major
//! (`tile · groups + group`), so a run of tiles is a contiguous slice.

use super::error::KernelError;
use super::f16::f16_to_f32;
use super::format::{GroupSize, WeightBits};
use super::quantize::QuantizedMatrix;

/// Rows per tile: the 16 int32 lanes of one 512-bit accumulator.
pub const DOT_TILE_ROWS: usize = 16;

/// Columns per 64-byte step.
pub const DOT_STEP_COLS: usize = 4;

/// Bytes of fp16 scales and centres at the end of a block.
pub const DOT_SCALE_BYTES: usize = DOT_TILE_ROWS * 2 * 2;

/// Shape and format of a byte matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteShape {
    pub rows: usize,
    pub cols: usize,
    pub bits: WeightBits,
    pub group: GroupSize,
}

impl ByteShape {
    pub fn tiles(&self) -> usize {
        self.rows.div_ceil(DOT_TILE_ROWS)
    }

    pub fn groups_per_row(&self) -> usize {
        self.cols / self.group.get()
    }

    pub fn block_bytes(&self) -> usize {
        DOT_TILE_ROWS * self.group.get() + DOT_SCALE_BYTES
    }

    pub fn tile_bytes(&self) -> usize {
        self.groups_per_row() * self.block_bytes()
    }

    pub fn payload_bytes(&self) -> usize {
        self.tiles() * self.tile_bytes()
    }
}

/// A byte matrix that owns its payload.
#[derive(Clone, Debug, PartialEq)]
pub struct ByteMatrix {
    shape: ByteShape,
    payload: Vec<u8>,
}

impl ByteMatrix {
    /// Arranges a quantized matrix's codes, scales and centres in the byte layout.
    pub fn pack(matrix: &QuantizedMatrix) -> ByteMatrix {
        let shape = ByteShape {
            rows: matrix.rows(),
            cols: matrix.cols(),
            bits: matrix.bits(),
            group: matrix.group(),
        };
        let group = shape.group.get();
        let mut payload = vec![0u8; shape.payload_bytes()];
        for (index, block) in payload.chunks_exact_mut(shape.block_bytes()).enumerate() {
            let tile = index / shape.groups_per_row();
            let g = index % shape.groups_per_row();
            let (codes, scales) = block.split_at_mut(DOT_TILE_ROWS * group);
            for r in 0..DOT_TILE_ROWS {
                let row = tile * DOT_TILE_ROWS + r;
                if row >= shape.rows {
                    break;
                }
                for c in 0..group {
                    let step = c / DOT_STEP_COLS;
                    codes[step * 64 + 4 * r + c % DOT_STEP_COLS] = matrix.code(row, g * group + c);
                }
                scales[2 * r..2 * r + 2].copy_from_slice(&matrix.scale_bits(row, g).to_le_bytes());
                let centre = 2 * DOT_TILE_ROWS + 2 * r;
                scales[centre..centre + 2]
                    .copy_from_slice(&matrix.centre_bits(row, g).to_le_bytes());
            }
        }
        ByteMatrix { shape, payload }
    }

    pub fn shape(&self) -> ByteShape {
        self.shape
    }

    pub fn view(&self) -> ByteView<'_> {
        ByteView {
            shape: self.shape,
            payload: &self.payload,
        }
    }

    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
}

/// A borrowed byte matrix.
#[derive(Clone, Copy, Debug)]
pub struct ByteView<'a> {
    shape: ByteShape,
    payload: &'a [u8],
}

impl<'a> ByteView<'a> {
    /// Views a payload whose shape is known (`payload` may be longer; the tail is ignored).
    pub fn from_payload(shape: ByteShape, payload: &'a [u8]) -> Result<ByteView<'a>, KernelError> {
        shape.group.check_cols("byte matrix", shape.cols)?;
        if shape.rows == 0 {
            return Err(KernelError::ShapeMismatch {
                what: "byte matrix rows (must be at least 1)",
                expected: 1,
                actual: 0,
            });
        }
        if payload.len() < shape.payload_bytes() {
            return Err(KernelError::BufferLength {
                what: "byte matrix payload",
                expected: shape.payload_bytes(),
                actual: payload.len(),
            });
        }
        Ok(ByteView {
            shape,
            payload: &payload[..shape.payload_bytes()],
        })
    }

    pub fn shape(&self) -> ByteShape {
        self.shape
    }

    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// The bytes of tiles `tiles`.
    pub(crate) fn tiles(&self, tiles: std::ops::Range<usize>) -> &'a [u8] {
        let tile_bytes = self.shape.tile_bytes();
        &self.payload[tiles.start * tile_bytes..tiles.end * tile_bytes]
    }

    /// The weight (row, col) as stored, for tests: `s·(q − h) + c` in f64.
    pub fn weight_f64(&self, row: usize, col: usize) -> f64 {
        let group = self.shape.group.get();
        let block = &self.tiles(row / DOT_TILE_ROWS..row / DOT_TILE_ROWS + 1)
            [(col / group) * self.shape.block_bytes()..][..self.shape.block_bytes()];
        let r = row % DOT_TILE_ROWS;
        let c = col % group;
        let code = block[(c / DOT_STEP_COLS) * 64 + 4 * r + c % DOT_STEP_COLS];
        let scales = &block[DOT_TILE_ROWS * group..];
        let scale = f16_to_f32(u16::from_le_bytes([scales[2 * r], scales[2 * r + 1]])) as f64;
        let at = 2 * DOT_TILE_ROWS + 2 * r;
        let centre = f16_to_f32(u16::from_le_bytes([scales[at], scales[at + 1]])) as f64;
        scale * (code as f64 - self.shape.bits.code_midpoint() as f64) + centre
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_keeps_every_weight() {
        let (rows, cols) = (37, 96);
        let weights: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
            .collect();
        let q =
            QuantizedMatrix::quantize_min_max(&weights, rows, cols, WeightBits::B8, GroupSize::G32)
                .unwrap();
        let bytes = ByteMatrix::pack(&q);
        assert_eq!(bytes.shape().tiles(), 3);
        assert_eq!(bytes.payload().len(), 3 * 3 * (16 * 32 + 64));
        let view = bytes.view();
        for row in 0..rows {
            for col in 0..cols {
                assert_eq!(
                    view.weight_f64(row, col),
                    q.weight_f64(row, col),
                    "({row}, {col})"
                );
            }
        }
        assert!(ByteView::from_payload(bytes.shape(), &bytes.payload()[1..]).is_err());
    }
}
