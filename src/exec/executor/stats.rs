//! What a run reports: the executor's statistics and the ops it emulated, with how.

use crate::exec::io::IoMode;
use serde::Serialize;

/// What a run used and how, for reports.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ExecStats {
    pub io_mode: Option<IoMode>,
    pub io_threads: u32,
    pub compute_threads: Vec<u32>,
    pub reads: u64,
    /// Bytes the plans' Read ops named.
    pub plan_bytes_read: u64,
    /// Bytes actually transferred: payloads plus tags, rounded up to 4 KiB pages.
    pub bytes_transferred: u64,
    pub compute_ops: u64,
    pub decrypted_bytes: u64,
    pub allocs: u64,
    pub evicts: u64,
    pub arena_bytes: u64,
    pub budget_bytes: u64,
    /// Most bytes held by Allocs at once (op byte counts, as the budget counts them).
    pub peak_allocated_bytes: u64,
    /// Ops with no host equivalent, run as stand-ins: (what, how many, how).
    pub emulated: Vec<EmulatedOps>,
}

#[derive(Clone, Debug, Serialize)]
pub struct EmulatedOps {
    pub what: String,
    pub count: u64,
    pub how: String,
}

pub(super) fn emulation_note(what: &str) -> &'static str {
    match what {
        "dequant_compute" => "STAND-IN: the plan asks for llama.cpp's dequantize-then-multiply kernel, which the executor does not have; it computes the op with its LUT kernel, so the measured time is that of a LUT kernel",
        "world_switch" => "EMULATED: the host has no TrustZone; each world switch waits the device profile's world_switch_ns on the emulation thread (sleep, then a busy-wait for the last 200 us)",
        _ => "EMULATED: the host has no accelerator; each accelerator op waits the simulator's priced duration for it on the emulation thread (sleep, then a busy-wait for the last 200 us)",
    }
}
