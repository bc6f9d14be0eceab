//! A store's index is bound to its contents (issue 16): two tensors swapped together with their
//! checksums, an edited `scale`, an edited `model.json` or an index edited and re-digested
//! without the key are refused, naming what changed; a folder in place of `weights.bin` is
//! called a folder; an interrupted `exec prepare` leaves no store.

mod exec_common;

use edgesim::exec::store::index::{StoreIndex, DATA_FILE, INDEX_FILE, MODEL_FILE};
use edgesim::exec::store::{binding, StoreKey, WeightStore};
use exec_common::*;
use std::path::Path;

fn index(dir: &Path) -> StoreIndex {
    serde_json::from_str(&std::fs::read_to_string(dir.join(INDEX_FILE)).unwrap()).unwrap()
}

fn write_index(dir: &Path, i: &StoreIndex) {
    std::fs::write(dir.join(INDEX_FILE), serde_json::to_vec_pretty(i).unwrap()).unwrap();
}

#[test]
fn tensors_swapped_with_their_checksums_are_refused_by_entry() {
    let dir = tempfile::tempdir().unwrap();
    tiny_store(dir.path(), None);
    let mut i = index(dir.path());
    // Two experts of the same size at the same precision.
    let experts: Vec<usize> = (0..i.entries.len())
        .filter(|&k| i.entries[k].tensor.contains(".E"))
        .collect();
    let a = experts[0];
    let b = *experts
        .iter()
        .find(|&&k| {
            k != a
                && i.entries[k].precision == i.entries[a].precision
                && i.entries[k].bytes == i.entries[a].bytes
        })
        .expect("two experts of one size");
    let path = dir.path().join(DATA_FILE);
    let mut data = std::fs::read(&path).unwrap();
    let (ea, eb) = (i.entries[a].clone(), i.entries[b].clone());
    let block_a = data[ea.offset as usize..(ea.offset + ea.stored_bytes) as usize].to_vec();
    let block_b = data[eb.offset as usize..(eb.offset + eb.stored_bytes) as usize].to_vec();
    assert_ne!(block_a, block_b);
    data[ea.offset as usize..(ea.offset + ea.stored_bytes) as usize].copy_from_slice(&block_b);
    data[eb.offset as usize..(eb.offset + eb.stored_bytes) as usize].copy_from_slice(&block_a);
    std::fs::write(&path, data).unwrap();
    i.entries[a].crc32 = eb.crc32;
    i.entries[b].crc32 = ea.crc32;
    write_index(dir.path(), &i);
    let err = WeightStore::open(dir.path(), None).unwrap_err();
    assert!(
        err.contains(&format!("entries[{a}]"))
            && err.contains(&ea.tensor)
            && err.contains("swapped"),
        "{err}"
    );
}

#[test]
fn an_edited_scale_is_refused_by_field() {
    let dir = tempfile::tempdir().unwrap();
    tiny_store(dir.path(), None);
    let mut i = index(dir.path());
    i.scale = 4;
    write_index(dir.path(), &i);
    let err = WeightStore::open(dir.path(), None).unwrap_err();
    assert!(
        err.contains("index.json") && err.contains("field `scale`"),
        "{err}"
    );
}

#[test]
fn an_edited_model_json_is_refused_by_file() {
    let dir = tempfile::tempdir().unwrap();
    tiny_store(dir.path(), None);
    let path = dir.path().join(MODEL_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("test model", "edited model", 1)).unwrap();
    let err = WeightStore::open(dir.path(), None).unwrap_err();
    assert!(
        err.contains("model.json") && err.contains("edited"),
        "{err}"
    );
}

#[test]
fn an_index_re_digested_without_the_key_fails_the_tag() {
    let dir = tempfile::tempdir().unwrap();
    let key = StoreKey::generate("test key");
    tiny_store(dir.path(), Some(key.clone()));
    let mut i = index(dir.path());
    i.scale = 2;
    let model_json = std::fs::read(dir.path().join(MODEL_FILE)).unwrap();
    i.binding = None;
    // Digests recomputed for the edit; the tag cannot be without the key.
    let mut b = binding::bind(&i, &model_json, None);
    b.tag = Some("00".repeat(16));
    i.binding = Some(b);
    write_index(dir.path(), &i);
    let err = WeightStore::open(dir.path(), Some(key)).unwrap_err();
    assert!(err.contains("fails authentication"), "{err}");
}

#[test]
fn a_folder_in_place_of_the_weights_is_called_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    tiny_store(dir.path(), None);
    let path = dir.path().join(DATA_FILE);
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    let err = WeightStore::open(dir.path(), None).unwrap_err();
    assert!(
        err.contains("is a folder") && !err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn a_folder_of_other_files_is_not_overwritten_by_a_store() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let options = edgesim::exec::store::PrepareOptions {
        source_model: "tiny".into(),
        scale: 1,
        precisions: vec![edgesim::model::Precision::Int8],
        seed: 1,
        key: None,
        model_file: None,
        model_file_sha256: None,
    };
    let err = edgesim::exec::store::prepare(&tiny_profile(), dir.path(), &options, &|_, _| {})
        .unwrap_err();
    assert!(err.contains("not replaced"), "{err}");
    assert!(dir.path().join("notes.txt").exists());
    assert!(!dir.path().join(INDEX_FILE).exists());
}
