//! Flash reads: request latency, parallel channels and a bandwidth-vs-request-size curve.
//!
//! # Model
//!
//! NVMe and UFS devices serve requests in parallel: NVMe across queues and flash channels,
//! UFS across its command-queue slots and dies. A datasheet or paper curve (request size →
//! MB/s) is measured with all of them busy, so it is the *aggregate* bandwidth of `C`
//! parallel servers ("channels") at that request size. edgesim keeps that structure:
//!
//! - The curve is interpolated linearly in log2(request size) between its points and clamped
//!   at its ends, so a 64 KiB request between the 32 KiB and 128 KiB points gets the midpoint.
//! - A read op of `B` bytes issued as requests of `r` bytes uses the effective request size
//!   `r_eff = min(r, B)` (a 4 KiB read issued "as 1 MiB requests" is still a 4 KiB request).
//! - The device stripes a read over its channels at its smallest request granularity, taken
//!   to be the smallest request size on the curve, `s`. The op occupies
//!   `k = min(C, ceil(B / s))` channel servers at once for its whole duration.
//! - Latency: a read reaches the device `L` (`request_latency_ns`, idle device, first byte)
//!   after it is issued, and only then joins the channel queue; the channels are held for the
//!   transfer alone, `B · C / (k · curve(r_eff))`, rounded up to whole nanoseconds.
//! - A read smaller than `s` moves `s` bytes: block devices transfer whole blocks (and the
//!   executor's direct I/O whole 4 KiB pages), so a 1.8 KB neuron bundle costs what a 4 KiB
//!   read costs. Neuron-level policies issue such reads, and so do warm-ups of tiny tensors
//!   (a scaled model's routers). Larger reads are not rounded: above `s` the curve's
//!   interpolation stands for the device's transfer granularity.
//!
//! Consequences, each tested below: an unloaded read takes exactly `L + transfer`; a big read
//! alone gets the curve's full bandwidth at its request size; a single small request gets
//! `1/C` of it (one channel); several small reads in flight together share the channels, so
//! `C` of them together reach the curve again — with latency too, because a queued request's
//! latency overlaps the transfers ahead of it, as it does in a device with a deep queue (the
//! curve itself is measured at full queue depth, latency included).

use super::{check_positive, CostError};
use crate::hw::StorageSpec;
use crate::units::{transfer_time, Nanos};

/// Flash priced from a [`StorageSpec`]; see the module docs for the model.
#[derive(Clone, Debug, PartialEq)]
pub struct FlashModel {
    channels: u32,
    request_latency_ns: u64,
    /// `(log2(request_bytes), request_bytes, bytes_per_s)` in increasing request size.
    curve: Vec<(f64, u64, f64)>,
}

/// What one read costs: the delay before it reaches the device, then the channels it holds
/// and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlashRead {
    pub channels: u32,
    pub latency: Nanos,
    pub transfer: Nanos,
}

impl FlashRead {
    /// Time from issue to completion on an idle device.
    pub fn unloaded(&self) -> Nanos {
        self.latency + self.transfer
    }
}

impl FlashModel {
    pub fn new(spec: &StorageSpec) -> Result<Self, CostError> {
        let channels = spec.channels.value;
        if channels == 0 {
            return Err(CostError::BadProfile {
                field: "storage.channels".into(),
                problem: "must be at least 1".into(),
            });
        }
        let points = &spec.read_curve.value;
        if points.is_empty() {
            return Err(CostError::BadProfile {
                field: "storage.read_curve".into(),
                problem: "needs at least one point".into(),
            });
        }
        let mut curve = Vec::with_capacity(points.len());
        for (i, p) in points.iter().enumerate() {
            check_positive(
                &format!("storage.read_curve[{i}].bytes_per_s"),
                p.bytes_per_s,
            )?;
            if p.request_bytes == 0 {
                return Err(CostError::BadProfile {
                    field: format!("storage.read_curve[{i}].request_bytes"),
                    problem: "must be at least 1".into(),
                });
            }
            if i > 0 && p.request_bytes <= points[i - 1].request_bytes {
                return Err(CostError::BadProfile {
                    field: format!("storage.read_curve[{i}].request_bytes"),
                    problem: "request sizes must increase along the curve".into(),
                });
            }
            curve.push((
                (p.request_bytes as f64).log2(),
                p.request_bytes,
                p.bytes_per_s,
            ));
        }
        Ok(FlashModel {
            channels,
            request_latency_ns: spec.request_latency_ns.value,
            curve,
        })
    }

