//! The ops in flight, in a window indexed by op id.
//!
//! Op ids are dense and grow across plans, so the ops the engine still has to track (not yet
//! finished, or finished but behind an unfinished one) form a contiguous range of ids
//! `[base, end)`: a ring buffer whose capacity is a power of two holds them, op `id` in slot
//! `id & mask`, and every id below `base` is known to have finished. Memory stays bounded by
//! the span of ids in flight, however long the run; the ring grows (doubling) only when that
//! span outgrows it, so a run allocates nothing here once it has seen its widest window.
//!
//! Successor lists (who waits for an op) are singly linked lists threaded through a second
//! ring of edges, kept **in creation order**: an op's incoming edges are appended when it is
//! inserted, so they are contiguous, and once the op retires they are all consumed (it could
//! not have finished otherwise) and the ring's tail moves past them. A list is popped newest
//! edge first, i.e. in descending successor id, and walking it moves backwards through memory
//! that was written in order — no free list scattering edges over the arena, which made every
//! edge a cache miss on plans of 100,000 ops.

use crate::backend::ResourceId;
use crate::plan::OpId;
use crate::units::Nanos;

/// Marks the end of a successor list.
const NO_EDGE: u64 = u64::MAX;

/// Slots (and edges) the rings start with; they double when a run needs more.
const INITIAL_CAPACITY: usize = 1 << 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpState {
    /// Some dependency has not finished.
    Waiting,
    /// All dependencies finished; queued for its resource (or about to start, if it has none).
    Ready,
    Running,
    Done,
}

/// How an op changes the memory in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryEffect {
    None,
    /// Bytes reserved when the op starts.
    Alloc(u64),
    /// Bytes returned when the op ends.
    Evict(u64),
}

/// The kind of a [`MemoryEffect`], stored apart from its bytes so a slot packs into 64 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MemoryKind {
    None,
    Alloc,
    Evict,
}

/// Everything the engine needs about one op, fixed when the op is inserted (its cost is
/// priced once, then only times and counters change). One cache line.
#[derive(Clone, Copy, Debug)]
pub struct Slot {
    /// Delay between becoming ready and joining the resource queue (holds no server).
    pub latency: Nanos,
    pub duration: Nanos,
    pub start: Nanos,
    memory_bytes: u64,
    /// Absolute index of the newest edge of this op's successor list, or [`NO_EDGE`].
    successors: u64,
    /// Dependencies not yet finished.
    pub pending_deps: u32,
    /// Edges this op appended to the edge ring when it was inserted (one per dependency it
    /// had to wait for): freed when it retires.
    incoming: u32,
    pub servers: u32,
    pub resource: Option<ResourceId>,
    pub priority: i16,
    pub state: OpState,
    memory_kind: MemoryKind,
}

impl Slot {
    pub fn new(
        duration: Nanos,
        resource: Option<ResourceId>,
        servers: u32,
        priority: i16,
        memory: MemoryEffect,
    ) -> Self {
        let (memory_kind, memory_bytes) = match memory {
            MemoryEffect::None => (MemoryKind::None, 0),
            MemoryEffect::Alloc(b) => (MemoryKind::Alloc, b),
            MemoryEffect::Evict(b) => (MemoryKind::Evict, b),
        };
        Slot {
            latency: Nanos::ZERO,
            duration,
            start: Nanos::ZERO,
            memory_bytes,
            successors: NO_EDGE,
            pending_deps: 0,
            incoming: 0,
            servers,
            resource,
            priority,
            state: OpState::Waiting,
            memory_kind,
        }
    }

    pub fn memory(&self) -> MemoryEffect {
        match self.memory_kind {
            MemoryKind::None => MemoryEffect::None,
            MemoryKind::Alloc => MemoryEffect::Alloc(self.memory_bytes),
            MemoryKind::Evict => MemoryEffect::Evict(self.memory_bytes),
        }
    }

    pub fn is_evict(&self) -> bool {
        self.memory_kind == MemoryKind::Evict
    }
}

#[derive(Clone, Copy, Debug)]
struct Edge {
    successor: OpId,
    /// Absolute index of the next (older) edge of the same list, or [`NO_EDGE`].
    next: u64,
}

const EMPTY_EDGE: Edge = Edge {
    successor: 0,
    next: NO_EDGE,
};

/// What is known about an op id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Finished, and every op before it too: its slot is gone.
    Retired,
    /// Still tracked, in the given state.
    Tracked(OpState),
    /// Never inserted.
    Unknown,
}

