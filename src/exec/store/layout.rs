//! Which matrices each tensor of a model is made of, their shapes, and how each is stored.
//!
//! A tensor's stored payload is its matrices back to back, each in one of two formats:
//!
//! - [`MatrixFormat::Lut`]: the LUT kernels' packed payload ([`crate::kernels::PackedView`]),
//!   used when the rows fill whole 32-row tiles and the columns whole 64-weight groups;
//! - [`MatrixFormat::Rowwise`]: row-major groups of 64 codes, bit-packed, each followed by its
//!   fp16 scale and fp16 centre (the same numbers the packed form holds, without tile
//!   padding), used for matrices with a row count that is not a multiple of 32: the router
//!   (one row per expert) and the attention norms (one row).
//!
//! Both formats take exactly `bits + 32/64` bits per weight, which is what
//! [`Precision::bytes_for`] charges, so **a tensor's payload is exactly
//! `ModelGeometry::bytes(layer, kind, precision)` bytes**: the bytes a policy's Read op names
//! are the bytes the executor reads (plus padding to the 4 KiB direct-I/O unit, and 16 bytes
//! of tag per MiB when the store is encrypted). The 64-byte header of the kernels' serialized
//! form is not stored: shapes live in the index.

use crate::kernels::{GroupSize, WeightBits, TILE_ROWS};
use crate::model::{FfnKind, ModelGeometry, Precision, TensorKind, TensorRef};
use serde::{Deserialize, Serialize};

/// The weight group of every stored matrix (the group [`Precision::bytes_for`] assumes).
pub const GROUP: GroupSize = GroupSize::G64;
/// Alignment of every tensor in the data file and of every direct-I/O transfer.
pub const ALIGN: u64 = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatrixFormat {
    Lut,
    Rowwise,
}

/// One matrix of a tensor: a name within the tensor and its shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatrixSpec {
    /// `qkv`, `o`, `norms`, `router`, `gate`, `up`, `down`, `embedding`, `lm_head`, `bundles`.
    pub name: String,
    pub rows: u32,
    pub cols: u32,
    pub format: MatrixFormat,
    /// Offset of the matrix within the tensor's payload.
    pub offset: u64,
    pub bytes: u64,
}

/// The LUT kernels' bit width for a precision; fp16 has no LUT kernel.
pub fn weight_bits(precision: Precision) -> Result<WeightBits, String> {
    match precision {
        Precision::Int8 => Ok(WeightBits::B8),
        Precision::Int4 => Ok(WeightBits::B4),
        Precision::Int3 => Ok(WeightBits::B3),
        Precision::Int2 => Ok(WeightBits::B2),
        Precision::Fp16 => Err(
            "fp16 weights cannot be stored: the executor computes with the LUT kernels, which \
             take int8, int4, int3 and int2 (use one of those precisions)"
                .into(),
        ),
    }
}

/// The tensors of a store whose dense FFNs are kept as neuron clusters of `cluster`
/// consecutive neurons (PowerInfer's Gate-Up-Down bundles, for neuron-level policies): the
/// embedding, per layer the attention and its clusters (the last one shorter when the FFN
/// width is not a multiple of `cluster`), and the LM head when not tied.
pub fn stored_tensors_with_neurons(m: &ModelGeometry, cluster: u32) -> Vec<TensorRef> {
    let mut out = vec![TensorRef::new(0, TensorKind::Embedding)];
    for l in 0..m.layers {
        out.push(TensorRef::new(l, TensorKind::Attention));
        let width = m.ffn_width(l);
        let mut first = 0;
        while first < width {
            let count = cluster.max(1).min(width - first);
            out.push(neuron_cluster(l, first, count));
            first += count;
        }
    }
    if !m.tied_embeddings {
        out.push(TensorRef::new(0, TensorKind::LmHead));
    }
    out
}

/// The tensor of `count` neurons of a dense FFN from `first` on.
pub fn neuron_cluster(layer: u32, first: u32, count: u32) -> TensorRef {
    TensorRef::new(
        layer,
        TensorKind::Neurons {
            expert: crate::model::DENSE_FFN,
            first,
            count,
        },
    )
}

/// Bytes of a `rows x cols` matrix at `precision` in `format` (cols a multiple of 64).
pub fn matrix_bytes(rows: u32, cols: u32, precision: Precision) -> u64 {
    precision.bytes_for(rows as u64 * cols as u64)
}

