//! The real SmolLM2 file (skips without it): greedy answers to factual questions (f32), the
//! 8-bit LUT format's greedy replies equal to f32's, determinism across thread counts,
//! batch/step agreement, FFN hooks, a recorded neuron trace.

mod llm_common;

use edgesim::llm::eval::perplexity;
use edgesim::llm::format::WeightFormat;
use edgesim::llm::generate::{generate, GenerationRequest};
use edgesim::llm::gguf::GgufFile;
use edgesim::llm::matvec::F32Builder;
use edgesim::llm::model::{FfnObserver, LlamaModel, LogitsWanted, RopeLayout};
use edgesim::llm::parallel::ThreadTeam;
use edgesim::llm::record::{record_neuron_trace, RecordOptions};
use edgesim::llm::sampling::{argmax, Sampler};
use edgesim::llm::LoadedModel;
use edgesim::trace::{validate_file, TokenRecord, TokenSource, TraceReader};
use std::sync::OnceLock;

fn loaded() -> Option<&'static LoadedModel> {
    static MODEL: OnceLock<Option<LoadedModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let path = llm_common::smollm2_path()?;
            Some(LoadedModel::load(&path, WeightFormat::F32).expect("the cached model loads"))
        })
        .as_ref()
}

/// The 8-bit LUT model, loaded once for the tests that compare it with f32.
fn loaded_8bit() -> Option<&'static LoadedModel> {
    static MODEL: OnceLock<Option<LoadedModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let path = llm_common::smollm2_path()?;
            let format = WeightFormat::lut(8).unwrap();
            Some(LoadedModel::load(&path, format).expect("the cached model loads at 8 bits"))
        })
        .as_ref()
}

/// The greedy reply to a chat question.
fn greedy_reply(model: &LoadedModel, question: &str, max_tokens: usize) -> Reply {
    let prompt = model.prompt_tokens(question, None, false).unwrap();
    let stops = model.stop_tokens();
    let request = GenerationRequest {
        prompt_tokens: &prompt,
        max_tokens,
        stop_tokens: &stops,
    };
    let mut text = String::new();
    let (tokens, _) = generate(
        &model.model,
        &model.tokenizer,
        &request,
        &mut Sampler::new(0.0, 0),
        &mut |piece| text.push_str(piece),
    )
    .unwrap();
    println!("Q: {question}\nA: {text}\n");
    (tokens, text)
}

/// Questions the 135M model answers right under llama.cpp too, with the fact the answer must
/// contain; it gets others wrong (asked for the largest planet it says Neptune), so these
/// assert correctness of the runtime, not wisdom.
const FACT_QUESTIONS: [(&str, &str); 3] = [
    ("What is the capital of France?", "Paris"),
    ("Who wrote Romeo and Juliet?", "Shakespeare"),
    ("How many days are in a week?", "7"),
];

/// Tokens of the greedy replies compared between formats.
const REPLY_TOKENS: usize = 16;

/// A greedy reply: its tokens (stop token included, if reached) and its text.
type Reply = (Vec<u32>, String);

/// The f32 model's greedy replies to [`FACT_QUESTIONS`], computed once.
fn f32_replies() -> Option<&'static Vec<Reply>> {
    static REPLIES: OnceLock<Option<Vec<Reply>>> = OnceLock::new();
    REPLIES
        .get_or_init(|| {
            let model = loaded()?;
            Some(
                FACT_QUESTIONS
                    .iter()
                    .map(|(question, _)| greedy_reply(model, question, REPLY_TOKENS))
                    .collect(),
            )
        })
        .as_ref()
}

#[test]
fn greedy_answers_to_factual_questions_contain_the_fact() {
    let Some(replies) = f32_replies() else { return };
    for ((question, fact), (_, answer)) in FACT_QUESTIONS.iter().zip(replies) {
        assert!(
            answer.contains(fact),
            "{question:?} → {answer:?} lacks {fact:?}"
        );
    }
}

