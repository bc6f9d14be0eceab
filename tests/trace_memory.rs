//! Memory stays flat while streaming a long trace through the writer, the reader and the pass
//! grouper: a counting global allocator records the peak of live heap bytes, and the peak
//! while streaming must not depend on the trace's length.
//!
//! Token count: `EDGESIM_MEMORY_TEST_TOKENS` (default 1,000,000, a few seconds in a debug
//! build). `EDGESIM_MEMORY_TEST_TOKENS=10000000 cargo test --release --test trace_memory`
//! runs the 10-million-token version.

use edgesim::trace::{
    PassGrouper, Phase, SourceKind, TokenRecord, TraceHeader, TraceKind, TraceReader, TraceSource,
    TraceWriter, FORMAT_NAME, FORMAT_VERSION,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn header() -> TraceHeader {
    TraceHeader {
        format: FORMAT_NAME.into(),
        version: FORMAT_VERSION,
        kind: TraceKind::Expert,
        model: "tiny-moe".into(),
        layers: 1,
        first_moe_layer: 0,
        moe_layers: 1,
        experts: 4,
        top_k: 1,
        scores_normalized: true,
        predicted_layers_ahead: 0,
        neurons_per_layer: vec![],
        neuron_predictions: false,
        source: TraceSource {
            kind: SourceKind::Synthetic,
            description: "memory test".into(),
            parameters: serde_json::Value::Null,
            targets: vec![],
        },
    }
}

/// Writes `tokens` tokens (sequences of 1000: 100 prefill, 900 decode), reads them back
/// through the grouper, and returns the peak live heap above the level at the start.
fn stream(dir: &std::path::Path, tokens: u64) -> (usize, u64, u64) {
    let path = dir.join(format!("t{tokens}.est"));
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let mut w = TraceWriter::create(&path, header()).unwrap();
    let mut rec = TokenRecord::default();
    for t in 0..tokens {
        let position = (t % 1000) as u32;
        rec.sequence = (t / 1000) as u32;
        rec.position = position;
        rec.phase = if position < 100 {
            Phase::Prefill
        } else {
            Phase::Decode
        };
        rec.experts.clear();
        rec.experts.push((t * 7 % 4) as u16);
        rec.scores.clear();
        rec.scores.push(1.0);
        w.write(&rec).unwrap();
    }
    assert_eq!(w.finish().unwrap(), tokens);
    let reader = TraceReader::open(&path).unwrap();
    let mut grouper = PassGrouper::new(reader, 64);
    let mut pass = Default::default();
    let (mut passes, mut seen) = (0u64, 0u64);
    while grouper.next_pass_into(&mut pass).unwrap() {
        passes += 1;
        seen += u64::from(pass.batch());
    }
    assert_eq!(seen, tokens);
    assert!(
        grouper.source().buffer_capacity() < 64,
        "payload buffer grew"
    );
    drop(grouper);
    drop(pass);
    std::fs::remove_file(&path).unwrap();
    (PEAK.load(Ordering::Relaxed) - base, passes, seen)
}

#[test]
fn streaming_memory_is_flat_in_trace_length() {
    let tokens: u64 = std::env::var("EDGESIM_MEMORY_TEST_TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let (small_peak, small_passes, _) = stream(dir.path(), 10_000);
    let (large_peak, large_passes, _) = stream(dir.path(), tokens);
    eprintln!(
        "peak heap while streaming: {small_peak} B for 10,000 tokens, {large_peak} B for {tokens} tokens"
    );
    // 100 prefill tokens in chunks of 64 = 2 passes, plus 900 decode passes per 1000 tokens.
    assert_eq!(small_passes, 10 * 902);
    assert_eq!(large_passes, tokens / 1000 * 902);
    // Same buffers whatever the length: allow 4 KiB of slack for allocator-size noise.
    assert!(
        large_peak <= small_peak + 4096,
        "peak grew from {small_peak} B to {large_peak} B"
    );
    // And it is small in absolute terms: two 64 KiB I/O buffers plus a few records.
    assert!(large_peak < 512 * 1024, "peak {large_peak} B");
}
