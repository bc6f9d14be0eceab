//! [`Simulator`]: the [`Backend`] that runs plans in simulated time.

use super::event_queue::EventQueue;
use super::pricing::{OpCost, Pricer};
use super::resource::{Resource, Waiting};
use super::window::{MemoryEffect, OpState, OpWindow, Slot};
use crate::backend::{Backend, BackendError, OpTiming, ResourceId, ResourceInfo, StepResult};
use crate::hw::cost::CostError;
use crate::hw::DeviceProfile;
use crate::plan::{Op, OpId, OpNode, Plan};
use crate::units::Nanos;

/// What happens to an op at an event's time, packed into one word (the op id and one bit) so
/// an event-queue entry is 24 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Event(u64);

/// What an [`Event`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EventKind {
    /// The op's request reaches its resource after its latency and joins the queue.
    Arrive,
    /// The op finishes and releases its servers.
    Finish,
}

impl Event {
    fn arrive(id: OpId) -> Self {
        Event(id << 1)
    }

    fn finish(id: OpId) -> Self {
        Event((id << 1) | 1)
    }

    fn op(self) -> OpId {
        self.0 >> 1
    }

    fn kind(self) -> EventKind {
        if self.0 & 1 == 0 {
            EventKind::Arrive
        } else {
            EventKind::Finish
        }
    }
}

/// A device, a memory budget and one continuous simulated timeline that plans run on.
///
/// See the [module docs](crate::sim) for the scheduling rules and guarantees.
#[derive(Debug)]
pub struct Simulator {
    pricer: Pricer,
    resources: Vec<Resource>,
    events: EventQueue<Event>,
    window: OpWindow,
    now: Nanos,
    /// Ready Evicts: they happen before the ready ops of `ready_unqueued` at each instant.
    ready_evicts: Vec<OpId>,
    /// Other ready ops that need no resource (normal Allocs).
    ready_unqueued: Vec<OpId>,
    /// Resources whose queue head may be able to start, each listed once.
    dirty: Vec<ResourceId>,
    dirty_flag: Vec<bool>,
    /// Timings of ops finished since the last `run` or `drain` returned.
    finished: Vec<OpTiming>,
    /// Costs of the plan being inserted, computed before anything changes.
    scratch_costs: Vec<OpCost>,
    memory_budget_bytes: u64,
    memory_used_bytes: u64,
    memory_peak_bytes: u64,
    ops_finished: u64,
    /// Set when a run failed part-way; the timeline is then unusable.
    failure: Option<BackendError>,
}

impl Simulator {
    /// A simulator for `device` whose ops may hold at most `memory_budget_bytes` at once.
    pub fn new(device: &DeviceProfile, memory_budget_bytes: u64) -> Result<Self, BackendError> {
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
        let resources: Vec<Resource> = pricer
            .resources()
            .iter()
            .map(|r| Resource::new(r.servers))
            .collect();
        Ok(Simulator {
            dirty_flag: vec![false; resources.len()],
            resources,
            pricer,
            events: EventQueue::new(),
            window: OpWindow::new(),
            now: Nanos::ZERO,
            ready_evicts: Vec::new(),
            ready_unqueued: Vec::new(),
            dirty: Vec::new(),
            finished: Vec::new(),
            scratch_costs: Vec::new(),
            memory_budget_bytes,
            memory_used_bytes: 0,
            memory_peak_bytes: 0,
            ops_finished: 0,
            failure: None,
        })
    }

    /// The simulated clock: the time of the last event processed.
    pub fn now(&self) -> Nanos {
        self.now
    }

    /// What `op` would cost on this device: resource, servers and duration.
    pub fn price(&self, op: &Op) -> Result<OpCost, CostError> {
        self.pricer.price(op)
    }

    /// The id the next plan must start from.
    pub fn next_op_id(&self) -> OpId {
        self.window.end_id()
    }

