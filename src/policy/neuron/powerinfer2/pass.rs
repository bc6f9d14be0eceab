//! The plan of one PowerInfer-2 forward pass (see the module docs of [`super`] for the
//! pseudo-code it follows). Decode (and prefill without the NPU) runs the hybrid layer:
//! attention, the hot cluster dense, the predictor, then the cold neurons' five stages per
//! cluster. Prefill with the NPU runs every layer's FFN as one cluster on the NPU while a big
//! core reads the next layer's missing neurons sequentially.
//!
//! Stages are emitted stage by stage over the layer's clusters (all gate supplies, all gate
//! computes, all up/down supplies, all up/down computes), which is also the order in which the
//! one I/O thread issues the reads. Only the dependencies differ with `pipeline`: on, each
//! cluster's compute waits for its own reads only, so cores pick any ready cluster while other
//! clusters' reads are in flight; off, each stage waits for the whole previous stage (the
//! matrix barrier).

use super::regions::{cold_key, hot_key, ColdMode, PREFILL_STAGE};
use super::{PowerInfer2, PredictorSource};
use crate::model::{TensorKind, TensorRef, DENSE_FFN};
use crate::plan::{Op, OpId, PlanBuilder, Unit};
use crate::policy::context::PolicyError;
use crate::policy::machinery::pass::neuron::check_pass;
use crate::policy::machinery::pass::resident_ops::ResidentOps;
use crate::policy::machinery::resident::BULK_REQUEST_BYTES;
use crate::trace::ForwardPass;

/// The predictor of `layer`, a resident tensor of the fixed region. It is the dense FFN's
/// router in the sense that it routes the token to neurons, so it is named as one.
pub fn predictor_tensor(layer: u32) -> TensorRef {
    TensorRef::new(layer, TensorKind::Router)
}

/// Buffers kept between passes.
#[derive(Default)]
pub struct Scratch {
    active_stamp: Vec<u64>,
    predicted_stamp: Vec<u64>,
    stamp: u64,
    /// (rank, truly active) of the layer's predicted cold neurons, ascending by rank.
    predicted: Vec<(u32, bool)>,
}

/// One cold cluster's predicted neurons: `predicted[lo..hi]`.
struct ColdCluster {
    first_rank: u32,
    count: u32,
    lo: usize,
    hi: usize,
}

pub fn plan(
    p: &mut PowerInfer2,
    pass: &ForwardPass,
    b: &mut PlanBuilder,
) -> Result<(), PolicyError> {
    let model = p.ctx.model.clone();
    check_pass(&model, pass)?;
    let ops = ResidentOps {
        model: &model,
        precision: p.ctx.resident_precision,
    };
    let npu_prefill = p.params.npu && pass.batch() > 1;
    let mut prev: Option<OpId> = None;
    let mut prefill_read: Option<OpId> = None;
    for layer in 0..model.layers {
        let deps: Vec<OpId> = prev.into_iter().collect();
        let mixer = b.push(ops.mixer(layer, pass, p.attention_unit), &deps);
        let join = if npu_prefill {
            prefill_layer(p, layer, pass, mixer, &mut prefill_read, b)?
        } else {
            decode_layer(p, layer, pass, mixer, prev, b)?
        };
        prev = Some(join);
    }
    let deps: Vec<OpId> = prev.into_iter().collect();
    let head = b.push(ops.lm_head(p.attention_unit), &deps);
    b.set_output(head);
    Ok(())
}

