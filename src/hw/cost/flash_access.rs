//! How the conditions of small random reads change a flash's rate: the span of the file they
//! land in, which CPU core class issues them, and how many cores issue at once.
//!
//! PowerInfer-2 (arXiv 2406.06282 v3 §2.3, Table 1) measured all three on the OnePlus 12's
//! UFS 4.0: 4 KB random reads reach 1 GB/s within a 128 MB range and below 850 MB/s within
//! 512 MB; issued from the big core 1,076.10 MB/s, a mid core 1,007.95, a little core 761.87;
//! and issuing from several cores "can degrade performance by up to 40%" (one command queue).
//! A profile's `read_curve` is measured under one set of conditions (its `reference`); a
//! [`FlashAccess`] gives the rate of the curve's smallest request under others, and
//! [`FlashModel::under`](super::FlashModel::under) scales the model's command stage by
//! [`FlashAccess::factor`], so:
//!
//! - the smallest request's rate becomes `curve(s₀) · factor` (it is command-bound: its
//!   transfer and its command take the same time, `s₀ / curve(s₀)`);
//! - large reads, bound by the link, are unchanged (Table 1 and the range figures are 4 KB
//!   random reads; the paper gives no such effect for 512 KB reads).
//!
//! `factor = range(range_bytes) / range(reference) · issuer(class) / issuer(reference) ·
//! (1 − multi_issuer_loss if more than one core issues)`. Rates by range are interpolated in
//! log2(range) and clamped at the ends. The loss with several issuers is applied whole from
//! two issuers on: the paper gives only its bound ("up to"), so this is the pessimistic end.

use super::{check_positive, CostError};
use serde::{Deserialize, Serialize};

/// The small-random-read rate of one access range.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeRate {
    pub range_bytes: u64,
    pub bytes_per_s: f64,
}

/// The small-random-read rate when one core of a class issues.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerRate {
    /// A CPU cluster name of the profile (`big`, `mid`, `little`).
    pub cluster: String,
    pub bytes_per_s: f64,
}

/// Who issues a run's reads and over what span of the file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueConditions {
    /// The CPU cluster whose cores issue the reads.
    pub cluster: String,
    /// How many cores issue at once (1: one I/O thread, as PowerInfer-2 runs).
    pub cores: u32,
    /// Span of the file the random reads fall in.
    pub range_bytes: u64,
}

/// The measured rates (see the module docs); every list in a profile cites its source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlashAccess {
    /// The conditions `read_curve` was measured under.
    pub reference: IssueConditions,
    /// The conditions the device's runs read under (the simulator prices every read so).
    pub runs: IssueConditions,
    /// Rates by access range, increasing range (at least one).
    pub by_range: Vec<RangeRate>,
    /// Rates by issuing core class (at least the reference's and the runs' clusters).
    pub by_issuer: Vec<IssuerRate>,
    /// Throughput lost when several cores issue (0.4 for "up to 40%").
    pub multi_issuer_loss: f64,
}

impl FlashAccess {
    /// Checks the lists, naming the field (`at` is the section's path, e.g.
    /// `storage.access.value`).
    pub fn check(&self, at: &str) -> Result<(), CostError> {
        let bad = |field: String, problem: &str| CostError::BadProfile {
            field,
            problem: problem.to_string(),
        };
        if self.by_range.is_empty() {
            return Err(bad(format!("{at}.by_range"), "needs at least one point"));
        }
        for (i, p) in self.by_range.iter().enumerate() {
            check_positive(&format!("{at}.by_range[{i}].bytes_per_s"), p.bytes_per_s)?;
            if p.range_bytes == 0 || (i > 0 && p.range_bytes <= self.by_range[i - 1].range_bytes) {
                return Err(bad(
                    format!("{at}.by_range[{i}].range_bytes"),
                    "ranges must be positive and increase along the list",
                ));
            }
        }
        for (i, p) in self.by_issuer.iter().enumerate() {
            check_positive(&format!("{at}.by_issuer[{i}].bytes_per_s"), p.bytes_per_s)?;
        }
        if !(0.0..1.0).contains(&self.multi_issuer_loss) {
            return Err(bad(format!("{at}.multi_issuer_loss"), "must be in [0, 1)"));
        }
        for (name, c) in [("reference", &self.reference), ("runs", &self.runs)] {
            if c.cores == 0 || c.range_bytes == 0 {
                return Err(bad(
                    format!("{at}.{name}"),
                    "cores and range_bytes must be at least 1",
                ));
            }
            self.issuer_rate(&c.cluster).ok_or_else(|| {
                bad(
                    format!("{at}.{name}.cluster"),
                    &format!("`{}` has no rate in by_issuer", c.cluster),
                )
            })?;
        }
        Ok(())
    }

    fn issuer_rate(&self, cluster: &str) -> Option<f64> {
        self.by_issuer
            .iter()
            .find(|r| r.cluster == cluster)
            .map(|r| r.bytes_per_s)
    }

