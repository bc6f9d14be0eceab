//! The profiles bundled into the binary, so `edgesim` finds them from any directory.
//!
//! Adding a profile: put the JSON in `scenarios/devices/` or `scenarios/models/` and add a line
//! here; `tests/profiles.rs` fails if a file in those folders is not listed.

/// (name, JSON text) of every bundled device profile, sorted by name.
pub(crate) const DEVICES: &[(&str, &str)] = &[
    ("host", include_str!("../../scenarios/devices/host.json")),
    (
        "jetson-agx-orin",
        include_str!("../../scenarios/devices/jetson-agx-orin.json"),
    ),
    (
        "oneplus-12",
        include_str!("../../scenarios/devices/oneplus-12.json"),
    ),
    (
        "oneplus-ace-2",
        include_str!("../../scenarios/devices/oneplus-ace-2.json"),
    ),
    (
        "rk3588",
        include_str!("../../scenarios/devices/rk3588.json"),
    ),
    (
        "rtx-4090-host",
        include_str!("../../scenarios/devices/rtx-4090-host.json"),
    ),
];

/// (name, JSON text) of every bundled model profile, sorted by name.
pub(crate) const MODELS: &[(&str, &str)] = &[
    (
        "bamboo-7b",
        include_str!("../../scenarios/models/bamboo-7b.json"),
    ),
    (
        "bitnet-b1.58-3b",
        include_str!("../../scenarios/models/bitnet-b1.58-3b.json"),
    ),
    (
        "lfm2-8b-a1b",
        include_str!("../../scenarios/models/lfm2-8b-a1b.json"),
    ),
    (
        "llama-2-7b",
        include_str!("../../scenarios/models/llama-2-7b.json"),
    ),
    (
        "llama-3-8b",
        include_str!("../../scenarios/models/llama-3-8b.json"),
    ),
    (
        "mixtral-8x7b",
        include_str!("../../scenarios/models/mixtral-8x7b.json"),
    ),
    (
        "olmoe-1b-7b",
        include_str!("../../scenarios/models/olmoe-1b-7b.json"),
    ),
    (
        "phi-3-mini",
        include_str!("../../scenarios/models/phi-3-mini.json"),
    ),
    (
        "phi-3.5-moe",
        include_str!("../../scenarios/models/phi-3.5-moe.json"),
    ),
    (
        "qwen2-7b",
        include_str!("../../scenarios/models/qwen2-7b.json"),
    ),
    (
        "qwen2.5-3b",
        include_str!("../../scenarios/models/qwen2.5-3b.json"),
    ),
    (
        "relullama-13b",
        include_str!("../../scenarios/models/relullama-13b.json"),
    ),
    (
        "relullama-7b",
        include_str!("../../scenarios/models/relullama-7b.json"),
    ),
    (
        "smollm2-135m",
        include_str!("../../scenarios/models/smollm2-135m.json"),
    ),
    (
        "tinyllama-1.1b",
        include_str!("../../scenarios/models/tinyllama-1.1b.json"),
    ),
    (
        "turbosparse-mistral-7b",
        include_str!("../../scenarios/models/turbosparse-mistral-7b.json"),
    ),
    (
        "turbosparse-mixtral-47b",
        include_str!("../../scenarios/models/turbosparse-mixtral-47b.json"),
    ),
];

pub(crate) fn find(table: &[(&'static str, &'static str)], name: &str) -> Option<&'static str> {
    table
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}
