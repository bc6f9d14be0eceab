//! The policy shell every confidential-family policy on a dense model plans in: which tensors
//! stay cached across requests, how each request restores the others, and the pass's compute.
//!
//! A request is a sequence. Its first pass restores every tensor not cached (per
//! [`Restore`]); all its passes compute with [`DensePass`]; when the next request starts, the
//! restored tensors are released in reverse compute order (TZ-LLM §4.1: secure memory shrinks
//! first-in-last-out) before the new request allocates. Cached tensors are restored once, in
//! the warm-up, as the artifact restores them at model load (`src/prefetch.cpp`,
//! `register_param_tensor`), before any timing.

use super::dense_pass::{DensePass, NpuMode};
use super::restoration::{Lanes, Restorable, Restorer};
use crate::model::{Precision, TensorKind, TensorRef};
use crate::plan::{Op, OpId, PlanBuilder, World};
use crate::policy::{Counters, MemoryUse, Policy, PolicyContext, PolicyError};
use crate::trace::ForwardPass;
use std::collections::BTreeMap;

/// How a request's parameters come into memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restore {
    /// Everything resident from the warm-up on (REE-LLM-Memory).
    Resident,
    /// TZ-LLM's pipelined restoration, overlapped with compute.
    Pipelined,
    /// The strawman's cold start: allocate all, read all, decrypt all, then compute.
    Sequential,
}

/// Which tensors a cache fraction keeps: the earliest in compute order (the paper's
/// design, §4.1), or the first in the loader's order (the artifact: `token_embd`, `output`,
/// then the blocks; `src/prefetch.cpp`, `set_cache_proportion`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheOrder {
    Topological,
    LoadOrder,
}

/// What a policy of the family is.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub restore: Restore,
    pub restorer: Restorer,
    /// Share of the parameter bytes kept in (secure) memory across requests.
    pub cache_fraction: f64,
    pub cache_order: CacheOrder,
    pub npu: NpuMode,
    pub fused_projections: bool,
    /// Decryption threads of the strawman's whole-tensor decryption (all cores: nothing else
    /// runs, and TZ-LLM Fig. 1's 8 GB in 0.9 s is four threads' rate).
    pub threads: u16,
    /// The secure region parameters live in; a model that does not fit is refused.
    pub secure_region_bytes: u64,
}

pub struct ConfidentialDense {
    name: String,
    ctx: PolicyContext,
    cfg: Config,
    /// Every weight tensor in compute order, with whether it is cached.
    tensors: Vec<(Restorable, bool)>,
    kv_bytes: u64,
    /// Restored for the current request: weights wait for these ops.
    ready: BTreeMap<TensorRef, OpId>,
    /// Last use of every tensor restored for the current request.
    last_use: BTreeMap<TensorRef, OpId>,
    /// The KV cache's allocation of the current request (protected: per request).
    kv_alloc: Option<OpId>,
    /// Bytes held in (secure) memory now: cached, and restored for the current request.
    cached_bytes: u64,
    restored_bytes: u64,
    /// Most (secure) parameter memory held at once.
    pub peak_secure_bytes: u64,
    counters: Counters,
}

