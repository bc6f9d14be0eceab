//! Reading a trace's trailer first: the record count, known before any record is read, and an
//! early, plain verdict on a file whose writing was interrupted (it has no trailer).
//!
//! The writer stages a trace under a temporary name and renames it only when the trailer is
//! written (`writer.rs`), so an interrupted write leaves no file under the final name; a file
//! cut short by other means (a copy, a full disk outside edgesim) has no trailer at its end,
//! and this says so before a long run starts. The full check of the trailer against the
//! records stays in the streaming reader.

use super::error::{TraceError, TraceErrorKind};
use super::layout::{END_MAGIC, TRAILER_BYTES, TRAILER_TAG};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// The record count a complete trace's trailer declares.
pub fn record_count(path: &Path) -> Result<u64, TraceError> {
    let mut file =
        std::fs::File::open(path).map_err(|e| TraceError::io(path, "open the trace", e))?;
    record_count_of(&mut file, path)
}

/// [`record_count`] of any seekable stream; `path` names it in messages.
pub fn record_count_of(input: &mut (impl Read + Seek), path: &Path) -> Result<u64, TraceError> {
    let len = input
        .seek(SeekFrom::End(0))
        .map_err(|e| TraceError::io(path, "seek in the trace", e))?;
    let incomplete = |what: &str| {
        TraceError::new(
            TraceErrorKind::Truncated,
            path,
            format!(
                "{what}: the trace is truncated or incomplete (its writing was interrupted, or the file was cut short); write it again"
            ),
        )
    };
    if len < TRAILER_BYTES {
        return Err(incomplete(&format!("the file has only {len} bytes")));
    }
    input
        .seek(SeekFrom::Start(len - TRAILER_BYTES))
        .map_err(|e| TraceError::io(path, "seek in the trace", e))?;
    let mut trailer = [0u8; TRAILER_BYTES as usize];
    input
        .read_exact(&mut trailer)
        .map_err(|e| TraceError::io(path, "read the trailer", e))?;
    let tag = u32::from_le_bytes(trailer[0..4].try_into().expect("4 bytes"));
    if tag != TRAILER_TAG || trailer[16..24] != END_MAGIC {
        return Err(incomplete("the file does not end with a trailer"));
    }
    input
        .seek(SeekFrom::Start(0))
        .map_err(|e| TraceError::io(path, "seek in the trace", e))?;
    Ok(u64::from_le_bytes(
        trailer[4..12].try_into().expect("8 bytes"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_trace_count_matches_its_records_and_a_cut_file_is_incomplete() {
        let path = Path::new("traces/mixtral-8x7b-synthetic.est");
        let n = record_count(path).unwrap();
        let read = crate::trace::TraceReader::open(path).unwrap().count() as u64;
        assert_eq!(n, read);
        let bytes = std::fs::read(path).unwrap();
        let mut cut = std::io::Cursor::new(bytes[..bytes.len() - 5].to_vec());
        let e = record_count_of(&mut cut, path).unwrap_err().to_string();
        assert!(
            e.contains("incomplete") && e.contains("mixtral-8x7b-synthetic"),
            "{e}"
        );
    }
}