#[derive(Debug)]
pub struct OpWindow {
    /// Id of the oldest tracked op.
    base: OpId,
    /// Ops tracked: ids `base .. base + len`.
    len: usize,
    /// Ring of slots; op `id` lives at `id & mask`.
    slots: Vec<Slot>,
    mask: u64,
    /// Ring of edges; edge `i` (absolute) lives at `i & edge_mask`.
    edges: Vec<Edge>,
    edge_mask: u64,
    /// Absolute index of the oldest edge not yet freed.
    edge_base: u64,
    /// Absolute index the next edge gets.
    edge_end: u64,
}

impl Default for OpWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl OpWindow {
    pub fn new() -> Self {
        let empty = Slot::new(Nanos::ZERO, None, 0, 0, MemoryEffect::None);
        OpWindow {
            base: 0,
            len: 0,
            slots: vec![empty; INITIAL_CAPACITY],
            mask: INITIAL_CAPACITY as u64 - 1,
            edges: vec![EMPTY_EDGE; INITIAL_CAPACITY],
            edge_mask: INITIAL_CAPACITY as u64 - 1,
            edge_base: 0,
            edge_end: 0,
        }
    }

    /// The id the next inserted op gets.
    pub fn end_id(&self) -> OpId {
        self.base + self.len as OpId
    }

    /// Ops tracked (not retired).
    pub fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn lookup(&self, id: OpId) -> Lookup {
        if id < self.base {
            Lookup::Retired
        } else if id < self.end_id() {
            Lookup::Tracked(self.slots[(id & self.mask) as usize].state)
        } else {
            Lookup::Unknown
        }
    }

    pub fn is_done(&self, id: OpId) -> bool {
        matches!(
            self.lookup(id),
            Lookup::Retired | Lookup::Tracked(OpState::Done)
        )
    }

    /// Appends an op; returns its id.
    pub fn push(&mut self, slot: Slot) -> OpId {
        if self.len == self.slots.len() {
            self.grow_slots();
        }
        let id = self.end_id();
        self.slots[(id & self.mask) as usize] = slot;
        self.len += 1;
        id
    }

    /// Doubles the slot ring, each tracked op moving to its place under the new mask.
    fn grow_slots(&mut self) {
        let capacity = self.slots.len() * 2;
        let mut slots = vec![self.slots[0]; capacity];
        let mask = capacity as u64 - 1;
        for id in self.base..self.end_id() {
            slots[(id & mask) as usize] = self.slots[(id & self.mask) as usize];
        }
        self.slots = slots;
        self.mask = mask;
    }

    /// The slot of a tracked op. Asking for a retired or unknown id is an engine bug.
    pub fn slot(&self, id: OpId) -> &Slot {
        &self.slots[self.index(id)]
    }

    pub fn slot_mut(&mut self, id: OpId) -> &mut Slot {
        let i = self.index(id);
        &mut self.slots[i]
    }

    fn index(&self, id: OpId) -> usize {
        assert!(
            id >= self.base && id < self.end_id(),
            "op {id} is not tracked (window {}..{})",
            self.base,
            self.end_id()
        );
        (id & self.mask) as usize
    }

    /// Makes the newest op (`successor`, just pushed) wait for `dep` if `dep` has not
    /// finished; returns whether it must wait. `dep` must have been inserted before.
    pub fn depend(&mut self, dep: OpId, successor: OpId) -> bool {
        debug_assert_eq!(
            successor + 1,
            self.end_id(),
            "only the newest op gains edges"
        );
        if dep < self.base {
            return false;
        }
        let d = self.index(dep);
        if self.slots[d].state == OpState::Done {
            return false;
        }
        if self.edge_end - self.edge_base == self.edges.len() as u64 {
            self.grow_edges();
        }
        let e = self.edge_end;
        self.edge_end += 1;
        self.edges[(e & self.edge_mask) as usize] = Edge {
            successor,
            next: self.slots[d].successors,
        };
        self.slots[d].successors = e;
        let s = (successor & self.mask) as usize;
        self.slots[s].incoming += 1;
        true
    }

    /// Doubles the edge ring, each edge not yet freed moving to its place under the new mask.
    fn grow_edges(&mut self) {
        let capacity = self.edges.len() * 2;
        let mut edges = vec![EMPTY_EDGE; capacity];
        let mask = capacity as u64 - 1;
        for e in self.edge_base..self.edge_end {
            edges[(e & mask) as usize] = self.edges[(e & self.edge_mask) as usize];
        }
        self.edges = edges;
        self.edge_mask = mask;
    }

    /// Removes and returns one successor of `op` (most recently added first).
    pub fn pop_successor(&mut self, op: OpId) -> Option<OpId> {
        let i = self.index(op);
        let e = self.slots[i].successors;
        if e == NO_EDGE {
            return None;
        }
        let edge = self.edges[(e & self.edge_mask) as usize];
        self.slots[i].successors = edge.next;
        Some(edge.successor)
    }