    /// Ops issued but not finished (queued, waiting for dependencies or running).
    pub fn ops_in_flight(&self) -> u64 {
        // Ids start at 0 and every issued op finishes exactly once.
        self.window.end_id() - self.ops_finished
    }

    /// Ops the in-flight window tracks (in flight, or finished behind one that is not).
    pub fn ops_tracked(&self) -> usize {
        self.window.len()
    }

    /// Ops finished since the simulator was created.
    pub fn ops_finished(&self) -> u64 {
        self.ops_finished
    }

    pub fn memory_budget_bytes(&self) -> u64 {
        self.memory_budget_bytes
    }

    /// Bytes held now: every started Alloc minus every finished Evict.
    pub fn memory_used_bytes(&self) -> u64 {
        self.memory_used_bytes
    }

    /// The most bytes held at any instant so far.
    pub fn memory_peak_bytes(&self) -> u64 {
        self.memory_peak_bytes
    }

    /// Server-nanoseconds of finished ops per resource, indexed by [`ResourceId`]. Divided by
    /// the resource's servers and the elapsed time, it is the resource's utilisation.
    pub fn busy_server_ns(&self) -> Vec<u64> {
        self.resources.iter().map(|r| r.busy_server_ns()).collect()
    }

    /// Runs every op still in flight to completion and returns the timings of the ops that
    /// finished since the last `run` (prefetches that outlived the last plan, evictions queued
    /// after the output). Call it at the end of a run, so no op goes unreported. A plan run
    /// after `drain` is released at the drained timeline's end.
    pub fn drain(&mut self) -> Result<Vec<OpTiming>, BackendError> {
        if let Some(e) = &self.failure {
            return Err(e.clone());
        }
        if let Err(e) = self.advance(None) {
            self.failure = Some(e.clone());
            return Err(e);
        }
        Ok(std::mem::take(&mut self.finished))
    }

    /// Checks the plan and prices its ops into `scratch_costs`, changing nothing else, so a
    /// rejected plan leaves the timeline as it was.
    fn check_and_price(&mut self, plan: &Plan) -> Result<OpId, BackendError> {
        if plan.first_id() != self.window.end_id() {
            // Name the most useful fact first: a dependency on an op this simulator never saw.
            let never_issued = self.window.end_id()..plan.first_id();
            for node in plan.nodes() {
                if let Some(&dep) = plan.deps(node).iter().find(|d| never_issued.contains(d)) {
                    return Err(BackendError::BadPlan(format!(
                        "op {} depends on op {dep}, which was never issued to this simulator \
                         (it has run ops 0..{})",
                        node.id,
                        self.window.end_id()
                    )));
                }
            }
            return Err(BackendError::BadPlan(format!(
                "plan starts at op id {}, but the next id this simulator expects is {} \
                 (build each plan from the previous plan's end_id and run them in order)",
                plan.first_id(),
                self.window.end_id()
            )));
        }
        let output = match plan.output() {
            Some(o) if o >= plan.first_id() && o < plan.end_id() => o,
            Some(o) => {
                return Err(BackendError::BadPlan(format!(
                    "output op {o} is not in the plan (ops {}..{})",
                    plan.first_id(),
                    plan.end_id()
                )))
            }
            None => return Err(BackendError::BadPlan("plan has no output op".into())),
        };
        self.scratch_costs.clear();
        for node in plan.nodes() {
            for &dep in plan.deps(node) {
                if dep >= node.id {
                    return Err(BackendError::BadPlan(format!(
                        "op {} depends on op {dep}, which is not issued before it",
                        node.id
                    )));
                }
            }
            let cost = self.pricer.price(&node.op).map_err(|e| {
                let message = format!("op {} ({}): {e}", node.id, describe(node));
                if e.is_plan_error() {
                    BackendError::BadPlan(message)
                } else {
                    BackendError::Unsupported(message)
                }
            })?;
            self.scratch_costs.push(cost);
        }
        Ok(output)
    }

