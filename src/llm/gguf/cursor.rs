//! A bounds-checked little-endian reader over the GGUF bytes.
//!
//! Every read says what it was reading, so a truncated file reports "truncated while reading
//! the value of key 'llama.block_count'" rather than an index panic.

use crate::llm::LlmError;

pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    position: usize,
    file: &'a str,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8], file: &'a str) -> Self {
        Cursor {
            bytes,
            position: 0,
            file,
        }
    }

    pub(crate) fn position(&self) -> usize {
        self.position
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    pub(crate) fn error(&self, message: impl Into<String>) -> LlmError {
        LlmError::Gguf {
            file: self.file.to_string(),
            message: message.into(),
        }
    }

    /// Takes `len` bytes; `what` names the field for the truncation message.
    pub(crate) fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], LlmError> {
        if len > self.remaining() {
            return Err(self.error(format!(
                "truncated at byte {} while reading {what}: needs {len} bytes, {} left",
                self.position,
                self.remaining()
            )));
        }
        let slice = &self.bytes[self.position..self.position + len];
        self.position += len;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], LlmError> {
        let slice = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &str) -> Result<u8, LlmError> {
        Ok(self.array::<1>(what)?[0])
    }
    pub(crate) fn i8(&mut self, what: &str) -> Result<i8, LlmError> {
        Ok(i8::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn u16(&mut self, what: &str) -> Result<u16, LlmError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn i16(&mut self, what: &str) -> Result<i16, LlmError> {
        Ok(i16::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, LlmError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn i32(&mut self, what: &str) -> Result<i32, LlmError> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn u64(&mut self, what: &str) -> Result<u64, LlmError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn i64(&mut self, what: &str) -> Result<i64, LlmError> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn f32(&mut self, what: &str) -> Result<f32, LlmError> {
        Ok(f32::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn f64(&mut self, what: &str) -> Result<f64, LlmError> {
        Ok(f64::from_le_bytes(self.array(what)?))
    }

    /// A GGUF string: u64 byte length, then UTF-8 bytes (no terminator).
    pub(crate) fn string(&mut self, what: &str) -> Result<String, LlmError> {
        let len = self.u64(what)?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&len| len <= self.remaining())
            .ok_or_else(|| {
                self.error(format!(
                    "truncated at byte {} while reading {what}: string length {len} exceeds the {} bytes left",
                    self.position,
                    self.remaining()
                ))
            })?;
        let start = self.position;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| self.error(format!("{what} at byte {start} is not valid UTF-8")))
    }
}
