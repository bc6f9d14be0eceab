//! Memory freed by planned evictions and not yet handed to a later allocation.

use crate::plan::OpId;
use std::collections::VecDeque;

/// Evictions planned but possibly not yet run, with the bytes of each not yet handed to a
/// later allocation. An Alloc that needs those bytes depends on the Evict, oldest first.
/// Shared by every structure that frees and allocates memory in plans (expert caches, the
/// page cache of `llama-cpp-mmap`).
#[derive(Clone, Debug, Default)]
pub struct PendingFrees {
    pending: VecDeque<(OpId, u64)>,
    bytes: u64,
}

impl PendingFrees {
    /// Bytes freed by planned evictions and not yet claimed by an allocation.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Records that `op` frees `bytes` when it ends.
    pub fn push(&mut self, op: OpId, bytes: u64) {
        self.pending.push_back((op, bytes));
        self.bytes += bytes;
    }

    /// Adds to `deps` the pending evictions an allocation of `bytes` must wait for, given
    /// `free_now` bytes that are free for certain: those are used first, then the oldest
    /// pending frees.
    pub fn claim(&mut self, bytes: u64, free_now: u64, deps: &mut Vec<OpId>) {
        let mut deficit = bytes.saturating_sub(free_now);
        while deficit > 0 {
            let Some((op, freed)) = self.pending.pop_front() else {
                break;
            };
            deps.push(op);
            let taken = freed.min(deficit);
            deficit -= taken;
            self.bytes -= taken;
            if freed > taken {
                // The rest of that eviction's memory stays available to later allocations,
                // which must also wait for it.
                self.pending.push_front((op, freed - taken));
            }
        }
    }
}
