//! The Mixtral-8x7B routing importer (`trace import --format mixtral-jsonl`): JSON lines in,
//! a header and records out, or an error naming the line.
#![no_main]

use edgesim::model::ModelGeometry;
use edgesim::trace::import::read_mixtral_jsonl_from;
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::OnceLock;

fn mixtral() -> &'static ModelGeometry {
    static MODEL: OnceLock<ModelGeometry> = OnceLock::new();
    MODEL.get_or_init(|| {
        let profile = edgesim::scenario::load_model("mixtral-8x7b").expect("bundled model");
        ModelGeometry::from_profile(&profile).expect("bundled geometry")
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = read_mixtral_jsonl_from(data, Path::new("fuzz.jsonl"), mixtral());
});
