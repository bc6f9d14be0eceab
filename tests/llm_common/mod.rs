//! Shared by the tests that run the real model: where it is, skipping without it, and a tiny
//! random stand-in ([`tiny`]) for tests that must run everywhere.
#![allow(dead_code)]

pub mod tiny;

use std::path::PathBuf;

/// The cached SmolLM2 file, or None (with a message saying how to get it) when absent.
/// Tests never download it.
pub fn smollm2_path() -> Option<PathBuf> {
    let cache = match edgesim::llm::fetch::cache_dir(None) {
        Ok(cache) => cache,
        Err(e) => {
            eprintln!("SKIPPED: no model cache directory ({e})");
            return None;
        }
    };
    let path = cache.join(edgesim::llm::fetch::SMOLLM2.file_name);
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "SKIPPED: {} not found; run `edgesim model fetch smollm2` (or set EDGESIM_CACHE) to run this test",
            path.display()
        );
        None
    }
}
