//! `edgesim validate`: the simulator's prediction and the executor's measurement of the same
//! trace, policy and budget, side by side.
//!
//! For every policy of an experiment at every budget, [`validate`] replays the trace twice
//! with freshly built policies: on the [`crate::sim::Simulator`] with the device
//! profile (normally the calibrated `scenarios/devices/host.json`), and on the
//! [`crate::exec::Executor`] with the weight store. The plans are the same (a policy
//! never learns which backend runs it), so pass `i` of one run is pass `i` of the other, and
//! the per-pass latencies can be compared one by one. Runs go one after another, never in
//! parallel, so measurements do not disturb each other.
//!
//! The bundle ([`bundle`]) holds per-token predicted and measured latencies, error summaries
//! per policy × budget × metric with the inputs' identity, plots, and where the time went in
//! each run (by op class and by resource), predicted and measured.

pub mod bundle;
pub mod metrics;
pub mod real_model;
pub mod record;

use crate::backend::{Backend, ResourceInfo};
use crate::compare::{self, Prepared, RunSpec};
use crate::exec::store::index::MODEL_FILE;
use crate::exec::store::{StoreKey, WeightStore};
use crate::exec::{ExecStats, Executor, ExecutorOptions};
use crate::replay::{replay, PassSource, PassStats, ReplayOptions, ReplayOutcome};
use crate::scenario::experiment::policy_context;
use crate::sim::Simulator;
use crate::trace::{ForwardPass, PassGrouper, Phase};
use record::{Breakdown, Recording};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An experiment resolved against a weight store and a device profile.
pub struct Setup {
    pub prepared: Prepared,
    pub store: Arc<WeightStore>,
    /// The device profile as given (name or path).
    pub device_arg: String,
    pub experiment_arg: String,
    /// Set when the store holds a real model: measured runs then compute its forward pass.
    pub real: Option<Arc<real_model::RealModel>>,
}

