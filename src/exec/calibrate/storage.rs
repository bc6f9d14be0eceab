//! Storage microbenchmarks: random aligned `O_DIRECT` reads of a scratch file at each request
//! size and queue depth.

use super::{CalibrateOptions, Progress};
use crate::exec::io::{DirectFile, IoMode, PageBuf, PAGE};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::Write;
use std::time::Instant;

/// Request sizes measured: 4 KiB to 4 MiB.
pub const SIZES: [u64; 6] = [4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20];
/// Queue depths measured (threads with one request in flight each).
pub const DEPTHS: [u32; 4] = [1, 2, 4, 8];

/// The measured points and what was derived from them.
#[derive(Clone, Debug)]
pub struct StorageResult {
    /// (request bytes, depth, bytes/s)
    pub points: Vec<(u64, u32, f64)>,
    pub channels: u32,
    pub latency_ns: u64,
    pub io_mode: IoMode,
}

impl StorageResult {
    pub fn bandwidth(&self, size: u64, depth: u32) -> Option<f64> {
        self.points
            .iter()
            .find(|p| p.0 == size && p.1 == depth)
            .map(|p| p.2)
    }

    /// (request bytes, bytes/s) at the chosen depth.
    pub fn curve(&self) -> Vec<(u64, f64)> {
        self.points
            .iter()
            .filter(|p| p.1 == self.channels)
            .map(|p| (p.0, p.2))
            .collect()
    }

