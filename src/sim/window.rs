//! The ops in flight, in a window indexed by op id.
//!
//! Op ids are dense and grow across plans, so the ops the engine still has to track (not yet
//! finished, or finished but behind an unfinished one) form a contiguous range of ids
//! `[base, end)`: a ring buffer indexed by `id - base` holds them, and every id below `base`
//! is known to have finished. Memory stays bounded by the span of ids in flight, however long
//! the run.
//!
//! Successor lists (who waits for an op) are singly linked lists threaded through one shared
//! arena of edges with a free list, so adding and consuming dependencies allocates nothing once
//! the arena has grown to the run's peak.

use crate::backend::ResourceId;
use crate::plan::OpId;
use crate::units::Nanos;
use std::collections::VecDeque;

/// Marks the end of a successor list.
const NO_EDGE: u32 = u32::MAX;

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

/// Everything the engine needs about one op, fixed when the op is inserted (its cost is
/// priced once, then only times and counters change).
#[derive(Clone, Copy, Debug)]
pub struct Slot {
    /// Delay between becoming ready and joining the resource queue (holds no server).
    pub latency: Nanos,
    pub duration: Nanos,
    pub ready: Nanos,
    pub start: Nanos,
    pub memory: MemoryEffect,
    pub resource: Option<ResourceId>,
    pub servers: u32,
    pub priority: i16,
    pub state: OpState,
    /// Dependencies not yet finished.
    pub pending_deps: u32,
    /// Head of this op's successor list in the edge arena.
    successors: u32,
}

impl Slot {
    pub fn new(
        duration: Nanos,
        resource: Option<ResourceId>,
        servers: u32,
        priority: i16,
        memory: MemoryEffect,
    ) -> Self {
        Slot {
            latency: Nanos::ZERO,
            duration,
            ready: Nanos::ZERO,
            start: Nanos::ZERO,
            memory,
            resource,
            servers,
            priority,
            state: OpState::Waiting,
            pending_deps: 0,
            successors: NO_EDGE,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Edge {
    successor: OpId,
    next: u32,
}

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

#[derive(Debug, Default)]
pub struct OpWindow {
    /// Id of `slots[0]`.
    base: OpId,
    slots: VecDeque<Slot>,
    edges: Vec<Edge>,
    /// Head of the free list of edges.
    free_edge: u32,
}

impl OpWindow {
    pub fn new() -> Self {
        OpWindow {
            free_edge: NO_EDGE,
            ..Default::default()
        }
    }

    /// The id the next inserted op gets.
    pub fn end_id(&self) -> OpId {
        self.base + self.slots.len() as OpId
    }

    /// Ops tracked (not retired).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn lookup(&self, id: OpId) -> Lookup {
        if id < self.base {
            Lookup::Retired
        } else if id < self.end_id() {
            Lookup::Tracked(self.slots[(id - self.base) as usize].state)
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
        let id = self.end_id();
        self.slots.push_back(slot);
        id
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
        (id - self.base) as usize
    }

    /// Records that `successor` waits for `op` (which must be tracked and not done).
    pub fn add_successor(&mut self, op: OpId, successor: OpId) {
        let head = self.slot(op).successors;
        let edge = Edge {
            successor,
            next: head,
        };
        let e = if self.free_edge != NO_EDGE {
            let e = self.free_edge;
            self.free_edge = self.edges[e as usize].next;
            self.edges[e as usize] = edge;
            e
        } else {
            self.edges.push(edge);
            (self.edges.len() - 1) as u32
        };
        self.slot_mut(op).successors = e;
    }

    /// Removes and returns one successor of `op` (most recently added first).
    pub fn pop_successor(&mut self, op: OpId) -> Option<OpId> {
        let e = self.slot(op).successors;
        if e == NO_EDGE {
            return None;
        }
        let edge = self.edges[e as usize];
        self.slot_mut(op).successors = edge.next;
        self.edges[e as usize].next = self.free_edge;
        self.free_edge = e;
        Some(edge.successor)
    }

    /// Drops finished ops from the front of the window.
    pub fn retire(&mut self) {
        while let Some(front) = self.slots.front() {
            if front.state != OpState::Done {
                break;
            }
            debug_assert_eq!(front.successors, NO_EDGE);
            self.slots.pop_front();
            self.base += 1;
        }
    }

    /// Edges allocated in the arena (live and free), for tests of boundedness.
    #[cfg(test)]
    pub fn edge_capacity(&self) -> usize {
        self.edges.len()
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
        for round in 0..100u64 {
            let a = w.push(slot());
            let b = w.push(slot());
            let c = w.push(slot());
            w.add_successor(a, b);
            w.add_successor(a, c);
            let mut got = vec![w.pop_successor(a).unwrap(), w.pop_successor(a).unwrap()];
            got.sort();
            assert_eq!(got, vec![b, c], "round {round}");
            assert_eq!(w.pop_successor(a), None);
            for id in [a, b, c] {
                w.slot_mut(id).state = OpState::Done;
            }
            w.retire();
        }
        assert_eq!(w.edge_capacity(), 2);
        assert!(w.is_empty());
    }
}
