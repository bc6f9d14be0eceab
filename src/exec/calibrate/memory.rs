//! Memory microbenchmarks: streaming read bandwidth, allocation (map and first touch),
//! zeroing, and decryption throughput.

use crate::exec::io::PageBuf;
use crate::exec::store::crypt::{self, StoreKey, CHUNK_BYTES};
use std::time::Instant;

fn sum_u64(words: &[u64]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present (checked).
        return unsafe { sum_u64_avx2(words) };
    }
    sum_u64_portable(words)
}

/// Eight 256-bit accumulators and a software prefetch a few KiB ahead: the loads the LUT
/// kernels issue, so the figure is what a kernel can stream rather than what one add chain
/// can.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sum_u64_avx2(words: &[u64]) -> u64 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_si256(); 8];
    let chunks = words.len() / 32;
    let p = words.as_ptr();
    for i in 0..chunks {
        let base = p.add(i * 32);
        _mm_prefetch(base.add(1024) as *const i8, _MM_HINT_T0);
        _mm_prefetch(base.add(1024 + 8) as *const i8, _MM_HINT_T0);
        _mm_prefetch(base.add(1024 + 16) as *const i8, _MM_HINT_T0);
        _mm_prefetch(base.add(1024 + 24) as *const i8, _MM_HINT_T0);
        for (k, a) in acc.iter_mut().enumerate() {
            let v = _mm256_loadu_si256(base.add(k * 4) as *const __m256i);
            *a = _mm256_add_epi64(*a, v);
        }
    }
    let mut lanes = [0u64; 4];
    let mut total = sum_u64_portable(&words[chunks * 32..]);
    for a in acc {
        _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, a);
        total = lanes.iter().fold(total, |t, &x| t.wrapping_add(x));
    }
    total
}

fn sum_u64_portable(words: &[u64]) -> u64 {
    // Four independent accumulators so the loop is bound by loads, not by one add chain.
    let mut acc = [0u64; 4];
    for c in words.chunks_exact(4) {
        acc[0] = acc[0].wrapping_add(c[0]);
        acc[1] = acc[1].wrapping_add(c[1]);
        acc[2] = acc[2].wrapping_add(c[2]);
        acc[3] = acc[3].wrapping_add(c[3]);
    }
    let rest = words
        .chunks_exact(4)
        .remainder()
        .iter()
        .fold(0u64, |a, &b| a.wrapping_add(b));
    acc.iter().fold(rest, |a, &b| a.wrapping_add(b))
}

/// Read bandwidth of `threads` threads each streaming its share of a `bytes` buffer
/// (best of 3 passes after one warm-up pass).
pub fn stream_bandwidth(bytes: usize, threads: usize) -> f64 {
    let words = vec![1u64; bytes / 8];
    let threads = threads.max(1);
    let per = words.len().div_ceil(threads);
    let mut best: f64 = 0.0;
    for pass in 0..4 {
        let start = Instant::now();
        let total: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = words
                .chunks(per)
                .map(|part| s.spawn(move || sum_u64(part)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(0))
                .fold(0, u64::wrapping_add)
        });
        std::hint::black_box(total);
        let bw = bytes as f64 / start.elapsed().as_secs_f64();
        if pass > 0 {
            best = best.max(bw);
        }
    }
    best
}

/// Bytes per second of mapping anonymous memory with `MAP_POPULATE` (map, fault, zero).
pub fn alloc_rate(bytes: usize) -> Result<f64, String> {
    let mut best: f64 = 0.0;
    for _ in 0..3 {
        let start = Instant::now();
        let b = PageBuf::new(bytes)?;
        let t = start.elapsed().as_secs_f64();
        drop(b);
        best = best.max(bytes as f64 / t);
    }
    Ok(best)
}

/// Bytes per second of zeroing resident memory on one thread.
pub fn zero_rate(bytes: usize) -> Result<f64, String> {
    let mut b = PageBuf::new(bytes)?;
    let mut best: f64 = 0.0;
    for i in 0..4 {
        let start = Instant::now();
        b.as_mut_slice().fill(i as u8);
        std::hint::black_box(b.as_slice()[bytes / 2]);
        best = best.max(bytes as f64 / start.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// Bytes per second of ChaCha20-Poly1305 decryption (with tag checks) on one thread.
pub fn decrypt_rate(bytes: usize) -> f64 {
    let key = StoreKey::generate("calibration (random, used once)");
    let payload = vec![7u8; bytes.max(CHUNK_BYTES)];
    let aad = crypt::associated_data("calibrate", "int4");
    let sealed = crypt::seal(&key, 0, &aad, &payload);
    let chunks = crypt::chunks(payload.len() as u64) as usize;
    let mut best: f64 = 0.0;
    for _ in 0..3 {
        let mut copy = sealed.clone();
        let start = Instant::now();
        let ok = crypt::open_chunks(&key, 0, &aad, &mut copy, payload.len(), 0..chunks).is_ok();
        let t = start.elapsed().as_secs_f64();
        if ok {
            best = best.max(payload.len() as f64 / t);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    #[test]
    fn sums_agree() {
        let words: Vec<u64> = (0..1000).map(|i| i * 3 + 1).collect();
        let want = words.iter().fold(0u64, |a, &b| a.wrapping_add(b));
        assert_eq!(super::sum_u64(&words), want);
        assert_eq!(super::sum_u64_portable(&words), want);
    }
}
