//! What each compute op does on the executor, on the weights actually read.
//!
//! | op | work |
//! | --- | --- |
//! | expert / dense FFN, `batch` tokens | tables of `batch` activation vectors; gate and up by the LUT kernels (`gemv` at batch 1, `gemm` above); `silu(gate)·up` (or `relu(up)` for a plain FFN); tables of that; down |
//! | attention, `batch` tokens after `context` | tables of the inputs; the `qkv` projection; K and V of the new tokens written to the layer's KV buffer (fp16); for every token and head, scores against all `context + batch` cached keys, softmax, weighted sum of the cached values; tables of that; the `o` projection. The norms' weights are read but not applied |
//! | router | the row-wise stored matrix (8 rows do not fill a 32-row tile) dequantized once, then multiplied in f32 for each token |
//! | LM head / tied embedding | one `gemv` |
//!
//! Activations are not a real model's (the weights are synthetic): each op's inputs are taken
//! from a pool of seeded vectors ([`Activations`]), so the arithmetic, the tables and the
//! memory traffic are those of the real shapes.

use super::store::layout::{MatrixFormat, MatrixSpec, GROUP};
use super::store::rowwise;
use crate::kernels::f16::{f16_to_f32, f32_to_f16};
use crate::kernels::{
    gemm, gemv, ActivationTable, KernelOptions, PackedShape, PackedView, WeightBits,
};
use crate::llm::model::ops::silu;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Distinct activation vectors per width; a batch larger than this reuses them cyclically.
pub const POOL_VECTORS: usize = 64;

/// Seeded input vectors of the widths the model's matrices take.
#[derive(Debug)]
pub struct Activations {
    hidden: Vec<Vec<f32>>,
}

impl Activations {
    pub fn new(hidden: u32, seed: u64) -> Activations {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xac71_7a71_0a5e_ed00);
        let hidden = (0..POOL_VECTORS)
            .map(|_| (0..hidden).map(|_| rng.gen_range(-1.0f32..1.0)).collect())
            .collect();
        Activations { hidden }
    }

    pub fn hidden(&self, i: usize) -> &[f32] {
        &self.hidden[i % POOL_VECTORS]
    }
}

fn view<'a>(
    spec: &MatrixSpec,
    bits: WeightBits,
    payload: &'a [u8],
) -> Result<PackedView<'a>, String> {
    let shape = PackedShape::new(spec.rows as usize, spec.cols as usize, bits, GROUP)
        .map_err(|e| e.to_string())?;
    let bytes = payload
        .get(spec.offset as usize..(spec.offset + spec.bytes) as usize)
        .ok_or_else(|| format!("matrix `{}` lies outside the tensor's buffer", spec.name))?;
    PackedView::from_payload(shape, bytes).map_err(|e| e.to_string())
}

/// `Y = X · Wᵀ` for the vectors `xs` (one output vector per input), on `threads` threads.
fn apply(
    spec: &MatrixSpec,
    bits: WeightBits,
    payload: &[u8],
    xs: &[&[f32]],
    tables: Option<&[ActivationTable]>,
    threads: usize,
) -> Result<Vec<Vec<f32>>, String> {
    let rows = spec.rows as usize;
    match spec.format {
        MatrixFormat::Lut => {
            let v = view(spec, bits, payload)?;
            let built;
            let tables = match tables {
                Some(t) => t,
                None => {
                    built = build_tables(xs)?;
                    &built[..]
                }
            };
            let options = KernelOptions::threads(threads);
            if tables.len() == 1 {
                let mut y = vec![0.0f32; rows];
                gemv(&v, &tables[0], &mut y, options).map_err(|e| e.to_string())?;
                Ok(vec![y])
            } else {
                let mut y = vec![0.0f32; rows * tables.len()];
                gemm(&v, tables, &mut y, options).map_err(|e| e.to_string())?;
                Ok(y.chunks(rows).map(|c| c.to_vec()).collect())
            }
        }
        MatrixFormat::Rowwise => {
            let bytes = payload
                .get(spec.offset as usize..(spec.offset + spec.bytes) as usize)
                .ok_or_else(|| {
                    format!("matrix `{}` lies outside the tensor's buffer", spec.name)
                })?;
            rowwise::gemm(bytes, bits, rows, xs)
        }
    }
}

fn build_tables(xs: &[&[f32]]) -> Result<Vec<ActivationTable>, String> {
    xs.iter()
        .map(|x| ActivationTable::build(x, GROUP).map_err(|e| e.to_string()))
        .collect()
}

fn find<'a>(matrices: &'a [MatrixSpec], name: &str) -> Result<&'a MatrixSpec, String> {
    matrices
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| format!("the tensor has no `{name}` matrix"))
}

