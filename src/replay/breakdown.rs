//! Where a prefill pass's time went, by kind of work: the restoration breakdown of TZ-LLM's
//! Fig. 12 (allocation, loading, decryption, computation) and the three totals its lower bound
//! takes the largest of.
//!
//! Computed from a pass's plan and the timings the backend returned, only when asked
//! ([`ReplayOptions::breakdown`](super::ReplayOptions)): it costs a pass over the ops.

use crate::backend::OpTiming;
use crate::plan::{Op, Plan, Unit};
use serde::Serialize;

/// Sums over the ops of prefill passes, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Breakdown {
    pub passes: u64,
    /// Latency of the passes.
    pub latency_ns: u64,
    /// Secure allocation (CMA migration): time allocating threads spent, summed.
    pub alloc_ns: u64,
    /// Time at least one read was in flight (the union of the reads' intervals).
    pub read_ns: u64,
    /// Decryption core-time (duration × threads), summed.
    pub decrypt_ns: u64,
    /// Wall time of compute ops on CPU cores, and on the accelerator.
    pub cpu_compute_ns: u64,
    pub accel_compute_ns: u64,
    /// World switches and NPU hand-overs.
    pub switch_ns: u64,
    /// Core-time of everything on CPU cores (compute × threads, decryption, allocation).
    pub cpu_busy_core_ns: u64,
}

impl Breakdown {
    /// Adds one pass: `plan`'s ops among `timings` (ops of earlier plans are left out).
    pub fn add(&mut self, plan: &Plan, timings: &[OpTiming], latency_ns: u64) {
        self.passes += 1;
        self.latency_ns += latency_ns;
        let mut reads: Vec<(u64, u64)> = Vec::new();
        for t in timings {
            let Some(node) = plan.get(t.id) else { continue };
            let d = t.end.0.saturating_sub(t.start.0);
            match node.op {
                Op::Alloc { secure: true, .. } => {
                    self.alloc_ns += d;
                    self.cpu_busy_core_ns += d;
                }
                Op::Read { .. } => reads.push((t.start.0, t.end.0)),
                Op::Decrypt { threads, .. } => {
                    self.decrypt_ns += d * threads as u64;
                    self.cpu_busy_core_ns += d * threads as u64;
                }
                Op::Compute {
                    unit: Unit::Cpu { threads, .. },
                    ..
                } => {
                    self.cpu_compute_ns += d;
                    self.cpu_busy_core_ns += d * threads as u64;
                }
                Op::Compute {
                    unit: Unit::Accel, ..
                } => self.accel_compute_ns += d,
                Op::WorldSwitch { .. } | Op::NpuHandover { .. } => self.switch_ns += d,
                Op::Alloc { .. } | Op::Evict { .. } | Op::Join => {}
            }
        }
        reads.sort_unstable();
        let mut covered_to = 0u64;
        for (start, end) in reads {
            let from = start.max(covered_to);
            if end > from {
                self.read_ns += end - from;
            }
            covered_to = covered_to.max(end);
        }
    }

    /// TZ-LLM's lower bound (§7.2.1): max(I/O, CPU work spread over `cores`, computation).
    pub fn lower_bound_ns(&self, cores: u32) -> u64 {
        let cpu = self.cpu_busy_core_ns / cores.max(1) as u64;
        self.read_ns
            .max(cpu)
            .max(self.cpu_compute_ns + self.accel_compute_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Precision, TensorRef};
    use crate::plan::PlanBuilder;
    use crate::units::Nanos;

    #[test]
    fn overlapping_reads_count_once_and_cpu_work_is_core_time() {
        let t = TensorRef::expert(0, 0);
        let mut b = PlanBuilder::new(0);
        let read = Op::Read {
            tensor: t,
            precision: Precision::Int8,
            bytes: 1,
            request_bytes: 1,
        };
        let r1 = b.push(read, &[]);
        let r2 = b.push(read, &[]);
        let d = b.push(
            Op::Decrypt {
                tensor: t,
                bytes: 1,
                cluster: 0,
                threads: 2,
            },
            &[r1],
        );
        let c = b.push(
            Op::matmul(
                t,
                Unit::Cpu {
                    cluster: 0,
                    threads: 4,
                },
                Precision::Int8,
                4,
                4,
                1,
            ),
            &[d, r2],
        );
        b.set_output(c);
        let plan = b.finish().unwrap();
        let timing = |id, start, end| OpTiming {
            id,
            resource: None,
            start: Nanos(start),
            end: Nanos(end),
        };
        let timings = [
            timing(r1, 0, 10),
            timing(r2, 5, 20),
            timing(d, 20, 30),
            timing(c, 30, 40),
        ];
        let mut bd = Breakdown::default();
        bd.add(&plan, &timings, 40);
        assert_eq!(bd.read_ns, 20);
        assert_eq!(bd.decrypt_ns, 20);
        assert_eq!(bd.cpu_compute_ns, 10);
        assert_eq!(bd.cpu_busy_core_ns, 20 + 40);
        // I/O 20, CPU 60/4 = 15, computation 10.
        assert_eq!(bd.lower_bound_ns(4), 20);
        assert_eq!(bd.lower_bound_ns(1), 60);
    }
}
