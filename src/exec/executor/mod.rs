//! [`Executor`]: the [`Backend`] that performs plans for real and measures them.
//!
//! It mirrors the simulator's semantics (see [`crate::sim`]) with real work:
//!
//! - One continuous timeline: `run(plan)` releases the plan when called (after the previous
//!   plan's output), returns when the plan's output op has finished, and reports every op
//!   (of this plan or an earlier one) that finished meanwhile; ops not upstream of the output
//!   keep running into later plans, and [`Executor::drain`] waits for the rest.
//! - The same resources, by the same names and server counts as the simulator's for the same
//!   device profile (`flash` with `storage.channels` I/O threads, `cpu.<cluster>` with one
//!   server per core, ...). A ready op waits in its resource's queue, ordered by
//!   `(priority, ready time, id)`, until enough servers are free; the queue's head blocks the
//!   ops behind it.
//! - Memory: Alloc and Evict carve regions from a pre-faulted arena ([`super::memory`]); the
//!   budget is checked on the ops' byte counts exactly as the simulator does, and an Alloc
//!   that would exceed it fails the run with `BudgetExceeded`.
//!
//! What each op does is in the [module docs](crate::exec); launching it is [`start`]'s job, and
//! what a run reports is [`stats`]'s.

mod start;
mod stats;

use start::Slice;
use stats::emulation_note;
pub use stats::{EmulatedOps, ExecStats};

use super::io::{DirectFile, IoMode};
use super::memory::{Arena, Region, SLACK_BYTES};
use super::store::crypt::{self};
use super::store::layout::align_up;
use super::store::WeightStore;
use super::work::Activations;
use crate::backend::resources::ResourceMap;
use crate::backend::{Backend, BackendError, OpTiming, ResourceId, ResourceInfo, StepResult};
use crate::exec::model::ModelSession;
use crate::hw::cost::DeviceCosts;
use crate::hw::DeviceProfile;
use crate::model::{Precision, TensorKind, TensorRef};
use crate::plan::{Op, OpId, Plan, Unit};
use crate::units::Nanos;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::Instant;

/// How the executor is set up.
#[derive(Clone, Debug)]
pub struct ExecutorOptions {
    pub budget_bytes: u64,
    /// Seed of the activation vectors compute ops take as input.
    pub seed: u64,
    /// Read with `O_DIRECT` where the file system allows it (the default); `false` reads
    /// buffered with the file dropped from the page cache before each plan, the fallback for
    /// file systems that refuse `O_DIRECT`.
    pub direct_io: bool,
    /// The real model to compute with: compute ops then run its forward pass on the weights
    /// read ([`crate::exec::model`]) instead of the synthetic work of [`crate::exec::work`].
    pub model: Option<Arc<ModelSession>>,
}

