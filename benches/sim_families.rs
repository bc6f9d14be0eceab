//! Simulator speed per plan family (issue 19): simulated ops per second, passes per second,
//! heap allocations per op and per pass, and heap bytes per pass against trace length.
//!
//! Each family is one policy of a bundled experiment at one budget, replayed end to end as
//! `edgesim compare` replays it — pass grouping, planning, pricing, scheduling and the run's
//! summary (`RunSummary`) — from records held in memory (so trace decoding is not timed):
//!
//! | family | experiment, policy, budget, workload | plan shape |
//! | --- | --- | --- |
//! | `expert-lru` | hobbit-orin, `lru`, 30 %, [128,128] | ~310 ops/pass: per layer mixer, router, expert loads and computes, join |
//! | `hobbit` | hobbit-orin, `hobbit`, 30 %, [128,128] | ~330 ops/pass: mixed-precision loads, prefetches |
//! | `llama-mmap` | hobbit-orin, `llama-cpp-mmap`, 30 %, [16,32] | ~35,000 ops/pass: chains of readahead-window page faults (90 % of hobbit-orin's ops) |
//! | `neuron-c1` | smollm2-host, `lru`, 30 %, recorded trace | ~98,000 ops/pass: one-neuron clusters |
//! | `neuron-c64` | smollm2-host, `lru-c64`, 30 %, recorded trace ×4 | ~2,900 ops/pass: 64-neuron clusters |
//! | `tee-chain` | synthetic, see [`TeeChainStandIn`] | secure alloc → read → decrypt chunks, world switches |
//!
//! TEE restoration chains are the plans of TZ-LLM's policies, which issue 13 adds; until they
//! exist `tee-chain` replays a **synthetic stand-in** of that shape (it is labelled so in the
//! output). Once issue 13 lands, add its policy as a family row like the others (the
//! `Family::Experiment` case) and keep the stand-in only if it still measures something else.
//!
//! Figures: ops/s and passes/s are medians over repeated replays. `allocs/op` counts every heap
//! allocation (and reallocation) of a whole replay, warm-up and setup of the simulator and
//! policy included, divided by its ops; `allocs/pass` is the steady-state rate: the difference
//! in allocations between a replay of the trace repeated twice and once, per extra pass. The
//! memory table replays the trace repeated 1, 4 and 16 times and prints the peak heap growth
//! during the replay; `bytes/pass` is the slope between the shortest and the longest (0 when
//! memory is flat in trace length).
//!
//! `cargo bench --bench sim_families [-- FAMILY...]` (names as above; all by default);
//! `-- --once FAMILY...` replays each chosen family once and prints nothing else (for a
//! profiler: `valgrind --tool=callgrind`).

use edgesim::compare::{load_experiment, prepare, Prepared, RunSpec};
use edgesim::model::Precision;
use edgesim::plan::{Op, OpId, PlanBuilder, TensorKind, TensorRef, Unit, World};
use edgesim::policy::{Counters, MemoryUse, Policy, PolicyError};
use edgesim::replay::{replay, ReplayOptions};
use edgesim::report::RunSummary;
use edgesim::sim::Simulator;
use edgesim::trace::{ForwardPass, PassGrouper, TokenRecord, TokenSource, TraceError, TraceHeader};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

/// The system allocator, counting allocations and the bytes live (and their peak).
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static LIVE_BYTES: AtomicU64 = AtomicU64::new(0);
static PEAK_BYTES: AtomicU64 = AtomicU64::new(0);