/// Issue 6's check of the 8-bit format: its greedy continuation of three prompts follows the
/// f32 model's for the first 16 tokens (or up to the stop token that ends both), wherever the
/// f32 model's choice is not a near tie.
///
/// Checked by teacher forcing, which is equivalent and cheaper in debug builds: one batched
/// 8-bit pass over prompt + f32 reply must predict, at every position, the f32 reply's next
/// token; by induction the 8-bit greedy reply is then the same token sequence. Positions where
/// f32's best logit leads its second by less than [`NEAR_TIE`] are exempt: there the int8
/// rounding of the activations (as in llama.cpp's Q8_0 path) may pick either token (the first
/// token of the first reply is one: "The" leads "A" by 0.08). At most one exempt position
/// per reply may disagree, and every other position must agree.
#[test]
fn eight_bit_greedy_continuations_equal_the_f32_ones() {
    let (Some(replies), Some(eight), Some(exact)) = (f32_replies(), loaded_8bit(), loaded()) else {
        return;
    };
    assert_eq!(eight.model.format(), "int8-g32");
    let vocab = eight.model.config().vocab_size;
    for ((question, _), (reply, text)) in FACT_QUESTIONS.iter().zip(replies) {
        let prompt = eight.prompt_tokens(question, None, false).unwrap();
        let mut sequence = prompt.clone();
        sequence.extend(&reply[..reply.len() - 1]);
        let all_logits = |model: &LoadedModel| {
            let mut cache = model.model.new_cache(sequence.len());
            model
                .model
                .forward_with(&sequence, &mut cache, LogitsWanted::All, None)
                .unwrap()
        };
        let (logits, reference) = (all_logits(eight), all_logits(exact));
        let mut near_tie_disagreements = 0;
        for (i, position) in (prompt.len() - 1..sequence.len()).enumerate() {
            let predicted = argmax(&logits[position * vocab..(position + 1) * vocab]);
            let row = &reference[position * vocab..(position + 1) * vocab];
            let best = row[reply[i] as usize];
            let second = row
                .iter()
                .enumerate()
                .filter(|&(token, _)| token != reply[i] as usize)
                .map(|(_, &v)| v)
                .fold(f32::MIN, f32::max);
            if predicted == reply[i] {
                continue;
            }
            assert!(
                best - second < NEAR_TIE,
                "{question:?}: token {i} of f32's {text:?} is {} (lead {:.3}), 8-bit picks {predicted}",
                reply[i],
                best - second
            );
            near_tie_disagreements += 1;
        }
        assert!(
            near_tie_disagreements <= 1,
            "{question:?}: {near_tie_disagreements} near ties went the other way"
        );
        assert!(
            reply.len() == REPLY_TOKENS || eight.stop_tokens().contains(reply.last().unwrap()),
            "{question:?}: reply of {} tokens",
            reply.len()
        );
    }
}

/// The lead (in logits) below which f32's greedy choice counts as a near tie.
const NEAR_TIE: f32 = 0.25;

#[test]
fn seeded_sampling_repeats_itself() {
    let Some(model) = loaded() else { return };
    let prompt = model.tokenizer.encode("Once upon a time, a cat").unwrap();
    let stops = model.stop_tokens();
    let request = GenerationRequest {
        prompt_tokens: &prompt,
        max_tokens: 8,
        stop_tokens: &stops,
    };
    let sample = |seed: u64| {
        let mut sampler = Sampler::new(0.8, seed);
        generate(
            &model.model,
            &model.tokenizer,
            &request,
            &mut sampler,
            &mut |_| {},
        )
        .unwrap()
        .0
    };
    let first = sample(1);
    println!("seed 1: {:?}", model.tokenizer.decode(&first).unwrap());
    assert_eq!(first, sample(1));
}

