//! The executor's memory: one pre-faulted arena that Alloc ops carve regions from and Evict
//! ops return them to, with the budget enforced on the ops' own byte counts.
//!
//! Why an arena: the simulator prices an ordinary Alloc at zero ("caches allocate from a
//! pool"). The executor keeps that promise for real: the arena is mapped and faulted in when
//! the executor starts (before any timing), so an Alloc is a first-fit search in a free list
//! and an Evict a coalescing insert, both taking microseconds, while the memory is real and
//! the process's resident set is what the budget allows.
//!
//! Accounting follows the simulator exactly: an Alloc adds its op's bytes when it starts and
//! fails with `BudgetExceeded` if that takes usage over the budget; an Evict subtracts them
//! when it ends. The arena itself is the budget rounded up to pages plus [`SLACK_BYTES`], the
//! room that rounding each region up to whole pages (direct I/O needs page-aligned buffers)
//! and encryption tags take.

use super::io::{PageBuf, PAGE};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Arena room beyond the budget for page rounding: 2 pages for each of up to 2048 regions.
pub const SLACK_BYTES: usize = 2 * PAGE * 2048;

/// A region of the arena: `[offset, offset + len)`, page aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub offset: usize,
    pub len: usize,
}

/// A first-fit allocator over one [`PageBuf`].
pub struct Arena {
    buf: Arc<PageBuf>,
    /// Free ranges by offset (coalesced: no two touch).
    free: BTreeMap<usize, usize>,
}

impl Arena {
    pub fn new(capacity: usize) -> Result<Arena, String> {
        let buf = PageBuf::new(capacity)?;
        let mut free = BTreeMap::new();
        free.insert(0, buf.len());
        Ok(Arena {
            buf: Arc::new(buf),
            free,
        })
    }

    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// The memory, shared with the jobs that read into or compute from it.
    pub fn memory(&self) -> Arc<PageBuf> {
        self.buf.clone()
    }

    /// The lowest free range of at least `len` bytes (rounded up to pages), or `None`.
    pub fn alloc(&mut self, len: usize) -> Option<Region> {
        let len = len.max(1).div_ceil(PAGE) * PAGE;
        let (&offset, &size) = self.free.iter().find(|(_, &size)| size >= len)?;
        self.free.remove(&offset);
        if size > len {
            self.free.insert(offset + len, size - len);
        }
        Some(Region { offset, len })
    }

    pub fn free(&mut self, r: Region) {
        let mut offset = r.offset;
        let mut len = r.len;
        if let Some((&prev, &prev_len)) = self.free.range(..offset).next_back() {
            if prev + prev_len == offset {
                self.free.remove(&prev);
                offset = prev;
                len += prev_len;
            }
        }
        if let Some(&next_len) = self.free.get(&(offset + len)) {
            self.free.remove(&(offset + len));
            len += next_len;
        }
        self.free.insert(offset, len);
    }

    /// Bytes free in total (possibly in several ranges).
    pub fn free_bytes(&self) -> usize {
        self.free.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_rounds_to_pages_and_free_coalesces() {
        let mut a = Arena::new(16 * PAGE).unwrap();
        let r1 = a.alloc(100).unwrap();
        let r2 = a.alloc(PAGE + 1).unwrap();
        let r3 = a.alloc(PAGE).unwrap();
        assert_eq!((r1.offset, r1.len), (0, PAGE));
        assert_eq!((r2.offset, r2.len), (PAGE, 2 * PAGE));
        assert_eq!(r3.offset, 3 * PAGE);
        a.free(r2);
        // A 2-page hole: a 3-page request goes after r3.
        assert_eq!(a.alloc(3 * PAGE).unwrap().offset, 4 * PAGE);
        a.free(r1);
        a.free(r3);
        // r1, r2 and r3 coalesce into 4 pages at 0.
        assert_eq!(
            a.alloc(4 * PAGE).unwrap(),
            Region {
                offset: 0,
                len: 4 * PAGE
            }
        );
        assert!(a.alloc(100 * PAGE).is_none());
    }
}
