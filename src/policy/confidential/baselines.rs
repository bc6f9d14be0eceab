//! TZ-LLM's baselines (§7), as the paper and its artifact run them.
//!
//! - `ree-memory` (REE-LLM-Memory): unmodified llama.cpp in the normal world, every parameter
//!   preloaded, no protection; the products on the NPU through the REE driver (the REE
//!   baseline runs `-ngl 100` on the RKNPU backend, `TZ-LLM/tz-llm-ae@3cdbdfb`,
//!   `scripts/end-to-end-*.sh`).
//! - `ree-flash` (REE-LLM-Flash): the same, with the parameters loaded on every request by
//!   the pipelined restoration, a plain `malloc` per tensor and no decryption (the Linux build
//!   of `TZ-LLM/llama.cpp@158b3bd`: `src/alloc-stage.cpp` allocates once per tensor,
//!   `DecryptTask::step` does nothing).
//! - `tee-strawman` (Strawman): a TEE cold start on every request — allocate every parameter
//!   in secure memory (one thread), read all, decrypt all, then compute on the CPU only
//!   (`ggml_backend_rknpure_set_strawman` turns the NPU off; no polling routine, so no
//!   overlap with compute; 8 GiB units, so no chunking; tzllm notes §4.4).
//!
//! Each takes `cache_fraction` (0 by default; the AE's decode runs use 1) and
//! `fused_projections`; nothing else.

use super::dense::{precision, CacheOrder, ConfidentialDense, Config, Restore};
use super::dense_pass::NpuMode;
use super::restoration::{MicroOps, Restorer, ARTIFACT_MICRO_OPS};
use super::tzllm::{alloc_lanes, ARTIFACT_SECURE_REGION_BYTES};
use crate::policy::context::parse_params;
use crate::policy::{PolicyContext, PolicyError};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct BaselineParams {
    cache_fraction: f64,
    fused_projections: bool,
}

pub fn build(name: &str, ctx: PolicyContext) -> Result<ConfidentialDense, PolicyError> {
    let p: BaselineParams = parse_params(name, &ctx.params)?;
    let threads = ctx.device.cpu.first().map_or(1, |c| c.cores.value as u16);
    let restorer = |protect: bool, micro: MicroOps, priority: bool, lanes: u32| Restorer {
        protect,
        micro,
        priority,
        alloc_lanes: lanes,
        precision: precision(&ctx),
    };
    let (restore, restorer, npu) = match name {
        "ree-memory" => (
            Restore::Resident,
            restorer(false, ARTIFACT_MICRO_OPS, true, 1),
            NpuMode::Ree,
        ),
        "ree-flash" => (
            Restore::Pipelined,
            restorer(false, ARTIFACT_MICRO_OPS, true, 1),
            NpuMode::Ree,
        ),
        "tee-strawman" => {
            let whole = MicroOps {
                alloc_bytes: 0,
                read_bytes: 0,
                decrypt_bytes: 0,
            };
            (
                Restore::Sequential,
                restorer(true, whole, false, alloc_lanes(&ctx)?),
                NpuMode::CpuOnly,
            )
        }
        other => {
            return Err(PolicyError::BadParameter(format!(
                "`{other}` is not a TZ-LLM baseline"
            )))
        }
    };
    let cfg = Config {
        restore,
        restorer,
        cache_fraction: p.cache_fraction,
        cache_order: CacheOrder::Topological,
        npu,
        fused_projections: p.fused_projections,
        threads,
        secure_region_bytes: ARTIFACT_SECURE_REGION_BYTES,
    };
    ConfidentialDense::new(name, ctx, cfg)
}
