//! `edgesim calibrate`: microbenchmarks of this machine, written as a device profile whose
//! every number says it was measured, when and how.
//!
//! What is measured, and which profile field it fills (the quantities the simulator's cost
//! formulas in [`crate::hw::cost`] use):
//!
//! | measurement | field |
//! | --- | --- |
//! | random aligned `O_DIRECT` reads of a scratch file, 4 KiB … 4 MiB requests, at queue depths 1, 2, 4, 8, three interleaved rounds, median per point ([`storage`]) | `storage.channels` (the smallest depth at which 64 KiB reads reach 90 % of the best 64 KiB bandwidth), `storage.read_curve` (bandwidth at that depth per size), `storage.request_latency_ns` (median 4 KiB read at depth 1) |
//! | streaming sums over a buffer larger than the caches, 1 thread and all threads ([`memory`]) | `cpu[0].core_bandwidth_bytes_per_s`, `memory.bandwidth_bytes_per_s` |
//! | the executor's own FFN compute path (pool dispatch, tables, LUT GEMV/GEMM) over a sweep of shapes and batches per bit width, on weights rotated through more memory than the caches hold ([`compute`]) | `cpu[0].core_ops_per_s` per precision, `cpu[0].weight_pass_per_s` and `cpu[0].launch_overhead_ns`, from one least-squares fit of relative error of the simulator's CPU cost `time = launch + max(flops / (threads · rate(p)) + weights / (threads · weight_pass), bytes / bandwidth)` (bandwidth measured as above) |
//! | ChaCha20-Poly1305 decryption on one thread | `tee.decrypt_bytes_per_s_per_core` |
//! | mapping and first touch of anonymous memory; zeroing resident memory | `memory.alloc_bytes_per_s`; `tee.secure_alloc_bytes_per_s` (the executor's secure Alloc zeroes its region) |
//! | `/proc/meminfo` | `memory.capacity_bytes`, `memory.app_available_bytes` |
//!
//! Not measurable on a host without TrustZone: the world-switch and NPU re-initialisation
//! costs are copied from the `rk3588` profile (TZ-LLM's measurements), and their sources say
//! the executor emulates them. The host has no accelerator section.

pub mod compute;
pub mod memory;
pub mod storage;

use crate::hw::{
    CpuCluster, CurvePoint, DeviceProfile, MemorySpec, OffloadTier, PrecisionRate, StorageSpec,
    TeeSpec,
};
use crate::sourced::Sourced;
use crate::validate::bundle::utc_now;
use std::path::PathBuf;

/// What to measure and how long to spend.
#[derive(Clone, Debug)]
pub struct CalibrateOptions {
    /// Folder for the scratch file (on the disk the weight store will live on; removed after).
    pub scratch_dir: PathBuf,
    /// Scratch file size: large, so reads do not come from caches.
    pub scratch_bytes: u64,
    /// Seconds per storage measurement point.
    pub seconds_per_point: f64,
    /// Repetitions per compute shape.
    pub compute_repetitions: usize,
    /// Bytes streamed per memory bandwidth measurement.
    pub memory_bytes: usize,
    /// Fewer points and shorter measurements (for tests); the profile says so.
    pub quick: bool,
}

impl CalibrateOptions {
    pub fn full(scratch_dir: PathBuf) -> Self {
        CalibrateOptions {
            scratch_dir,
            scratch_bytes: 4 << 30,
            seconds_per_point: 0.5,
            compute_repetitions: 15,
            memory_bytes: 1 << 30,
            quick: false,
        }
    }

    pub fn quick(scratch_dir: PathBuf) -> Self {
        CalibrateOptions {
            scratch_dir,
            scratch_bytes: 64 << 20,
            seconds_per_point: 0.02,
            compute_repetitions: 2,
            memory_bytes: 64 << 20,
            quick: true,
        }
    }
}

/// Progress of a long step: (step name, done, total).
pub type Progress<'a> = &'a (dyn Fn(&str, u64, u64) + Sync);

/// Everything measured, with the profile built from it.
#[derive(Clone, Debug)]
pub struct Calibration {
    pub profile: DeviceProfile,
    pub storage: storage::StorageResult,
    pub compute: compute::ComputeResult,
}

