//! Packed matrices: the byte layout the lookup kernels read, its serialization, and a
//! zero-copy view over bytes read back from a file.
//!
//! # Serialized form (stable, little-endian)
//!
//! ```text
//! offset size field
//!      0    8 magic "EDGLUT01"
//!      8    4 version (1)
//!     12    4 bits (1, 2, 3, 4, 8)
//!     16    4 group size (32, 64, 128)
//!     20    4 tile rows (32)
//!     24    8 rows M
//!     32    8 cols K
//!     40    8 payload bytes = ceil(M/32) · (K/group) · block_bytes
//!     48    4 CRC-32 of the payload
//!     52   12 reserved, zero
//!     64    … payload: blocks, tile-major
//! ```
//!
//! The header is 64 bytes so a payload read into a 64-byte-aligned buffer stays aligned. Each
//! block (one tile of 32 rows × one weight group) is `group/8` macro steps of `32·bits` bytes
//! followed by 32 fp16 scales and 32 fp16 centres in [`flush_order`]. Within a macro step
//! (activations `k..k+8`, table A for `k..k+4`, table B for `k+4..k+8`):
//!
//! * for each plane pair `j` (planes `2j`, `2j+1`) two 32-byte chunks `h = 0, 1`: byte
//!   `16L + 2i + e` holds row `16L + 8h + i`, plane `2j + e`, with the 4-bit index for table A
//!   in the low nibble and for table B in the high nibble;
//! * if `bits` is odd, one 32-byte chunk for the last plane: byte `16L + i` holds row `16L + i`.
//!
//! A 4-bit index's bit `j` is the plane bit of the weight at column `k + j` (A) or `k + 4 + j`
//! (B).

use super::error::KernelError;
use super::f16::f16_to_f32;
use super::format::{
    block_bytes, flush_order, GroupSize, WeightBits, BLOCK_SCALE_BYTES, STEP_COLS, TILE_ROWS,
};
use super::quantize::QuantizedMatrix;

/// Bytes of the serialized header.
pub const HEADER_BYTES: usize = 64;
const MAGIC: &[u8; 8] = b"EDGLUT01";
const VERSION: u32 = 1;

/// Shape and format of a packed matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackedShape {
    pub rows: usize,
    pub cols: usize,
    pub bits: WeightBits,
    pub group: GroupSize,
}

impl PackedShape {
    /// Validates a shape (K a multiple of the group size, at least one row).
    pub fn new(
        rows: usize,
        cols: usize,
        bits: WeightBits,
        group: GroupSize,
    ) -> Result<PackedShape, KernelError> {
        group.check_cols("packed matrix", cols)?;
        if rows == 0 {
            return Err(KernelError::ShapeMismatch {
                what: "packed matrix rows (must be at least 1)",
                expected: 1,
                actual: 0,
            });
        }
        Ok(PackedShape {
            rows,
            cols,
            bits,
            group,
        })
    }

    pub fn tiles(&self) -> usize {
        self.rows.div_ceil(TILE_ROWS)
    }

    pub fn groups_per_row(&self) -> usize {
        self.cols / self.group.get()
    }

    pub fn block_bytes(&self) -> usize {
        block_bytes(self.bits, self.group)
    }

    /// Bytes of one tile (all groups of 32 rows).
    pub fn tile_bytes(&self) -> usize {
        self.groups_per_row() * self.block_bytes()
    }

    pub fn payload_bytes(&self) -> usize {
        self.tiles() * self.tile_bytes()
    }

    /// Bytes of header plus payload.
    pub fn serialized_bytes(&self) -> usize {
        HEADER_BYTES + self.payload_bytes()
    }
}

/// A packed matrix that owns its payload.
#[derive(Clone, Debug, PartialEq)]
pub struct PackedMatrix {
    shape: PackedShape,
    payload: Vec<u8>,
}

impl PackedMatrix {
    /// Packs a quantized matrix into the lookup layout (rows padded to whole tiles with zero
    /// weights).
    pub fn pack(matrix: &QuantizedMatrix) -> PackedMatrix {
        let shape = PackedShape {
            rows: matrix.rows(),
            cols: matrix.cols(),
            bits: matrix.bits(),
            group: matrix.group(),
        };
        let mut payload = vec![0u8; shape.payload_bytes()];
        for (index, block) in payload.chunks_exact_mut(shape.block_bytes()).enumerate() {
            let tile = index / shape.groups_per_row();
            let group_index = index % shape.groups_per_row();
            pack_block(matrix, &shape, tile, group_index, block);
        }
        PackedMatrix { shape, payload }
    }