impl ConfidentialDense {
    pub fn new(name: &str, ctx: PolicyContext, cfg: Config) -> Result<Self, PolicyError> {
        let m = &ctx.model;
        if m.is_moe() {
            return Err(PolicyError::Unsupported(format!(
                "policy `{name}` restores dense models; model `{}` is an MoE (TZ-LLM \
                 'prefetches all experts' of such a model, §4.1; use `tzllm-hobbit` for \
                 confidential expert offloading)",
                m.name
            )));
        }
        if !(0.0..=1.0).contains(&cfg.cache_fraction) {
            return Err(PolicyError::BadParameter(format!(
                "{name}: cache_fraction {} is not in [0, 1]",
                cfg.cache_fraction
            )));
        }
        let needs_tee =
            cfg.restorer.protect || matches!(cfg.npu, NpuMode::CoDriver | NpuMode::Exclusive);
        if needs_tee && ctx.device.tee.is_none() {
            return Err(PolicyError::Unsupported(format!(
                "policy `{name}` runs in a TEE, but device `{}` has no `tee` section",
                ctx.device.name
            )));
        }
        if cfg.npu != NpuMode::CpuOnly && ctx.device.accelerator.is_none() {
            return Err(PolicyError::Unsupported(format!(
                "policy `{name}` runs the products on an NPU, but device `{}` has no accelerator \
                 (use \"npu\": \"cpu-only\")",
                ctx.device.name
            )));
        }
        let p = cfg.restorer.precision;
        let mut order: Vec<TensorRef> = vec![TensorRef::new(0, TensorKind::Embedding)];
        for l in 0..m.layers {
            order.push(TensorRef::new(l, TensorKind::Attention));
            order.push(TensorRef::new(l, TensorKind::DenseFfn));
        }
        if !m.tied_embeddings {
            order.push(TensorRef::new(0, TensorKind::LmHead));
        }
        let tensors: Vec<Restorable> = order
            .iter()
            .enumerate()
            .map(|(rank, &t)| Restorable {
                tensor: t,
                bytes: m.bytes(t.layer as u32, t.kind, p),
                rank: rank.min(u16::MAX as usize) as u16,
            })
            .filter(|r| r.bytes > 0)
            .collect();
        let total: u64 = tensors.iter().map(|t| t.bytes).sum();
        if cfg.restorer.protect && total > cfg.secure_region_bytes {
            return Err(PolicyError::BudgetTooSmall {
                required: total,
                budget: cfg.secure_region_bytes,
                what: format!("{name}'s secure parameter region"),
            });
        }
        // Cached: whole tensors in the chosen order while the running total stays within
        // the fraction (the artifact's rule: `used <= all * p / 5`).
        let limit = (cfg.cache_fraction * total as f64).round() as u64;
        let mut by_order: Vec<usize> = (0..tensors.len()).collect();
        if cfg.cache_order == CacheOrder::LoadOrder {
            // The loader's order: embedding, LM head, then the blocks in order.
            by_order.sort_by_key(|&i| match tensors[i].tensor.kind {
                TensorKind::Embedding => (0, 0),
                TensorKind::LmHead => (1, 0),
                _ => (2, i),
            });
        }
        let mut cached = vec![false; tensors.len()];
        let mut used = 0u64;
        for &i in &by_order {
            if cfg.restore == Restore::Resident || used + tensors[i].bytes <= limit {
                used += tensors[i].bytes;
                cached[i] = true;
            } else {
                break;
            }
        }
        let kv_bytes = m.kv_bytes_per_token() * ctx.max_context as u64;
        ctx.require_budget(
            total + kv_bytes,
            &format!("{name}: every parameter and the KV cache"),
        )?;
        Ok(ConfidentialDense {
            name: name.to_string(),
            tensors: tensors.into_iter().zip(cached).collect(),
            kv_bytes,
            ready: BTreeMap::new(),
            last_use: BTreeMap::new(),
            kv_alloc: None,
            cached_bytes: 0,
            restored_bytes: 0,
            peak_secure_bytes: 0,
            counters: Counters::default(),
            ctx,
            cfg,
        })
    }

    /// Tensors restored per request (not cached), in compute order.
    pub fn restored_per_request(&self) -> impl Iterator<Item = &Restorable> {
        self.tensors.iter().filter(|t| !t.1).map(|t| &t.0)
    }

