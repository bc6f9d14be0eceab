//! Compute on CPU clusters and on the accelerator: a roofline plus a fixed start-up cost.
//!
//! A GEMV-shaped op is bound either by arithmetic (`flops / peak`) or by the weight bytes it
//! streams from DRAM (`bytes / bandwidth`); decode-time ops are almost always the latter, which
//! is why low-bit weights pay off twice (fewer bytes to read from flash *and* from DRAM).
//!
//! - CPU: the op occupies `threads` cores of one cluster. Arithmetic scales with the threads;
//!   bandwidth scales with them too until the shared DRAM bandwidth caps it:
//!   `launch + max(flops / (threads · core_rate(p)), bytes / min(threads · core_bw, dram_bw))`.
//!   Where the profile measures a weight pass rate (`weight_pass_per_s`, edgesim calibrate),
//!   the arithmetic term also pays `weights / (threads · weight_pass)` once per op: a LUT
//!   kernel's cost has a part that goes with the weights whatever the batch and a part that
//!   goes with each activation vector.
//! - Accelerator: one server (an NPU core, or the whole GPU):
//!   `dispatch + max(flops / rate(p), bytes / accel_bw)`.
//!
//! A precision the profile lists no rate for is unsupported on that unit (an NPU without int3
//! kernels), which is an error rather than a guess.
//!
//! **Kernel kinds.** A CPU op says which kind of kernel computes it ([`Kernel`]): edgesim's own
//! LUT kernels (T-MAC style; `core_ops_per_s`), or the dequantize-then-multiply kernels of
//! llama.cpp, which expand each block of quantized weights to 8-bit or float and take dot
//! products with the quantized activations (ggml's CPU path: `ggml_vec_dot_q4_0_q8_0`,
//! `ggml_vec_dot_q3_K_q8_K`, `ggml_vec_dot_q2_K_q8_K`, `ggml_vec_dot_q8_0_q8_0` in
//! `ggml-cpu/arch/*/quants.c`). A `Dequant` op is priced at `dequant_core_ops_per_s` where the
//! profile measures that precision, without the LUT kernels' weight pass (the measured rate
//! already includes the dequantization); where it does not, at `core_ops_per_s` like any other
//! op, so a profile without dequant measurements prices both kinds alike. The accelerator has
//! one rate per precision whatever the kernel.

use super::{check_positive, CostError};
use crate::hw::{AcceleratorSpec, CpuCluster, PrecisionRate};
use crate::model::Precision;
use crate::units::{transfer_time, work_time, Nanos};

/// Which kind of kernel a CPU compute op runs (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Kernel {
    /// edgesim's LUT kernels (T-MAC style), the default.
    #[default]
    Lut,
    /// llama.cpp's dequantize-then-multiply kernels (ggml's `ggml_vec_dot_*` CPU path).
    Dequant,
}

/// Per-precision rates, indexed by [`Precision::index`]; `None` where the unit has no kernel.
type RateTable = [Option<f64>; Precision::ALL.len()];

fn rate_table(field: &str, rates: &[PrecisionRate]) -> Result<RateTable, CostError> {
    let mut table: RateTable = [None; Precision::ALL.len()];
    for (j, r) in rates.iter().enumerate() {
        check_positive(&format!("{field}[{j}].ops_per_s"), r.ops_per_s)?;
        table[r.precision.index()] = Some(r.ops_per_s);
    }
    Ok(table)
}

/// One CPU cluster, priced as a roofline over the cores an op uses.
#[derive(Clone, Debug, PartialEq)]
pub struct CpuModel {
    /// `cpu.<cluster name>`, as in resource names and error messages.
    name: String,
    cores: u32,
    core_rates: RateTable,
    /// `dequant_core_ops_per_s`, where the profile measures it (all `None` otherwise).
    dequant_rates: RateTable,
    core_bandwidth_bytes_per_s: f64,
    memory_bandwidth_bytes_per_s: f64,
    launch_overhead_ns: u64,
    weight_pass_per_s: Option<f64>,
}

