//! A weight store from a real model's GGUF file, with its FFNs as neuron clusters.
//!
//! `edgesim exec prepare --gguf smollm2 --cluster C` writes every tensor the neuron-level
//! policies read: the token embedding (the tied output head), each layer's attention (Q, K, V
//! stacked, the output projection, the two norms) and each layer's FFN as clusters of `C`
//! neurons ([`super::bundle`]). The weights are the file's, dequantized to f32 and requantized
//! min/max in groups of 64 at each stored precision (the store's format, so a tensor's payload
//! is exactly the bytes the model geometry charges and a policy's Read names).

use super::bundle::bundle_rows;
use crate::exec::store::layout::{self, MatrixSpec};
use crate::exec::store::{prepare_with, MatrixSource, PrepareOptions, Prepared};
use crate::llm::gguf::GgufFile;
use crate::llm::model::LlamaConfig;
use crate::model::{ModelGeometry, ModelProfile, TensorKind, TensorRef};
use rayon::prelude::*;
use std::path::Path;

/// One layer's matrices in f32, row-major as the loader stacks them.
struct LayerF32 {
    /// `(q + 2·kv) × hidden`.
    qkv: Vec<f32>,
    /// `hidden × q`.
    output: Vec<f32>,
    /// Attention norm, then FFN norm.
    norms: Vec<f32>,
    /// `ffn × hidden`.
    gate: Vec<f32>,
    up: Vec<f32>,
    /// `hidden × ffn`.
    down: Vec<f32>,
}

/// The file's weights in f32, ready to be cut into store tensors.
pub struct GgufWeights {
    file_name: String,
    hidden: usize,
    ffn: usize,
    embedding: Vec<f32>,
    layers: Vec<LayerF32>,
}

fn tensor(file: &GgufFile, name: &str, dims: &[usize]) -> Result<Vec<f32>, String> {
    let info = file
        .tensor(name)
        .ok_or_else(|| format!("tensor `{name}` is missing from the file"))?;
    let expected: Vec<u64> = dims.iter().map(|&d| d as u64).collect();
    if info.dims != expected {
        return Err(format!(
            "tensor `{name}` has shape {:?}, expected {expected:?}",
            info.dims
        ));
    }
    file.dequantize(name).map_err(|e| e.to_string())
}

