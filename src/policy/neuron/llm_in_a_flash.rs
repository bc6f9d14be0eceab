//! `llm-in-a-flash` (Alizadeh et al., arXiv 2312.11514, ACL 2024): the baseline PowerInfer-2
//! re-implemented in llama.cpp "based on the paper's description, including sparsity
//! prediction, row-column bundling, and neuron data caching" (PowerInfer-2 §7.1; Apple's code
//! is not public, so this follows the paper's rules, as that port did):
//!
//! - **Predictor** (§3.1): a low-rank predictor per layer on the attention output, costed as a
//!   GEMV of `predictor_rank × (hidden + ffn)` weights (rank 256: App. C, Llama 2) whose
//!   weights stay in DRAM. The predicted set is the trace's recorded predictor output.
//! - **Windowing** (§3.1, Fig. 4): DRAM keeps the neurons predicted for the last `window`
//!   tokens (k = 5, Fig. 4); each token loads only the predicted neurons not resident and
//!   frees the neurons that left the window. When the window's union outgrows the budget the
//!   least recently predicted neurons go first (the paper shrinks the window, App. C.3–C.5).
//! - **Row–column bundling** (§3.2): a neuron's up column and down row are stored together and
//!   read as one request (`bundling`); off, each row is its own request. The gate row of a
//!   gated FFN is a request of its own either way (the paper's models are two-matrix FFNs).
//! - **Reads** are issued in parallel (32 threads, §4.1: here the device's queue) and **not
//!   overlapped with compute**: Table 3 adds I/O, memory management and compute.
//! - **Memory management** (§3.3, `memory_management`): deleting a neuron copies the last row
//!   over it and inserting appends; charged as a one-core DRAM copy of the rows moved, after
//!   the reads and before the compute.

use crate::model::{TensorKind, TensorRef, DENSE_FFN};
use crate::plan::{Kernel, Op, OpId, PlanBuilder, Unit};
use crate::policy::context::{parse_params, Counters, MemoryUse, PolicyContext, PolicyError};
use crate::policy::machinery::cache::cluster_lru::ClusterLru;
use crate::policy::machinery::pass::neuron::check_pass;
use crate::policy::machinery::pass::resident_ops::ResidentOps;
use crate::policy::machinery::resident::ResidentSet;
use crate::policy::Policy;
use crate::trace::ForwardPass;
use serde::Deserialize;
use std::collections::VecDeque;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    window: u32,
    bundling: bool,
    memory_management: bool,
    predictor_cost: bool,
    predictor_rank: u32,
    /// CPU cluster that computes (default: `mid` where there is one, as for `powerinfer2`).
    compute_cluster: Option<String>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            window: 5,
            bundling: true,
            memory_management: true,
            predictor_cost: true,
            predictor_rank: 256,
            compute_cluster: None,
        }
    }
}

pub struct LlmInAFlash {
    ctx: PolicyContext,
    params: Params,
    resident: ResidentSet,
    cache: ClusterLru,
    /// Per layer, the predicted sets of the last `window` passes (oldest first).
    history: Vec<VecDeque<Vec<u32>>>,
    /// Per layer and neuron, the pass index that last predicted it (+1; 0 = never).
    last_predicted: Vec<Vec<u64>>,
    pass_index: u64,
    unit: Unit,
    one_core: Unit,
    counters: Counters,
    union: Vec<u32>,
    stamp: Vec<u64>,
}

pub fn build(ctx: PolicyContext) -> Result<Box<dyn Policy>, PolicyError> {
    const NAME: &str = "llm-in-a-flash";
    let params: Params = parse_params(NAME, &ctx.params)?;
    if params.window == 0 || params.predictor_rank == 0 {
        return Err(PolicyError::BadParameter(format!(
            "policy `{NAME}`: `window` and `predictor_rank` must be at least 1"
        )));
    }
    let cluster = match &params.compute_cluster {
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
        None => ctx
            .device
            .cpu
            .iter()
            .position(|c| c.name == "mid")
            .unwrap_or(0),
    };
    let cores = ctx.device.cpu[cluster].cores.value.max(1) as u16;
    let model = ctx.model.clone();
    let mut resident = ResidentSet::new(&ctx, false);
    if params.predictor_cost {
        resident.add_extra((0..model.layers).map(|l| {
            (
                TensorRef::new(l, TensorKind::Router),
                ctx.resident_precision.bytes_for(
                    params.predictor_rank as u64 * (model.hidden + model.ffn_width(l)) as u64,
                ),
            )
        }));
    }
    let neuron = model.neuron_bytes(ctx.offload_precision);
    resident.check_budget(
        &ctx,
        neuron,
        "the resident set, the predictors and one neuron",
    )?;
    let capacity = ctx.budget_bytes - resident.bytes();
    Ok(Box::new(LlmInAFlash {
        cache: ClusterLru::new(capacity, ctx.load_ops.clone()),
        history: vec![VecDeque::new(); model.layers as usize],
        last_predicted: (0..model.layers)
            .map(|l| vec![0; model.ffn_width(l) as usize])
            .collect(),
        pass_index: 0,
        unit: Unit::Cpu {
            cluster: cluster as u8,
            threads: cores,
        },
        one_core: Unit::Cpu {
            cluster: cluster as u8,
            threads: 1,
        },
        params,
        resident,
        ctx,
        counters: Counters::default(),
        union: Vec::new(),
        stamp: Vec::new(),
    }))
}

fn key(layer: u32, n: u32) -> TensorRef {
    TensorRef::new(
        layer,
        TensorKind::Neurons {
            expert: DENSE_FFN,
            first: n,
            count: 1,
        },
    )
}

