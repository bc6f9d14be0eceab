//! Direct I/O: page-aligned buffers, `O_DIRECT` files read with `pread`, and the fallback for
//! file systems that refuse `O_DIRECT` (`posix_fadvise(DONTNEED)` before each run, so reads
//! still come from the device rather than the page cache).

use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Page size of every buffer and the unit of direct-I/O transfers.
pub const PAGE: usize = 4096;

/// How a data file is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IoMode {
    /// `O_DIRECT`: every read goes to the device, bypassing the page cache.
    Direct,
    /// The file system refused `O_DIRECT`: buffered `pread`, with the file dropped from the
    /// page cache (`posix_fadvise(POSIX_FADV_DONTNEED)`) before each plan runs.
    BufferedDropCache,
}

impl IoMode {
    pub fn describe(self) -> &'static str {
        match self {
            IoMode::Direct => "O_DIRECT pread (page cache bypassed)",
            IoMode::BufferedDropCache => {
                "buffered pread with posix_fadvise(DONTNEED) before each plan (the file system refused O_DIRECT)"
            }
        }
    }
}

/// Page-aligned anonymous memory, faulted in when created (`MAP_POPULATE`).
pub struct PageBuf {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; access is through &/&mut self or
// through raw pointers whose users uphold the aliasing rules (see `exec::memory`).
unsafe impl Send for PageBuf {}
unsafe impl Sync for PageBuf {}

impl PageBuf {
    /// Maps `len` bytes (rounded up to whole pages), zeroed and resident.
    pub fn new(len: usize) -> Result<PageBuf, String> {
        let len = len.max(1).div_ceil(PAGE) * PAGE;
        // SAFETY: an anonymous private mapping with no address hint; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(format!(
                "cannot map {len} bytes of memory: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(PageBuf {
            ptr: ptr as *mut u8,
            len,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is `len` bytes, readable, alive while self is.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and &mut self makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for PageBuf {
    fn drop(&mut self) {
        // SAFETY: the mapping was created by `new` with this length and is unmapped once.
        unsafe {
            libc::munmap(self.ptr as *mut libc::c_void, self.len);
        }
    }
}

/// Asks the kernel to drop `file`'s pages from the page cache (best effort).
pub fn drop_from_page_cache(file: &File) {
    // SAFETY: a valid descriptor; the call only advises the kernel.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
    }
}

/// A file opened for reading with `O_DIRECT` where the file system allows it.
#[derive(Debug)]
pub struct DirectFile {
    file: File,
    mode: IoMode,
    path: PathBuf,
}

impl DirectFile {
    /// Opens `path`, trying `O_DIRECT` first: the open and one aligned read must succeed,
    /// otherwise the file is reopened for buffered reads ([`IoMode::BufferedDropCache`]).
    pub fn open(path: &Path) -> Result<DirectFile, String> {
        let direct = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(path);
        if let Ok(file) = direct {
            let mut probe = PageBuf::new(PAGE)?;
            if file.read_at(probe.as_mut_slice(), 0).is_ok() {
                return Ok(DirectFile {
                    file,
                    mode: IoMode::Direct,
                    path: path.to_path_buf(),
                });
            }
        }
        DirectFile::open_buffered(path)
    }

    /// Opens `path` for buffered reads ([`IoMode::BufferedDropCache`]), as on a file system
    /// that refuses `O_DIRECT`.
    pub fn open_buffered(path: &Path) -> Result<DirectFile, String> {
        let file = File::open(path).map_err(|e| format!("{}: cannot open: {e}", path.display()))?;
        Ok(DirectFile {
            file,
            mode: IoMode::BufferedDropCache,
            path: path.to_path_buf(),
        })
    }

    pub fn mode(&self) -> IoMode {
        self.mode
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// Drops the file from the page cache when reads are buffered (a no-op for `O_DIRECT`).
    pub fn prepare_run(&self) {
        if self.mode == IoMode::BufferedDropCache {
            drop_from_page_cache(&self.file);
        }
    }

    /// Fills `buf` from `offset`. With `O_DIRECT`, `buf`'s address and length and `offset`
    /// must be multiples of [`PAGE`]. Reading past the end of the file is an error.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.file.read_at(&mut buf[done..], offset + done as u64)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("end of file at byte {}", offset + done as u64),
                ));
            }
            done += n;
        }
        Ok(())
    }

    /// Reads up to `buf.len()` bytes from `offset` (fewer only at the end of the file).
    pub fn read_at_most(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.file.read_at(&mut buf[done..], offset + done as u64)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        Ok(done)
    }
}

/// `VmHWM` (peak resident set) of this process from `/proc/self/status`, in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    proc_kib("/proc/self/status", "VmHWM:").map(|k| k * 1024)
}

/// `VmRSS` of this process, in bytes.
pub fn rss_bytes() -> Option<u64> {
    proc_kib("/proc/self/status", "VmRSS:").map(|k| k * 1024)
}

/// The `field` line of a `/proc` file in `kB` units (`/proc/meminfo`, `/proc/self/status`).
pub(crate) fn proc_kib(path: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_buffers_are_aligned_and_zeroed() {
        let b = PageBuf::new(10_000).unwrap();
        assert_eq!(b.len(), 12_288);
        assert_eq!(b.as_ptr() as usize % PAGE, 0);
        assert!(b.as_slice().iter().all(|&x| x == 0));
    }

    #[test]
    fn direct_file_reads_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        let data: Vec<u8> = (0..3 * PAGE).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let f = DirectFile::open(&path).unwrap();
        let mut buf = PageBuf::new(PAGE).unwrap();
        f.read_exact_at(buf.as_mut_slice(), PAGE as u64).unwrap();
        assert_eq!(buf.as_slice(), &data[PAGE..2 * PAGE]);
        let mut big = PageBuf::new(4 * PAGE).unwrap();
        assert!(f.read_exact_at(big.as_mut_slice(), 0).is_err());
        assert_eq!(f.read_at_most(big.as_mut_slice(), 0).unwrap(), 3 * PAGE);
        assert!(peak_rss_bytes().unwrap() > 0);
    }
}
