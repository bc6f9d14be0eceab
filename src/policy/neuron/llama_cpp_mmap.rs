//! `llama-cpp-mmap` on a dense model: llama.cpp mapping the model file with `mmap()` and
//! computing every FFN row (no sparsity), the baseline PowerInfer-2 §7.1 names ("supports
//! offloading weights to flash storage (via mmap)"). llama.cpp's loader maps the GGUF
//! (`llama_mmap` in llama.cpp's `llama-mmap.cpp`) and its CPU backend reads each weight
//! through the mapping when the layer's matrix multiplication touches it, so a page not in
//! the kernel's page cache is a fault served from flash.
//!
//! Residency and faults use the page-cache machinery of the MoE `llama-cpp-mmap`
//! ([`PageCache`]: page-run LRU, a tensor's resident part a suffix of its bytes), with the unit
//! being a layer's whole FFN instead of an expert, and the same fault pattern: readahead
//! windows (`readahead_bytes`, Linux's 128 KiB default), `faults_in_flight` at a time, each
//! batch after the previous one, starting when the layer's attention is done (the FFN's
//! matrix multiplication is what touches the pages). Compute runs on every core of the
//! fastest cluster with llama.cpp's dequantize-then-multiply kernels.

use crate::model::{TensorKind, TensorRef};
use crate::plan::{Kernel, Op, OpId, PlanBuilder, Unit};
use crate::policy::context::{parse_params, Counters, MemoryUse, PolicyContext, PolicyError};
use crate::policy::machinery::cache::page_cache::PageCache;
use crate::policy::machinery::mmap_fault::LINUX_READAHEAD_BYTES;
use crate::policy::machinery::pass::resident_ops::ResidentOps;
use crate::policy::machinery::placement::Placement;
use crate::policy::machinery::resident::ResidentSet;
use crate::policy::Policy;
use crate::trace::ForwardPass;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    readahead_bytes: u64,
    faults_in_flight: u32,
    /// CPU cluster to compute on (default: the first, the fastest).
    cluster: Option<String>,
    /// Threads (default: every core of the cluster).
    threads: Option<u16>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            readahead_bytes: LINUX_READAHEAD_BYTES,
            faults_in_flight: 2,
            cluster: None,
            threads: None,
        }
    }
}

pub struct DenseMmap {
    ctx: PolicyContext,
    resident: ResidentSet,
    pages: PageCache,
    readahead: u64,
    batch_bytes: u64,
    unit: Unit,
    counters: Counters,
}

pub fn build(ctx: PolicyContext) -> Result<Box<dyn Policy>, PolicyError> {
    const NAME: &str = "llama-cpp-mmap";
    let p: Params = parse_params(NAME, &ctx.params)?;
    if p.readahead_bytes == 0 || p.readahead_bytes > u32::MAX as u64 || p.faults_in_flight == 0 {
        return Err(PolicyError::BadParameter(format!(
            "policy `{NAME}`: `readahead_bytes` must be in 1..=4294967295 and `faults_in_flight` at least 1"
        )));
    }
    let unit = match &p.cluster {
        None if p.threads.is_none() => Placement::new(&ctx.device).cpu(),
        _ => {
            let i = match &p.cluster {
                Some(n) => ctx
                    .device
                    .cpu
                    .iter()
                    .position(|c| &c.name == n)
                    .ok_or_else(|| {
                        PolicyError::BadParameter(format!(
                            "policy `{NAME}`: device `{}` has no CPU cluster `{n}`",
                            ctx.device.name
                        ))
                    })?,
                None => 0,
            };
            Unit::Cpu {
                cluster: i as u8,
                threads: p
                    .threads
                    .unwrap_or(ctx.device.cpu[i].cores.value as u16)
                    .max(1),
            }
        }
    };
    let resident = ResidentSet::new(&ctx, false);
    let largest = (0..ctx.model.layers)
        .map(|l| {
            ctx.model
                .bytes(l, TensorKind::DenseFfn, ctx.offload_precision)
        })
        .max()
        .unwrap_or(0);
    // One layer's FFN must fit the page cache, or a layer would evict its own front while
    // still faulting in its back (the kernel would thrash; the model would not be honest).
    resident.check_budget(
        &ctx,
        largest,
        "the resident set plus one layer's FFN in the page cache",
    )?;
    let capacity = ctx.budget_bytes - resident.bytes();
    Ok(Box::new(DenseMmap {
        pages: PageCache::new(capacity, p.readahead_bytes),
        readahead: p.readahead_bytes,
        batch_bytes: p.readahead_bytes * p.faults_in_flight as u64,
        unit,
        resident,
        ctx,
        counters: Counters::default(),
    }))
}

impl Policy for DenseMmap {
    fn name(&self) -> &str {
        "llama-cpp-mmap"
    }

    fn plan_warmup(&mut self, b: &mut PlanBuilder) -> Result<(), PolicyError> {
        self.resident.plan_warmup(b);
        Ok(())
    }

    fn plan_pass(&mut self, pass: &ForwardPass, b: &mut PlanBuilder) -> Result<(), PolicyError> {
        let model = self.ctx.model.clone();
        let precision = self.ctx.offload_precision;
        let ops = ResidentOps {
            model: &model,
            precision: self.ctx.resident_precision,
        };
        let mut prev: Option<OpId> = None;
        for layer in 0..model.layers {
            let deps: Vec<OpId> = prev.into_iter().collect();
            let mixer = b.push(
                ops.mixer(layer, pass, self.unit)
                    .with_kernel(Kernel::Dequant),
                &deps,
            );
            let key = TensorRef::new(layer, TensorKind::DenseFfn);
            self.pages.touch(&key);
            self.counters.lookups += 1;
            let total = model.bytes(layer, TensorKind::DenseFfn, precision);
            let resident = self.pages.resident_bytes(&key);
            let ready = if resident == total {
                self.counters.hits += 1;
                self.pages.get(&key).map(|e| e.ready)
            } else {
                self.counters.misses += 1;
                let missing = total - resident;
                let evicts = self.pages.make_room(missing, |k| *k == key, b)?;
                self.counters.evictions += evicts.len() as u64;
                let alloc = self.pages.alloc(key, missing, b);
                let mut deps = vec![alloc, mixer];
                let mut remaining = missing;
                let mut last = alloc;
                while remaining > 0 {
                    let n = self.batch_bytes.min(remaining);
                    last = b.push(
                        Op::Read {
                            tensor: key,
                            precision,
                            bytes: n,
                            request_bytes: self.readahead as u32,
                        },
                        &deps,
                    );
                    remaining -= n;
                    deps.clear();
                    deps.push(last);
                }
                self.pages.loaded(key, total, last);
                Some(last)
            };
            let mut deps = vec![mixer];
            deps.extend(ready);
            let ffn_ops = ResidentOps {
                model: &model,
                precision,
            };
            let ffn = b.push(
                ffn_ops
                    .dense_ffn(layer, pass, self.unit)
                    .with_kernel(Kernel::Dequant),
                &deps,
            );
            self.pages.record_use(&key, ffn);
            self.counters.served_by_precision[precision.index()] += 1;
            prev = Some(ffn);
        }
        let deps: Vec<OpId> = prev.into_iter().collect();
        let head = b.push(ops.lm_head(self.unit).with_kernel(Kernel::Dequant), &deps);
        b.set_output(head);
        Ok(())
    }

    fn memory(&self) -> MemoryUse {
        MemoryUse {
            resident_bytes: self.resident.bytes(),
            cache_bytes: self.pages.used_bytes(),
        }
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }
}
