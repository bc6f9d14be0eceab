//! Authenticated encryption of stored tensors: ChaCha20-Poly1305 (RustCrypto), in chunks of
//! [`CHUNK_BYTES`] so several threads can decrypt one tensor at once.
//!
//! A tensor's stored bytes are its chunks' ciphertexts back to back (the payload's length),
//! then one 16-byte tag per chunk. Chunk `c` of store entry `e` uses the nonce
//! `e (u32 LE) ‖ c (u32 LE) ‖ 0 (u32)` and the associated data `edgesim-store|<tensor>|<precision>`,
//! so a chunk moved to another place or tensor fails authentication.
//!
//! **The key is a stand-in for a key a TEE would hold**, and edgesim has no built-in one. It
//! comes from a key file (`--key-file FILE`: 32 raw bytes or 64 hex digits) or from the
//! environment variable [`KEY_ENV`] (64 hex digits) — never from a command-line value, which
//! would land in shell history and process lists. The key itself is never written anywhere:
//! the index records only its [`StoreKey::id`], a domain-separated SHA-256 of it, to refuse a
//! wrong key by name before any timing starts; messages name where a key came from (the
//! file's path or the variable's name), never its bytes. `StoreKey`'s `Debug` prints the
//! origin only.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use sha2::{Digest, Sha256};
use std::path::Path;

/// Plaintext bytes per authenticated chunk.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Bytes of one Poly1305 tag.
pub const TAG_BYTES: usize = 16;
/// The environment variable a store key may be given in (64 hex digits).
pub const KEY_ENV: &str = "EDGESIM_STORE_KEY";

/// A store key and where it came from.
#[derive(Clone)]
pub struct StoreKey {
    key: [u8; 32],
    /// The key file's path, the environment variable's name, or "generated".
    pub origin: String,
}

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreKey({})", self.origin)
    }
}

impl StoreKey {
    /// A fresh random key from the operating system (calibration's decrypt measurement, tests).
    pub fn generate(origin: &str) -> StoreKey {
        use rand::RngCore;
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        StoreKey {
            key,
            origin: origin.to_string(),
        }
    }

    /// The key as 64 hex digits, for writing a key file (tests, `exec prepare` users).
    pub fn to_hex(&self) -> String {
        hex(&self.key)
    }

    /// Reads 32 raw bytes or 64 hex digits (surrounding whitespace ignored).
    pub fn from_file(path: &Path) -> Result<StoreKey, String> {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("{}: cannot read the key file: {e}", path.display()))?;
        let origin = format!("key file {}", path.display());
        if bytes.len() == 32 {
            let mut key = [0u8; 32];
            key.copy_from_slice(&bytes);
            return Ok(StoreKey { key, origin });
        }
        let text = String::from_utf8_lossy(&bytes);
        parse_hex(text.trim())
            .map(|key| StoreKey { key, origin })
            .ok_or_else(|| {
                format!(
                    "{}: a key file holds 32 raw bytes or 64 hex digits; this one has {} bytes",
                    path.display(),
                    bytes.len()
                )
            })
    }

    /// The key in [`KEY_ENV`], if set.
    pub fn from_env() -> Result<Option<StoreKey>, String> {
        let Some(value) = std::env::var_os(KEY_ENV) else {
            return Ok(None);
        };
        let text = value.to_string_lossy();
        parse_hex(text.trim())
            .map(|key| {
                Some(StoreKey {
                    key,
                    origin: format!("environment variable {KEY_ENV}"),
                })
            })
            .ok_or_else(|| {
                format!(
                    "environment variable {KEY_ENV}: a key is 64 hex digits; it holds {} characters",
                    text.trim().chars().count()
                )
            })
    }

    /// The key's identifier, written to the index to recognise the right key: SHA-256 over a
    /// domain tag and the key, first 128 bits, hex. It reveals nothing usable about a random
    /// 256-bit key.
    pub fn id(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"edgesim-store-key-id|");
        h.update(self.key);
        hex(&h.finalize()[..16])
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(&self.key))
    }
}

fn parse_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut k = [0u8; 32];
    for (i, slot) in k.iter_mut().enumerate() {
        *slot = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(k)
}

/// The Poly1305 tag under `key` over `bytes` (the index binding's digests), with a nonce no
/// tensor chunk uses (entry and chunk `u32::MAX`).
pub fn index_tag(key: &StoreKey, bytes: &[u8]) -> [u8; TAG_BYTES] {
    let tag = key
        .cipher()
        .encrypt_in_place_detached(
            Nonce::from_slice(&nonce(u32::MAX, u32::MAX)),
            bytes,
            &mut [],
        )
        .expect("chacha20poly1305 tags an empty message");
    tag.into()
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
        let key = StoreKey::generate("test");
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

#[cfg(test)]
mod key_tests {
    use super::*;

    #[test]
    fn key_files_and_ids() {
        let dir = tempfile::tempdir().unwrap();
        let key = StoreKey::generate("test");
        let path = dir.path().join("k.hex");
        std::fs::write(&path, format!("{}\n", key.to_hex())).unwrap();
        let read = StoreKey::from_file(&path).unwrap();
        assert_eq!(read.id(), key.id());
        assert_ne!(StoreKey::generate("other").id(), key.id());
        assert!(!format!("{read:?}").contains(&key.to_hex()));
        std::fs::write(&path, "not a key").unwrap();
        let e = StoreKey::from_file(&path).unwrap_err();
        assert!(e.contains("32 raw bytes or 64 hex digits"), "{e}");
    }
}