/// §4.1.1: all neurons of the layer as one cluster on the NPU. The layer's neurons that are in
/// neither region are read sequentially (1 MiB requests) into the staging area, each layer's
/// read after the previous layer's (one big core preloads layer after layer), so layer l+1 is
/// read while layer l computes; the staged copy is dropped after the compute.
fn prefill_layer(
    p: &mut PowerInfer2,
    layer: u32,
    pass: &ForwardPass,
    mixer: OpId,
    prev_read: &mut Option<OpId>,
    b: &mut PlanBuilder,
) -> Result<OpId, PolicyError> {
    let model = p.ctx.model.clone();
    let width = model.ffn_width(layer);
    let precision = p.ctx.offload_precision;
    let h = p.plan.hot[layer as usize];
    let mut deps = vec![mixer];
    let mut cached = 0u32;
    let mut used_keys: Vec<TensorRef> = Vec::new();
    if h > 0 {
        let key = hot_key(layer, h);
        if let Some(r) = p.regions.hot.ready(&key) {
            deps.push(r);
            cached += h;
            used_keys.push(key);
        }
    }
    for rank in h..width {
        if let Some(r) = p.regions.static_hit(&p.plan, layer, rank) {
            deps.push(r);
            cached += 1;
            continue;
        }
        let key = cold_key(layer, rank, false);
        if let Some(r) = p.regions.cold.ready(&key) {
            let whole = if p.layout.two_phase() {
                p.regions.cold.ready(&cold_key(layer, rank, true))
            } else {
                Some(r)
            };
            if let Some(w) = whole {
                deps.push(r);
                deps.push(w);
                cached += 1;
                used_keys.push(key);
                if p.layout.two_phase() {
                    used_keys.push(cold_key(layer, rank, true));
                }
            }
        }
    }
    p.counters.lookups += width as u64;
    p.counters.hits += cached as u64;
    p.counters.misses += (width - cached) as u64;
    let missing = (width - cached) as u64 * p.layout.dense_bytes;
    let stage = TensorRef::new(
        layer,
        TensorKind::Neurons {
            expert: PREFILL_STAGE,
            first: 0,
            count: width,
        },
    );
    if missing > 0 {
        if missing > p.regions.prefill.free_bytes() {
            return Err(PolicyError::BudgetTooSmall {
                required: missing,
                budget: p.regions.prefill.free_bytes(),
                what: "one layer's neurons in the prefill staging area".into(),
            });
        }
        let after: Vec<OpId> = prev_read.iter().copied().collect();
        let read = p.regions.prefill.load(
            stage,
            precision,
            missing,
            BULK_REQUEST_BYTES,
            &[],
            &after,
            false,
            b,
        );
        *prev_read = Some(read);
        deps.push(read);
    }
    deps.sort_unstable();
    deps.dedup();
    let ffn = TensorRef::new(
        layer,
        TensorKind::Neurons {
            expert: DENSE_FFN,
            first: 0,
            count: width,
        },
    );
    let compute = b.push(
        Op::matmul(
            ffn,
            Unit::Accel,
            precision,
            model.ffn_kind.matrices() as u32 * width,
            model.hidden,
            pass.batch(),
        ),
        &deps,
    );
    p.counters.served_by_precision[precision.index()] += 1;
    if missing > 0 {
        p.regions.prefill.record_use(&stage, compute);
        p.regions.prefill.evict(stage, b);
    }
    for key in used_keys {
        if key.kind == hot_key(layer, h).kind {
            p.regions.hot.used(key, compute);
        } else {
            p.regions.cold.used(key, compute);
        }
    }
    Ok(b.push(Op::Join, &[mixer, compute]))
}

/// Where a cold neuron part came from, for its release after use.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Cold,
    Static,
    Staged,
}

