//! From an op to what it costs: which resource, how many of its servers, for how long.
//!
//! This is the only place where the simulator meets the hardware model. The rules:
//!
//! | op | resource | servers | duration |
//! | --- | --- | --- | --- |
//! | Read, offload tier flash | `flash` | channels the read spreads over | [`FlashModel::read`](crate::hw::cost::FlashModel::read) |
//! | Read, offload tier host memory | `link` | 1 | [`LinkModel::transfer`](crate::hw::cost::LinkModel::transfer) |
//! | Compute on `Cpu { cluster, threads }` | `cpu.<name>` | threads | CPU roofline (with the weight pass over `rows · cols` weights where the profile measures one) |
//! | Compute on `Accel` | `accel` | 1 | accelerator roofline |
//! | Decrypt | `cpu.<name>` of its cluster | threads | bytes / (threads · per-core rate) |
//! | Alloc, secure | `cpu.<name>` of cluster 0 | 1 | bytes / secure alloc rate |
//! | Alloc, normal | none | 0 | zero: caches allocate from a pool; the op is accounting |
//! | WorldSwitch | `tee` | 1 | world switch time |
//! | Evict | none | 0 | zero |

use crate::backend::{ResourceId, ResourceInfo};
use crate::hw::cost::{CostError, DeviceCosts};
use crate::hw::{DeviceProfile, OffloadTier};
use crate::plan::{Op, Unit};
use crate::units::Nanos;

/// What running one op takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpCost {
    /// `None` for ops that occupy nothing (normal Alloc, Evict).
    pub resource: Option<ResourceId>,
    /// Servers of `resource` held at once (0 when there is no resource).
    pub servers: u32,
    /// Delay between the op becoming ready and joining `resource`'s queue (a request's trip
    /// to the device); it holds no server.
    pub latency: Nanos,
    /// Time the op holds its servers.
    pub duration: Nanos,
}

impl OpCost {
    const FREE: OpCost = OpCost {
        resource: None,
        servers: 0,
        latency: Nanos::ZERO,
        duration: Nanos::ZERO,
    };
}

/// Prices ops for one device and names the resources they run on.
#[derive(Clone, Debug)]
pub struct Pricer {
    costs: DeviceCosts,
    resources: Vec<ResourceInfo>,
    /// Where Read ops go: `flash` or `link`, by the offload tier.
    read_resource: ResourceId,
    /// `cpu.<name>` of each cluster, in profile order.
    cpu_resources: Vec<ResourceId>,
    accel_resource: Option<ResourceId>,
    tee_resource: Option<ResourceId>,
}