    /// Inserts the plan's ops at the current time; ops whose dependencies have all finished
    /// become ready at once.
    fn insert(&mut self, plan: &Plan) {
        for (i, node) in plan.nodes().iter().enumerate() {
            let cost = self.scratch_costs[i];
            let memory = match node.op {
                Op::Alloc { bytes, .. } => MemoryEffect::Alloc(bytes),
                Op::Evict { bytes, .. } => MemoryEffect::Evict(bytes),
                _ => MemoryEffect::None,
            };
            let mut slot = Slot::new(
                cost.duration,
                cost.resource,
                cost.servers,
                node.priority,
                memory,
            );
            slot.latency = cost.latency;
            let id = self.window.push(slot);
            debug_assert_eq!(id, node.id);
            let mut pending = 0;
            for &dep in plan.deps(node) {
                // check_and_price rejected forward dependencies, and every earlier id was
                // inserted (plans are contiguous), so `dep` is retired or tracked.
                if self.window.depend(dep, id) {
                    pending += 1;
                }
            }
            self.window.slot_mut(id).pending_deps = pending;
            if pending == 0 {
                self.make_ready(id);
            }
        }
    }

    fn make_ready(&mut self, id: OpId) {
        let now = self.now;
        let slot = self.window.slot_mut(id);
        slot.state = OpState::Ready;
        match slot.resource {
            None if slot.is_evict() => self.ready_evicts.push(id),
            None => self.ready_unqueued.push(id),
            Some(_) if slot.latency > Nanos::ZERO => {
                let at = now + slot.latency;
                self.events.push(at, Event::arrive(id));
            }
            Some(r) => self.enqueue(r, id),
        }
    }

    /// Puts a ready op in its resource's queue, as of now.
    fn enqueue(&mut self, r: ResourceId, id: OpId) {
        let slot = self.window.slot_mut(id);
        let waiting = Waiting {
            priority: slot.priority,
            ready: self.now,
            id,
            servers: slot.servers,
        };
        self.resources[r as usize].enqueue(waiting);
        self.mark_dirty(r);
    }

    fn mark_dirty(&mut self, r: ResourceId) {
        if !self.dirty_flag[r as usize] {
            self.dirty_flag[r as usize] = true;
            self.dirty.push(r);
        }
    }

    /// Runs the ready ops that need no resource, at the current time: all ready Evicts first,
    /// then the others, repeating while they make more such ops ready. Zero-duration ones
    /// finish on the spot.
    fn run_unqueued(&mut self) -> Result<(), BackendError> {
        let (mut evicts, mut others) = (0, 0);
        loop {
            let id = if evicts < self.ready_evicts.len() {
                evicts += 1;
                self.ready_evicts[evicts - 1]
            } else if others < self.ready_unqueued.len() {
                others += 1;
                self.ready_unqueued[others - 1]
            } else {
                break;
            };
            self.start(id)?;
        }
        self.ready_evicts.clear();
        self.ready_unqueued.clear();
        Ok(())
    }

    /// Starts, at the current time, the heads of the resource queues that changed, as long as
    /// their servers are free.
    fn start_queued(&mut self) -> Result<(), BackendError> {
        for i in 0..self.dirty.len() {
            let r = self.dirty[i];
            self.dirty_flag[r as usize] = false;
            while let Some(waiting) = self.resources[r as usize].start_next() {
                self.start(waiting.id)?;
            }
        }
        self.dirty.clear();
        Ok(())
    }