/// The hybrid decode layer (§4.1.2–4.4).
fn decode_layer(
    p: &mut PowerInfer2,
    layer: u32,
    pass: &ForwardPass,
    mixer: OpId,
    prev_join: Option<OpId>,
    b: &mut PlanBuilder,
) -> Result<OpId, PolicyError> {
    let model = p.ctx.model.clone();
    let precision = p.ctx.offload_precision;
    let batch = pass.batch();
    let matrices = model.ffn_kind.matrices() as u32;
    let h = if p.params.hot_cold {
        p.plan.hot[layer as usize]
    } else {
        0
    };
    let mut outs = vec![mixer];

    // The hot cluster: preloaded during attention when absent, computed dense.
    if h > 0 {
        let key = hot_key(layer, h);
        p.regions.hot.pin([key]);
        p.counters.lookups += 1;
        let ready = match p.regions.hot.ready(&key) {
            Some(r) => {
                p.counters.hits += 1;
                r
            }
            None => {
                p.counters.misses += 1;
                let bytes = h as u64 * p.layout.dense_bytes;
                p.counters.evictions += p.regions.hot.make_room(bytes, b)?;
                let after: Vec<OpId> = prev_join.into_iter().collect();
                p.regions
                    .hot
                    .load(key, precision, bytes, BULK_REQUEST_BYTES, &after, b)
            }
        };
        let use_op = if p.params.npu {
            b.push(
                Op::matmul(
                    key,
                    Unit::Accel,
                    precision,
                    matrices * h,
                    model.hidden,
                    batch,
                ),
                &[mixer, ready],
            )
        } else {
            let size = p.params.cold_cluster_neurons;
            let mut chunks = Vec::new();
            let mut first = 0;
            while first < h {
                let n = size.min(h - first);
                chunks.push(b.push(
                    Op::matmul(key, p.pool, precision, matrices * n, model.hidden, batch),
                    &[mixer, ready],
                ));
                first += n;
            }
            b.push(Op::Join, &chunks)
        };
        p.counters.served_by_precision[precision.index()] += 1;
        p.regions.hot.used(key, use_op);
        outs.push(use_op);
    }

    // The predictor (CPU): its output is the cold neurons to compute.
    let gate_after = if p.params.predictor_cost {
        let pred = b.push(
            Op::matmul(
                predictor_tensor(layer),
                p.cpu_all,
                p.ctx.resident_precision,
                p.params.predictor_rank,
                model.hidden + model.ffn_width(layer),
                batch,
            ),
            &[mixer],
        );
        outs.push(pred);
        pred
    } else {
        mixer
    };

    collect_predicted(p, layer, pass, h);
    let predicted = std::mem::take(&mut p.scratch.predicted);
    let size = p.params.cold_cluster_neurons;
    let mut clusters: Vec<ColdCluster> = Vec::new();
    for (i, &(rank, _)) in predicted.iter().enumerate() {
        let c = (rank - h) / size;
        let first_rank = h + c * size;
        match clusters.last_mut() {
            Some(last) if last.first_rank == first_rank => last.hi = i + 1,
            _ => clusters.push(ColdCluster {
                first_rank,
                count: size.min(model.ffn_width(layer) - first_rank),
                lo: i,
                hi: i + 1,
            }),
        }
    }
    let two_phase = p.layout.two_phase();
    p.counters.lookups += predicted.len() as u64;

    // Pin what this layer will use from the cold region.
    let mut held = 0u64;
    if p.regions.mode == ColdMode::Lru {
        let mut keys = Vec::new();
        for &(rank, active) in &predicted {
            let g = cold_key(layer, rank, false);
            if p.regions.cold.contains(&g) {
                held += p.layout.first_bytes;
                keys.push(g);
            }
            let u = cold_key(layer, rank, true);
            if two_phase && active && p.regions.cold.contains(&u) {
                held += p.layout.second_bytes;
                keys.push(u);
            }
        }
        p.regions.cold.pin(keys);
    }

    // Stage GIO: the gate part (or whole bundle) of every predicted neuron not in memory.
    let mut gate_ready: Vec<Vec<OpId>> = Vec::with_capacity(clusters.len());
    let mut gate_src: Vec<Source> = Vec::with_capacity(predicted.len());
    for c in &clusters {
        let mut readies = Vec::new();
        for &(rank, _) in &predicted[c.lo..c.hi] {
            let (ready, src) = supply(p, layer, rank, false, gate_after, &mut held, b)?;
            if ready.1 {
                p.counters.hits += 1;
            } else {
                p.counters.misses += 1;
            }
            readies.push(ready.0);
            gate_src.push(src);
        }
        gate_ready.push(readies);
    }
    let barrier_gio = (!p.params.pipeline).then(|| {
        let all: Vec<OpId> = std::iter::once(gate_after)
            .chain(gate_ready.iter().flatten().copied())
            .collect();
        b.push(Op::Join, &all)
    });

    // Stage GC: gate rows × x, one op per cluster on any free core.
    let mut gc = Vec::with_capacity(clusters.len());
    for (ci, c) in clusters.iter().enumerate() {
        let mut deps = vec![mixer, gate_after];
        match barrier_gio {
            Some(j) => deps.push(j),
            None => deps.extend(&gate_ready[ci]),
        }
        deps.sort_unstable();
        deps.dedup();
        let op = b.push(
            Op::matmul(
                cold_cluster_tensor(layer, c),
                p.pool,
                precision,
                (c.hi - c.lo) as u32,
                model.hidden,
                batch,
            ),
            &deps,
        );
        gc.push(op);
    }
    let barrier_gc = (!p.params.pipeline && !gc.is_empty()).then(|| b.push(Op::Join, &gc));

    // Stage UDIO (two-phase): the up/down part of the neurons whose gate is non-zero.
    let mut ud_ready: Vec<Vec<OpId>> = vec![Vec::new(); clusters.len()];
    let mut ud_src: Vec<(usize, Source)> = Vec::new();
    if two_phase {
        for (ci, c) in clusters.iter().enumerate() {
            let after = barrier_gc.unwrap_or(gc[ci]);
            for (i, &(rank, active)) in predicted[c.lo..c.hi].iter().enumerate() {
                if !active {
                    continue;
                }
                let (ready, src) = supply(p, layer, rank, true, after, &mut held, b)?;
                ud_ready[ci].push(ready.0);
                ud_src.push((c.lo + i, src));
            }
        }
    }
    let barrier_udio = (!p.params.pipeline && two_phase).then(|| {
        let all: Vec<OpId> = barrier_gc
            .into_iter()
            .chain(ud_ready.iter().flatten().copied())
            .collect();
        b.push(Op::Join, &all)
    });

    // Stage UDC: up · gate and the down accumulation of the truly active neurons.
    let mut last_use: Vec<OpId> = gc.clone();
    for (ci, c) in clusters.iter().enumerate() {
        let active = predicted[c.lo..c.hi].iter().filter(|x| x.1).count() as u32;
        if active == 0 || matrices < 2 {
            outs.push(gc[ci]);
            continue;
        }
        let mut deps = vec![gc[ci]];
        match barrier_udio.or(barrier_gc) {
            Some(j) => deps.push(j),
            None => deps.extend(&ud_ready[ci]),
        }
        deps.sort_unstable();
        deps.dedup();
        let op = b.push(
            Op::matmul(
                cold_cluster_tensor(layer, c),
                p.pool,
                precision,
                (matrices - 1) * active,
                model.hidden,
                batch,
            ),
            &deps,
        );
        p.counters.served_by_precision[precision.index()] += 1;
        last_use[ci] = op;
        outs.push(op);
    }

    // Release: cached parts become evictable after their last use; staged parts are dropped.
    for (ci, c) in clusters.iter().enumerate() {
        for i in c.lo..c.hi {
            let rank = predicted[i].0;
            // The gate part's last use is the gate compute when two-phase, else the cluster's
            // last compute (the bundle holds up and down too).
            let op = if two_phase { gc[ci] } else { last_use[ci] };
            release(p, cold_key(layer, rank, false), gate_src[i], op, b);
        }
    }
    for &(i, src) in &ud_src {
        let ci = clusters
            .iter()
            .position(|c| c.lo <= i && i < c.hi)
            .unwrap_or(0);
        release(
            p,
            cold_key(layer, predicted[i].0, true),
            src,
            last_use[ci],
            b,
        );
    }
    p.scratch.predicted = predicted;
    Ok(b.push(Op::Join, &outs))
}

