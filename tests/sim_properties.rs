//! Property tests of the simulator: random DAG plans on random devices.
//!
//! Each case draws a seed; a ChaCha8 generator builds the device profile and the plans from
//! it (proptest shrinks the sizes, the seed reproduces the rest). The properties are the
//! engine's guarantees from `edgesim::sim`'s docs:
//! (a) an op starts only after all its dependencies end;
//! (b) a resource never runs ops needing more servers than it has;
//! (c) time never goes backwards;
//! (d) on an idle simulator, one plan's makespan is at least its critical path and at least
//!     each resource's busy time divided by its servers;
//! (e) every op runs exactly once;
//! (f) the same inputs give identical timings;
//! and each op holds its resource for exactly its priced duration.

use edgesim::backend::{Backend, BackendError, OpTiming, StepResult};
use edgesim::hw::testing::test_device;
use edgesim::hw::{
    AcceleratorSpec, CpuCluster, CurvePoint, DeviceProfile, HostMemorySpec, LinkSpec, OffloadTier,
    PrecisionRate,
};
use edgesim::model::Precision;
use edgesim::plan::{Op, OpId, Plan, PlanBuilder, TensorRef, Unit, World};
use edgesim::sim::Simulator;
use edgesim::sourced::Sourced;
use edgesim::units::{Nanos, KIB, MIB};
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

fn fixture<T>(value: T) -> Sourced<T> {
    Sourced::new(value, "test fixture (random)")
}

fn random_rates(rng: &mut ChaCha8Rng, precisions: &[Precision]) -> Sourced<Vec<PrecisionRate>> {
    fixture(
        precisions
            .iter()
            .map(|&precision| PrecisionRate {
                precision,
                ops_per_s: rng.gen_range(1e9..1e12),
            })
            .collect(),
    )
}

/// A random but valid device: 1-8 flash channels, a 1-4 point curve, 1-3 CPU clusters of
/// 1-8 cores, maybe an accelerator (1-3 servers, some precisions), maybe a TEE, maybe a host
/// link as the offload tier.
fn random_device(rng: &mut ChaCha8Rng) -> DeviceProfile {
    let mut d = test_device();
    d.name = "random".into();
    d.storage.channels = fixture(rng.gen_range(1..=8));
    let points = rng.gen_range(1..=4);
    let mut size = 4 * KIB;
    d.storage.read_curve = fixture(
        (0..points)
            .map(|_| {
                let p = CurvePoint {
                    request_bytes: size,
                    bytes_per_s: rng.gen_range(1e8..5e9),
                };
                size *= 1 << rng.gen_range(1..4);
                p
            })
            .collect(),
    );
    // The queue-depth-1 latency holds a lone 4 KiB read's command and transfer (each 4 KiB at
    // the curve's first point, hw::cost::flash) plus a random media delay.
    let at_4k = d.storage.read_curve.value[0].bytes_per_s;
    let floor = 2 * (4096.0 * 1e9 / at_4k).ceil() as u64;
    d.storage.request_latency_ns = fixture(floor + rng.gen_range(0..100_000));
    d.memory.bandwidth_bytes_per_s = fixture(rng.gen_range(5e9..100e9));
    d.cpu = (0..rng.gen_range(1..=3))
        .map(|i| CpuCluster {
            name: format!("c{i}"),
            cores: fixture(rng.gen_range(1..=8)),
            core_ops_per_s: random_rates(rng, &Precision::ALL),
            dequant_core_ops_per_s: None,
            core_bandwidth_bytes_per_s: fixture(rng.gen_range(1e9..20e9)),
            launch_overhead_ns: fixture(rng.gen_range(0..10_000)),
            weight_pass_per_s: None,
        })
        .collect();
    d.accelerator = if rng.gen_bool(0.6) {
        let mut precisions = Precision::ALL.to_vec();
        precisions.shuffle(rng);
        precisions.truncate(rng.gen_range(1..=5));
        Some(AcceleratorSpec {
            servers: fixture(rng.gen_range(1..=3)),
            ops_per_s: random_rates(rng, &precisions),
            bandwidth_bytes_per_s: fixture(rng.gen_range(10e9..500e9)),
            dispatch_latency_ns: fixture(rng.gen_range(0..100_000)),
            ..d.accelerator.clone().unwrap()
        })
    } else {
        None
    };
    if rng.gen_bool(0.5) {
        d.tee = None;
    }
    if rng.gen_bool(0.3) {
        d.offload_tier = OffloadTier::HostMemory;
        d.host_link = Some(LinkSpec {
            kind: "random".into(),
            bandwidth_bytes_per_s: fixture(rng.gen_range(1e9..50e9)),
            latency_ns: fixture(rng.gen_range(0..5_000)),
        });
        d.host_memory = Some(HostMemorySpec {
            capacity_bytes: fixture(256 << 30),
            bandwidth_bytes_per_s: fixture(rng.gen_range(20e9..200e9)),
        });
    }
    d.check().unwrap();
    d
}

