//! Confidential expert offloading: any MoE policy's loads under TZ-LLM's protection.
//!
//! No paper has it. TZ-LLM restores a dense model's parameters into secure memory once per
//! request and, for an MoE model, "prefetches all experts" (§4.1). An expert-offloading
//! policy (HOBBIT) instead loads experts per token; under TZ-LLM's threat model each load
//! must arrive encrypted and be decrypted inside the TEE. [`SecureLoads`] is the
//! [`LoadOps`] that does it, so `tzllm-hobbit` is HOBBIT's unchanged planner with every load
//! turned into:
//!
//! ```text
//! slot in the secure expert cache → smc (the TA asks the CA to read) → read (encrypted, DMA
//! into the slot) → smc (completion) → decrypt in place on `decrypt_threads` cores
//! ```
//!
//! The expert cache is one secure region reserved for the whole run, so a load takes a slot
//! of it (an accounting `Alloc`, not a CMA migration): paying TZ-LLM's CMA rate per expert
//! would re-migrate the same memory on every miss. The region's one-time reservation is not
//! priced (it happens before the run). Each read costs two world switches, as in TZ-LLM's
//! artifact, where launching a read and polling for its completion are each an smc
//! (`TZ-LLM/llama.cpp@158b3bd`, `src/io-frontend.cpp`; tzllm notes §4.7).
//!
//! **What it leaks.** TZ-LLM's REE owns the file system and sees every read's offset, so
//! per-token expert loads disclose the routing (which experts each token chose) to the normal
//! world — an input-dependent leak TZ-LLM's dense restoration does not have. Routing alone
//! reconstructs most tokens (Nuriyev & Kulp, arXiv 2602.04105: 91.2 % top-1). This wrapper
//! protects the parameters, as TZ-LLM's threat model asks (§3.1), not the prompt.

use crate::model::TensorRef;
use crate::plan::{Op, OpId, PlanBuilder, World};
use crate::policy::machinery::load_ops::{AllocRead, Load, LoadOps};

#[derive(Clone, Copy, Debug)]
pub struct SecureLoads {
    /// Cores of cluster 0 that decrypt one load.
    pub decrypt_threads: u16,
    /// World switches per read (launch and completion).
    pub switches_per_read: u16,
}

impl SecureLoads {
    fn switch(&self, to: World, after: OpId, b: &mut PlanBuilder) -> OpId {
        b.push(Op::WorldSwitch { to }, &[after])
    }
}

impl LoadOps for SecureLoads {
    fn load(&self, load: &Load<'_>, b: &mut PlanBuilder) -> OpId {
        let slot = AllocRead::alloc(load, false, b);
        let mut before_read = slot;
        for _ in 0..self.switches_per_read / 2 {
            before_read = self.switch(World::Normal, before_read, b);
        }
        let read = AllocRead::read(load, before_read, b);
        let mut after_read = read;
        for _ in 0..self.switches_per_read.div_ceil(2) {
            after_read = self.switch(World::Secure, after_read, b);
        }
        b.push(
            Op::Decrypt {
                tensor: load.tensor,
                bytes: load.bytes,
                cluster: 0,
                threads: self.decrypt_threads,
            },
            &[after_read],
        )
    }

    fn free(&self, tensor: TensorRef, bytes: u64, after: &[OpId], b: &mut PlanBuilder) -> OpId {
        // The slot returns to the secure cache region (scrubbed by the next decryption).
        AllocRead::evict(tensor, bytes, true, after, b)
    }
}