/// The compute tensor of a cold cluster: its ranks in the neuron plan.
fn cold_cluster_tensor(layer: u32, c: &ColdCluster) -> TensorRef {
    TensorRef::new(
        layer,
        TensorKind::Neurons {
            expert: DENSE_FFN,
            first: c.first_rank,
            count: c.count,
        },
    )
}

/// Makes one part of a cold neuron available: `((op, hit), source)`.
fn supply(
    p: &mut PowerInfer2,
    layer: u32,
    rank: u32,
    up_down: bool,
    read_after: OpId,
    held: &mut u64,
    b: &mut PlanBuilder,
) -> Result<((OpId, bool), Source), PolicyError> {
    let precision = p.ctx.offload_precision;
    let (bytes, request) = if up_down {
        (p.layout.second_bytes, p.layout.second_request)
    } else {
        (p.layout.first_bytes, p.layout.first_request)
    };
    if let Some(r) = p.regions.static_hit(&p.plan, layer, rank) {
        return Ok(((r, true), Source::Static));
    }
    let key = cold_key(layer, rank, up_down);
    if p.regions.mode == ColdMode::Lru {
        if let Some(r) = p.regions.cold.ready(&key) {
            return Ok(((r, true), Source::Cold));
        }
        let capacity = p.regions.cold.capacity_bytes();
        if *held + bytes > capacity {
            return Err(PolicyError::BudgetTooSmall {
                required: *held + bytes,
                budget: capacity,
                what: "one layer's predicted cold neurons in the cold region".into(),
            });
        }
        p.counters.evictions += p.regions.cold.make_room(bytes, b)?;
        *held += bytes;
        let r = p
            .regions
            .cold
            .load(key, precision, bytes, request, &[read_after], b);
        return Ok(((r, false), Source::Cold));
    }
    if p.regions.cold_staging.free_bytes() < bytes {
        return Err(PolicyError::BudgetTooSmall {
            required: bytes,
            budget: p.regions.cold_staging.free_bytes(),
            what: "one layer's predicted cold neurons in the staging area".into(),
        });
    }
    let r =
        p.regions
            .cold_staging
            .load(key, precision, bytes, request, &[], &[read_after], false, b);
    Ok(((r, false), Source::Staged))
}