    /// Drops finished ops from the front of the window, and the edges they had appended.
    pub fn retire(&mut self) {
        while self.len > 0 {
            let front = &self.slots[(self.base & self.mask) as usize];
            if front.state != OpState::Done {
                break;
            }
            debug_assert_eq!(front.successors, NO_EDGE);
            self.edge_base += front.incoming as u64;
            self.base += 1;
            self.len -= 1;
        }
        debug_assert!(self.len > 0 || self.edge_base == self.edge_end);
    }

    /// Edges the ring has room for (live and freed), for tests of boundedness.
    #[cfg(test)]
    pub fn edge_capacity(&self) -> usize {
        self.edges.len()
    }

    /// Slots the ring has room for, for tests of boundedness.
    #[cfg(test)]
    pub fn slot_capacity(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot() -> Slot {
        Slot::new(Nanos(1), None, 0, 0, MemoryEffect::None)
    }

    #[test]
    fn lookup_distinguishes_retired_tracked_and_unknown() {
        let mut w = OpWindow::new();
        assert_eq!(w.lookup(0), Lookup::Unknown);
        let a = w.push(slot());
        let b = w.push(slot());
        assert_eq!((a, b), (0, 1));
        w.slot_mut(a).state = OpState::Done;
        assert_eq!(w.lookup(a), Lookup::Tracked(OpState::Done));
        w.retire();
        assert_eq!(w.lookup(a), Lookup::Retired);
        assert!(w.is_done(a));
        assert_eq!(w.lookup(b), Lookup::Tracked(OpState::Waiting));
        assert!(!w.is_done(b));
        assert_eq!(w.lookup(2), Lookup::Unknown);
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn an_unfinished_op_holds_the_window_open() {
        let mut w = OpWindow::new();
        for _ in 0..4 {
            w.push(slot());
        }
        for id in 1..4 {
            w.slot_mut(id).state = OpState::Done;
        }
        w.retire();
        assert_eq!(w.len(), 4);
        w.slot_mut(0).state = OpState::Done;
        w.retire();
        assert!(w.is_empty());
        assert_eq!(w.end_id(), 4);
    }

    #[test]
    fn successor_edges_are_recycled() {
        let mut w = OpWindow::new();
        for round in 0..10_000u64 {
            let a = w.push(slot());
            let b = w.push(slot());
            assert!(w.depend(a, b));
            let c = w.push(slot());
            assert!(w.depend(a, c));
            // Newest first: descending successor id.
            assert_eq!(w.pop_successor(a), Some(c), "round {round}");
            assert_eq!(w.pop_successor(a), Some(b), "round {round}");
            assert_eq!(w.pop_successor(a), None);
            for id in [a, b, c] {
                w.slot_mut(id).state = OpState::Done;
            }
            w.retire();
        }
        assert_eq!(w.edge_capacity(), INITIAL_CAPACITY);
        assert_eq!(w.slot_capacity(), INITIAL_CAPACITY);
        assert!(w.is_empty());
    }

    #[test]
    fn finished_and_retired_dependencies_need_no_edge() {
        let mut w = OpWindow::new();
        let a = w.push(slot());
        let b = w.push(slot());
        w.slot_mut(a).state = OpState::Done;
        let c = w.push(slot());
        assert!(!w.depend(a, c));
        assert!(w.depend(b, c));
        w.slot_mut(b).state = OpState::Done;
        assert_eq!(w.pop_successor(b), Some(c));
        w.slot_mut(c).state = OpState::Done;
        w.retire();
        let d = w.push(slot());
        assert!(!w.depend(a, d));
    }

    #[test]
    fn the_rings_grow_past_their_initial_size_and_keep_every_list() {
        // One op with many successors, and a window wider than the initial rings.
        let mut w = OpWindow::new();
        let root = w.push(slot());
        let n = 5 * INITIAL_CAPACITY as u64;
        let mut last = root;
        for _ in 0..n {
            let s = w.push(slot());
            assert!(w.depend(root, s));
            if last != root {
                assert!(w.depend(last, s));
            }
            last = s;
        }
        assert!(w.slot_capacity() > n as usize);
        let mut got = Vec::new();
        while let Some(s) = w.pop_successor(root) {
            got.push(s);
        }
        let want: Vec<OpId> = (1..=n).rev().collect();
        assert_eq!(got, want);
        // Each later op also waits for the one before it.
        for id in 1..n {
            assert_eq!(w.pop_successor(id), Some(id + 1));
            assert_eq!(w.pop_successor(id), None);
        }
    }
}
