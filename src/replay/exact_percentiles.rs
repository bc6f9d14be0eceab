//! Exact nearest-rank percentiles of a stream of integers, kept in far less memory than the
//! values themselves.
//!
//! The run summary reports decode-latency percentiles exactly (nearest rank over every decode
//! pass), and exact percentiles cannot be had in one pass with memory that does not grow with
//! the stream. What can be had is memory far below 8 bytes a value: values are buffered, then
//! sorted into **runs** of `(value, count)` pairs, delta- and varint-encoded (simulated
//! latencies cluster, so a delta is one or two bytes and repeated values cost one count).
//! Runs are merged like a binary counter (a run is merged into the one before it while that
//! one is not more than twice its size), so there are at most log2(n / buffer) runs and every
//! value is re-encoded O(log n) times. A query walks all runs in one k-way merge.

/// Values buffered before they are sorted into a run.
const BUFFER: usize = 4096;

/// A sorted multiset of `u64`, encoded as LEB128 varints: for each distinct value ascending,
/// its difference from the previous distinct value (the first from 0), then its count.
#[derive(Clone, Debug, Default, PartialEq)]
struct Run {
    bytes: Vec<u8>,
    /// Values in the run, counting repeats.
    values: u64,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Decodes the varint at `*at`, advancing it. Runs are written only by this module, so a
/// malformed one is a bug.
fn get_varint(bytes: &[u8], at: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let b = bytes[*at];
        *at += 1;
        v |= ((b & 0x7f) as u64) << shift;
        if b < 0x80 {
            return v;
        }
        shift += 7;
    }
}

/// Writes `(value, count)` pairs (values strictly ascending) as a run.
struct RunWriter {
    run: Run,
    last: u64,
}

impl RunWriter {
    fn new() -> Self {
        RunWriter {
            run: Run::default(),
            last: 0,
        }
    }

    fn push(&mut self, value: u64, count: u64) {
        put_varint(&mut self.run.bytes, value - self.last);
        put_varint(&mut self.run.bytes, count);
        self.last = value;
        self.run.values += count;
    }
}

/// Reads a run's `(value, count)` pairs in ascending order.
struct RunReader<'a> {
    bytes: &'a [u8],
    at: usize,
    last: u64,
}

impl<'a> RunReader<'a> {
    fn new(run: &'a Run) -> Self {
        RunReader {
            bytes: &run.bytes,
            at: 0,
            last: 0,
        }
    }
}

impl Iterator for RunReader<'_> {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        if self.at == self.bytes.len() {
            return None;
        }
        self.last += get_varint(self.bytes, &mut self.at);
        let count = get_varint(self.bytes, &mut self.at);
        Some((self.last, count))
    }
}

/// Sorted values (with repeats) as `(value, count)` pairs.
fn pairs_of_sorted(values: &[u64]) -> impl Iterator<Item = (u64, u64)> + '_ {
    values
        .chunk_by(|a, b| a == b)
        .map(|group| (group[0], group.len() as u64))
}

/// Merges ascending `(value, count)` streams into one, summing the counts of equal values.
fn merge_into<I: Iterator<Item = (u64, u64)>>(mut streams: Vec<std::iter::Peekable<I>>) -> Run {
    let mut out = RunWriter::new();
    loop {
        let Some(value) = streams
            .iter_mut()
            .filter_map(|s| s.peek().map(|&(v, _)| v))
            .min()
        else {
            return out.run;
        };
        let mut count = 0;
        for s in streams.iter_mut() {
            if let Some(&(v, c)) = s.peek() {
                if v == value {
                    count += c;
                    s.next();
                }
            }
        }
        out.push(value, count);
    }
}

/// A multiset of integers that answers nearest-rank percentiles exactly.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExactPercentiles {
    pending: Vec<u64>,
    /// Sorted runs, each more than twice the size of the next.
    runs: Vec<Run>,
    count: u64,
}

impl ExactPercentiles {
    pub fn new() -> Self {
        Self::default()
    }

    /// Values pushed so far.
    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn push(&mut self, value: u64) {
        if self.pending.capacity() == 0 {
            self.pending.reserve_exact(BUFFER);
        }
        self.pending.push(value);
        self.count += 1;
        if self.pending.len() == BUFFER {
            self.flush();
        }
    }

    /// Sorts the buffer into a run and merges runs until their sizes fall geometrically.
    fn flush(&mut self) {
        self.pending.sort_unstable();
        let mut w = RunWriter::new();
        for (v, c) in pairs_of_sorted(&self.pending) {
            w.push(v, c);
        }
        self.pending.clear();
        self.runs.push(w.run);
        while self.runs.len() >= 2 {
            let n = self.runs.len();
            if self.runs[n - 2].values > 2 * self.runs[n - 1].values {
                break;
            }
            let newer = self.runs.pop().expect("two runs");
            let older = self.runs.pop().expect("two runs");
            let merged = merge_into(vec![
                RunReader::new(&older).peekable(),
                RunReader::new(&newer).peekable(),
            ]);
            self.runs.push(merged);
        }
    }