    /// The small-random-read rate within `range_bytes` (log2 interpolation, clamped).
    pub fn range_rate(&self, range_bytes: u64) -> f64 {
        let pts = &self.by_range;
        let (first, last) = (pts[0], pts[pts.len() - 1]);
        if range_bytes <= first.range_bytes {
            return first.bytes_per_s;
        }
        if range_bytes >= last.range_bytes {
            return last.bytes_per_s;
        }
        let hi = pts.partition_point(|p| p.range_bytes < range_bytes);
        let (a, b) = (pts[hi - 1], pts[hi]);
        let (xa, xb) = ((a.range_bytes as f64).log2(), (b.range_bytes as f64).log2());
        let x = (range_bytes as f64).log2();
        a.bytes_per_s + (b.bytes_per_s - a.bytes_per_s) * (x - xa) / (xb - xa)
    }

    /// The factor on the small-read rate under `c` relative to the reference conditions.
    pub fn factor(&self, c: &IssueConditions) -> Result<f64, CostError> {
        let issuer = |cluster: &str| {
            self.issuer_rate(cluster)
                .ok_or_else(|| CostError::BadProfile {
                    field: "storage.access.by_issuer".into(),
                    problem: format!("no rate for the cluster `{cluster}`"),
                })
        };
        let several = |cores: u32| {
            if cores > 1 {
                1.0 - self.multi_issuer_loss
            } else {
                1.0
            }
        };
        let r = &self.reference;
        Ok(
            self.range_rate(c.range_bytes) / self.range_rate(r.range_bytes) * issuer(&c.cluster)?
                / issuer(&r.cluster)?
                * several(c.cores)
                / several(r.cores),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::MIB;

    /// PowerInfer-2 §2.3 and Table 1 as the OnePlus 12 profile states them.
    fn oneplus() -> FlashAccess {
        let conditions = |cluster: &str, cores, range| IssueConditions {
            cluster: cluster.into(),
            cores,
            range_bytes: range,
        };
        FlashAccess {
            reference: conditions("big", 1, 128 * MIB),
            runs: conditions("big", 1, 128 * MIB),
            by_range: vec![
                RangeRate {
                    range_bytes: 128 * MIB,
                    bytes_per_s: 1.0e9,
                },
                RangeRate {
                    range_bytes: 512 * MIB,
                    bytes_per_s: 0.85e9,
                },
            ],
            by_issuer: ["big", "mid", "little"]
                .iter()
                .zip([1076.10e6, 1007.95e6, 761.87e6])
                .map(|(c, r)| IssuerRate {
                    cluster: c.to_string(),
                    bytes_per_s: r,
                })
                .collect(),
            multi_issuer_loss: 0.4,
        }
    }

    fn at(cluster: &str, cores: u32, range: u64) -> IssueConditions {
        IssueConditions {
            cluster: cluster.into(),
            cores,
            range_bytes: range,
        }
    }

    #[test]
    fn factors_follow_table_1_and_the_range_figures() {
        let a = oneplus();
        a.check("storage.access.value").unwrap();
        let f = |c: &str, n, r| a.factor(&at(c, n, r)).unwrap();
        assert_eq!(f("big", 1, 128 * MIB), 1.0);
        assert!((f("mid", 1, 128 * MIB) - 1007.95 / 1076.10).abs() < 1e-12);
        assert!((f("little", 1, 128 * MIB) - 761.87 / 1076.10).abs() < 1e-12);
        assert!((f("big", 1, 512 * MIB) - 0.85).abs() < 1e-12);
        // Between the two ranges, halfway in log2: 256 MB.
        assert!((f("big", 1, 256 * MIB) - 0.925).abs() < 1e-12);
        // Clamped outside the measured ranges.
        assert_eq!(f("big", 1, 16 * MIB), 1.0);
        assert!((f("big", 1, 4096 * MIB) - 0.85).abs() < 1e-12);
        // Several issuing cores: the paper's bound, 40 % lost.
        assert!((f("big", 4, 128 * MIB) - 0.6).abs() < 1e-12);
        assert!((f("little", 2, 512 * MIB) - 761.87 / 1076.10 * 0.85 * 0.6).abs() < 1e-12);
    }

    #[test]
    fn bad_lists_are_refused_naming_the_field() {
        let mut a = oneplus();
        a.by_range[1].range_bytes = MIB;
        let e = a.check("storage.access.value").unwrap_err().to_string();
        assert!(e.contains("by_range[1].range_bytes"), "{e}");
        let mut a = oneplus();
        a.runs.cluster = "prime".into();
        let e = a.check("storage.access.value").unwrap_err().to_string();
        assert!(e.contains("runs.cluster") && e.contains("prime"), "{e}");
        let mut a = oneplus();
        a.multi_issuer_loss = 1.0;
        assert!(a.check("x").is_err());
    }
}
