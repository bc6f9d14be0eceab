//! Loading and preparing an experiment: the experiment file (bundled or a path), its
//! workloads' traces (files, bundled traces, or generated ones held in memory), the checks of
//! each trace against the model, the KV-cache sizing, the budgets, and the list of runs.
//! Every input error surfaces here, before anything runs or is written.

use crate::hw::DeviceProfile;
use crate::model::ModelGeometry;
use crate::scenario::experiment::policy_context;
use crate::scenario::GenerateSpec;
use crate::scenario::{self, Experiment, Footprint};
use crate::trace::gen::{
    ExpertGenConfig, ExpertTraceGenerator, NeuronGenConfig, NeuronPredictorSpec,
    NeuronTraceGenerator,
};
use crate::trace::{self, TokenSource, TraceHeader, TraceKind, TraceReader};
use crate::units::human_bytes;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Prefill tokens of one sequence per pass unless the experiment says otherwise.
pub const DEFAULT_MAX_PREFILL_CHUNK: u32 = 512;

/// Traces shipped inside the binary, so the default comparison runs from any directory.
pub const BUNDLED_TRACES: &[(&str, &[u8])] = &[(
    "mixtral-8x7b-synthetic",
    include_bytes!("../../traces/mixtral-8x7b-synthetic.est"),
)];

/// Experiments shipped inside the binary.
pub const BUNDLED_EXPERIMENTS: &[(&str, &str)] = &[
    (
        "default",
        include_str!("../../scenarios/experiments/default.json"),
    ),
    (
        "hobbit-orin",
        include_str!("../../scenarios/experiments/hobbit-orin.json"),
    ),
    (
        "hobbit-4090",
        include_str!("../../scenarios/experiments/hobbit-4090.json"),
    ),
    (
        "hobbit-4090-cpu",
        include_str!("../../scenarios/experiments/hobbit-4090-cpu.json"),
    ),
    (
        "hobbit-orin-phi",
        include_str!("../../scenarios/experiments/hobbit-orin-phi.json"),
    ),
    (
        "hobbit-4090-phi",
        include_str!("../../scenarios/experiments/hobbit-4090-phi.json"),
    ),
    (
        "tzllm-rk3588",
        include_str!("../../scenarios/experiments/tzllm-rk3588.json"),
    ),
    (
        "tzllm-rk3588-qwen",
        include_str!("../../scenarios/experiments/tzllm-rk3588-qwen.json"),
    ),
    (
        "tzllm-rk3588-phi",
        include_str!("../../scenarios/experiments/tzllm-rk3588-phi.json"),
    ),
    (
        "tzllm-rk3588-tinyllama",
        include_str!("../../scenarios/experiments/tzllm-rk3588-tinyllama.json"),
    ),
    (
        "tzllm-decode-llama",
        include_str!("../../scenarios/experiments/tzllm-decode-llama.json"),
    ),
    (
        "tzllm-decode-qwen",
        include_str!("../../scenarios/experiments/tzllm-decode-qwen.json"),
    ),
    (
        "tzllm-cache",
        include_str!("../../scenarios/experiments/tzllm-cache.json"),
    ),
    (
        "powerinfer2-oneplus12",
        include_str!("../../scenarios/experiments/powerinfer2-oneplus12.json"),
    ),
    (
        "powerinfer2-oneplus12-qwen2-7b",
        include_str!("../../scenarios/experiments/powerinfer2-oneplus12-qwen2-7b.json"),
    ),
    (
        "powerinfer2-oneplus12-relullama-13b",
        include_str!("../../scenarios/experiments/powerinfer2-oneplus12-relullama-13b.json"),
    ),
    (
        "powerinfer2-ablation",
        include_str!("../../scenarios/experiments/powerinfer2-ablation.json"),
    ),
    (
        "powerinfer2-prefill",
        include_str!("../../scenarios/experiments/powerinfer2-prefill.json"),
    ),
    (
        "powerinfer2-ace2",
        include_str!("../../scenarios/experiments/powerinfer2-ace2.json"),
    ),
];