    fn start(&mut self, id: OpId) -> Result<(), BackendError> {
        let now = self.now;
        let slot = self.window.slot_mut(id);
        slot.start = now;
        slot.state = OpState::Running;
        let slot = *slot;
        let end = now + slot.duration;
        if let MemoryEffect::Alloc(bytes) = slot.memory() {
            let used = self.memory_used_bytes.saturating_add(bytes);
            if used > self.memory_budget_bytes {
                return Err(BackendError::BudgetExceeded {
                    at: now,
                    used,
                    budget: self.memory_budget_bytes,
                    op: id,
                });
            }
            self.memory_used_bytes = used;
            self.memory_peak_bytes = self.memory_peak_bytes.max(used);
        }
        if slot.resource.is_none() && slot.duration == Nanos::ZERO {
            // Pure accounting (normal Alloc, Evict): it happens at this instant.
            self.finish(id)
        } else {
            self.events.push(end, Event::finish(id));
            Ok(())
        }
    }

    fn finish(&mut self, id: OpId) -> Result<(), BackendError> {
        let now = self.now;
        let slot = self.window.slot_mut(id);
        slot.state = OpState::Done;
        let slot = *slot;
        if let MemoryEffect::Evict(bytes) = slot.memory() {
            self.memory_used_bytes =
                self.memory_used_bytes.checked_sub(bytes).ok_or_else(|| {
                    BackendError::BadPlan(format!(
                        "op {id} evicts {bytes} bytes at {now}, but only {} bytes are \
                             allocated (every byte evicted must come from an Alloc)",
                        self.memory_used_bytes
                    ))
                })?;
        }
        if let Some(r) = slot.resource {
            self.resources[r as usize].finish(slot.servers, slot.duration);
            self.mark_dirty(r);
        }
        self.finished.push(OpTiming {
            id,
            resource: slot.resource,
            start: slot.start,
            end: now,
        });
        self.ops_finished += 1;
        while let Some(successor) = self.window.pop_successor(id) {
            let s = self.window.slot_mut(successor);
            s.pending_deps -= 1;
            if s.pending_deps == 0 {
                self.make_ready(successor);
            }
        }
        Ok(())
    }

    /// Processes events until `target` has finished (or, with `None`, until nothing is left).
    ///
    /// Each round, at the current instant: first the ops that need no resource happen (Evicts
    /// before Allocs); then, unless `target` has finished, the heads of the resource queues
    /// start; then the clock moves to the next event time and *all* events of that instant
    /// are processed (ops finish, release servers and memory, and make their successors
    /// ready). So ready ops compete for servers by queue order, never by which of several
    /// simultaneous completions happened to be processed first. The loop stops before starting
    /// any queued op at the instant `target` finished: the next plan, released at that
    /// instant, then competes on equal terms with the ops already waiting.
    fn advance(&mut self, target: Option<OpId>) -> Result<(), BackendError> {
        loop {
            self.run_unqueued()?;
            self.window.retire();
            if let Some(t) = target {
                if self.window.is_done(t) {
                    return Ok(());
                }
            }
            self.start_queued()?;
            let Some(time) = self.events.peek_time() else {
                return match target {
                    None => Ok(()),
                    Some(t) => Err(BackendError::BadPlan(format!(
                        "op {t} can never finish: nothing left to run at {}",
                        self.now
                    ))),
                };
            };
            self.now = time;
            while let Some(event) = self.events.pop_at(time) {
                let id = event.op();
                match event.kind() {
                    EventKind::Finish => self.finish(id)?,
                    EventKind::Arrive => {
                        let r = self.window.slot(id).resource;
                        if let Some(r) = r {
                            self.enqueue(r, id);
                        }
                    }
                }
            }
        }
    }
}

impl Backend for Simulator {
    fn resources(&self) -> &[ResourceInfo] {
        self.pricer.resources()
    }

    /// Releases `plan` at the current time (the previous plan's output, or 0) and advances
    /// until its output op finishes. Returns the timings of every op that finished during the
    /// call, of this plan or earlier ones.
    fn run(&mut self, plan: &Plan) -> Result<StepResult, BackendError> {
        let mut step = StepResult::default();
        self.run_into(plan, &mut step)?;
        Ok(step)
    }

