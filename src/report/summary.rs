//! The figures a user compares policies by, derived from one replay.

use crate::replay::ReplayOutcome;
use crate::units::Nanos;
use serde::Serialize;

/// One replay's headline numbers. Field names end in their unit.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RunSummary {
    pub passes: u64,
    pub sequences: u64,
    pub prefill_tokens: u64,
    pub decode_tokens: u64,
    pub warmup_ms: f64,
    /// Mean over sequences of the time from the start of prefill to the first output token.
    pub ttft_mean_ms: f64,
    /// Decode tokens divided by the time spent in decode passes.
    pub decode_tokens_per_s: f64,
    pub decode_latency_p50_ms: f64,
    pub decode_latency_p90_ms: f64,
    pub decode_latency_p99_ms: f64,
    /// Share of decode time not spent computing (waiting for loads, switches).
    pub decode_stall_share: f64,
    pub hit_rate: f64,
    pub bytes_read_per_decode_token: f64,
    pub ops_total: u64,
    pub peak_policy_memory_bytes: u64,
}

impl RunSummary {
    /// The summary of a replay, from its running totals ([`ReplayOutcome::stats`]), so it
    /// needs no per-pass records.
    pub fn from_outcome(o: &ReplayOutcome) -> Self {
        let t = &o.stats;
        let mut s = RunSummary {
            passes: t.passes,
            prefill_tokens: t.prefill_tokens,
            decode_tokens: t.decode_tokens,
            warmup_ms: o.warmup.as_millis_f64(),
            hit_rate: o.counters.hit_rate(),
            ops_total: o.ops_total,
            peak_policy_memory_bytes: o.peak_policy_memory,
            ..RunSummary::default()
        };
        s.sequences = t.ttft.len() as u64;
        if !t.ttft.is_empty() {
            let total: u64 = t.ttft.values().map(|v| v.0).sum();
            s.ttft_mean_ms = total as f64 / t.ttft.len() as f64 / 1e6;
        }
        if t.decode_ns > 0 {
            s.decode_tokens_per_s = s.decode_tokens as f64 / Nanos(t.decode_ns).as_secs_f64();
            s.decode_stall_share = t.decode_stall_ns as f64 / t.decode_ns as f64;
        }
        if s.decode_tokens > 0 {
            s.bytes_read_per_decode_token = t.decode_bytes as f64 / s.decode_tokens as f64;
        }
        let p = t.decode_latencies.percentiles(&[50.0, 90.0, 99.0]);
        s.decode_latency_p50_ms = p[0] / 1e6;
        s.decode_latency_p90_ms = p[1] / 1e6;
        s.decode_latency_p99_ms = p[2] / 1e6;
        s
    }
}

/// Nearest-rank percentile of sorted values; 0 for an empty slice.
pub fn percentile(sorted: &[u64], pct: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((pct / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::{PassRecord, PassStats};
    use crate::trace::Phase;

    fn pass(seq: u32, phase: Phase, tokens: u32, latency_ms: u64, compute_ms: u64) -> PassRecord {
        PassRecord {
            sequence: seq,
            phase,
            tokens,
            position: 0,
            start: Nanos::ZERO,
            latency: Nanos::from_millis(latency_ms),
            compute: Nanos::from_millis(compute_ms),
            bytes_read: 1000,
            ops: 1,
        }
    }

    #[test]
    fn decode_rate_ttft_and_stall() {
        let passes = vec![
            pass(0, Phase::Prefill, 16, 300, 100),
            pass(0, Phase::Decode, 1, 100, 50),
            pass(0, Phase::Decode, 1, 300, 150),
            pass(1, Phase::Decode, 1, 200, 200),
        ];
        let o = ReplayOutcome {
            stats: PassStats::of(&passes),
            ..ReplayOutcome::default()
        };
        let s = RunSummary::from_outcome(&o);
        assert_eq!((s.prefill_tokens, s.decode_tokens, s.sequences), (16, 3, 2));
        // 3 tokens in 0.6 s.
        assert!((s.decode_tokens_per_s - 5.0).abs() < 1e-9);
        // Sequence 0: 300 ms prefill; sequence 1 (no prefill): its first decode, 200 ms.
        assert!((s.ttft_mean_ms - 250.0).abs() < 1e-9);
        // Stall: 50 + 150 + 0 of 600 ms.
        assert!((s.decode_stall_share - 200.0 / 600.0).abs() < 1e-9);
        assert_eq!(s.decode_latency_p50_ms, 200.0);
        assert_eq!(s.decode_latency_p99_ms, 300.0);
        assert_eq!(s.bytes_read_per_decode_token, 1000.0);
    }

    #[test]
    fn percentile_nearest_rank() {
        let v = [10, 20, 30, 40];
        assert_eq!(percentile(&v, 50.0), 20.0);
        assert_eq!(percentile(&v, 100.0), 40.0);
        assert_eq!(percentile(&v, 0.0), 10.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
