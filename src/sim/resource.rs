//! A resource: `N` identical servers and the queue of ops waiting for them.
//!
//! An op asks for `k` servers at once (a read striped over `k` flash channels, a kernel on `k`
//! cores) and holds all of them for its whole duration. Waiting ops are ordered by
//! `(priority ascending, ready time, op id)`. Only the head of that order may start: if it
//! needs more servers than are free, every op behind it waits too, even ones that would fit.
//! That costs some utilisation but means a wide op is never starved by a stream of narrow ones,
//! and the order in which ops start is exactly the queue order (FIFO within a priority).

use crate::plan::OpId;
use crate::units::Nanos;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// An op waiting for a resource. Field order is the queue order (`servers` never decides it:
/// op ids are unique).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Waiting {
    pub priority: i16,
    pub ready: Nanos,
    pub id: OpId,
    pub servers: u32,
}

#[derive(Debug)]
pub struct Resource {
    servers: u32,
    free: u32,
    queue: BinaryHeap<Reverse<Waiting>>,
    busy_server_ns: u64,
}

impl Resource {
    /// A resource with `servers` servers, at least one.
    pub fn new(servers: u32) -> Self {
        assert!(servers > 0, "a resource needs at least one server");
        Resource {
            servers,
            free: servers,
            queue: BinaryHeap::with_capacity(64),
            busy_server_ns: 0,
        }
    }

    pub fn servers(&self) -> u32 {
        self.servers
    }

    pub fn free(&self) -> u32 {
        self.free
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Server-nanoseconds of work completed so far.
    pub fn busy_server_ns(&self) -> u64 {
        self.busy_server_ns
    }

    /// Adds a ready op to the queue. Its `servers` must not exceed the resource's.
    pub fn enqueue(&mut self, waiting: Waiting) {
        assert!(
            waiting.servers <= self.servers,
            "op {} asks for {} servers of a resource that has {}",
            waiting.id,
            waiting.servers,
            self.servers
        );
        self.queue.push(Reverse(waiting));
    }

    /// Takes the servers of the head of the queue and returns it, if enough are free.
    pub fn start_next(&mut self) -> Option<Waiting> {
        let head = self.queue.peek()?.0;
        if head.servers > self.free {
            return None;
        }
        self.queue.pop();
        self.free -= head.servers;
        Some(head)
    }

    /// Returns `servers` servers after an op that held them for `duration`.
    pub fn finish(&mut self, servers: u32, duration: Nanos) {
        self.free += servers;
        assert!(
            self.free <= self.servers,
            "resource released more servers than it has"
        );
        self.busy_server_ns = self
            .busy_server_ns
            .saturating_add(servers as u64 * duration.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(priority: i16, ready: u64, id: OpId, servers: u32) -> Waiting {
        Waiting {
            priority,
            ready: Nanos(ready),
            id,
            servers,
        }
    }

    fn drain_startable(r: &mut Resource) -> Vec<OpId> {
        std::iter::from_fn(|| r.start_next())
            .map(|w| w.id)
            .collect()
    }

    #[test]
    fn order_is_priority_then_ready_time_then_id() {
        let mut r = Resource::new(10);
        r.enqueue(waiting(0, 5, 1, 1));
        r.enqueue(waiting(0, 3, 2, 1));
        r.enqueue(waiting(-1, 9, 3, 1));
        r.enqueue(waiting(0, 3, 0, 1));
        r.enqueue(waiting(2, 0, 4, 1));
        assert_eq!(drain_startable(&mut r), vec![3, 0, 2, 1, 4]);
        assert_eq!(r.free(), 5);
    }

    #[test]
    fn wide_head_blocks_narrow_ops_behind_it() {
        let mut r = Resource::new(4);
        r.enqueue(waiting(0, 0, 0, 3));
        assert_eq!(drain_startable(&mut r), vec![0]);
        // One server free. The 4-wide op is at the head; the 1-wide op behind it must wait.
        r.enqueue(waiting(0, 1, 1, 4));
        r.enqueue(waiting(0, 2, 2, 1));
        assert_eq!(drain_startable(&mut r), Vec::<OpId>::new());
        r.finish(3, Nanos(10));
        assert_eq!(drain_startable(&mut r), vec![1]);
        r.finish(4, Nanos(10));
        assert_eq!(drain_startable(&mut r), vec![2]);
        r.finish(1, Nanos(7));
        assert_eq!(r.busy_server_ns(), 3 * 10 + 4 * 10 + 7);
        assert_eq!(r.free(), 4);
    }

    #[test]
    #[should_panic(expected = "asks for 5 servers")]
    fn an_op_wider_than_the_resource_is_a_bug() {
        Resource::new(4).enqueue(waiting(0, 0, 0, 5));
    }
}
