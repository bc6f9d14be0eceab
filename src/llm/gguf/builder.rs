//! Writes GGUF bytes: hand-built files for tests and tiny fixture models.
//!
//! Only what the reader needs to be exercised: every value type, tensors of any type given as
//! raw bytes, and the alignment padding.

use super::tensor_type::GgmlType;
use super::value::{value_type, MetadataValue};

#[derive(Clone, Debug)]
pub struct GgufBuilder {
    version: u32,
    alignment: u64,
    metadata: Vec<(String, MetadataValue)>,
    tensors: Vec<(String, Vec<u64>, GgmlType, Vec<u8>)>,
}

impl Default for GgufBuilder {
    fn default() -> Self {
        GgufBuilder {
            version: 3,
            alignment: super::file::GGUF_ALIGNMENT_DEFAULT,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }
}

impl GgufBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the alignment of tensor data (also written as `general.alignment` if not 32).
    pub fn alignment(&mut self, alignment: u64) -> &mut Self {
        self.alignment = alignment;
        if alignment != super::file::GGUF_ALIGNMENT_DEFAULT {
            self.metadata("general.alignment", MetadataValue::U32(alignment as u32));
        }
        self
    }

    pub fn metadata(&mut self, key: &str, value: MetadataValue) -> &mut Self {
        self.metadata.push((key.to_string(), value));
        self
    }

    /// Adds a tensor of any type from its raw bytes; `dims` in ggml order (contiguous first).
    pub fn tensor_raw(
        &mut self,
        name: &str,
        dims: &[u64],
        ggml_type: GgmlType,
        data: Vec<u8>,
    ) -> &mut Self {
        self.tensors
            .push((name.to_string(), dims.to_vec(), ggml_type, data));
        self
    }

    /// Adds an F32 tensor.
    pub fn tensor_f32(&mut self, name: &str, dims: &[u64], values: &[f32]) -> &mut Self {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor_raw(name, dims, GgmlType::F32, data)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            write_string(&mut out, key);
            out.extend_from_slice(&type_id(value).to_le_bytes());
            write_value(&mut out, value);
        }
        let mut offset = 0u64;
        let mut offsets = Vec::new();
        for (name, dims, ggml_type, data) in &self.tensors {
            write_string(&mut out, name);
            out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&ggml_type.id().to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offsets.push(offset);
            offset = (offset + data.len() as u64).next_multiple_of(self.alignment);
        }
        let data_start = (out.len() as u64).next_multiple_of(self.alignment) as usize;
        out.resize(data_start, 0);
        for ((_, _, _, data), offset) in self.tensors.iter().zip(offsets) {
            out.resize(data_start + offset as usize, 0);
            out.extend_from_slice(data);
        }
        out
    }
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn type_id(value: &MetadataValue) -> u32 {
    match value {
        MetadataValue::U8(_) => value_type::U8,
        MetadataValue::I8(_) => value_type::I8,
        MetadataValue::U16(_) => value_type::U16,
        MetadataValue::I16(_) => value_type::I16,
        MetadataValue::U32(_) => value_type::U32,
        MetadataValue::I32(_) => value_type::I32,
        MetadataValue::F32(_) => value_type::F32,
        MetadataValue::Bool(_) => value_type::BOOL,
        MetadataValue::String(_) => value_type::STRING,
        MetadataValue::Array(_) => value_type::ARRAY,
        MetadataValue::U64(_) => value_type::U64,
        MetadataValue::I64(_) => value_type::I64,
        MetadataValue::F64(_) => value_type::F64,
    }
}

fn write_value(out: &mut Vec<u8>, value: &MetadataValue) {
    match value {
        MetadataValue::U8(v) => out.push(*v),
        MetadataValue::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::Bool(v) => out.push(*v as u8),
        MetadataValue::String(v) => write_string(out, v),
        MetadataValue::Array(elements) => {
            // An empty array is written as an array of u8.
            let element_type = elements.first().map(type_id).unwrap_or(value_type::U8);
            out.extend_from_slice(&element_type.to_le_bytes());
            out.extend_from_slice(&(elements.len() as u64).to_le_bytes());
            for element in elements {
                write_value(out, element);
            }
        }
        MetadataValue::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
    }
}
