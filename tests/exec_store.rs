//! Bad weight stores are refused before any timing starts, with an error naming the file and
//! what is wrong: a missing file, a truncated file, a checksum mismatch, a wrong key, a
//! tampered encrypted tensor. And what a good store holds: every tensor at exactly the bytes
//! the model geometry charges, 4 KiB aligned.

mod exec_common;

use edgesim::exec::store::index::{StoreIndex, DATA_FILE, INDEX_FILE};
use edgesim::exec::store::layout::ALIGN;
use edgesim::exec::store::{StoreKey, WeightStore};
use edgesim::model::Precision;
use exec_common::*;
use std::path::Path;

fn index(dir: &Path) -> StoreIndex {
    serde_json::from_str(&std::fs::read_to_string(dir.join(INDEX_FILE)).unwrap()).unwrap()
}

fn write_index(dir: &Path, i: &StoreIndex) {
    std::fs::write(dir.join(INDEX_FILE), serde_json::to_vec_pretty(i).unwrap()).unwrap();
}

fn flip_byte(path: &Path, at: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at as usize] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_good_store_holds_every_tensor_at_its_geometry_size_aligned() {
    let dir = tempfile::tempdir().unwrap();
    tiny_store(dir.path(), None);
    let store = WeightStore::open(dir.path(), None).unwrap();
    let g = tiny_geometry();
    // Embedding, 4 attention, 1 dense FFN, 3 routers, 12 experts, LM head; three precisions.
    assert_eq!(store.index.entries.len(), 3 * (1 + 4 + 1 + 3 + 12 + 1));
    for e in &store.index.entries {
        let t = edgesim::exec::store::layout::parse_tensor(&e.tensor).unwrap();
        assert_eq!(
            e.bytes,
            g.bytes(t.layer as u32, t.kind, e.precision),
            "{}",
            e.tensor
        );
        assert_eq!(e.offset % ALIGN, 0);
    }
    assert!(store
        .entry(edgesim::model::TensorRef::expert(2, 3), Precision::Int4)
        .is_some());
}

#[test]
fn a_missing_weights_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = WeightStore::open(dir.path(), None).unwrap_err();
    assert!(
        err.contains("index.json") && err.contains("edgesim exec prepare"),
        "{err}"
    );
    tiny_store(dir.path(), None);
    std::fs::remove_file(dir.path().join(DATA_FILE)).unwrap();
    let err = WeightStore::open(dir.path(), None).unwrap_err();
    assert!(
        err.contains("weights.bin") && err.contains("cannot open"),
        "{err}"
    );
}

#[test]
fn a_truncated_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    tiny_store(dir.path(), None);
    let path = dir.path().join(DATA_FILE);
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 4096).unwrap();
    let err = WeightStore::open(dir.path(), None).unwrap_err();
    assert!(
        err.contains("truncated") && err.contains(&format!("{}", len - 4096)),
        "{err}"
    );
}

#[test]
fn a_damaged_tensor_fails_its_checksum_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    tiny_store(dir.path(), None);
    let i = index(dir.path());
    let victim = &i.entries[7];
    flip_byte(&dir.path().join(DATA_FILE), victim.offset + 5);
    let err = WeightStore::open(dir.path(), None).unwrap_err();
    assert!(
        err.contains(&victim.tensor) && err.contains("fails its checksum"),
        "{err}"
    );
}

#[test]
fn encrypted_stores_need_the_right_key_and_authenticate_every_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key.hex");
    std::fs::write(&key_file, "11".repeat(32)).unwrap();
    let key = StoreKey::from_file(&key_file).unwrap();
    let store_dir = dir.path().join("store");
    tiny_store(&store_dir, Some(key.clone()));
    assert!(WeightStore::open(&store_dir, Some(key.clone()))
        .unwrap()
        .is_encrypted());
    // No key: the store names where its key came from.
    let err = WeightStore::open(&store_dir, None).unwrap_err();
    assert!(
        err.contains("--key-file") && err.contains("key.hex"),
        "{err}"
    );
    // The wrong key.
    let err = WeightStore::open(&store_dir, Some(StoreKey::generate("another key"))).unwrap_err();
    assert!(
        err.contains("not the key") && err.contains("another key"),
        "{err}"
    );
    // Tampered ciphertext whose CRC was "fixed" in the index: authentication catches it.
    let mut i = index(&store_dir);
    let victim = i.entries[3].clone();
    let path = store_dir.join(DATA_FILE);
    flip_byte(&path, victim.offset + 100);
    let data = std::fs::read(&path).unwrap();
    i.entries[3].crc32 = crc32fast::hash(
        &data[victim.offset as usize..(victim.offset + victim.stored_bytes) as usize],
    );
    // Even with the index's binding recomputed under the key, the chunk tags catch it.
    i.binding = None;
    let model_json = std::fs::read(store_dir.join("model.json")).unwrap();
    i.binding = Some(edgesim::exec::store::binding::bind(
        &i,
        &model_json,
        Some(&key),
    ));
    write_index(&store_dir, &i);
    let err = WeightStore::open(&store_dir, Some(key)).unwrap_err();
    assert!(
        err.contains(&victim.tensor) && err.contains("fails authentication"),
        "{err}"
    );
}

#[test]
fn key_files_must_hold_32_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("short.key");
    std::fs::write(&f, "abcd").unwrap();
    let err = StoreKey::from_file(&f).unwrap_err();
    assert!(
        err.contains("short.key") && err.contains("64 hex digits"),
        "{err}"
    );
}
