//! Writing a weight store: seeded weights for every stored tensor at every precision,
//! quantized and packed for the LUT kernels, 4 KiB aligned, with an index.

use super::crypt::{self, StoreKey, CHUNK_BYTES};
use super::index::{
    EncryptionInfo, StoreEntry, StoreIndex, DATA_FILE, FORMAT_NAME, FORMAT_VERSION, INDEX_FILE,
    MODEL_FILE,
};
use super::layout::{self, MatrixFormat, MatrixSpec, ALIGN, GROUP};
use super::rowwise;
use crate::kernels::{PackedMatrix, QuantScheme};
use crate::model::{ModelGeometry, ModelProfile, Precision, TensorRef};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What to write.
#[derive(Clone, Debug)]
pub struct PrepareOptions {
    /// The model's name as given (bundled name or profile path), recorded in the index.
    pub source_model: String,
    pub scale: u32,
    pub precisions: Vec<Precision>,
    pub seed: u64,
    /// Encrypt every tensor with this key.
    pub key: Option<StoreKey>,
    /// The real model file the weights come from, recorded in the index.
    pub model_file: Option<String>,
    /// Its SHA-256 (set by `exec::model::prepare_real`).
    pub model_file_sha256: Option<String>,
}

/// What was written.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub dir: PathBuf,
    pub tensors: usize,
    pub entries: usize,
    pub data_bytes: u64,
}

