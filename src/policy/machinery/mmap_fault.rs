//! How Linux serves page faults on an `mmap`'d model file that llama.cpp scans front to back,
//! as reads of the weights: read-around and asynchronous readahead windows, several threads'
//! streams in flight. Used by `llama-cpp-mmap` (MoE experts) and, through the same type, by
//! dense mmap baselines (the neuron family's `llama-cpp-mmap`).
//!
//! What the kernel does (mm/filemap.c, mm/memory.c, mm/fadvise.c; Linux 5.10 as on the
//! Jetson AGX Orin's L4T r35, the same in substance through 6.9):
//!
//! - **Window.** `ra_pages` defaults to `VM_READAHEAD_PAGES` = 128 KiB (include/linux/mm.h).
//!   llama.cpp calls `posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)` (`llama_mmap`, since
//!   ggerganov/llama.cpp PR #4520, Dec 2023), which sets `file->f_ra.ra_pages =
//!   bdi->ra_pages * 2` (mm/fadvise.c): windows are 256 KiB.
//! - **No 4 KiB fallback.** `do_sync_mmap_readahead` stops read-around once the file's
//!   `mmap_miss` exceeds `MMAP_LOTSAMISS` (100), but `filemap_map_pages` (fault-around)
//!   decrements `mmap_miss` for every page it maps, and the retry after each major fault maps
//!   up to 16 fresh pages, so the cut-off is practically never reached by a reader that
//!   touches what read-around brought in (J. Kara, linux-kernel, 2025-07-14). Only from 6.10
//!   (`5c46d5319bde`) do refaulting pages stop lowering `mmap_miss`; that variant is not
//!   modelled.
//! - **Two windows in flight per stream.** The first fault of a region reads a window
//!   synchronously (centred on the fault: half of it lies behind); a `PG_readahead` mark makes
//!   the reader, on reaching it, issue the next window asynchronously
//!   (`do_async_mmap_readahead`), so a forward scan that is slower to read than to compute
//!   keeps about two windows in flight.
//! - **One stream per compute thread.** ggml's CPU matmul splits a weight's rows across its
//!   threads ("parallelize by src0 rows", `ggml_compute_forward_mul_mat`), so an expert is
//!   faulted by `threads` concurrent forward scans; a weight copied by one GPU-side thread is
//!   one stream.
//!
//! Modelled as: the missing bytes are read in batches of `streams × windows_per_stream ×
//! window` bytes issued as window-sized requests, each batch after the previous one (the
//! readers wait on the locked pages of the batch before issuing the next). Not modelled: the
//! half window read-around reads behind a cold region's first fault (for an expert, three
//! slices of 128 KiB of its neighbour: under 1 % of a Mixtral expert), and the fault path's
//! CPU time (no Arm measurement exists; estimated 1–3 µs per fault, about 6 faults per
//! 256 KiB window, so 10–20 µs per window next to ~85 µs of I/O at 3 GB/s: a sensitivity
//! for a later `fault_cpu_ns`).

/// Linux's default readahead window, 128 KiB (`VM_READAHEAD_PAGES`, include/linux/mm.h).
pub const LINUX_READAHEAD_BYTES: u64 = 128 * 1024;

/// Windows a forward-scanning stream keeps in flight: the synchronous one it waits on and the
/// asynchronous one its `PG_readahead` mark issued.
pub const WINDOWS_PER_STREAM: u32 = 2;

/// The fault path of one mapping: how a scan's missing bytes become reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmapFaultPath {
    window_bytes: u64,
    streams: u32,
    windows_per_stream: u32,
}

impl MmapFaultPath {
    /// `read_ahead_bytes` is the block device's `read_ahead_kb` (128 KiB by default);
    /// `fadvise_sequential` doubles it as `POSIX_FADV_SEQUENTIAL` does; `streams` is the
    /// number of threads scanning the weight at once.
    pub fn linux(read_ahead_bytes: u64, fadvise_sequential: bool, streams: u32) -> Self {
        let window = if fadvise_sequential {
            read_ahead_bytes.saturating_mul(2)
        } else {
            read_ahead_bytes
        };
        MmapFaultPath {
            window_bytes: window.max(4096),
            streams: streams.max(1),
            windows_per_stream: WINDOWS_PER_STREAM,
        }
    }

    /// The path llama.cpp gets on a default kernel: 256 KiB windows.
    pub fn llama_cpp(streams: u32) -> Self {
        Self::linux(LINUX_READAHEAD_BYTES, true, streams)
    }

    /// Overrides the windows each stream keeps in flight (at least 1).
    pub fn with_windows_per_stream(mut self, windows: u32) -> Self {
        self.windows_per_stream = windows.max(1);
        self
    }

    /// One readahead window: the request size of every fault read.
    pub fn window_bytes(&self) -> u64 {
        self.window_bytes
    }

    pub fn streams(&self) -> u32 {
        self.streams
    }

    /// Bytes in flight at once: every stream's windows.
    pub fn batch_bytes(&self) -> u64 {
        self.window_bytes
            .saturating_mul(self.streams as u64)
            .saturating_mul(self.windows_per_stream as u64)
    }

    /// The sizes of the chained reads that fault in `missing` bytes, in order.
    pub fn batches(&self, missing: u64) -> impl Iterator<Item = u64> {
        let batch = self.batch_bytes();
        let mut remaining = missing;
        std::iter::from_fn(move || {
            (remaining > 0).then(|| {
                let n = batch.min(remaining);
                remaining -= n;
                n
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fadvise_sequential_doubles_the_window() {
        assert_eq!(
            MmapFaultPath::linux(128 << 10, false, 1).window_bytes(),
            128 << 10
        );
        assert_eq!(
            MmapFaultPath::linux(128 << 10, true, 1).window_bytes(),
            256 << 10
        );
        assert_eq!(MmapFaultPath::llama_cpp(1).window_bytes(), 256 << 10);
    }

    #[test]
    fn every_stream_keeps_two_windows_in_flight() {
        let f = MmapFaultPath::llama_cpp(8);
        assert_eq!(f.batch_bytes(), 8 * 2 * (256 << 10));
        let one = MmapFaultPath::llama_cpp(0);
        assert_eq!(one.streams(), 1);
        assert_eq!(one.batch_bytes(), 512 << 10);
        assert_eq!(
            one.with_windows_per_stream(3).batch_bytes(),
            3 * (256 << 10)
        );
    }

    #[test]
    fn batches_cover_the_missing_bytes_exactly() {
        let f = MmapFaultPath::llama_cpp(2);
        let b: Vec<u64> = f.batches(5 * (256 << 10) + 7).collect();
        assert_eq!(b, vec![4 * (256 << 10), (256 << 10) + 7]);
        assert_eq!(f.batches(0).count(), 0);
    }
}