/// Where a trace comes from.
#[derive(Clone, Debug)]
pub enum TraceInput {
    Bundled(&'static str, &'static [u8]),
    File(PathBuf),
    /// Generated at run time for the experiment's model by the seeded expert-trace generator,
    /// once per comparison, and held in memory (`name` says how it was generated).
    Generated {
        name: String,
        header: Box<TraceHeader>,
        records: Arc<Vec<trace::TokenRecord>>,
    },
}

/// An open trace: a file's records, or generated ones held in memory.
pub enum TokenStream {
    Reader(Box<TraceReader<Box<dyn Read + Send>>>),
    Memory {
        header: Box<TraceHeader>,
        records: Arc<Vec<trace::TokenRecord>>,
        next: usize,
    },
}

impl TokenSource for TokenStream {
    fn header(&self) -> &TraceHeader {
        match self {
            TokenStream::Reader(r) => r.header(),
            TokenStream::Memory { header, .. } => header,
        }
    }

    fn next_into(&mut self, rec: &mut trace::TokenRecord) -> Result<bool, trace::TraceError> {
        match self {
            TokenStream::Reader(r) => r.next_into(rec),
            TokenStream::Memory { records, next, .. } => match records.get(*next) {
                Some(r) => {
                    rec.clone_from(r);
                    *next += 1;
                    Ok(true)
                }
                None => Ok(false),
            },
        }
    }
}

impl TraceInput {
    /// `bundled:<name>` or a path; relative paths are taken from `base`.
    pub fn resolve(spec: &str, base: Option<&Path>) -> Result<Self, String> {
        if let Some(name) = spec.strip_prefix("bundled:") {
            return BUNDLED_TRACES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(n, b)| TraceInput::Bundled(n, b))
                .ok_or_else(|| {
                    format!(
                        "unknown bundled trace `{name}`; bundled traces: {}",
                        BUNDLED_TRACES
                            .iter()
                            .map(|t| t.0)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                });
        }
        let p = Path::new(spec);
        Ok(TraceInput::File(match base {
            Some(b) if p.is_relative() => b.join(p),
            _ => p.to_path_buf(),
        }))
    }

    pub fn name(&self) -> String {
        match self {
            TraceInput::Bundled(n, _) => format!("bundled:{n}"),
            TraceInput::File(p) => p.display().to_string(),
            TraceInput::Generated { name, .. } => name.clone(),
        }
    }

    /// Opens a fresh reader (each run reads the trace on its own).
    pub fn open(&self) -> Result<TokenStream, trace::TraceError> {
        match self {
            TraceInput::Bundled(n, bytes) => {
                let path = PathBuf::from(format!("traces/{n}.est (bundled)"));
                TraceReader::from_reader(
                    Box::new(Cursor::new(*bytes)) as Box<dyn Read + Send>,
                    &path,
                )
                .map(|r| TokenStream::Reader(Box::new(r)))
            }
            TraceInput::File(p) => {
                let f = std::fs::File::open(p)
                    .map_err(|e| trace::TraceError::io(p, "open the trace", e))?;
                TraceReader::from_reader(
                    Box::new(std::io::BufReader::with_capacity(1 << 16, f)) as Box<dyn Read + Send>,
                    p,
                )
                .map(|r| TokenStream::Reader(Box::new(r)))
            }
            TraceInput::Generated {
                header, records, ..
            } => Ok(TokenStream::Memory {
                header: header.clone(),
                records: records.clone(),
                next: 0,
            }),
        }
    }
}

impl TraceInput {
    /// Tokens (records) of the trace, from a file's trailer: known before any record is read,
    /// and an early error for a file whose writing was interrupted.
    pub fn token_count(&self) -> Result<u64, trace::TraceError> {
        match self {
            TraceInput::Bundled(n, bytes) => trace::trailer::record_count_of(
                &mut Cursor::new(*bytes),
                Path::new(&format!("traces/{n}.est (bundled)")),
            ),
            TraceInput::File(p) => trace::trailer::record_count(p),
            TraceInput::Generated { records, .. } => Ok(records.len() as u64),
        }
    }

