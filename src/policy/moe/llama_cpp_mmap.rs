//! `llama-cpp-mmap`: llama.cpp reading expert weights through `mmap()` of the model file, the
//! LL baseline of HOBBIT's Jetson Orin group ("llama.cpp uses mmap() and severe page faults
//! follow", H §5.2). No expert cache of its own, no prefetch: the kernel's page cache holds
//! what fits, and touching a page that is not in it faults it in from the SSD.
//!
//! Modelled as:
//!
//! - **Residency** at page granularity with least-recently-used replacement ([`PageCache`]):
//!   an expert can be partly resident, and only its missing front is read again. The page
//!   cache is the budget less the resident set (the memory the OS leaves to the file).
//!   Linux's two-list reclaim and working-set refault detection keep part of a cyclic scan
//!   resident that exact LRU would not; not modelled.
//! - **Faults**: Linux's fault path for llama.cpp's mapping ([`MmapFaultPath`], with its
//!   sources): 256 KiB windows (`POSIX_FADV_SEQUENTIAL` doubles the default 128 KiB), two
//!   in flight per stream, one stream per compute thread, and no fallback to 4 KiB reads on
//!   the kernels HOBBIT's boards run. `readahead_bytes` sets the device's `read_ahead_kb`
//!   (the window is twice it), `faults_in_flight` the windows per stream. A layer's experts
//!   are faulted one after the other, as llama.cpp computes them one after the other.
//! - **Compute on the CPU** (`"unit": "cpu"`, the default): a tensor llama.cpp leaves in the
//!   mapping is a CPU-buffer tensor pointing into it, computed by ggml's CPU backend; only
//!   tensors offloaded with `-ngl` are copied into GPU buffers at load, and the mapped parts
//!   of offloaded tensors are unmapped (PR #4520). Experts that fault from the SSD are
//!   therefore computed by the CPU cores (all cores of the fastest cluster, each its own
//!   fault stream). `"unit": "default"` computes them where the other policies do.
//! - **Precision**: the GGUF's own quantization, which is the experiment's (a Q8_0 file for
//!   an int8 experiment).
//!
//! Only meaningful where experts are read from flash; on a host-memory device use
//! `llama-cpp-offload`.

use crate::hw::OffloadTier;
use crate::model::{ModelGeometry, Precision, TensorKind, TensorRef};
use crate::plan::{Op, OpId, Unit};
use crate::policy::context::parse_params;
use crate::policy::context::{Counters, PolicyContext, PolicyError};
use crate::policy::machinery::cache::page_cache::PageCache;
use crate::policy::machinery::mmap_fault::{
    MmapFaultPath, LINUX_READAHEAD_BYTES, WINDOWS_PER_STREAM,
};
use crate::policy::machinery::pass::moe::{
    expert_key, ExpertDemand, ExpertSupplier, LayerCx, Supply,
};
use crate::policy::machinery::placement::Placement;
use crate::policy::moe::shell::{cache_capacity, ExpertPolicy, ExpertState};
use serde::Deserialize;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ComputeUnit {
    Default,
    #[default]
    Cpu,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    readahead_bytes: u64,
    faults_in_flight: u32,
    unit: ComputeUnit,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            readahead_bytes: LINUX_READAHEAD_BYTES,
            faults_in_flight: WINDOWS_PER_STREAM,
            unit: ComputeUnit::Cpu,
        }
    }
}

pub struct LlamaCppMmap {
    pages: PageCache,
    model: Arc<ModelGeometry>,
    precision: Precision,
    faults: MmapFaultPath,
    unit: Option<Unit>,
    demand_pins: Vec<TensorRef>,
    /// The compute of the layer's previous expert: the next one's faults start after it.
    last_compute: Option<OpId>,
    counters: Counters,
}

