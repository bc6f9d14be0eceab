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
//! What each op does is in the [module docs](crate::exec).

use super::io::{DirectFile, IoMode, PageBuf};
use super::memory::{Arena, Region, SLACK_BYTES};
use super::store::crypt::{self, CHUNK_BYTES};
use super::store::layout::{self, align_up, MatrixSpec};
use super::store::WeightStore;
use super::work::{self, Activations, KvLayout};
use crate::backend::{Backend, BackendError, OpTiming, ResourceId, ResourceInfo, StepResult};
use crate::hw::DeviceProfile;
use crate::model::{Precision, TensorKind, TensorRef};
use crate::plan::{Op, OpId, Plan, Unit};
use crate::sim::Pricer;
use crate::units::Nanos;
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
}

impl ExecutorOptions {
    /// Direct I/O, the given budget and seed.
    pub fn new(budget_bytes: u64, seed: u64) -> Self {
        ExecutorOptions {
            budget_bytes,
            seed,
            direct_io: true,
        }
    }
}

/// What a run used and how, for reports.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ExecStats {
    pub io_mode: Option<IoMode>,
    pub io_threads: u32,
    pub compute_threads: Vec<u32>,
    pub reads: u64,
    /// Bytes the plans' Read ops named.
    pub plan_bytes_read: u64,
    /// Bytes actually transferred: payloads plus tags, rounded up to 4 KiB pages.
    pub bytes_transferred: u64,
    pub compute_ops: u64,
    pub decrypted_bytes: u64,
    pub allocs: u64,
    pub evicts: u64,
    pub arena_bytes: u64,
    pub budget_bytes: u64,
    /// Most bytes held by Allocs at once (op byte counts, as the budget counts them).
    pub peak_allocated_bytes: u64,
    /// Ops with no host equivalent, run as stand-ins: (what, how many, how).
    pub emulated: Vec<EmulatedOps>,
}

#[derive(Clone, Debug, Serialize)]
pub struct EmulatedOps {
    pub what: String,
    pub count: u64,
    pub how: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Waiting,
    Ready,
    Running,
}

struct Entry {
    op: Op,
    priority: i16,
    pending: u32,
    successors: Vec<OpId>,
    state: State,
    ready_ns: u64,
    start: Nanos,
    resource: Option<ResourceId>,
    servers: u32,
    /// Duration of the priced cost, used only by emulated ops.
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
}

struct Completion {
    id: OpId,
    end: Nanos,
    result: Result<(), String>,
}

/// A region of the arena handed to a job. Plans order every access (a compute depends on the
/// read that fills its region, an evict on the last use), and the executor refuses to evict or
/// refill a region an op is using, so no two jobs touch the same bytes concurrently unless
/// both only read them.
#[derive(Clone)]
struct Slice {
    memory: Arc<PageBuf>,
    offset: usize,
    len: usize,
}

impl Slice {
    /// SAFETY: the caller must hold the region's use as described on [`Slice`].
    #[allow(clippy::mut_from_ref)]
    unsafe fn bytes_mut(&self) -> &mut [u8] {
        std::slice::from_raw_parts_mut(self.memory.as_ptr().add(self.offset), self.len)
    }

    /// SAFETY: as [`Slice::bytes_mut`], for `len` bytes from `at` within the region.
    #[allow(clippy::mut_from_ref)]
    unsafe fn sub_mut(&self, at: usize, len: usize) -> &mut [u8] {
        assert!(at + len <= self.len, "sub-slice inside the region");
        std::slice::from_raw_parts_mut(self.memory.as_ptr().add(self.offset + at), len)
    }

    /// SAFETY: as [`Slice::bytes_mut`], with only readers at the same time.
    unsafe fn bytes(&self) -> &[u8] {
        std::slice::from_raw_parts(self.memory.as_ptr().add(self.offset), self.len)
    }
}

/// The real executor. See the [module docs](crate::exec).
pub struct Executor {
    store: Arc<WeightStore>,
    file: Arc<DirectFile>,
    pricer: Pricer,
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
}