impl GgufWeights {
    /// Reads and dequantizes every matrix of `path`, after checking that the file's
    /// architecture is `profile`'s (the store's index describes the model by its profile).
    pub fn load(path: &Path, profile: &ModelProfile) -> Result<GgufWeights, String> {
        let at = |m: String| format!("{}: {m}", path.display());
        let file = GgufFile::open(path).map_err(|e| at(e.to_string()))?;
        let c = LlamaConfig::from_gguf(&file).map_err(|e| at(e.to_string()))?;
        let m = ModelGeometry::from_profile(profile).map_err(|e| at(e.to_string()))?;
        let pairs = [
            ("layers", c.layer_count, m.layers as usize),
            ("hidden size", c.hidden_size, m.hidden as usize),
            ("FFN width", c.ffn_size, m.ffn as usize),
            ("attention heads", c.head_count, m.heads as usize),
            ("KV heads", c.kv_head_count, m.kv_heads as usize),
            ("vocabulary", c.vocab_size, m.vocab as usize),
        ];
        for (what, file_value, profile_value) in pairs {
            if file_value != profile_value {
                return Err(at(format!(
                    "{what} is {file_value} in the file but {profile_value} in model `{}`: give the profile of this file",
                    profile.name
                )));
            }
        }
        if m.is_moe() || !m.tied_embeddings {
            return Err(at(format!(
                "model `{}`: real-model stores are made for dense models with a tied output head",
                profile.name
            )));
        }
        let (hidden, ffn) = (c.hidden_size, c.ffn_size);
        let (q, kv) = (c.q_width(), c.kv_width());
        let embedding = tensor(&file, "token_embd.weight", &[hidden, c.vocab_size]).map_err(at)?;
        let layers = (0..c.layer_count)
            .into_par_iter()
            .map(|l| -> Result<LayerF32, String> {
                let name = |s: &str| format!("blk.{l}.{s}.weight");
                let mut qkv = tensor(&file, &name("attn_q"), &[hidden, q])?;
                qkv.extend(tensor(&file, &name("attn_k"), &[hidden, kv])?);
                qkv.extend(tensor(&file, &name("attn_v"), &[hidden, kv])?);
                let mut norms = tensor(&file, &name("attn_norm"), &[hidden])?;
                norms.extend(tensor(&file, &name("ffn_norm"), &[hidden])?);
                Ok(LayerF32 {
                    qkv,
                    output: tensor(&file, &name("attn_output"), &[q, hidden])?,
                    norms,
                    gate: tensor(&file, &name("ffn_gate"), &[hidden, ffn])?,
                    up: tensor(&file, &name("ffn_up"), &[hidden, ffn])?,
                    down: tensor(&file, &name("ffn_down"), &[ffn, hidden])?,
                })
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(at)?;
        Ok(GgufWeights {
            file_name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            hidden,
            ffn,
            embedding,
            layers,
        })
    }
}

impl MatrixSource for GgufWeights {
    fn weights(&self, t: TensorRef, spec: &MatrixSpec) -> Result<Vec<f32>, String> {
        let layer = || {
            self.layers
                .get(t.layer as usize)
                .ok_or_else(|| format!("{t}: the file has {} layers", self.layers.len()))
        };
        match (t.kind, spec.name.as_str()) {
            (TensorKind::Embedding, "embedding") => Ok(self.embedding.clone()),
            (TensorKind::Attention, "qkv") => Ok(layer()?.qkv.clone()),
            (TensorKind::Attention, "o") => Ok(layer()?.output.clone()),
            (TensorKind::Attention, "norms") => Ok(layer()?.norms.clone()),
            (TensorKind::Neurons { first, count, .. }, "bundles") => {
                let l = layer()?;
                let (h, f) = (self.hidden, self.ffn);
                if (first + count) as usize > f {
                    return Err(format!("{t}: the FFN has {f} neurons"));
                }
                let mut rows = Vec::with_capacity(3 * count as usize * h);
                let mut down = vec![0.0f32; h];
                for i in first as usize..(first + count) as usize {
                    for (j, d) in down.iter_mut().enumerate() {
                        *d = l.down[j * f + i];
                    }
                    bundle_rows(
                        &l.gate[i * h..(i + 1) * h],
                        &l.up[i * h..(i + 1) * h],
                        &down,
                        &mut rows,
                    );
                }
                Ok(rows)
            }
            _ => Err(format!(
                "{t}: matrix `{}` is not one a real-model store holds",
                spec.name
            )),
        }
    }

    fn describe(&self) -> String {
        format!(
            "real: {} dequantized to f32, requantized min/max per group of {} (edgesim::kernels::QuantScheme::MinMax); FFNs as neuron bundles (gate row, up row, down column per neuron)",
            self.file_name,
            layout::GROUP.get()
        )
    }
}

/// Writes the neuron-cluster store of the model in `gguf` (whose profile is `profile`).
pub fn prepare_real(
    gguf: &Path,
    profile: &ModelProfile,
    dir: &Path,
    options: &PrepareOptions,
    cluster: u32,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Prepared, String> {
    if cluster == 0 {
        return Err("--cluster must be at least 1 neuron".into());
    }
    if options.key.is_some() {
        return Err("real-model stores are not encrypted (leave out --encrypt)".into());
    }
    if options.scale != 1 {
        return Err("a real model's store cannot be scaled (leave out --scale)".into());
    }
    let source = GgufWeights::load(gguf, profile)?;
    let m = ModelGeometry::from_profile(profile).map_err(|e| e.to_string())?;
    let tensors = layout::stored_tensors_with_neurons(&m, cluster);
    let mut options = options.clone();
    options.model_file_sha256 =
        Some(crate::llm::fetch::sha256_file(gguf).map_err(|e| e.to_string())?);
    prepare_with(
        profile,
        dir,
        &options,
        &tensors,
        Some(cluster),
        &source,
        progress,
    )
}
