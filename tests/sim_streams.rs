//! First-principles checks of the simulator with its cost models (Ramulator style): an
//! unloaded op takes exactly its formula's time, and a long stream of ops reaches the
//! configured bandwidth once the engine shares the resource among them.

use edgesim::backend::{Backend, OpTiming};
use edgesim::hw::testing::{test_device, test_device_host_memory};
use edgesim::hw::DeviceProfile;
use edgesim::model::Precision;
use edgesim::plan::{Op, PlanBuilder, TensorRef, Unit};
use edgesim::sim::Simulator;
use edgesim::units::{Nanos, GIB, KIB, MIB};

fn read(bytes: u64, request_bytes: u64) -> Op {
    Op::Read {
        tensor: TensorRef::expert(0, 0),
        precision: Precision::Int4,
        bytes,
        request_bytes: request_bytes as u32,
    }
}

/// Runs `count` copies of `op`, all independent, as one plan; returns all timings.
fn run_independent(device: &DeviceProfile, op: Op, count: usize) -> (Simulator, Vec<OpTiming>) {
    let mut sim = Simulator::new(device, GIB).unwrap();
    let mut b = PlanBuilder::new(0);
    let mut last = 0;
    for _ in 0..count {
        last = b.push(op, &[]);
    }
    b.set_output(last);
    let mut ops = sim.run(&b.finish().unwrap()).unwrap().ops;
    ops.extend(sim.drain().unwrap());
    assert_eq!(ops.len(), count);
    (sim, ops)
}

fn makespan(ops: &[OpTiming]) -> Nanos {
    ops.iter().map(|t| t.end).max().unwrap()
}

#[test]
fn an_unloaded_read_takes_exactly_the_formula() {
    // Test fixture: 8 channels, 60 us, 1 GB/s at 4 KiB, 2.5 GB/s at 64 KiB, 4 GB/s at 512 KiB.
    let (_, ops) = run_independent(&test_device(), read(4 * KIB, 4 * KIB), 1);
    // The request reaches the device after 60 us, then holds one channel of eight for
    // 4096 B · 8 / 1e9 B/s = 32768 ns.
    assert_eq!(ops[0].start, Nanos(60_000));
    assert_eq!(ops[0].end, Nanos(60_000 + 32_768));
    let (_, ops) = run_independent(&test_device(), read(64 * MIB, 512 * KIB), 1);
    let transfer = (64.0 * MIB as f64 * 1e9 / 4e9).ceil() as u64;
    assert_eq!(ops[0].end, Nanos(60_000 + transfer));
}

#[test]
fn a_stream_of_big_reads_reaches_the_curve_bandwidth() {
    let (sim, ops) = run_independent(&test_device(), read(32 * MIB, 512 * KIB), 64);
    let achieved = (64 * 32 * MIB) as f64 / makespan(&ops).as_secs_f64();
    // Each read holds all 8 channels, so they run one after another; the requests' latency
    // overlaps the transfers ahead of them, so only the first 60 us separate the stream
    // from 4 GB/s.
    assert!(achieved <= 4e9 && achieved > 0.999 * 4e9, "{achieved}");
    let flash = &sim.resources()[0];
    assert_eq!(flash.name, "flash");
    assert_eq!(
        sim.busy_server_ns()[0],
        8 * (makespan(&ops).0 - 60_000),
        "flash busy all the time once the first request arrived"
    );
}

#[test]
fn concurrent_small_reads_share_the_channels() {
    // Without request latency, 8 one-channel reads side by side reach exactly the 4 KiB
    // bandwidth; a 9th waits for a free channel.
    let mut device = test_device();
    device.storage.request_latency_ns.value = 0;
    let (_, ops) = run_independent(&device, read(4 * KIB, 4 * KIB), 800);
    let one = Nanos(32_768);
    assert!(ops.iter().all(|t| t.end - t.start == one));
    assert_eq!(makespan(&ops), Nanos(100 * one.0));
    let achieved = (800 * 4 * KIB) as f64 / makespan(&ops).as_secs_f64();
    assert!((achieved - 1e9).abs() < 1e9 * 1e-9, "{achieved}");
}

#[test]
fn small_reads_with_latency_still_reach_the_curve() {
    // Latency is paid on the way to the device, not on a channel: 800 queued 4 KiB requests
    // arrive after 60 us and then keep all 8 channels busy, so the stream reaches the 4 KiB
    // curve point (1 GB/s) once the first latency is paid.
    let (_, ops) = run_independent(&test_device(), read(4 * KIB, 4 * KIB), 800);
    assert_eq!(makespan(&ops), Nanos(60_000 + 100 * 32_768));
}

#[test]
fn a_stream_over_the_host_link_reaches_the_link_bandwidth() {
    // Fixture link: 25 GB/s, 2 us. Reads queue on its single server.
    let (sim, ops) = run_independent(&test_device_host_memory(), read(64 * MIB, 64 * MIB), 32);
    let achieved = (32 * 64 * MIB) as f64 / makespan(&ops).as_secs_f64();
    assert!(achieved <= 25e9 && achieved > 0.999 * 25e9, "{achieved}");
    assert_eq!(
        sim.resources()[ops[0].resource.unwrap() as usize].name,
        "link"
    );
}

#[test]
fn compute_ops_fill_the_cluster_cores() {
    // 4-core big cluster, ops of 3 threads: only one fits at a time (3 + 3 > 4).
    let unit = Unit::Cpu {
        cluster: 0,
        threads: 3,
    };
    let op = Op::matmul(
        TensorRef::expert(0, 0),
        unit,
        Precision::Int4,
        4096,
        4096,
        1,
    );
    let (sim, ops) = run_independent(&test_device(), op, 10);
    let one = sim.price(&op).unwrap().duration;
    assert_eq!(makespan(&ops), Nanos(10 * one.0));
    // 1-thread ops: four at a time.
    let unit = Unit::Cpu {
        cluster: 0,
        threads: 1,
    };
    let op = Op::matmul(
        TensorRef::expert(0, 0),
        unit,
        Precision::Int4,
        4096,
        4096,
        1,
    );
    let (sim, ops) = run_independent(&test_device(), op, 10);
    let one = sim.price(&op).unwrap().duration;
    assert_eq!(makespan(&ops), Nanos(3 * one.0));
}