    /// Generates the workload `spec` for `model` (the same records as `edgesim trace gen`
    /// with the matching flags) and keeps them in memory for every run to replay.
    pub fn generate(model: &ModelGeometry, spec: &GenerateSpec) -> Result<Self, trace::TraceError> {
        Self::generate_for(model, None, spec)
    }

    /// As [`TraceInput::generate`]; a dense model gets a neuron trace whose mean active
    /// fraction is `active_fraction` (the model profile's sparsity).
    pub fn generate_for(
        model: &ModelGeometry,
        active_fraction: Option<crate::sourced::Sourced<f64>>,
        spec: &GenerateSpec,
    ) -> Result<Self, trace::TraceError> {
        let tokens = u64::from(spec.sequences) * u64::from(spec.prefill + spec.decode);
        if !model.is_moe() && active_fraction.is_none() {
            // A dense model without a stated sparsity: a token schedule with no neurons
            // recorded (what the confidential family's dense policies replay).
            return Self::dense_schedule(model, spec);
        }
        if !model.is_moe() {
            let bad = |m: String| {
                trace::TraceError::new(trace::TraceErrorKind::Input, Path::new("generate"), m)
            };
            let f = active_fraction.ok_or_else(|| {
                bad(format!(
                    "dense model `{}` states no activation sparsity, so no neuron trace can be generated for it",
                    model.name
                ))
            })?;
            let mut cfg = NeuronGenConfig::new(spec.seed, tokens, f);
            cfg.sequences = spec.sequences;
            cfg.prefill_per_sequence = spec.prefill;
            cfg.model_seed = spec.model_seed;
            cfg.predictor = spec.neuron_predictor.map(|p| NeuronPredictorSpec {
                recall: p.recall,
                precision: p.precision,
            });
            let mut generator = NeuronTraceGenerator::new(model, &cfg)?;
            let mut records = Vec::with_capacity(tokens as usize);
            let mut rec = trace::TokenRecord::default();
            while generator.next_into(&mut rec)? {
                records.push(rec.clone());
            }
            return Ok(TraceInput::Generated {
                name: format!(
                    "generated:{} neurons seed {} {}x[{},{}]",
                    model.name, spec.seed, spec.sequences, spec.prefill, spec.decode
                ),
                header: Box::new(generator.header().clone()),
                records: Arc::new(records),
            });
        }
        let mut cfg = ExpertGenConfig::new(model, spec.seed, tokens);
        cfg.sequences = spec.sequences;
        cfg.prefill_per_sequence = spec.prefill;
        cfg.prediction_accuracy = spec.predict_accuracy.clone();
        let mut generator = ExpertTraceGenerator::new(model, &cfg)?;
        let mut records = Vec::with_capacity(tokens as usize);
        let mut rec = trace::TokenRecord::default();
        while generator.next_into(&mut rec)? {
            records.push(rec.clone());
        }
        Ok(TraceInput::Generated {
            name: format!(
                "generated:{} seed {} {}x[{},{}]",
                model.name, spec.seed, spec.sequences, spec.prefill, spec.decode
            ),
            header: Box::new(generator.header().clone()),
            records: Arc::new(records),
        })
    }
}

