//! Streaming trace reader: one record in memory at a time, its buffers reused, every record
//! checked (CRC, structure, the format's rules, sequence order) as it is read.

use super::codec;
use super::error::{TraceError, TraceErrorKind};
use super::header::{TraceHeader, FORMAT_VERSION};
use super::layout::{
    header_crc, END_MAGIC, MAGIC, MAX_HEADER_BYTES, PREAMBLE_BYTES, TRAILER_BYTES, TRAILER_TAG,
};
use super::order::SequenceOrder;
use super::record::TokenRecord;
use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::path::{Path, PathBuf};

/// Anything that produces token records one at a time: a trace file, a generator, a vector.
/// Consumers (statistics, the pass grouper, the simulator) take a `TokenSource` so they work on
/// a file and on a generator alike, with flat memory.
pub trait TokenSource {
    fn header(&self) -> &TraceHeader;

    /// Overwrites `rec` with the next record (reusing its buffers). `Ok(false)` at the end.
    fn next_into(&mut self, rec: &mut TokenRecord) -> Result<bool, TraceError>;
}

/// Reads a trace file. Also an `Iterator` of owned records for convenience.
pub struct TraceReader<R: Read = BufReader<File>> {
    path: PathBuf,
    input: R,
    header: TraceHeader,
    offset: u64,
    records: u64,
    payload: Vec<u8>,
    max_record_bytes: usize,
    records_crc: crc32fast::Hasher,
    order: SequenceOrder,
    done: bool,
}

impl TraceReader {
    /// Opens `path` and reads and checks its header.
    pub fn open(path: &Path) -> Result<Self, TraceError> {
        let file = File::open(path).map_err(|e| TraceError::io(path, "open the trace", e))?;
        TraceReader::from_reader(BufReader::with_capacity(1 << 16, file), path)
    }
}

