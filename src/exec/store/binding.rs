//! Binding a store's index to its contents, so that an edited index or a swapped tensor is
//! refused by name rather than believed.
//!
//! The CRC-32 of each entry catches damaged bytes, but alone it is free-floating: two tensors
//! swapped together with their checksums, or an edited `scale`, passed every check (and the
//! run then reported the wrong scale). So when a store is written, `index.json` records a
//! [`IndexBinding`]: a SHA-256 digest (first 128 bits) of every top-level field of the index as
//! JSON, of every entry (tensor, precision, offset, sizes, CRC-32, matrices) and of
//! `model.json`. Opening the store recomputes them and names the first field, entry or file
//! whose digest differs.
//!
//! The digests are not keyed: they stop mistakes and naive edits, not someone who recomputes
//! them. An encrypted store also carries a Poly1305 tag under the store key over all digests
//! ([`crypt::index_tag`]), so with the key nothing in the index can be changed unnoticed; the
//! tensors themselves are authenticated chunk by chunk, bound to their tensor and precision.

use super::crypt::{self, StoreKey};
use super::index::StoreIndex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexBinding {
    /// Digest of each top-level field of the index (all but `entries` and this one).
    pub fields: BTreeMap<String, String>,
    /// Digest of each entry, in order.
    pub entries: Vec<String>,
    /// Digest of `model.json` as written.
    pub model_json: String,
    /// Encrypted stores: the Poly1305 tag (hex) under the store key over all digests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// First 128 bits of SHA-256, hex.
pub fn digest(bytes: &[u8]) -> String {
    crypt::hex(&Sha256::digest(bytes)[..16])
}

/// The index as a JSON object without its binding.
fn unbound(index: &StoreIndex) -> serde_json::Map<String, serde_json::Value> {
    let mut copy = index.clone();
    copy.binding = None;
    match serde_json::to_value(&copy) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}

fn field_digests(
    map: &serde_json::Map<String, serde_json::Value>,
) -> (BTreeMap<String, String>, Vec<String>) {
    let mut fields = BTreeMap::new();
    let mut entries = Vec::new();
    for (k, v) in map {
        if k == "entries" {
            if let Some(items) = v.as_array() {
                entries = items
                    .iter()
                    .map(|e| digest(e.to_string().as_bytes()))
                    .collect();
            }
        } else {
            fields.insert(k.clone(), digest(v.to_string().as_bytes()));
        }
    }
    (fields, entries)
}

/// What the tag authenticates: every digest, in a fixed order.
fn tagged_bytes(b: &IndexBinding) -> Vec<u8> {
    let mut text = String::from("edgesim-store-index");
    for (k, v) in &b.fields {
        text += &format!("|{k}={v}");
    }
    for e in &b.entries {
        text += &format!("|{e}");
    }
    text += &format!("|model.json={}", b.model_json);
    text.into_bytes()
}

/// The binding of `index` (written with `model_json`), tagged with `key` when encrypted.
pub fn bind(index: &StoreIndex, model_json: &[u8], key: Option<&StoreKey>) -> IndexBinding {
    let (fields, entries) = field_digests(&unbound(index));
    let mut b = IndexBinding {
        fields,
        entries,
        model_json: digest(model_json),
        tag: None,
    };
    b.tag = key.map(|k| crypt::hex(&crypt::index_tag(k, &tagged_bytes(&b))));
    b
}

/// Checks the index against its binding; the error names the first field or entry that
/// differs from what was written.
pub fn check_index(index: &StoreIndex) -> Result<(), String> {
    let Some(b) = &index.binding else {
        return Err("has no `binding` (the digests that tie it to its contents); re-run `edgesim exec prepare`".into());
    };
    let (fields, entries) = field_digests(&unbound(index));
    let names: std::collections::BTreeSet<&String> = fields.keys().chain(b.fields.keys()).collect();
    for name in names {
        if fields.get(name) != b.fields.get(name) {
            return Err(format!(
                "field `{name}` is not what the store was written with (its digest differs from `binding.fields.{name}`): the index was edited; re-run `edgesim exec prepare`"
            ));
        }
    }
    if entries.len() != b.entries.len() {
        return Err(format!(
            "lists {} entries, but the store was written with {}: the index was edited",
            entries.len(),
            b.entries.len()
        ));
    }
    for (i, (got, want)) in entries.iter().zip(&b.entries).enumerate() {
        if got != want {
            let e = &index.entries[i];
            return Err(format!(
                "entries[{i}] ({} at {}) is not what the store was written with (its offset, size, CRC-32 or matrices changed: tensors swapped or the entry edited); re-run `edgesim exec prepare`",
                e.tensor, e.precision
            ));
        }
    }
    Ok(())
}

/// Checks `model.json`'s bytes against the binding.
pub fn check_model_json(index: &StoreIndex, bytes: &[u8]) -> Result<(), String> {
    match &index.binding {
        Some(b) if b.model_json == digest(bytes) => Ok(()),
        _ => Err("is not the model profile the store was written with (its digest differs from index.json's `binding.model_json`): it was edited; re-run `edgesim exec prepare`".into()),
    }
}

/// Checks an encrypted store's tag with `key` (after the key's id matched).
pub fn check_tag(index: &StoreIndex, key: &StoreKey) -> Result<(), String> {
    let Some(b) = &index.binding else {
        return Err("has no `binding`".into());
    };
    let want = crypt::hex(&crypt::index_tag(key, &tagged_bytes(b)));
    if b.tag.as_deref() != Some(want.as_str()) {
        return Err("fails authentication under the store key (`binding.tag`): the index or its digests were changed after the store was written".into());
    }
    Ok(())
}
