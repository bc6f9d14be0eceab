//! The trace reader (`.est` files: `trace validate`, `trace stats`, `compare`, `replay`): reads
//! every record and groups them into forward passes as a replay does. Any input must end in
//! records or a `TraceError`, never a panic, a hang or an unbounded allocation.
#![no_main]

use edgesim::trace::{PassGrouper, TokenSource, TraceReader};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(reader) = TraceReader::from_reader(data, Path::new("fuzz.est")) else {
        return;
    };
    let _ = reader.header().max_record_bytes();
    for pass in PassGrouper::new(reader, 16) {
        if pass.is_err() {
            break;
        }
    }
});
