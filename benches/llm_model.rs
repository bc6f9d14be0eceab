//! SmolLM2-135M-Instruct on the f32 reference path: prefill of 128 tokens and single-token
//! decode, on 1 and 2 threads. Skips (registers nothing) when the model is not in the cache;
//! run `edgesim model fetch smollm2` first.
//!
//! `cargo bench --bench llm_model`. Throughput is in tokens ("elem/s"). Compare with
//! llama.cpp's llama-bench pp128 / tg128 on the same file (docs/real-model.md). Other
//! processes on the machine skew the figures: note the load average with them.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use edgesim::llm::format::WeightFormat;
use edgesim::llm::LoadedModel;
use std::hint::black_box;
use std::time::Duration;

/// Genesis 1:1–5, King James Version (public domain), repeated to the prompt length.
const TEXT: &str =
    "In the beginning God created the heaven and the earth. And the earth was without \
form, and void; and darkness was upon the face of the deep. And the Spirit of God moved upon the \
face of the waters. And God said, Let there be light: and there was light. And God saw the light, \
that it was good: and God divided the light from the darkness. And God called the light Day, and \
the darkness he called Night. And the evening and the morning were the first day. ";

const PROMPT_TOKENS: usize = 128;

fn bench(c: &mut Criterion) {
    let cache = match edgesim::llm::fetch::cache_dir(None) {
        Ok(cache) => cache,
        Err(e) => return eprintln!("SKIPPED llm_model: {e}"),
    };
    let path = match edgesim::llm::fetch::locate_model("smollm2", &cache) {
        Ok(path) => path,
        Err(e) => return eprintln!("SKIPPED llm_model: {e}"),
    };
    let loaded = LoadedModel::load(&path, WeightFormat::F32).expect("the cached model loads");
    let mut prompt = loaded.tokenizer.encode(&TEXT.repeat(4)).expect("encodes");
    assert!(prompt.len() >= PROMPT_TOKENS);
    prompt.truncate(PROMPT_TOKENS);
    let model = &loaded.model;

    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool");
        let mut group = c.benchmark_group(format!("smollm2_f32_{threads}t"));
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(8));

        group.throughput(Throughput::Elements(PROMPT_TOKENS as u64));
        group.bench_function("prefill_128", |b| {
            b.iter(|| {
                pool.install(|| {
                    let mut kv = model.new_cache(PROMPT_TOKENS);
                    black_box(model.forward(&prompt, &mut kv).expect("forward"))
                })
            })
        });

        // One token at position 128, after a 128-token prompt; the cache is cut back each time.
        let mut kv = model.new_cache(PROMPT_TOKENS + 1);
        pool.install(|| model.forward(&prompt, &mut kv).expect("prefill"));
        group.throughput(Throughput::Elements(1));
        group.bench_function("decode_at_128", |b| {
            b.iter(|| {
                pool.install(|| {
                    kv.truncate(PROMPT_TOKENS);
                    black_box(model.forward(&[prompt[0]], &mut kv).expect("decode"))
                })
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