/// Loads the experiment, opens (and fully verifies) the store, and resolves the runs with the
/// store's (scaled) model and the given device. Every input error surfaces here, before any
/// timing starts.
pub fn setup(
    experiment: &str,
    store_dir: &Path,
    device: &str,
    key: Option<StoreKey>,
    policies: &[String],
    budgets: &[crate::scenario::BudgetSpec],
) -> Result<Setup, String> {
    let (mut exp, base) = compare::load_experiment(experiment)?;
    let store = WeightStore::open(store_dir, key)?;
    if store.is_encrypted() {
        return Err(format!(
            "{}: the store is encrypted, and the executor's plans do not decrypt yet: no policy emits Decrypt ops before computing with a tensor. TZ-LLM's restoration ops (issue 13) add them; until then run an unencrypted store (`edgesim exec prepare` without --encrypt)",
            store_dir.display()
        ));
    }
    let source = &store.index.source_model;
    if *source != exp.model {
        return Err(format!(
            "{}: the store holds model `{source}` (scaled by {}), but experiment `{}` uses `{}`; prepare a store for it with `edgesim exec prepare --model {}`",
            store_dir.display(),
            store.index.scale,
            exp.name,
            exp.model,
            exp.model
        ));
    }
    for (what, p) in [
        ("resident_precision", exp.resident_precision),
        ("offload_precision", exp.offload_precision),
    ] {
        if !store.index.precisions.contains(&p) {
            return Err(format!(
                "{}: experiment `{}` needs {what} {p}, but the store holds only {} (prepare it with --precisions including {p})",
                store_dir.display(),
                exp.name,
                store.index.precisions.iter().map(|p| p.name()).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    if !policies.is_empty() {
        // The bundle holds no analysis, so what narrowing drops from one does not matter here.
        compare::narrow_policies(&mut exp, policies)?;
    }
    if !budgets.is_empty() {
        exp.budgets = budgets.to_vec();
    }
    exp.device = device.to_string();
    exp.model = store_dir.join(MODEL_FILE).display().to_string();
    let prepared = compare::prepare(exp, base.as_deref())?;
    prepared.single_workload()?;
    let real = real_model::RealModel::for_store(&store, &prepared)?.map(Arc::new);
    Ok(Setup {
        prepared,
        store: Arc::new(store),
        device_arg: device.to_string(),
        experiment_arg: experiment.to_string(),
        real,
    })
}

/// Stops a pass source after `left` passes.
struct Limited<'a> {
    inner: &'a mut dyn PassSource,
    left: Option<usize>,
}

impl PassSource for Limited<'_> {
    fn next_pass(&mut self, pass: &mut ForwardPass) -> Result<bool, String> {
        if let Some(l) = self.left.as_mut() {
            if *l == 0 {
                return Ok(false);
            }
            *l -= 1;
        }
        self.inner.next_pass(pass)
    }
}

/// One backend's run of one policy at one budget.
#[derive(Clone, Debug, Serialize)]
pub struct RunData {
    #[serde(skip)]
    pub outcome: ReplayOutcome,
    pub resources: Vec<ResourceInfo>,
    pub decode: Breakdown,
    pub prefill: Breakdown,
    pub warmup: Breakdown,
}

/// A policy at a budget, predicted and measured.
#[derive(Clone, Debug, Serialize)]
pub struct RunPair {
    #[serde(skip)]
    pub spec: RunSpec,
    pub policy: String,
    pub label: String,
    pub budget_label: String,
    pub budget_bytes: u64,
    pub predicted: RunData,
    pub measured: RunData,
    pub exec: ExecStats,
    /// `VmHWM` of the process after the run (the peak over the whole process so far).
    pub peak_rss_bytes: Option<u64>,
    /// `/proc/loadavg`'s 1-minute load before the first and after the last measured run.
    pub load_before: Option<f64>,
    pub load_after: Option<f64>,
    /// Wall time of all measured runs.
    pub measured_seconds: f64,
    /// Every measured run: its wall time and load.
    pub repetitions: Vec<Repetition>,
    /// Real-model runs: the output against the in-memory runs (every repetition's must be
    /// bit-identical to the in-memory sparse run; this is the first's, with
    /// `identical_to_in_memory` true only if all were).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<crate::exec::model::Quality>,
}

/// Reads the 1-minute load average.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn run_on<B: Backend>(
    p: &Prepared,
    spec: &RunSpec,
    backend: B,
    max_passes: Option<usize>,
    drain: impl FnOnce(&mut B) -> Result<Vec<crate::backend::OpTiming>, String>,
) -> Result<(RunData, B), String> {
    let what = format!("policy `{}` at budget {}", spec.label, spec.budget_label);
    let ctx = policy_context(
        p.model.clone(),
        p.device.clone(),
        &p.experiment,
        spec.budget_bytes,
        p.max_context,
        spec.params.clone(),
    );
    let mut policy = crate::policy::build(&spec.policy, ctx).map_err(|e| format!("{what}: {e}"))?;
    let reader = p
        .single_workload()?
        .trace
        .open()
        .map_err(|e| e.to_string())?;
    let chunk = p.prefill_chunk();
    if policy.needs_future() {
        let future = compare::future_of(p, &p.single_workload()?.trace, chunk, max_passes)
            .map_err(|e| format!("{what}: {e}"))?;
        policy.give_future(std::sync::Arc::new(future));
    }
    let mut grouper = PassGrouper::new(reader, chunk as usize);
    let mut source = Limited {
        inner: &mut grouper,
        left: max_passes,
    };
    let mut rec = Recording::new(backend);
    let outcome = replay(
        policy.as_mut(),
        &mut rec,
        spec.budget_bytes,
        &mut source,
        // Validation compares predictions and measurements pass by pass.
        &ReplayOptions {
            keep_passes: true,
            ..ReplayOptions::default()
        },
    )
    .map_err(|e| format!("{what}: {e}"))?;
    let rest = drain(&mut rec.inner).map_err(|e| format!("{what}: {e}"))?;
    rec.record(&rest);
    let resources = rec.inner.resources().to_vec();
    let phase_of = |plan: usize| {
        plan.checked_sub(1)
            .and_then(|i| outcome.passes.get(i))
            .map(|p| p.phase)
    };
    let decode = Breakdown::of(rec.ops(), &resources, |plan| {
        phase_of(plan) == Some(Phase::Decode)
    });
    let prefill = Breakdown::of(rec.ops(), &resources, |plan| {
        phase_of(plan) == Some(Phase::Prefill)
    });
    let warmup = Breakdown::of(rec.ops(), &resources, |plan| plan == 0);
    Ok((
        RunData {
            outcome,
            resources,
            decode,
            prefill,
            warmup,
        },
        rec.inner,
    ))
}

/// One measured run's timing context.
#[derive(Clone, Debug, Serialize)]
pub struct Repetition {
    pub seconds: f64,
    pub load_before: Option<f64>,
    pub load_after: Option<f64>,
    /// The disk probe taken right before this run, when `--probe-disk` asked for one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_probe: Option<DiskProbe>,
}

/// The disk's read rate measured right before a run, and the factor by which the profile's
/// read curve was scaled for that run's prediction.
///
/// A shared virtual disk changes its rate from one minute to the next (docs/validation.md
/// measured the same plans at 57 to 86 ms per token within 20 minutes), more than the
/// validation's error targets. A profile calibrated once cannot follow that. The probe is a
/// measurement of the device with calibration's own method (1 MiB random `O_DIRECT` reads at
/// the profile's channel count, over the store's weight file), taken before the run and never
/// from it; the simulator then predicts the run for the disk as it is. What remains is the
/// model's error, not the disk's drift.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct DiskProbe {
    pub request_bytes: u64,
    pub depth: u32,
    pub seconds: f64,
    pub measured_bytes_per_s: f64,
    pub profile_bytes_per_s: f64,
    /// measured / profile: every point of the read curve is multiplied by it.
    pub scale: f64,
}