/// Builds random plans whose ops the device supports. Evicts free exactly what an earlier
/// Alloc (which they depend on) reserved, each Alloc at most once.
struct PlanGen<'a> {
    device: &'a DeviceProfile,
    next_id: OpId,
    /// Allocs not yet evicted: (id, bytes, secure).
    live_allocs: Vec<(OpId, u64, bool)>,
}

impl PlanGen<'_> {
    fn random_op(&mut self, rng: &mut ChaCha8Rng, id: OpId, deps: &mut Vec<OpId>) -> Op {
        let d = self.device;
        let tensor = TensorRef::expert(rng.gen_range(0..4), rng.gen_range(0..8));
        loop {
            match rng.gen_range(0..8) {
                0 | 1 => {
                    return Op::Read {
                        tensor,
                        precision: Precision::Int4,
                        bytes: rng.gen_range(0..4 * MIB),
                        request_bytes: rng.gen_range(1..MIB as u32),
                    }
                }
                2 | 3 => {
                    let cluster = rng.gen_range(0..d.cpu.len());
                    let threads = rng.gen_range(1..=d.cpu[cluster].cores.value) as u16;
                    let unit = Unit::Cpu {
                        cluster: cluster as u8,
                        threads,
                    };
                    let precision = *Precision::ALL.choose(rng).unwrap();
                    let (rows, cols) = (rng.gen_range(1..8192), rng.gen_range(1..8192));
                    return Op::matmul(tensor, unit, precision, rows, cols, rng.gen_range(1..4));
                }
                4 => {
                    if let Some(a) = &d.accelerator {
                        let precision = a.ops_per_s.value.choose(rng).unwrap().precision;
                        let (rows, cols) = (rng.gen_range(1..8192), rng.gen_range(1..8192));
                        return Op::matmul(tensor, Unit::Accel, precision, rows, cols, 1);
                    }
                }
                5 => {
                    let secure = d.tee.is_some() && rng.gen_bool(0.5);
                    let bytes = rng.gen_range(0..64 * MIB);
                    self.live_allocs.push((id, bytes, secure));
                    return Op::Alloc {
                        tensor,
                        bytes,
                        secure,
                    };
                }
                6 => {
                    if !self.live_allocs.is_empty() {
                        let i = rng.gen_range(0..self.live_allocs.len());
                        let (alloc, bytes, secure) = self.live_allocs.swap_remove(i);
                        deps.push(alloc);
                        return Op::Evict {
                            tensor,
                            bytes,
                            secure,
                        };
                    }
                }
                _ => {
                    if d.tee.is_some() {
                        if rng.gen_bool(0.5) {
                            return Op::WorldSwitch { to: World::Secure };
                        }
                        let cluster = rng.gen_range(0..d.cpu.len());
                        return Op::Decrypt {
                            tensor,
                            bytes: rng.gen_range(0..8 * MIB),
                            cluster: cluster as u8,
                            threads: rng.gen_range(1..=d.cpu[cluster].cores.value) as u16,
                        };
                    }
                }
            }
        }
    }

    fn plan(&mut self, rng: &mut ChaCha8Rng, ops: usize) -> Plan {
        let mut b = PlanBuilder::new(self.next_id);
        let mut deps = Vec::new();
        for _ in 0..ops {
            let id = b.next_id();
            deps.clear();
            let op = self.random_op(rng, id, &mut deps);
            // Up to three more dependencies, on this plan's ops or earlier plans'.
            if id > 0 {
                let lowest = id.saturating_sub(3 * ops as u64);
                for _ in 0..rng.gen_range(0..=3) {
                    deps.push(rng.gen_range(lowest..id));
                }
            }
            b.push_with_priority(op, &deps, rng.gen_range(-2..=2));
        }
        let output = self.next_id + rng.gen_range(0..ops as u64);
        b.set_output(output);
        let plan = b.finish().unwrap();
        self.next_id = plan.end_id();
        plan
    }
}