fn meminfo_kib(field: &str) -> Option<u64> {
    crate::exec::io::proc_kib("/proc/meminfo", field)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The kernel level the compute measurements ran on and the CPU, for the sources.
fn kernel_and_cpu() -> String {
    format!(
        "on {} with the kernels' {} path (kernels::Isa, detected at run time)",
        cpu_model(),
        crate::kernels::Isa::detected().describe()
    )
}

/// The `cpu` section's measurements: memory bandwidth on 1 and all cores (the compute fit's
/// memory term) and the executor's FFN op per precision. Returns the cluster and the
/// all-core bandwidth (the `memory` section's figure).
fn measure_cpu(
    options: &CalibrateOptions,
    how: &dyn Fn(&str) -> String,
    progress: Progress<'_>,
) -> Result<(CpuCluster, f64, compute::ComputeResult), String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let mem1 = memory::stream_bandwidth(options.memory_bytes, 1);
    let mem_all = memory::stream_bandwidth(options.memory_bytes, cores as usize);
    let op_bandwidth = (cores as f64 * mem1).min(mem_all);
    let compute = compute::measure(options, cores, op_bandwidth, progress)?;
    let fit = compute.describe();
    let cluster = CpuCluster {
        name: "all".into(),
        cores: Sourced::new(cores, how("std::thread::available_parallelism")),
        core_ops_per_s: Sourced::new(
            compute
                .rates
                .iter()
                .map(|&(precision, ops_per_s)| PrecisionRate {
                    precision,
                    ops_per_s,
                })
                .collect(),
            how(&format!(
                "{fit} fp16 is absent: the executor has no fp16 kernel."
            )),
        ),
        dequant_core_ops_per_s: None,
        core_bandwidth_bytes_per_s: Sourced::new(mem1, how(&format!(
            "one thread summing a {} MiB buffer of u64 with AVX2 loads and software prefetch (larger than the caches), bytes / wall time, best of 3", options.memory_bytes >> 20))),
        launch_overhead_ns: Sourced::new(
            compute.launch_ns,
            how(&format!("the intercept of the compute fit: {fit}")),
        ),
        weight_pass_per_s: compute.weight_pass_per_s.map(|w| {
            Sourced::new(w, how(&format!("the weight term of the compute fit: {fit}")))
        }),
    };
    Ok((cluster, mem_all, compute))
}

/// Re-measures only the `cpu` section of `profile` (kernel rates, core bandwidth, launch
/// cost), as `edgesim calibrate --cpu-only` does: the rest of the profile is kept as it is.
pub fn calibrate_cpu(
    options: &CalibrateOptions,
    mut profile: DeviceProfile,
    progress: Progress<'_>,
) -> Result<(DeviceProfile, compute::ComputeResult), String> {
    let when = utc_now();
    let load_start = crate::validate::load_average();
    let mode = if options.quick {
        "--cpu-only, QUICK mode: short, noisy, for tests only"
    } else {
        "--cpu-only"
    };
    let place = kernel_and_cpu();
    let load = |l: Option<f64>| l.map_or("unknown".into(), |l| format!("{l:.2}"));
    let how = |what: &str| {
        format!(
            "measured by `edgesim calibrate` ({mode}) on {when} {place} (1-minute load average {} at the start): {what}",
            load(load_start)
        )
    };
    let (cluster, _, compute) = measure_cpu(options, &how, progress)?;
    profile.cpu = vec![cluster];
    profile
        .check()
        .map_err(|e| format!("the re-measured profile is invalid: {}", e.join("; ")))?;
    Ok((profile, compute))
}