    pub fn shape(&self) -> PackedShape {
        self.shape
    }

    pub fn view(&self) -> PackedView<'_> {
        PackedView {
            shape: self.shape,
            payload: &self.payload,
            header_checksum: None,
        }
    }

    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Bytes [`PackedMatrix::write_to`] writes.
    pub fn serialized_bytes(&self) -> usize {
        self.shape.serialized_bytes()
    }

    /// Writes header and payload into the start of `out`; returns the bytes written.
    pub fn write_to(&self, out: &mut [u8]) -> Result<usize, KernelError> {
        let needed = self.serialized_bytes();
        if out.len() < needed {
            return Err(KernelError::BufferLength {
                what: "packed matrix output buffer",
                expected: needed,
                actual: out.len(),
            });
        }
        out[..HEADER_BYTES].copy_from_slice(&encode_header(&self.shape, &self.payload));
        out[HEADER_BYTES..needed].copy_from_slice(&self.payload);
        Ok(needed)
    }

    /// Header plus payload in a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.serialized_bytes()];
        self.write_to(&mut out)
            .expect("buffer sized by serialized_bytes");
        out
    }

    /// Copies a serialized matrix (checksum verified).
    pub fn from_bytes(bytes: &[u8]) -> Result<PackedMatrix, KernelError> {
        let view = PackedView::from_bytes(bytes)?;
        view.verify_checksum()?;
        Ok(view.to_owned())
    }
}

/// A borrowed packed matrix: shape plus payload bytes (no header).
#[derive(Clone, Copy, Debug)]
pub struct PackedView<'a> {
    shape: PackedShape,
    payload: &'a [u8],
    /// The CRC-32 the header promised, when the view came from serialized bytes.
    header_checksum: Option<u32>,
}

impl<'a> PackedView<'a> {
    /// Views serialized bytes (header + payload) without copying. `bytes` may be longer than
    /// the matrix (a buffer rounded up for direct I/O); the tail is ignored. The header is
    /// validated; the checksum is not (call [`PackedView::verify_checksum`]).
    pub fn from_bytes(bytes: &'a [u8]) -> Result<PackedView<'a>, KernelError> {
        let (shape, checksum) = decode_header(bytes)?;
        let end = HEADER_BYTES + shape.payload_bytes();
        Ok(PackedView {
            shape,
            payload: &bytes[HEADER_BYTES..end],
            header_checksum: Some(checksum),
        })
    }

    /// Views a payload stored without its header (shape kept elsewhere, e.g. in an index).
    pub fn from_payload(
        shape: PackedShape,
        payload: &'a [u8],
    ) -> Result<PackedView<'a>, KernelError> {
        let shape = PackedShape::new(shape.rows, shape.cols, shape.bits, shape.group)?;
        if payload.len() != shape.payload_bytes() {
            return Err(KernelError::BufferLength {
                what: "packed matrix payload",
                expected: shape.payload_bytes(),
                actual: payload.len(),
            });
        }
        Ok(PackedView {
            shape,
            payload,
            header_checksum: None,
        })
    }