pub fn build(ctx: PolicyContext) -> Result<ExpertPolicy<LlamaCppMmap>, PolicyError> {
    const NAME: &str = "llama-cpp-mmap";
    crate::policy::moe::require_moe(&ctx, NAME)?;
    let p: Params = parse_params(NAME, &ctx.params)?;
    if ctx.device.offload_tier != OffloadTier::Flash {
        return Err(PolicyError::Unsupported(format!(
            "policy `{NAME}` faults expert pages in from flash, but device `{}` keeps experts in \
             host memory; use `llama-cpp-offload` there",
            ctx.device.name
        )));
    }
    if p.readahead_bytes == 0 || p.readahead_bytes > u32::MAX as u64 || p.faults_in_flight == 0 {
        return Err(PolicyError::BadParameter(format!(
            "policy `{NAME}`: `readahead_bytes` must be in 1..=4294967295 and `faults_in_flight` at least 1, got {} and {}",
            p.readahead_bytes, p.faults_in_flight
        )));
    }
    let precision = ctx.offload_precision;
    let expert = ctx
        .model
        .bytes(ctx.model.dense_layers, TensorKind::Expert(0), precision);
    let capacity = cache_capacity(&ctx, expert, "the resident set plus one expert")?;
    let unit = match p.unit {
        ComputeUnit::Default => None,
        ComputeUnit::Cpu => Some(Placement::new(&ctx.device).cpu()),
    };
    let streams = match unit {
        Some(Unit::Cpu { threads, .. }) => threads as u32,
        _ => 1,
    };
    let faults = MmapFaultPath::linux(p.readahead_bytes, true, streams)
        .with_windows_per_stream(p.faults_in_flight);
    if faults.window_bytes() > u32::MAX as u64 {
        return Err(PolicyError::BadParameter(format!(
            "policy `{NAME}`: `readahead_bytes` {} gives a window over 4 GiB",
            p.readahead_bytes
        )));
    }
    let state = LlamaCppMmap {
        pages: PageCache::new(capacity, faults.window_bytes()),
        model: ctx.model.clone(),
        precision,
        faults,
        unit,
        demand_pins: Vec::new(),
        last_compute: None,
        counters: Counters::default(),
    };
    // llama.cpp's CPU backend computes with its dequantize-then-multiply kernels
    // (`ggml_vec_dot_*_q8_*`), not LUT kernels.
    Ok(ExpertPolicy::new(NAME, ctx, precision, state).with_kernel(crate::plan::Kernel::Dequant))
}

impl ExpertSupplier for LlamaCppMmap {
    fn begin_layer(
        &mut self,
        cx: &mut LayerCx<'_>,
        demands: &[ExpertDemand],
    ) -> Result<(), PolicyError> {
        self.demand_pins.clear();
        self.demand_pins
            .extend(demands.iter().map(|d| expert_key(cx.layer, d.expert)));
        self.last_compute = None;
        Ok(())
    }

    fn supply(
        &mut self,
        cx: &mut LayerCx<'_>,
        _index: usize,
        d: &ExpertDemand,
    ) -> Result<Supply, PolicyError> {
        let key = expert_key(cx.layer, d.expert);
        self.pages.touch(&key);
        let total = self.model.bytes(cx.layer, key.kind, self.precision);
        let resident = self.pages.resident_bytes(&key);
        if resident == total {
            self.counters.hits += 1;
            let ready = self.pages.get(&key).map(|e| e.ready);
            return Ok(Supply::Compute {
                precision: self.precision,
                ready,
                unit: self.unit,
            });
        }
        self.counters.misses += 1;
        let missing = total - resident;
        let pins = &self.demand_pins;
        let evicts = self
            .pages
            .make_room(missing, |k| pins.contains(k), cx.builder)?;
        self.counters.evictions += evicts.len() as u64;
        let alloc = self.pages.alloc(key, missing, cx.builder);
        let mut deps = vec![alloc, cx.router];
        deps.extend(self.last_compute);
        let mut last = alloc;
        for n in self.faults.batches(missing) {
            last = cx.builder.push(
                Op::Read {
                    tensor: key,
                    precision: self.precision,
                    bytes: n,
                    request_bytes: self.faults.window_bytes() as u32,
                },
                &deps,
            );
            deps.clear();
            deps.push(last);
        }
        self.pages.loaded(key, total, last);
        Ok(Supply::Compute {
            precision: self.precision,
            ready: Some(last),
            unit: self.unit,
        })
    }

