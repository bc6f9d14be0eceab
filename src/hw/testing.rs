//! Test fixtures: device profiles built in code, for tests and benchmarks only.
//!
//! The numbers are plausible for a recent phone SoC (UFS 4.0 flash, big/little CPU, an NPU,
//! TrustZone) but they are **not** a real device's profile: every value's source says
//! "test fixture". Real profiles live in `scenarios/devices/*.json` with their citations; do
//! not use these to draw conclusions.

use crate::hw::{
    AcceleratorKind, AcceleratorSpec, CpuCluster, CurvePoint, DeviceProfile, HostMemorySpec,
    LinkSpec, MemorySpec, OffloadTier, PrecisionRate, StorageSpec, TeeSpec,
};
use crate::model::Precision;
use crate::sourced::Sourced;
use crate::units::{GIB, KIB};

const SOURCE: &str = "test fixture";

fn fixture<T>(value: T) -> Sourced<T> {
    Sourced::new(value, SOURCE)
}

fn rates(per_precision: &[(Precision, f64)]) -> Sourced<Vec<PrecisionRate>> {
    fixture(
        per_precision
            .iter()
            .map(|&(precision, ops_per_s)| PrecisionRate {
                precision,
                ops_per_s,
            })
            .collect(),
    )
}

/// A phone-like device: flash offload tier (8 channels, 4 KiB → 512 KiB curve), a 4-core big
/// and a 4-core little cluster, a 1-server NPU (fp16, int8, int4) and a TEE.
pub fn test_device() -> DeviceProfile {
    let cpu_rates = [
        (Precision::Fp16, 8e9),
        (Precision::Int8, 16e9),
        (Precision::Int4, 24e9),
        (Precision::Int3, 24e9),
        (Precision::Int2, 32e9),
    ];
    let little_rates = cpu_rates.map(|(p, r)| (p, r / 4.0));
    DeviceProfile {
        name: "test-phone".into(),
        description: "test fixture: plausible phone SoC, not a real device".into(),
        memory: MemorySpec {
            capacity_bytes: fixture(16 * GIB),
            app_available_bytes: Some(fixture(12 * GIB)),
            bandwidth_bytes_per_s: fixture(60e9),
            cpu_bandwidth_bytes_per_s: None,
            alloc_bytes_per_s: fixture(10e9),
        },
        offload_tier: OffloadTier::Flash,
        storage: StorageSpec {
            kind: "UFS 4.0 (test fixture)".into(),
            channels: fixture(8),
            request_latency_ns: fixture(60_000),
            read_curve: fixture(vec![
                CurvePoint {
                    request_bytes: 4 * KIB,
                    bytes_per_s: 1.0e9,
                },
                CurvePoint {
                    request_bytes: 64 * KIB,
                    bytes_per_s: 2.5e9,
                },
                CurvePoint {
                    request_bytes: 512 * KIB,
                    bytes_per_s: 4.0e9,
                },
            ]),
            access: None,
        },
        host_link: None,
        host_memory: None,
        cpu: vec![
            CpuCluster {
                name: "big".into(),
                cores: fixture(4),
                core_ops_per_s: rates(&cpu_rates),
                dequant_core_ops_per_s: None,
                core_bandwidth_bytes_per_s: fixture(15e9),
                launch_overhead_ns: fixture(3_000),
                weight_pass_per_s: None,
            },
            CpuCluster {
                name: "little".into(),
                cores: fixture(4),
                core_ops_per_s: rates(&little_rates),
                dequant_core_ops_per_s: None,
                core_bandwidth_bytes_per_s: fixture(5e9),
                launch_overhead_ns: fixture(5_000),
                weight_pass_per_s: None,
            },
        ],
        accelerator: Some(AcceleratorSpec {
            kind: AcceleratorKind::Npu,
            name: "test-npu".into(),
            servers: fixture(1),
            ops_per_s: rates(&[
                (Precision::Fp16, 2e12),
                (Precision::Int8, 8e12),
                (Precision::Int4, 8e12),
            ]),
            bandwidth_bytes_per_s: fixture(50e9),
            dispatch_latency_ns: fixture(50_000),
        }),
        tee: Some(TeeSpec {
            world_switch_ns: fixture(30_000),
            secure_alloc_bytes_per_s: fixture(1.5e9),
            secure_alloc_total_bytes_per_s: None,
            decrypt_bytes_per_s_per_core: fixture(1.2e9),
            npu_reinit_ns: fixture(20_000_000),
        }),
        energy: None,
    }
}

/// A laptop-with-GPU-like device: weights offloaded to host memory over a PCIe link, one
/// 8-core CPU cluster, a 1-server GPU, no TEE.
pub fn test_device_host_memory() -> DeviceProfile {
    let mut d = test_device();
    d.name = "test-pcie".into();
    d.description = "test fixture: discrete GPU with host-memory offload, not a real device".into();
    d.offload_tier = OffloadTier::HostMemory;
    d.host_link = Some(LinkSpec {
        kind: "PCIe 4.0 x16 (test fixture)".into(),
        bandwidth_bytes_per_s: fixture(25e9),
        latency_ns: fixture(2_000),
    });
    d.host_memory = Some(HostMemorySpec {
        capacity_bytes: fixture(256 * GIB),
        bandwidth_bytes_per_s: fixture(100e9),
    });
    d.cpu.truncate(1);
    d.cpu[0].name = "all".into();
    d.cpu[0].cores = fixture(8);
    d.accelerator = Some(AcceleratorSpec {
        kind: AcceleratorKind::Gpu,
        name: "test-gpu".into(),
        servers: fixture(1),
        ops_per_s: rates(&[(Precision::Fp16, 100e12), (Precision::Int8, 200e12)]),
        bandwidth_bytes_per_s: fixture(900e9),
        dispatch_latency_ns: fixture(5_000),
    });
    d.tee = None;
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_pass_the_profile_check_and_say_they_are_fixtures() {
        for d in [test_device(), test_device_host_memory()] {
            d.check().unwrap();
            assert_eq!(d.storage.channels.source, SOURCE);
            assert!(d.description.contains("test fixture"));
        }
    }
}