    pub fn channels(&self) -> u32 {
        self.channels
    }

    pub fn request_latency(&self) -> Nanos {
        Nanos(self.request_latency_ns)
    }

    /// The smallest request size on the curve: the granularity reads are striped at.
    pub fn smallest_request_bytes(&self) -> u64 {
        self.curve[0].1
    }

    /// Aggregate bandwidth (all channels busy) at `request_bytes`, interpolated linearly in
    /// log2(request size) and clamped to the curve's ends.
    pub fn curve_bytes_per_s(&self, request_bytes: u64) -> f64 {
        let first = self.curve[0];
        let last = self.curve[self.curve.len() - 1];
        if request_bytes <= first.1 {
            return first.2;
        }
        if request_bytes >= last.1 {
            return last.2;
        }
        // Strictly inside the curve, so there is a segment [lo, hi] containing the size.
        let x = (request_bytes as f64).log2();
        let hi = self.curve.partition_point(|p| p.1 < request_bytes);
        let (x0, _, y0) = self.curve[hi - 1];
        let (x1, _, y1) = self.curve[hi];
        y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    }

    /// Channels a read of `bytes` spreads over: one per smallest-curve-size stripe, at most
    /// all of them, at least one.
    pub fn channels_for(&self, bytes: u64) -> u32 {
        let stripes = bytes.div_ceil(self.smallest_request_bytes()).max(1);
        stripes.min(self.channels as u64) as u32
    }