impl Policy for LlmInAFlash {
    fn name(&self) -> &str {
        "llm-in-a-flash"
    }

    fn plan_warmup(&mut self, b: &mut PlanBuilder) -> Result<(), PolicyError> {
        self.resident.plan_warmup(b);
        Ok(())
    }

    fn plan_pass(&mut self, pass: &ForwardPass, b: &mut PlanBuilder) -> Result<(), PolicyError> {
        let model = self.ctx.model.clone();
        check_pass(&model, pass)?;
        self.pass_index += 1;
        let t = self.pass_index;
        let precision = self.ctx.offload_precision;
        let ops = ResidentOps {
            model: &model,
            precision: self.ctx.resident_precision,
        };
        let matrices = model.ffn_kind.matrices();
        let row = precision.bytes_for(model.hidden as u64);
        let neuron = model.neuron_bytes(precision);
        let request = if self.params.bundling && matrices == 3 {
            2 * row
        } else {
            row
        } as u32;
        let mut prev: Option<OpId> = None;
        for layer in 0..model.layers {
            let l = layer as usize;
            let deps: Vec<OpId> = prev.into_iter().collect();
            let mixer = b.push(ops.mixer(layer, pass, self.unit), &deps);
            let pred = if self.params.predictor_cost {
                b.push(
                    Op::matmul(
                        TensorRef::new(layer, TensorKind::Router),
                        self.unit,
                        self.ctx.resident_precision,
                        self.params.predictor_rank,
                        model.hidden + model.ffn_width(layer),
                        pass.batch(),
                    ),
                    &[mixer],
                )
            } else {
                mixer
            };
            // The union of the pass's predicted sets.
            let width = model.ffn_width(layer) as usize;
            if self.stamp.len() < width {
                self.stamp.resize(width, 0);
            }
            let stamp = t * model.layers as u64 + layer as u64 + 1;
            self.union.clear();
            for tok in &pass.tokens {
                let set = tok
                    .predicted_neurons_at(l)
                    .unwrap_or_else(|| tok.neurons_at(l));
                for &n in set {
                    if self.stamp[n as usize] != stamp {
                        self.stamp[n as usize] = stamp;
                        self.union.push(n);
                    }
                }
            }
            self.union.sort_unstable();
            // Neurons leaving the window: predicted `window` passes ago and not since.
            let mut deleted = 0u64;
            self.history[l].push_back(self.union.clone());
            if self.history[l].len() > self.params.window as usize {
                let old = self.history[l].pop_front().unwrap_or_default();
                let horizon = t - self.params.window as u64;
                for n in old {
                    if self.last_predicted[l][n as usize] <= horizon
                        && self.stamp[n as usize] != stamp
                        && self.cache.remove(key(layer, n), b)
                    {
                        deleted += 1;
                        self.counters.evictions += 1;
                    }
                }
            }
            self.cache.pin(self.union.iter().map(|&n| key(layer, n)));
            let mut readies = vec![pred];
            let mut inserted = 0u64;
            let mut held = 0u64;
            for &n in &self.union {
                self.last_predicted[l][n as usize] = t;
                self.counters.lookups += 1;
                let k = key(layer, n);
                if let Some(r) = self.cache.ready(&k) {
                    self.counters.hits += 1;
                    held += neuron;
                    readies.push(r);
                    continue;
                }
                self.counters.misses += 1;
                if held + neuron > self.cache.capacity_bytes() {
                    return Err(PolicyError::BudgetTooSmall {
                        required: held + neuron,
                        budget: self.cache.capacity_bytes(),
                        what: "one layer's predicted neurons".into(),
                    });
                }
                let evicted = self.cache.make_room(neuron, b)?;
                self.counters.evictions += evicted;
                deleted += evicted;
                held += neuron;
                inserted += 1;
                readies.push(self.cache.load(k, precision, neuron, request, &[pred], b));
            }
            let io_done = b.push(Op::Join, &readies);
            let before_compute = if self.params.memory_management && deleted + inserted > 0 {
                let moved = (deleted + inserted) * neuron;
                b.push(
                    Op::Compute {
                        tensor: TensorRef::new(
                            layer,
                            TensorKind::Neurons {
                                expert: DENSE_FFN,
                                first: 0,
                                count: width as u32,
                            },
                        ),
                        unit: self.one_core,
                        precision,
                        rows: (deleted + inserted) as u32,
                        cols: model.hidden,
                        batch: 1,
                        flops: 0,
                        bytes: 2 * moved,
                        kernel: Kernel::Lut,
                    },
                    &[io_done],
                )
            } else {
                io_done
            };
            let compute = b.push(
                Op::matmul(
                    TensorRef::new(
                        layer,
                        TensorKind::Neurons {
                            expert: DENSE_FFN,
                            first: 0,
                            count: width as u32,
                        },
                    ),
                    self.unit,
                    precision,
                    (matrices as u32) * self.union.len() as u32,
                    model.hidden,
                    pass.batch(),
                ),
                &[mixer, before_compute],
            );
            self.counters.served_by_precision[precision.index()] += 1;
            for &n in &self.union {
                self.cache.used(key(layer, n), compute);
            }
            prev = Some(b.push(Op::Join, &[mixer, compute]));
        }
        let deps: Vec<OpId> = prev.into_iter().collect();
        let head = b.push(ops.lm_head(self.unit), &deps);
        b.set_output(head);
        Ok(())
    }

    fn memory(&self) -> MemoryUse {
        MemoryUse {
            resident_bytes: self.resident.bytes(),
            cache_bytes: self.cache.used_bytes(),
        }
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }
}