fn release(p: &mut PowerInfer2, key: TensorRef, src: Source, op: OpId, b: &mut PlanBuilder) {
    match src {
        Source::Cold => p.regions.cold.used(key, op),
        Source::Static => {}
        Source::Staged => {
            p.regions.cold_staging.record_use(&key, op);
            p.regions.cold_staging.evict(key, b);
            p.counters.evictions += 1;
        }
    }
}

/// Fills `scratch.predicted` with the layer's predicted cold neurons (ranks ≥ `hot`), the union
/// over the pass's tokens, each marked truly active (its gate is non-zero for some token) or
/// not (a false positive: its up/down part is not read, its gate compute is wasted). Active
/// neurons the predictor missed are not computed (false negatives).
fn collect_predicted(p: &mut PowerInfer2, layer: u32, pass: &ForwardPass, hot: u32) {
    let width = p.ctx.model.ffn_width(layer) as usize;
    let s = &mut p.scratch;
    if s.active_stamp.len() < width {
        s.active_stamp.resize(width, 0);
        s.predicted_stamp.resize(width, 0);
    }
    s.stamp += 1;
    let stamp = s.stamp;
    for t in &pass.tokens {
        for &n in t.neurons_at(layer as usize) {
            s.active_stamp[n as usize] = stamp;
        }
    }
    s.predicted.clear();
    let rank = &p.plan.rank[layer as usize];
    let mut active_cold = 0u64;
    for t in &pass.tokens {
        let predicted = match p.params.predictor {
            PredictorSource::Trace => t.predicted_neurons_at(layer as usize),
            PredictorSource::Oracle => None,
        }
        .unwrap_or_else(|| t.neurons_at(layer as usize));
        for &n in predicted {
            if s.predicted_stamp[n as usize] == stamp {
                continue;
            }
            s.predicted_stamp[n as usize] = stamp;
            let r = rank[n as usize];
            if r >= hot {
                s.predicted.push((r, s.active_stamp[n as usize] == stamp));
            }
        }
    }
    for t in &pass.tokens {
        for &n in t.neurons_at(layer as usize) {
            if rank[n as usize] >= hot && s.active_stamp[n as usize] == stamp {
                // Count each active cold neuron once per pass.
                s.active_stamp[n as usize] = stamp - 1;
                active_cold += 1;
            }
        }
    }
    s.predicted.sort_unstable_by_key(|x| x.0);
    let both = s.predicted.iter().filter(|x| x.1).count() as u64;
    p.predictor_counts.active += active_cold;
    p.predictor_counts.predicted += s.predicted.len() as u64;
    p.predictor_counts.both += both;
}