    /// Cost of reading `bytes` issued as requests of `request_bytes`.
    pub fn read(&self, bytes: u64, request_bytes: u64) -> FlashRead {
        let effective_request_bytes = request_bytes.min(bytes);
        let k = self.channels_for(bytes);
        let share = k as f64 / self.channels as f64;
        let bandwidth = self.curve_bytes_per_s(effective_request_bytes) * share;
        let moved = match bytes {
            0 => 0,
            b => b.max(self.smallest_request_bytes()),
        };
        FlashRead {
            channels: k,
            latency: Nanos(self.request_latency_ns),
            transfer: transfer_time(moved, bandwidth),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::CurvePoint;
    use crate::sourced::Sourced;
    use crate::units::{KIB, MIB};

    fn spec(channels: u32, latency_ns: u64, points: &[(u64, f64)]) -> StorageSpec {
        StorageSpec {
            kind: "test".into(),
            channels: Sourced::new(channels, "test"),
            request_latency_ns: Sourced::new(latency_ns, "test"),
            read_curve: Sourced::new(
                points
                    .iter()
                    .map(|&(request_bytes, bytes_per_s)| CurvePoint {
                        request_bytes,
                        bytes_per_s,
                    })
                    .collect(),
                "test",
            ),
        }
    }

    /// 8 channels, 50 us, 1 GB/s at 4 KiB rising to 4 GB/s at 512 KiB.
    fn ufs_like() -> FlashModel {
        FlashModel::new(&spec(8, 50_000, &[(4 * KIB, 1e9), (512 * KIB, 4e9)])).unwrap()
    }

    #[test]
    fn curve_is_exact_at_its_points_and_clamped_outside() {
        let f = ufs_like();
        assert_eq!(f.curve_bytes_per_s(4 * KIB), 1e9);
        assert_eq!(f.curve_bytes_per_s(512 * KIB), 4e9);
        assert_eq!(f.curve_bytes_per_s(1), 1e9);
        assert_eq!(f.curve_bytes_per_s(0), 1e9);
        assert_eq!(f.curve_bytes_per_s(64 * MIB), 4e9);
    }

    #[test]
    fn curve_interpolates_in_log2_of_request_size() {
        // 4 KiB = 2^12, 512 KiB = 2^19: 64 KiB = 2^16 is 4/7 of the way in log2.
        let f = ufs_like();
        let expected = 1e9 + 3e9 * 4.0 / 7.0;
        assert!((f.curve_bytes_per_s(64 * KIB) - expected).abs() < 1e-3);
        // Three points: the segment is chosen by the size.
        let f3 = FlashModel::new(&spec(
            4,
            0,
            &[(4 * KIB, 1e9), (16 * KIB, 2e9), (64 * KIB, 6e9)],
        ))
        .unwrap();
        assert!((f3.curve_bytes_per_s(8 * KIB) - 1.5e9).abs() < 1e-3);
        assert!((f3.curve_bytes_per_s(32 * KIB) - 4e9).abs() < 1e-3);
    }

    #[test]
    fn big_read_alone_gets_the_full_curve_bandwidth() {
        let f = ufs_like();
        let bytes = 64 * MIB;
        let r = f.read(bytes, 512 * KIB);
        assert_eq!(r.channels, 8);
        // L + B / 4 GB/s, rounded up.
        let transfer_ns = (bytes as f64 * 1e9 / 4e9).ceil() as u64;
        assert_eq!(r.unloaded(), Nanos(50_000 + transfer_ns));
    }

    #[test]
    fn single_small_request_gets_one_channel() {
        let f = ufs_like();
        let r = f.read(4 * KIB, 4 * KIB);
        assert_eq!(r.channels, 1);
        // One of 8 channels: 4096 B at 1e9 / 8 B/s = 32768 ns.
        assert_eq!(r.unloaded(), Nanos(50_000 + 32_768));
    }

    #[test]
    fn a_read_below_the_smallest_request_moves_a_whole_one() {
        let m = ufs_like();
        let s = m.smallest_request_bytes();
        assert_eq!(m.read(s / 3, s / 3), m.read(s, s));
        assert_eq!(m.read(1, 1), m.read(s, s));
    }

    #[test]
    fn request_size_is_capped_by_the_read_size() {
        // A 4 KiB read "issued as 512 KiB requests" is priced as a 4 KiB request.
        let f = ufs_like();
        assert_eq!(f.read(4 * KIB, 512 * KIB), f.read(4 * KIB, 4 * KIB));
    }

    #[test]
    fn read_spreads_over_one_channel_per_smallest_stripe() {
        let f = ufs_like();
        assert_eq!(f.channels_for(1), 1);
        assert_eq!(f.channels_for(4 * KIB), 1);
        assert_eq!(f.channels_for(4 * KIB + 1), 2);
        assert_eq!(f.channels_for(12 * KIB), 3);
        assert_eq!(f.channels_for(32 * KIB), 8);
        assert_eq!(f.channels_for(u64::MAX), 8);
        // An empty read still issues one request and pays its latency.
        assert_eq!(f.channels_for(0), 1);
        assert_eq!(f.read(0, 4 * KIB).unloaded(), Nanos(50_000));
    }

    #[test]
    fn concurrent_small_reads_together_reach_the_curve() {
        // Without latency, C one-channel reads side by side move C·B bytes in one duration:
        // exactly the curve's bandwidth.
        let f = FlashModel::new(&spec(8, 0, &[(4 * KIB, 1e9), (512 * KIB, 4e9)])).unwrap();
        let r = f.read(4 * KIB, 4 * KIB);
        let aggregate = 8.0 * 4096.0 / (r.unloaded().0 as f64 * 1e-9);
        assert!((aggregate - 1e9).abs() / 1e9 < 1e-9, "{aggregate}");
    }

    #[test]
    fn bad_curves_are_rejected_naming_the_field() {
        let err = FlashModel::new(&spec(8, 0, &[])).unwrap_err();
        assert!(err.to_string().contains("storage.read_curve"), "{err}");
        let err = FlashModel::new(&spec(8, 0, &[(8192, 1e9), (4096, 2e9)])).unwrap_err();
        assert!(
            err.to_string().contains("read_curve[1].request_bytes"),
            "{err}"
        );
        let err = FlashModel::new(&spec(8, 0, &[(4096, 0.0)])).unwrap_err();
        assert!(
            err.to_string().contains("read_curve[0].bytes_per_s"),
            "{err}"
        );
        let err = FlashModel::new(&spec(0, 0, &[(4096, 1e9)])).unwrap_err();
        assert!(err.to_string().contains("storage.channels"), "{err}");
    }
}
