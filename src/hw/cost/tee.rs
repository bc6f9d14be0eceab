//! TrustZone costs: decrypting restored weights, allocating secure memory, switching worlds.
//!
//! These are the costs TZ-LLM's design hides or removes: decryption runs on CPU cores
//! (`B / (threads · per-core rate)`), secure memory is allocated by one thread at a measured
//! rate (CMA migration dominates it), and every switch between the normal and the secure world
//! pays a fixed cost on the single TEE resource. Which cores these ops occupy is the engine's
//! concern; this module prices them.

use super::{check_positive, CostError};
use crate::hw::TeeSpec;
use crate::units::{transfer_time, Nanos};

#[derive(Clone, Debug, PartialEq)]
pub struct TeeModel {
    world_switch_ns: u64,
    secure_alloc_bytes_per_s: f64,
    /// Several threads allocating at once reach this in total (`None`: not measured, so
    /// allocation is taken not to scale beyond one thread).
    secure_alloc_total_bytes_per_s: Option<f64>,
    decrypt_bytes_per_s_per_core: f64,
    npu_reinit_ns: u64,
}

impl TeeModel {
    pub fn new(spec: &TeeSpec) -> Result<Self, CostError> {
        check_positive(
            "tee.secure_alloc_bytes_per_s",
            spec.secure_alloc_bytes_per_s.value,
        )?;
        check_positive(
            "tee.decrypt_bytes_per_s_per_core",
            spec.decrypt_bytes_per_s_per_core.value,
        )?;
        if let Some(total) = &spec.secure_alloc_total_bytes_per_s {
            check_positive("tee.secure_alloc_total_bytes_per_s", total.value)?;
        }
        Ok(TeeModel {
            world_switch_ns: spec.world_switch_ns.value,
            secure_alloc_bytes_per_s: spec.secure_alloc_bytes_per_s.value,
            secure_alloc_total_bytes_per_s: spec
                .secure_alloc_total_bytes_per_s
                .as_ref()
                .map(|t| t.value),
            decrypt_bytes_per_s_per_core: spec.decrypt_bytes_per_s_per_core.value,
            npu_reinit_ns: spec.npu_reinit_ns.value,
        })
    }

    /// Decrypting `bytes` split evenly over `threads` cores (the caller checks the count).
    pub fn decrypt(&self, bytes: u64, threads: u32) -> Nanos {
        transfer_time(bytes, threads as f64 * self.decrypt_bytes_per_s_per_core)
    }

    /// Allocating `bytes` of secure memory on one thread.
    pub fn secure_alloc(&self, bytes: u64) -> Nanos {
        transfer_time(bytes, self.secure_alloc_bytes_per_s)
    }

    pub fn world_switch(&self) -> Nanos {
        Nanos(self.world_switch_ns)
    }

    /// The NPU's full detach from one world's driver and re-attach to the other's.
    pub fn npu_handover(&self) -> Nanos {
        Nanos(self.npu_reinit_ns)
    }

    /// How many secure allocations may run at once, each at the one-thread rate, so that
    /// together they reach the measured total: `round(total / one-thread rate)`, at least 1;
    /// `None` (no limit) when the profile gives no total.
    /// With TZ-LLM's figures (1.9 GB/s one thread, 3.8 GB/s four) that is 2: a third and
    /// fourth allocating thread add nothing, as CMA migration contends on the page allocator.
    /// A fixed-duration server model cannot slow every allocation as more start, so the
    /// measured ceiling is kept by bounding how many run concurrently instead.
    pub fn secure_alloc_lanes(&self) -> Option<u32> {
        self.secure_alloc_total_bytes_per_s
            .map(|total| ((total / self.secure_alloc_bytes_per_s).round() as u32).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sourced::Sourced;
    use crate::units::MIB;

    fn tee() -> TeeModel {
        TeeModel::new(&TeeSpec {
            world_switch_ns: Sourced::new(20_000, "test"),
            secure_alloc_bytes_per_s: Sourced::new(2e9, "test"),
            secure_alloc_total_bytes_per_s: None,
            decrypt_bytes_per_s_per_core: Sourced::new(1e9, "test"),
            npu_reinit_ns: Sourced::new(5_000_000, "test"),
        })
        .unwrap()
    }

    #[test]
    fn decrypt_scales_with_threads() {
        let t = tee();
        assert_eq!(t.decrypt(1_000_000, 1), Nanos(1_000_000));
        assert_eq!(t.decrypt(1_000_000, 4), Nanos(250_000));
        assert_eq!(t.decrypt(0, 4), Nanos::ZERO);
        // A long decryption reaches threads × per-core rate.
        let bytes = 1024 * MIB;
        let achieved = bytes as f64 / t.decrypt(bytes, 3).as_secs_f64();
        assert!(achieved <= 3e9 && achieved > 0.99999 * 3e9, "{achieved}");
    }

    #[test]
    fn secure_alloc_and_world_switch_follow_the_profile() {
        let t = tee();
        assert_eq!(t.secure_alloc(2_000_000), Nanos(1_000_000));
        assert_eq!(t.secure_alloc(1), Nanos(1));
        assert_eq!(t.world_switch(), Nanos(20_000));
        assert_eq!(t.npu_handover(), Nanos(5_000_000));
    }

    #[test]
    fn allocation_lanes_keep_the_measured_total() {
        let mut spec = TeeSpec {
            world_switch_ns: Sourced::new(1, "test"),
            secure_alloc_bytes_per_s: Sourced::new(2.04e9, "test"),
            secure_alloc_total_bytes_per_s: None,
            decrypt_bytes_per_s_per_core: Sourced::new(1.0, "test"),
            npu_reinit_ns: Sourced::new(1, "test"),
        };
        assert_eq!(TeeModel::new(&spec).unwrap().secure_alloc_lanes(), None);
        // TZ-LLM's 3.8 GiB/s with four threads over 1.9 GiB/s with one.
        spec.secure_alloc_total_bytes_per_s = Some(Sourced::new(4.08e9, "test"));
        let t = TeeModel::new(&spec).unwrap();
        assert_eq!(t.secure_alloc_lanes(), Some(2));
        // Lanes x one-thread rate is the total, to rounding.
        let total: f64 = 2.0 * 2.04e9;
        assert!((total - 4.08e9).abs() < 1e-6 * 4.08e9);
        spec.secure_alloc_total_bytes_per_s = Some(Sourced::new(0.0, "test"));
        assert!(TeeModel::new(&spec).is_err());
    }

    #[test]
    fn zero_rates_are_rejected() {
        let e = TeeModel::new(&TeeSpec {
            world_switch_ns: Sourced::new(1, "test"),
            secure_alloc_bytes_per_s: Sourced::new(1.0, "test"),
            secure_alloc_total_bytes_per_s: None,
            decrypt_bytes_per_s_per_core: Sourced::new(0.0, "test"),
            npu_reinit_ns: Sourced::new(1, "test"),
        })
        .unwrap_err();
        assert!(e.to_string().contains("tee.decrypt_bytes_per_s_per_core"));
    }
}
