//! The one error type of the trace module: it always names the file, and where the fault lies
//! (record number and byte offset) when it lies in a record.

use std::fmt;
use std::path::Path;

/// What went wrong, for callers (and tests) that react differently to different faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceErrorKind {
    /// The operating system refused a read, write or rename.
    Io,
    /// The file does not start with the trace magic bytes: not an edgesim trace.
    BadMagic,
    /// The header is missing, cut short, fails its checksum, is not valid JSON or is
    /// inconsistent.
    Header,
    /// The file declares a format version this build does not read.
    UnsupportedVersion,
    /// The file ends before its trailer: it was cut short.
    Truncated,
    /// Bytes changed after writing: a checksum mismatch, an impossible length, a bad trailer.
    Corrupt,
    /// A record decodes but breaks a rule of the format (expert id out of range, NaN score,
    /// unsorted neurons, positions going backwards, ...).
    Invalid,
    /// Input that is not a trace file (an importer's source, generator parameters) is wrong.
    Input,
}

/// A trace fault with its location. `Display` gives a complete one-line message:
/// `FILE: record R (byte offset O): WHAT`.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceError {
    pub kind: TraceErrorKind,
    /// The file the fault is in (or the file being written).
    pub path: String,
    /// 0-based record number, when the fault is inside a record.
    pub record: Option<u64>,
    /// Byte offset from the start of the file where the faulty item starts.
    pub offset: Option<u64>,
    /// What is wrong, in words a user can act on.
    pub message: String,
}

impl TraceError {
    pub fn new(kind: TraceErrorKind, path: &Path, message: impl Into<String>) -> Self {
        TraceError {
            kind,
            path: path.display().to_string(),
            record: None,
            offset: None,
            message: message.into(),
        }
    }

    pub fn at_offset(mut self, offset: u64) -> Self {
        self.offset = Some(offset);
        self
    }

    pub fn in_record(mut self, record: u64, offset: u64) -> Self {
        self.record = Some(record);
        self.offset = Some(offset);
        self
    }

    pub fn io(path: &Path, action: &str, e: std::io::Error) -> Self {
        TraceError::new(TraceErrorKind::Io, path, format!("cannot {action}: {e}"))
    }
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.path)?;
        match (self.record, self.offset) {
            (Some(r), Some(o)) => write!(f, "record {r} (byte offset {o}): ")?,
            (Some(r), None) => write!(f, "record {r}: ")?,
            (None, Some(o)) => write!(f, "byte offset {o}: ")?,
            (None, None) => {}
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for TraceError {}
