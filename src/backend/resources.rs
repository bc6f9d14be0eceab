//! Which resource an op occupies, and how many of its servers: part of the Backend contract.
//!
//! Both backends schedule ops on the same resources, by the same names and server counts, so
//! that a simulated and a measured timing of one op can be put side by side. The simulator
//! adds durations from the cost model (`sim::Pricer`); the executor performs the ops on
//! threads sized to these servers. Neither imports the other: both use this map.
//!
//! | op | resource | servers |
//! | --- | --- | --- |
//! | Read, offload tier flash | `flash` | all of them in the simulator: the device's transfer link is one ([`FlashModel::channels_for`](crate::hw::cost::FlashModel::channels_for)); the executor spreads a read's requests over up to `storage.channels` I/O threads |
//! | Read, offload tier host memory | `link` | 1 |
//! | Compute on `Cpu { cluster, threads }` | `cpu.<name>` | threads |
//! | Compute on `Accel` | `accel` | 1 |
//! | Decrypt | `cpu.<name>` of its cluster | threads |
//! | Alloc, secure | `cpu.<name>` of cluster 0 | 1 |
//! | Alloc, normal; Evict; Join | none | 0 |
//! | WorldSwitch, NpuHandover | `tee` | 1 |
//!
//! An op the device cannot run (a cluster it lacks, more threads than cores, a precision with
//! no rate, a TEE op without a TEE) is refused here with the cost model's error, so both
//! backends refuse the same plans.

use super::{ResourceId, ResourceInfo};
use crate::hw::cost::{CostError, DeviceCosts};
use crate::hw::OffloadTier;
use crate::plan::{Op, Unit};

/// Where one op runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// `None` for ops that occupy nothing (normal Alloc, Evict, Join).
    pub resource: Option<ResourceId>,
    /// Servers of `resource` held at once (0 when there is no resource).
    pub servers: u32,
}

impl Placement {
    pub const NOWHERE: Placement = Placement {
        resource: None,
        servers: 0,
    };
}

/// The resources of one device and the rule that puts each op on one of them.
#[derive(Clone, Debug)]
pub struct ResourceMap {
    resources: Vec<ResourceInfo>,
    /// Where Read ops go: `flash` or `link`, by the offload tier.
    read_resource: ResourceId,
    /// `cpu.<name>` of each cluster, in profile order.
    cpu_resources: Vec<ResourceId>,
    accel_resource: Option<ResourceId>,
    tee_resource: Option<ResourceId>,
}

impl ResourceMap {
    /// The resources of the device `costs` models: `flash`, `link` (with a host link), one
    /// `cpu.<name>` per cluster, `accel`, `tee`, in that order.
    pub fn new(costs: &DeviceCosts) -> Result<Self, CostError> {
        let mut resources = Vec::new();
        let mut add = |name: String, servers: u32| {
            resources.push(ResourceInfo { name, servers });
            (resources.len() - 1) as ResourceId
        };
        let flash = add("flash".into(), costs.flash.channels());
        let link = costs.link.as_ref().map(|_| add("link".into(), 1));
        let cpu_resources = costs
            .cpu
            .iter()
            .enumerate()
            .map(|(i, c)| {
                // Two clusters with one name would make timings ambiguous: number them.
                let clash = costs.cpu.iter().filter(|o| o.name() == c.name()).count() > 1;
                let name = if clash {
                    format!("{}.{i}", c.name())
                } else {
                    c.name().to_string()
                };
                add(name, c.cores())
            })
            .collect();
        let accel_resource = costs
            .accel
            .as_ref()
            .map(|a| add("accel".into(), a.servers()));
        let tee_resource = costs.tee.as_ref().map(|_| add("tee".into(), 1));
        let read_resource = match costs.offload_tier {
            OffloadTier::Flash => flash,
            OffloadTier::HostMemory => link.ok_or(CostError::NoHostLink)?,
        };
        Ok(ResourceMap {
            resources,
            read_resource,
            cpu_resources,
            accel_resource,
            tee_resource,
        })
    }

    pub fn resources(&self) -> &[ResourceInfo] {
        &self.resources
    }

    /// The resource Read ops occupy (`flash` or `link`).
    pub fn read_resource(&self) -> ResourceId {
        self.read_resource
    }