fn grow(bytes: u64) {
    let live = LIVE_BYTES.fetch_add(bytes, Relaxed) + bytes;
    PEAK_BYTES.fetch_max(live, Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        grow(layout.size() as u64);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        grow(layout.size() as u64);
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as u64, Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        LIVE_BYTES.fetch_sub(layout.size() as u64, Relaxed);
        grow(new_size as u64);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Records served from memory with `clone_from`, as `compare` serves generated workloads, so
/// the source itself allocates nothing once its buffers have grown.
struct SliceSource {
    header: TraceHeader,
    records: Arc<Vec<TokenRecord>>,
    next: usize,
}

impl TokenSource for SliceSource {
    fn header(&self) -> &TraceHeader {
        &self.header
    }
    fn next_into(&mut self, rec: &mut TokenRecord) -> Result<bool, TraceError> {
        match self.records.get(self.next) {
            Some(r) => {
                rec.clone_from(r);
                self.next += 1;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// A workload's records repeated `times` times, each copy's sequences numbered after the
/// previous copy's, so every copy is a run of fresh sequences.
fn repeated(records: &[TokenRecord], times: u32) -> Vec<TokenRecord> {
    let sequences = records.iter().map(|r| r.sequence + 1).max().unwrap_or(0);
    (0..times)
        .flat_map(|k| {
            records.iter().map(move |r| {
                let mut r = r.clone();
                r.sequence += k * sequences;
                r
            })
        })
        .collect()
}

enum Family {
    /// A policy of a bundled experiment: (experiment, policy label, budget label, workload
    /// label or "" for the single trace).
    Experiment {
        experiment: &'static str,
        label: &'static str,
        budget: &'static str,
        workload: &'static str,
    },
    /// The synthetic TEE restoration chain on `rk3588` (see [`TeeChainStandIn`]).
    TeeChain,
}

struct FamilySpec {
    name: &'static str,
    family: Family,
    /// Copies of the workload in a timed replay.
    copies: u32,
    /// Timed replays (the median is reported).
    replays: usize,
}

const FAMILIES: &[FamilySpec] = &[
    FamilySpec {
        name: "expert-lru",
        family: Family::Experiment {
            experiment: "hobbit-orin",
            label: "lru",
            budget: "30% cached",
            workload: "[128,128]",
        },
        copies: 2,
        replays: 7,
    },
    FamilySpec {
        name: "hobbit",
        family: Family::Experiment {
            experiment: "hobbit-orin",
            label: "hobbit",
            budget: "30% cached",
            workload: "[128,128]",
        },
        copies: 2,
        replays: 7,
    },
    FamilySpec {
        name: "llama-mmap",
        family: Family::Experiment {
            experiment: "hobbit-orin",
            label: "llama-cpp-mmap",
            budget: "30% cached",
            workload: "[16,32]",
        },
        copies: 1,
        replays: 3,
    },
    FamilySpec {
        name: "neuron-c1",
        family: Family::Experiment {
            experiment: "smollm2-host",
            label: "lru",
            budget: "30% cached",
            workload: "",
        },
        copies: 1,
        replays: 3,
    },
    FamilySpec {
        name: "neuron-c64",
        family: Family::Experiment {
            experiment: "smollm2-host",
            label: "lru-c64",
            budget: "30% cached",
            workload: "",
        },
        copies: 4,
        replays: 7,
    },
    FamilySpec {
        name: "tee-chain",
        family: Family::TeeChain,
        copies: 1,
        replays: 7,
    },
];

/// Everything a family's replays need, resolved once.
struct Setup {
    prepared: Option<Prepared>,
    spec: Option<RunSpec>,
    header: TraceHeader,
    records: Vec<TokenRecord>,
    tee_device: Option<Arc<edgesim::hw::DeviceProfile>>,
}

fn setup(f: &FamilySpec) -> Setup {
    match f.family {
        Family::Experiment {
            experiment,
            label,
            budget,
            workload,
        } => {
            let (exp, base) = load_experiment(&format!("scenarios/experiments/{experiment}.json"))
                .expect("bundled experiment");
            let p = prepare(exp, base.as_deref()).expect("experiment prepares");
            let wi = p
                .workloads
                .iter()
                .position(|w| w.label == workload)
                .expect("workload exists");
            let spec = p
                .runs
                .iter()
                .find(|r| r.workload == wi && r.label == label && r.budget_label == budget)
                .unwrap_or_else(|| panic!("{experiment}: no run {label} at {budget}"))
                .clone();
            let w = &p.workloads[wi];
            let mut source = w.trace.open().expect("trace opens");
            let header = source.header().clone();
            let mut records = Vec::new();
            let mut rec = TokenRecord::default();
            while source.next_into(&mut rec).expect("trace reads") {
                records.push(rec.clone());
            }
            Setup {
                prepared: Some(p),
                spec: Some(spec),
                header,
                records,
                tee_device: None,
            }
        }
        Family::TeeChain => {
            // Passes only drive the stand-in's pace: 256 decode tokens of one sequence, under
            // any header (the grouper does not read it; this is the bundled neuron trace's).
            let header = edgesim::trace::TraceReader::open(std::path::Path::new(
                "traces/smollm2-135m-recorded.est",
            ))
            .expect("bundled trace")
            .header()
            .clone();
            let records = (0..256)
                .map(|position| TokenRecord {
                    sequence: 0,
                    position,
                    phase: edgesim::trace::Phase::Decode,
                    ..TokenRecord::default()
                })
                .collect();
            Setup {
                prepared: None,
                spec: None,
                header,
                records,
                tee_device: Some(Arc::new(
                    edgesim::scenario::load_device("rk3588").expect("bundled device"),
                )),
            }
        }
    }
}

/// What one replay did.
struct Replayed {
    ops: u64,
    passes: u64,
    seconds: f64,
    allocations: u64,
    /// Peak heap growth during the replay, above what was live before it.
    peak_bytes: u64,
}

fn replay_once(s: &Setup, copies: u32) -> Replayed {
    let records = Arc::new(repeated(&s.records, copies));
    let source = SliceSource {
        header: s.header.clone(),
        records,
        next: 0,
    };
    let live_before = LIVE_BYTES.load(Relaxed);
    PEAK_BYTES.store(live_before, Relaxed);
    let allocations_before = ALLOCATIONS.load(Relaxed);
    let start = Instant::now();
    let (ops, passes) = match (&s.prepared, &s.spec) {
        (Some(p), Some(spec)) => {
            let ctx = edgesim::scenario::experiment::policy_context(
                p.model.clone(),
                p.device.clone(),
                &p.experiment,
                spec.budget_bytes,
                p.max_context,
                spec.params.clone(),
            );
            let mut policy = edgesim::policy::build(&spec.policy, ctx).expect("policy builds");
            assert!(
                !policy.needs_future(),
                "offline policies need the future; not a family here"
            );
            let mut sim = Simulator::new(&p.device, spec.budget_bytes).expect("simulator");
            let mut grouper = PassGrouper::new(source, p.prefill_chunk() as usize);
            let out = replay(
                policy.as_mut(),
                &mut sim,
                spec.budget_bytes,
                &mut grouper,
                &ReplayOptions::default(),
            )
            .expect("replay");
            let summary = RunSummary::from_outcome(&out);
            (out.ops_total, summary.passes)
        }
        _ => {
            let device = s.tee_device.as_ref().expect("tee device");
            let budget = 16 << 30;
            let mut policy = TeeChainStandIn::new();
            let mut sim = Simulator::new(device, budget).expect("simulator");
            let mut grouper = PassGrouper::new(source, 512);
            let out = replay(
                &mut policy,
                &mut sim,
                budget,
                &mut grouper,
                &ReplayOptions::default(),
            )
            .expect("replay");
            let summary = RunSummary::from_outcome(&out);
            (out.ops_total, summary.passes)
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    Replayed {
        ops,
        passes,
        seconds,
        allocations: ALLOCATIONS.load(Relaxed) - allocations_before,
        peak_bytes: PEAK_BYTES.load(Relaxed).saturating_sub(live_before),
    }
}

fn speed(f: &FamilySpec, s: &Setup) {
    let mut runs: Vec<Replayed> = (0..f.replays).map(|_| replay_once(s, f.copies)).collect();
    runs.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let median = &runs[runs.len() / 2];
    let once = replay_once(s, 1);
    let twice = replay_once(s, 2);
    let extra_passes = twice.passes - once.passes;
    let steady = (twice.allocations as f64 - once.allocations as f64) / extra_passes as f64;
    let synthetic = if matches!(f.family, Family::TeeChain) {
        "  (synthetic stand-in: TZ-LLM policies are issue 13)"
    } else {
        ""
    };
    println!(
        "sim_families/{:<11} {:>6.0} ops/pass {:>7.2} M ops/s {:>9.0} passes/s {:>8.4} allocs/op {:>8.2} allocs/pass (steady) [{} ops, {} passes, median of {} in {:.1} ms]{synthetic}",
        f.name,
        median.ops as f64 / median.passes as f64,
        median.ops as f64 / median.seconds / 1e6,
        median.passes as f64 / median.seconds,
        median.allocations as f64 / median.ops as f64,
        steady,
        median.ops,
        median.passes,
        f.replays,
        median.seconds * 1e3,
    );
}

fn memory(f: &FamilySpec, s: &Setup) {
    let copies = [1u32, 4, 16];
    let runs: Vec<Replayed> = copies.iter().map(|&c| replay_once(s, c)).collect();
    let (first, last) = (&runs[0], &runs[runs.len() - 1]);
    let slope =
        (last.peak_bytes as f64 - first.peak_bytes as f64) / (last.passes - first.passes) as f64;
    let cells: Vec<String> = runs
        .iter()
        .map(|r| format!("{} passes: {:.2} MB", r.passes, r.peak_bytes as f64 / 1e6))
        .collect();
    println!(
        "sim_families/{:<11} memory: {}; {:.1} bytes/pass",
        f.name,
        cells.join(", "),
        slope
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `--once`: one replay of each chosen family and nothing else, for a profiler.
    let once = args.iter().any(|a| a == "--once");
    let wanted: Vec<String> = args.into_iter().filter(|a| !a.starts_with('-')).collect();
    let chosen: Vec<&FamilySpec> = FAMILIES
        .iter()
        .filter(|f| wanted.is_empty() || wanted.iter().any(|w| w == f.name))
        .collect();
    let setups: Vec<Setup> = chosen.iter().map(|f| setup(f)).collect();
    if once {
        for (f, s) in chosen.iter().zip(&setups) {
            let r = replay_once(s, f.copies);
            println!(
                "sim_families/{:<11} one replay: {} ops, {} passes",
                f.name, r.ops, r.passes
            );
        }
        return;
    }
    for (f, s) in chosen.iter().zip(&setups) {
        speed(f, s);
    }
    for (f, s) in chosen.iter().zip(&setups) {
        if matches!(f.name, "expert-lru" | "hobbit" | "neuron-c64" | "tee-chain") {
            memory(f, s);
        }
    }
}

/// A synthetic stand-in for a TEE restoration plan, until TZ-LLM's policies (issue 13) exist.
///
/// Not a model of TZ-LLM: only its op mix. Per pass, for each of `LAYERS` layers: switch to
/// the secure world; restore the layer's weights in `CHUNKS` chunks, each a secure Alloc, a
/// Read that waits for it and a Decrypt that waits for the Read (restoration runs ahead of
/// compute, pipelined across layers, as TZ-LLM's pipelined restoration does); a Compute that
/// waits for the layer's decrypts and the previous layer's compute; an Evict per chunk after
/// the compute; a switch back to the normal world after the compute. Sizes are those of a
/// Llama-3-8B-like int8 layer split in 16 chunks.
struct TeeChainStandIn {
    counters: Counters,
    decrypts: Vec<OpId>,
    allocs: Vec<OpId>,
}

const LAYERS: u32 = 32;
const CHUNKS: u32 = 16;
const LAYER_BYTES: u64 = 218 << 20;

impl TeeChainStandIn {
    fn new() -> Self {
        TeeChainStandIn {
            counters: Counters::default(),
            decrypts: Vec::new(),
            allocs: Vec::new(),
        }
    }
}

impl Policy for TeeChainStandIn {
    fn name(&self) -> &str {
        "tee-chain-stand-in"
    }

    fn plan_warmup(&mut self, b: &mut PlanBuilder) -> Result<(), PolicyError> {
        let j = b.push(Op::Join, &[]);
        b.set_output(j);
        Ok(())
    }

    fn plan_pass(&mut self, _pass: &ForwardPass, b: &mut PlanBuilder) -> Result<(), PolicyError> {
        let chunk = LAYER_BYTES / CHUNKS as u64;
        let mut previous: Option<OpId> = None;
        for layer in 0..LAYERS {
            let tensor = TensorRef::new(layer, TensorKind::DenseFfn);
            let to_secure = b.push(Op::WorldSwitch { to: World::Secure }, previous.as_slice());
            self.decrypts.clear();
            self.allocs.clear();
            for _ in 0..CHUNKS {
                let alloc = b.push(
                    Op::Alloc {
                        tensor,
                        bytes: chunk,
                        secure: true,
                    },
                    &[],
                );
                let read = b.push(
                    Op::Read {
                        tensor,
                        precision: Precision::Int8,
                        bytes: chunk,
                        request_bytes: 512 << 10,
                    },
                    &[alloc],
                );
                let decrypt = b.push(
                    Op::Decrypt {
                        tensor,
                        bytes: chunk,
                        cluster: 0,
                        threads: 1,
                    },
                    &[read],
                );
                self.allocs.push(alloc);
                self.decrypts.push(decrypt);
            }
            self.decrypts.push(to_secure);
            self.decrypts.extend(previous);
            let compute = b.push(
                Op::matmul(
                    tensor,
                    Unit::Cpu {
                        cluster: 0,
                        threads: 4,
                    },
                    Precision::Int8,
                    3 * 14336,
                    4096,
                    1,
                ),
                &self.decrypts,
            );
            for _ in 0..CHUNKS {
                b.push(
                    Op::Evict {
                        tensor,
                        bytes: chunk,
                        secure: true,
                    },
                    &[compute],
                );
            }
            previous = Some(b.push(Op::WorldSwitch { to: World::Normal }, &[compute]));
        }
        let out = previous.expect("at least one layer");
        b.set_output(out);
        self.counters.lookups += LAYERS as u64;
        Ok(())
    }

    fn memory(&self) -> MemoryUse {
        MemoryUse {
            resident_bytes: 0,
            cache_bytes: 0,
        }
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }
}
