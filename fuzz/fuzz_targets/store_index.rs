//! The weight store's index (`index.json`, read by `exec run` and `validate`): parsed and
//! checked entry by entry against the layout of the model it records.
#![no_main]

use edgesim::exec::store::check_index;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = check_index(text, Path::new("fuzz-store/index.json"));
});
