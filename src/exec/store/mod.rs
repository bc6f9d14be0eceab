//! The executor's weight store: a model's weights in edgesim's own layout on disk.
//!
//! `edgesim exec prepare` writes a folder with two files:
//!
//! - `weights.bin`: every stored tensor ([`layout::stored_tensors`]) at every requested
//!   precision, each starting at a 4 KiB boundary so it can be read with `O_DIRECT`; a
//!   tensor's payload is its matrices back to back ([`layout`]), exactly the bytes the model
//!   geometry (and so every policy's Read op) charges for it;
//! - `index.json` ([`index::StoreIndex`]): the (scaled) model profile, the seed, and per entry
//!   the tensor, precision, offset, payload and stored sizes, the CRC-32 of the stored bytes
//!   and the matrices' shapes and formats; when encrypted, the cipher and the key's
//!   fingerprint ([`crypt`]).
//!
//! [`WeightStore::open`] checks all of it before anything is timed: the index parses and
//! matches the layout the model implies, the data file has the right size, every entry's
//! CRC-32 matches and, for an encrypted store, every chunk authenticates with the key. Any
//! failure is an error naming the file, the entry and what is wrong.

pub mod binding;
pub mod crypt;
pub mod index;
pub mod layout;
mod prepare;
pub mod rowwise;

pub use crypt::StoreKey;
pub use index::{StoreEntry, StoreIndex};
pub use prepare::{
    prepare, prepare_with, synthetic_tensor, MatrixSource, PrepareOptions, Prepared, Synthetic,
};

use crate::model::{ModelGeometry, Precision, TensorRef};
use index::{DATA_FILE, FORMAT_NAME, FORMAT_VERSION, INDEX_FILE, MODEL_FILE};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A parsed index that matches the layout its model implies (nothing read from the data yet).
#[derive(Debug)]
pub struct CheckedIndex {
    pub index: StoreIndex,
    pub geometry: ModelGeometry,
    lookup: BTreeMap<(TensorRef, Precision), usize>,
}

/// Parses `text` (the store's `index.json`, named `index_path` in messages) and checks every
/// entry against the layout of the model it records: what [`WeightStore::open`] does before it
/// reads any weights.
pub fn check_index(text: &str, index_path: &Path) -> Result<CheckedIndex, String> {
    let de = &mut serde_json::Deserializer::from_str(text);
    let index: StoreIndex = serde_path_to_error::deserialize(de).map_err(|e| {
        format!(
            "{}: field `{}`: {}",
            index_path.display(),
            e.path(),
            e.inner()
        )
    })?;
    let at = |what: String| format!("{}: {what}", index_path.display());
    if index.format != FORMAT_NAME || index.version != FORMAT_VERSION {
        return Err(at(format!(
            "format `{}` version {} is not {FORMAT_NAME} version {FORMAT_VERSION}",
            index.format, index.version
        )));
    }
    if index.data_file != DATA_FILE {
        return Err(at(format!(
            "data file `{}` must be `{DATA_FILE}`",
            index.data_file
        )));
    }
    if index.alignment != layout::ALIGN {
        return Err(at(format!(
            "field `alignment` is {}, but stores are aligned to {} bytes",
            index.alignment,
            layout::ALIGN
        )));
    }
    let geometry =
        ModelGeometry::from_profile(&index.model).map_err(|e| at(format!("model: {e}")))?;
    let mut lookup = BTreeMap::new();
    for (i, e) in index.entries.iter().enumerate() {
        let tensor = layout::parse_tensor(&e.tensor)
            .ok_or_else(|| at(format!("entries[{i}]: unknown tensor `{}`", e.tensor)))?;
        let expected = layout::tensor_matrices(&geometry, tensor, e.precision)
            .map_err(|m| at(format!("entries[{i}]: {m}")))?;
        if expected != e.matrices
            || e.bytes != geometry.bytes(tensor.layer as u32, tensor.kind, e.precision)
        {
            return Err(at(format!(
                "entries[{i}] ({} at {}): its matrices do not match the layout of model `{}`",
                e.tensor, e.precision, index.model.name
            )));
        }
        let end = e.offset.checked_add(e.stored_bytes);
        if e.offset % index.alignment != 0 || end.is_none_or(|end| end > index.data_bytes) {
            return Err(at(format!(
                "entries[{i}] ({} at {}): offset {} is not aligned or runs past the data's {} bytes",
                e.tensor, e.precision, e.offset, index.data_bytes
            )));
        }
        let sealed = match &index.encryption {
            Some(_) => crypt::sealed_len(e.bytes),
            None => e.bytes,
        };
        if e.stored_bytes != sealed {
            return Err(at(format!(
                "entries[{i}] ({} at {}): stored_bytes {} should be {sealed}",
                e.tensor, e.precision, e.stored_bytes
            )));
        }
        if lookup.insert((tensor, e.precision), i).is_some() {
            return Err(at(format!(
                "entries[{i}]: {} at {} is listed twice",
                e.tensor, e.precision
            )));
        }
    }
    binding::check_index(&index).map_err(at)?;
    Ok(CheckedIndex {
        index,
        geometry,
        lookup,
    })
}

/// An opened, fully verified weight store.
#[derive(Debug)]
pub struct WeightStore {
    pub dir: PathBuf,
    pub index: StoreIndex,
    pub geometry: ModelGeometry,
    lookup: BTreeMap<(TensorRef, Precision), usize>,
    key: Option<StoreKey>,
}

