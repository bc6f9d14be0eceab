//! DRAM bandwidth shared by the CPU, the accelerator and I/O: what each concurrent stream
//! gets when together they ask for more than the memory delivers.
//!
//! PowerInfer-2 (arXiv 2406.06282 v3 §2.3) measured the OnePlus 12 running a 7B model's
//! matrix multiplications: CPU alone 43.9 GB/s, NPU alone 56 GB/s, both at once 59.6 GB/s
//! together. A profile states them as `memory.cpu_bandwidth_bytes_per_s`,
//! `accelerator.bandwidth_bytes_per_s` and `memory.bandwidth_bytes_per_s`. The model:
//!
//! - the memory delivers `cap`: the CPU-only figure when only CPU streams (and I/O) run, the
//!   accelerator-only figure when only the accelerator (and I/O) does, the together figure
//!   when both run (and when I/O runs alone: the most the memory was measured to deliver);
//! - each unit's demand is first capped at what it draws alone (all CPU streams together at
//!   the CPU figure, the accelerator's at its own);
//! - if the demands fit `cap`, each stream gets its demand; otherwise every stream is scaled by
//!   the same `cap / Σ demand` (the memory controller serves requests in proportion to how
//!   many each side issues).
//!
//! I/O (flash DMA into DRAM) counts against the same `cap`; the paper measured no figure with
//! I/O running, so that part is an assumption (at ≤ 4 GB/s of UFS 4.0 it is small).
//!
//! The simulator does not apply this yet: it prices every op at its unit's solo rate
//! (`docs/powerinfer2.md`, "What is not modelled"). This is the formula a contention-aware
//! engine would use, tested on its own (`tests/sim_contention.rs`).

use super::{check_positive, CostError};
use crate::hw::DeviceProfile;

/// Which side a stream of memory traffic comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Cpu,
    Accel,
    Io,
}

/// The three measured figures (bytes per second).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SharedDram {
    pub cpu_alone: f64,
    pub accel_alone: f64,
    pub together: f64,
}

impl SharedDram {
    /// From a profile: `None` when it lacks a separate CPU figure or an accelerator.
    pub fn from_profile(d: &DeviceProfile) -> Result<Option<SharedDram>, CostError> {
        let (Some(cpu), Some(accel)) = (&d.memory.cpu_bandwidth_bytes_per_s, &d.accelerator) else {
            return Ok(None);
        };
        let s = SharedDram {
            cpu_alone: cpu.value,
            accel_alone: accel.bandwidth_bytes_per_s.value,
            together: d.memory.bandwidth_bytes_per_s.value,
        };
        check_positive("memory.cpu_bandwidth_bytes_per_s", s.cpu_alone)?;
        check_positive("accelerator.bandwidth_bytes_per_s", s.accel_alone)?;
        check_positive("memory.bandwidth_bytes_per_s", s.together)?;
        Ok(Some(s))
    }

    /// What the memory delivers with these sides running.
    pub fn cap(&self, cpu: bool, accel: bool) -> f64 {
        match (cpu, accel) {
            (true, true) | (false, false) => self.together,
            (true, false) => self.cpu_alone,
            (false, true) => self.accel_alone,
        }
    }

    /// The rate each stream gets, in the order given; `demands` are what each would draw
    /// alone (bytes per second). Streams with no demand get 0.
    pub fn share(&self, demands: &[(Stream, f64)]) -> Vec<f64> {
        let active = |s: Stream| demands.iter().any(|&(k, d)| k == s && d > 0.0);
        let side_total = |s: Stream| -> f64 {
            demands
                .iter()
                .filter(|&&(k, _)| k == s)
                .map(|&(_, d)| d.max(0.0))
                .sum()
        };
        // Each unit's streams together draw at most what the unit draws alone.
        let unit_scale = |s: Stream| -> f64 {
            let (total, limit) = match s {
                Stream::Cpu => (side_total(Stream::Cpu), self.cpu_alone),
                Stream::Accel => (side_total(Stream::Accel), self.accel_alone),
                Stream::Io => (side_total(Stream::Io), self.together),
            };
            if total > limit {
                limit / total
            } else {
                1.0
            }
        };
        let capped: Vec<f64> = demands
            .iter()
            .map(|&(k, d)| d.max(0.0) * unit_scale(k))
            .collect();
        let cap = self.cap(active(Stream::Cpu), active(Stream::Accel));
        let total: f64 = capped.iter().sum();
        let scale = if total > cap { cap / total } else { 1.0 };
        capped.into_iter().map(|d| d * scale).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alone_each_side_gets_its_own_figure() {
        let m = SharedDram {
            cpu_alone: 43.9e9,
            accel_alone: 56e9,
            together: 59.6e9,
        };
        assert_eq!(m.share(&[(Stream::Cpu, 100e9)]), vec![43.9e9]);
        assert_eq!(m.share(&[(Stream::Accel, 100e9)]), vec![56e9]);
        assert_eq!(m.share(&[(Stream::Cpu, 10e9)]), vec![10e9]);
        assert_eq!(m.share(&[(Stream::Io, 0.0)]), vec![0.0]);
    }
}
