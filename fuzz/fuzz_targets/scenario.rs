//! Device and model profiles (`scenarios/devices/*.json`, `scenarios/models/*.json`, or any
//! path given to `--device`/`--model`). The first byte picks the kind; the rest is the text.
#![no_main]

use edgesim::model::ModelGeometry;
use edgesim::scenario::{parse_device, parse_model};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if kind % 2 == 0 {
        if let Ok(device) = parse_device(text, "fuzz-device.json") {
            let _ = device.usable_memory_bytes();
        }
    } else if let Ok(model) = parse_model(text, "fuzz-model.json") {
        let _ = ModelGeometry::from_profile(&model);
    }
});