impl<R: Read> TraceReader<R> {
    /// Reads a trace from any byte stream; `path` names it in error messages.
    pub fn from_reader(mut input: R, path: &Path) -> Result<Self, TraceError> {
        let err = |kind, msg: String| TraceError::new(kind, path, msg);
        let mut magic = [0u8; 8];
        let got = read_full(&mut input, &mut magic).map_err(|e| TraceError::io(path, "read", e))?;
        if got < magic.len() {
            let msg = if got == 0 {
                "file is empty: not an edgesim trace".to_string()
            } else {
                format!("file is only {got} bytes long: not an edgesim trace (no header)")
            };
            return Err(err(TraceErrorKind::Header, msg).at_offset(0));
        }
        if magic != MAGIC {
            return Err(err(
                TraceErrorKind::BadMagic,
                format!(
                    "not an edgesim trace: the file starts with {magic:02x?}, expected the magic \
                     bytes {MAGIC:02x?}"
                ),
            )
            .at_offset(0));
        }
        let mut word = [0u8; 4];
        read_exact_or(&mut input, &mut word, path, 8, "the format version")?;
        let version = u32::from_le_bytes(word);
        if version != FORMAT_VERSION {
            return Err(err(
                TraceErrorKind::UnsupportedVersion,
                format!(
                    "trace format version {version} is not supported; this build of edgesim \
                     reads version {FORMAT_VERSION} only"
                ),
            )
            .at_offset(8));
        }
        read_exact_or(&mut input, &mut word, path, 12, "the header length")?;
        let json_len = u32::from_le_bytes(word);
        if json_len == 0 || json_len > MAX_HEADER_BYTES {
            return Err(err(
                TraceErrorKind::Header,
                format!("header length is {json_len} bytes, expected 1..={MAX_HEADER_BYTES}"),
            )
            .at_offset(12));
        }
        let mut json = vec![0u8; json_len as usize];
        read_exact_or(
            &mut input,
            &mut json,
            path,
            PREAMBLE_BYTES,
            "the header JSON",
        )?;
        let json_end = PREAMBLE_BYTES + u64::from(json_len);
        read_exact_or(&mut input, &mut word, path, json_end, "the header checksum")?;
        let stored = u32::from_le_bytes(word);
        let computed = header_crc(version, &json);
        if stored != computed {
            return Err(err(
                TraceErrorKind::Header,
                format!(
                    "header checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): \
                     the header bytes were changed"
                ),
            )
            .at_offset(PREAMBLE_BYTES));
        }
        let header: TraceHeader = serde_json::from_slice(&json).map_err(|e| {
            err(
                TraceErrorKind::Header,
                format!("header JSON is invalid: {e}"),
            )
            .at_offset(PREAMBLE_BYTES)
        })?;
        header.check().map_err(|e| {
            err(TraceErrorKind::Header, format!("header: {e}")).at_offset(PREAMBLE_BYTES)
        })?;
        Ok(TraceReader {
            path: path.to_path_buf(),
            input,
            max_record_bytes: header.max_record_bytes(),
            header,
            offset: json_end + 4,
            records: 0,
            payload: Vec::new(),
            records_crc: crc32fast::Hasher::new(),
            order: SequenceOrder::default(),
            done: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records read so far.
    pub fn records_read(&self) -> u64 {
        self.records
    }

    /// Capacity of the reader's reusable payload buffer (for tests that check memory stays flat).
    pub fn buffer_capacity(&self) -> usize {
        self.payload.capacity()
    }

    fn fail(&mut self, kind: TraceErrorKind, at: u64, msg: String) -> TraceError {
        self.done = true;
        TraceError::new(kind, &self.path, msg).in_record(self.records, at)
    }

    fn read_record(&mut self, rec: &mut TokenRecord) -> Result<bool, TraceError> {
        let start = self.offset;
        let mut word = [0u8; 4];
        let got = read_full(&mut self.input, &mut word)
            .map_err(|e| TraceError::io(&self.path, "read", e))?;
        if got < 4 {
            let msg = format!(
                "file is truncated: it ends after {} complete records, with no trailer",
                self.records
            );
            return Err(self.fail(TraceErrorKind::Truncated, start + got as u64, msg));
        }
        let len = u32::from_le_bytes(word);
        if len == TRAILER_TAG {
            self.read_trailer(start)?;
            return Ok(false);
        }
        if len as usize > self.max_record_bytes || len < 4 {
            let msg = format!(
                "record length field is {len} bytes, impossible for this header (expected 4..={}): \
                 the file is corrupt",
                self.max_record_bytes
            );
            return Err(self.fail(TraceErrorKind::Corrupt, start, msg));
        }
        self.payload.resize(len as usize, 0);
        let got = read_full(&mut self.input, &mut self.payload)
            .map_err(|e| TraceError::io(&self.path, "read", e))?;
        if got < len as usize {
            let msg = format!(
                "file is truncated inside record {}: {got} of its {len} payload bytes are present",
                self.records
            );
            return Err(self.fail(TraceErrorKind::Truncated, start, msg));
        }
        let got = read_full(&mut self.input, &mut word)
            .map_err(|e| TraceError::io(&self.path, "read", e))?;
        if got < 4 {
            let msg = format!(
                "file is truncated inside record {}: its checksum is missing",
                self.records
            );
            return Err(self.fail(TraceErrorKind::Truncated, start, msg));
        }
        let stored = u32::from_le_bytes(word);
        let computed = crc32fast::hash(&self.payload);
        if stored != computed {
            let msg = format!(
                "checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): the record's \
                 bytes were changed"
            );
            return Err(self.fail(TraceErrorKind::Corrupt, start, msg));
        }
        if let Err(e) = codec::decode(&self.header, &self.payload, rec) {
            return Err(self.fail(TraceErrorKind::Invalid, start, e));
        }
        if let Err(e) = self.order.check(rec) {
            return Err(self.fail(TraceErrorKind::Invalid, start, e));
        }
        self.records_crc.update(&word);
        self.records += 1;
        self.offset = start + 8 + u64::from(len);
        Ok(true)
    }

    fn read_trailer(&mut self, start: u64) -> Result<(), TraceError> {
        let mut rest = [0u8; 20];
        let got = read_full(&mut self.input, &mut rest)
            .map_err(|e| TraceError::io(&self.path, "read", e))?;
        self.done = true;
        let at = |e: TraceError| e.at_offset(start);
        if got < rest.len() {
            return Err(at(TraceError::new(
                TraceErrorKind::Truncated,
                &self.path,
                format!(
                    "file is truncated inside the trailer ({} of its 24 bytes present)",
                    got + 4
                ),
            )));
        }
        let count = u64::from_le_bytes(rest[0..8].try_into().expect("8 bytes"));
        let crc = u32::from_le_bytes(rest[8..12].try_into().expect("4 bytes"));
        if rest[12..20] != END_MAGIC {
            return Err(at(TraceError::new(
                TraceErrorKind::Corrupt,
                &self.path,
                "trailer does not end with the end magic: the trailer is corrupt",
            )));
        }
        if count != self.records {
            return Err(at(TraceError::new(
                TraceErrorKind::Corrupt,
                &self.path,
                format!(
                    "trailer says the trace holds {count} records, but {} were read",
                    self.records
                ),
            )));
        }
        let computed = std::mem::take(&mut self.records_crc).finalize();
        if crc != computed {
            return Err(at(TraceError::new(
                TraceErrorKind::Corrupt,
                &self.path,
                format!(
                    "trailer checksum over the records' checksums mismatches (stored {crc:#010x}, \
                     computed {computed:#010x}): records were removed, added or reordered"
                ),
            )));
        }
        let mut probe = [0u8; 64];
        let extra = read_full(&mut self.input, &mut probe)
            .map_err(|e| TraceError::io(&self.path, "read", e))?;
        if extra > 0 {
            return Err(TraceError::new(
                TraceErrorKind::Corrupt,
                &self.path,
                format!(
                    "{}{extra} unexpected bytes after the trailer",
                    if extra == probe.len() {
                        "at least "
                    } else {
                        ""
                    }
                ),
            )
            .at_offset(start + TRAILER_BYTES));
        }
        if self.records == 0 {
            return Err(TraceError::new(
                TraceErrorKind::Invalid,
                &self.path,
                "the trace holds no records",
            ));
        }
        Ok(())
    }
}

impl<R: Read> TokenSource for TraceReader<R> {
    fn header(&self) -> &TraceHeader {
        &self.header
    }

    fn next_into(&mut self, rec: &mut TokenRecord) -> Result<bool, TraceError> {
        if self.done {
            return Ok(false);
        }
        self.read_record(rec)
    }
}

impl<R: Read> Iterator for TraceReader<R> {
    type Item = Result<TokenRecord, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut rec = TokenRecord::default();
        match self.next_into(&mut rec) {
            Ok(true) => Some(Ok(rec)),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn read_exact_or(
    input: &mut impl Read,
    buf: &mut [u8],
    path: &Path,
    offset: u64,
    what: &str,
) -> Result<(), TraceError> {
    let got = read_full(input, buf).map_err(|e| TraceError::io(path, "read", e))?;
    if got < buf.len() {
        return Err(TraceError::new(
            TraceErrorKind::Header,
            path,
            format!("file is truncated in its header: it ends before {what} is complete"),
        )
        .at_offset(offset));
    }
    Ok(())
}

/// A `TokenSource` over records held in memory (tests, small generated inputs).
pub struct VecSource {
    header: TraceHeader,
    records: std::vec::IntoIter<TokenRecord>,
}

impl VecSource {
    pub fn new(header: TraceHeader, records: Vec<TokenRecord>) -> Self {
        VecSource {
            header,
            records: records.into_iter(),
        }
    }
}

impl TokenSource for VecSource {
    fn header(&self) -> &TraceHeader {
        &self.header
    }

    fn next_into(&mut self, rec: &mut TokenRecord) -> Result<bool, TraceError> {
        match self.records.next() {
            Some(r) => {
                *rec = r;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}
