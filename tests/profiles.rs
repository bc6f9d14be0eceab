//! The bundled device and model profiles, and the loader's answers to bad profiles.
//!
//! Three kinds of test: every bundled profile loads and passes its checks; an independent walk
//! over every JSON file in `scenarios/` enforces the citation rule (so a new profile cannot
//! slip in an uncited number); and each way a profile can be wrong gets an error naming the
//! file, the field and the problem.

use edgesim::model::ModelGeometry;
use edgesim::scenario::{
    device_names, load_device, load_model, model_names, parse_device, ProfileKind, ScenarioError,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn scenarios_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(kind)
}

/// Sorted file stems of `*.json` in `scenarios/<kind>/`.
fn json_stems(kind: &str) -> Vec<String> {
    let mut stems: Vec<String> = std::fs::read_dir(scenarios_dir(kind))
        .expect("scenarios folder exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    stems.sort();
    stems
}

// ---------------------------------------------------------------- bundled profiles

#[test]
fn every_device_file_is_bundled_and_every_bundled_device_loads() {
    assert_eq!(device_names(), json_stems("devices"));
    for name in device_names() {
        let d = load_device(name).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.name, name, "the `name` field must equal the file name");
        assert!(d.check().is_ok());
    }
}

#[test]
fn every_model_file_is_bundled_and_every_bundled_model_loads() {
    assert_eq!(model_names(), json_stems("models"));
    for name in model_names() {
        let m = load_model(name).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.name, name, "the `name` field must equal the file name");
        ModelGeometry::from_profile(&m).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn a_profile_loads_the_same_from_a_path() {
    let path = scenarios_dir("devices").join("rk3588.json");
    let from_path = load_device(path.to_str().unwrap()).unwrap();
    let bundled = load_device("rk3588").unwrap();
    assert_eq!(
        serde_json::to_value(&from_path).unwrap(),
        serde_json::to_value(&bundled).unwrap()
    );
}

/// The devices the foundation and HOBBIT issues name, with the figures their papers give.
#[test]
fn device_profiles_carry_the_papers_headline_figures() {
    let orin = load_device("jetson-agx-orin").unwrap();
    assert_eq!(orin.memory.bandwidth_bytes_per_s.value, 204.8e9);
    assert_eq!(orin.cpu[0].cores.value, 12);
    let large_read = orin.storage.read_curve.value.last().unwrap();
    assert_eq!(
        large_read.bytes_per_s, 3.0e9,
        "HOBBIT: ~3,000 MB/s in practice"
    );

    let host = load_device("rtx-4090-host").unwrap();
    assert_eq!(
        host.host_link.as_ref().unwrap().bandwidth_bytes_per_s.value,
        32e9
    );
    assert_eq!(host.memory.capacity_bytes.value, 24 << 30);
    assert_eq!(
        host.host_memory.as_ref().unwrap().capacity_bytes.value,
        256 << 30
    );
    assert_eq!(host.cpu[0].cores.value, 64);

    let phone = load_device("oneplus-12").unwrap();
    let cores: Vec<u32> = phone.cpu.iter().map(|c| c.cores.value).collect();
    assert_eq!(cores, [1, 5, 2]);
    assert_eq!(phone.usable_memory_bytes(), 19 << 30);
    assert_eq!(phone.cpu_memory_bandwidth_bytes_per_s(), 43.9e9);
    assert_eq!(phone.storage.channels.value, 32);

    let rk = load_device("rk3588").unwrap();
    let tee = rk.tee.as_ref().unwrap();
    assert_eq!(tee.npu_reinit_ns.value, 32_000_000);
    // TZ-LLM's "1.9 GB/s" is 1.9 GiB/s (Fig. 1: 8137 MiB in 4182 ms).
    assert_eq!(tee.secure_alloc_bytes_per_s.value, 2.04e9);
}

/// T-MAC's bit-serial LUT GEMV does one table pass per weight bit, so a core's low-bit rate must
/// fall as bits rise (int3 and int4 may sit close); a profile breaking that order has a typo.
/// int8 and fp16 may come from other kernels (ggml's Q8_0 beats an 8-plane LUT on x86), so
/// they only need to be listed.
#[test]
fn cpu_low_bit_rates_fall_as_bits_rise() {
    use edgesim::model::Precision::*;
    for name in device_names() {
        let d = load_device(name).unwrap();
        for (i, c) in d.cpu.iter().enumerate() {
            // A calibrated host profile carries what the executor's own kernels measured on
            // x86 (no fp16 kernel; 3 bits pay an extra unpack pass), checked by its fit.
            if c.core_ops_per_s
                .source
                .contains("measured by `edgesim calibrate`")
            {
                continue;
            }
            let r = |p| {
                d.cpu_core_rate(i, p)
                    .unwrap_or_else(|| panic!("{name} cpu[{i}] {p}"))
            };
            assert!(
                r(Int2) > r(Int3) && r(Int3) >= r(Int4) && r(Int8) > 0.0 && r(Fp16) > 0.0,
                "{name} cpu[{i}] ({})",
                c.name
            );
        }
    }
}

// ---------------------------------------------------------------- the citation rule

/// Written independently of `edgesim::scenario::citation_problems`, so a bug there cannot
/// hide an uncited number here.
fn uncited(v: &Value, path: &str, inside_sourced: bool, out: &mut Vec<String>) {
    match v {
        Value::Number(_) if !inside_sourced => out.push(format!("{path}: bare number")),
        Value::Object(m) if m.contains_key("value") => {
            let keys: Vec<&str> = m.keys().map(String::as_str).collect();
            if keys.len() != 2 || !m.contains_key("source") {
                out.push(format!(
                    "{path}: a value object must have exactly value and source"
                ));
            }
            match m.get("source").and_then(Value::as_str) {
                Some(s) if s.trim().len() >= 10 => {}
                _ => out.push(format!(
                    "{path}: source missing, empty or too short to cite"
                )),
            }
            uncited(&m["value"], path, true, out);
        }
        Value::Object(m) => {
            for (k, c) in m {
                uncited(c, &format!("{path}.{k}"), inside_sourced, out);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                uncited(c, &format!("{path}[{i}]"), inside_sourced, out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_number_in_every_profile_cites_a_source() {
    let mut problems = Vec::new();
    let mut files = 0;
    for kind in ["devices", "models"] {
        for stem in json_stems(kind) {
            let path = scenarios_dir(kind).join(format!("{stem}.json"));
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            uncited(&v, &format!("{kind}/{stem}.json:"), false, &mut problems);
            files += 1;
        }
    }
    assert!(
        files >= 15,
        "expected the 4 devices and 11 models, found {files} files"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_walk_catches_what_it_must() {
    let mut p = Vec::new();
    uncited(
        &json!({"a": 1, "b": {"value": 2, "source": ""}, "c": {"value": [3], "source": "Table 2 of X"}}),
        "",
        false,
        &mut p,
    );
    assert_eq!(p.len(), 2, "{p:?}");
}

// ---------------------------------------------------------------- bad input

/// Writes `v` as `<name>` in a fresh temporary folder and returns (folder, path).
fn write_tmp(name: &str, v: &Value) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, serde_json::to_string_pretty(v).unwrap()).unwrap();
    let p = path.to_str().unwrap().to_string();
    (dir, p)
}

fn bundled_json(kind: &str, name: &str) -> Value {
    let path = scenarios_dir(kind).join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Loads `v` as a device file and returns the error message, asserting it names the file.
fn device_error(file_name: &str, v: &Value) -> (ScenarioError, String) {
    let (_dir, path) = write_tmp(file_name, v);
    let e = load_device(&path).expect_err("profile should be rejected");
    let msg = e.to_string();
    assert!(
        msg.contains(file_name),
        "message does not name the file: {msg}"
    );
    (e, msg)
}

#[test]
fn unknown_field_is_named_with_its_place() {
    let mut v = bundled_json("devices", "oneplus-12");
    v["storage"]["read_curve_random"] = json!({"value": [], "source": "x"});
    let (e, msg) = device_error("typo-device.json", &v);
    assert!(matches!(e, ScenarioError::Field { .. }), "{msg}");
    assert!(msg.contains("unknown field `read_curve_random`"), "{msg}");
    assert!(msg.contains("storage"), "does not say where: {msg}");
}

#[test]
fn unknown_field_inside_a_cited_value_is_named() {
    let mut v = bundled_json("devices", "rk3588");
    v["tee"]["world_switch_ns"]["sorce"] = json!("misspelt");
    let (_e, msg) = device_error("misspelt.json", &v);
    assert!(msg.contains("unknown field `sorce`"), "{msg}");
    assert!(msg.contains("tee.world_switch_ns"), "{msg}");
}

#[test]
fn missing_source_is_named() {
    let mut v = bundled_json("devices", "jetson-agx-orin");
    v["memory"]["bandwidth_bytes_per_s"]
        .as_object_mut()
        .unwrap()
        .remove("source");
    let (e, msg) = device_error("nosource.json", &v);
    assert!(matches!(e, ScenarioError::Field { .. }), "{msg}");
    assert!(msg.contains("memory.bandwidth_bytes_per_s"), "{msg}");
    assert!(msg.contains("missing field `source`"), "{msg}");
}

#[test]
fn bare_number_is_rejected_with_a_hint() {
    let mut v = bundled_json("devices", "jetson-agx-orin");
    v["memory"]["capacity_bytes"] = json!(34359738368u64);
    let (_e, msg) = device_error("bare.json", &v);
    assert!(msg.contains("memory.capacity_bytes"), "{msg}");
    assert!(msg.contains("\"source\""), "no hint on how to cite: {msg}");
}

#[test]
fn empty_source_is_named() {
    let mut v = bundled_json("devices", "rk3588");
    v["cpu"][1]["cores"]["source"] = json!("   ");
    let (e, msg) = device_error("empty-source.json", &v);
    assert!(matches!(e, ScenarioError::Citation { .. }), "{msg}");
    assert!(msg.contains("cpu[1].cores"), "{msg}");
    assert!(msg.contains("empty or a placeholder"), "{msg}");
}

#[test]
fn zero_or_negative_bandwidth_is_named_with_its_index() {
    for bad in [0.0, -3.5e9] {
        let mut v = bundled_json("devices", "oneplus-12");
        v["storage"]["read_curve"]["value"][2]["bytes_per_s"] = json!(bad);
        let (e, msg) = device_error("bad-bandwidth.json", &v);
        assert!(matches!(e, ScenarioError::Invalid { .. }), "{msg}");
        assert!(msg.contains("storage.read_curve[2].bytes_per_s"), "{msg}");
        assert!(msg.contains("must be positive"), "{msg}");
    }
    let mut v = bundled_json("devices", "rtx-4090-host");
    v["host_link"]["bandwidth_bytes_per_s"]["value"] = json!(0.0);
    let (_e, msg) = device_error("bad-link.json", &v);
    assert!(msg.contains("host_link.bandwidth_bytes_per_s"), "{msg}");
}

#[test]
fn negative_integer_is_a_type_error_naming_the_field() {
    let mut v = bundled_json("devices", "rk3588");
    v["storage"]["channels"]["value"] = json!(-4);
    let (e, msg) = device_error("neg-channels.json", &v);
    assert!(matches!(e, ScenarioError::Field { .. }), "{msg}");
    assert!(msg.contains("storage.channels"), "{msg}");
}

#[test]
fn a_required_figure_left_out_is_an_error_not_zero() {
    let mut v = bundled_json("devices", "rk3588");
    v["memory"]
        .as_object_mut()
        .unwrap()
        .remove("bandwidth_bytes_per_s");
    let (_e, msg) = device_error("no-bandwidth.json", &v);
    assert!(
        msg.contains("missing field `bandwidth_bytes_per_s`"),
        "{msg}"
    );

    // An optional section left out is absent, never a zero-valued section.
    let mut v = bundled_json("devices", "rk3588");
    v.as_object_mut().unwrap().remove("tee");
    v["memory"]
        .as_object_mut()
        .unwrap()
        .remove("cpu_bandwidth_bytes_per_s");
    let (_dir, path) = write_tmp("no-tee.json", &v);
    let d = load_device(&path).unwrap();
    assert!(d.tee.is_none());
    assert_eq!(
        d.cpu_memory_bandwidth_bytes_per_s(),
        d.memory.bandwidth_bytes_per_s.value
    );

    let mut v = bundled_json("models", "qwen2.5-3b");
    v.as_object_mut().unwrap().remove("tied_embeddings");
    let (_dir, path) = write_tmp("untied.json", &v);
    let msg = load_model(&path).unwrap_err().to_string();
    assert!(msg.contains("missing field `tied_embeddings`"), "{msg}");
    assert!(msg.contains("untied.json"), "{msg}");
}

#[test]
fn host_memory_tier_needs_its_link_and_memory() {
    let mut v = bundled_json("devices", "rtx-4090-host");
    v.as_object_mut().unwrap().remove("host_memory");
    let (_e, msg) = device_error("no-host-memory.json", &v);
    assert!(msg.contains("`host_memory`"), "{msg}");
}

#[test]
fn every_problem_is_listed_not_only_the_first() {
    let mut v = bundled_json("devices", "jetson-agx-orin");
    v["memory"]["alloc_bytes_per_s"]["value"] = json!(0.0);
    v["accelerator"]["bandwidth_bytes_per_s"]["value"] = json!(-1.0);
    let (e, msg) = device_error("two-problems.json", &v);
    match e {
        ScenarioError::Invalid { problems, .. } => assert_eq!(problems.len(), 2, "{msg}"),
        other => panic!("expected Invalid, got {other}"),
    }
}

#[test]
fn syntax_error_gives_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.json");
    std::fs::write(&path, "{\n  \"name\": \"x\",\n  \"memory\": {,\n}").unwrap();
    let e = load_device(path.to_str().unwrap()).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("broken.json:3:"), "{msg}");
    assert!(msg.contains("not valid JSON"), "{msg}");
}

#[test]
fn missing_file_is_named() {
    let e = load_device("/nonexistent/board.json").unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("/nonexistent/board.json"), "{msg}");
    assert!(matches!(e, ScenarioError::Read { .. }), "{msg}");
}

#[test]
fn unknown_names_list_the_bundled_ones() {
    let msg = load_device("pixel-9").unwrap_err().to_string();
    assert!(msg.contains("unknown device `pixel-9`"), "{msg}");
    for n in device_names() {
        assert!(msg.contains(n), "{msg}");
    }
    match load_model("gpt-5").unwrap_err() {
        ScenarioError::UnknownName { kind, known, .. } => {
            assert_eq!(kind, ProfileKind::Model);
            assert_eq!(known.len(), model_names().len());
        }
        other => panic!("expected UnknownName, got {other}"),
    }
}

#[test]
fn impossible_model_is_named() {
    let mut v = bundled_json("models", "mixtral-8x7b");
    v["moe"]["top_k"]["value"] = json!(9);
    let (_dir, path) = write_tmp("topk.json", &v);
    let msg = load_model(&path).unwrap_err().to_string();
    assert!(msg.contains("topk.json") && msg.contains("top_k"), "{msg}");

    let mut v = bundled_json("models", "turbosparse-mistral-7b");
    v["sparsity"]["active_fraction"]["value"] = json!(1.5);
    let (_dir, path) = write_tmp("sparse.json", &v);
    let msg = load_model(&path).unwrap_err().to_string();
    assert!(msg.contains("sparsity.active_fraction"), "{msg}");

    let mut v = bundled_json("models", "lfm2-8b-a1b");
    v["conv_layers"]["value"] = json!([0, 1, 24]);
    let (_dir, path) = write_tmp("conv.json", &v);
    let msg = load_model(&path).unwrap_err().to_string();
    assert!(msg.contains("conv_layers") && msg.contains("24"), "{msg}");
}

#[test]
fn parse_device_names_the_label_it_is_given() {
    let msg = parse_device("[]", "my label").unwrap_err().to_string();
    assert!(msg.starts_with("my label:"), "{msg}");
}

#[test]
fn a_precision_listed_twice_is_named() {
    let mut v = bundled_json("devices", "jetson-agx-orin");
    let rates = v["cpu"][0]["core_ops_per_s"]["value"]
        .as_array_mut()
        .unwrap();
    let first = rates[0].clone();
    rates.push(first);
    let (_e, msg) = device_error("dup.json", &v);
    assert!(
        msg.contains("cpu[0].core_ops_per_s[5]") && msg.contains("second time"),
        "{msg}"
    );
}

#[test]
fn app_memory_above_capacity_is_named() {
    let mut v = bundled_json("devices", "oneplus-12");
    v["memory"]["app_available_bytes"]["value"] = json!(30u64 << 30);
    let (_e, msg) = device_error("too-much.json", &v);
    assert!(msg.contains("memory.app_available_bytes"), "{msg}");
}

#[test]
fn curve_sizes_out_of_order_are_named() {
    let mut v = bundled_json("devices", "oneplus-12");
    v["storage"]["read_curve"]["value"][1]["request_bytes"] = json!(1024);
    let (_e, msg) = device_error("order.json", &v);
    assert!(
        msg.contains("storage.read_curve") && msg.contains("increasing"),
        "{msg}"
    );
}
