//! Pure cost functions: how long one op takes on an otherwise idle unit of a device.
//!
//! Each model here turns a device profile's numbers into a duration (integer nanoseconds,
//! rounded up) and, where the op spreads over several parallel servers (flash channels, CPU
//! cores), how many servers it occupies. They know nothing of queues or other ops: contention
//! is the discrete-event engine's job (`crate::sim`), which holds each op on its servers for
//! exactly the duration computed here.
//!
//! Every model is tested against its formula the way Ramulator tests its memory models: an
//! unloaded request takes exactly the formula's latency, and a long stream reaches the
//! configured bandwidth.
//!
//! | model | resource | servers taken | duration |
//! | --- | --- | --- | --- |
//! | [`FlashModel`] | flash (one link; C servers = the executor's I/O threads) | all C | reaches the link after t_media + (t_cmd + B/curve(r) − hold)⁺, holds it for hold = max(⌈B/r⌉·t_cmd, B / curve(min(r, B))) |
//! | [`FlashModel::under`] | flash | all C | the same with t_cmd / factor: the small-random-read rate by access range, issuing core class and number of issuers ([`FlashAccess`]) |
//! | [`LinkModel`] | host link (1) | 1 | latency + B / bandwidth |
//! | [`CpuModel`] | one CPU cluster (cores) | threads | launch + max(flops / (threads · rate(p)), bytes / min(threads · core bw, memory bw)) |
//! | [`AccelModel`] | accelerator (servers) | 1 | dispatch + max(flops / rate(p), bytes / accel bw) |
//! | [`TeeModel::decrypt`] | one CPU cluster | threads | B / (threads · decrypt rate per core) |
//! | [`TeeModel::secure_alloc`] | CPU cluster 0 | 1 | B / secure alloc rate |
//! | [`TeeModel::world_switch`] | tee (1) | 1 | world switch time |
//!
//! [`SharedDram`] is the formula for DRAM bandwidth shared by concurrent CPU, accelerator and
//! I/O streams (not yet applied by the simulator, which prices every op at its solo rate).
//!
//! [`DeviceCosts`] builds all of them from a [`DeviceProfile`](crate::hw::DeviceProfile) once,
//! so pricing an op does no lookup by name and no allocation.

mod compute;
mod device;
mod dram;
mod flash;
mod flash_access;
mod link;
mod tee;

pub use compute::{AccelModel, CpuModel, Kernel};
pub use device::DeviceCosts;
pub use dram::{SharedDram, Stream};
pub use flash::{FlashModel, FlashRead};
pub use flash_access::{FlashAccess, IssueConditions, IssuerRate, RangeRate};
pub use link::LinkModel;
pub use tee::TeeModel;

use crate::model::Precision;

/// Why an op cannot be priced on a device.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CostError {
    /// The unit has no rate for this precision (no kernel for it, or an NPU without int3).
    #[error("{unit} does not support {precision} (its profile lists no rate for it)")]
    UnsupportedPrecision { unit: String, precision: Precision },
    #[error("the device has no CPU cluster {cluster} (it has {clusters})")]
    NoSuchCluster { cluster: usize, clusters: usize },
    #[error("{unit} has {cores} cores, but the op asks for {threads} threads")]
    TooManyThreads {
        unit: String,
        cores: u32,
        threads: u32,
    },
    /// A plan error rather than a device limit: work needs at least one thread.
    #[error("{unit}: an op must run on at least one thread, got 0")]
    ZeroThreads { unit: String },
    #[error("the device has no accelerator (`accelerator` is absent from its profile)")]
    NoAccelerator,
    #[error("the device has no TEE (`tee` is absent from its profile)")]
    NoTee,
    #[error("the device's offload tier is host memory but it has no `host_link`")]
    NoHostLink,
    /// A profile value the model cannot work with, naming the field.
    #[error("`{field}`: {problem}")]
    BadProfile { field: String, problem: String },
}

impl CostError {
    /// True when the fault lies with the plan (it asks for something meaningless), false when
    /// the device cannot do what a sensible plan asks.
    pub fn is_plan_error(&self) -> bool {
        matches!(self, CostError::ZeroThreads { .. })
    }
}

/// Rejects a rate or bandwidth that is not a finite positive number.
fn check_positive(field: &str, value: f64) -> Result<(), CostError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(CostError::BadProfile {
            field: field.to_string(),
            problem: format!("must be a positive finite number, got {value}"),
        })
    }
}
