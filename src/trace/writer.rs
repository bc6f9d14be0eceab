//! Streaming trace writer: records go straight to a buffered file, so writing a 10-million-token
//! trace needs no more memory than writing one record.
//!
//! Nothing half-written is ever left under the final name: the writer fills a temporary file
//! beside the destination and renames it on [`TraceWriter::finish`]. Dropping a writer without
//! finishing (an error, a panic, an interrupted generator) deletes the temporary file.

use super::codec;
use super::error::{TraceError, TraceErrorKind};
use super::header::TraceHeader;
use super::layout::{header_crc, END_MAGIC, MAGIC, MAX_HEADER_BYTES, TRAILER_TAG};
use super::order::SequenceOrder;
use super::record::TokenRecord;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

pub struct TraceWriter {
    final_path: PathBuf,
    temp_path: PathBuf,
    out: Option<BufWriter<File>>,
    header: TraceHeader,
    payload: Vec<u8>,
    records: u64,
    offset: u64,
    records_crc: crc32fast::Hasher,
    order: SequenceOrder,
}

impl TraceWriter {
    /// Starts a trace at `path` (written to a temporary file beside it until `finish`).
    pub fn create(path: &Path, header: TraceHeader) -> Result<Self, TraceError> {
        header
            .check()
            .map_err(|e| TraceError::new(TraceErrorKind::Header, path, e))?;
        let json = header.to_json_bytes();
        if json.len() > MAX_HEADER_BYTES as usize {
            return Err(TraceError::new(
                TraceErrorKind::Header,
                path,
                format!(
                    "header JSON is {} bytes, more than the format's limit of {MAX_HEADER_BYTES}",
                    json.len()
                ),
            ));
        }
        let file_name = path.file_name().ok_or_else(|| {
            TraceError::new(TraceErrorKind::Input, path, "output path names no file")
        })?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let temp_path = dir.join(format!(
            ".{}.partial-{}",
            file_name.to_string_lossy(),
            std::process::id()
        ));
        let file = File::create(&temp_path)
            .map_err(|e| TraceError::io(path, "create a temporary file beside the trace", e))?;
        let mut w = TraceWriter {
            final_path: path.to_path_buf(),
            temp_path,
            out: Some(BufWriter::with_capacity(1 << 16, file)),
            header,
            payload: Vec::new(),
            records: 0,
            offset: 0,
            records_crc: crc32fast::Hasher::new(),
            order: SequenceOrder::default(),
        };
        let version = w.header.version;
        let mut block = Vec::with_capacity(json.len() + 20);
        block.extend_from_slice(&MAGIC);
        block.extend_from_slice(&version.to_le_bytes());
        block.extend_from_slice(&(json.len() as u32).to_le_bytes());
        block.extend_from_slice(&json);
        block.extend_from_slice(&header_crc(version, &json).to_le_bytes());
        w.put(&block)?;
        Ok(w)
    }

    pub fn header(&self) -> &TraceHeader {
        &self.header
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Validates and appends one record. An invalid record is an error naming the record
    /// number; the file is left unfinished (and removed on drop).
    pub fn write(&mut self, rec: &TokenRecord) -> Result<(), TraceError> {
        let invalid = |w: &Self, e: String| {
            TraceError::new(TraceErrorKind::Invalid, &w.final_path, e)
                .in_record(w.records, w.offset)
        };
        if let Err(e) = codec::validate(&self.header, rec) {
            return Err(invalid(self, e));
        }
        if let Err(e) = self.order.check(rec) {
            return Err(invalid(self, e));
        }
        self.payload.clear();
        codec::encode(&self.header, rec, &mut self.payload);
        let crc = crc32fast::hash(&self.payload);
        let payload = std::mem::take(&mut self.payload);
        let result = self
            .put(&(payload.len() as u32).to_le_bytes())
            .and_then(|_| self.put(&payload))
            .and_then(|_| self.put(&crc.to_le_bytes()));
        self.payload = payload;
        result?;
        self.records_crc.update(&crc.to_le_bytes());
        self.records += 1;
        Ok(())
    }

    /// Writes the trailer, flushes, and moves the file to its final name. Returns the number
    /// of records.
    pub fn finish(mut self) -> Result<u64, TraceError> {
        if self.records == 0 {
            return Err(TraceError::new(
                TraceErrorKind::Invalid,
                &self.final_path,
                "no records were written; an empty trace is refused (readers reject it too)",
            ));
        }
        let crc = std::mem::take(&mut self.records_crc).finalize();
        let mut trailer = Vec::with_capacity(24);
        trailer.extend_from_slice(&TRAILER_TAG.to_le_bytes());
        trailer.extend_from_slice(&self.records.to_le_bytes());
        trailer.extend_from_slice(&crc.to_le_bytes());
        trailer.extend_from_slice(&END_MAGIC);
        self.put(&trailer)?;
        let out = self.out.take().expect("writer is open until finish");
        let file = out
            .into_inner()
            .map_err(|e| TraceError::io(&self.final_path, "flush the trace", e.into_error()))?;
        file.sync_all()
            .map_err(|e| TraceError::io(&self.final_path, "sync the trace to disk", e))?;
        drop(file);
        std::fs::rename(&self.temp_path, &self.final_path).map_err(|e| {
            let _ = std::fs::remove_file(&self.temp_path);
            TraceError::io(&self.final_path, "move the finished trace into place", e)
        })?;
        Ok(self.records)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), TraceError> {
        let out = self.out.as_mut().expect("writer is open until finish");
        out.write_all(bytes)
            .map_err(|e| TraceError::io(&self.final_path, "write the trace", e))?;
        self.offset += bytes.len() as u64;
        Ok(())
    }
}

impl Drop for TraceWriter {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.temp_path);
        }
    }
}
