//! The fixed byte-level frame of a trace file: magic, version, header block, record frames,
//! trailer. `traces/README.md` documents it; these constants are the single source of truth.

/// First 8 bytes of every trace. Like PNG's signature: a non-ASCII first byte, then a CR-LF and
/// a Ctrl-Z, so that a file mangled by a text-mode transfer is detected at once.
pub const MAGIC: [u8; 8] = [0x89, b'E', b'S', b'T', b'\r', b'\n', 0x1a, b'\n'];
/// Last 8 bytes of every complete trace.
pub const END_MAGIC: [u8; 8] = *b"ESTR-END";
/// A record frame starts with its payload length; this value instead announces the trailer.
pub const TRAILER_TAG: u32 = u32::MAX;
/// Largest header JSON accepted: 1 MiB.
pub const MAX_HEADER_BYTES: u32 = 1 << 20;
/// Bytes before the header JSON: magic, version, JSON length.
pub const PREAMBLE_BYTES: u64 = 8 + 4 + 4;
/// Trailer: tag, record count, CRC of the records' CRCs, end magic.
pub const TRAILER_BYTES: u64 = 4 + 8 + 4 + 8;

/// CRC32 of the header block: version and JSON length (little-endian) then the JSON bytes.
pub fn header_crc(version: u32, json: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&version.to_le_bytes());
    h.update(&(json.len() as u32).to_le_bytes());
    h.update(json);
    h.finalize()
}