    /// Where `op` runs on the device `costs` models (the one this map was built from).
    pub fn place(&self, op: &Op, costs: &DeviceCosts) -> Result<Placement, CostError> {
        match *op {
            Op::Read { bytes, .. } => Ok(match costs.offload_tier {
                OffloadTier::Flash => Placement {
                    resource: Some(self.read_resource),
                    servers: costs.flash.channels_for(bytes),
                },
                OffloadTier::HostMemory => {
                    costs.link()?;
                    Placement {
                        resource: Some(self.read_resource),
                        servers: 1,
                    }
                }
            }),
            Op::Compute {
                unit,
                precision,
                kernel,
                ..
            } => match unit {
                Unit::Cpu { cluster, threads } => {
                    let cpu = costs.cpu(cluster as usize)?;
                    cpu.check_threads(threads as u32)?;
                    cpu.kernel_rate(kernel, precision)?;
                    Ok(Placement {
                        resource: Some(self.cpu_resources[cluster as usize]),
                        servers: threads as u32,
                    })
                }
                Unit::Accel => {
                    costs.accel()?.rate(precision)?;
                    Ok(Placement {
                        resource: self.accel_resource,
                        servers: 1,
                    })
                }
            },
            Op::Decrypt {
                cluster, threads, ..
            } => {
                costs.tee()?;
                costs.cpu(cluster as usize)?.check_threads(threads as u32)?;
                Ok(Placement {
                    resource: Some(self.cpu_resources[cluster as usize]),
                    servers: threads as u32,
                })
            }
            Op::Alloc { secure: true, .. } => {
                costs.tee()?;
                Ok(Placement {
                    resource: Some(self.cpu_resources[0]),
                    servers: 1,
                })
            }
            Op::Alloc { secure: false, .. } | Op::Evict { .. } | Op::Join => Ok(Placement::NOWHERE),
            Op::WorldSwitch { .. } | Op::NpuHandover { .. } => {
                costs.tee()?;
                Ok(Placement {
                    resource: self.tee_resource,
                    servers: 1,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::testing::{test_device, test_device_host_memory};
    use crate::model::Precision;
    use crate::plan::{TensorKind, TensorRef, World};
    use crate::units::KIB;

    fn t() -> TensorRef {
        TensorRef::expert(0, 0)
    }

    fn map(d: &crate::hw::DeviceProfile) -> (ResourceMap, DeviceCosts) {
        let costs = DeviceCosts::new(d).unwrap();
        (ResourceMap::new(&costs).unwrap(), costs)
    }

    fn names(m: &ResourceMap) -> Vec<(&str, u32)> {
        m.resources()
            .iter()
            .map(|r| (r.name.as_str(), r.servers))
            .collect()
    }

    #[test]
    fn resources_follow_the_device() {
        let (m, _) = map(&test_device());
        assert_eq!(
            names(&m),
            vec![
                ("flash", 8),
                ("cpu.big", 4),
                ("cpu.little", 4),
                ("accel", 1),
                ("tee", 1)
            ]
        );
        let (m, _) = map(&test_device_host_memory());
        assert_eq!(
            names(&m),
            vec![("flash", 8), ("link", 1), ("cpu.all", 8), ("accel", 1)]
        );
    }

    #[test]
    fn reads_go_to_flash_or_link_by_offload_tier() {
        let read = Op::Read {
            tensor: t(),
            precision: Precision::Int4,
            bytes: 64 * KIB,
            request_bytes: 64 * KIB as u32,
        };
        let (m, costs) = map(&test_device());
        assert_eq!(
            m.place(&read, &costs).unwrap(),
            Placement {
                resource: Some(0),
                servers: costs.flash.channels_for(64 * KIB)
            }
        );
        let (m, costs) = map(&test_device_host_memory());
        assert_eq!(
            m.place(&read, &costs).unwrap(),
            Placement {
                resource: Some(1),
                servers: 1
            }
        );
    }

    #[test]
    fn compute_decrypt_and_tee_ops_take_the_right_servers() {
        let (m, costs) = map(&test_device());
        let place = |op: &Op| {
            let p = m.place(op, &costs).unwrap();
            (p.resource, p.servers)
        };
        let on_little = Op::matmul(
            t(),
            Unit::Cpu {
                cluster: 1,
                threads: 3,
            },
            Precision::Int4,
            4096,
            1024,
            1,
        );
        assert_eq!(place(&on_little), (Some(2), 3));
        let decrypt = Op::Decrypt {
            tensor: t(),
            bytes: 1 << 20,
            cluster: 0,
            threads: 2,
        };
        assert_eq!(place(&decrypt), (Some(1), 2));
        let secure = Op::Alloc {
            tensor: t(),
            bytes: 1 << 20,
            secure: true,
        };
        assert_eq!(place(&secure), (Some(1), 1));
        assert_eq!(place(&Op::WorldSwitch { to: World::Secure }), (Some(4), 1));
        for free in [
            Op::Alloc {
                tensor: t(),
                bytes: 1 << 30,
                secure: false,
            },
            Op::Evict {
                tensor: TensorRef::new(3, TensorKind::Attention),
                bytes: 1 << 30,
                secure: true,
            },
            Op::Join,
        ] {
            assert_eq!(m.place(&free, &costs).unwrap(), Placement::NOWHERE);
        }
    }

    #[test]
    fn ops_the_device_cannot_run_are_refused() {
        let (m, costs) = map(&test_device_host_memory());
        for op in [
            Op::WorldSwitch { to: World::Normal },
            Op::Decrypt {
                tensor: t(),
                bytes: 1,
                cluster: 0,
                threads: 1,
            },
            Op::Alloc {
                tensor: t(),
                bytes: 1,
                secure: true,
            },
        ] {
            assert_eq!(m.place(&op, &costs).unwrap_err(), CostError::NoTee);
        }
        let too_many = Op::matmul(
            t(),
            Unit::Cpu {
                cluster: 0,
                threads: 9,
            },
            Precision::Int4,
            64,
            64,
            1,
        );
        assert!(matches!(
            m.place(&too_many, &costs).unwrap_err(),
            CostError::TooManyThreads { .. }
        ));
    }

    #[test]
    fn duplicate_cluster_names_are_numbered() {
        let mut d = test_device();
        d.cpu[1].name = "big".into();
        let (m, _) = map(&d);
        assert_eq!(m.resources()[1].name, "cpu.big.0");
        assert_eq!(m.resources()[2].name, "cpu.big.1");
    }
}
