//! Authenticated encryption of stored tensors: ChaCha20-Poly1305 (RustCrypto), in chunks of
//! [`CHUNK_BYTES`] so several threads can decrypt one tensor at once.
//!
//! A tensor's stored bytes are its chunks' ciphertexts back to back (the payload's length),
//! then one 16-byte tag per chunk. Chunk `c` of store entry `e` uses the nonce
//! `e (u32 LE) ‖ c (u32 LE) ‖ 0 (u32)` and the associated data `edgesim-store|<tensor>|<precision>`,
//! so a chunk moved to another place or tensor fails authentication.
//!
//! **The key is a stand-in for a key a TEE would hold.** `--key-file` reads 32 raw bytes or 64
//! hex digits; without it the store uses [`TEST_KEY`], a fixed, public test key that protects
//! nothing. Only the key's SHA-256 fingerprint is written to the index, to catch a wrong key
//! before any timing starts.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use sha2::{Digest, Sha256};
use std::path::Path;

/// Plaintext bytes per authenticated chunk.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Bytes of one Poly1305 tag.
pub const TAG_BYTES: usize = 16;
/// The documented fixed test key: a stand-in for a TEE-held key, public and insecure.
pub const TEST_KEY: [u8; 32] = *b"edgesim public test key, not key";

/// A store key and where it came from.
#[derive(Clone)]
pub struct StoreKey {
    key: [u8; 32],
    /// "fixed test key" or the key file's path.
    pub origin: String,
}

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreKey({})", self.origin)
    }
}

impl StoreKey {
    pub fn test_key() -> StoreKey {
        StoreKey {
            key: TEST_KEY,
            origin: "fixed test key (edgesim::exec::store::crypt::TEST_KEY; a stand-in for a TEE-held key, protects nothing)".into(),
        }
    }

    /// Reads 32 raw bytes or 64 hex digits (surrounding whitespace ignored).
    pub fn from_file(path: &Path) -> Result<StoreKey, String> {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("{}: cannot read the key file: {e}", path.display()))?;
        let key = if bytes.len() == 32 {
            let mut k = [0u8; 32];
            k.copy_from_slice(&bytes);
            k
        } else {
            let text = String::from_utf8_lossy(&bytes);
            let hex = text.trim();
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "{}: a key file holds 32 raw bytes or 64 hex digits; this one has {} bytes",
                    path.display(),
                    bytes.len()
                ));
            }
            let mut k = [0u8; 32];
            for (i, slot) in k.iter_mut().enumerate() {
                *slot = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("checked hex");
            }
            k
        };
        Ok(StoreKey {
            key,
            origin: format!("key file {}", path.display()),
        })
    }

    /// SHA-256 of the key, hex: written to the index to recognise the right key.
    pub fn fingerprint(&self) -> String {
        hex(&Sha256::digest(self.key))
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(&self.key))
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Chunks of a payload of `len` bytes.
pub fn chunks(len: u64) -> u64 {
    len.div_ceil(CHUNK_BYTES as u64).max(1)
}

/// Stored bytes of an encrypted payload of `len` bytes: ciphertext plus one tag per chunk.
pub fn sealed_len(len: u64) -> u64 {
    len + chunks(len) * TAG_BYTES as u64
}

fn nonce(entry: u32, chunk: u32) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&entry.to_le_bytes());
    n[4..8].copy_from_slice(&chunk.to_le_bytes());
    n
}

/// Associated data binding a chunk to its tensor and precision.
pub fn associated_data(tensor: &str, precision: &str) -> Vec<u8> {
    format!("edgesim-store|{tensor}|{precision}").into_bytes()
}

