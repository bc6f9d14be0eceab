//! The host-to-accelerator link (PCIe): reads of weights kept in host memory.
//!
//! When a device's offload tier is host memory (a discrete GPU whose experts sit in CPU DRAM),
//! a Read op crosses the link instead of touching flash. The link is one server: transfers
//! queue behind each other, each holding it for `B / bandwidth`; the setup latency is paid
//! before a transfer joins the queue, so an unloaded transfer takes `latency + B / bandwidth`. DMA engines can overlap
//! transfers, but a single copy already saturates the link, so serialising them loses little.

use super::{check_positive, CostError};
use crate::hw::LinkSpec;
use crate::units::{transfer_time, Nanos};

#[derive(Clone, Debug, PartialEq)]
pub struct LinkModel {
    latency_ns: u64,
    bandwidth_bytes_per_s: f64,
}

impl LinkModel {
    pub fn new(spec: &LinkSpec) -> Result<Self, CostError> {
        check_positive(
            "host_link.bandwidth_bytes_per_s",
            spec.bandwidth_bytes_per_s.value,
        )?;
        Ok(LinkModel {
            latency_ns: spec.latency_ns.value,
            bandwidth_bytes_per_s: spec.bandwidth_bytes_per_s.value,
        })
    }

    /// Time to move `bytes` across the link, the link otherwise idle.
    pub fn transfer(&self, bytes: u64) -> Nanos {
        self.latency() + self.occupancy(bytes)
    }

    /// Delay before a transfer's data starts moving; it does not hold the link.
    pub fn latency(&self) -> Nanos {
        Nanos(self.latency_ns)
    }

    /// Time the link is busy moving `bytes`.
    pub fn occupancy(&self, bytes: u64) -> Nanos {
        transfer_time(bytes, self.bandwidth_bytes_per_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sourced::Sourced;
    use crate::units::MIB;

    fn pcie4_x16() -> LinkModel {
        LinkModel::new(&LinkSpec {
            kind: "PCIe 4.0 x16".into(),
            bandwidth_bytes_per_s: Sourced::new(25e9, "test"),
            latency_ns: Sourced::new(1_500, "test"),
        })
        .unwrap()
    }

    #[test]
    fn unloaded_transfer_is_latency_plus_size_over_bandwidth() {
        let l = pcie4_x16();
        assert_eq!(l.transfer(0), Nanos(1_500));
        // 1000 B at 25 GB/s = 40 ns.
        assert_eq!(l.transfer(1_000), Nanos(1_540));
        // 1 B rounds up to 1 ns.
        assert_eq!(l.transfer(1), Nanos(1_501));
    }

    #[test]
    fn long_transfer_reaches_the_link_bandwidth() {
        let l = pcie4_x16();
        let bytes = 1024 * MIB;
        let achieved = bytes as f64 / l.transfer(bytes).as_secs_f64();
        assert!(achieved <= 25e9);
        assert!(achieved > 0.9999 * 25e9, "{achieved}");
    }

    #[test]
    fn zero_bandwidth_is_rejected() {
        let err = LinkModel::new(&LinkSpec {
            kind: "x".into(),
            bandwidth_bytes_per_s: Sourced::new(0.0, "test"),
            latency_ns: Sourced::new(0, "test"),
        })
        .unwrap_err();
        assert!(err.to_string().contains("host_link.bandwidth_bytes_per_s"));
    }
}