/// Plans, the steps they produced and the drained remainder.
struct Run {
    plans: Vec<Plan>,
    steps: Vec<StepResult>,
    drained: Vec<OpTiming>,
    sim: Simulator,
}

fn simulate(seed: u64, plan_count: usize, ops_per_plan: usize) -> Run {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let device = random_device(&mut rng);
    let mut sim = Simulator::new(&device, u64::MAX).unwrap();
    let mut gen = PlanGen {
        device: &device,
        next_id: 0,
        live_allocs: Vec::new(),
    };
    let mut plans = Vec::new();
    let mut steps = Vec::new();
    for _ in 0..plan_count {
        let plan = gen.plan(&mut rng, ops_per_plan);
        steps.push(sim.run(&plan).unwrap());
        plans.push(plan);
    }
    let drained = sim.drain().unwrap();
    Run {
        plans,
        steps,
        drained,
        sim,
    }
}

impl Run {
    /// Every reported timing, in report order.
    fn timings(&self) -> Vec<OpTiming> {
        self.steps
            .iter()
            .flat_map(|s| s.ops.iter().copied())
            .chain(self.drained.iter().copied())
            .collect()
    }

    fn by_id(&self) -> BTreeMap<OpId, OpTiming> {
        self.timings().into_iter().map(|t| (t.id, t)).collect()
    }

    fn ops(&self) -> impl Iterator<Item = (&Plan, &edgesim::plan::OpNode)> {
        self.plans
            .iter()
            .flat_map(|p| p.nodes().iter().map(move |n| (p, n)))
    }
}

/// (a), (e), and each op's duration is its price.
fn check_dependencies_and_durations(run: &Run) -> Result<(), TestCaseError> {
    let timings = run.timings();
    let by_id = run.by_id();
    let issued: u64 = run.plans.iter().map(|p| p.len() as u64).sum();
    prop_assert_eq!(
        timings.len() as u64,
        issued,
        "each op reported exactly once"
    );
    prop_assert_eq!(by_id.len() as u64, issued, "no op reported twice");
    prop_assert_eq!(
        by_id.keys().copied().collect::<Vec<_>>(),
        (0..issued).collect::<Vec<_>>()
    );
    for (plan, node) in run.ops() {
        let t = by_id[&node.id];
        for &dep in plan.deps(node) {
            prop_assert!(
                t.start >= by_id[&dep].end,
                "op {} starts at {} before its dependency {} ends at {}",
                node.id,
                t.start,
                dep,
                by_id[&dep].end
            );
        }
        let cost = run.sim.price(&node.op).unwrap();
        prop_assert_eq!(t.end - t.start, cost.duration, "op {} duration", node.id);
        prop_assert_eq!(t.resource, cost.resource);
    }
    Ok(())
}

/// (b): sweep each resource's [start, end) intervals, ends before starts at equal times.
fn check_capacity(run: &Run) -> Result<(), TestCaseError> {
    let by_id = run.by_id();
    let mut sweeps: BTreeMap<u16, Vec<(Nanos, i64)>> = BTreeMap::new();
    for (_, node) in run.ops() {
        let cost = run.sim.price(&node.op).unwrap();
        let (Some(r), t) = (cost.resource, by_id[&node.id]) else {
            continue;
        };
        if t.end > t.start {
            let edges = sweeps.entry(r).or_default();
            edges.push((t.start, cost.servers as i64));
            edges.push((t.end, -(cost.servers as i64)));
        }
    }
    for (r, mut edges) in sweeps {
        // At equal times, releases (negative) sort first.
        edges.sort();
        let servers = run.sim.resources()[r as usize].servers as i64;
        let mut busy = 0;
        for (time, delta) in edges {
            busy += delta;
            prop_assert!(
                busy <= servers,
                "{} runs {} servers' worth at {} but has {}",
                run.sim.resources()[r as usize].name,
                busy,
                time,
                servers
            );
        }
    }
    Ok(())
}