    fn computed(&mut self, cx: &mut LayerCx<'_>, expert: u16, op: OpId) {
        let key = expert_key(cx.layer, expert);
        self.pages.record_use(&key, op);
        self.last_compute = Some(op);
        self.demand_pins.retain(|k| *k != key);
    }

    fn counters(&mut self) -> &mut Counters {
        &mut self.counters
    }
}

impl ExpertState for LlamaCppMmap {
    fn cache_bytes(&self) -> u64 {
        self.pages.used_bytes()
    }

    fn counters_ref(&self) -> &Counters {
        &self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::test_support::{context_for, decode, plan, reads, tiny_with};
    use crate::policy::Policy;
    use serde_json::json;

    #[test]
    fn misses_fault_in_readahead_windows_and_partial_experts_reread_only_their_front() {
        let m = tiny_with(2, 4);
        let expert = m.bytes(0, TensorKind::Expert(0), Precision::Int8);
        // 2.5 experts of page cache, read_ahead 2 KiB (4 KiB windows after fadvise), 2 in
        // flight, one stream (computed off the CPU): 8 KiB reads.
        let mut p = build(context_for(
            m,
            2.5,
            Precision::Int8,
            false,
            json!({"readahead_bytes": 2048, "faults_in_flight": 2, "unit": "default"}),
        ))
        .unwrap();
        let w = [(0u16, 0.6f32), (1, 0.4)];
        let pl = plan(&mut p, &decode(0, 0, &[&w, &w]), 0);
        let r = reads(&pl);
        assert!(r.iter().all(|x| x.2 <= 8192));
        assert!(r.iter().any(|x| x.2 == 8192));
        let total: u64 = r.iter().map(|x| x.2).sum();
        assert_eq!(total, 4 * expert);
        // Reads of one expert form a chain; the second expert's first read waits for the
        // first expert's compute.
        let first_read_e1 = pl
            .nodes()
            .iter()
            .find(|n| matches!(n.op, Op::Read { tensor, .. } if tensor == TensorRef::expert(0, 1)))
            .unwrap();
        let compute_e0 = pl
            .nodes()
            .iter()
            .find(
                |n| matches!(n.op, Op::Compute { tensor, .. } if tensor == TensorRef::expert(0, 0)),
            )
            .unwrap();
        assert!(pl.deps(first_read_e1).contains(&compute_e0.id));
        // The cache holds 2.5 experts: layer 0's experts were pushed partly out by layer 1's.
        // Next token, same routing: only the missing fronts are read.
        let before = p.counters().misses;
        let pl2 = plan(&mut p, &decode(0, 1, &[&w, &w]), pl.end_id());
        let again: u64 = reads(&pl2).iter().map(|x| x.2).sum();
        assert!(again > 0 && again < 4 * expert, "{again}");
        assert!(p.counters().misses > before);
    }

    #[test]
    fn computes_with_llama_cpps_dequantize_kernels() {
        let mut p = build(context_for(
            tiny_with(2, 4),
            2.5,
            Precision::Int8,
            false,
            json!({}),
        ))
        .unwrap();
        let w = [(0u16, 0.6f32), (1, 0.4)];
        let pl = plan(&mut p, &decode(0, 0, &[&w, &w]), 0);
        let kernels: Vec<_> = pl
            .nodes()
            .iter()
            .filter_map(|n| match n.op {
                Op::Compute { kernel, .. } => Some(kernel),
                _ => None,
            })
            .collect();
        assert!(!kernels.is_empty());
        assert!(kernels.iter().all(|k| *k == crate::plan::Kernel::Dequant));
    }

    #[test]
    fn host_memory_devices_are_refused() {
        let err = build(context_for(
            tiny_with(2, 4),
            3.0,
            Precision::Int8,
            true,
            serde_json::Value::Null,
        ))
        .err()
        .unwrap();
        assert!(err.to_string().contains("llama-cpp-offload"), "{err}");
    }
}