/// The tensors the executor's store holds for a model: the embedding, per layer the
/// attention, the router (MoE layers), the dense FFN (dense layers) or every expert, and the
/// LM head (when not tied). Neuron bundles, the KV cache and the whole-model blob are not
/// stored.
pub fn stored_tensors(m: &ModelGeometry) -> Vec<TensorRef> {
    let mut out = vec![TensorRef::new(0, TensorKind::Embedding)];
    for l in 0..m.layers {
        out.push(TensorRef::new(l, TensorKind::Attention));
        if m.is_moe_layer(l) {
            out.push(TensorRef::new(l, TensorKind::Router));
            for e in 0..m.experts {
                out.push(TensorRef::expert(l, e));
            }
        } else {
            out.push(TensorRef::new(l, TensorKind::DenseFfn));
        }
    }
    if !m.tied_embeddings {
        out.push(TensorRef::new(0, TensorKind::LmHead));
    }
    out
}

fn ffn_matrices(kind: FfnKind, hidden: u32, width: u32) -> Vec<(&'static str, u32, u32)> {
    match kind {
        FfnKind::Gated => vec![
            ("gate", width, hidden),
            ("up", width, hidden),
            ("down", hidden, width),
        ],
        FfnKind::Plain => vec![("up", width, hidden), ("down", hidden, width)],
    }
}

/// The matrices of `tensor` at `precision`, laid out back to back. Fails for tensors the store
/// does not hold and for shapes neither format can store.
pub fn tensor_matrices(
    m: &ModelGeometry,
    tensor: TensorRef,
    precision: Precision,
) -> Result<Vec<MatrixSpec>, String> {
    let layer = tensor.layer as u32;
    let h = m.hidden;
    let shapes: Vec<(&'static str, u32, u32)> = match tensor.kind {
        TensorKind::Embedding => vec![("embedding", m.vocab, h)],
        TensorKind::LmHead => vec![("lm_head", m.vocab, h)],
        TensorKind::Attention => {
            if m.is_conv_layer(layer) {
                return Err(format!("{tensor}: short-convolution layers are not stored"));
            }
            let q = m.heads * m.head_dim;
            let kv = m.kv_heads * m.head_dim;
            vec![("qkv", q + 2 * kv, h), ("o", h, q), ("norms", 1, 2 * h)]
        }
        TensorKind::Router => vec![("router", m.experts, h)],
        TensorKind::DenseFfn => ffn_matrices(m.ffn_kind, h, m.ffn_width(layer)),
        TensorKind::Expert(_) => ffn_matrices(m.ffn_kind, h, m.ffn),
        // A cluster's neurons one after the other, each as its gate row, its up row and its
        // down column (rows 3k, 3k + 1, 3k + 2 for a gated FFN); row-wise because a cluster
        // rarely fills 32-row tiles.
        TensorKind::Neurons {
            expert: crate::model::DENSE_FFN,
            count,
            ..
        } if !m.is_moe_layer(layer) => {
            vec![("bundles", m.ffn_kind.matrices() as u32 * count, h)]
        }
        TensorKind::Neurons { .. } | TensorKind::KvCache | TensorKind::Whole => {
            return Err(format!("{tensor}: the weight store holds no such tensor"))
        }
    };
    weight_bits(precision)?;
    let mut offset = 0;
    let mut out = Vec::with_capacity(shapes.len());
    for (name, rows, cols) in shapes {
        if !(cols as usize).is_multiple_of(GROUP.get()) {
            return Err(format!(
                "{tensor}: matrix `{name}` has {cols} columns, not a multiple of the {}-weight group (scale the model so its dimensions are multiples of 64)",
                GROUP.get()
            ));
        }
        let format = if (rows as usize).is_multiple_of(TILE_ROWS) && name != "bundles" {
            MatrixFormat::Lut
        } else {
            MatrixFormat::Rowwise
        };
        let bytes = matrix_bytes(rows, cols, precision);
        out.push(MatrixSpec {
            name: name.to_string(),
            rows,
            cols,
            format,
            offset,
            bytes,
        });
        offset += bytes;
    }
    let model_bytes = m.bytes(layer, tensor.kind, precision);
    if offset != model_bytes {
        return Err(format!(
            "{tensor} at {precision}: its matrices take {offset} bytes but the model's geometry says {model_bytes}"
        ));
    }
    Ok(out)
}