    fn pass_planner(&self) -> DensePass<'_> {
        DensePass {
            model: &self.ctx.model,
            precision: self.cfg.restorer.precision,
            npu: self.cfg.npu,
            fused_projections: self.cfg.fused_projections,
            threads: self
                .ctx
                .device
                .cpu
                .first()
                .map_or(1, |c| c.cores.value as u16),
            compute_priority: self.cfg.restorer.compute_priority(),
        }
    }

    /// Releases the previous request's restored tensors (reverse compute order) and KV cache.
    fn release_request(&mut self, b: &mut PlanBuilder) -> Vec<OpId> {
        let mut frees = Vec::new();
        let secure = self.cfg.restorer.protect;
        for (t, _) in self.tensors.iter().rev().filter(|t| !t.1) {
            if let Some(&last) = self.last_use.get(&t.tensor) {
                frees.push(b.push(
                    Op::Evict {
                        tensor: t.tensor,
                        bytes: t.bytes,
                        secure,
                    },
                    &[last],
                ));
                self.counters.evictions += 1;
            }
        }
        if secure {
            if let Some(kv) = self.kv_alloc.take() {
                let after: Vec<OpId> = std::iter::once(kv)
                    .chain(self.last_use.values().copied())
                    .collect();
                frees.push(b.push(
                    Op::Evict {
                        tensor: TensorRef::new(0, TensorKind::KvCache),
                        bytes: self.kv_bytes,
                        secure: true,
                    },
                    &after,
                ));
            }
        }
        self.ready.clear();
        self.last_use.clear();
        self.restored_bytes = 0;
        frees
    }

    /// Starts a request: frees, the KV cache, the restoration of every uncached tensor.
    /// Returns what the pass's first compute waits for.
    fn start_request(&mut self, b: &mut PlanBuilder) -> Vec<OpId> {
        let frees = self.release_request(b);
        let mut first_after = Vec::new();
        let r = self.cfg.restorer;
        if r.protect {
            // KV cache and activations are allocated per request and not hidden (§2.2).
            let kv = b.push(
                Op::Alloc {
                    tensor: TensorRef::new(0, TensorKind::KvCache),
                    bytes: self.kv_bytes,
                    secure: true,
                },
                &frees,
            );
            self.kv_alloc = Some(kv);
            first_after.push(kv);
        }
        if self.cfg.npu == NpuMode::Exclusive {
            // The NPU is detached from the REE and attached to the TEE for the request.
            first_after.push(b.push(Op::NpuHandover { to: World::Secure }, &[]));
        }
        let todo: Vec<Restorable> = self.restored_per_request().copied().collect();
        match self.cfg.restore {
            Restore::Resident => {}
            Restore::Pipelined => {
                let mut lanes = Lanes::new(r.alloc_lanes);
                for t in &todo {
                    let ready = r.restore(t, &mut lanes, &frees, b);
                    self.ready.insert(t.tensor, ready);
                }
            }
            Restore::Sequential => {
                // Allocate all (one thread), read all, decrypt all, one op per tensor each.
                let mut prev: Vec<OpId> = frees.clone();
                let mut phase = |b: &mut PlanBuilder, op: &dyn Fn(&Restorable) -> Op| {
                    for t in &todo {
                        let id = b.push(op(t), &prev);
                        prev = vec![id];
                    }
                };
                phase(b, &|t| Op::Alloc {
                    tensor: t.tensor,
                    bytes: t.bytes,
                    secure: r.protect,
                });
                phase(b, &|t| Op::Read {
                    tensor: t.tensor,
                    precision: r.precision,
                    bytes: t.bytes,
                    request_bytes: t.bytes.min(u32::MAX as u64) as u32,
                });
                if r.protect {
                    let threads = self.cfg.threads;
                    phase(b, &|t| Op::Decrypt {
                        tensor: t.tensor,
                        bytes: t.bytes,
                        cluster: 0,
                        threads,
                    });
                }
                // Every tensor is usable once the last phase ends.
                for t in &todo {
                    self.ready.insert(t.tensor, prev[0]);
                }
                first_after.extend(prev);
            }
        }
        for t in &todo {
            self.counters.misses += 1;
            self.restored_bytes += t.bytes;
        }
        self.peak_secure_bytes = self
            .peak_secure_bytes
            .max(self.cached_bytes + self.restored_bytes);
        first_after
    }
}

impl Policy for ConfidentialDense {
    fn name(&self) -> &str {
        &self.name
    }

    fn plan_warmup(&mut self, b: &mut PlanBuilder) -> Result<(), PolicyError> {
        let r = self.cfg.restorer;
        let mut done = Vec::new();
        let mut lanes = Lanes::new(r.alloc_lanes);
        for (t, cached) in &self.tensors {
            if *cached {
                done.push(r.restore(t, &mut lanes, &[], b));
                self.cached_bytes += t.bytes;
            }
        }
        if !r.protect {
            done.push(b.push(
                Op::Alloc {
                    tensor: TensorRef::new(0, TensorKind::KvCache),
                    bytes: self.kv_bytes,
                    secure: false,
                },
                &[],
            ));
        }
        let end = b.push(Op::Join, &done);
        b.set_output(end);
        Ok(())
    }

    fn plan_pass(&mut self, pass: &ForwardPass, b: &mut PlanBuilder) -> Result<(), PolicyError> {
        let misses_before = self.counters.misses;
        let first_after = if pass.starts_sequence() {
            self.start_request(b)
        } else {
            Vec::new()
        };
        // Every tensor is looked up once per pass; a miss is one this pass restores.
        let n = self.tensors.len() as u64;
        self.counters.lookups += n;
        self.counters.hits += n - (self.counters.misses - misses_before);
        let ops = self.pass_planner().plan(pass, &self.ready, &first_after, b);
        for (t, op) in ops.uses {
            if self.ready.contains_key(&t) {
                self.last_use.insert(t, op);
            }
        }
        self.counters.served_by_precision[self.cfg.restorer.precision.index()] += n;
        b.set_output(ops.output);
        Ok(())
    }

    fn memory(&self) -> MemoryUse {
        let kv = if !self.cfg.restorer.protect || self.kv_alloc.is_some() {
            self.kv_bytes
        } else {
            0
        };
        MemoryUse {
            resident_bytes: self.cached_bytes + kv,
            cache_bytes: self.restored_bytes,
        }
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }
}

/// The precision every member of the family restores at: the offload precision (TZ-LLM runs
/// Q8_0 models; edgesim's int8 is 8.5 bits per weight, as Q8_0).
pub fn precision(ctx: &PolicyContext) -> Precision {
    ctx.offload_precision
}