/// Seed of one matrix: the store seed mixed with the tensor and matrix names (FNV-1a), so every
/// matrix has its own stream whatever order tensors are generated in.
fn matrix_seed(seed: u64, tensor: &TensorRef, matrix: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in tensor
        .to_string()
        .bytes()
        .chain([b'/'])
        .chain(matrix.bytes())
    {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Uniform weights in ±1/sqrt(cols): the scale of an initialised linear layer.
fn generate(seed: u64, rows: u32, cols: u32) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let a = 1.0 / (cols as f32).sqrt();
    (0..rows as usize * cols as usize)
        .map(|_| rng.gen_range(-a..a))
        .collect()
}

/// The payload of one matrix.
fn encode_matrix(
    spec: &MatrixSpec,
    weights: &[f32],
    precision: Precision,
) -> Result<Vec<u8>, String> {
    let bits = layout::weight_bits(precision)?;
    let q = QuantScheme::MinMax { bits, group: GROUP }
        .quantize(weights, spec.rows as usize, spec.cols as usize)
        .map_err(|e| format!("matrix `{}`: {e}", spec.name))?;
    Ok(match spec.format {
        MatrixFormat::Lut => PackedMatrix::pack(&q).payload().to_vec(),
        MatrixFormat::Rowwise => rowwise::encode(&q),
    })
}

/// Seeded matrices of the given `(name, rows, cols)` shapes at `precision`, laid out back to
/// back as a store tensor would be (for benchmarks and tests).
pub fn synthetic_tensor(
    shapes: &[(&str, u32, u32)],
    precision: Precision,
    seed: u64,
) -> Result<(Vec<u8>, Vec<MatrixSpec>), String> {
    let mut payload = Vec::new();
    let mut specs = Vec::new();
    for (i, &(name, rows, cols)) in shapes.iter().enumerate() {
        let spec = MatrixSpec {
            name: name.to_string(),
            rows,
            cols,
            format: if (rows as usize).is_multiple_of(crate::kernels::TILE_ROWS) {
                MatrixFormat::Lut
            } else {
                MatrixFormat::Rowwise
            },
            offset: payload.len() as u64,
            bytes: layout::matrix_bytes(rows, cols, precision),
        };
        let w = generate(seed.wrapping_add(i as u64), rows, cols);
        payload.extend_from_slice(&encode_matrix(&spec, &w, precision)?);
        specs.push(spec);
    }
    Ok((payload, specs))
}

/// A tensor's payload and its matrices.
type Encoded = (Vec<u8>, Vec<MatrixSpec>);

/// Where a store's f32 weights come from before they are quantized: seeded ([`Synthetic`]) or
/// a real model's file (`exec::model::GgufWeights`).
pub trait MatrixSource: Sync {
    /// The `spec.rows × spec.cols` row-major weights of matrix `spec` of `tensor`.
    fn weights(&self, tensor: TensorRef, spec: &MatrixSpec) -> Result<Vec<f32>, String>;

    /// How the weights were made, for the index.
    fn describe(&self) -> String;
}

/// Seeded synthetic weights: uniform in ±1/sqrt(cols), one ChaCha8 stream per matrix.
pub struct Synthetic {
    pub seed: u64,
}

impl MatrixSource for Synthetic {
    fn weights(&self, tensor: TensorRef, spec: &MatrixSpec) -> Result<Vec<f32>, String> {
        Ok(generate(
            matrix_seed(self.seed, &tensor, &spec.name),
            spec.rows,
            spec.cols,
        ))
    }

    fn describe(&self) -> String {
        format!(
            "synthetic: uniform in ±1/sqrt(columns) from ChaCha8Rng seeded per matrix from seed {}, quantized min/max per group of {} (edgesim::kernels::QuantScheme::MinMax)",
            self.seed,
            GROUP.get()
        )
    }
}

/// One tensor at one precision: its payload and matrices.
fn encode_tensor(
    m: &ModelGeometry,
    tensor: TensorRef,
    precision: Precision,
    source: &dyn MatrixSource,
) -> Result<(Vec<u8>, Vec<MatrixSpec>), String> {
    let specs = layout::tensor_matrices(m, tensor, precision)?;
    let mut payload = Vec::with_capacity(specs.iter().map(|s| s.bytes as usize).sum());
    for s in &specs {
        let w = source.weights(tensor, s)?;
        if w.len() != s.rows as usize * s.cols as usize {
            return Err(format!(
                "{tensor} `{}`: the weight source gave {} values for {} x {}",
                s.name,
                w.len(),
                s.rows,
                s.cols
            ));
        }
        let bytes = encode_matrix(s, &w, precision)?;
        if bytes.len() as u64 != s.bytes {
            return Err(format!(
                "{tensor} `{}` at {precision}: encoded {} bytes, expected {}",
                s.name,
                bytes.len(),
                s.bytes
            ));
        }
        payload.extend_from_slice(&bytes);
    }
    Ok((payload, specs))
}

/// Writes the store for `profile` (already scaled) into `dir`, replacing a store there, with
/// seeded synthetic weights. `progress` is called with (entries written, entries in all).
pub fn prepare(
    profile: &ModelProfile,
    dir: &Path,
    options: &PrepareOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Prepared, String> {
    let m = ModelGeometry::from_profile(profile)
        .map_err(|e| format!("model `{}`: {e}", profile.name))?;
    let source = Synthetic { seed: options.seed };
    prepare_with(
        profile,
        dir,
        options,
        &layout::stored_tensors(&m),
        None,
        &source,
        progress,
    )
}

/// Writes a store of `tensors` with weights from `source`. `neuron_cluster` is recorded in
/// the index when the tensors are a neuron-cluster layout.
pub fn prepare_with(
    profile: &ModelProfile,
    dir: &Path,
    options: &PrepareOptions,
    tensors: &[TensorRef],
    neuron_cluster: Option<u32>,
    source: &dyn MatrixSource,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Prepared, String> {
    let m = ModelGeometry::from_profile(profile)
        .map_err(|e| format!("model `{}`: {e}", profile.name))?;
    if options.precisions.is_empty() {
        return Err("give at least one precision to store".into());
    }
    for &p in &options.precisions {
        layout::weight_bits(p)?;
    }
    let tensors = tensors.to_vec();
    // Fail on an unstorable shape before writing anything.
    for &t in &tensors {
        for &p in &options.precisions {
            layout::tensor_matrices(&m, t, p)?;
        }
    }
    let store_bytes: u64 = tensors
        .iter()
        .flat_map(|&t| options.precisions.iter().map(move |&p| (t, p)))
        .map(|(t, p)| layout::align_up(m.bytes(t.layer as u32, t.kind, p)))
        .fold(0u64, u64::saturating_add);
    crate::limits::check_count(
        "store size in bytes",
        store_bytes,
        crate::limits::MAX_STORE_BYTES,
    )?;
    // The whole store is written into a staging folder beside `dir` and moved into place when
    // complete: an interrupted prepare leaves the old store or none (crate::staged_dir).
    let staged = crate::staged_dir::StagedDir::create(dir, INDEX_FILE)
        .map_err(|e| format!("{}: cannot create the store folder: {e}", dir.display()))?;
    let staging = staged.path(DATA_FILE);
    let file = std::fs::File::create(&staging)
        .map_err(|e| format!("{}: cannot create: {e}", staging.display()))?;
    let mut out = std::io::BufWriter::with_capacity(8 << 20, file);
    let io = |e: std::io::Error| format!("{}: cannot write: {e}", staging.display());

    let jobs: Vec<(TensorRef, Precision)> = tensors
        .iter()
        .flat_map(|&t| options.precisions.iter().map(move |&p| (t, p)))
        .collect();
    let total = jobs.len();
    let mut entries = Vec::with_capacity(total);
    let mut offset = 0u64;
    // Batches bound memory; within a batch tensors are generated in parallel, written in order.
    for batch in jobs.chunks(32) {
        let encoded: Vec<Result<Encoded, String>> = batch
            .par_iter()
            .map(|&(t, p)| encode_tensor(&m, t, p, source))
            .collect();
        for (&(tensor, precision), result) in batch.iter().zip(encoded) {
            let (payload, matrices) = result?;
            let label = tensor.to_string();
            let index = entries.len() as u32;
            let stored = match &options.key {
                Some(key) => crypt::seal(
                    key,
                    index,
                    &crypt::associated_data(&label, precision.name()),
                    &payload,
                ),
                None => payload.clone(),
            };
            out.write_all(&stored).map_err(io)?;
            let padded = layout::align_up(stored.len() as u64);
            out.write_all(&vec![0u8; (padded - stored.len() as u64) as usize])
                .map_err(io)?;
            entries.push(StoreEntry {
                tensor: label,
                precision,
                offset,
                bytes: payload.len() as u64,
                stored_bytes: stored.len() as u64,
                crc32: crc32fast::hash(&stored),
                matrices,
            });
            offset += padded;
            progress(entries.len(), total);
        }
    }
    let file = out.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    drop(file);
    let index = StoreIndex {
        format: FORMAT_NAME.into(),
        version: FORMAT_VERSION,
        source_model: options.source_model.clone(),
        scale: options.scale,
        model: profile.clone(),
        seed: options.seed,
        weights: source.describe(),
        group: GROUP.get() as u32,
        precisions: options.precisions.clone(),
        data_file: DATA_FILE.into(),
        data_bytes: offset,
        alignment: ALIGN,
        encryption: options.key.as_ref().map(|k| EncryptionInfo {
            cipher: "chacha20poly1305".into(),
            chunk_bytes: CHUNK_BYTES as u64,
            key_origin: k.origin.clone(),
            key_id: k.id(),
        }),
        entries,
        neuron_cluster,
        model_file: options.model_file.clone(),
        model_file_sha256: options.model_file_sha256.clone(),
        binding: None,
    };
    // The (scaled) model profile on its own, so experiments can name it by path.
    let mut model =
        serde_json::to_vec_pretty(profile).map_err(|e| format!("cannot format the model: {e}"))?;
    model.push(b'\n');
    let mut index = index;
    index.binding = Some(super::binding::bind(&index, &model, options.key.as_ref()));
    let mut text =
        serde_json::to_vec_pretty(&index).map_err(|e| format!("cannot format the index: {e}"))?;
    text.push(b'\n');
    let write = |name: &str, bytes: &[u8]| {
        staged
            .write(name, bytes)
            .map_err(|e| format!("{}: cannot write: {e}", staged.path(name).display()))
    };
    write(MODEL_FILE, &model)?;
    write(INDEX_FILE, &text)?;
    staged
        .commit()
        .map_err(|e| format!("{}: cannot move the store into place: {e}", dir.display()))?;
    Ok(Prepared {
        dir: dir.to_path_buf(),
        tensors: tensors.len(),
        entries: index.entries.len(),
        data_bytes: offset,
    })
}
