//! Every input a fuzzer or the mutation suite ever found that broke a parser, pinned (issue 16).
//! Each test is named after what it pins; the inputs live in `tests/fuzz_inputs/`.

use edgesim::exec::store::check_index;
use std::path::Path;

fn input(name: &str) -> String {
    std::fs::read_to_string(Path::new("tests/fuzz_inputs").join(name)).unwrap()
}

/// `"alignment": 0` divided by zero in the entry checks (a panic). Found by hand while
/// reviewing the store_index target's first run (1 M executions did not reach it), then
/// confirmed as a crash by the target itself.
#[test]
fn store_index_with_alignment_zero_is_an_error_not_a_division_by_zero() {
    let e = check_index(
        &input("store-index-alignment-zero.json"),
        Path::new("s/index.json"),
    )
    .unwrap_err();
    assert!(
        e.contains("s/index.json") && e.contains("field `alignment` is 0"),
        "{e}"
    );
}

/// An entry whose `offset + stored_bytes` overflows u64 (an overflow panic in debug builds).
#[test]
fn store_index_entry_end_past_u64_is_an_error_not_an_overflow() {
    let mut v: serde_json::Value =
        serde_json::from_str(&input("store-index-alignment-zero.json")).unwrap();
    v["alignment"] = 4096.into();
    v["entries"][0]["offset"] = (u64::MAX - 4095).into();
    let e = check_index(&v.to_string(), Path::new("s/index.json")).unwrap_err();
    assert!(e.contains("entries[0]") && e.contains("runs past"), "{e}");
}

/// Mutation suite (binary), mutant 19: `"model": "mixtral-0x7b"` was refused as an unknown
/// model without naming the experiment file that named it.
#[test]
fn experiment_with_an_unknown_model_names_the_experiment_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mutant.json");
    let text = std::fs::read_to_string("scenarios/experiments/default.json")
        .unwrap()
        .replace("mixtral-8x7b\"", "mixtral-0x7b\"");
    std::fs::write(&path, text).unwrap();
    let file = path.display().to_string();
    let (exp, base) = edgesim::compare::load_experiment(&file).unwrap();
    let e = edgesim::compare::prepare(exp, base.as_deref())
        .err()
        .unwrap();
    assert!(e.starts_with(&file) && e.contains("mixtral-0x7b"), "{e}");
}
