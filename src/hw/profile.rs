//! The device profile as written in `scenarios/devices/*.json`.
//!
//! Every number is a [`Sourced`] value: a datasheet, a paper's table or figure, or one of our
//! calibration runs. [`DeviceProfile::check`] rejects values that cannot be right (zero or
//! negative bandwidths, an empty curve) with the field's path in the message.

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
    /// Rate at which ordinary (non-secure) memory is allocated and first touched.
    pub alloc_bytes_per_s: Sourced<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSpec {
    /// e.g. "NVMe PCIe 4.0", "UFS 4.0".
    pub kind: String,
    /// Requests the device serves in parallel (NVMe queues, flash channels). A read op spreads
    /// its requests over up to this many.
    pub channels: Sourced<u32>,
    /// Time from issuing a request to its first byte, with the device otherwise idle.
    pub request_latency_ns: Sourced<u64>,
    /// Aggregate read bandwidth as a function of request size, with all channels busy.
    /// Interpolated linearly in log2(request size); clamped at the ends.
    pub read_curve: Sourced<Vec<CurvePoint>>,
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
    /// Memory bandwidth one core can draw on its own.
    pub core_bandwidth_bytes_per_s: Sourced<f64>,
    /// Fixed cost of starting a kernel (thread wake-up, table setup).
    pub launch_overhead_ns: Sourced<u64>,
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
    /// Sustained arithmetic rate per precision; a precision not listed is unsupported.
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
    /// Decryption rate of one core.
    pub decrypt_bytes_per_s_per_core: Sourced<f64>,
    /// Full NPU detach and re-attach, paid on each switch when there is no co-driver.
    pub npu_reinit_ns: Sourced<u64>,
}

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
            if v.is_nan() || v <= 0.0 {
                errs.push(format!("`{field}` must be positive, got {v}"));
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
        for (i, c) in self.cpu.iter().enumerate() {
            positive(format!("cpu[{i}].cores"), c.cores.value as f64);
            positive(
                format!("cpu[{i}].core_bandwidth_bytes_per_s"),
                c.core_bandwidth_bytes_per_s.value,
            );
            for (j, r) in c.core_ops_per_s.value.iter().enumerate() {
                positive(
                    format!("cpu[{i}].core_ops_per_s[{j}].ops_per_s"),
                    r.ops_per_s,
                );
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
            positive(
                "tee.decrypt_bytes_per_s_per_core".into(),
                t.decrypt_bytes_per_s_per_core.value,
            );
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
        if self.cpu.is_empty() {
            errs.push("`cpu` needs at least one cluster".into());
        }
        if self.offload_tier == OffloadTier::HostMemory && self.host_link.is_none() {
            errs.push("`offload_tier` is `host_memory` but there is no `host_link`".into());
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
        self.cpu.get(cluster).and_then(|c| {
            c.core_ops_per_s
                .value
                .iter()
                .find(|r| r.precision == precision)
                .map(|r| r.ops_per_s)
        })
    }

    pub fn accel_rate(&self, precision: Precision) -> Option<f64> {
        self.accelerator.as_ref().and_then(|a| {
            a.ops_per_s
                .value
                .iter()
                .find(|r| r.precision == precision)
                .map(|r| r.ops_per_s)
        })
    }
}