impl Pricer {
    pub fn new(device: &DeviceProfile) -> Result<Self, CostError> {
        let costs = DeviceCosts::new(device)?;
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
        Ok(Pricer {
            costs,
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

    pub fn costs(&self) -> &DeviceCosts {
        &self.costs
    }

    pub fn price(&self, op: &Op) -> Result<OpCost, CostError> {
        match *op {
            Op::Read {
                bytes,
                request_bytes,
                ..
            } => Ok(match self.costs.offload_tier {
                OffloadTier::Flash => {
                    let read = self.costs.flash.read(bytes, request_bytes as u64);
                    OpCost {
                        resource: Some(self.read_resource),
                        servers: read.channels,
                        latency: read.latency,
                        duration: read.transfer,
                    }
                }
                OffloadTier::HostMemory => {
                    let link = self.costs.link()?;
                    OpCost {
                        resource: Some(self.read_resource),
                        servers: 1,
                        latency: link.latency(),
                        duration: link.occupancy(bytes),
                    }
                }
            }),
            Op::Compute {
                unit,
                precision,
                flops,
                bytes,
                rows,
                cols,
                ..
            } => match unit {
                Unit::Cpu { cluster, threads } => {
                    let cluster = cluster as usize;
                    let threads = threads as u32;
                    let weights = rows as u64 * cols as u64;
                    let duration = self
                        .costs
                        .cpu(cluster)?
                        .compute_weights(threads, precision, flops, bytes, weights)?;
                    Ok(OpCost {
                        latency: Nanos::ZERO,
                        resource: Some(self.cpu_resources[cluster]),
                        servers: threads,
                        duration,
                    })
                }
                Unit::Accel => Ok(OpCost {
                    latency: Nanos::ZERO,
                    duration: self.costs.accel()?.compute(precision, flops, bytes)?,
                    resource: self.accel_resource,
                    servers: 1,
                }),
            },
            Op::Decrypt {
                bytes,
                cluster,
                threads,
                ..
            } => {
                let tee = self.costs.tee()?;
                let cluster = cluster as usize;
                let threads = threads as u32;
                self.costs.cpu(cluster)?.check_threads(threads)?;
                Ok(OpCost {
                    latency: Nanos::ZERO,
                    resource: Some(self.cpu_resources[cluster]),
                    servers: threads,
                    duration: tee.decrypt(bytes, threads),
                })
            }
            Op::Alloc {
                bytes,
                secure: true,
                ..
            } => Ok(OpCost {
                latency: Nanos::ZERO,
                duration: self.costs.tee()?.secure_alloc(bytes),
                resource: Some(self.cpu_resources[0]),
                servers: 1,
            }),
            Op::Alloc { secure: false, .. } | Op::Evict { .. } | Op::Join => Ok(OpCost::FREE),
            Op::WorldSwitch { .. } => Ok(OpCost {
                latency: Nanos::ZERO,
                duration: self.costs.tee()?.world_switch(),
                resource: self.tee_resource,
                servers: 1,
            }),
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

    fn names(p: &Pricer) -> Vec<(&str, u32)> {
        p.resources()
            .iter()
            .map(|r| (r.name.as_str(), r.servers))
            .collect()
    }

    #[test]
    fn resources_follow_the_device() {
        let p = Pricer::new(&test_device()).unwrap();
        assert_eq!(
            names(&p),
            vec![
                ("flash", 8),
                ("cpu.big", 4),
                ("cpu.little", 4),
                ("accel", 1),
                ("tee", 1)
            ]
        );
        let p = Pricer::new(&test_device_host_memory()).unwrap();
        assert_eq!(
            names(&p),
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
        let d = test_device();
        let p = Pricer::new(&d).unwrap();
        let flash = p.costs().flash.read(64 * KIB, 64 * KIB);
        assert_eq!(
            p.price(&read).unwrap(),
            OpCost {
                latency: flash.latency,
                resource: Some(0),
                servers: flash.channels,
                duration: flash.transfer
            }
        );
        let p = Pricer::new(&test_device_host_memory()).unwrap();
        assert_eq!(
            p.price(&read).unwrap(),
            OpCost {
                latency: p.costs().link().unwrap().latency(),
                resource: Some(1),
                servers: 1,
                duration: p.costs().link().unwrap().occupancy(64 * KIB)
            }
        );
    }

    #[test]
    fn compute_decrypt_and_tee_ops_take_the_right_servers() {
        let p = Pricer::new(&test_device()).unwrap();
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
        let c = p.price(&on_little).unwrap();
        assert_eq!((c.resource, c.servers), (Some(2), 3));
        let decrypt = Op::Decrypt {
            tensor: t(),
            bytes: 1 << 20,
            cluster: 0,
            threads: 2,
        };
        let c = p.price(&decrypt).unwrap();
        assert_eq!((c.resource, c.servers), (Some(1), 2));
        assert_eq!(c.duration, p.costs().tee().unwrap().decrypt(1 << 20, 2));
        let secure = Op::Alloc {
            tensor: t(),
            bytes: 1 << 20,
            secure: true,
        };
        let c = p.price(&secure).unwrap();
        assert_eq!((c.resource, c.servers), (Some(1), 1));
        let switch = p.price(&Op::WorldSwitch { to: World::Secure }).unwrap();
        assert_eq!((switch.resource, switch.servers), (Some(4), 1));
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
        ] {
            assert_eq!(p.price(&free).unwrap(), OpCost::FREE);
        }
    }

    #[test]
    fn tee_ops_on_a_device_without_tee_are_unsupported() {
        let p = Pricer::new(&test_device_host_memory()).unwrap();
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
            assert_eq!(p.price(&op).unwrap_err(), CostError::NoTee);
        }
    }

    #[test]
    fn duplicate_cluster_names_are_numbered() {
        let mut d = test_device();
        d.cpu[1].name = "big".into();
        let p = Pricer::new(&d).unwrap();
        assert_eq!(p.resources()[1].name, "cpu.big.0");
        assert_eq!(p.resources()[2].name, "cpu.big.1");
    }
}