/// Runs every measurement and builds the profile.
pub fn calibrate(
    options: &CalibrateOptions,
    progress: Progress<'_>,
) -> Result<Calibration, String> {
    let when = utc_now();
    let mode = if options.quick {
        "QUICK mode (short, noisy: for tests only)"
    } else {
        "full mode"
    };
    let how = |what: &str| format!("measured by `edgesim calibrate` ({mode}) on {when}: {what}");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;

    let load_start = crate::validate::load_average();
    let storage = storage::measure(options, progress)?;
    let place = kernel_and_cpu();
    let how_cpu = |what: &str| how(&format!("{place}: {what}"));
    let (cluster, mem_all, compute) = measure_cpu(options, &how_cpu, progress)?;
    let alloc = memory::alloc_rate(options.memory_bytes.min(256 << 20))?;
    let zero = memory::zero_rate(options.memory_bytes.min(256 << 20))?;
    let decrypt = memory::decrypt_rate(if options.quick { 4 << 20 } else { 64 << 20 });

    let total = meminfo_kib("MemTotal:").map_or(0, |k| k * 1024);
    let available = meminfo_kib("MemAvailable:").map(|k| k * 1024);
    let rk = crate::scenario::load_device("rk3588").map_err(|e| e.to_string())?;
    let rk_tee = rk.tee.ok_or("the rk3588 profile has no tee section")?;
    let profile = DeviceProfile {
        name: "host".into(),
        description: format!(
            "This machine as `edgesim calibrate` measured it on {when} ({mode}, 1-minute load average {} at the start, {} at the end: the machine is shared, and other processes' work slows what is measured): {}, {cores} cores, {} GiB of memory; weights read from the block device under {}. Used to validate the simulator against the executor (edgesim validate); not a phone or board.",
            load_start.map_or("unknown".into(), |l| format!("{l:.2}")),
            crate::validate::load_average().map_or("unknown".into(), |l| format!("{l:.2}")),
            cpu_model(),
            total >> 30,
            options.scratch_dir.display()
        ),
        memory: MemorySpec {
            capacity_bytes: Sourced::new(total, how("MemTotal in /proc/meminfo")),
            app_available_bytes: available.map(|a| Sourced::new(a.min(total), how("MemAvailable in /proc/meminfo at calibration time"))),
            bandwidth_bytes_per_s: Sourced::new(mem_all, how(&format!(
                "{cores} threads each summing its part of a {} MiB buffer of u64 with AVX2 loads and software prefetch (larger than the caches), bytes / wall time, best of 3", options.memory_bytes >> 20))),
            cpu_bandwidth_bytes_per_s: None,
            alloc_bytes_per_s: Sourced::new(alloc, how("mmap of anonymous memory with MAP_POPULATE (map and first touch), bytes / time")),
        },
        offload_tier: OffloadTier::Flash,
        storage: StorageSpec {
            kind: format!("block device under {} (read with O_DIRECT)", options.scratch_dir.display()),
            channels: Sourced::new(storage.channels, how(&format!(
                "the smallest queue depth at which random 64 KiB O_DIRECT reads reach 90 % of the best 64 KiB bandwidth over depths {:?}; the executor runs this many I/O threads. All points: {}",
                storage::DEPTHS, storage.table()))),
            request_latency_ns: Sourced::new(storage.latency_ns, how("median of single 4 KiB O_DIRECT reads at random aligned offsets, queue depth 1")),
            read_curve: Sourced::new(
                storage.curve().into_iter().map(|(request_bytes, bytes_per_s)| CurvePoint { request_bytes, bytes_per_s }).collect(),
                how(&format!(
                    "aggregate bandwidth of random aligned O_DIRECT reads of each size at queue depth {} (one thread per request in flight, pread; median of 3 interleaved rounds in full mode) over a {} MiB scratch file written with random data and removed afterwards",
                    storage.channels, options.scratch_bytes >> 20))),
        access: None,
        },
        host_link: None,
        host_memory: None,
        cpu: vec![cluster],
        accelerator: None,
        tee: Some(TeeSpec {
            world_switch_ns: Sourced::new(rk_tee.world_switch_ns.value, format!(
                "NOT measured: this host has no TrustZone, so the executor EMULATES each world switch by waiting this long; value copied from the rk3588 profile: {}", rk_tee.world_switch_ns.source)),
            secure_alloc_bytes_per_s: Sourced::new(zero, how("zeroing already-resident memory on one thread (what the executor's secure Alloc does on this host, which has no secure memory)")),
            secure_alloc_total_bytes_per_s: None,
            decrypt_bytes_per_s_per_core: Sourced::new(decrypt, how("ChaCha20-Poly1305 (RustCrypto chacha20poly1305) decryption and tag check of 1 MiB chunks on one thread, the executor's Decrypt")),
            npu_reinit_ns: Sourced::new(rk_tee.npu_reinit_ns.value, format!(
                "NOT measured: this host has no NPU; value copied from the rk3588 profile: {}", rk_tee.npu_reinit_ns.source)),
        }),
        energy: None,
    };
    profile
        .check()
        .map_err(|e| format!("the measured profile is invalid: {}", e.join("; ")))?;
    Ok(Calibration {
        profile,
        storage,
        compute,
    })
}