impl TraceInput {
    /// A dense model's workload for policies that compute every weight (TZ-LLM and its
    /// baselines): the token schedule only — `sequences` requests of `prefill` prompt tokens
    /// and `decode` generated ones — as a neuron trace in which no neuron is recorded active.
    /// Neuron-offloading policies would load nothing from it; their workloads need a
    /// recorded or generated neuron trace (`edgesim trace gen --neurons`).
    fn dense_schedule(
        model: &ModelGeometry,
        spec: &GenerateSpec,
    ) -> Result<Self, trace::TraceError> {
        use crate::trace::{Phase, SourceKind, TraceSource};
        if !spec.predict_accuracy.is_empty() {
            return Err(trace::TraceError::new(
                trace::TraceErrorKind::Input,
                Path::new("generate"),
                format!(
                    "model {} is dense: a generated dense workload records no routing, so `predict_accuracy` does not apply",
                    model.name
                ),
            ));
        }
        let header = TraceHeader::neuron(
            model,
            false,
            TraceSource {
                kind: SourceKind::Synthetic,
                description: format!(
                    "token schedule only for dense {}: {} sequences of {} prompt and {} generated tokens;                      no neuron activity recorded (for policies that compute every weight)",
                    model.name, spec.sequences, spec.prefill, spec.decode
                ),
                parameters: serde_json::json!({
                    "generator": "edgesim dense schedule v1",
                    "sequences": spec.sequences,
                    "prefill": spec.prefill,
                    "decode": spec.decode,
                }),
                targets: Vec::new(),
            },
        );
        let mut records =
            Vec::with_capacity((spec.sequences * (spec.prefill + spec.decode)) as usize);
        for sequence in 0..spec.sequences {
            for position in 0..spec.prefill + spec.decode {
                records.push(trace::TokenRecord {
                    sequence,
                    position,
                    phase: if position < spec.prefill {
                        Phase::Prefill
                    } else {
                        Phase::Decode
                    },
                    neuron_offsets: vec![0; model.layers as usize + 1],
                    ..trace::TokenRecord::default()
                });
            }
        }
        Ok(TraceInput::Generated {
            name: format!(
                "generated:{} schedule {}x[{},{}]",
                model.name, spec.sequences, spec.prefill, spec.decode
            ),
            header: Box::new(header),
            records: Arc::new(records),
        })
    }
}

/// Loads a bundled experiment by name or an experiment file by path; returns it with the folder
/// relative trace paths are taken from.
pub fn load_experiment(name_or_path: &str) -> Result<(Experiment, Option<PathBuf>), String> {
    let (text, file, base) = if name_or_path.ends_with(".json") || name_or_path.contains('/') {
        let text = std::fs::read_to_string(name_or_path)
            .map_err(|e| format!("{name_or_path}: cannot read the experiment: {e}"))?;
        let base = Path::new(name_or_path).parent().map(Path::to_path_buf);
        (text, name_or_path.to_string(), base)
    } else {
        let text = BUNDLED_EXPERIMENTS
            .iter()
            .find(|(n, _)| *n == name_or_path)
            .map(|(_, t)| t.to_string())
            .ok_or_else(|| {
                format!(
                    "unknown experiment `{name_or_path}`; bundled experiments: {} (or give a path to a .json file)",
                    BUNDLED_EXPERIMENTS.iter().map(|e| e.0).collect::<Vec<_>>().join(", ")
                )
            })?;
        (
            text,
            format!("scenarios/experiments/{name_or_path}.json (bundled)"),
            None,
        )
    };
    Ok((parse_experiment(&text, &file)?, base))
}

/// Parses and checks an experiment's text; `file` names it in error messages.
pub fn parse_experiment(text: &str, file: &str) -> Result<Experiment, String> {
    let mut exp: Experiment = parse_json(text, file)?;
    exp.file = file.to_string();
    exp.check().map_err(|e| format!("{file}: {e}"))?;
    Ok(exp)
}

/// Parses JSON, naming the file, the field path and the line/column on failure.
fn parse_json<T: serde::de::DeserializeOwned>(text: &str, file: &str) -> Result<T, String> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        format!(
            "{file}:{}:{}: field `{path}`: {inner}",
            inner.line(),
            inner.column()
        )
    })
}

/// One run of a comparison: a policy at a budget on a workload.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub index: usize,
    /// Index into [`Prepared::workloads`].
    pub workload: usize,
    pub policy: String,
    pub label: String,
    pub params: serde_json::Value,
    pub budget_label: String,
    pub budget_bytes: u64,
}

/// One workload of a prepared experiment.
pub struct PreparedWorkload {
    /// Empty for an experiment with a single `trace`.
    pub label: String,
    pub trace: TraceInput,
    pub header: TraceHeader,
}

/// Everything resolved from an experiment before any run starts.
pub struct Prepared {
    pub experiment: Experiment,
    pub device: Arc<DeviceProfile>,
    pub model: Arc<ModelGeometry>,
    pub workloads: Vec<PreparedWorkload>,
    pub max_context: u32,
    pub footprint: Footprint,
    pub runs: Vec<RunSpec>,
}

