//! Where a policy computes: the accelerator when the device has one that supports the
//! precision, otherwise every core of the fastest CPU cluster.

use crate::hw::DeviceProfile;
use crate::model::Precision;
use crate::plan::Unit;

/// Picks compute units for a device. Policies that split work (Fiddler's CPU experts,
/// PowerInfer-2's NPU/CPU rows) ask for a specific unit instead.
#[derive(Clone, Debug)]
pub struct Placement {
    accel_precisions: Vec<Precision>,
    main_cpu_cores: u16,
}

impl Placement {
    pub fn new(device: &DeviceProfile) -> Self {
        let accel_precisions = device
            .accelerator
            .as_ref()
            .map(|a| a.ops_per_s.value.iter().map(|r| r.precision).collect())
            .unwrap_or_default();
        let main_cpu_cores = device.cpu.first().map_or(1, |c| c.cores.value.max(1)) as u16;
        Placement {
            accel_precisions,
            main_cpu_cores,
        }
    }

    /// The unit a weight of `precision` is computed on by default.
    pub fn unit_for(&self, precision: Precision) -> Unit {
        if self.accel_precisions.contains(&precision) {
            Unit::Accel
        } else {
            self.cpu()
        }
    }

    /// All cores of the first (fastest) CPU cluster.
    pub fn cpu(&self) -> Unit {
        Unit::Cpu {
            cluster: 0,
            threads: self.main_cpu_cores,
        }
    }
}
