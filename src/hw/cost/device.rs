//! All of a device's cost models, built once from its profile.

use super::{AccelModel, CostError, CpuModel, FlashModel, LinkModel, TeeModel};
use crate::hw::{DeviceProfile, OffloadTier};

/// The cost models of one device. Building it validates every number the models use, so
/// pricing an op afterwards can only fail on what the op asks for (a precision, a cluster, a
/// unit the device lacks), never on the profile.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceCosts {
    pub offload_tier: OffloadTier,
    pub flash: FlashModel,
    /// Present when the profile has a `host_link`.
    pub link: Option<LinkModel>,
    /// One per CPU cluster, in profile order.
    pub cpu: Vec<CpuModel>,
    pub accel: Option<AccelModel>,
    pub tee: Option<TeeModel>,
}

impl DeviceCosts {
    pub fn new(device: &DeviceProfile) -> Result<Self, CostError> {
        let memory_bandwidth = device.cpu_memory_bandwidth_bytes_per_s();
        let cpu = device
            .cpu
            .iter()
            .enumerate()
            .map(|(i, c)| CpuModel::new(i, c, memory_bandwidth))
            .collect::<Result<Vec<_>, _>>()?;
        if cpu.is_empty() {
            return Err(CostError::BadProfile {
                field: "cpu".into(),
                problem: "needs at least one cluster".into(),
            });
        }
        let link = device.host_link.as_ref().map(LinkModel::new).transpose()?;
        if device.offload_tier == OffloadTier::HostMemory && link.is_none() {
            return Err(CostError::NoHostLink);
        }
        let mut flash = FlashModel::new(&device.storage)?;
        if let Some(access) = &device.storage.access {
            access.value.check("storage.access.value")?;
            flash = flash.under(&access.value, &access.value.runs)?;
        }
        Ok(DeviceCosts {
            offload_tier: device.offload_tier,
            flash,
            link,
            cpu,
            accel: device
                .accelerator
                .as_ref()
                .map(AccelModel::new)
                .transpose()?,
            tee: device.tee.as_ref().map(TeeModel::new).transpose()?,
        })
    }

    pub fn cpu(&self, cluster: usize) -> Result<&CpuModel, CostError> {
        self.cpu.get(cluster).ok_or(CostError::NoSuchCluster {
            cluster,
            clusters: self.cpu.len(),
        })
    }

    pub fn accel(&self) -> Result<&AccelModel, CostError> {
        self.accel.as_ref().ok_or(CostError::NoAccelerator)
    }

    pub fn tee(&self) -> Result<&TeeModel, CostError> {
        self.tee.as_ref().ok_or(CostError::NoTee)
    }

    pub fn link(&self) -> Result<&LinkModel, CostError> {
        self.link.as_ref().ok_or(CostError::NoHostLink)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::testing::{test_device, test_device_host_memory};

    #[test]
    fn fixture_devices_build() {
        let c = DeviceCosts::new(&test_device()).unwrap();
        assert_eq!(c.cpu.len(), 2);
        assert!(c.accel().is_ok() && c.tee().is_ok());
        let c = DeviceCosts::new(&test_device_host_memory()).unwrap();
        assert!(c.link().is_ok());
        assert_eq!(c.tee().unwrap_err(), CostError::NoTee);
    }

    #[test]
    fn missing_units_are_named() {
        let mut d = test_device();
        d.accelerator = None;
        d.tee = None;
        let c = DeviceCosts::new(&d).unwrap();
        assert_eq!(c.accel().unwrap_err(), CostError::NoAccelerator);
        assert_eq!(
            c.cpu(7).unwrap_err(),
            CostError::NoSuchCluster {
                cluster: 7,
                clusters: 2
            }
        );
    }

    #[test]
    fn host_memory_tier_without_link_is_rejected() {
        let mut d = test_device_host_memory();
        d.host_link = None;
        assert_eq!(DeviceCosts::new(&d).unwrap_err(), CostError::NoHostLink);
    }
}