/// A gated (gate, up, down) or plain (up, down) FFN for `batch` tokens.
pub fn ffn(
    matrices: &[MatrixSpec],
    bits: WeightBits,
    payload: &[u8],
    acts: &Activations,
    batch: usize,
    threads: usize,
) -> Result<(), String> {
    let xs: Vec<&[f32]> = (0..batch.max(1)).map(|i| acts.hidden(i)).collect();
    let tables = build_tables(&xs)?;
    let up = apply(
        find(matrices, "up")?,
        bits,
        payload,
        &xs,
        Some(&tables),
        threads,
    )?;
    let hidden: Vec<Vec<f32>> = match matrices.iter().find(|m| m.name == "gate") {
        Some(gate_spec) => {
            let gate = apply(gate_spec, bits, payload, &xs, Some(&tables), threads)?;
            gate.iter()
                .zip(&up)
                .map(|(g, u)| g.iter().zip(u).map(|(&g, &u)| silu(g) * u).collect())
                .collect()
        }
        None => up
            .iter()
            .map(|u| u.iter().map(|&v| v.max(0.0)).collect())
            .collect(),
    };
    let hs: Vec<&[f32]> = hidden.iter().map(|h| h.as_slice()).collect();
    let out = apply(find(matrices, "down")?, bits, payload, &hs, None, threads)?;
    std::hint::black_box(&out);
    Ok(())
}

/// One matrix applied to `batch` tokens (router, LM head, tied embedding).
pub fn single(
    matrices: &[MatrixSpec],
    bits: WeightBits,
    payload: &[u8],
    acts: &Activations,
    batch: usize,
    threads: usize,
) -> Result<(), String> {
    let spec = matrices.first().ok_or("the tensor has no matrix")?;
    let xs: Vec<&[f32]> = (0..batch.max(1)).map(|i| acts.hidden(i)).collect();
    let out = apply(spec, bits, payload, &xs, None, threads)?;
    std::hint::black_box(&out);
    Ok(())
}

/// Where a layer's keys and values live in the KV buffer.
#[derive(Clone, Copy, Debug)]
pub struct KvLayout {
    /// Attention layer index (conv layers have none).
    pub layer: usize,
    pub max_context: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl KvLayout {
    fn width(&self) -> usize {
        self.kv_heads * self.head_dim
    }
    /// fp16 values of one layer's K (or V) for all positions.
    fn plane(&self) -> usize {
        self.max_context * self.width()
    }
    /// Offset (in fp16 values) of layer `layer`'s K (`which` 0) or V (1) at `pos`.
    fn at(&self, which: usize, pos: usize) -> usize {
        (self.layer * 2 + which) * self.plane() + pos * self.width()
    }
    /// fp16 values the whole buffer holds for `layers` attention layers.
    pub fn values(&self, layers: usize) -> usize {
        layers * 2 * self.plane()
    }
}

/// One token's query row, a head index, and that head's output slice.
type HeadTask<'a> = (&'a [f32], usize, &'a mut [f32]);

/// Attention for `batch` tokens at positions `context..context + batch`.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    matrices: &[MatrixSpec],
    bits: WeightBits,
    payload: &[u8],
    acts: &Activations,
    heads: usize,
    kv: KvLayout,
    kv_cache: &mut [u16],
    context: usize,
    batch: usize,
    threads: usize,
) -> Result<(), String> {
    let batch = batch.max(1);
    let end = context + batch;
    if end > kv.max_context {
        return Err(format!(
            "attention at positions {context}..{end} runs past the KV cache's {} positions",
            kv.max_context
        ));
    }
    let needed = kv.at(1, 0) + kv.plane();
    if kv_cache.len() < needed {
        return Err(format!(
            "the KV cache holds {} values, layer {} needs {needed}",
            kv_cache.len(),
            kv.layer
        ));
    }
    let xs: Vec<&[f32]> = (0..batch).map(|i| acts.hidden(i)).collect();
    let qkv = apply(find(matrices, "qkv")?, bits, payload, &xs, None, threads)?;
    let q_width = heads * kv.head_dim;
    let w = kv.width();
    for (i, row) in qkv.iter().enumerate() {
        let pos = context + i;
        for j in 0..w {
            kv_cache[kv.at(0, pos) + j] = f32_to_f16(row[q_width + j]);
            kv_cache[kv.at(1, pos) + j] = f32_to_f16(row[q_width + w + j]);
        }
    }
    let group = heads / kv.kv_heads.max(1);
    let scale = 1.0 / (kv.head_dim as f32).sqrt();
    let hd = kv.head_dim;
    let cache: &[u16] = kv_cache;
    // One task per (token, head): the score and value work, split over the op's threads.
    let head_work = |row: &[f32], h: usize, o: &mut [f32]| {
        let kvh = h / group.max(1);
        let q = &row[h * hd..(h + 1) * hd];
        let mut scores = vec![0.0f32; end];
        let mut max = f32::NEG_INFINITY;
        for (p, s) in scores.iter_mut().enumerate() {
            *s = dot_f16(q, &cache[kv.at(0, p) + kvh * hd..][..hd]) * scale;
            max = max.max(*s);
        }
        let mut total = 0.0;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            total += *s;
        }
        for (p, &s) in scores.iter().enumerate() {
            axpy_f16(o, s / total, &cache[kv.at(1, p) + kvh * hd..][..hd]);
        }
    };
    let mut outs = vec![vec![0.0f32; q_width]; batch];
    {
        let mut tasks: Vec<HeadTask> = Vec::with_capacity(batch * heads);
        for (row, out) in qkv.iter().zip(outs.iter_mut()) {
            for (h, o) in out.chunks_mut(hd).enumerate() {
                tasks.push((row.as_slice(), h, o));
            }
        }
        if threads > 1 && tasks.len() > 1 {
            use rayon::prelude::*;
            let per = tasks.len().div_ceil(threads);
            let mut chunks: Vec<Vec<HeadTask>> = Vec::new();
            while !tasks.is_empty() {
                let rest = tasks.split_off(per.min(tasks.len()));
                chunks.push(std::mem::replace(&mut tasks, rest));
            }
            chunks.into_par_iter().for_each(|chunk| {
                for (row, h, o) in chunk {
                    head_work(row, h, o);
                }
            });
        } else {
            for (row, h, o) in tasks {
                head_work(row, h, o);
            }
        }
    }
    let os: Vec<&[f32]> = outs.iter().map(|o| o.as_slice()).collect();
    let out = apply(find(matrices, "o")?, bits, payload, &os, None, threads)?;
    std::hint::black_box(&out);
    Ok(())
}