    /// [`Backend::run`], handing the finished ops over by swapping buffers with `step.ops`.
    fn run_into(&mut self, plan: &Plan, step: &mut StepResult) -> Result<(), BackendError> {
        if let Some(e) = &self.failure {
            return Err(e.clone());
        }
        let start = self.now;
        if !plan.is_empty() {
            let output = self.check_and_price(plan)?;
            self.insert(plan);
            if let Err(e) = self.advance(Some(output)) {
                self.failure = Some(e.clone());
                return Err(e);
            }
        }
        step.start = start;
        step.output_ready = self.now;
        step.ops.clear();
        std::mem::swap(&mut step.ops, &mut self.finished);
        Ok(())
    }
}

/// A short description of an op for error messages: kind and tensor.
fn describe(node: &OpNode) -> String {
    match node.op.tensor() {
        Some(t) => format!("{} {t}", node.op.kind_name()),
        None => node.op.kind_name().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::testing::test_device;
    use crate::model::Precision;
    use crate::plan::{PlanBuilder, TensorRef, Unit, World};
    use crate::units::{GIB, KIB, MIB};

    const BIG: Unit = Unit::Cpu {
        cluster: 0,
        threads: 1,
    };

    fn sim() -> Simulator {
        Simulator::new(&test_device(), GIB).unwrap()
    }

    fn read(expert: u32, bytes: u64) -> Op {
        Op::Read {
            tensor: TensorRef::expert(0, expert),
            precision: Precision::Int4,
            bytes,
            request_bytes: 512 * KIB as u32,
        }
    }

    fn gemv(expert: u32, unit: Unit) -> Op {
        Op::matmul(
            TensorRef::expert(0, expert),
            unit,
            Precision::Int4,
            4096,
            1024,
            1,
        )
    }

    fn alloc(bytes: u64) -> Op {
        Op::Alloc {
            tensor: TensorRef::expert(0, 0),
            bytes,
            secure: false,
        }
    }

    fn evict(bytes: u64) -> Op {
        Op::Evict {
            tensor: TensorRef::expert(0, 0),
            bytes,
            secure: false,
        }
    }

    fn timing(ops: &[OpTiming], id: OpId) -> OpTiming {
        *ops.iter().find(|t| t.id == id).unwrap()
    }

    fn duration(s: &Simulator, op: &Op) -> Nanos {
        s.price(op).unwrap().duration
    }

    /// Issue to completion on an idle simulator: latency, then the time holding servers.
    fn unloaded(s: &Simulator, op: &Op) -> Nanos {
        let c = s.price(op).unwrap();
        c.latency + c.duration
    }

    #[test]
    fn a_chain_runs_back_to_back() {
        let mut s = sim();
        let mut b = PlanBuilder::new(0);
        let r = b.push(read(0, MIB), &[]);
        let c = b.push(gemv(0, BIG), &[r]);
        b.set_output(c);
        let step = s.run(&b.finish().unwrap()).unwrap();
        let (dr, dc) = (unloaded(&s, &read(0, MIB)), duration(&s, &gemv(0, BIG)));
        let latency = s.price(&read(0, MIB)).unwrap().latency;
        assert!(latency > Nanos::ZERO);
        assert_eq!(step.start, Nanos::ZERO);
        // The read holds its channels only once its request has reached the device.
        assert_eq!(timing(&step.ops, r).start, latency);
        assert_eq!(timing(&step.ops, r).end, dr);
        assert_eq!(timing(&step.ops, c).start, dr);
        assert_eq!(step.output_ready, dr + dc);
        assert_eq!(s.now(), dr + dc);
        assert_eq!(s.ops_in_flight(), 0);
    }

    #[test]
    fn a_prefetch_outlives_its_plan_and_a_later_plan_waits_for_it() {
        let mut s = sim();
        // Plan 0: a 64 MiB prefetch (not upstream of the output) and a short compute output.
        let mut b = PlanBuilder::new(0);
        let prefetch = b.push(read(1, 64 * MIB), &[]);
        let out0 = b.push(gemv(0, BIG), &[]);
        b.set_output(out0);
        let p0 = b.finish().unwrap();
        let step0 = s.run(&p0).unwrap();
        assert_eq!(
            step0.ops.iter().map(|t| t.id).collect::<Vec<_>>(),
            vec![out0]
        );
        assert_eq!(s.ops_in_flight(), 1);

        // Plan 1 computes with the prefetched expert: it must wait for the read.
        let mut b = PlanBuilder::new(p0.end_id());
        let use_it = b.push(gemv(1, BIG), &[prefetch]);
        b.set_output(use_it);
        let step1 = s.run(&b.finish().unwrap()).unwrap();
        let read_end = unloaded(&s, &read(1, 64 * MIB));
        assert_eq!(step1.start, step0.output_ready);
        assert_eq!(timing(&step1.ops, prefetch).end, read_end);
        assert_eq!(timing(&step1.ops, use_it).start, read_end);
        // The prefetch is reported once, in the call during which it finished.
        assert_eq!(step1.ops.len(), 2);
    }

    #[test]
    fn a_dependency_on_a_finished_earlier_op_is_met_at_once() {
        let mut s = sim();
        let mut b = PlanBuilder::new(0);
        let r = b.push(read(0, MIB), &[]);
        b.set_output(r);
        let p0 = b.finish().unwrap();
        let step0 = s.run(&p0).unwrap();
        let mut b = PlanBuilder::new(p0.end_id());
        let c = b.push(gemv(0, BIG), &[r]);
        b.set_output(c);
        let step1 = s.run(&b.finish().unwrap()).unwrap();
        assert_eq!(timing(&step1.ops, c).start, step0.output_ready);
    }

    #[test]
    fn plans_must_continue_the_id_sequence() {
        let mut s = sim();
        let mut b = PlanBuilder::new(5);
        let c = b.push(gemv(0, BIG), &[]);
        b.set_output(c);
        let err = s.run(&b.finish().unwrap()).unwrap_err();
        match err {
            BackendError::BadPlan(m) => assert!(m.contains("starts at op id 5"), "{m}"),
            e => panic!("{e}"),
        }
        // Rejected before anything ran: the simulator is still usable from id 0.
        let mut b = PlanBuilder::new(0);
        let c = b.push(gemv(0, BIG), &[]);
        b.set_output(c);
        s.run(&b.finish().unwrap()).unwrap();
    }

    #[test]
    fn a_dependency_on_an_op_never_issued_is_a_bad_plan() {
        let mut s = sim();
        // A plan built as if ops 0..10 had run, depending on op 4.
        let mut b = PlanBuilder::new(10);
        let c = b.push(gemv(0, BIG), &[4]);
        b.set_output(c);
        match s.run(&b.finish().unwrap()).unwrap_err() {
            BackendError::BadPlan(m) => {
                assert!(
                    m.contains("op 10 depends on op 4") && m.contains("never issued"),
                    "{m}"
                )
            }
            e => panic!("{e}"),
        }
    }

    #[test]
    fn unsupported_ops_are_rejected_before_anything_runs() {
        let mut s = sim();
        let mut b = PlanBuilder::new(0);
        let r = b.push(read(0, MIB), &[]);
        let c = b.push(
            Op::matmul(
                TensorRef::expert(0, 0),
                Unit::Accel,
                Precision::Int2,
                64,
                64,
                1,
            ),
            &[r],
        );
        b.set_output(c);
        match s.run(&b.finish().unwrap()).unwrap_err() {
            BackendError::Unsupported(m) => {
                assert!(
                    m.contains("op 1") && m.contains("int2") && m.contains("test-npu"),
                    "{m}"
                )
            }
            e => panic!("{e}"),
        }
        assert_eq!((s.next_op_id(), s.now()), (0, Nanos::ZERO));

        let mut b = PlanBuilder::new(0);
        let c = b.push(
            gemv(
                0,
                Unit::Cpu {
                    cluster: 0,
                    threads: 0,
                },
            ),
            &[],
        );
        b.set_output(c);
        assert!(matches!(
            s.run(&b.finish().unwrap()).unwrap_err(),
            BackendError::BadPlan(m) if m.contains("at least one thread")
        ));
        let mut b = PlanBuilder::new(0);
        let c = b.push(
            gemv(
                0,
                Unit::Cpu {
                    cluster: 9,
                    threads: 1,
                },
            ),
            &[],
        );
        b.set_output(c);
        assert!(matches!(
            s.run(&b.finish().unwrap()).unwrap_err(),
            BackendError::Unsupported(m) if m.contains("no CPU cluster 9")
        ));
    }

    #[test]
    fn an_alloc_over_the_budget_fails_at_its_start() {
        let mut s = Simulator::new(&test_device(), 10 * MIB).unwrap();
        let mut b = PlanBuilder::new(0);
        let a = b.push(alloc(6 * MIB), &[]);
        let r = b.push(read(0, 64 * MIB), &[a]);
        let a2 = b.push(alloc(6 * MIB), &[r]);
        b.set_output(a2);
        let err = s.run(&b.finish().unwrap()).unwrap_err();
        assert_eq!(
            err,
            BackendError::BudgetExceeded {
                at: unloaded(&s, &read(0, 64 * MIB)),
                used: 12 * MIB,
                budget: 10 * MIB,
                op: a2,
            }
        );
        // The failure is sticky.
        assert_eq!(s.drain().unwrap_err(), err);
    }

    #[test]
    fn an_evict_frees_memory_when_it_ends_so_a_dependent_alloc_fits() {
        let mut s = Simulator::new(&test_device(), 10 * MIB).unwrap();
        let mut b = PlanBuilder::new(0);
        let a = b.push(alloc(8 * MIB), &[]);
        let e = b.push(evict(8 * MIB), &[a]);
        let a2 = b.push(alloc(8 * MIB), &[e]);
        b.set_output(a2);
        let step = s.run(&b.finish().unwrap()).unwrap();
        assert_eq!(step.output_ready, Nanos::ZERO);
        assert_eq!(s.memory_used_bytes(), 8 * MIB);
        assert_eq!(s.memory_peak_bytes(), 8 * MIB);
    }

    #[test]
    fn simultaneous_evict_and_independent_alloc_free_first() {
        // An Evict and an Alloc that become ready at the same instant, without a dependency
        // between them: the Evict happens first, whichever became ready first.
        for evict_path_first in [true, false] {
            let mut s = Simulator::new(&test_device(), 10 * MIB).unwrap();
            let mut b = PlanBuilder::new(0);
            let a = b.push(alloc(8 * MIB), &[]);
            // Two computes of equal duration on separate cores: they end at the same instant.
            let c_first = b.push(gemv(0, BIG), &[a]);
            let c_second = b.push(gemv(1, BIG), &[a]);
            let (before_evict, before_alloc) = if evict_path_first {
                (c_first, c_second)
            } else {
                (c_second, c_first)
            };
            let e = b.push(evict(8 * MIB), &[before_evict]);
            let a2 = b.push(alloc(8 * MIB), &[before_alloc]);
            b.set_output(a2);
            let step = s.run(&b.finish().unwrap()).unwrap();
            assert_eq!(timing(&step.ops, e).end, timing(&step.ops, a2).start);
            assert_eq!(s.memory_peak_bytes(), 8 * MIB);
        }
    }

    #[test]
    fn evicting_memory_never_allocated_is_a_bad_plan() {
        let mut s = sim();
        let mut b = PlanBuilder::new(0);
        let e = b.push(evict(MIB), &[]);
        b.set_output(e);
        assert!(matches!(
            s.run(&b.finish().unwrap()).unwrap_err(),
            BackendError::BadPlan(m) if m.contains("evicts")
        ));
    }

    #[test]
    fn priority_decides_who_gets_a_busy_resource_first() {
        let mut s = sim();
        let mut b = PlanBuilder::new(0);
        let switch = Op::WorldSwitch { to: World::Secure };
        let first = b.push(switch, &[]);
        let low = b.push_with_priority(switch, &[], 5);
        let high = b.push_with_priority(switch, &[], -5);
        let normal = b.push(switch, &[]);
        b.set_output(normal);
        let mut ops = s.run(&b.finish().unwrap()).unwrap().ops;
        ops.extend(s.drain().unwrap());
        let starts: Vec<OpId> = {
            let mut v: Vec<_> = ops.iter().map(|t| (t.start, t.id)).collect();
            v.sort();
            v.into_iter().map(|(_, id)| id).collect()
        };
        // All four are ready at 0; the highest priority (lowest number) goes first.
        assert_eq!(starts, vec![high, first, normal, low]);
    }

    #[test]
    fn the_next_plan_competes_with_waiting_ops_at_its_release_instant() {
        // A low-priority prefetch waits for the tee behind the output; the next plan's
        // high-priority switch, released at the output's end, overtakes it.
        let mut s = sim();
        let switch = Op::WorldSwitch { to: World::Secure };
        let mut b = PlanBuilder::new(0);
        let out = b.push(switch, &[]);
        let lazy = b.push_with_priority(switch, &[], 10);
        b.set_output(out);
        let p0 = b.finish().unwrap();
        let step0 = s.run(&p0).unwrap();
        let mut b = PlanBuilder::new(p0.end_id());
        let urgent = b.push_with_priority(switch, &[], -1);
        b.set_output(urgent);
        let step1 = s.run(&b.finish().unwrap()).unwrap();
        assert_eq!(timing(&step1.ops, urgent).start, step0.output_ready);
        let rest = s.drain().unwrap();
        assert_eq!(timing(&rest, lazy).start, step1.output_ready);
    }

    #[test]
    fn busy_time_counts_server_ns() {
        let mut s = sim();
        let mut b = PlanBuilder::new(0);
        let unit = Unit::Cpu {
            cluster: 1,
            threads: 3,
        };
        let c = b.push(gemv(0, unit), &[]);
        b.set_output(c);
        s.run(&b.finish().unwrap()).unwrap();
        let busy = s.busy_server_ns();
        let little = s
            .resources()
            .iter()
            .position(|r| r.name == "cpu.little")
            .unwrap();
        assert_eq!(busy[little], 3 * duration(&s, &gemv(0, unit)).0);
        assert_eq!(busy.iter().sum::<u64>(), busy[little]);
    }

    #[test]
    fn the_window_stays_bounded_on_a_long_run() {
        let mut s = sim();
        let mut next = 0;
        let mut previous_output = None;
        for _ in 0..2_000 {
            let mut b = PlanBuilder::new(next);
            let deps: Vec<OpId> = previous_output.into_iter().collect();
            let r = b.push(read(0, 8 * KIB), &deps);
            let c = b.push(gemv(0, BIG), &[r]);
            b.set_output(c);
            let p = b.finish().unwrap();
            next = p.end_id();
            s.run(&p).unwrap();
            previous_output = Some(c);
            assert!(s.ops_tracked() <= 2, "{}", s.ops_tracked());
        }
        assert_eq!(s.ops_finished(), 4_000);
        // Neither ring grew past its initial size: the run reuses the same memory throughout.
        assert_eq!(s.window.edge_capacity(), 1 << 10);
        assert_eq!(s.window.slot_capacity(), 1 << 10);
    }

    #[test]
    fn empty_plans_change_nothing() {
        let mut s = sim();
        let p = PlanBuilder::new(0).finish().unwrap();
        let step = s.run(&p).unwrap();
        assert_eq!(step, StepResult::default());
    }
}
