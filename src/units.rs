//! Units that cross module boundaries: simulated time, byte counts and bandwidths.
//!
//! Simulated time is an integer count of nanoseconds so that a run is exactly reproducible:
//! no float ever enters the clock. Durations derived from a bandwidth are rounded *up* to the
//! next nanosecond, so a non-empty transfer never takes zero time.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Add, AddAssign, Sub};

/// A point in (or span of) simulated time, in nanoseconds.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Nanos(pub u64);

impl Nanos {
    pub const ZERO: Nanos = Nanos(0);
    pub const MAX: Nanos = Nanos(u64::MAX);

    pub fn from_micros(us: u64) -> Nanos {
        Nanos(us * 1_000)
    }

    pub fn from_millis(ms: u64) -> Nanos {
        Nanos(ms * 1_000_000)
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }

    pub fn as_millis_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }

    pub fn saturating_sub(self, other: Nanos) -> Nanos {
        Nanos(self.0.saturating_sub(other.0))
    }
}

impl Add for Nanos {
    type Output = Nanos;
    fn add(self, rhs: Nanos) -> Nanos {
        Nanos(self.0.saturating_add(rhs.0))
    }
}

impl AddAssign for Nanos {
    fn add_assign(&mut self, rhs: Nanos) {
        self.0 = self.0.saturating_add(rhs.0);
    }
}

impl Sub for Nanos {
    type Output = Nanos;
    /// Saturates at zero: a span is never negative.
    fn sub(self, rhs: Nanos) -> Nanos {
        Nanos(self.0.saturating_sub(rhs.0))
    }
}

impl fmt::Display for Nanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0;
        if ns >= 1_000_000_000 {
            write!(f, "{:.3} s", ns as f64 / 1e9)
        } else if ns >= 1_000_000 {
            write!(f, "{:.3} ms", ns as f64 / 1e6)
        } else if ns >= 1_000 {
            write!(f, "{:.3} us", ns as f64 / 1e3)
        } else {
            write!(f, "{ns} ns")
        }
    }
}

/// Time to move `bytes` at `bytes_per_s`, rounded up to whole nanoseconds.
///
/// Returns `Nanos::MAX` for a zero or negative bandwidth; profiles reject those at load time,
/// so reaching it means a bug upstream, and a saturated clock makes that bug visible.
pub fn transfer_time(bytes: u64, bytes_per_s: f64) -> Nanos {
    if bytes == 0 {
        return Nanos::ZERO;
    }
    if bytes_per_s.is_nan() || bytes_per_s <= 0.0 {
        return Nanos::MAX;
    }
    let ns = (bytes as f64) * 1e9 / bytes_per_s;
    Nanos(ns.ceil().min(u64::MAX as f64) as u64)
}

/// Time to perform `work` units at `per_s` units per second, rounded up.
pub fn work_time(work: f64, per_s: f64) -> Nanos {
    if work <= 0.0 {
        return Nanos::ZERO;
    }
    if per_s.is_nan() || per_s <= 0.0 {
        return Nanos::MAX;
    }
    Nanos((work * 1e9 / per_s).ceil().min(u64::MAX as f64) as u64)
}

/// Formats a byte count with a binary unit, for messages meant for people.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * 1024;
pub const GIB: u64 = 1024 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_time_rounds_up() {
        assert_eq!(transfer_time(1, 1e9), Nanos(1));
        assert_eq!(transfer_time(3, 2e9), Nanos(2));
        assert_eq!(transfer_time(4096, 1e9), Nanos(4096));
        assert_eq!(transfer_time(0, 1e9), Nanos::ZERO);
    }

    #[test]
    fn zero_bandwidth_saturates() {
        assert_eq!(transfer_time(1, 0.0), Nanos::MAX);
        assert_eq!(work_time(1.0, -1.0), Nanos::MAX);
    }

    #[test]
    fn nanos_arithmetic_saturates() {
        assert_eq!(Nanos(5) - Nanos(7), Nanos::ZERO);
        assert_eq!(Nanos::MAX + Nanos(1), Nanos::MAX);
    }

    #[test]
    fn human_bytes_uses_binary_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 * MIB / 2), "1.50 MiB");
    }
}