/// `q · k` with `k` in fp16 (F16C + FMA where the CPU has them).
fn dot_f16(q: &[f32], k: &[u16]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if simd::available() {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked); lengths are checked inside.
        return unsafe { simd::dot_f16(q, k) };
    }
    q.iter().zip(k).map(|(&a, &b)| a * f16_to_f32(b)).sum()
}

/// `out += s · v` with `v` in fp16.
fn axpy_f16(out: &mut [f32], s: f32, v: &[u16]) {
    #[cfg(target_arch = "x86_64")]
    if simd::available() {
        // SAFETY: as in `dot_f16`.
        unsafe { simd::axpy_f16(out, s, v) };
        return;
    }
    for (o, &b) in out.iter_mut().zip(v) {
        *o += s * f16_to_f32(b);
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    pub fn available() -> bool {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_f16(q: &[f32], k: &[u16]) -> f32 {
        let n = q.len().min(k.len());
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        while i + 8 <= n {
            let kv = _mm256_cvtph_ps(_mm_loadu_si128(k.as_ptr().add(i) as *const __m128i));
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(q.as_ptr().add(i)), kv, acc);
            i += 8;
        }
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), acc);
        let mut sum: f32 = lanes.iter().sum();
        while i < n {
            sum += q[i] * super::f16_to_f32(k[i]);
            i += 1;
        }
        sum
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn axpy_f16(out: &mut [f32], s: f32, v: &[u16]) {
        let n = out.len().min(v.len());
        let sv = _mm256_set1_ps(s);
        let mut i = 0;
        while i + 8 <= n {
            let vv = _mm256_cvtph_ps(_mm_loadu_si128(v.as_ptr().add(i) as *const __m128i));
            let o = _mm256_loadu_ps(out.as_ptr().add(i));
            _mm256_storeu_ps(out.as_mut_ptr().add(i), _mm256_fmadd_ps(sv, vv, o));
            i += 8;
        }
        while i < n {
            out[i] += s * super::f16_to_f32(v[i]);
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fp16_dot_and_axpy_match_scalar() {
        let q: Vec<f32> = (0..37).map(|i| (i as f32 * 0.3).sin()).collect();
        let k: Vec<u16> = (0..37)
            .map(|i| f32_to_f16((i as f32 * 0.7).cos()))
            .collect();
        let want: f32 = q.iter().zip(&k).map(|(&a, &b)| a * f16_to_f32(b)).sum();
        assert!((dot_f16(&q, &k) - want).abs() < 1e-4);
        let mut out = q.clone();
        axpy_f16(&mut out, 0.5, &k);
        for i in 0..37 {
            assert!((out[i] - (q[i] + 0.5 * f16_to_f32(k[i]))).abs() < 1e-6);
        }
    }
}