const PROBE_REQUEST_BYTES: u64 = 1 << 20;
const PROBE_SECONDS: f64 = 1.0;

/// Probes the store's weight file and returns the probe with the device profile scaled to it.
fn probe_disk(
    setup: &Setup,
    seed: u64,
) -> Result<(DiskProbe, std::sync::Arc<crate::hw::DeviceProfile>), String> {
    let device = &setup.prepared.device;
    let flash = crate::hw::cost::FlashModel::new(&device.storage)
        .map_err(|e| format!("device profile: {e}"))?;
    let depth = flash.channels();
    let path = setup.store.dir.join(crate::exec::store::index::DATA_FILE);
    let file_bytes = std::fs::metadata(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    // 1 MiB requests, or whole pages of a store smaller than that (test stores).
    let request_bytes = PROBE_REQUEST_BYTES.min(file_bytes / 4096 * 4096).max(4096);
    let profile_bytes_per_s = flash.curve_bytes_per_s(request_bytes);
    let measured_bytes_per_s =
        crate::exec::calibrate::storage::probe(&path, request_bytes, depth, PROBE_SECONDS, seed)?;
    let scale = measured_bytes_per_s / profile_bytes_per_s;
    let mut scaled = (**device).clone();
    for point in scaled.storage.read_curve.value.iter_mut() {
        point.bytes_per_s *= scale;
    }
    scaled.storage.read_curve.source = format!(
        "{} -- scaled by {scale:.4} for one validation run: a {PROBE_SECONDS} s probe right before it read {:.3} GB/s in {} KiB requests at depth {depth}, against {:.3} GB/s in the profile",
        scaled.storage.read_curve.source,
        measured_bytes_per_s / 1e9,
        request_bytes >> 10,
        profile_bytes_per_s / 1e9
    );
    Ok((
        DiskProbe {
            request_bytes,
            depth,
            seconds: PROBE_SECONDS,
            measured_bytes_per_s,
            profile_bytes_per_s,
            scale,
        },
        std::sync::Arc::new(scaled),
    ))
}

/// One run on the executor.
struct Measured {
    data: RunData,
    stats: ExecStats,
    rep: Repetition,
    quality: Option<crate::exec::model::Quality>,
}

fn predict(setup: &Setup, spec: &RunSpec, max_passes: Option<usize>) -> Result<RunData, String> {
    predict_on(setup, &setup.prepared.device, spec, max_passes)
}

/// Predicts `spec` on `device` (the setup's profile, or one scaled by a disk probe).
fn predict_on(
    setup: &Setup,
    device: &crate::hw::DeviceProfile,
    spec: &RunSpec,
    max_passes: Option<usize>,
) -> Result<RunData, String> {
    let p = &setup.prepared;
    let what = format!("policy `{}` at budget {}", spec.label, spec.budget_label);
    let sim = Simulator::new(device, spec.budget_bytes).map_err(|e| format!("{what}: {e}"))?;
    Ok(run_on(p, spec, sim, max_passes, |s| {
        s.drain().map_err(|e| e.to_string())
    })?
    .0)
}

fn measure(setup: &Setup, spec: &RunSpec, max_passes: Option<usize>) -> Result<Measured, String> {
    let p = &setup.prepared;
    let what = format!("policy `{}` at budget {}", spec.label, spec.budget_label);
    let mut options = ExecutorOptions::new(spec.budget_bytes, p.experiment.seed);
    let session = match &setup.real {
        Some(real) => Some(real.session().map_err(|e| format!("{what}: {e}"))?),
        None => None,
    };
    options.model = session.clone();
    let exec = Executor::new(&p.device, setup.store.clone(), &options)
        .map_err(|e| format!("{what}: {e}"))?;
    let load_before = load_average();
    let started = std::time::Instant::now();
    let (data, exec) = run_on(p, spec, exec, max_passes, |e| {
        e.drain().map_err(|e| e.to_string())
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let stats = exec.stats();
    drop(exec);
    let quality = match (&setup.real, &session) {
        (Some(real), Some(session)) => Some(real.quality(session)),
        _ => None,
    };
    Ok(Measured {
        data,
        stats,
        rep: Repetition {
            seconds,
            load_before,
            load_after: load_average(),
            disk_probe: None,
        },
        quality,
    })
}

/// Combines repeated measurements of one spec: each pass's latency is the median over the
/// repetitions; the breakdown and statistics are those of the repetition whose total time is
/// the median.
fn combine(mut reps: Vec<Measured>) -> Result<(RunData, ExecStats, Vec<Repetition>), String> {
    let n = reps.first().map_or(0, |r| r.data.outcome.passes.len());
    if reps.iter().any(|r| r.data.outcome.passes.len() != n) {
        return Err("repetitions ran different numbers of passes".into());
    }
    let info: Vec<Repetition> = reps.iter().map(|r| r.rep.clone()).collect();
    let mut medians = Vec::with_capacity(n);
    for i in 0..n {
        let mut v: Vec<crate::units::Nanos> = reps
            .iter()
            .map(|r| r.data.outcome.passes[i].latency)
            .collect();
        v.sort_unstable();
        medians.push(v[v.len() / 2]);
    }
    let mut order: Vec<usize> = (0..reps.len()).collect();
    order.sort_by(|&a, &b| reps[a].rep.seconds.total_cmp(&reps[b].rep.seconds));
    let mid = reps.swap_remove(order[order.len() / 2]);
    let mut data = mid.data;
    for (p, m) in data.outcome.passes.iter_mut().zip(medians) {
        p.latency = m;
    }
    data.outcome.stats = PassStats::of(&data.outcome.passes);
    Ok((data, mid.stats, info))
}

/// One prediction per repetition (with disk probes) becomes one: each pass's latency is the
/// median over the repetitions, the rest is the first repetition's (plans are the same).
fn median_prediction(mut reps: Vec<RunData>) -> Result<RunData, String> {
    if reps.len() <= 1 {
        return reps.pop().ok_or_else(|| "no prediction".to_string());
    }
    let n = reps[0].outcome.passes.len();
    if reps.iter().any(|r| r.outcome.passes.len() != n) {
        return Err("predictions ran different numbers of passes".into());
    }
    let mut medians = Vec::with_capacity(n);
    for i in 0..n {
        let mut v: Vec<crate::units::Nanos> =
            reps.iter().map(|r| r.outcome.passes[i].latency).collect();
        v.sort_unstable();
        medians.push(v[v.len() / 2]);
    }
    let mut data = reps.swap_remove(0);
    for (p, m) in data.outcome.passes.iter_mut().zip(medians) {
        p.latency = m;
    }
    data.outcome.stats = PassStats::of(&data.outcome.passes);
    Ok(data)
}

fn pair(spec: &RunSpec, predicted: RunData, measured: Vec<Measured>) -> Result<RunPair, String> {
    let what = format!("policy `{}` at budget {}", spec.label, spec.budget_label);
    let all_identical = measured
        .iter()
        .all(|m| m.quality.as_ref().is_some_and(|q| q.identical_to_in_memory));
    let quality = measured
        .first()
        .and_then(|m| m.quality.clone())
        .map(|mut q| {
            q.identical_to_in_memory = all_identical;
            q
        });
    let (measured, stats, repetitions) = combine(measured).map_err(|e| format!("{what}: {e}"))?;
    if predicted.outcome.passes.len() != measured.outcome.passes.len() {
        return Err(format!(
            "{what}: the simulator ran {} passes and the executor {}",
            predicted.outcome.passes.len(),
            measured.outcome.passes.len()
        ));
    }
    let first = repetitions.first().cloned();
    Ok(RunPair {
        spec: spec.clone(),
        policy: spec.policy.clone(),
        label: spec.label.clone(),
        budget_label: spec.budget_label.clone(),
        budget_bytes: spec.budget_bytes,
        predicted,
        measured,
        exec: stats,
        peak_rss_bytes: crate::exec::io::peak_rss_bytes(),
        load_before: first.as_ref().and_then(|r| r.load_before),
        load_after: repetitions.last().and_then(|r| r.load_after),
        measured_seconds: repetitions.iter().map(|r| r.seconds).sum(),
        repetitions,
        quality,
    })
}

/// Runs one spec on the simulator and once on the executor.
pub fn run_pair(
    setup: &Setup,
    spec: &RunSpec,
    max_passes: Option<usize>,
) -> Result<RunPair, String> {
    let predicted = predict(setup, spec, max_passes)?;
    let measured = measure(setup, spec, max_passes)?;
    pair(spec, predicted, vec![measured])
}

/// What `validate` is asked to do.
#[derive(Clone, Debug)]
pub struct ValidateOptions {
    pub experiment: String,
    pub store: PathBuf,
    pub device: String,
    pub key: Option<StoreKey>,
    pub policies: Vec<String>,
    /// Budgets replacing the experiment's (empty: keep them).
    pub budgets: Vec<crate::scenario::BudgetSpec>,
    /// Replay at most this many passes of the trace per run.
    pub max_passes: Option<usize>,
    /// Measured runs per policy and budget (each pass's latency is their median); the
    /// repetitions go round all runs, so a slow spell of a shared machine hits one sample of
    /// several runs rather than every sample of one.
    pub repeat: usize,
    /// Probe the disk's read rate right before every measured run and predict that run with
    /// the profile's read curve scaled to it (see [`DiskProbe`]).
    pub probe_disk: bool,
    pub out: PathBuf,
    /// The command line, echoed into the bundle.
    pub command: String,
}

/// Runs every policy × budget of the experiment on both backends and writes the bundle.
/// `progress` hears about each finished pair.
pub fn validate(
    options: &ValidateOptions,
    progress: &dyn Fn(usize, usize, &RunPair),
) -> Result<(PathBuf, Vec<bundle::SummaryRow>), String> {
    let setup = setup(
        &options.experiment,
        &options.store,
        &options.device,
        options.key.clone(),
        &options.policies,
        &options.budgets,
    )?;
    let runs = &setup.prepared.runs;
    let total = runs.len();
    let mut predicted: Vec<Vec<RunData>> = runs.iter().map(|_| Vec::new()).collect();
    if !options.probe_disk {
        for (i, spec) in runs.iter().enumerate() {
            predicted[i].push(predict(&setup, spec, options.max_passes)?);
        }
    }
    let mut measured: Vec<Vec<Measured>> = runs.iter().map(|_| Vec::new()).collect();
    for rep in 0..options.repeat.max(1) {
        for (i, spec) in runs.iter().enumerate() {
            let probe = if options.probe_disk {
                let (probe, device) = probe_disk(&setup, (rep * runs.len() + i) as u64)?;
                predicted[i].push(predict_on(&setup, &device, spec, options.max_passes)?);
                Some(probe)
            } else {
                None
            };
            let mut m = measure(&setup, spec, options.max_passes)?;
            m.rep.disk_probe = probe;
            measured[i].push(m);
        }
    }
    let predicted = predicted
        .into_iter()
        .map(median_prediction)
        .collect::<Result<Vec<_>, _>>()?;
    let mut pairs = Vec::with_capacity(total);
    for (i, (spec, (p, m))) in runs
        .iter()
        .zip(predicted.into_iter().zip(measured))
        .enumerate()
    {
        let pair = pair(spec, p, m)?;
        progress(i + 1, total, &pair);
        pairs.push(pair);
    }
    bundle::write(&setup, options, &pairs)
}