#[test]
fn logits_do_not_depend_on_the_thread_count() {
    let Some(model) = loaded() else { return };
    // A raw prompt keeps this test short in debug builds; the chat prompts run above.
    let prompt = model.tokenizer.encode("Name three colours: red,").unwrap();
    let run = |threads: usize| {
        let team = ThreadTeam::new(threads);
        team.install(|| {
            let mut cache = model.model.new_cache(prompt.len());
            model.model.forward(&prompt, &mut cache).unwrap()
        })
    };
    let one = run(1);
    let two = run(2);
    let three = run(3);
    assert_eq!(one.len(), 49152);
    assert!(one.iter().all(|v| v.is_finite()));
    assert!(
        one == two && one == three,
        "logits differ between 1, 2 and 3 threads"
    );
}

#[test]
fn batched_prefill_agrees_with_token_by_token_steps() {
    let Some(model) = loaded() else { return };
    let prompt = model
        .tokenizer
        .encode("The quick brown fox jumps over the lazy dog")
        .unwrap();
    let mut batch_cache = model.model.new_cache(prompt.len());
    let all = model
        .model
        .forward_with(&prompt, &mut batch_cache, LogitsWanted::All, None)
        .unwrap();
    let vocab = model.model.config().vocab_size;
    let mut step_cache = model.model.new_cache(prompt.len());
    let mut worst = 0.0f32;
    for (i, &token) in prompt.iter().enumerate() {
        let step = model.model.forward(&[token], &mut step_cache).unwrap();
        let batched = &all[i * vocab..(i + 1) * vocab];
        for (a, b) in step.iter().zip(batched) {
            worst = worst.max((a - b).abs());
        }
    }
    println!("largest batch/step logit difference: {worst:e}");
    assert!(worst < 1e-3, "batch and step logits differ by {worst}");
    // The last row of "all logits" is what "last logits" returns.
    let mut cache = model.model.new_cache(prompt.len());
    let last = model.model.forward(&prompt, &mut cache).unwrap();
    assert_eq!(&all[(prompt.len() - 1) * vocab..], &last[..]);
}

/// Collects what the FFN hook reports.
#[derive(Default)]
struct Recorder {
    calls: Vec<(usize, usize, usize)>,
    first_layer: Vec<f32>,
}

impl FfnObserver for Recorder {
    fn ffn_activations(&mut self, layer: usize, first_position: usize, activations: &[f32]) {
        self.calls.push((layer, first_position, activations.len()));
        if layer == 0 {
            self.first_layer.extend_from_slice(activations);
        }
    }
}

#[test]
fn ffn_hook_sees_every_layer_and_token_without_changing_the_result() {
    let Some(model) = loaded() else { return };
    let prompt = model.tokenizer.encode("Hello there, friend").unwrap();
    let n = prompt.len();
    let mut recorder = Recorder::default();
    let mut cache = model.model.new_cache(n + 1);
    let observed = model
        .model
        .forward_with(&prompt, &mut cache, LogitsWanted::Last, Some(&mut recorder))
        .unwrap();
    model
        .model
        .forward_with(
            &[prompt[0]],
            &mut cache,
            LogitsWanted::Last,
            Some(&mut recorder),
        )
        .unwrap();
    let ffn = model.model.config().ffn_size;
    let mut expected: Vec<(usize, usize, usize)> = (0..30).map(|l| (l, 0, n * ffn)).collect();
    expected.extend((0..30).map(|l| (l, n, ffn)));
    assert_eq!(recorder.calls, expected);
    // SiLU(gate)·up is signed and mostly small: some neurons are near zero, some are not.
    let magnitudes: Vec<f32> = recorder.first_layer[..n * ffn]
        .iter()
        .map(|v| v.abs())
        .collect();
    let small = magnitudes.iter().filter(|&&m| m < 0.01).count();
    println!(
        "layer 0: {small} of {} activations below 0.01 in magnitude",
        magnitudes.len()
    );
    assert!(small > 0 && small < magnitudes.len());
    let mut plain_cache = model.model.new_cache(n);
    assert_eq!(
        model.model.forward(&prompt, &mut plain_cache).unwrap(),
        observed
    );
}

