//! The discrete-event simulator: runs plans on a device model in simulated time.
//!
//! # Overview
//!
//! [`Simulator`] is the [`Backend`](crate::backend::Backend) that prices each op with the
//! device's cost functions ([`crate::hw::cost`]) and schedules the plan's DAG on the device's
//! resources: `flash` (one server per channel), `link` (the PCIe link, when the device
//! offloads to host memory), `cpu.<cluster>` (one server per core), `accel` (GPU or NPU
//! servers) and `tee` (world switches). [`Backend::resources`](crate::backend::Backend) lists
//! them; op timings refer to them by index.
//!
//! ```
//! use edgesim::backend::Backend;
//! use edgesim::hw::testing::test_device;
//! use edgesim::model::Precision;
//! use edgesim::plan::{Op, PlanBuilder, TensorRef, Unit};
//! use edgesim::sim::Simulator;
//!
//! let mut sim = Simulator::new(&test_device(), 1 << 30).unwrap();
//! let expert = TensorRef::expert(0, 3);
//! let mut b = PlanBuilder::new(sim.next_op_id());
//! let read = b.push(
//!     Op::Read { tensor: expert, precision: Precision::Int4, bytes: 1 << 20, request_bytes: 1 << 19 },
//!     &[],
//! );
//! let unit = Unit::Cpu { cluster: 0, threads: 2 };
//! let gemv = b.push(Op::matmul(expert, unit, Precision::Int4, 4096, 512, 1), &[read]);
//! b.set_output(gemv);
//! let step = sim.run(&b.finish().unwrap()).unwrap();
//! assert_eq!(step.ops.len(), 2);
//! assert!(step.ops[1].start >= step.ops[0].end);
//! ```
//!
//! The simulator keeps **one continuous timeline** across plans. `run(plan)` releases the plan
//! at the current time (the previous plan's output time, 0 for the first), then advances until
//! the plan's output op finishes. Ops not upstream of the output (prefetches, evictions) stay in
//! flight and keep running during later plans; a later plan may depend on them.
//! [`Simulator::drain`] runs whatever is left at the end.
//!
//! # Scheduling rules
//!
//! - An op becomes *ready* when all its dependencies have finished (a dependency on an op of
//!   an earlier plan that already finished is met at once).
//! - A ready op with no resource (normal Alloc, Evict) takes no time and happens at once; at
//!   each instant the ready Evicts happen before the ready Allocs, so memory freed at an
//!   instant can be allocated at that instant. A ready op with a resource joins that
//!   resource's queue, ordered by `(priority ascending, ready time, op id)`; the
//!   head starts when as many servers as it needs are free, and blocks the ops behind it until
//!   then (no starvation of wide ops; see [`resource`]).
//! - A read first travels to its device: it joins the flash (or link) queue its priced
//!   `latency` after becoming ready, holding nothing meanwhile. Its timing's `start` is when it
//!   got its servers. So a lone read takes `latency + transfer`, and queued reads overlap their
//!   latency with the transfers ahead of them, as requests do in a device with a deep queue.
//! - An op holds its servers for exactly its priced duration.
//! - Memory: an Alloc adds its bytes when it starts, an Evict returns them when it ends. An
//!   Alloc that would take usage over the budget fails the run with
//!   [`BudgetExceeded`](crate::backend::BackendError::BudgetExceeded).
//!
//! # Guarantees
//!
//! - **Time is integer nanoseconds** and never goes backwards: events are processed in
//!   nondecreasing time, every op ends at or after its start, and each plan is released no
//!   earlier than the one before.
//! - **Causality**: an op starts only after all its dependencies have ended, and never before
//!   its plan is released.
//! - **Capacity**: at no instant does a resource run ops needing more servers than it has.
//! - **Ordering**: events at the same instant are processed in the order they were scheduled
//!   (the event queue's `(time, insertion counter)` key, see [`event_queue`]). All ops
//!   finishing at an instant release their servers before any queued op starts at it, so who
//!   starts depends on the queue order above, never on the processing order of simultaneous
//!   completions.
//! - **Determinism**: the same device, budget and plans give identical timings, bit for bit.
//!   No floats reach the clock, no hash map is iterated, nothing depends on addresses.
//! - **Exactly once**: every op issued runs once and is reported once, in the `StepResult` of
//!   the `run` (or `drain`) during which it finished.
//!
//! After a run fails part-way (budget exceeded, an Evict of memory never allocated), the
//! timeline is in an unspecified state: every later call returns the same error. A plan
//! rejected before it starts (bad dependency, unsupported op) leaves the simulator unchanged.
//!
//! # Speed
//!
//! Ops are priced once, when inserted; the hot path touches flat vectors only (a ring buffer of
//! in-flight ops indexed by op id, per-resource binary heaps, one event heap, a recycled arena
//! of dependency edges) and allocates nothing per op once the buffers have grown.

pub mod event_queue;
mod pricing;
pub mod resource;
mod simulator;
mod window;

pub use pricing::{OpCost, Pricer};
pub use simulator::Simulator;