impl CpuModel {
    /// `index` is the cluster's place in the profile's `cpu` list (for error messages);
    /// `memory_bandwidth_bytes_per_s` is the DRAM bandwidth all units share.
    pub fn new(
        index: usize,
        cluster: &CpuCluster,
        memory_bandwidth_bytes_per_s: f64,
    ) -> Result<Self, CostError> {
        if cluster.cores.value == 0 {
            return Err(CostError::BadProfile {
                field: format!("cpu[{index}].cores"),
                problem: "must be at least 1".into(),
            });
        }
        check_positive(
            &format!("cpu[{index}].core_bandwidth_bytes_per_s"),
            cluster.core_bandwidth_bytes_per_s.value,
        )?;
        check_positive("memory.bandwidth_bytes_per_s", memory_bandwidth_bytes_per_s)?;
        Ok(CpuModel {
            name: format!("cpu.{}", cluster.name),
            cores: cluster.cores.value,
            core_rates: rate_table(
                &format!("cpu[{index}].core_ops_per_s"),
                &cluster.core_ops_per_s.value,
            )?,
            dequant_rates: match &cluster.dequant_core_ops_per_s {
                Some(d) => rate_table(&format!("cpu[{index}].dequant_core_ops_per_s"), &d.value)?,
                None => [None; Precision::ALL.len()],
            },
            core_bandwidth_bytes_per_s: cluster.core_bandwidth_bytes_per_s.value,
            memory_bandwidth_bytes_per_s,
            launch_overhead_ns: cluster.launch_overhead_ns.value,
            weight_pass_per_s: match &cluster.weight_pass_per_s {
                Some(w) => {
                    check_positive(&format!("cpu[{index}].weight_pass_per_s"), w.value)?;
                    Some(w.value)
                }
                None => None,
            },
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn cores(&self) -> u32 {
        self.cores
    }

    /// Checks that an op may run on `threads` cores of this cluster.
    pub fn check_threads(&self, threads: u32) -> Result<(), CostError> {
        if threads == 0 {
            return Err(CostError::ZeroThreads {
                unit: self.name.clone(),
            });
        }
        if threads > self.cores {
            return Err(CostError::TooManyThreads {
                unit: self.name.clone(),
                cores: self.cores,
                threads,
            });
        }
        Ok(())
    }

    /// Sustained ops/s of one core at `precision`.
    pub fn core_rate(&self, precision: Precision) -> Result<f64, CostError> {
        self.core_rates[precision.index()].ok_or_else(|| CostError::UnsupportedPrecision {
            unit: self.name.clone(),
            precision,
        })
    }

    /// DRAM bandwidth `threads` cores draw together.
    pub fn bandwidth_bytes_per_s(&self, threads: u32) -> f64 {
        (threads as f64 * self.core_bandwidth_bytes_per_s).min(self.memory_bandwidth_bytes_per_s)
    }

    /// Duration of `flops` arithmetic over `bytes` of weights on `threads` cores.
    pub fn compute(
        &self,
        threads: u32,
        precision: Precision,
        flops: u64,
        bytes: u64,
    ) -> Result<Nanos, CostError> {
        self.compute_weights(threads, precision, flops, bytes, 0)
    }

    /// [`CpuModel::compute`] for an op over `weights` weights, which also pays the weight
    /// pass when the profile measures one.
    pub fn compute_weights(
        &self,
        threads: u32,
        precision: Precision,
        flops: u64,
        bytes: u64,
        weights: u64,
    ) -> Result<Nanos, CostError> {
        self.compute_kernel(Kernel::Lut, threads, precision, flops, bytes, weights)
    }

    /// The rate one core computes `precision` at with `kernel`, and whether the LUT kernels'
    /// weight pass applies (see the module docs).
    pub fn kernel_rate(
        &self,
        kernel: Kernel,
        precision: Precision,
    ) -> Result<(f64, bool), CostError> {
        match (kernel, self.dequant_rates[precision.index()]) {
            (Kernel::Dequant, Some(rate)) => Ok((rate, false)),
            _ => Ok((self.core_rate(precision)?, true)),
        }
    }

    /// [`CpuModel::compute_weights`] for an op computed by `kernel`.
    pub fn compute_kernel(
        &self,
        kernel: Kernel,
        threads: u32,
        precision: Precision,
        flops: u64,
        bytes: u64,
        weights: u64,
    ) -> Result<Nanos, CostError> {
        self.check_threads(threads)?;
        let (core_rate, weight_pass) = self.kernel_rate(kernel, precision)?;
        let rate = threads as f64 * core_rate;
        let arithmetic = match self.weight_pass_per_s.filter(|_| weight_pass) {
            // Exactly the plain roofline's arithmetic (same rounding) without a weight pass.
            None => work_time(flops as f64, rate),
            Some(w) => work_time(
                flops as f64 / rate + weights as f64 / (threads as f64 * w),
                1.0,
            ),
        };
        let memory = transfer_time(bytes, self.bandwidth_bytes_per_s(threads));
        Ok(Nanos(self.launch_overhead_ns) + arithmetic.max(memory))
    }
}

/// The accelerator (GPU or NPU): each op takes one server.
#[derive(Clone, Debug, PartialEq)]
pub struct AccelModel {
    name: String,
    servers: u32,
    rates: RateTable,
    bandwidth_bytes_per_s: f64,
    dispatch_latency_ns: u64,
}

impl AccelModel {
    pub fn new(spec: &AcceleratorSpec) -> Result<Self, CostError> {
        if spec.servers.value == 0 {
            return Err(CostError::BadProfile {
                field: "accelerator.servers".into(),
                problem: "must be at least 1".into(),
            });
        }
        check_positive(
            "accelerator.bandwidth_bytes_per_s",
            spec.bandwidth_bytes_per_s.value,
        )?;
        Ok(AccelModel {
            name: format!("accelerator {}", spec.name),
            servers: spec.servers.value,
            rates: rate_table("accelerator.ops_per_s", &spec.ops_per_s.value)?,
            bandwidth_bytes_per_s: spec.bandwidth_bytes_per_s.value,
            dispatch_latency_ns: spec.dispatch_latency_ns.value,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn servers(&self) -> u32 {
        self.servers
    }

    pub fn rate(&self, precision: Precision) -> Result<f64, CostError> {
        self.rates[precision.index()].ok_or_else(|| CostError::UnsupportedPrecision {
            unit: self.name.clone(),
            precision,
        })
    }

    pub fn compute(
        &self,
        precision: Precision,
        flops: u64,
        bytes: u64,
    ) -> Result<Nanos, CostError> {
        let arithmetic = work_time(flops as f64, self.rate(precision)?);
        let memory = transfer_time(bytes, self.bandwidth_bytes_per_s);
        Ok(Nanos(self.dispatch_latency_ns) + arithmetic.max(memory))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::AcceleratorKind;
    use crate::sourced::Sourced;

    fn rate(precision: Precision, ops_per_s: f64) -> PrecisionRate {
        PrecisionRate {
            precision,
            ops_per_s,
        }
    }

    /// 4 cores; int4 at 10 Gop/s per core; 10 GB/s per core; 30 GB/s DRAM; 2 us launch.
    fn big_cluster() -> CpuModel {
        let c = CpuCluster {
            name: "big".into(),
            cores: Sourced::new(4, "test"),
            core_ops_per_s: Sourced::new(
                vec![rate(Precision::Int4, 10e9), rate(Precision::Fp16, 5e9)],
                "test",
            ),
            dequant_core_ops_per_s: None,
            core_bandwidth_bytes_per_s: Sourced::new(10e9, "test"),
            launch_overhead_ns: Sourced::new(2_000, "test"),
            weight_pass_per_s: None,
        };
        CpuModel::new(0, &c, 30e9).unwrap()
    }

    fn npu() -> AccelModel {
        AccelModel::new(&AcceleratorSpec {
            kind: AcceleratorKind::Npu,
            name: "hexagon".into(),
            servers: Sourced::new(2, "test"),
            ops_per_s: Sourced::new(vec![rate(Precision::Int8, 1e12)], "test"),
            bandwidth_bytes_per_s: Sourced::new(50e9, "test"),
            dispatch_latency_ns: Sourced::new(100_000, "test"),
        })
        .unwrap()
    }

    #[test]
    fn memory_bound_cpu_op_is_launch_plus_bytes_over_bandwidth() {
        let cpu = big_cluster();
        // 1 thread: 10 GB/s. 10 MB takes 1 ms; 1 Mflop at 10 Gop/s takes 0.1 ms.
        assert_eq!(
            cpu.compute(1, Precision::Int4, 1_000_000, 10_000_000)
                .unwrap(),
            Nanos(2_000 + 1_000_000)
        );
        // 2 threads: 20 GB/s.
        assert_eq!(
            cpu.compute(2, Precision::Int4, 1_000_000, 10_000_000)
                .unwrap(),
            Nanos(2_000 + 500_000)
        );
    }

    #[test]
    fn a_measured_weight_pass_adds_to_the_arithmetic() {
        let mut c = CpuCluster {
            name: "big".into(),
            cores: Sourced::new(4, "test"),
            core_ops_per_s: Sourced::new(vec![rate(Precision::Int4, 10e9)], "test"),
            dequant_core_ops_per_s: None,
            core_bandwidth_bytes_per_s: Sourced::new(10e9, "test"),
            launch_overhead_ns: Sourced::new(2_000, "test"),
            weight_pass_per_s: Some(Sourced::new(1e9, "test")),
        };
        let cpu = CpuModel::new(0, &c, 30e9).unwrap();
        // 2 threads: 20 Mflop at 20 Gop/s = 1 ms, plus 2 M weights at 2 G weights/s = 1 ms.
        assert_eq!(
            cpu.compute_weights(2, Precision::Int4, 20_000_000, 1, 2_000_000)
                .unwrap(),
            Nanos(2_000 + 2_000_000)
        );
        // Without a measured pass the op is the plain roofline.
        c.weight_pass_per_s = None;
        let plain = CpuModel::new(0, &c, 30e9).unwrap();
        assert_eq!(
            plain
                .compute_weights(2, Precision::Int4, 20_000_000, 1, 2_000_000)
                .unwrap(),
            plain.compute(2, Precision::Int4, 20_000_000, 1).unwrap()
        );
    }

    #[test]
    fn dequant_ops_run_at_the_measured_dequant_rate_without_the_lut_weight_pass() {
        let c = CpuCluster {
            name: "big".into(),
            cores: Sourced::new(4, "test"),
            core_ops_per_s: Sourced::new(
                vec![rate(Precision::Int4, 10e9), rate(Precision::Int8, 10e9)],
                "test",
            ),
            dequant_core_ops_per_s: Some(Sourced::new(vec![rate(Precision::Int4, 5e9)], "test")),
            core_bandwidth_bytes_per_s: Sourced::new(10e9, "test"),
            launch_overhead_ns: Sourced::new(2_000, "test"),
            weight_pass_per_s: Some(Sourced::new(1e9, "test")),
        };
        let cpu = CpuModel::new(0, &c, 30e9).unwrap();
        // int4, 2 threads, 20 Mflop: LUT = 1 ms arithmetic + 1 ms weight pass; dequant at
        // 5 Gop/s per core = 2 ms, and no weight pass.
        let lut = cpu
            .compute_kernel(Kernel::Lut, 2, Precision::Int4, 20_000_000, 1, 2_000_000)
            .unwrap();
        let dequant = cpu
            .compute_kernel(
                Kernel::Dequant,
                2,
                Precision::Int4,
                20_000_000,
                1,
                2_000_000,
            )
            .unwrap();
        assert_eq!(lut, Nanos(2_000 + 2_000_000));
        assert_eq!(dequant, Nanos(2_000 + 2_000_000));
        let dequant_small = cpu
            .compute_kernel(
                Kernel::Dequant,
                2,
                Precision::Int4,
                20_000_000,
                1,
                20_000_000,
            )
            .unwrap();
        assert_eq!(
            dequant_small, dequant,
            "the weight count does not matter to dequant"
        );
        // int8 has no measured dequant rate: priced like the LUT op.
        assert_eq!(
            cpu.compute_kernel(
                Kernel::Dequant,
                2,
                Precision::Int8,
                20_000_000,
                1,
                2_000_000
            )
            .unwrap(),
            cpu.compute_kernel(Kernel::Lut, 2, Precision::Int8, 20_000_000, 1, 2_000_000)
                .unwrap()
        );
    }

    #[test]
    fn cpu_bandwidth_is_capped_by_dram() {
        let cpu = big_cluster();
        // 4 threads would draw 40 GB/s; DRAM gives 30 GB/s. 30 MB takes 1 ms.
        assert_eq!(cpu.bandwidth_bytes_per_s(4), 30e9);
        assert_eq!(
            cpu.compute(4, Precision::Int4, 0, 30_000_000).unwrap(),
            Nanos(2_000 + 1_000_000)
        );
    }

    #[test]
    fn compute_bound_cpu_op_scales_with_threads_and_precision() {
        let cpu = big_cluster();
        // 40 Gflop over 4 threads at 10 Gop/s each: 1 s. Same at fp16 (5 Gop/s): 2 s.
        assert_eq!(
            cpu.compute(4, Precision::Int4, 40_000_000_000, 1).unwrap(),
            Nanos(2_000 + 1_000_000_000)
        );
        assert_eq!(
            cpu.compute(4, Precision::Fp16, 40_000_000_000, 1).unwrap(),
            Nanos(2_000 + 2_000_000_000)
        );
    }

    #[test]
    fn a_long_streaming_op_reaches_dram_bandwidth() {
        let cpu = big_cluster();
        let bytes = 3_000_000_000;
        let d = cpu.compute(4, Precision::Int4, 0, bytes).unwrap();
        let achieved = bytes as f64 / d.as_secs_f64();
        // Only the 2 us launch overhead separates it from the peak: 2e-5 of 100 ms.
        assert!(achieved <= 30e9 && achieved > 0.9999 * 30e9, "{achieved}");
    }

    #[test]
    fn cpu_rejects_unlisted_precision_and_bad_thread_counts() {
        let cpu = big_cluster();
        let e = cpu.compute(1, Precision::Int2, 1, 1).unwrap_err();
        assert_eq!(
            e,
            CostError::UnsupportedPrecision {
                unit: "cpu.big".into(),
                precision: Precision::Int2
            }
        );
        assert!(e.to_string().contains("cpu.big") && e.to_string().contains("int2"));
        let e = cpu.compute(5, Precision::Int4, 1, 1).unwrap_err();
        assert!(matches!(
            e,
            CostError::TooManyThreads {
                threads: 5,
                cores: 4,
                ..
            }
        ));
        assert!(!e.is_plan_error());
        let e = cpu.compute(0, Precision::Int4, 1, 1).unwrap_err();
        assert!(e.is_plan_error(), "{e}");
    }

    #[test]
    fn accel_is_dispatch_plus_roofline() {
        let a = npu();
        // Memory bound: 50 MB at 50 GB/s = 1 ms.
        assert_eq!(
            a.compute(Precision::Int8, 1_000, 50_000_000).unwrap(),
            Nanos(100_000 + 1_000_000)
        );
        // Compute bound: 2 Tflop at 1 Top/s = 2 s.
        assert_eq!(
            a.compute(Precision::Int8, 2_000_000_000_000, 1).unwrap(),
            Nanos(100_000 + 2_000_000_000)
        );
        // Empty op: dispatch only.
        assert_eq!(a.compute(Precision::Int8, 0, 0).unwrap(), Nanos(100_000));
    }

    #[test]
    fn accel_rejects_unlisted_precision_naming_itself() {
        let e = npu().compute(Precision::Int3, 1, 1).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("hexagon") && msg.contains("int3"), "{msg}");
    }

    #[test]
    fn bad_rates_are_rejected_naming_the_field() {
        let mut c = CpuCluster {
            name: "little".into(),
            cores: Sourced::new(4, "test"),
            core_ops_per_s: Sourced::new(vec![rate(Precision::Int4, -1.0)], "test"),
            dequant_core_ops_per_s: None,
            core_bandwidth_bytes_per_s: Sourced::new(1e9, "test"),
            launch_overhead_ns: Sourced::new(0, "test"),
            weight_pass_per_s: None,
        };
        let e = CpuModel::new(2, &c, 1e9).unwrap_err();
        assert!(e.to_string().contains("cpu[2].core_ops_per_s[0]"), "{e}");
        c.core_ops_per_s.value.clear();
        c.cores.value = 0;
        let e = CpuModel::new(2, &c, 1e9).unwrap_err();
        assert!(e.to_string().contains("cpu[2].cores"), "{e}");
    }
}
