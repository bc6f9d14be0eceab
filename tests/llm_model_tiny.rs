//! The forward pass on a tiny random Llama written as GGUF in memory: runs everywhere (no model
//! download), checks the batched pass against a naive f64 re-implementation (in f32 and in the
//! LUT formats), and checks the error paths.

mod llm_common;

use edgesim::llm::format::WeightFormat;
use edgesim::llm::gguf::GgufFile;
use edgesim::llm::matvec::F32Builder;
use edgesim::llm::model::{LlamaModel, LogitsWanted};
use edgesim::llm::parallel::ThreadTeam;
use llm_common::tiny::*;
use std::ops::Range;

fn tiny_model() -> (Tensors, LlamaModel) {
    let tensors = random_tensors(42);
    let file = GgufFile::parse(gguf_bytes(&tensors, "llama"), "tiny.gguf").unwrap();
    let model = LlamaModel::load(&file, &F32Builder).unwrap();
    (tensors, model)
}

/// A straightforward f64 Llama forward over the whole sequence, written from the equations
/// (interleaved RoPE pairs, query head h reads key/value head h / (HEADS / KV_HEADS)).
fn naive_logits(t: &Tensors, tokens: &[u32]) -> Vec<Vec<f64>> {
    let w = |name: &str| -> Vec<f64> { t[name].1.iter().map(|&v| v as f64).collect() };
    // GGUF matrices are [cols, rows]: row r holds values r*cols..(r+1)*cols.
    let matvec = |m: &[f64], x: &[f64]| -> Vec<f64> {
        m.chunks(x.len())
            .map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum())
            .collect()
    };
    let norm = |x: &[f64], weight: &[f64]| -> Vec<f64> {
        let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
        let s = 1.0 / (ms + EPS as f64).sqrt();
        x.iter().zip(weight).map(|(v, g)| v * s * g).collect()
    };
    let rope = |v: &mut [f64], pos: usize| {
        for head in v.chunks_mut(HEAD_DIM) {
            for i in 0..HEAD_DIM / 2 {
                let angle = pos as f64 * (ROPE_BASE as f64).powf(-2.0 * i as f64 / HEAD_DIM as f64);
                let (x0, x1) = (head[2 * i], head[2 * i + 1]);
                head[2 * i] = x0 * angle.cos() - x1 * angle.sin();
                head[2 * i + 1] = x0 * angle.sin() + x1 * angle.cos();
            }
        }
    };
    let embedding = w("token_embd.weight");
    let mut xs: Vec<Vec<f64>> = tokens
        .iter()
        .map(|&tok| embedding[tok as usize * HIDDEN..(tok as usize + 1) * HIDDEN].to_vec())
        .collect();
    for l in 0..LAYERS {
        let name = |s: &str| format!("blk.{l}.{s}.weight");
        let (wq, wk, wv, wo) = (
            w(&name("attn_q")),
            w(&name("attn_k")),
            w(&name("attn_v")),
            w(&name("attn_output")),
        );
        let mut qs = Vec::new();
        let mut ks = Vec::new();
        let mut vs = Vec::new();
        for (pos, x) in xs.iter().enumerate() {
            let h = norm(x, &w(&name("attn_norm")));
            let mut q = matvec(&wq, &h);
            let mut k = matvec(&wk, &h);
            rope(&mut q, pos);
            rope(&mut k, pos);
            qs.push(q);
            ks.push(k);
            vs.push(matvec(&wv, &h));
        }
        for pos in 0..xs.len() {
            let mut attention = vec![0.0; HIDDEN];
            for head in 0..HEADS {
                let kv = head / (HEADS / KV_HEADS);
                let q = &qs[pos][head * HEAD_DIM..(head + 1) * HEAD_DIM];
                let scores: Vec<f64> = (0..=pos)
                    .map(|j| {
                        let k = &ks[j][kv * HEAD_DIM..(kv + 1) * HEAD_DIM];
                        q.iter().zip(k).map(|(a, b)| a * b).sum::<f64>() / (HEAD_DIM as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = exps.iter().sum();
                for (j, e) in exps.iter().enumerate() {
                    for d in 0..HEAD_DIM {
                        attention[head * HEAD_DIM + d] += e / total * vs[j][kv * HEAD_DIM + d];
                    }
                }
            }
            let o = matvec(&wo, &attention);
            xs[pos].iter_mut().zip(o).for_each(|(x, d)| *x += d);
        }
        for x in xs.iter_mut() {
            let h = norm(x, &w(&name("ffn_norm")));
            let gate = matvec(&w(&name("ffn_gate")), &h);
            let up = matvec(&w(&name("ffn_up")), &h);
            let act: Vec<f64> = gate
                .iter()
                .zip(&up)
                .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                .collect();
            let d = matvec(&w(&name("ffn_down")), &act);
            x.iter_mut().zip(d).for_each(|(x, d)| *x += d);
        }
    }
    xs.iter()
        .map(|x| matvec(&embedding, &norm(x, &w("output_norm.weight"))))
        .collect()
}

#[test]
fn batched_forward_matches_a_naive_f64_forward() {
    let (tensors, model) = tiny_model();
    assert!(model.weights().output_is_tied);
    let tokens = [3u32, 17, 0, 39, 5, 5, 21];
    let mut cache = model.new_cache(tokens.len());
    let logits = model
        .forward_with(&tokens, &mut cache, LogitsWanted::All, None)
        .unwrap();
    let reference = naive_logits(&tensors, &tokens);
    for (pos, expected) in reference.iter().enumerate() {
        for (v, (got, want)) in logits[pos * VOCAB..(pos + 1) * VOCAB]
            .iter()
            .zip(expected)
            .enumerate()
        {
            assert!(
                (*got as f64 - want).abs() < 1e-3 * (1.0 + want.abs()),
                "position {pos} token {v}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn step_by_step_decoding_equals_one_batch_and_threads_do_not_matter() {
    let (_, model) = tiny_model();
    let tokens = [1u32, 2, 3, 4, 5, 6, 7, 8, 9];
    let run = |threads: usize| {
        let team = ThreadTeam::new(threads);
        team.install(|| {
            let mut cache = model.new_cache(tokens.len());
            model
                .forward_with(&tokens, &mut cache, LogitsWanted::All, None)
                .unwrap()
        })
    };
    let batched = run(1);
    assert_eq!(batched, run(2));
    assert_eq!(batched, run(4));
    let mut cache = model.new_cache(tokens.len());
    // A prefill of four, then single steps.
    let mut steps = model
        .forward_with(&tokens[..4], &mut cache, LogitsWanted::All, None)
        .unwrap();
    for &token in &tokens[4..] {
        steps.extend(model.forward(&[token], &mut cache).unwrap());
    }
    let worst = batched
        .iter()
        .zip(&steps)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "batch vs steps differ by {worst}");
    assert_eq!(cache.len(), tokens.len());
}

#[test]
fn bad_inputs_are_errors_that_say_what_is_wrong() {
    let (_, model) = tiny_model();
    let mut cache = model.new_cache(2);
    let error = model
        .forward(&[1, 2, 3], &mut cache)
        .unwrap_err()
        .to_string();
    assert!(error.contains("KV cache full"), "{error}");
    let error = model.forward(&[40], &mut cache).unwrap_err().to_string();
    assert!(
        error.contains("token id 40 is outside the vocabulary of 40"),
        "{error}"
    );
    assert!(model.forward(&[], &mut cache).is_err());
}

#[test]
fn bad_files_name_the_tensor_or_key() {
    let mut tensors = random_tensors(1);
    tensors.remove("blk.1.ffn_up.weight");
    let file = GgufFile::parse(gguf_bytes(&tensors, "llama"), "tiny.gguf").unwrap();
    let error = LlamaModel::load(&file, &F32Builder)
        .err()
        .unwrap()
        .to_string();
    assert_eq!(error, "tiny.gguf: tensor 'blk.1.ffn_up.weight': missing");

    let mut tensors = random_tensors(1);
    tensors.insert(
        "blk.0.attn_k.weight".into(),
        (vec![HIDDEN as u64, 4], vec![0.0; HIDDEN * 4]),
    );
    let file = GgufFile::parse(gguf_bytes(&tensors, "llama"), "tiny.gguf").unwrap();
    let error = LlamaModel::load(&file, &F32Builder)
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("tensor 'blk.0.attn_k.weight': shape [64, 4], expected [64, 32]"),
        "{error}"
    );

    let file = GgufFile::parse(gguf_bytes(&random_tensors(1), "gpt2"), "tiny.gguf").unwrap();
    let error = LlamaModel::load(&file, &F32Builder)
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("metadata key 'general.architecture'") && error.contains("'gpt2'"),
        "{error}"
    );
}

/// Negative log-likelihood of `window[i]` for every `i` in `scored`, from one pass over
/// `input` from an empty cache (logits at position i − 1 predict token i).
fn window_nll(model: &LlamaModel, input: &[u32], window: &[u32], scored: Range<usize>) -> f64 {
    let mut cache = model.new_cache(input.len());
    let logits = model
        .forward_with(input, &mut cache, LogitsWanted::All, None)
        .unwrap();
    let mut nll = 0.0;
    for i in scored {
        let row: Vec<f64> = logits[(i - 1) * VOCAB..i * VOCAB]
            .iter()
            .map(|&v| v as f64)
            .collect();
        let log_sum = row.iter().map(|v| v.exp()).sum::<f64>().ln();
        nll -= row[window[i] as usize] - log_sum;
    }
    nll
}

#[test]
fn perplexity_scores_each_window_from_an_empty_cache() {
    use edgesim::llm::eval::{perplexity, perplexity_with, PerplexityMethod};
    let (_, model) = tiny_model();
    let tokens: Vec<u32> = (0..11).map(|i| (i * 7 % VOCAB) as u32).collect();
    let close = |got: f64, want: f64| (got - want).abs() < 1e-9 * want;

    // Every token: windows of 4, 4 and 3 tokens score 3 + 3 + 2 next tokens.
    let all = perplexity_with(&model, &tokens, 4, PerplexityMethod::AllTokens, None).unwrap();
    assert_eq!((all.windows, all.scored_tokens), (3, 8));
    let nll: f64 = tokens
        .chunks(4)
        .map(|w| window_nll(&model, w, w, 1..w.len()))
        .sum();
    assert!(close(all.perplexity, (nll / 8.0).exp()), "{all:?}");

    // llama.cpp's method (the default): two whole windows of 4 (the last 3 tokens are
    // dropped); in each, the logits of position 2 predict token 3, the only one scored.
    let llama = perplexity(&model, &tokens, 4).unwrap();
    assert_eq!(llama.method, PerplexityMethod::LlamaCpp);
    assert_eq!((llama.windows, llama.scored_tokens), (2, 2));
    let nll: f64 = tokens
        .chunks_exact(4)
        .map(|w| window_nll(&model, w, w, 3..4))
        .sum();
    assert!(close(llama.perplexity, (nll / 2.0).exp()), "{llama:?}");

    // With a BOS token, each window's first token is replaced before the pass; the scored
    // targets stay the text's.
    let with_bos =
        perplexity_with(&model, &tokens, 4, PerplexityMethod::LlamaCpp, Some(5)).unwrap();
    let nll: f64 = tokens
        .chunks_exact(4)
        .map(|w| {
            let mut input = w.to_vec();
            input[0] = 5;
            window_nll(&model, &input, w, 3..4)
        })
        .sum();
    assert!(
        close(with_bos.perplexity, (nll / 2.0).exp()),
        "{with_bos:?}"
    );
    assert_ne!(with_bos.perplexity, llama.perplexity);

    assert!(perplexity(&model, &tokens[..3], 4).is_err());
    assert!(perplexity_with(&model, &tokens[..1], 4, PerplexityMethod::AllTokens, None).is_err());
    assert!(perplexity(&model, &tokens, 3).is_err());
}

/// Relative L2 distance of `got` from `want`.
fn relative_error(got: &[f32], want: &[f64]) -> f64 {
    let error: f64 = got
        .iter()
        .zip(want)
        .map(|(g, w)| (*g as f64 - w).powi(2))
        .sum();
    let norm: f64 = want.iter().map(|w| w * w).sum();
    (error / norm).sqrt()
}

/// The LUT formats run the same model code: their logits follow the f64 reference, do not
/// depend on the thread count, and agree between one batch and token-by-token steps.
///
/// Bounds: uncorrelated logits (a wrong row order, a dropped tile) are about 140 % off in
/// relative L2, so 10 % (8 bits) and 50 % (4 bits) separate "the same model, rounded" from a
/// broken one; on these uniform random weights, which quantize worse than real ones, 4-bit
/// weights must also be clearly worse than 8-bit ones (16× coarser steps).
#[test]
fn lut_formats_follow_the_reference_and_threads_do_not_matter() {
    let tensors = random_tensors(42);
    let file = GgufFile::parse(gguf_bytes(&tensors, "llama"), "tiny.gguf").unwrap();
    let tokens = [3u32, 17, 0, 39, 5, 5, 21];
    let reference: Vec<f64> = naive_logits(&tensors, &tokens).concat();
    let mut errors = Vec::new();
    for (bits, bound) in [(8u8, 0.1), (4, 0.5)] {
        let format = WeightFormat::lut(bits).unwrap();
        let model = LlamaModel::load(&file, format.builder().unwrap().as_ref()).unwrap();
        let run = |threads: usize| {
            ThreadTeam::new(threads).install(|| {
                let mut cache = model.new_cache(tokens.len());
                model
                    .forward_with(&tokens, &mut cache, LogitsWanted::All, None)
                    .unwrap()
            })
        };
        let logits = run(1);
        let error = relative_error(&logits, &reference);
        println!("{format}: relative error {error:.4}");
        assert!(error < bound, "{format}: relative error {error}");
        errors.push(error);
        assert_eq!(logits, run(3), "{format}: 1 and 3 threads differ");
        let mut cache = model.new_cache(tokens.len());
        let mut steps = Vec::new();
        for &token in &tokens {
            steps.extend(model.forward(&[token], &mut cache).unwrap());
        }
        // A batch runs int8 activations through dot products (`gemm_q8`), steps run the
        // lookup tables: the two round the activations differently, so they agree to that
        // rounding (about 1 % per matrix), not bit for bit, and steps follow the reference too.
        let steps_error = relative_error(&steps, &reference);
        let apart = relative_error(
            &steps,
            &logits.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        );
        println!("{format}: steps' relative error {steps_error:.4}, batch vs steps {apart:.4}");
        assert!(
            steps_error < bound,
            "{format}: steps' relative error {steps_error}"
        );
        assert!(apart < 0.1, "{format}: batch vs steps {apart} apart");
    }
    assert!(errors[0] * 4.0 < errors[1], "8-bit {errors:?} vs 4-bit");
}