impl WeightStore {
    /// Opens the store in `dir` and verifies every byte (see the module docs). `key` is needed
    /// for an encrypted store.
    pub fn open(dir: &Path, key: Option<StoreKey>) -> Result<WeightStore, String> {
        let index_path = dir.join(INDEX_FILE);
        let text = std::fs::read_to_string(&index_path).map_err(|e| {
            format!(
                "{}: cannot read the store index: {e} (write a store with `edgesim exec prepare`)",
                index_path.display()
            )
        })?;
        let CheckedIndex {
            index,
            geometry,
            lookup,
        } = check_index(&text, &index_path)?;
        let at = |what: String| format!("{}: {what}", index_path.display());
        let model_path = dir.join(MODEL_FILE);
        let model_json = std::fs::read(&model_path).map_err(|e| {
            format!(
                "{}: cannot read the store's model profile: {e} (re-run `edgesim exec prepare`)",
                model_path.display()
            )
        })?;
        binding::check_model_json(&index, &model_json)
            .map_err(|m| format!("{}: {m}", model_path.display()))?;
        let key = match &index.encryption {
            None => None,
            Some(info) => {
                let key = match key {
                    Some(k) => k,
                    None => {
                        return Err(at(format!(
                            "the store is encrypted (key id {}, written with the key from {}); give its key with --key-file FILE or the environment variable {}",
                            info.key_id,
                            info.key_origin,
                            crypt::KEY_ENV
                        )))
                    }
                };
                if key.id() != info.key_id {
                    return Err(at(format!(
                        "the key from {} (id {}) is not the key the store was encrypted with (id {}, from {})",
                        key.origin,
                        key.id(),
                        info.key_id,
                        info.key_origin
                    )));
                }
                binding::check_tag(&index, &key).map_err(at)?;
                Some(key)
            }
        };
        let store = WeightStore {
            dir: dir.to_path_buf(),
            index,
            geometry,
            lookup,
            key,
        };
        store.verify_data()?;
        Ok(store)
    }

    pub fn data_path(&self) -> PathBuf {
        self.dir.join(DATA_FILE)
    }

    /// Reads the data file once and checks its size, every entry's CRC-32 and, when
    /// encrypted, every chunk's authentication tag. Drops the file from the page cache after.
    fn verify_data(&self) -> Result<(), String> {
        let path = self.data_path();
        let mut file = std::fs::File::open(&path)
            .map_err(|e| format!("{}: cannot open the store's weights: {e}", path.display()))?;
        let meta = file
            .metadata()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if !meta.is_file() {
            return Err(format!(
                "{}: is a {}, not the store's data file (re-run `edgesim exec prepare`)",
                path.display(),
                if meta.is_dir() {
                    "folder"
                } else {
                    "special file"
                }
            ));
        }
        let len = meta.len();
        if len != self.index.data_bytes {
            return Err(format!(
                "{}: the file has {len} bytes but its index says {}: it is {} (re-run `edgesim exec prepare`)",
                path.display(),
                self.index.data_bytes,
                if len < self.index.data_bytes { "truncated" } else { "not the file the index describes" }
            ));
        }
        let mut buf = Vec::new();
        let mut pos = 0u64;
        for (i, e) in self.index.entries.iter().enumerate() {
            if e.offset > pos {
                std::io::copy(&mut (&mut file).take(e.offset - pos), &mut std::io::sink())
                    .map_err(|err| format!("{}: read failed: {err}", path.display()))?;
            }
            buf.resize(e.stored_bytes as usize, 0);
            file.read_exact(&mut buf).map_err(|err| {
                format!(
                    "{}: read failed at entry {} ({} at {}): {err}",
                    path.display(),
                    i,
                    e.tensor,
                    e.precision
                )
            })?;
            pos = e.offset + e.stored_bytes;
            let crc = crc32fast::hash(&buf);
            if crc != e.crc32 {
                return Err(format!(
                    "{}: {} at {} (offset {}) fails its checksum: CRC-32 {crc:08x}, index says {:08x}; the file is damaged (re-run `edgesim exec prepare`)",
                    path.display(),
                    e.tensor,
                    e.precision,
                    e.offset,
                    e.crc32
                ));
            }
            if let Some(key) = &self.key {
                let aad = crypt::associated_data(&e.tensor, e.precision.name());
                let chunks = crypt::chunks(e.bytes) as usize;
                crypt::open_chunks(key, i as u32, &aad, &mut buf, e.bytes as usize, 0..chunks)
                    .map_err(|m| {
                        format!(
                            "{}: {} at {} (offset {}): {m}",
                            path.display(),
                            e.tensor,
                            e.precision,
                            e.offset
                        )
                    })?;
            }
        }
        crate::exec::io::drop_from_page_cache(&file);
        Ok(())
    }

    /// The entry holding `tensor` at `precision`, with its index.
    pub fn entry(&self, tensor: TensorRef, precision: Precision) -> Option<(u32, &StoreEntry)> {
        self.lookup
            .get(&(tensor, precision))
            .map(|&i| (i as u32, &self.index.entries[i]))
    }

    pub fn key(&self) -> Option<&StoreKey> {
        self.key.as_ref()
    }

    pub fn is_encrypted(&self) -> bool {
        self.index.encryption.is_some()
    }
}