impl Prepared {
    /// Most prefill tokens per pass: the experiment's `max_prefill_chunk` or the default.
    pub fn prefill_chunk(&self) -> u32 {
        self.experiment
            .max_prefill_chunk
            .unwrap_or(DEFAULT_MAX_PREFILL_CHUNK)
    }

    /// The experiment's only workload: the executor and validation replay one trace.
    pub fn single_workload(&self) -> Result<&PreparedWorkload, String> {
        match self.workloads.as_slice() {
            [w] => Ok(w),
            ws => Err(format!(
                "experiment `{}` has {} workloads; validation and `exec run` replay exactly one trace (use an experiment with a single `trace`)",
                self.experiment.name,
                ws.len()
            )),
        }
    }
}

/// Loads profiles, checks the trace against the model, resolves budgets and lists the runs.
/// Every input error surfaces here, before anything runs or is written.
/// Errors name the experiment's file first.
pub fn prepare(experiment: Experiment, base: Option<&Path>) -> Result<Prepared, String> {
    let file = experiment.file.clone();
    prepare_named(experiment, base).map_err(|e| {
        if file.is_empty() || e.starts_with(&file) {
            e
        } else {
            format!("{file}: {e}")
        }
    })
}

fn prepare_named(experiment: Experiment, base: Option<&Path>) -> Result<Prepared, String> {
    let device = scenario::load_device(&experiment.device).map_err(|e| e.to_string())?;
    let profile = scenario::load_model(&experiment.model).map_err(|e| e.to_string())?;
    let model = ModelGeometry::from_profile(&profile)
        .map_err(|e| format!("model `{}`: {e}", experiment.model))?;
    let model = Arc::new(model);
    let mut inputs: Vec<(String, TraceInput)> = Vec::new();
    if let Some(t) = &experiment.trace {
        inputs.push((String::new(), TraceInput::resolve(t, base)?));
    }
    for w in &experiment.workloads {
        let input = match (&w.trace, &w.generate) {
            (Some(t), _) => TraceInput::resolve(t, base)?,
            (None, Some(g)) => TraceInput::generate_for(
                &model,
                profile.sparsity.as_ref().map(|s| s.active_fraction.clone()),
                g,
            )
            .map_err(|e| format!("workload `{}`: {e}", w.label))?,
            (None, None) => {
                return Err(format!("workload `{}` has no trace", w.label));
            }
        };
        inputs.push((w.label.clone(), input));
    }
    let runs_per_workload = experiment.budgets.len() * experiment.policies.len();
    let mut sizes = Vec::new();
    for (label, trace) in &inputs {
        let tokens = trace.token_count().map_err(|e| workload_error(label, e))?;
        sizes.push((trace.name(), tokens, runs_per_workload));
    }
    if let Some(problem) = crate::limits::sweep_problem(&sizes) {
        return Err(problem);
    }
    let mut workloads = Vec::new();
    let mut longest = 1;
    for (label, trace) in inputs {
        let reader = trace.open().map_err(|e| workload_error(&label, e))?;
        let header = reader.header().clone();
        check_trace_fits_model(&header, &model, &trace.name())?;
        if experiment.max_context.is_none() {
            longest = longest
                .max(longest_sequence(reader).map_err(|e| format!("{}: {e}", trace.name()))?);
        }
        workloads.push(PreparedWorkload {
            label,
            trace,
            header,
        });
    }
    let max_context = experiment.max_context.unwrap_or(longest);
    let footprint = Footprint::of(
        &model,
        experiment.resident_precision,
        experiment.offload_precision,
        max_context,
    );
    let usable = device.usable_memory_bytes();
    let mut budgets = Vec::new();
    for (bi, b) in experiment.budgets.iter().enumerate() {
        let (bytes, label) = b.resolve(footprint, &format!("budgets[{bi}]"))?;
        if bytes > usable {
            return Err(format!(
                "budgets[{bi}] ({label}) is {} but device `{}` has {} usable memory",
                human_bytes(bytes),
                device.name,
                human_bytes(usable)
            ));
        }
        budgets.push((bytes, label));
    }
    // Policy parameters are checked once here, so a bad one is named with its file and field
    // path before any run starts (a run's other errors surface when it runs).
    for (i, spec) in experiment.policies.iter().enumerate() {
        let Some(&(bytes, _)) = budgets.first() else {
            break;
        };
        let ctx = policy_context(
            model.clone(),
            Arc::new(device.clone()),
            &experiment,
            bytes,
            max_context,
            spec.params.clone(),
        );
        if let Err(crate::policy::PolicyError::BadParameter(m)) =
            crate::policy::build(&spec.name, ctx)
        {
            return Err(format!("policies[{i}]: {m}"));
        }
    }
    let mut runs = Vec::new();
    for wi in 0..workloads.len() {
        for (bytes, label) in &budgets {
            for p in &experiment.policies {
                runs.push(RunSpec {
                    index: runs.len(),
                    workload: wi,
                    policy: p.name.clone(),
                    label: p.label().to_string(),
                    params: p.params.clone(),
                    budget_label: label.clone(),
                    budget_bytes: *bytes,
                });
            }
        }
    }
    Ok(Prepared {
        device: Arc::new(device),
        model,
        workloads,
        max_context,
        footprint,
        runs,
        experiment,
    })
}