impl ExecutorOptions {
    /// Direct I/O, the given budget and seed, synthetic compute.
    pub fn new(budget_bytes: u64, seed: u64) -> Self {
        ExecutorOptions {
            budget_bytes,
            seed,
            direct_io: true,
            model: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Waiting,
    Ready,
    Running,
}

struct Entry {
    op: Op,
    /// The op's dependencies: they name which copy of a tensor it means (see `Live::writers`).
    deps: Vec<OpId>,
    /// The region (by offset) of the copy the op reads or writes while it runs, released when
    /// it ends.
    using: Option<usize>,
    priority: i16,
    pending: u32,
    successors: Vec<OpId>,
    state: State,
    ready_ns: u64,
    start: Nanos,
    resource: Option<ResourceId>,
    servers: u32,
    /// The cost model's time of an emulated op (an accelerator compute, a world switch).
    emulated: Option<Nanos>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Content {
    Empty,
    Loaded { precision: Precision, sealed: bool },
}

struct Live {
    region: Region,
    bytes: u64,
    content: Content,
    /// Ops reading (compute, decrypt) or writing (read) the region right now.
    busy: u32,
    /// The Alloc that made the region and the Reads and Decrypts that have filled it. A policy
    /// may hold two copies of one tensor at once (a copy being evicted while the next one
    /// loads, or HOBBIT's high- and low-precision copies); an op means the copy whose writer
    /// it depends on, as the plan's data flow says.
    writers: Vec<OpId>,
}

struct Completion {
    id: OpId,
    end: Nanos,
    result: Result<(), String>,
}

/// The real executor. See the [module docs](crate::exec).
pub struct Executor {
    store: Arc<WeightStore>,
    file: Arc<DirectFile>,
    /// The device's cost model: only emulated ops are timed with it.
    costs: DeviceCosts,
    resource_map: ResourceMap,
    epoch: Instant,
    io_pool: rayon::ThreadPool,
    cpu_pools: Vec<rayon::ThreadPool>,
    emu_pool: rayon::ThreadPool,
    tx: Sender<Completion>,
    rx: Receiver<Completion>,
    free_servers: Vec<u32>,
    queues: Vec<BinaryHeap<Reverse<(i16, u64, OpId)>>>,
    read_resource: ResourceId,
    ops: BTreeMap<OpId, Entry>,
    next_id: OpId,
    ready_evicts: Vec<OpId>,
    ready_free: Vec<OpId>,
    running: usize,
    arena: Arena,
    live: BTreeMap<TensorRef, VecDeque<Live>>,
    budget_bytes: u64,
    used_bytes: u64,
    activations: Arc<Activations>,
    finished: Vec<OpTiming>,
    failure: Option<BackendError>,
    stats: ExecStats,
    emulated: BTreeMap<&'static str, u64>,
    model: Option<Arc<ModelSession>>,
}

/// Where an op runs: its resource, the servers it holds, and the cost model's time (used only
/// by emulated ops).
type Placed = (Option<ResourceId>, u32, Nanos);

fn bad(m: impl Into<String>) -> BackendError {
    BackendError::BadPlan(m.into())
}

impl Executor {
    /// An executor for `device` running plans against `store` within `options.budget_bytes`.
    /// Maps and faults in the arena and starts the thread pools: everything that must not be
    /// timed happens here.
    pub fn new(
        device: &DeviceProfile,
        store: Arc<WeightStore>,
        options: &ExecutorOptions,
    ) -> Result<Executor, BackendError> {
        if let Err(problems) = device.check() {
            return Err(BackendError::Unsupported(format!(
                "device profile `{}` is invalid: {}",
                device.name,
                problems.join("; ")
            )));
        }
        let profile_error =
            |e| BackendError::Unsupported(format!("device profile `{}`: {e}", device.name));
        let costs = DeviceCosts::new(device).map_err(profile_error)?;
        let resource_map = ResourceMap::new(&costs).map_err(profile_error)?;
        let file = if options.direct_io {
            DirectFile::open(&store.data_path())
        } else {
            DirectFile::open_buffered(&store.data_path())
        }
        .map_err(BackendError::Io)?;
        let resources = resource_map.resources().to_vec();
        let index_of = |name: &str| {
            resources
                .iter()
                .position(|r| r.name == name)
                .map(|i| i as ResourceId)
        };
        let read_resource = match device.offload_tier {
            crate::hw::OffloadTier::Flash => index_of("flash"),
            crate::hw::OffloadTier::HostMemory => index_of("link"),
        }
        .ok_or_else(|| BackendError::Unsupported("the device has no read resource".into()))?;
        let io_threads = device.storage.channels.value.max(1);
        let pool = |n: u32, name: &'static str| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n as usize)
                .thread_name(move |i| format!("edgesim-{name}-{i}"))
                .build()
                .map_err(|e| BackendError::Io(format!("cannot start {n} {name} threads: {e}")))
        };
        let cpu_pools = device
            .cpu
            .iter()
            .map(|c| pool(c.cores.value.max(1), "cpu"))
            .collect::<Result<Vec<_>, _>>()?;
        let budget = usize::try_from(options.budget_bytes).unwrap_or(usize::MAX);
        if let Some(avail) = available_memory_bytes() {
            if options.budget_bytes > avail {
                return Err(BackendError::Unsupported(format!(
                    "memory budget {} bytes is more than this machine has available ({avail} bytes)",
                    options.budget_bytes
                )));
            }
        }
        let arena = Arena::new(
            align_up(budget as u64) as usize + SLACK_BYTES + rounding_room(&store, budget),
        )
        .map_err(BackendError::Io)?;
        let (tx, rx) = channel();
        let stats = ExecStats {
            io_mode: Some(file.mode()),
            io_threads,
            compute_threads: device.cpu.iter().map(|c| c.cores.value).collect(),
            arena_bytes: arena.capacity() as u64,
            budget_bytes: options.budget_bytes,
            ..ExecStats::default()
        };
        let hidden = store.geometry.hidden;
        Ok(Executor {
            free_servers: resources.iter().map(|r| r.servers).collect(),
            queues: resources.iter().map(|_| BinaryHeap::new()).collect(),
            io_pool: pool(io_threads, "io")?,
            emu_pool: pool(1, "emulated")?,
            cpu_pools,
            read_resource,
            file: Arc::new(file),
            store,
            costs,
            resource_map,
            epoch: Instant::now(),
            tx,
            rx,
            ops: BTreeMap::new(),
            next_id: 0,
            ready_evicts: Vec::new(),
            ready_free: Vec::new(),
            running: 0,
            arena,
            live: BTreeMap::new(),
            budget_bytes: options.budget_bytes,
            used_bytes: 0,
            activations: Arc::new(Activations::new(hidden, options.seed)),
            finished: Vec::new(),
            failure: None,
            stats,
            emulated: BTreeMap::new(),
            model: options.model.clone(),
        })
    }

    fn now(&self) -> Nanos {
        Nanos(self.epoch.elapsed().as_nanos() as u64)
    }

    pub fn next_op_id(&self) -> OpId {
        self.next_id
    }

    pub fn io_mode(&self) -> IoMode {
        self.file.mode()
    }

    pub fn memory_used_bytes(&self) -> u64 {
        self.used_bytes
    }

    /// What the run did so far: I/O mode, bytes, emulated ops.
    pub fn stats(&self) -> ExecStats {
        let mut s = self.stats.clone();
        s.emulated = self
            .emulated
            .iter()
            .map(|(&what, &count)| EmulatedOps {
                what: what.to_string(),
                count,
                how: emulation_note(what).to_string(),
            })
            .collect();
        s
    }

    /// Runs every op still in flight to completion; returns the timings of the ops that
    /// finished since the last `run`.
    pub fn drain(&mut self) -> Result<Vec<OpTiming>, BackendError> {
        if let Some(e) = &self.failure {
            return Err(e.clone());
        }
        if let Err(e) = self.advance(None) {
            return Err(self.fail(e));
        }
        let mut out = std::mem::take(&mut self.finished);
        out.sort_by_key(|t| (t.end, t.id));
        Ok(out)
    }

    /// Records a failure and waits for running jobs, so nothing is left writing to memory.
    fn fail(&mut self, e: BackendError) -> BackendError {
        while self.running > 0 {
            match self.rx.recv() {
                Ok(_) => self.running -= 1,
                Err(_) => break,
            }
        }
        self.failure = Some(e.clone());
        e
    }

    /// Checks a plan against the store and the device before anything runs, and prices it.
    fn check(&self, plan: &Plan) -> Result<(OpId, Vec<Placed>), BackendError> {
        if plan.first_id() != self.next_id {
            return Err(bad(format!(
                "plan starts at op id {}, but the next id this executor expects is {}",
                plan.first_id(),
                self.next_id
            )));
        }
        let output = match plan.output() {
            Some(o) if o >= plan.first_id() && o < plan.end_id() => o,
            Some(o) => return Err(bad(format!("output op {o} is not in the plan"))),
            None => return Err(bad("plan has no output op")),
        };
        let mut costs = Vec::with_capacity(plan.len());
        for node in plan.nodes() {
            for &dep in plan.deps(node) {
                if dep >= node.id {
                    return Err(bad(format!(
                        "op {} depends on op {dep}, which is not issued before it",
                        node.id
                    )));
                }
            }
            let refuse = |e: crate::hw::cost::CostError| {
                let m = format!("op {} ({}): {e}", node.id, node.op.kind_name());
                if e.is_plan_error() {
                    BackendError::BadPlan(m)
                } else {
                    BackendError::Unsupported(m)
                }
            };
            let cost = self
                .resource_map
                .place(&node.op, &self.costs)
                .map_err(refuse)?;
            // What the host cannot do is emulated: it takes the cost model's time.
            let emulated_time = match node.op {
                Op::Compute {
                    unit: Unit::Accel,
                    precision,
                    flops,
                    bytes,
                    ..
                } => self
                    .costs
                    .accel()
                    .and_then(|a| a.compute(precision, flops, bytes))
                    .map_err(refuse)?,
                Op::WorldSwitch { .. } => self.costs.tee().map_err(refuse)?.world_switch(),
                Op::NpuHandover { .. } => self.costs.tee().map_err(refuse)?.npu_handover(),
                _ => Nanos::ZERO,
            };
            let what = |t: TensorRef| format!("op {} ({} {t})", node.id, node.op.kind_name());
            let (resource, servers) = match node.op {
                Op::Read {
                    tensor,
                    precision,
                    bytes,
                    request_bytes,
                } => {
                    let (_, e) = self.store.entry(tensor, precision).ok_or_else(|| {
                        let held = match (tensor.kind, self.store.index.neuron_cluster) {
                            (TensorKind::Neurons { .. }, Some(c)) => format!(
                                "its FFNs are stored in clusters of {c} neurons: give the policy \"cluster_neurons\": {c}, or prepare the store with --cluster matching the policy"
                            ),
                            (TensorKind::Neurons { .. }, None) => "it holds no neuron clusters: prepare it with `edgesim exec prepare --gguf`".to_string(),
                            (_, Some(_)) => "it holds a real model with its FFNs as neuron clusters: only the neuron-level `on-demand` and `lru` run on it".to_string(),
                            _ => format!(
                                "it holds {}",
                                self.store.index.precisions.iter().map(|p| p.name()).collect::<Vec<_>>().join(", ")
                            ),
                        };
                        BackendError::Unsupported(format!(
                            "{}: the weight store in {} has no {tensor} at {precision} ({held})",
                            what(tensor),
                            self.store.dir.display(),
                        ))
                    })?;
                    if e.bytes != bytes {
                        return Err(bad(format!(
                            "{}: the plan reads {bytes} bytes but the store holds {} for {tensor} at {precision} (is the store for model `{}`?)",
                            what(tensor),
                            e.bytes,
                            self.store.index.model.name
                        )));
                    }
                    let requests =
                        align_up(e.stored_bytes).div_ceil(request_size(request_bytes, bytes));
                    let servers = (requests as u32)
                        .min(self.free_servers_total(self.read_resource))
                        .max(1);
                    (Some(self.read_resource), servers)
                }
                Op::Compute {
                    tensor,
                    precision,
                    unit,
                    ..
                } => {
                    match tensor.kind {
                        TensorKind::Expert(_)
                        | TensorKind::DenseFfn
                        | TensorKind::Attention
                        | TensorKind::Router
                        | TensorKind::LmHead
                        | TensorKind::Embedding
                        | TensorKind::Neurons { .. } => {}
                        _ => {
                            return Err(BackendError::Unsupported(format!(
                                "{}: the executor cannot compute this tensor",
                                what(tensor)
                            )))
                        }
                    }
                    if self.store.entry(tensor, precision).is_none() {
                        return Err(BackendError::Unsupported(format!(
                            "{}: the weight store has no {tensor} at {precision}",
                            what(tensor)
                        )));
                    }
                    match unit {
                        Unit::Cpu { threads, .. } => (cost.resource, threads as u32),
                        Unit::Accel => (cost.resource, cost.servers),
                    }
                }
                Op::Decrypt { tensor, .. } => {
                    if !self.store.is_encrypted() {
                        return Err(BackendError::Unsupported(format!(
                            "{}: the plan decrypts, but the store in {} is not encrypted (prepare it with --encrypt)",
                            what(tensor),
                            self.store.dir.display()
                        )));
                    }
                    (cost.resource, cost.servers)
                }
                _ => (cost.resource, cost.servers),
            };
            costs.push((resource, servers, emulated_time));
        }
        Ok((output, costs))
    }

    fn free_servers_total(&self, r: ResourceId) -> u32 {
        self.resource_map.resources()[r as usize].servers
    }

    fn insert(&mut self, plan: &Plan, costs: Vec<Placed>) {
        for (node, (resource, servers, priced)) in plan.nodes().iter().zip(costs) {
            let emulated = match node.op {
                Op::Compute {
                    unit: Unit::Accel, ..
                }
                | Op::WorldSwitch { .. }
                | Op::NpuHandover { .. } => Some(priced),
                _ => None,
            };
            let mut pending = 0;
            for &dep in plan.deps(node) {
                if let Some(e) = self.ops.get_mut(&dep) {
                    pending += 1;
                    e.successors.push(node.id);
                }
                // Not in the table: finished (every issued op below next_id finishes once).
            }
            self.ops.insert(
                node.id,
                Entry {
                    op: node.op,
                    deps: plan.deps(node).to_vec(),
                    using: None,
                    priority: node.priority,
                    pending,
                    successors: Vec::new(),
                    state: State::Waiting,
                    ready_ns: 0,
                    start: Nanos::ZERO,
                    resource,
                    servers,
                    emulated,
                },
            );
            if pending == 0 {
                self.make_ready(node.id);
            }
        }
        self.next_id = plan.end_id();
    }

    fn make_ready(&mut self, id: OpId) {
        let now = self.now().0;
        let e = self.ops.get_mut(&id).expect("op in table");
        e.state = State::Ready;
        e.ready_ns = now;
        match (e.resource, e.op) {
            (None, Op::Evict { .. }) => self.ready_evicts.push(id),
            (None, _) => self.ready_free.push(id),
            (Some(r), _) => self.queues[r as usize].push(Reverse((e.priority, now, id))),
        }
    }

    /// Runs ready ops that need no resource: Evicts first, then Allocs and Joins.
    fn run_free(&mut self) -> Result<(), BackendError> {
        loop {
            let id = if !self.ready_evicts.is_empty() {
                self.ready_evicts.remove(0)
            } else if !self.ready_free.is_empty() {
                self.ready_free.remove(0)
            } else {
                return Ok(());
            };
            let now = self.now();
            let op = self.ops[&id].op;
            self.ops.get_mut(&id).expect("op").start = now;
            match op {
                Op::Alloc {
                    tensor,
                    bytes,
                    secure: false,
                } => {
                    self.alloc(id, tensor, bytes)?;
                }
                Op::Evict { tensor, bytes, .. } => self.evict(id, tensor, bytes)?,
                Op::Join => {}
                other => {
                    return Err(bad(format!(
                        "op {id} ({}) has no resource",
                        other.kind_name()
                    )))
                }
            }
            let end = self.now();
            self.complete(id, end)?;
        }
    }

    fn alloc(&mut self, id: OpId, tensor: TensorRef, bytes: u64) -> Result<Region, BackendError> {
        let used = self.used_bytes.saturating_add(bytes);
        if used > self.budget_bytes {
            return Err(BackendError::BudgetExceeded {
                at: self.now(),
                used,
                budget: self.budget_bytes,
                op: id,
            });
        }
        let room = bytes
            + if self.store.is_encrypted() {
                crypt::chunks(bytes) * crypt::TAG_BYTES as u64
            } else {
                0
            };
        let region = self.arena.alloc(align_up(room) as usize).ok_or_else(|| {
            BackendError::Unsupported(format!(
                "op {id} (alloc {tensor}): {bytes} bytes fit the budget but the arena has no free range of {} bytes ({} free in pieces): too many or too fragmented regions",
                align_up(room),
                self.arena.free_bytes()
            ))
        })?;
        self.used_bytes = used;
        self.stats.peak_allocated_bytes = self.stats.peak_allocated_bytes.max(used);
        self.stats.allocs += 1;
        self.live.entry(tensor).or_default().push_back(Live {
            region,
            bytes,
            content: Content::Empty,
            busy: 0,
            writers: vec![id],
        });
        Ok(region)
    }

    fn evict(&mut self, id: OpId, tensor: TensorRef, bytes: u64) -> Result<(), BackendError> {
        let queue = self.live.get_mut(&tensor).filter(|q| !q.is_empty()).ok_or_else(|| {
            bad(format!("op {id} evicts {tensor}, which holds no memory (every byte evicted must come from an Alloc)"))
        })?;
        let deps = self.ops.get(&id).map(|e| e.deps.as_slice()).unwrap_or(&[]);
        let named = queue
            .iter()
            .rposition(|l| l.bytes == bytes && l.writers.iter().any(|w| deps.contains(w)));
        let pos = named.or_else(|| queue.iter().position(|l| l.bytes == bytes)).ok_or_else(|| {
            bad(format!("op {id} evicts {bytes} bytes of {tensor}, but no allocation of {tensor} has that size"))
        })?;
        if queue[pos].busy > 0 {
            return Err(bad(format!(
                "op {id} evicts {tensor} while an op still uses it"
            )));
        }
        let live = queue.remove(pos).expect("position found");
        if queue.is_empty() {
            self.live.remove(&tensor);
        }
        self.arena.free(live.region);
        self.used_bytes -= bytes;
        self.stats.evicts += 1;
        Ok(())
    }

    /// The allocation of `tensor` an op means: the newest one whose writer it depends on, else
    /// the newest one `wanted` accepts, else the newest (whose content the caller then reports
    /// as wrong).
    fn live_of(
        &mut self,
        id: OpId,
        tensor: TensorRef,
        wanted: impl Fn(&Live) -> bool,
    ) -> Result<&mut Live, BackendError> {
        let deps = self.ops.get(&id).map(|e| e.deps.as_slice()).unwrap_or(&[]);
        self.live
            .get_mut(&tensor)
            .and_then(|q| {
                let at = q
                    .iter()
                    .rposition(|l| l.writers.iter().any(|w| deps.contains(w)))
                    .or_else(|| q.iter().rposition(&wanted))
                    .unwrap_or(q.len().wrapping_sub(1));
                q.get_mut(at)
            })
            .ok_or_else(|| {
                bad(format!(
                    "op {id} uses {tensor}, which has no memory allocated"
                ))
            })
    }

    fn slice(&self, region: Region) -> Slice {
        Slice {
            memory: self.arena.memory(),
            offset: region.offset,
            len: region.len,
        }
    }

    /// Starts the heads of the resource queues while their servers are free.
    fn start_queued(&mut self) -> Result<(), BackendError> {
        for r in 0..self.queues.len() {
            while let Some(&Reverse((_, _, id))) = self.queues[r].peek() {
                let need = self.ops[&id].servers;
                if need > self.free_servers[r] {
                    break;
                }
                self.queues[r].pop();
                self.free_servers[r] -= need;
                self.start(id)?;
            }
        }
        Ok(())
    }

    /// Marks `id` finished at `end`: releases servers and uses, reports the timing, wakes the
    /// successors.
    fn complete(&mut self, id: OpId, end: Nanos) -> Result<(), BackendError> {
        let e = self.ops.remove(&id).expect("op in table");
        if let Some(r) = e.resource {
            self.free_servers[r as usize] += e.servers;
        }
        match e.op {
            Op::Read { tensor, .. }
            | Op::Decrypt { tensor, .. }
            | Op::Compute {
                tensor,
                unit: Unit::Cpu { .. },
                ..
            } => {
                let copy = self
                    .live
                    .get_mut(&tensor)
                    .and_then(|q| q.iter_mut().find(|l| Some(l.region.offset) == e.using));
                if let Some(l) = copy {
                    l.busy = l.busy.saturating_sub(1);
                }
            }
            _ => {}
        }
        self.finished.push(OpTiming {
            id,
            resource: e.resource,
            start: e.start,
            end: end.max(e.start),
        });
        for s in e.successors {
            let entry = self.ops.get_mut(&s).expect("successor in table");
            entry.pending -= 1;
            if entry.pending == 0 && entry.state == State::Waiting {
                self.make_ready(s);
            }
        }
        Ok(())
    }

    /// Runs until `target` has finished (`None`: until nothing is left).
    fn advance(&mut self, target: Option<OpId>) -> Result<(), BackendError> {
        loop {
            self.run_free()?;
            match target {
                Some(t) if !self.ops.contains_key(&t) => return Ok(()),
                None if self.ops.is_empty() => return Ok(()),
                _ => {}
            }
            self.start_queued()?;
            self.run_free()?;
            if self.running == 0 {
                if self.ready_evicts.is_empty() && self.ready_free.is_empty() {
                    let waiting: Vec<OpId> = self.ops.keys().take(5).copied().collect();
                    return Err(bad(format!(
                        "ops {waiting:?}... can never run: nothing is running and their queues are blocked"
                    )));
                }
                continue;
            }
            let first = self
                .rx
                .recv()
                .map_err(|_| BackendError::Io("worker threads stopped".into()))?;
            let mut batch = vec![first];
            while let Ok(c) = self.rx.try_recv() {
                batch.push(c);
            }
            for c in batch {
                self.running -= 1;
                if let Err(m) = c.result {
                    return Err(BackendError::Io(format!("op {}: {m}", c.id)));
                }
                self.complete(c.id, c.end)?;
            }
        }
    }
}

/// Arena room for rounding regions up to whole pages, for stores with tensors so small that
/// [`SLACK_BYTES`] would not cover it (a neuron bundle of 1,836 bytes takes a 4 KiB page).
/// An upper bound: for each stored size, as many regions of it as the budget or the store
/// allows (every tensor twice at most: a copy being evicted while the next loads), each
/// wasting the rest of its last page. The budget is still enforced on the plan's byte counts;
/// this is the executor's overhead, reported as [`ExecStats::arena_bytes`].
fn rounding_room(store: &WeightStore, budget: usize) -> usize {
    let mut sizes: BTreeMap<u64, u64> = BTreeMap::new();
    for e in &store.index.entries {
        *sizes.entry(e.stored_bytes.max(1)).or_default() += 1;
    }
    let room: u64 = sizes
        .iter()
        .map(|(&size, &count)| {
            let regions = (budget as u64 / size + 1).min(2 * count);
            regions.saturating_mul(align_up(size) - size)
        })
        .fold(0u64, |a, b| a.saturating_add(b));
    usize::try_from(room).unwrap_or(usize::MAX)
}

/// The request size a read is issued in: its `request_bytes`, at most its size, in whole
/// pages (direct I/O transfers pages).
pub fn request_size(request_bytes: u32, bytes: u64) -> u64 {
    align_up((request_bytes as u64).min(bytes).max(1))
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
pub fn available_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    line["MemAvailable:".len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()
        .map(|k| k * 1024)
}

impl Backend for Executor {
    fn resources(&self) -> &[ResourceInfo] {
        self.resource_map.resources()
    }

    fn run(&mut self, plan: &Plan) -> Result<StepResult, BackendError> {
        if let Some(e) = &self.failure {
            return Err(e.clone());
        }
        self.file.prepare_run();
        let start = self.now();
        if plan.is_empty() {
            let mut ops = std::mem::take(&mut self.finished);
            ops.sort_by_key(|t| (t.end, t.id));
            return Ok(StepResult {
                start,
                output_ready: start,
                ops,
            });
        }
        let (output, costs) = self.check(plan)?;
        self.insert(plan, costs);
        if let Err(e) = self.advance(Some(output)) {
            return Err(self.fail(e));
        }
        let mut ops = std::mem::take(&mut self.finished);
        ops.sort_by_key(|t| (t.end, t.id));
        let output_ready = ops.iter().find(|t| t.id == output).map_or(start, |t| t.end);
        Ok(StepResult {
            start,
            output_ready,
            ops,
        })
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        // Jobs hold their own references to the arena and the file; wait for them anyway, so
        // no worker outlives the executor's pools doing work nobody will read.
        while self.running > 0 && self.rx.recv().is_ok() {
            self.running -= 1;
        }
    }
}