/// `n` rounded up to the direct-I/O alignment.
pub fn align_up(n: u64) -> u64 {
    n.div_ceil(ALIGN) * ALIGN
}

/// Parses a tensor label as [`TensorRef`]'s `Display` writes it, for the stored kinds.
pub fn parse_tensor(label: &str) -> Option<TensorRef> {
    match label {
        "embedding" => return Some(TensorRef::new(0, TensorKind::Embedding)),
        "lm_head" => return Some(TensorRef::new(0, TensorKind::LmHead)),
        _ => {}
    }
    let rest = label.strip_prefix('L')?;
    let (layer, kind) = rest.split_once('.')?;
    let layer: u32 = layer.parse().ok()?;
    let kind = match kind {
        "attn" => TensorKind::Attention,
        "router" => TensorKind::Router,
        "ffn" => TensorKind::DenseFfn,
        n if n.starts_with('n') => {
            let (first, count) = n[1..].split_once('+')?;
            TensorKind::Neurons {
                expert: crate::model::DENSE_FFN,
                first: first.parse().ok()?,
                count: count.parse().ok()?,
            }
        }
        e => TensorKind::Expert(e.strip_prefix('E')?.parse().ok()?),
    };
    Some(TensorRef::new(layer, kind))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::scale::scale_model;

    fn mixtral(scale: u32) -> ModelGeometry {
        let p = crate::scenario::load_model("mixtral-8x7b").unwrap();
        ModelGeometry::from_profile(&scale_model(&p, scale).unwrap()).unwrap()
    }

    #[test]
    fn every_tensor_payload_is_the_geometry_size() {
        for scale in [8, 16] {
            let m = mixtral(scale);
            for t in stored_tensors(&m) {
                for p in [
                    Precision::Int8,
                    Precision::Int4,
                    Precision::Int3,
                    Precision::Int2,
                ] {
                    let mats = tensor_matrices(&m, t, p).unwrap();
                    let total: u64 = mats.iter().map(|x| x.bytes).sum();
                    assert_eq!(total, m.bytes(t.layer as u32, t.kind, p), "{t} {p}");
                }
            }
        }
    }

    #[test]
    fn lut_matrices_match_the_kernels_packed_size() {
        let m = mixtral(8);
        let mats = tensor_matrices(&m, TensorRef::expert(0, 0), Precision::Int4).unwrap();
        for x in &mats {
            assert_eq!(x.format, MatrixFormat::Lut);
            let shape = crate::kernels::PackedShape::new(
                x.rows as usize,
                x.cols as usize,
                WeightBits::B4,
                GROUP,
            )
            .unwrap();
            assert_eq!(shape.payload_bytes() as u64, x.bytes);
        }
        let router = tensor_matrices(&m, TensorRef::new(0, TensorKind::Router), Precision::Int8);
        assert_eq!(router.unwrap()[0].format, MatrixFormat::Rowwise);
    }

    #[test]
    fn neuron_clusters_cover_the_ffn_and_take_the_geometry_size() {
        let p = crate::scenario::load_model("smollm2-135m").unwrap();
        let m = ModelGeometry::from_profile(&p).unwrap();
        for cluster in [1, 7, 16] {
            let tensors = stored_tensors_with_neurons(&m, cluster);
            let mut covered = 0u64;
            for t in &tensors {
                assert_eq!(parse_tensor(&t.to_string()), Some(*t));
                if let TensorKind::Neurons { first, count, .. } = t.kind {
                    assert!(count <= cluster && first + count <= m.ffn);
                    covered += count as u64;
                    for p in [Precision::Int8, Precision::Int4] {
                        let mats = tensor_matrices(&m, *t, p).unwrap();
                        assert_eq!(mats[0].format, MatrixFormat::Rowwise);
                        assert_eq!(mats[0].bytes, m.bytes(t.layer as u32, t.kind, p));
                    }
                }
            }
            assert_eq!(covered, m.ffn as u64 * m.layers as u64, "cluster {cluster}");
        }
    }

    #[test]
    fn labels_round_trip_and_fp16_is_refused() {
        let m = mixtral(8);
        for t in stored_tensors(&m) {
            assert_eq!(parse_tensor(&t.to_string()), Some(t));
        }
        assert_eq!(parse_tensor("L3.X"), None);
        assert!(
            tensor_matrices(&m, TensorRef::expert(0, 0), Precision::Fp16)
                .unwrap_err()
                .contains("LUT kernels")
        );
    }
}
