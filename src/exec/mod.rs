//! The real executor: the plans the unchanged policies emit, performed on this machine and
//! measured, so `edgesim validate` can put each prediction beside a measurement.
//!
//! # What is real
//!
//! | op | on the executor |
//! | --- | --- |
//! | Read | `pread` of the tensor's stored bytes from the weight store ([`store`]), with `O_DIRECT` into page-aligned arena memory ([`io`]); issued as requests of the op's `request_bytes` (at most its size, in whole 4 KiB pages) spread over up to `storage.channels` I/O threads. Where the file system refuses `O_DIRECT`, buffered `pread` with `posix_fadvise(DONTNEED)` on the file before each plan; [`ExecStats::io_mode`] says which ran |
//! | Compute on the CPU | the LUT kernels on the weights just read, on the cluster's thread pool with the op's thread count ([`work`] says what each tensor's compute does) |
//! | Alloc / Evict | a region carved from (returned to) a pre-faulted arena; the budget is enforced on the ops' byte counts like the simulator's ([`memory`]); a secure Alloc also zeroes its region on a CPU thread |
//! | Decrypt | ChaCha20-Poly1305 decryption and authentication of the tensor in place, its 1 MiB chunks split over the op's threads ([`store::crypt`]) |
//! | Join | nothing: it ends when its dependencies have |
//!
//! # What is emulated
//!
//! Ops with no host equivalent run as labelled stand-ins and are counted in
//! [`ExecStats::emulated`] with how they ran:
//!
//! - Compute on `Unit::Accel` (the host has no NPU/GPU the executor drives): a wait of the
//!   cost model's duration (`hw::cost`, the formula the simulator prices it with) on a
//!   separate emulation thread;
//! - WorldSwitch (no TrustZone on the host): a wait of the profile's `world_switch_ns`.
//!
//! Neither is ever silently timed as if it were real: validation reports list them.
//!
//! # Pieces
//!
//! - [`scale`]: scaled-down models (same structure, smaller matrices) for small hosts;
//! - [`store`]: `edgesim exec prepare`'s weight store and its verification;
//! - [`io`], [`memory`], [`work`]: direct I/O, the arena, the compute ops;
//! - [`Executor`]: the [`Backend`](crate::backend::Backend);
//! - [`calibrate`]: the microbenchmarks that write a host device profile.

pub mod calibrate;
mod executor;
pub mod io;
pub mod memory;
pub mod model;
pub mod scale;
pub mod store;
pub mod work;

pub use executor::{
    available_memory_bytes, request_size, EmulatedOps, ExecStats, Executor, ExecutorOptions,
};
