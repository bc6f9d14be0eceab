//! The device profile as written in `scenarios/devices/*.json`.
//!
//! Every number is a [`Sourced`] value: a datasheet, a paper's table or figure, or one of our
//! calibration runs. [`DeviceProfile::check`] rejects values that cannot be right (zero or
//! negative bandwidths, an empty curve) with the field's path in the message.
//!
//! Optional sections (`host_link`, `host_memory`, `accelerator`, `tee`, `energy` and the optional
//! figures inside sections) are `None` when absent: an unset figure never reads as zero.

use crate::model::Precision;
use crate::sourced::Sourced;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceProfile {
    /// Identifier used on the command line, e.g. `jetson-agx-orin`.
    pub name: String,
    pub description: String,
    /// The memory the model computes from (unified DRAM on SoCs, GPU memory on a discrete
    /// GPU). The memory budget of a run is a part of it.
    pub memory: MemorySpec,
    /// Where offloaded weights live: `flash` (read through `storage`) or `host_memory` (read
    /// over `host_link`, e.g. a PCIe GPU whose experts sit in CPU memory).
    pub offload_tier: OffloadTier,
    pub storage: StorageSpec,
    #[serde(default)]
    pub host_link: Option<LinkSpec>,
    /// CPU-side DRAM of a host with a discrete accelerator: where offloaded weights sit when
    /// `offload_tier` is `host_memory`, and what the CPU computes from (an expert computed on
    /// the CPU, Fiddler-style). Absent on SoCs, whose CPU shares `memory`.
    #[serde(default)]
    pub host_memory: Option<HostMemorySpec>,
    /// CPU clusters, fastest first (big, mid, little).
    pub cpu: Vec<CpuCluster>,
    #[serde(default)]
    pub accelerator: Option<AcceleratorSpec>,
    #[serde(default)]
    pub tee: Option<TeeSpec>,
    #[serde(default)]
    pub energy: Option<EnergySpec>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OffloadTier {
    Flash,
    HostMemory,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemorySpec {
    pub capacity_bytes: Sourced<u64>,
    /// What one application may actually use (Android keeps some for itself).
    #[serde(default)]
    pub app_available_bytes: Option<Sourced<u64>>,
    /// Peak read bandwidth shared by all compute units.
    pub bandwidth_bytes_per_s: Sourced<f64>,
    /// The most all CPU cores together draw from this memory, where it is measured to be below
    /// `bandwidth_bytes_per_s` (Snapdragon 8 Gen 3: 43.9 GB/s for the CPU against 59.6 GB/s
    /// for CPU and NPU together). Absent: the CPU can use the whole `bandwidth_bytes_per_s`.
    #[serde(default)]
    pub cpu_bandwidth_bytes_per_s: Option<Sourced<f64>>,
    /// Rate at which ordinary (non-secure) memory is allocated and first touched.
    pub alloc_bytes_per_s: Sourced<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostMemorySpec {
    pub capacity_bytes: Sourced<u64>,
    /// Read bandwidth the host CPU cores draw together.
    pub bandwidth_bytes_per_s: Sourced<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSpec {
    /// e.g. "NVMe PCIe 4.0", "UFS 4.0".
    pub kind: String,
    /// Requests kept in flight: the executor's I/O threads (the queue depth its calibration
    /// found enough). The simulator's flash cost does not use it (`hw::cost::flash`).
    pub channels: Sourced<u32>,
    /// A lone 4 KiB read's whole time, issue to completion, with the device otherwise idle
    /// (the data sheet's 1 / IOPS at queue depth 1: command, media and transfer included).
    pub request_latency_ns: Sourced<u64>,
    /// Aggregate read bandwidth as a function of request size, with all channels busy.
    /// Interpolated linearly in log2(request size); clamped at the ends. Small points are
    /// random reads, large points sequential ones, as the devices' measurements were taken.
    /// These are measured aggregates with the queue full: the smallest point is the deep-queue
    /// IOPS (the command rate), the largest the sequential rate (the link).
    pub read_curve: Sourced<Vec<CurvePoint>>,
    /// How the small-random-read rate depends on the access range, the issuing core class
    /// and the number of issuing cores, and under which conditions the curve was measured
    /// and the runs read (`hw::cost::FlashAccess`). Absent: the curve applies as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Sourced<crate::hw::cost::FlashAccess>>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CurvePoint {
    pub request_bytes: u64,
    pub bytes_per_s: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    pub kind: String,
    pub bandwidth_bytes_per_s: Sourced<f64>,
    pub latency_ns: Sourced<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuCluster {
    /// "big", "mid", "little", or "all" where the cores are alike.
    pub name: String,
    pub cores: Sourced<u32>,
    /// Sustained arithmetic rate of one core per weight precision (multiply-adds count as two
    /// ops), for the kernels edgesim models (LUT kernels for low bits).
    pub core_ops_per_s: Sourced<Vec<PrecisionRate>>,
    /// The same for dequantize-then-multiply kernels (llama.cpp's k-quant and Q8_0 kernels),
    /// where measured: what a baseline that does not use LUT kernels computes at.
    #[serde(default)]
    pub dequant_core_ops_per_s: Option<Sourced<Vec<PrecisionRate>>>,
    /// Memory bandwidth one core can draw on its own.
    pub core_bandwidth_bytes_per_s: Sourced<f64>,
    /// Fixed cost of starting a kernel (thread wake-up, table setup).
    pub launch_overhead_ns: Sourced<u64>,
    /// Weights per second one core passes over once per op, whatever the batch: the part of
    /// a LUT kernel's time that goes with the weights (streaming them cold from memory,
    /// unpacking, per-group scaling) rather than with each activation vector's table
    /// lookups (`core_ops_per_s`). Where measured (edgesim calibrate), a CPU op takes
    /// `launch + max(flops / (threads · rate) + weights / (threads · this), bytes / bandwidth)`;
    /// absent, the weight pass is taken to be free.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_pass_per_s: Option<Sourced<f64>>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PrecisionRate {
    pub precision: Precision,
    pub ops_per_s: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AcceleratorKind {
    Gpu,
    Npu,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceleratorSpec {
    pub kind: AcceleratorKind,
    pub name: String,
    /// Independent queues (NPU cores scheduled separately); a GPU is one server.
    pub servers: Sourced<u32>,
    /// Sustained arithmetic rate of one server per precision; a precision not listed is
    /// unsupported.
    pub ops_per_s: Sourced<Vec<PrecisionRate>>,
    pub bandwidth_bytes_per_s: Sourced<f64>,
    /// Cost of launching one job or kernel.
    pub dispatch_latency_ns: Sourced<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeeSpec {
    /// One TEE-REE world switch (smc, TZASC/TZPC reconfiguration).
    pub world_switch_ns: Sourced<u64>,
    /// Secure-memory allocation rate of one thread (CMA migration under memory pressure).
    pub secure_alloc_bytes_per_s: Sourced<f64>,
    /// The most all allocating threads reach together (TZ-LLM: 1.9 GB/s for one thread, only
    /// 3.8 GB/s for four). Absent: threads add up without limit. Priced as the number of
    /// allocations that may run at once (`TeeModel::secure_alloc_lanes`), which TZ-LLM's
    /// restoration chains its allocation micro-ops into.
    #[serde(default)]
    pub secure_alloc_total_bytes_per_s: Option<Sourced<f64>>,
    /// Decryption rate of one core.
    pub decrypt_bytes_per_s_per_core: Sourced<f64>,
    /// Full NPU detach and re-attach, paid on each switch when there is no co-driver: the
    /// price of `Op::NpuHandover` (`tzllm` with `"npu": "exclusive"`).
    pub npu_reinit_ns: Sourced<u64>,
}

/// Parsed and checked but not priced yet: reports have no energy column. Issue 14 (energy per
/// token in the comparison report) prices it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnergySpec {
    pub joules_per_byte_read: Sourced<f64>,
    pub joules_per_op: Sourced<f64>,
}

impl DeviceProfile {
    /// Rejects impossible values, naming the field. Returns every problem, not just the first.
    pub fn check(&self) -> Result<(), Vec<String>> {
        let mut errs = Vec::new();
        let mut positive = |field: String, v: f64| {
            if !(v.is_finite() && v > 0.0) {
                errs.push(format!("`{field}` must be positive and finite, got {v}"));
            }
        };
        positive(
            "memory.capacity_bytes".into(),
            self.memory.capacity_bytes.value as f64,
        );
        positive(
            "memory.bandwidth_bytes_per_s".into(),
            self.memory.bandwidth_bytes_per_s.value,
        );
        if let Some(c) = &self.memory.cpu_bandwidth_bytes_per_s {
            positive("memory.cpu_bandwidth_bytes_per_s".into(), c.value);
        }
        if let Some(a) = &self.memory.app_available_bytes {
            positive("memory.app_available_bytes".into(), a.value as f64);
        }
        positive(
            "memory.alloc_bytes_per_s".into(),
            self.memory.alloc_bytes_per_s.value,
        );
        positive(
            "storage.channels".into(),
            self.storage.channels.value as f64,
        );
        for (i, p) in self.storage.read_curve.value.iter().enumerate() {
            positive(
                format!("storage.read_curve[{i}].bytes_per_s"),
                p.bytes_per_s,
            );
            positive(
                format!("storage.read_curve[{i}].request_bytes"),
                p.request_bytes as f64,
            );
        }
        if let Some(l) = &self.host_link {
            positive(
                "host_link.bandwidth_bytes_per_s".into(),
                l.bandwidth_bytes_per_s.value,
            );
        }
        if let Some(h) = &self.host_memory {
            positive(
                "host_memory.capacity_bytes".into(),
                h.capacity_bytes.value as f64,
            );
            positive(
                "host_memory.bandwidth_bytes_per_s".into(),
                h.bandwidth_bytes_per_s.value,
            );
        }
        for (i, c) in self.cpu.iter().enumerate() {
            positive(format!("cpu[{i}].cores"), c.cores.value as f64);
            positive(
                format!("cpu[{i}].core_bandwidth_bytes_per_s"),
                c.core_bandwidth_bytes_per_s.value,
            );
            if let Some(w) = &c.weight_pass_per_s {
                positive(format!("cpu[{i}].weight_pass_per_s"), w.value);
            }
            for (j, r) in c.core_ops_per_s.value.iter().enumerate() {
                positive(
                    format!("cpu[{i}].core_ops_per_s[{j}].ops_per_s"),
                    r.ops_per_s,
                );
            }
            if let Some(d) = &c.dequant_core_ops_per_s {
                for (j, r) in d.value.iter().enumerate() {
                    positive(
                        format!("cpu[{i}].dequant_core_ops_per_s[{j}].ops_per_s"),
                        r.ops_per_s,
                    );
                }
            }
        }
        if let Some(a) = &self.accelerator {
            positive("accelerator.servers".into(), a.servers.value as f64);
            positive(
                "accelerator.bandwidth_bytes_per_s".into(),
                a.bandwidth_bytes_per_s.value,
            );
            for (j, r) in a.ops_per_s.value.iter().enumerate() {
                positive(format!("accelerator.ops_per_s[{j}].ops_per_s"), r.ops_per_s);
            }
        }
        if let Some(t) = &self.tee {
            positive(
                "tee.secure_alloc_bytes_per_s".into(),
                t.secure_alloc_bytes_per_s.value,
            );
            if let Some(total) = &t.secure_alloc_total_bytes_per_s {
                positive("tee.secure_alloc_total_bytes_per_s".into(), total.value);
            }
            positive(
                "tee.decrypt_bytes_per_s_per_core".into(),
                t.decrypt_bytes_per_s_per_core.value,
            );
        }
        if let Some(e) = &self.energy {
            positive(
                "energy.joules_per_byte_read".into(),
                e.joules_per_byte_read.value,
            );
            positive("energy.joules_per_op".into(), e.joules_per_op.value);
        }
        if self.storage.read_curve.value.is_empty() {
            errs.push("`storage.read_curve` needs at least one point".into());
        }
        let sizes: Vec<u64> = self
            .storage
            .read_curve
            .value
            .iter()
            .map(|p| p.request_bytes)
            .collect();
        if sizes.windows(2).any(|w| w[0] >= w[1]) {
            errs.push("`storage.read_curve` must list request sizes in increasing order".into());
        }
        if let Some(a) = &self.storage.access {
            if let Err(e) = a.value.check("storage.access.value") {
                errs.push(e.to_string());
            }
            for (i, r) in a.value.by_issuer.iter().enumerate() {
                if !self.cpu.iter().any(|c| c.name == r.cluster) {
                    errs.push(format!(
                        "`storage.access.value.by_issuer[{i}].cluster`: the device has no CPU cluster `{}`",
                        r.cluster
                    ));
                }
            }
        }
        if self.cpu.is_empty() {
            errs.push("`cpu` needs at least one cluster".into());
        }
        for (i, c) in self.cpu.iter().enumerate() {
            duplicate_precisions(
                &format!("cpu[{i}].core_ops_per_s"),
                &c.core_ops_per_s.value,
                &mut errs,
            );
            if let Some(d) = &c.dequant_core_ops_per_s {
                duplicate_precisions(
                    &format!("cpu[{i}].dequant_core_ops_per_s"),
                    &d.value,
                    &mut errs,
                );
            }
        }
        if let Some(a) = &self.accelerator {
            duplicate_precisions("accelerator.ops_per_s", &a.ops_per_s.value, &mut errs);
        }
        if let Some(a) = &self.memory.app_available_bytes {
            if a.value > self.memory.capacity_bytes.value {
                errs.push(format!(
                    "`memory.app_available_bytes` ({}) exceeds `memory.capacity_bytes` ({})",
                    a.value, self.memory.capacity_bytes.value
                ));
            }
        }
        if self.offload_tier == OffloadTier::HostMemory && self.host_link.is_none() {
            errs.push("`offload_tier` is `host_memory` but there is no `host_link`".into());
        }
        if self.offload_tier == OffloadTier::HostMemory && self.host_memory.is_none() {
            errs.push("`offload_tier` is `host_memory` but there is no `host_memory`".into());
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }

    /// The memory an application may use: `app_available_bytes` when given, else capacity.
    pub fn usable_memory_bytes(&self) -> u64 {
        self.memory
            .app_available_bytes
            .as_ref()
            .map_or(self.memory.capacity_bytes.value, |a| a.value)
    }

    /// Sustained ops/s of one core of `cluster` at `precision`, if that precision is listed.
    pub fn cpu_core_rate(&self, cluster: usize, precision: Precision) -> Option<f64> {
        self.cpu
            .get(cluster)
            .and_then(|c| rate_of(&c.core_ops_per_s.value, precision))
    }

    /// Sustained ops/s of one core of `cluster` at `precision` with a dequantize-then-multiply
    /// kernel, if the profile lists one.
    pub fn cpu_core_dequant_rate(&self, cluster: usize, precision: Precision) -> Option<f64> {
        self.cpu
            .get(cluster)
            .and_then(|c| c.dequant_core_ops_per_s.as_ref())
            .and_then(|d| rate_of(&d.value, precision))
    }

    pub fn accel_rate(&self, precision: Precision) -> Option<f64> {
        self.accelerator
            .as_ref()
            .and_then(|a| rate_of(&a.ops_per_s.value, precision))
    }

    /// The bandwidth all CPU cores together draw from the memory they compute from: on a host
    /// with a discrete accelerator that is the host's own DRAM (`host_memory`), not the
    /// accelerator's memory; otherwise `memory.cpu_bandwidth_bytes_per_s` when given, else
    /// `memory.bandwidth_bytes_per_s`.
    pub fn cpu_memory_bandwidth_bytes_per_s(&self) -> f64 {
        if let Some(h) = &self.host_memory {
            return h.bandwidth_bytes_per_s.value;
        }
        self.memory
            .cpu_bandwidth_bytes_per_s
            .as_ref()
            .map_or(self.memory.bandwidth_bytes_per_s.value, |c| c.value)
    }
}

fn rate_of(rates: &[PrecisionRate], precision: Precision) -> Option<f64> {
    rates
        .iter()
        .find(|r| r.precision == precision)
        .map(|r| r.ops_per_s)
}

/// A precision listed twice would make the lookup silently take the first; reject it.
fn duplicate_precisions(field: &str, rates: &[PrecisionRate], errs: &mut Vec<String>) {
    for (j, r) in rates.iter().enumerate() {
        if rates[..j].iter().any(|q| q.precision == r.precision) {
            errs.push(format!(
                "`{field}[{j}]` lists `{}` a second time",
                r.precision
            ));
        }
    }
}
