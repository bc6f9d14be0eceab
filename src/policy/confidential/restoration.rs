//! Parameter restoration: one tensor's `alloc → read → (protect) → decrypt` chain, in
//! micro-ops, with TZ-LLM's priorities.
//!
//! TZ-LLM (§4.1) inserts three restoration operators before each prefill compute operator and
//! splits allocation and decryption into micro-operators, so that a compute operator that
//! becomes ready waits at most one micro-op. Its artifact keeps one pipeline per weight tensor
//! (`TZ-LLM/llama.cpp@158b3bd`, `src/prefetch.cpp`), with 4 MiB allocation blocks
//! (`src/alloc-stage-chcore.cpp`), 4 MiB reads (`src/io-stage.cpp`) and 64 KiB decryption
//! units (`src/decrypt-stage.cpp`). Protection (moving the TZASC region's end) is not priced:
//! TZ-LLM reports no cost for it (tzllm.md §2.4), so the decryption of a block simply follows
//! its read.
//!
//! Priorities are the paper's greedy rule, expressed in the queues' order (lower runs first):
//! a ready compute op at [`COMPUTE_PRIORITY`], else the restoration op of the earliest
//! consumer, at `1 + rank` where rank is the tensor's position in the compute order. A
//! compute op needing every core waits at the head of the CPU queue until the micro-ops
//! running on them end: that is the preemption at micro-op boundaries.

use crate::model::{Precision, TensorRef};
use crate::plan::{Op, OpId, PlanBuilder};

/// Queue priority of compute ops under the greedy rule: before every restoration op.
pub const COMPUTE_PRIORITY: i16 = -1;

/// One tensor to restore: its bytes and its position in the compute order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restorable {
    pub tensor: TensorRef,
    pub bytes: u64,
    /// Index of the tensor's first consumer in the compute order (0 = first).
    pub rank: u16,
}

/// Micro-op sizes; 0 means one op for the whole tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MicroOps {
    pub alloc_bytes: u64,
    pub read_bytes: u64,
    pub decrypt_bytes: u64,
}

/// TZ-LLM's artifact: 4 MiB allocation blocks, 4 MiB reads, 64 KiB decryption units.
pub const ARTIFACT_MICRO_OPS: MicroOps = MicroOps {
    alloc_bytes: 4 << 20,
    read_bytes: 4 << 20,
    decrypt_bytes: 64 << 10,
};

/// How a request's restoration is emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restorer {
    /// Secure allocation and decryption (TZ-LLM); otherwise a plain allocation per tensor and
    /// no decryption (REE-LLM-Flash: `malloc`, and a decryption stage that does nothing in the
    /// Linux build, `src/alloc-stage.cpp`, `src/decrypt-stage.cpp`).
    pub protect: bool,
    pub micro: MicroOps,
    /// The greedy priority; otherwise every op at priority 0 (first come, first served).
    pub priority: bool,
    /// Secure allocations that may run at once (`TeeModel::secure_alloc_lanes`).
    pub alloc_lanes: u32,
    pub precision: Precision,
}

/// The allocation lanes of one request: where the next block's allocation chains on.
#[derive(Clone, Debug, Default)]
pub struct Lanes {
    last: Vec<Option<OpId>>,
    next: usize,
}

impl Lanes {
    pub fn new(lanes: u32) -> Self {
        Lanes {
            last: vec![None; lanes.max(1) as usize],
            next: 0,
        }
    }

    /// The lane for the next block: round-robin, as the artifact spreads blocks over its CMA
    /// regions.
    fn take(&mut self) -> &mut Option<OpId> {
        let i = self.next;
        self.next = (self.next + 1) % self.last.len();
        &mut self.last[i]
    }
}

/// Cuts `bytes` into pieces of `unit` (0: one piece).
fn pieces(bytes: u64, unit: u64) -> impl Iterator<Item = u64> {
    let unit = if unit == 0 { bytes.max(1) } else { unit };
    let n = bytes.div_ceil(unit).max(1);
    (0..n).map(move |i| unit.min(bytes - i * unit.min(bytes)))
}

impl Restorer {
    pub fn priority(&self, rank: u16) -> i16 {
        if self.priority {
            1i16.saturating_add(rank.min(i16::MAX as u16 - 1) as i16)
        } else {
            0
        }
    }

    pub fn compute_priority(&self) -> i16 {
        if self.priority {
            COMPUTE_PRIORITY
        } else {
            0
        }
    }

