//! The event queue: a min-heap keyed by `(time, insertion counter)`.
//!
//! Events at the same instant pop in the order they were pushed. That tie-break is part of the
//! contract, not an accident of the heap: the simulator's results must not depend on how a
//! binary heap happens to arrange equal keys.
//!
//! The heap starts with room for [`INITIAL_CAPACITY`] events and only grows (it never shrinks),
//! so a long run stops allocating here once it has seen its largest number of pending events.

use crate::units::Nanos;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Pending events the queue has room for before its first growth.
pub const INITIAL_CAPACITY: usize = 1 << 10;

#[derive(Debug)]
struct Entry<E> {
    time: Nanos,
    sequence: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.sequence) == (other.time, other.sequence)
    }
}

impl<E> Eq for Entry<E> {}

impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Entry<E> {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest entry first. The key is
    /// compared as one 128-bit number (time in the high half), which is the same order as the
    /// pair and compiles to two compares without branches.
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        let key = |e: &Self| ((e.time.0 as u128) << 64) | e.sequence as u128;
        key(other).cmp(&key(self))
    }
}

/// Pending events in time order; same-time events in push order.
///
/// Causality is enforced: pushing an event earlier than the last one popped is a bug in the
/// caller and panics (the check is one comparison, so it stays on in release builds).
#[derive(Debug)]
pub struct EventQueue<E> {
    heap: BinaryHeap<Entry<E>>,
    next_sequence: u64,
    /// Time of the last event popped: nothing may be scheduled before it.
    now: Nanos,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            heap: BinaryHeap::with_capacity(INITIAL_CAPACITY),
            next_sequence: 0,
            now: Nanos::ZERO,
        }
    }
}

impl<E> EventQueue<E> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Schedules `event` at `time`, which must not be before the last popped event.
    pub fn push(&mut self, time: Nanos, event: E) {
        assert!(
            time >= self.now,
            "event scheduled at {time} is before the current time {}",
            self.now
        );
        self.heap.push(Entry {
            time,
            sequence: self.next_sequence,
            event,
        });
        self.next_sequence += 1;
    }

    /// Removes and returns the earliest event (the first pushed among equals).
    pub fn pop(&mut self) -> Option<(Nanos, E)> {
        let entry = self.heap.pop()?;
        self.now = entry.time;
        Some((entry.time, entry.event))
    }

    /// Removes and returns the earliest event if it is at `time`.
    pub fn pop_at(&mut self, time: Nanos) -> Option<E> {
        if self.peek_time() == Some(time) {
            self.pop().map(|(_, e)| e)
        } else {
            None
        }
    }

    pub fn peek_time(&self) -> Option<Nanos> {
        self.heap.peek().map(|e| e.time)
    }

    /// Time of the last popped event (zero before any).
    pub fn now(&self) -> Nanos {
        self.now
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_time_order() {
        let mut q = EventQueue::new();
        for (t, e) in [(30, 'c'), (10, 'a'), (20, 'b')] {
            q.push(Nanos(t), e);
        }
        let popped: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(
            popped,
            vec![(Nanos(10), 'a'), (Nanos(20), 'b'), (Nanos(30), 'c')]
        );
    }

    #[test]
    fn same_time_events_pop_in_push_order() {
        // Enough equal keys that a heap without the counter would reorder some of them.
        let mut q = EventQueue::new();
        for i in 0..1000u32 {
            q.push(Nanos(5 + (i % 2) as u64), i);
        }
        let popped: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        let evens: Vec<u32> = (0..1000).step_by(2).collect();
        let odds: Vec<u32> = (1..1000).step_by(2).collect();
        let expected: Vec<(Nanos, u32)> = evens
            .iter()
            .map(|&i| (Nanos(5), i))
            .chain(odds.iter().map(|&i| (Nanos(6), i)))
            .collect();
        assert_eq!(popped, expected);
    }

    #[test]
    fn events_pushed_while_popping_keep_the_order() {
        let mut q = EventQueue::new();
        q.push(Nanos(1), "first");
        q.push(Nanos(1), "second");
        assert_eq!(q.pop(), Some((Nanos(1), "first")));
        // Pushed at the current instant after "second": pops after it.
        q.push(Nanos(1), "third");
        assert_eq!(q.pop_at(Nanos(1)), Some("second"));
        assert_eq!(q.pop_at(Nanos(1)), Some("third"));
        assert_eq!(q.pop_at(Nanos(1)), None);
        assert_eq!(q.now(), Nanos(1));
        assert!(q.is_empty());
    }

    #[test]
    #[should_panic(expected = "before the current time")]
    fn scheduling_in_the_past_panics() {
        let mut q = EventQueue::new();
        q.push(Nanos(10), ());
        q.pop();
        q.push(Nanos(9), ());
    }
}
