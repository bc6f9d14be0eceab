//! DRAM bandwidth shared by the CPU, the NPU and I/O on the OnePlus 12 (PowerInfer-2, arXiv
//! 2406.06282 v3 §2.3: CPU alone 43.9 GB/s, NPU alone 56, both 59.6), against the formula of
//! `hw::cost::SharedDram`: each unit capped at its solo figure, then every stream scaled by
//! `cap / Σ demand` when together they ask for more than the memory delivers.

use edgesim::hw::cost::{SharedDram, Stream};
use edgesim::scenario::load_device;
use edgesim::units::transfer_time;

fn phone() -> SharedDram {
    SharedDram::from_profile(&load_device("oneplus-12").unwrap())
        .unwrap()
        .expect("the profile states all three figures")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[test]
fn the_profile_carries_the_three_measured_figures() {
    let m = phone();
    assert_eq!(
        (m.cpu_alone, m.accel_alone, m.together),
        (43.9e9, 56e9, 59.6e9)
    );
}

#[test]
fn cpu_and_npu_together_share_59_6_gb_s_in_proportion_to_their_demand() {
    let m = phone();
    let got = m.share(&[(Stream::Cpu, 43.9e9), (Stream::Accel, 56e9)]);
    // Formula: demands 43.9 + 56 = 99.9 GB/s > 59.6, so each is scaled by 59.6 / 99.9.
    let s = 59.6 / 99.9;
    assert!(
        close(got[0], 43.9e9 * s) && close(got[1], 56e9 * s),
        "{got:?}"
    );
    assert!(close(got[0] + got[1], 59.6e9));
    // 26.19 and 33.41 GB/s: each side slower than alone, together more than either alone.
    assert!(got[0] < 43.9e9 && got[1] < 56e9 && got[0] + got[1] > 56e9);
}

#[test]
fn a_memory_bound_op_takes_longer_while_the_other_side_streams() {
    let m = phone();
    let bytes = 1u64 << 30;
    let alone = transfer_time(bytes, m.share(&[(Stream::Cpu, 43.9e9)])[0]);
    let shared = transfer_time(
        bytes,
        m.share(&[(Stream::Cpu, 43.9e9), (Stream::Accel, 56e9)])[0],
    );
    // 1 GiB: 24.46 ms alone, 24.46 × 99.9 / 59.6 = 41.0 ms beside the NPU.
    let ratio = shared.0 as f64 / alone.0 as f64;
    assert!((ratio - 99.9 / 59.6).abs() < 1e-6, "{ratio}");
}

#[test]
fn demands_that_fit_are_served_whole_and_io_counts_against_the_cap() {
    let m = phone();
    // 20 + 30 + 4 GB/s = 54 < 59.6: everyone gets what it asks.
    let got = m.share(&[
        (Stream::Cpu, 20e9),
        (Stream::Accel, 30e9),
        (Stream::Io, 4e9),
    ]);
    assert_eq!(got, vec![20e9, 30e9, 4e9]);
    // CPU at its solo maximum, NPU at its, and 4 GB/s of flash DMA: 103.9 > 59.6.
    let got = m.share(&[
        (Stream::Cpu, 43.9e9),
        (Stream::Accel, 56e9),
        (Stream::Io, 4e9),
    ]);
    let s = 59.6 / 103.9;
    for (g, d) in got.iter().zip([43.9e9, 56e9, 4e9]) {
        assert!(close(*g, d * s), "{got:?}");
    }
    // The CPU alone with I/O: capped at the CPU-only figure.
    let got = m.share(&[(Stream::Cpu, 43.9e9), (Stream::Io, 4e9)]);
    assert!(close(got.iter().sum::<f64>(), 43.9e9), "{got:?}");
}

#[test]
fn several_cpu_streams_together_never_exceed_the_cpu_figure() {
    let m = phone();
    // Four cores each asking 13.75 GB/s (the big core's stream): 55 > 43.9 for the CPU side.
    let got = m.share(&[(Stream::Cpu, 13.75e9); 4]);
    assert!(close(got.iter().sum::<f64>(), 43.9e9), "{got:?}");
    assert!(got.windows(2).all(|w| close(w[0], w[1])));
}