/// Encrypts `payload` into its stored form (ciphertext then tags).
pub fn seal(key: &StoreKey, entry: u32, aad: &[u8], payload: &[u8]) -> Vec<u8> {
    let cipher = key.cipher();
    let n = chunks(payload.len() as u64) as usize;
    let mut out = Vec::with_capacity(payload.len() + n * TAG_BYTES);
    out.extend_from_slice(payload);
    let mut tags = Vec::with_capacity(n * TAG_BYTES);
    for c in 0..n {
        let end = ((c + 1) * CHUNK_BYTES).min(payload.len());
        let chunk = &mut out[c * CHUNK_BYTES..end];
        let tag = cipher
            .encrypt_in_place_detached(Nonce::from_slice(&nonce(entry, c as u32)), aad, chunk)
            .expect("chacha20poly1305 encrypts any length below 256 GiB");
        tags.extend_from_slice(&tag);
    }
    out.extend_from_slice(&tags);
    out
}

/// Decrypts and authenticates chunks `chunks` of a stored tensor in place. `stored` is the
/// tensor's stored bytes (ciphertext of `payload_len` bytes, then tags); on success the first
/// `payload_len` bytes hold the plaintext of those chunks.
pub fn open_chunks(
    key: &StoreKey,
    entry: u32,
    aad: &[u8],
    stored: &mut [u8],
    payload_len: usize,
    chunks: std::ops::Range<usize>,
) -> Result<(), String> {
    let n = self::chunks(payload_len as u64) as usize;
    if stored.len() < payload_len + n * TAG_BYTES || chunks.end > n {
        return Err(format!(
            "encrypted tensor holds {} bytes, needs {}",
            stored.len(),
            payload_len + n * TAG_BYTES
        ));
    }
    let (data, tags) = stored.split_at_mut(payload_len);
    let data_start = chunks.start * CHUNK_BYTES;
    let data_end = (chunks.end * CHUNK_BYTES).min(payload_len);
    open_split(
        key,
        entry,
        aad,
        &mut data[data_start..data_end],
        &tags[chunks.start * TAG_BYTES..chunks.end * TAG_BYTES],
        chunks.start,
    )
}

/// Decrypts consecutive chunks given as their ciphertext (`data`, chunk `first_chunk` on) and
/// their tags, in place.
pub fn open_split(
    key: &StoreKey,
    entry: u32,
    aad: &[u8],
    data: &mut [u8],
    tags: &[u8],
    first_chunk: usize,
) -> Result<(), String> {
    let cipher = key.cipher();
    for (i, chunk) in data.chunks_mut(CHUNK_BYTES).enumerate() {
        let c = first_chunk + i;
        let tag = tags
            .get(i * TAG_BYTES..(i + 1) * TAG_BYTES)
            .ok_or_else(|| format!("chunk {c} has no tag"))?;
        cipher
            .decrypt_in_place_detached(
                Nonce::from_slice(&nonce(entry, c as u32)),
                aad,
                chunk,
                Tag::from_slice(tag),
            )
            .map_err(|_| {
                format!("chunk {c} fails authentication (wrong key, or the data was altered)")
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_round_trips_and_tampering_fails() {
        let key = StoreKey::test_key();
        let payload: Vec<u8> = (0..(CHUNK_BYTES + 1000)).map(|i| (i * 7) as u8).collect();
        let aad = associated_data("L0.E1", "int4");
        let mut stored = seal(&key, 3, &aad, &payload);
        assert_eq!(stored.len() as u64, sealed_len(payload.len() as u64));
        let mut copy = stored.clone();
        open_chunks(&key, 3, &aad, &mut copy, payload.len(), 0..2).unwrap();
        assert_eq!(&copy[..payload.len()], &payload[..]);
        stored[5] ^= 1;
        let e = open_chunks(&key, 3, &aad, &mut stored, payload.len(), 0..2).unwrap_err();
        assert!(e.contains("chunk 0"), "{e}");
        // Another entry's nonce fails too.
        let mut again = seal(&key, 3, &aad, &payload);
        assert!(open_chunks(&key, 4, &aad, &mut again, payload.len(), 0..1).is_err());
    }
}