    pub fn shape(&self) -> PackedShape {
        self.shape
    }

    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// The bytes of tile `tile` (all its groups, contiguous).
    pub(crate) fn tile(&self, tile: usize) -> &'a [u8] {
        let size = self.shape.tile_bytes();
        &self.payload[tile * size..(tile + 1) * size]
    }

    /// CRC-32 of the payload.
    pub fn checksum(&self) -> u32 {
        crc32fast::hash(self.payload)
    }

    /// Checks the payload against the header's CRC-32. Views made with
    /// [`PackedView::from_payload`] have no header and always pass.
    pub fn verify_checksum(&self) -> Result<(), KernelError> {
        match self.header_checksum {
            Some(expected) => {
                let actual = self.checksum();
                if actual != expected {
                    return Err(KernelError::ChecksumMismatch { expected, actual });
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    pub fn to_owned(&self) -> PackedMatrix {
        PackedMatrix {
            shape: self.shape,
            payload: self.payload.to_vec(),
        }
    }

    /// Decodes the layout back into codes, scales and centres (used by tests and tools).
    pub fn unpack(&self) -> QuantizedMatrix {
        let shape = self.shape;
        let groups = shape.groups_per_row();
        let mut codes = vec![0u8; shape.rows * shape.cols];
        let mut scales = vec![0u16; shape.rows * groups];
        let mut centres = vec![0u16; shape.rows * groups];
        let order = flush_order(shape.bits);
        for tile in 0..shape.tiles() {
            for g in 0..groups {
                let start = (tile * groups + g) * shape.block_bytes();
                let block = &self.payload[start..start + shape.block_bytes()];
                let mut tile_codes = [[0u8; 128]; TILE_ROWS];
                unpack_block_codes(block, shape.bits, shape.group, &mut tile_codes);
                let scale_start = shape.block_bytes() - BLOCK_SCALE_BYTES;
                for (position, &row_in_tile) in order.iter().enumerate() {
                    let row = tile * TILE_ROWS + row_in_tile as usize;
                    if row >= shape.rows {
                        continue;
                    }
                    let s = scale_start + 2 * position;
                    let c = scale_start + 2 * TILE_ROWS + 2 * position;
                    scales[row * groups + g] = u16::from_le_bytes([block[s], block[s + 1]]);
                    centres[row * groups + g] = u16::from_le_bytes([block[c], block[c + 1]]);
                    let first = row * shape.cols + g * shape.group.get();
                    codes[first..first + shape.group.get()]
                        .copy_from_slice(&tile_codes[row_in_tile as usize][..shape.group.get()]);
                }
            }
        }
        QuantizedMatrix::from_parts(
            shape.rows,
            shape.cols,
            shape.bits,
            shape.group,
            codes,
            scales,
            centres,
        )
        .expect("unpacked parts have the shape's lengths")
    }
}

impl<'a> PackedView<'a> {
    /// Views serialized bytes and verifies the payload's CRC-32 against the header.
    pub fn from_bytes_checked(bytes: &'a [u8]) -> Result<PackedView<'a>, KernelError> {
        let view = PackedView::from_bytes(bytes)?;
        view.verify_checksum()?;
        Ok(view)
    }
}

/// Scale of group `g` for the row at flush position `position` of a block, as f32.
pub(crate) fn block_scale(block: &[u8], position: usize) -> f32 {
    let s = block.len() - BLOCK_SCALE_BYTES + 2 * position;
    f16_to_f32(u16::from_le_bytes([block[s], block[s + 1]]))
}

/// Centre for the row at flush position `position` of a block, as f32.
pub(crate) fn block_centre(block: &[u8], position: usize) -> f32 {
    let c = block.len() - BLOCK_SCALE_BYTES + 2 * TILE_ROWS + 2 * position;
    f16_to_f32(u16::from_le_bytes([block[c], block[c + 1]]))
}

fn nibble(matrix: &QuantizedMatrix, row: usize, plane: usize, first_col: usize) -> u8 {
    if row >= matrix.rows() {
        return 0;
    }
    (0..4).fold(0u8, |index, j| {
        let bit = (matrix.code(row, first_col + j) >> plane) & 1;
        index | (bit << j)
    })
}

fn pack_block(
    matrix: &QuantizedMatrix,
    shape: &PackedShape,
    tile: usize,
    group_index: usize,
    block: &mut [u8],
) {
    let bits = shape.bits.bits();
    let step_bytes = shape.bits.step_bytes();
    let row0 = tile * TILE_ROWS;
    for step in 0..shape.group.get() / STEP_COLS {
        let col = group_index * shape.group.get() + step * STEP_COLS;
        let out = &mut block[step * step_bytes..(step + 1) * step_bytes];
        let mut chunk = 0;
        for pair in 0..bits / 2 {
            for half in 0..2 {
                for lane in 0..2 {
                    for i in 0..8 {
                        for e in 0..2 {
                            let row = row0 + 16 * lane + 8 * half + i;
                            let plane = 2 * pair + e;
                            let byte = nibble(matrix, row, plane, col)
                                | (nibble(matrix, row, plane, col + 4) << 4);
                            out[32 * chunk + 16 * lane + 2 * i + e] = byte;
                        }
                    }
                }
                chunk += 1;
            }
        }
        if bits % 2 == 1 {
            for lane in 0..2 {
                for i in 0..16 {
                    let row = row0 + 16 * lane + i;
                    let byte = nibble(matrix, row, bits - 1, col)
                        | (nibble(matrix, row, bits - 1, col + 4) << 4);
                    out[32 * chunk + 16 * lane + i] = byte;
                }
            }
        }
    }
    let scale_start = block.len() - BLOCK_SCALE_BYTES;
    for (position, &row_in_tile) in flush_order(shape.bits).iter().enumerate() {
        let row = row0 + row_in_tile as usize;
        let (scale, centre) = if row < matrix.rows() {
            (
                matrix.scale_bits(row, group_index),
                matrix.centre_bits(row, group_index),
            )
        } else {
            (0, 0)
        };
        let s = scale_start + 2 * position;
        let c = scale_start + 2 * TILE_ROWS + 2 * position;
        block[s..s + 2].copy_from_slice(&scale.to_le_bytes());
        block[c..c + 2].copy_from_slice(&centre.to_le_bytes());
    }
}

/// Inverse of the code part of `pack_block`: codes of the tile's 32 rows for one group
/// (`codes[row in tile][column in group]`).
pub(crate) fn unpack_block_codes(
    block: &[u8],
    bits: WeightBits,
    group: GroupSize,
    codes: &mut [[u8; 128]; TILE_ROWS],
) {
    let planes = bits.bits();
    let step_bytes = bits.step_bytes();
    let mut put = |row: usize, plane: usize, col: usize, index: u8| {
        for j in 0..4 {
            codes[row][col + j] |= ((index >> j) & 1) << plane;
        }
    };
    for step in 0..group.get() / STEP_COLS {
        let data = &block[step * step_bytes..(step + 1) * step_bytes];
        let col = step * STEP_COLS;
        let mut chunk = 0;
        for pair in 0..planes / 2 {
            for half in 0..2 {
                for lane in 0..2 {
                    for i in 0..8 {
                        for e in 0..2 {
                            let byte = data[32 * chunk + 16 * lane + 2 * i + e];
                            let row = 16 * lane + 8 * half + i;
                            put(row, 2 * pair + e, col, byte & 15);
                            put(row, 2 * pair + e, col + 4, byte >> 4);
                        }
                    }
                }
                chunk += 1;
            }
        }
        if planes % 2 == 1 {
            for lane in 0..2 {
                for i in 0..16 {
                    let byte = data[32 * chunk + 16 * lane + i];
                    put(16 * lane + i, planes - 1, col, byte & 15);
                    put(16 * lane + i, planes - 1, col + 4, byte >> 4);
                }
            }
        }
    }
}

fn encode_header(shape: &PackedShape, payload: &[u8]) -> [u8; HEADER_BYTES] {
    let mut header = [0u8; HEADER_BYTES];
    header[0..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&(shape.bits.bits() as u32).to_le_bytes());
    header[16..20].copy_from_slice(&(shape.group.get() as u32).to_le_bytes());
    header[20..24].copy_from_slice(&(TILE_ROWS as u32).to_le_bytes());
    header[24..32].copy_from_slice(&(shape.rows as u64).to_le_bytes());
    header[32..40].copy_from_slice(&(shape.cols as u64).to_le_bytes());
    header[40..48].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    header[48..52].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    header
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn bad(field: &'static str, detail: String) -> KernelError {
    KernelError::BadHeader { field, detail }
}

fn decode_header(bytes: &[u8]) -> Result<(PackedShape, u32), KernelError> {
    if bytes.len() < HEADER_BYTES {
        return Err(KernelError::BufferLength {
            what: "packed matrix header",
            expected: HEADER_BYTES,
            actual: bytes.len(),
        });
    }
    if &bytes[0..8] != MAGIC {
        return Err(bad(
            "magic",
            format!("expected {MAGIC:?}, got {:?}", &bytes[0..8]),
        ));
    }
    let version = read_u32(bytes, 8);
    if version != VERSION {
        return Err(bad("version", format!("expected {VERSION}, got {version}")));
    }
    let bits =
        WeightBits::from_bits(read_u32(bytes, 12)).map_err(|e| bad("bits", e.to_string()))?;
    let group =
        GroupSize::new(read_u32(bytes, 16) as usize).map_err(|e| bad("group", e.to_string()))?;
    let tile_rows = read_u32(bytes, 20);
    if tile_rows as usize != TILE_ROWS {
        return Err(bad(
            "tile rows",
            format!("expected {TILE_ROWS}, got {tile_rows}"),
        ));
    }
    let rows = usize::try_from(read_u64(bytes, 24))
        .map_err(|_| bad("rows", "does not fit usize".into()))?;
    let cols = usize::try_from(read_u64(bytes, 32))
        .map_err(|_| bad("cols", "does not fit usize".into()))?;
    // Bound the shape before multiplying so a corrupt header cannot overflow.
    const MAX_DIM: usize = 1 << 31;
    if rows > MAX_DIM || cols > MAX_DIM {
        return Err(bad("rows/cols", format!("{rows}×{cols} exceeds 2^31")));
    }
    let shape =
        PackedShape::new(rows, cols, bits, group).map_err(|e| bad("rows/cols", e.to_string()))?;
    let payload = read_u64(bytes, 40);
    if payload != shape.payload_bytes() as u64 {
        return Err(bad(
            "payload bytes",
            format!(
                "header says {payload}, shape needs {}",
                shape.payload_bytes()
            ),
        ));
    }
    if bytes[52..64].iter().any(|&b| b != 0) {
        return Err(bad("reserved", "bytes 52..64 must be zero".into()));
    }
    if bytes.len() < shape.serialized_bytes() {
        return Err(KernelError::BufferLength {
            what: "packed matrix bytes",
            expected: shape.serialized_bytes(),
            actual: bytes.len(),
        });
    }
    Ok((shape, read_u32(bytes, 48)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random_matrix(rows: usize, cols: usize, bits: WeightBits, seed: u64) -> QuantizedMatrix {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let w: Vec<f32> = (0..rows * cols).map(|_| rng.gen_range(-1.0..1.0)).collect();
        QuantizedMatrix::quantize_min_max(&w, rows, cols, bits, GroupSize::G32).unwrap()
    }

    #[test]
    fn pack_then_unpack_gives_the_matrix_back_for_every_width() {
        for (seed, bits) in WeightBits::ALL.into_iter().enumerate() {
            // 45 rows: one full tile and one padded tile.
            let q = random_matrix(45, 64, bits, seed as u64);
            let packed = PackedMatrix::pack(&q);
            assert_eq!(packed.view().unpack(), q, "{bits:?}");
        }
    }

    #[test]
    fn serialization_round_trips_and_rejects_damage() {
        let q = random_matrix(40, 96, WeightBits::B3, 7);
        let packed = PackedMatrix::pack(&q);
        let bytes = packed.to_bytes();
        assert_eq!(bytes.len(), HEADER_BYTES + packed.payload().len());
        assert_eq!(PackedMatrix::from_bytes(&bytes).unwrap(), packed);

        // A longer buffer (rounded up for direct I/O) is accepted.
        let mut padded = bytes.clone();
        padded.resize(bytes.len() + 4000, 0xAA);
        let view = PackedView::from_bytes_checked(&padded).unwrap();
        assert_eq!(view.payload(), packed.payload());

        // Truncated payload, bad magic, bad bits, flipped payload byte.
        assert!(matches!(
            PackedView::from_bytes(&bytes[..bytes.len() - 1]),
            Err(KernelError::BufferLength { .. })
        ));
        assert!(matches!(
            PackedView::from_bytes(&bytes[..10]),
            Err(KernelError::BufferLength { .. })
        ));
        let mut damaged = bytes.clone();
        damaged[0] = b'X';
        assert!(matches!(
            PackedView::from_bytes(&damaged),
            Err(KernelError::BadHeader { field: "magic", .. })
        ));
        let mut damaged = bytes.clone();
        damaged[12] = 5;
        assert!(matches!(
            PackedView::from_bytes(&damaged),
            Err(KernelError::BadHeader { field: "bits", .. })
        ));
        let mut damaged = bytes.clone();
        damaged[HEADER_BYTES + 3] ^= 1;
        assert!(matches!(
            PackedMatrix::from_bytes(&damaged),
            Err(KernelError::ChecksumMismatch { .. })
        ));
        let mut short_out = vec![0u8; 10];
        assert!(packed.write_to(&mut short_out).is_err());
    }

    #[test]
    fn payload_view_checks_its_length() {
        let q = random_matrix(32, 32, WeightBits::B2, 3);
        let packed = PackedMatrix::pack(&q);
        let shape = packed.shape();
        assert!(PackedView::from_payload(shape, packed.payload()).is_ok());
        assert!(matches!(
            PackedView::from_payload(shape, &packed.payload()[1..]),
            Err(KernelError::BufferLength { .. })
        ));
    }
}