/// (c): ops are reported in nondecreasing end time, end >= start, plans released in order at
/// the previous output, and no op starts before its plan's release.
fn check_time_moves_forward(run: &Run) -> Result<(), TestCaseError> {
    let timings = run.timings();
    for w in timings.windows(2) {
        prop_assert!(w[0].end <= w[1].end, "reported out of time order: {:?}", w);
    }
    for t in &timings {
        prop_assert!(t.end >= t.start);
    }
    let by_id = run.by_id();
    let mut previous_output = Nanos::ZERO;
    for (plan, step) in run.plans.iter().zip(&run.steps) {
        prop_assert_eq!(step.start, previous_output);
        prop_assert!(step.output_ready >= step.start);
        prop_assert_eq!(step.output_ready, by_id[&plan.output().unwrap()].end);
        for node in plan.nodes() {
            prop_assert!(by_id[&node.id].start >= step.start);
        }
        previous_output = step.output_ready;
    }
    Ok(())
}

fn critical_path(run: &Run) -> Nanos {
    let mut finish: BTreeMap<OpId, Nanos> = BTreeMap::new();
    for (plan, node) in run.ops() {
        let ready = plan
            .deps(node)
            .iter()
            .map(|d| finish[d])
            .max()
            .unwrap_or(Nanos::ZERO);
        finish.insert(node.id, ready + run.sim.price(&node.op).unwrap().duration);
    }
    finish.values().copied().max().unwrap_or(Nanos::ZERO)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn multi_plan_runs_keep_the_guarantees(
        seed in any::<u64>(),
        plan_count in 1usize..6,
        ops_per_plan in 1usize..30,
    ) {
        let run = simulate(seed, plan_count, ops_per_plan);
        check_dependencies_and_durations(&run)?;
        check_capacity(&run)?;
        check_time_moves_forward(&run)?;
        prop_assert_eq!(run.sim.ops_in_flight(), 0);
        prop_assert_eq!(run.sim.ops_tracked(), 0);
    }

    #[test]
    fn one_plan_makespan_is_bounded_below(seed in any::<u64>(), ops in 1usize..40) {
        let run = simulate(seed, 1, ops);
        let makespan = run.timings().iter().map(|t| t.end).max().unwrap();
        prop_assert!(makespan >= critical_path(&run), "{} < {}", makespan, critical_path(&run));
        let busy = run.sim.busy_server_ns();
        for (r, info) in run.sim.resources().iter().enumerate() {
            prop_assert!(
                busy[r] <= info.servers as u64 * makespan.0,
                "{}: busy {} server-ns in a {} makespan on {} servers",
                info.name, busy[r], makespan, info.servers
            );
        }
    }

    #[test]
    fn same_inputs_same_timings(
        seed in any::<u64>(),
        plan_count in 1usize..5,
        ops_per_plan in 1usize..30,
    ) {
        let a = simulate(seed, plan_count, ops_per_plan);
        let b = simulate(seed, plan_count, ops_per_plan);
        prop_assert_eq!(&a.steps, &b.steps);
        prop_assert_eq!(&a.drained, &b.drained);
        prop_assert_eq!(a.sim.busy_server_ns(), b.sim.busy_server_ns());
        prop_assert_eq!(a.sim.memory_peak_bytes(), b.sim.memory_peak_bytes());
    }

    /// Memory accounting: with a random budget, a run either stays within it throughout or
    /// fails with BudgetExceeded naming an Alloc; the peak never exceeds the budget.
    #[test]
    fn memory_never_exceeds_the_budget(seed in any::<u64>(), budget_mib in 0u64..256) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let device = random_device(&mut rng);
        let budget = budget_mib * MIB;
        let mut sim = Simulator::new(&device, budget).unwrap();
        let mut gen = PlanGen { device: &device, next_id: 0, live_allocs: Vec::new() };
        let mut allocs = BTreeMap::new();
        let mut outcome = Ok(());
        for _ in 0..4 {
            let plan = gen.plan(&mut rng, 20);
            for n in plan.nodes() {
                if let Op::Alloc { bytes, .. } = n.op {
                    allocs.insert(n.id, bytes);
                }
            }
            if let Err(e) = sim.run(&plan) {
                outcome = Err(e);
                break;
            }
        }
        if outcome.is_ok() {
            outcome = sim.drain().map(|_| ());
        }
        match outcome {
            Ok(()) => {}
            Err(BackendError::BudgetExceeded { used, budget: b, op, .. }) => {
                prop_assert_eq!(b, budget);
                prop_assert!(used > budget);
                prop_assert!(allocs.contains_key(&op), "op {} is not an Alloc", op);
            }
            Err(e) => prop_assert!(false, "unexpected error {}", e),
        }
        prop_assert!(sim.memory_peak_bytes() <= budget);
        prop_assert!(sim.memory_used_bytes() <= sim.memory_peak_bytes());
    }
}