    /// Emits `t`'s restoration, its allocations after `after` (the frees whose memory they
    /// take); returns the op after which compute may use the weights.
    pub fn restore(
        &self,
        t: &Restorable,
        lanes: &mut Lanes,
        after: &[OpId],
        b: &mut PlanBuilder,
    ) -> OpId {
        let prio = self.priority(t.rank);
        let mut ready = Vec::new();
        if !self.protect {
            let alloc = b.push(
                Op::Alloc {
                    tensor: t.tensor,
                    bytes: t.bytes,
                    secure: false,
                },
                after,
            );
            for bytes in pieces(t.bytes, self.micro.read_bytes) {
                ready.push(self.read(t, bytes, alloc, prio, b));
            }
        } else {
            // Blocks are allocated, then read into, then decrypted in place.
            let block = if self.micro.alloc_bytes == 0 {
                t.bytes
            } else {
                self.micro.alloc_bytes
            };
            let mut deps = Vec::with_capacity(after.len() + 1);
            for block_bytes in pieces(t.bytes, block) {
                let lane = lanes.take();
                deps.clear();
                deps.extend_from_slice(after);
                deps.extend(lane.iter().copied());
                let alloc = b.push_with_priority(
                    Op::Alloc {
                        tensor: t.tensor,
                        bytes: block_bytes,
                        secure: true,
                    },
                    &deps,
                    prio,
                );
                *lane = Some(alloc);
                for read_bytes in pieces(block_bytes, self.micro.read_bytes) {
                    let read = self.read(t, read_bytes, alloc, prio, b);
                    for unit in pieces(read_bytes, self.micro.decrypt_bytes) {
                        ready.push(b.push_with_priority(
                            Op::Decrypt {
                                tensor: t.tensor,
                                bytes: unit,
                                cluster: 0,
                                threads: 1,
                            },
                            &[read],
                            prio,
                        ));
                    }
                }
            }
        }
        if ready.len() == 1 {
            ready[0]
        } else {
            b.push(Op::Join, &ready)
        }
    }

    fn read(
        &self,
        t: &Restorable,
        bytes: u64,
        after: OpId,
        prio: i16,
        b: &mut PlanBuilder,
    ) -> OpId {
        b.push_with_priority(
            Op::Read {
                tensor: t.tensor,
                precision: self.precision,
                bytes,
                request_bytes: bytes.min(u32::MAX as u64) as u32,
            },
            &[after],
            prio,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TensorKind;

    #[test]
    fn pieces_cover_the_bytes_exactly() {
        for (bytes, unit) in [
            (10u64, 4u64),
            (8, 4),
            (3, 4),
            (7, 0),
            (0, 4),
            (1 << 20, 64 << 10),
        ] {
            let p: Vec<u64> = pieces(bytes, unit).collect();
            assert_eq!(p.iter().sum::<u64>(), bytes, "{bytes} by {unit}");
            if unit > 0 && bytes > 0 {
                assert!(p.iter().all(|&x| x > 0 && x <= unit));
                assert_eq!(p.len() as u64, bytes.div_ceil(unit));
            }
        }
    }

    #[test]
    fn a_protected_tensor_is_alloc_read_decrypt_in_artifact_units() {
        let r = Restorer {
            protect: true,
            micro: ARTIFACT_MICRO_OPS,
            priority: true,
            alloc_lanes: 2,
            precision: Precision::Int8,
        };
        let t = Restorable {
            tensor: TensorRef::new(0, TensorKind::Attention),
            bytes: 9 << 20,
            rank: 3,
        };
        let mut b = PlanBuilder::new(0);
        let mut lanes = Lanes::new(2);
        let ready = r.restore(&t, &mut lanes, &[], &mut b);
        b.set_output(ready);
        let plan = b.finish().unwrap();
        let count = |k: &str| {
            plan.nodes()
                .iter()
                .filter(|n| n.op.kind_name() == k)
                .count()
        };
        assert_eq!(count("alloc"), 3); // 4 + 4 + 1 MiB
        assert_eq!(count("read"), 3);
        assert_eq!(count("decrypt"), 9 * 16); // 64 KiB units
                                              // Every restoration op carries the earliest-consumer priority 1 + rank.
        for n in plan.nodes() {
            if n.op.kind_name() != "join" {
                assert_eq!(n.priority, 4, "{:?}", n.op);
            }
        }
        // The third block's allocation waits for the first (two lanes, round-robin).
        let allocs: Vec<_> = plan
            .nodes()
            .iter()
            .filter(|n| n.op.kind_name() == "alloc")
            .collect();
        assert!(plan.deps(allocs[2]).contains(&allocs[0].id));
        assert!(!plan.deps(allocs[1]).contains(&allocs[0].id));
    }
}