    /// The points as text: `size@depth=MB/s`.
    pub fn table(&self) -> String {
        self.points
            .iter()
            .map(|&(s, d, b)| format!("{}KiB@QD{d}={:.0}MB/s", s >> 10, b / 1e6))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Writes the scratch file (random data, so nothing compresses), synced and dropped from the
/// page cache.
fn write_scratch(path: &std::path::Path, bytes: u64, progress: Progress<'_>) -> Result<(), String> {
    let mut f = std::fs::File::create(path)
        .map_err(|e| format!("{}: cannot create the scratch file: {e}", path.display()))?;
    let mut rng = ChaCha8Rng::seed_from_u64(0x5c7a7c4);
    let mut block = vec![0u8; 8 << 20];
    let mut written = 0;
    while written < bytes {
        rng.fill(&mut block[..]);
        let n = block.len().min((bytes - written) as usize);
        f.write_all(&block[..n])
            .map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
        written += n as u64;
        progress("writing the scratch file", written, bytes);
    }
    f.sync_all()
        .map_err(|e| format!("{}: cannot sync: {e}", path.display()))?;
    crate::exec::io::drop_from_page_cache(&f);
    Ok(())
}

/// Random aligned reads of `size` by `depth` threads for `seconds`: aggregate bytes/s, and the
/// per-request latencies of the first thread.
fn point(
    file: &DirectFile,
    file_bytes: u64,
    size: u64,
    depth: u32,
    seconds: f64,
    seed: u64,
) -> Result<(f64, Vec<u64>), String> {
    let slots = (file_bytes / size).max(1);
    let start = Instant::now();
    let results: Vec<Result<(u64, Vec<u64>), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..depth)
            .map(|t| {
                s.spawn(move || {
                    let mut buf = PageBuf::new(size as usize)?;
                    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ ((t as u64 + 1) * 0x9e37_79b9));
                    let mut bytes = 0u64;
                    let mut lat = Vec::new();
                    loop {
                        let offset = rng.gen_range(0..slots) * size;
                        let t0 = Instant::now();
                        file.read_exact_at(&mut buf.as_mut_slice()[..size as usize], offset)
                            .map_err(|e| {
                                format!(
                                    "{}: read of {size} bytes at {offset}: {e}",
                                    file.path().display()
                                )
                            })?;
                        lat.push(t0.elapsed().as_nanos() as u64);
                        bytes += size;
                        if start.elapsed().as_secs_f64() >= seconds {
                            break;
                        }
                    }
                    Ok((bytes, lat))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a reader thread panicked".into()))
            })
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut total = 0;
    let mut first_lat = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        let (b, lat) = r?;
        total += b;
        if i == 0 {
            first_lat = lat;
        }
    }
    Ok((total as f64 / elapsed, first_lat))
}

/// The disk's read rate right now: random aligned reads of `size` by `depth` threads over an
/// existing file (the weight store's, so the validation probes the very file it reads) for
/// `seconds`, with the method of every calibration point. Aggregate bytes/s.
pub fn probe(
    path: &std::path::Path,
    size: u64,
    depth: u32,
    seconds: f64,
    seed: u64,
) -> Result<f64, String> {
    let file = DirectFile::open(path)?;
    let bytes = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if bytes < size {
        return Err(format!(
            "{}: {bytes} bytes, too small to probe with {size}-byte reads",
            path.display()
        ));
    }
    file.prepare_run();
    Ok(point(&file, bytes, size, depth, seconds, seed)?.0)
}

/// Measures every (size, depth) point on a fresh scratch file, then removes it.
pub fn measure(
    options: &CalibrateOptions,
    progress: Progress<'_>,
) -> Result<StorageResult, String> {
    std::fs::create_dir_all(&options.scratch_dir).map_err(|e| {
        format!(
            "{}: cannot create the scratch folder: {e}",
            options.scratch_dir.display()
        )
    })?;
    let path = options
        .scratch_dir
        .join(format!(".edgesim-calibrate-{}.bin", std::process::id()));
    let bytes = options.scratch_bytes.max(8 << 20) / (4 << 20) * (4 << 20);
    let result = (|| {
        write_scratch(&path, bytes, progress)?;
        let file = DirectFile::open(&path)?;
        let sizes: Vec<u64> = if options.quick {
            vec![4 << 10, 64 << 10, 1 << 20]
        } else {
            SIZES.to_vec()
        };
        let depths: Vec<u32> = if options.quick {
            vec![1, 2]
        } else {
            DEPTHS.to_vec()
        };
        // Several rounds over all points, so a slow spell of a shared disk hits one sample of
        // many points rather than every sample of one; each point keeps its median.
        let rounds = if options.quick { 1 } else { 3 };
        let total = (sizes.len() * depths.len() * rounds) as u64 + 1;
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); sizes.len() * depths.len()];
        let mut done = 0;
        for round in 0..rounds {
            for (di, &depth) in depths.iter().enumerate() {
                for (si, &size) in sizes.iter().enumerate() {
                    file.prepare_run();
                    let seed = size ^ depth as u64 ^ ((round as u64) << 40);
                    let (bw, _) =
                        point(&file, bytes, size, depth, options.seconds_per_point, seed)?;
                    samples[di * sizes.len() + si].push(bw);
                    done += 1;
                    progress(
                        "storage: read bandwidth by request size and queue depth",
                        done,
                        total,
                    );
                }
            }
        }
        let mut points = Vec::new();
        for (di, &depth) in depths.iter().enumerate() {
            for (si, &size) in sizes.iter().enumerate() {
                let v = &mut samples[di * sizes.len() + si];
                v.sort_by(f64::total_cmp);
                points.push((size, depth, v[v.len() / 2]));
            }
        }
        file.prepare_run();
        let (_, mut lat) = point(
            &file,
            bytes,
            PAGE as u64,
            1,
            options.seconds_per_point.max(0.05),
            77,
        )?;
        lat.sort_unstable();
        let latency_ns = lat.get(lat.len() / 2).copied().unwrap_or(0);
        progress(
            "storage: read bandwidth by request size and queue depth",
            total,
            total,
        );
        // Channels: the smallest depth reaching 90 % of the best 64 KiB bandwidth.
        let probe = if sizes.contains(&(64 << 10)) {
            64 << 10
        } else {
            sizes[0]
        };
        let best = points
            .iter()
            .filter(|p| p.0 == probe)
            .map(|p| p.2)
            .fold(0.0, f64::max);
        let channels = depths
            .iter()
            .copied()
            .find(|&d| {
                points
                    .iter()
                    .any(|p| p.0 == probe && p.1 == d && p.2 >= 0.9 * best)
            })
            .unwrap_or(1);
        Ok(StorageResult {
            points,
            channels,
            latency_ns,
            io_mode: file.mode(),
        })
    })();
    let _ = std::fs::remove_file(&path);
    result
}