    /// The value of 1-based rank `rank` (in ascending order, counting repeats), for each of
    /// `ranks` (ascending); ranks beyond the count give the largest value.
    fn values_at_ranks(&self, ranks: &[u64]) -> Vec<u64> {
        let mut sorted_pending = self.pending.clone();
        sorted_pending.sort_unstable();
        let mut streams: Vec<Box<dyn Iterator<Item = (u64, u64)> + '_>> = self
            .runs
            .iter()
            .map(|r| Box::new(RunReader::new(r)) as Box<dyn Iterator<Item = (u64, u64)>>)
            .collect();
        streams.push(Box::new(pairs_of_sorted(&sorted_pending)));
        let mut streams: Vec<_> = streams.into_iter().map(|s| s.peekable()).collect();
        let mut out = Vec::with_capacity(ranks.len());
        let mut seen = 0u64;
        let mut last = 0u64;
        let mut next_rank = ranks.iter().peekable();
        while next_rank.peek().is_some() {
            let Some(value) = streams
                .iter_mut()
                .filter_map(|s| s.peek().map(|&(v, _)| v))
                .min()
            else {
                break;
            };
            for s in streams.iter_mut() {
                if let Some(&(v, c)) = s.peek() {
                    if v == value {
                        seen += c;
                        s.next();
                    }
                }
            }
            last = value;
            while let Some(&&r) = next_rank.peek() {
                if r > seen {
                    break;
                }
                out.push(value);
                next_rank.next();
            }
        }
        out.resize(ranks.len(), last);
        out
    }

    /// Nearest-rank percentile (`pct` in 0..=100) as `f64`; 0 when empty. The same rank rule
    /// as [`crate::report::summary::percentile`] over the sorted values.
    pub fn percentile(&self, pct: f64) -> f64 {
        self.percentiles(&[pct])[0]
    }

    /// [`ExactPercentiles::percentile`] for several percentiles in one walk.
    pub fn percentiles(&self, pcts: &[f64]) -> Vec<f64> {
        if self.count == 0 {
            return vec![0.0; pcts.len()];
        }
        let n = self.count;
        let rank = |pct: f64| (((pct / 100.0) * n as f64).ceil() as u64).clamp(1, n);
        let mut order: Vec<usize> = (0..pcts.len()).collect();
        order.sort_by_key(|&i| rank(pcts[i]));
        let ranks: Vec<u64> = order.iter().map(|&i| rank(pcts[i])).collect();
        let values = self.values_at_ranks(&ranks);
        let mut out = vec![0.0; pcts.len()];
        for (k, &i) in order.iter().enumerate() {
            out[i] = values[k] as f64;
        }
        out
    }

    /// Heap bytes held (buffer and runs), for memory measurements.
    pub fn heap_bytes(&self) -> usize {
        self.pending.capacity() * 8 + self.runs.iter().map(|r| r.bytes.capacity()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::summary::percentile;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn check(values: &[u64]) {
        let mut e = ExactPercentiles::new();
        for &v in values {
            e.push(v);
        }
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        let pcts = [0.0, 1.0, 50.0, 90.0, 99.0, 99.9, 100.0, 37.5];
        let got = e.percentiles(&pcts);
        for (p, g) in pcts.iter().zip(got) {
            assert_eq!(
                g,
                percentile(&sorted, *p),
                "p{p} of {} values",
                values.len()
            );
        }
        assert_eq!(e.len(), values.len() as u64);
    }

    #[test]
    fn matches_sorting_on_seeded_streams_of_every_shape() {
        let mut rng = ChaCha8Rng::seed_from_u64(19);
        for &n in &[0usize, 1, 2, 3, 100, 4095, 4096, 4097, 12_288, 50_000] {
            // Wide values, clustered values, heavy repeats, and u64 extremes.
            let wide: Vec<u64> = (0..n).map(|_| rng.gen()).collect();
            let clustered: Vec<u64> = (0..n)
                .map(|_| 5_000_000 + rng.gen_range(0..20_000))
                .collect();
            let repeats: Vec<u64> = (0..n).map(|_| rng.gen_range(0..5) * 1000).collect();
            let extremes: Vec<u64> = (0..n)
                .map(|i| if i % 2 == 0 { 0 } else { u64::MAX })
                .collect();
            for v in [&wide, &clustered, &repeats, &extremes] {
                check(v);
            }
        }
        // Ascending and descending input (the orders a run sees most).
        check(&(0..30_000).collect::<Vec<u64>>());
        check(&(0..30_000).rev().collect::<Vec<u64>>());
    }

    #[test]
    fn clustered_values_take_a_few_bytes_each() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut e = ExactPercentiles::new();
        let n = 1_000_000u64;
        for _ in 0..n {
            e.push(20_000_000 + rng.gen_range(0..2_000_000));
        }
        // 8 bytes a value as a plain vector; the runs need far less.
        assert!(
            e.heap_bytes() < (n as usize) * 3,
            "{} bytes",
            e.heap_bytes()
        );
        assert!(e.runs.len() <= 20, "{} runs", e.runs.len());
    }
}
