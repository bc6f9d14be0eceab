//! The OnePlus 12's flash under PowerInfer-2's measured access conditions (arXiv 2406.06282 v3
//! §2.3, Table 1): the simulator's 4 KiB random-read rate follows the issuing core class, the
//! access range and the number of issuing cores; large reads, bound by the link, do not.

use edgesim::hw::cost::DeviceCosts;
use edgesim::hw::DeviceProfile;
use edgesim::scenario::load_device;
use edgesim::units::{KIB, MIB};

fn phone_under(cluster: &str, cores: u32, range_bytes: u64) -> DeviceProfile {
    let mut d = load_device("oneplus-12").unwrap();
    let access = d
        .storage
        .access
        .as_mut()
        .expect("the profile states its access rates");
    access.value.runs.cluster = cluster.into();
    access.value.runs.cores = cores;
    access.value.runs.range_bytes = range_bytes;
    d.check().unwrap();
    d
}

/// Bytes per second of `n` back-to-back reads of `size` bytes in requests of `size` (the
/// link's hold time per read: what a full queue sustains).
fn rate(d: &DeviceProfile, size: u64) -> f64 {
    let f = DeviceCosts::new(d).unwrap().flash;
    let read = f.read(size, size);
    size as f64 / (read.transfer.0 as f64 * 1e-9)
}

fn within(x: f64, target: f64, rel: f64) -> bool {
    (x - target).abs() <= rel * target
}

#[test]
fn the_bundled_runs_read_at_the_curve_unchanged() {
    let d = load_device("oneplus-12").unwrap();
    let mut plain = d.clone();
    plain.storage.access = None;
    assert_eq!(
        DeviceCosts::new(&d).unwrap().flash,
        DeviceCosts::new(&plain).unwrap().flash,
        "the runs' conditions are the curve's own: bundled results do not move"
    );
    assert!(within(rate(&d, 4 * KIB), 1.0e9, 0.001));
}

#[test]
fn four_kib_random_reads_follow_table_1_by_issuing_core() {
    // Table 1, 128 MB range: big 1,076.10, mid 1,007.95, little 761.87 MB/s. The curve's
    // 1 GB/s is the big core's (the profile's reference), so each class gets curve x its ratio.
    for (cluster, mb_s) in [("big", 1076.10), ("mid", 1007.95), ("little", 761.87)] {
        let got = rate(&phone_under(cluster, 1, 128 * MIB), 4 * KIB);
        let want = 1.0e9 * mb_s / 1076.10;
        assert!(within(got, want, 0.001), "{cluster}: {got} vs {want}");
    }
    let little = rate(&phone_under("little", 1, 128 * MIB), 4 * KIB);
    let big = rate(&phone_under("big", 1, 128 * MIB), 4 * KIB);
    assert!(within(little / big, 761.87 / 1076.10, 0.001));
}

#[test]
fn a_wider_range_and_several_issuers_slow_small_reads() {
    // 512 MB range: below 850 MB/s (the bound).
    let wide = rate(&phone_under("big", 1, 512 * MIB), 4 * KIB);
    assert!(within(wide, 0.85e9, 0.001), "{wide}");
    // Several issuing cores: up to 40 % lost (the bound, applied whole).
    let four = rate(&phone_under("big", 4, 128 * MIB), 4 * KIB);
    assert!(within(four, 0.6e9, 0.001), "{four}");
}

#[test]
fn large_reads_are_bound_by_the_link_and_do_not_change() {
    let base = rate(&phone_under("big", 1, 128 * MIB), 512 * KIB);
    for d in [
        phone_under("little", 1, 128 * MIB),
        phone_under("big", 4, 512 * MIB),
    ] {
        assert_eq!(rate(&d, 512 * KIB), base);
    }
    assert!(within(base, 4.0e9, 0.001));
}

#[test]
fn a_rate_for_a_cluster_the_device_lacks_is_refused() {
    let mut d = load_device("oneplus-12").unwrap();
    d.storage.access.as_mut().unwrap().value.by_issuer[0].cluster = "prime".into();
    let errs = d.check().unwrap_err().join("; ");
    assert!(
        errs.contains("by_issuer[0].cluster") && errs.contains("prime"),
        "{errs}"
    );
}
