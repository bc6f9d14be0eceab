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

// Test fixture: 60 us queue-depth-1 latency; curve 1 GB/s at 4 KiB, 2.5 GB/s at 64 KiB, 4 GB/s at
// 512 KiB. The three-stage flash model (hw::cost::flash) gives: command t_cmd = 4096 B / 1 GB/s =
// 4096 ns; a 4 KiB transfer 4096 ns; media delay 60000 - 4096 - 4096 = 51808 ns.
const T_CMD: u64 = 4_096;
const T_MEDIA: u64 = 51_808;

#[test]
fn an_unloaded_read_takes_exactly_the_formula() {
    // A lone 4 KiB read reaches the link after t_media + t_cmd, holds it for its transfer,
    // and completes exactly at the queue-depth-1 figure.
    let (_, ops) = run_independent(&test_device(), read(4 * KIB, 4 * KIB), 1);
    assert_eq!(ops[0].start, Nanos(T_MEDIA + T_CMD));
    assert_eq!(ops[0].end, Nanos(60_000));
    // 64 MiB in 512 KiB requests: 128 commands (524 us) hide under the 4 GB/s transfer.
    let (_, ops) = run_independent(&test_device(), read(64 * MIB, 512 * KIB), 1);
    let transfer = (64.0 * MIB as f64 * 1e9 / 4e9).ceil() as u64;
    assert_eq!(ops[0].end, Nanos(T_MEDIA + T_CMD + transfer));
}

#[test]
fn a_stream_of_big_reads_reaches_the_curve_bandwidth() {
    let (sim, ops) = run_independent(&test_device(), read(32 * MIB, 512 * KIB), 64);
    let achieved = (64 * 32 * MIB) as f64 / makespan(&ops).as_secs_f64();
    // The reads share the one link, one after another; the first read's delay before the
    // link is all that separates the stream from 4 GB/s.
    assert!(achieved <= 4e9 && achieved > 0.999 * 4e9, "{achieved}");
    let flash = &sim.resources()[0];
    assert_eq!(flash.name, "flash");
    // Every read holds all of the resource's servers (the executor's I/O threads).
    let servers = test_device().storage.channels.value as u64;
    assert_eq!(
        sim.busy_server_ns()[0],
        servers * (makespan(&ops).0 - (T_MEDIA + T_CMD)),
        "flash busy all the time once the first request arrived"
    );
}

#[test]
fn small_reads_queue_on_the_link_at_the_command_rate() {
    // 800 queued 4 KiB reads each hold the link for max(t_cmd, transfer) = 4096 ns once the
    // first has paid its delay: the deep-queue rate, 1 GB/s at 4 KiB (the curve's point).
    let (_, ops) = run_independent(&test_device(), read(4 * KIB, 4 * KIB), 800);
    assert!(ops.iter().all(|t| t.end - t.start == Nanos(T_CMD)));
    assert_eq!(makespan(&ops), Nanos(T_MEDIA + T_CMD + 800 * T_CMD));
    let streaming = (799 * 4 * KIB) as f64 / (makespan(&ops).0 - ops[0].end.0) as f64 * 1e9;
    assert!((streaming - 1e9).abs() < 1e9 * 1e-6, "{streaming}");
}

#[test]
fn a_profile_whose_latency_cannot_hold_a_4k_read_is_refused() {
    // The queue-depth-1 latency includes command and transfer: a profile claiming less
    // (here 0 ns) is an error naming the field, not a negative media delay.
    let mut device = test_device();
    device.storage.request_latency_ns.value = 0;
    let Err(err) = Simulator::new(&device, GIB) else {
        panic!("a 0 ns queue-depth-1 latency was accepted");
    };
    assert!(err.to_string().contains("request_latency_ns"), "{err}");
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