/// The trace must record the model the experiment simulates: an expert trace for an MoE model,
/// or a neuron trace (what the neuron-level policies plan) for a dense one.
fn check_trace_fits_model(h: &TraceHeader, m: &ModelGeometry, name: &str) -> Result<(), String> {
    if h.kind == TraceKind::Neuron && !m.is_moe() {
        if h.layers != m.layers {
            return Err(format!(
                "{name}: header field `layers` is {}, but model `{}` has {}; the trace was recorded for `{}`",
                h.layers, m.name, m.layers, h.model
            ));
        }
        for (l, &got) in h.neurons_per_layer.iter().enumerate() {
            let want = m.neurons_in_layer(l as u32);
            if got != want {
                return Err(format!(
                    "{name}: header field `neurons_per_layer` gives layer {l} {got} neurons, but model `{}` has {want}; the trace was recorded for `{}`",
                    m.name, h.model
                ));
            }
        }
        return Ok(());
    }
    if h.kind != TraceKind::Expert {
        return Err(format!(
            "{name}: a {:?} trace cannot drive expert-offloading policies; give an expert trace",
            h.kind
        ));
    }
    let checks = [
        ("layers", h.layers, m.layers),
        ("first_moe_layer", h.first_moe_layer, m.dense_layers),
        ("experts", h.experts, m.experts),
        ("top_k", h.top_k, m.top_k),
    ];
    for (field, got, want) in checks {
        if got != want {
            return Err(format!(
                "{name}: header field `{field}` is {got}, but model `{}` has {want}; the trace was recorded for `{}`",
                m.name, h.model
            ));
        }
    }
    Ok(())
}

/// A trace error of a workload: an experiment's single `trace` has no label to name.
fn workload_error(label: &str, e: trace::TraceError) -> String {
    if label.is_empty() {
        e.to_string()
    } else {
        format!("workload `{label}`: {e}")
    }
}

/// Longest sequence in the trace (positions + 1): what the KV cache must hold. Stops at the
/// first position past [`crate::limits::MAX_CONTEXT`].
fn longest_sequence<S: TokenSource>(mut source: S) -> Result<u32, String> {
    let mut rec = trace::TokenRecord::default();
    let mut longest = 1;
    while source.next_into(&mut rec).map_err(|e| e.to_string())? {
        if rec.position >= crate::limits::MAX_CONTEXT {
            return Err(format!(
                "sequence {} reaches position {}, above the bound of {} positions per sequence (`max_context`, docs/limits.md)",
                rec.sequence,
                rec.position,
                crate::limits::MAX_CONTEXT
            ));
        }
        longest = longest.max(rec.position + 1);
    }
    Ok(longest)
}
