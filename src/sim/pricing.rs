//! From an op to what it costs: which resource, how many of its servers, for how long.
//!
//! This is the only place where the simulator meets the hardware model. Which resource an op
//! occupies and how many servers it holds is the Backend contract's
//! [`ResourceMap`](crate::backend::resources::ResourceMap), shared with the executor; this
//! adds the durations:
//!
//! | op | duration |
//! | --- | --- |
//! | Read, offload tier flash | [`FlashModel::read`](crate::hw::cost::FlashModel::read) (its request latency before the queue) |
//! | Read, offload tier host memory | [`LinkModel::transfer`](crate::hw::cost::LinkModel::transfer) |
//! | Compute on `Cpu { cluster, threads }` | CPU roofline at its kernel's rate (with the LUT kernels' weight pass over `rows · cols` weights where the profile measures one; see [`Kernel`](crate::hw::cost::Kernel)) |
//! | Compute on `Accel` | accelerator roofline |
//! | Decrypt | bytes / (threads · per-core rate) |
//! | Alloc, secure | bytes / secure alloc rate |
//! | Alloc, normal | zero: caches allocate from a pool; the op is accounting |
//! | WorldSwitch | world switch time |
//! | NpuHandover | the NPU's full detach and re-attach (`tee.npu_reinit_ns`) |
//! | Evict, Join | zero |

use crate::backend::resources::{Placement, ResourceMap};
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
    #[cfg(test)]
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
    map: ResourceMap,
}

impl Pricer {
    pub fn new(device: &DeviceProfile) -> Result<Self, CostError> {
        let costs = DeviceCosts::new(device)?;
        let map = ResourceMap::new(&costs)?;
        Ok(Pricer { costs, map })
    }

    pub fn resources(&self) -> &[ResourceInfo] {
        self.map.resources()
    }

    pub fn costs(&self) -> &DeviceCosts {
        &self.costs
    }

    pub fn price(&self, op: &Op) -> Result<OpCost, CostError> {
        let Placement { resource, servers } = self.map.place(op, &self.costs)?;
        let (latency, duration) = match *op {
            Op::Read {
                bytes,
                request_bytes,
                ..
            } => match self.costs.offload_tier {
                OffloadTier::Flash => {
                    let read = self.costs.flash.read(bytes, request_bytes as u64);
                    (read.latency, read.transfer)
                }
                OffloadTier::HostMemory => {
                    let link = self.costs.link()?;
                    (link.latency(), link.occupancy(bytes))
                }
            },
            Op::Compute {
                unit,
                precision,
                flops,
                bytes,
                rows,
                cols,
                kernel,
                ..
            } => match unit {
                Unit::Cpu { cluster, threads } => {
                    let weights = rows as u64 * cols as u64;
                    let duration = self.costs.cpu(cluster as usize)?.compute_kernel(
                        kernel,
                        threads as u32,
                        precision,
                        flops,
                        bytes,
                        weights,
                    )?;
                    (Nanos::ZERO, duration)
                }
                Unit::Accel => (
                    Nanos::ZERO,
                    self.costs.accel()?.compute(precision, flops, bytes)?,
                ),
            },
            Op::Decrypt { bytes, threads, .. } => (
                Nanos::ZERO,
                self.costs.tee()?.decrypt(bytes, threads as u32),
            ),
            Op::Alloc {
                bytes,
                secure: true,
                ..
            } => (Nanos::ZERO, self.costs.tee()?.secure_alloc(bytes)),
            Op::Alloc { secure: false, .. } | Op::Evict { .. } | Op::Join => {
                (Nanos::ZERO, Nanos::ZERO)
            }
            Op::WorldSwitch { .. } => (Nanos::ZERO, self.costs.tee()?.world_switch()),
            Op::NpuHandover { .. } => (Nanos::ZERO, self.costs.tee()?.npu_handover()),
        };
        Ok(OpCost {
            resource,
            servers,
            latency,
            duration,
        })
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
}