/// Genesis 1:1–5, King James Version (public domain).
const GENESIS: &str = "In the beginning God created the heaven and the earth. And the earth was \
without form, and void; and darkness was upon the face of the deep. And the Spirit of God moved \
upon the face of the waters. And God said, Let there be light: and there was light. And God saw \
the light, that it was good: and God divided the light from the darkness. And God called the \
light Day, and the darkness he called Night. And the evening and the morning were the first day.";

/// The layout claim of `RopeLayout::Interleaved`, checked on the file: the layout that matches
/// how the converter stored Q and K must predict real prose better than the other one.
#[test]
fn interleaved_rope_predicts_prose_better_than_halves_on_this_file() {
    let (Some(model), Some(path)) = (loaded(), llm_common::smollm2_path()) else {
        return;
    };
    let tokens = model.tokenizer.encode(GENESIS).unwrap();
    let window = &tokens[..32];
    let interleaved = perplexity(&model.model, window, 32).unwrap();
    let file = GgufFile::open(&path).unwrap();
    let halves_model = LlamaModel::load(&file, &F32Builder)
        .unwrap()
        .with_rope_layout(RopeLayout::Halves);
    let halves = perplexity(&halves_model, window, 32).unwrap();
    println!(
        "perplexity of KJV Genesis 1:1-5 (first 32 tokens): interleaved {:.2}, halves {:.2}",
        interleaved.perplexity, halves.perplexity
    );
    // llama.cpp's method: the second half of the window, positions 16..31.
    assert_eq!(interleaved.scored_tokens, 15);
    assert!(interleaved.perplexity < halves.perplexity);
}

/// `trace record`'s library half on a short raw prompt: the file validates, holds every prefill
/// and decode token, and each layer's active fraction is the requested one.
#[test]
fn a_recorded_trace_validates_and_keeps_the_requested_fraction() {
    let Some(model) = loaded() else { return };
    let options = RecordOptions {
        keep_fraction: 0.25,
        max_new_tokens: 3,
        raw: true,
        system: None,
        model_id: "smollm2-135m".into(),
        prompts_source: "test prompts".into(),
    };
    let prompts = ["In the beginning God created".to_string()];
    let recording = record_neuron_trace(model, &prompts, &options).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("recorded.est");
    let written = recording.write(&path).unwrap();
    let checked = validate_file(&path).unwrap();
    let prompt_tokens = model.prompt_tokens(&prompts[0], None, true).unwrap().len() as u64;
    assert_eq!(checked.summary.prefill_tokens, prompt_tokens);
    assert_eq!(checked.summary.decode_tokens, 3);
    assert_eq!(checked.summary.tokens, written);
    assert_eq!(checked.header.neurons_per_layer, vec![1536; 30]);
    assert_eq!(checked.header.source.parameters["keep_fraction"], 0.25);
    // Read it back and count: each layer keeps round(0.25 · cells) activations; magnitudes
    // tied at the threshold can only lower the count, and ties are rare among f32 products.
    let mut reader = TraceReader::open(&path).unwrap();
    let mut record = TokenRecord::default();
    let mut active = [0u64; 30];
    while reader.next_into(&mut record).unwrap() {
        for (layer, count) in active.iter_mut().enumerate() {
            *count += record.neurons_at(layer).len() as u64;
        }
    }
    let cells = written as f64 * 1536.0;
    let requested = (0.25 * cells).round() as u64;
    for (layer, &count) in active.iter().enumerate() {
        assert!(
            count <= requested && count + requested / 1000 >= requested,
            "layer {layer}: {count} of {cells} active, requested {requested}"
        );
    }
}
