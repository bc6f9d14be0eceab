//! `tzllm`: TZ-LLM (Wang, Shi et al., EuroSys '26, arXiv 2511.13717), each technique a switch.
//!
//! ```text
//! per request (sequence):
//!     release the last request's restored parameters, last first        (§4.2 shrink)
//!     allocate the KV cache in secure memory                            (§2.2, not hidden)
//!     for each uncached tensor T, in compute order:                     (§4.1)
//!         alloc(T) in 4 MiB blocks → read(T) in 4 MiB → decrypt(T) in 64 KiB
//!     compute; on every CPU: a ready compute op first, else the         (greedy priority)
//!         restoration micro-op of the earliest consumer                 (preemption points)
//!     every NPU job inside a world-switch pair                          (§4.3 co-driver)
//! ```
//!
//! Parameters (all optional):
//!
//! | key | default | off means |
//! | --- | --- | --- |
//! | `pipeline` | `true` | restore everything, then compute (the strawman's order) |
//! | `priority` | `true` | first come, first served on the CPUs and the flash queue |
//! | `preemption` | `true` | one allocation and one decryption op per tensor (Fig. 13's "w/o preemption") |
//! | `cache_fraction` | `0.0` | share of the parameter bytes cached across requests (the artifact's `-c 0..5` is 0, 0.2, …, 1) |
//! | `cache_order` | `"topological"` | `"load-order"`: the artifact's loader order (embedding, LM head, blocks) |
//! | `npu` | `"co-driver"` | `"exclusive"` (whole NPU handed over per request, 32 ms each way, the AE build's permanently secure NPU), `"cpu-only"` |
//! | `fused_projections` | `false` | `true` for Phi-3's fused QKV and gate-up (fewer NPU jobs) |
//! | `alloc_block_bytes`, `read_block_bytes`, `decrypt_unit_bytes` | 4 MiB, 4 MiB, 64 KiB | the artifact's micro-op sizes |
//! | `secure_region_bytes` | 9 GiB | the artifact's `TZASC_TOTAL_MEM_SIZE` (4 CMA areas of 2.25 GiB) |
//!
//! Cached tensors are restored in the warm-up (the artifact restores them at model load).

use super::dense::{precision, CacheOrder, ConfidentialDense, Config, Restore};
use super::dense_pass::NpuMode;
use super::restoration::{Restorer, ARTIFACT_MICRO_OPS};
use crate::hw::cost::TeeModel;
use crate::policy::context::parse_params;
use crate::policy::{PolicyContext, PolicyError};
use serde::Deserialize;

/// The artifact's secure region: `TZASC_TOTAL_MEM_SIZE` = 9 GiB (`TZ-LLM/llama.cpp@158b3bd`,
/// `chcore/llm.h`; tzllm notes §4.7).
pub const ARTIFACT_SECURE_REGION_BYTES: u64 = 9 << 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NpuParam {
    CoDriver,
    Exclusive,
    CpuOnly,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TzllmParams {
    pub pipeline: bool,
    pub priority: bool,
    pub preemption: bool,
    pub cache_fraction: f64,
    pub cache_order: CacheOrder,
    pub npu: NpuParam,
    pub fused_projections: bool,
    pub alloc_block_bytes: u64,
    pub read_block_bytes: u64,
    pub decrypt_unit_bytes: u64,
    pub secure_region_bytes: u64,
}

impl Default for TzllmParams {
    fn default() -> Self {
        TzllmParams {
            pipeline: true,
            priority: true,
            preemption: true,
            cache_fraction: 0.0,
            cache_order: CacheOrder::Topological,
            npu: NpuParam::CoDriver,
            fused_projections: false,
            alloc_block_bytes: ARTIFACT_MICRO_OPS.alloc_bytes,
            read_block_bytes: ARTIFACT_MICRO_OPS.read_bytes,
            decrypt_unit_bytes: ARTIFACT_MICRO_OPS.decrypt_bytes,
            secure_region_bytes: ARTIFACT_SECURE_REGION_BYTES,
        }
    }
}

/// Secure allocations that may run at once on `ctx`'s device: the TEE's lanes, at most the
/// first cluster's cores (the threads that run restoration); 1 without a TEE.
pub fn alloc_lanes(ctx: &PolicyContext) -> Result<u32, PolicyError> {
    let cores = ctx.device.cpu.first().map_or(1, |c| c.cores.value);
    match &ctx.device.tee {
        None => Ok(1),
        Some(spec) => TeeModel::new(spec)
            .map(|t| t.secure_alloc_lanes().unwrap_or(cores).min(cores).max(1))
            .map_err(|e| PolicyError::Unsupported(e.to_string())),
    }
}

pub fn build(ctx: PolicyContext) -> Result<ConfidentialDense, PolicyError> {
    let p: TzllmParams = parse_params("tzllm", &ctx.params)?;
    if p.read_block_bytes == 0 || p.alloc_block_bytes == 0 || p.decrypt_unit_bytes == 0 {
        return Err(PolicyError::BadParameter(
            "tzllm: alloc_block_bytes, read_block_bytes and decrypt_unit_bytes must be positive"
                .into(),
        ));
    }
    let micro = if p.preemption {
        super::restoration::MicroOps {
            alloc_bytes: p.alloc_block_bytes,
            read_bytes: p.read_block_bytes,
            decrypt_bytes: p.decrypt_unit_bytes,
        }
    } else {
        super::restoration::MicroOps {
            alloc_bytes: 0,
            read_bytes: p.read_block_bytes,
            decrypt_bytes: 0,
        }
    };
    let cfg = Config {
        restore: if p.pipeline {
            Restore::Pipelined
        } else {
            Restore::Sequential
        },
        restorer: Restorer {
            protect: true,
            micro,
            priority: p.priority,
            alloc_lanes: alloc_lanes(&ctx)?,
            precision: precision(&ctx),
        },
        cache_fraction: p.cache_fraction,
        cache_order: p.cache_order,
        npu: match p.npu {
            NpuParam::CoDriver => NpuMode::CoDriver,
            NpuParam::Exclusive => NpuMode::Exclusive,
            NpuParam::CpuOnly => NpuMode::CpuOnly,
        },
        fused_projections: p.fused_projections,
        threads: ctx.device.cpu.first().map_or(1, |c| c.cores.value as u16),
        secure_region_bytes: p.secure_region_bytes,
    };
    ConfidentialDense::new("tzllm", ctx, cfg)
}
