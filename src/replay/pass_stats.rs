//! What a run's summary needs from its passes, accumulated as the passes happen, so a replay
//! keeps no per-pass records (unless asked to) and its memory does not grow with the trace
//! but for the exact decode-latency percentiles (about two bytes a decode pass, see
//! [`ExactPercentiles`]) and one entry per sequence for the time to first token.

use super::exact_percentiles::ExactPercentiles;
use super::PassRecord;
use crate::trace::Phase;
use std::collections::BTreeMap;

/// Running totals over a replay's passes: everything [`crate::report::RunSummary`] is made of.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PassStats {
    pub passes: u64,
    pub prefill_tokens: u64,
    pub decode_tokens: u64,
    /// Sum of decode passes' latencies, of their stalls (latency minus compute) and of the
    /// bytes their plans read.
    pub decode_ns: u64,
    pub decode_stall_ns: u64,
    pub decode_bytes: u64,
    /// Decode passes' latencies in nanoseconds.
    pub decode_latencies: ExactPercentiles,
    /// Per sequence: accumulated prefill latency until the first output token, and whether the
    /// first token is out yet.
    pub ttft: BTreeMap<u32, (u64, bool)>,
}

impl PassStats {
    /// Counts one pass.
    pub fn add(&mut self, p: &PassRecord) {
        self.passes += 1;
        let entry = self.ttft.entry(p.sequence).or_insert((0, false));
        match p.phase {
            Phase::Prefill => {
                self.prefill_tokens += p.tokens as u64;
                if !entry.1 {
                    entry.0 += p.latency.0;
                }
            }
            Phase::Decode => {
                self.decode_tokens += p.tokens as u64;
                self.decode_ns += p.latency.0;
                self.decode_stall_ns += p.stall().0;
                self.decode_bytes += p.bytes_read;
                self.decode_latencies.push(p.latency.0);
                // A sequence without prefill gets its first token from its first decode.
                if entry.0 == 0 && !entry.1 {
                    entry.0 = p.latency.0;
                }
                entry.1 = true;
            }
        }
    }

    /// The totals of `passes`, as a replay that saw them would have accumulated them (for
    /// callers that rewrite kept per-pass records, such as validation's medians).
    pub fn of(passes: &[PassRecord]) -> Self {
        let mut s = PassStats::default();
        for p in passes {
            s.add(p);
        }
        s
    }
}
