//! Hardware: device profiles (what a device is, with sources) and the pure cost functions the
//! simulator prices ops with.

pub mod cost;
mod profile;
pub mod testing;

pub use profile::{
    AcceleratorKind, AcceleratorSpec, CpuCluster, CurvePoint, DeviceProfile, EnergySpec,
    HostMemorySpec, LinkSpec, MemorySpec, OffloadTier, PrecisionRate, StorageSpec, TeeSpec,
};