/// Where an op runs: its resource, the servers it holds, and its priced duration (used only
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
        let pricer = Pricer::new(device).map_err(|e| {
            BackendError::Unsupported(format!("device profile `{}`: {e}", device.name))
        })?;
        let file = if options.direct_io {
            DirectFile::open(&store.data_path())
        } else {
            DirectFile::open_buffered(&store.data_path())
        }
        .map_err(BackendError::Io)?;
        let resources = pricer.resources().to_vec();
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
        let arena =
            Arena::new(align_up(budget as u64) as usize + SLACK_BYTES).map_err(BackendError::Io)?;
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
            pricer,
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
            let cost = self.pricer.price(&node.op).map_err(|e| {
                let m = format!("op {} ({}): {e}", node.id, node.op.kind_name());
                if e.is_plan_error() {
                    BackendError::BadPlan(m)
                } else {
                    BackendError::Unsupported(m)
                }
            })?;
            let what = |t: TensorRef| format!("op {} ({} {t})", node.id, node.op.kind_name());
            let (resource, servers) = match node.op {
                Op::Read {
                    tensor,
                    precision,
                    bytes,
                    request_bytes,
                } => {
                    let (_, e) = self.store.entry(tensor, precision).ok_or_else(|| {
                        BackendError::Unsupported(format!(
                            "{}: the weight store in {} has no {tensor} at {precision} (it holds {})",
                            what(tensor),
                            self.store.dir.display(),
                            self.store.index.precisions.iter().map(|p| p.name()).collect::<Vec<_>>().join(", ")
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
                        | TensorKind::Embedding => {}
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
            costs.push((resource, servers, cost.latency + cost.duration));
        }
        Ok((output, costs))
    }

    fn free_servers_total(&self, r: ResourceId) -> u32 {
        self.pricer.resources()[r as usize].servers
    }

    fn insert(&mut self, plan: &Plan, costs: Vec<Placed>) {
        for (node, (resource, servers, priced)) in plan.nodes().iter().zip(costs) {
            let emulated = match node.op {
                Op::Compute {
                    unit: Unit::Accel, ..
                }
                | Op::WorldSwitch { .. } => Some(priced),
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
        });
        Ok(region)
    }

    fn evict(&mut self, id: OpId, tensor: TensorRef, bytes: u64) -> Result<(), BackendError> {
        let queue = self.live.get_mut(&tensor).filter(|q| !q.is_empty()).ok_or_else(|| {
            bad(format!("op {id} evicts {tensor}, which holds no memory (every byte evicted must come from an Alloc)"))
        })?;
        let pos = queue.iter().position(|l| l.bytes == bytes).ok_or_else(|| {
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

    /// The newest allocation of `tensor`.
    fn live_of(&mut self, id: OpId, tensor: TensorRef) -> Result<&mut Live, BackendError> {
        self.live
            .get_mut(&tensor)
            .and_then(|q| q.back_mut())
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

    fn start(&mut self, id: OpId) -> Result<(), BackendError> {
        let now = self.now();
        let (op, servers, emulated) = {
            let e = self.ops.get_mut(&id).expect("op");
            e.state = State::Running;
            e.start = now;
            (e.op, e.servers, e.emulated)
        };
        let tx = self.tx.clone();
        let epoch = self.epoch;
        let send = move |result: Result<(), String>| {
            let end = Nanos(epoch.elapsed().as_nanos() as u64);
            let _ = tx.send(Completion { id, end, result });
        };
        if let Some(duration) = emulated {
            *self
                .emulated
                .entry(match op {
                    Op::WorldSwitch { .. } => "world_switch",
                    _ => "accel_compute",
                })
                .or_default() += 1;
            self.running += 1;
            self.emu_pool.spawn(move || {
                spin_for(Duration::from_nanos(duration.0));
                send(Ok(()));
            });
            return Ok(());
        }
        match op {
            Op::Read {
                tensor,
                precision,
                bytes,
                request_bytes,
            } => {
                let (_, entry) = self.store.entry(tensor, precision).expect("checked");
                let (offset, stored) = (entry.offset, align_up(entry.stored_bytes));
                let sealed = self.store.is_encrypted();
                let live = self.live_of(id, tensor)?;
                if live.busy > 0 {
                    return Err(bad(format!(
                        "op {id} reads into {tensor} while another op uses its memory"
                    )));
                }
                if (live.region.len as u64) < stored {
                    return Err(bad(format!(
                        "op {id} reads {stored} bytes of {tensor} at {precision} into an allocation of {} bytes",
                        live.bytes
                    )));
                }
                live.busy += 1;
                live.content = Content::Loaded { precision, sealed };
                let region = live.region;
                self.stats.reads += 1;
                self.stats.plan_bytes_read += bytes;
                self.stats.bytes_transferred += stored;
                let size = request_size(request_bytes, bytes);
                let requests: Arc<Vec<(u64, u64)>> = Arc::new(
                    (0..stored.div_ceil(size))
                        .map(|i| (i * size, size.min(stored - i * size)))
                        .collect(),
                );
                let slice = self.slice(region);
                let next = Arc::new(AtomicUsize::new(0));
                let left = Arc::new(AtomicUsize::new(servers as usize));
                let failed: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
                self.running += 1;
                for _ in 0..servers {
                    let (file, requests, slice, next, left, failed, send) = (
                        self.file.clone(),
                        requests.clone(),
                        slice.clone(),
                        next.clone(),
                        left.clone(),
                        failed.clone(),
                        send.clone(),
                    );
                    self.io_pool.spawn(move || {
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(&(at, len)) = requests.get(i) else {
                                break;
                            };
                            // SAFETY: the region is marked busy for this read; requests are disjoint.
                            let buf =
                                unsafe { &mut slice.bytes_mut()[at as usize..(at + len) as usize] };
                            if let Err(e) = file.read_exact_at(buf, offset + at) {
                                *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!(
                                    "{}: reading {len} bytes at offset {} for {tensor}: {e}",
                                    file.path().display(),
                                    offset + at
                                ));
                                break;
                            }
                        }
                        if left.fetch_sub(1, Ordering::AcqRel) == 1 {
                            let err = failed.lock().unwrap_or_else(|p| p.into_inner()).take();
                            send(match err {
                                Some(m) => Err(m),
                                None => Ok(()),
                            });
                        }
                    });
                }
            }
            Op::Decrypt {
                tensor,
                threads,
                cluster,
                ..
            } => {
                let key = self
                    .store
                    .key()
                    .cloned()
                    .expect("encrypted store has a key");
                let live = self.live_of(id, tensor)?;
                let Content::Loaded {
                    precision,
                    sealed: true,
                } = live.content
                else {
                    return Err(bad(format!("op {id} decrypts {tensor}, which holds no encrypted weights (read it first)")));
                };
                live.busy += 1;
                live.content = Content::Loaded {
                    precision,
                    sealed: false,
                };
                let region = live.region;
                let (index, entry) = self
                    .store
                    .entry(tensor, precision)
                    .expect("loaded from the store");
                let payload = entry.bytes as usize;
                self.stats.decrypted_bytes += entry.bytes;
                let aad = crypt::associated_data(&entry.tensor, precision.name());
                let slice = self.slice(region);
                self.running += 1;
                let chunks = crypt::chunks(payload as u64) as usize;
                let threads = (threads as usize).max(1);
                self.cpu_pools[cluster as usize].spawn(move || {
                    use rayon::prelude::*;
                    let parts: Vec<std::ops::Range<usize>> = (0..threads)
                        .map(|p| chunks * p / threads..chunks * (p + 1) / threads)
                        .filter(|r| !r.is_empty())
                        .collect();
                    let result = parts
                        .into_par_iter()
                        .map(|range| {
                            let data_start = range.start * CHUNK_BYTES;
                            let data_end = (range.end * CHUNK_BYTES).min(payload);
                            // SAFETY: the region is marked busy for this op; the parts
                            // decrypt disjoint chunks and read disjoint tags.
                            let data = unsafe { slice.sub_mut(data_start, data_end - data_start) };
                            let tags = unsafe {
                                slice.sub_mut(
                                    payload + range.start * crypt::TAG_BYTES,
                                    range.len() * crypt::TAG_BYTES,
                                )
                            };
                            crypt::open_split(&key, index, &aad, data, tags, range.start)
                        })
                        .collect::<Result<(), String>>();
                    send(result.map_err(|m| format!("{tensor}: {m}")));
                });
            }
            Op::Compute {
                tensor,
                precision,
                unit: Unit::Cpu { cluster, threads },
                batch,
                flops,
                ..
            } => {
                let live = self.live_of(id, tensor)?;
                match live.content {
                    Content::Loaded { precision: p, sealed: false } if p == precision => {}
                    Content::Loaded { sealed: true, .. } => {
                        return Err(bad(format!("op {id} computes with {tensor}, whose weights are still encrypted (the plan has no Decrypt before it)")))
                    }
                    Content::Loaded { precision: p, .. } => {
                        return Err(bad(format!("op {id} computes with {tensor} at {precision}, but its memory holds {p} weights")))
                    }
                    Content::Empty => {
                        return Err(bad(format!("op {id} computes with {tensor}, whose memory was never read into")))
                    }
                }
                live.busy += 1;
                let region = live.region;
                let (_, entry) = self.store.entry(tensor, precision).expect("checked");
                let matrices: Vec<MatrixSpec> = entry.matrices.clone();
                let bits = layout::weight_bits(precision).map_err(BackendError::Unsupported)?;
                let weights = self.slice(region);
                let acts = self.activations.clone();
                let g = &self.store.geometry;
                let attention = if tensor.kind == TensorKind::Attention {
                    let params = g.params(tensor.layer as u32, TensorKind::Attention);
                    let b = batch.max(1) as u64;
                    let per = 4 * b * (g.heads * g.head_dim) as u64;
                    let context = flops.saturating_sub(2 * params * b) / per.max(1);
                    let kv_tensor = TensorRef::new(0, TensorKind::KvCache);
                    let kv_live = self
                        .live
                        .get(&kv_tensor)
                        .and_then(|q| q.back())
                        .ok_or_else(|| {
                            bad(format!(
                                "op {id} computes attention, but no KV cache is allocated"
                            ))
                        })?;
                    let per_token = g.kv_bytes_per_token().max(1);
                    let max_context = (kv_live.bytes / per_token) as usize;
                    let attn_layer = (0..tensor.layer as u32)
                        .filter(|&l| !g.is_conv_layer(l))
                        .count();
                    Some((
                        self.slice(kv_live.region),
                        KvLayout {
                            layer: attn_layer,
                            max_context,
                            kv_heads: g.kv_heads as usize,
                            head_dim: g.head_dim as usize,
                        },
                        g.heads as usize,
                        context.saturating_sub(b) as usize,
                    ))
                } else {
                    None
                };
                self.stats.compute_ops += 1;
                self.running += 1;
                let threads = threads as usize;
                self.cpu_pools[cluster as usize].spawn(move || {
                    // SAFETY: the region is marked busy (read-only use) for this op.
                    let payload: &[u8] = unsafe { weights.bytes() };
                    let result = match (tensor.kind, attention) {
                        (TensorKind::Attention, Some((kv_slice, layout, heads, context))) => {
                            // SAFETY: each layer writes its own part of the KV cache, and a
                            // layer's attention ops are ordered by the plan.
                            let kv_bytes = unsafe { kv_slice.bytes_mut() };
                            let kv: &mut [u16] = bytemuck_u16(kv_bytes);
                            work::attention(
                                &matrices,
                                bits,
                                payload,
                                &acts,
                                heads,
                                layout,
                                kv,
                                context,
                                batch as usize,
                                threads,
                            )
                        }
                        (TensorKind::Expert(_) | TensorKind::DenseFfn, _) => {
                            work::ffn(&matrices, bits, payload, &acts, batch as usize, threads)
                        }
                        _ => work::single(&matrices, bits, payload, &acts, batch as usize, threads),
                    };
                    send(result.map_err(|m| format!("{tensor} at {precision}: {m}")));
                });
            }
            Op::Alloc {
                tensor,
                bytes,
                secure: true,
            } => {
                let region = self.alloc(id, tensor, bytes)?;
                let slice = self.slice(region);
                self.running += 1;
                // Secure memory is zeroed before use (what CMA migration and TZASC setup make
                // the TEE do); the host has no secure memory, so this is the real part.
                self.cpu_pools[0].spawn(move || {
                    // SAFETY: the region was just allocated; nothing else refers to it yet.
                    unsafe { slice.bytes_mut() }.fill(0);
                    send(Ok(()));
                });
            }
            other => {
                return Err(bad(format!(
                    "op {id} ({}) cannot be started on a resource",
                    other.kind_name()
                )))
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
                if let Some(l) = self.live.get_mut(&tensor).and_then(|q| q.back_mut()) {
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

/// Reinterprets page-aligned bytes as fp16 values.
fn bytemuck_u16(bytes: &mut [u8]) -> &mut [u16] {
    let (head, values, _) = unsafe { bytes.align_to_mut::<u16>() };
    debug_assert!(head.is_empty(), "arena regions are page aligned");
    values
}

/// The request size a read is issued in: its `request_bytes`, at most its size, in whole
/// pages (direct I/O transfers pages).
pub fn request_size(request_bytes: u32, bytes: u64) -> u64 {
    align_up((request_bytes as u64).min(bytes).max(1))
}

/// Busy-waits for `d` (sleeping through all but the last 200 us), the stand-in for ops with no
/// host equivalent.
fn spin_for(d: Duration) {
    let until = Instant::now() + d;
    if d > Duration::from_micros(400) {
        std::thread::sleep(d - Duration::from_micros(200));
    }
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

fn emulation_note(what: &str) -> &'static str {
    match what {
        "world_switch" => "EMULATED: the host has no TrustZone; each world switch waits the device profile's world_switch_ns on the emulation thread (sleep, then a busy-wait for the last 200 us)",
        _ => "EMULATED: the host has no accelerator; each accelerator op waits the simulator's priced duration for it on the emulation thread (sleep, then a busy-wait for the last 200 us)",
    }
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
        self.pricer.resources()
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
