//! A parsed GGUF file: header, metadata, tensor infos, and the tensor data it owns.

use super::cursor::Cursor;
use super::dequant::{dequantize_into, DequantError};
use super::tensor_type::GgmlType;
use super::value::MetadataValue;
use crate::llm::LlmError;
use std::collections::BTreeMap;
use std::path::Path;

/// `GGUF` read as a little-endian u32.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Versions with 64-bit counts and lengths; version 1 (32-bit counts) is long obsolete.
pub const GGUF_VERSIONS: [u32; 2] = [2, 3];
/// Data alignment when `general.alignment` is absent (GGUF spec).
pub const GGUF_ALIGNMENT_DEFAULT: u64 = 32;
/// ggml's `GGML_MAX_DIMS`.
pub const TENSOR_DIMS_MAX: usize = 4;

/// Where one tensor lives and what it holds.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the contiguous (innermost) dimension. A weight matrix of a
    /// linear layer is `[in_features, out_features]`.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Offset from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    pub fn element_count(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A whole GGUF file in memory.
///
/// The bytes are owned (the SmolLM2 file is 98 MB), so tensors can be borrowed or dequantized
/// at will. Metadata sits in a `BTreeMap` so that listing it is deterministic.
#[derive(Debug)]
pub struct GgufFile {
    file: String,
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: BTreeMap<String, MetadataValue>,
    tensors: Vec<TensorInfo>,
    tensor_index: BTreeMap<String, usize>,
    bytes: Vec<u8>,
}

impl GgufFile {
    /// Reads and parses `path`.
    pub fn open(path: &Path) -> Result<GgufFile, LlmError> {
        let bytes = std::fs::read(path).map_err(|e| LlmError::io(path, e))?;
        GgufFile::parse(bytes, &path.display().to_string())
    }

    /// Parses `bytes`; `file` names the source in error messages.
    pub fn parse(bytes: Vec<u8>, file: &str) -> Result<GgufFile, LlmError> {
        let mut cursor = Cursor::new(&bytes, file);
        let magic = cursor.take(4, "the magic number")?;
        if magic != GGUF_MAGIC {
            return Err(cursor.error(format!(
                "bad magic {magic:02x?}: not a GGUF file (expected the bytes \"GGUF\")"
            )));
        }
        let version = cursor.u32("the version")?;
        if !GGUF_VERSIONS.contains(&version) {
            return Err(cursor.error(format!(
                "unsupported GGUF version {version} (supported: {GGUF_VERSIONS:?})"
            )));
        }
        let tensor_count = cursor.u64("the tensor count")?;
        let metadata_count = cursor.u64("the metadata key count")?;
        // A key/value pair takes at least 8 + 4 + 1 bytes and a tensor info at least 8 + 4 + 4 + 8.
        if metadata_count.saturating_mul(13) > cursor.remaining() as u64 {
            return Err(cursor.error(format!(
                "metadata key count {metadata_count} cannot fit in a {}-byte file (truncated or corrupt)",
                bytes.len()
            )));
        }
        if tensor_count.saturating_mul(24) > cursor.remaining() as u64 {
            return Err(cursor.error(format!(
                "tensor count {tensor_count} cannot fit in a {}-byte file (truncated or corrupt)",
                bytes.len()
            )));
        }

        let mut metadata = BTreeMap::new();
        for index in 0..metadata_count {
            let key = cursor.string(&format!("the name of metadata key #{index}"))?;
            let type_id = cursor.u32(&format!("the value type of key '{key}'"))?;
            let value = MetadataValue::read(&mut cursor, type_id, &key)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(cursor.error(format!("metadata key '{key}' appears twice")));
            }
        }

        let alignment = match metadata.get("general.alignment") {
            None => GGUF_ALIGNMENT_DEFAULT,
            Some(value) => match value.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() => a,
                _ => {
                    return Err(LlmError::Metadata {
                        file: file.to_string(),
                        key: "general.alignment".into(),
                        message: format!("must be a positive power of two, found {value:?}"),
                    })
                }
            },
        };

        let mut tensors = Vec::with_capacity(tensor_count as usize);
        let mut tensor_index = BTreeMap::new();
        for index in 0..tensor_count {
            let name = cursor.string(&format!("the name of tensor #{index}"))?;
            let tensor_error = |message: String| LlmError::Tensor {
                file: file.to_string(),
                tensor: name.clone(),
                message,
            };
            let dim_count =
                cursor.u32(&format!("the dimension count of tensor '{name}'"))? as usize;
            if dim_count == 0 || dim_count > TENSOR_DIMS_MAX {
                return Err(tensor_error(format!(
                    "has {dim_count} dimensions (1..={TENSOR_DIMS_MAX} allowed)"
                )));
            }
            let mut dims = Vec::with_capacity(dim_count);
            for _ in 0..dim_count {
                dims.push(cursor.u64(&format!("the dimensions of tensor '{name}'"))?);
            }
            let type_id = cursor.u32(&format!("the type of tensor '{name}'"))?;
            let ggml_type = GgmlType::from_id(type_id)
                .ok_or_else(|| tensor_error(format!("unknown ggml type id {type_id}")))?;
            let offset = cursor.u64(&format!("the data offset of tensor '{name}'"))?;
            if offset % alignment != 0 {
                return Err(tensor_error(format!(
                    "data offset {offset} is not a multiple of the alignment {alignment}"
                )));
            }
            dims.iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| tensor_error(format!("element count of {dims:?} overflows")))?;
            if tensor_index.insert(name.clone(), tensors.len()).is_some() {
                return Err(tensor_error("appears twice".into()));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
            });
        }

        let data_offset = (cursor.position() as u64).next_multiple_of(alignment);
        let data_len = (bytes.len() as u64).saturating_sub(data_offset);
        for info in &tensors {
            // Types edgesim cannot size are checked when someone asks for their data.
            if let Some(size) = info.ggml_type.bytes_for(info.element_count()) {
                if info
                    .offset
                    .checked_add(size)
                    .is_none_or(|end| end > data_len)
                {
                    return Err(LlmError::Tensor {
                        file: file.to_string(),
                        tensor: info.name.clone(),
                        message: format!(
                            "data [{}, +{size}) lies beyond the {data_len} bytes of tensor data (truncated file?)",
                            info.offset
                        ),
                    });
                }
            }
        }

        Ok(GgufFile {
            file: file.to_string(),
            version,
            alignment,
            data_offset,
            metadata,
            tensors,
            tensor_index,
            bytes,
        })
    }

    /// The name errors use for this file (its path).
    pub fn file_name(&self) -> &str {
        &self.file
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Byte offset of the tensor data section from the start of the file.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// All metadata, sorted by key.
    pub fn metadata(&self) -> &BTreeMap<String, MetadataValue> {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.metadata.get(key)
    }

    /// All tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    pub(crate) fn metadata_error(&self, key: &str, message: impl Into<String>) -> LlmError {
        LlmError::Metadata {
            file: self.file.clone(),
            key: key.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn tensor_error(&self, tensor: &str, message: impl Into<String>) -> LlmError {
        LlmError::Tensor {
            file: self.file.clone(),
            tensor: tensor.to_string(),
            message: message.into(),
        }
    }

    fn require(&self, key: &str) -> Result<&MetadataValue, LlmError> {
        self.get(key)
            .ok_or_else(|| self.metadata_error(key, "missing"))
    }

    /// A non-negative integer of any integer type.
    pub fn require_u64(&self, key: &str) -> Result<u64, LlmError> {
        let value = self.require(key)?;
        value.as_u64().ok_or_else(|| {
            self.metadata_error(
                key,
                format!(
                    "expected a non-negative integer, found {} {value:?}",
                    value.type_name()
                ),
            )
        })
    }

    /// A float of either width.
    pub fn require_f64(&self, key: &str) -> Result<f64, LlmError> {
        let value = self.require(key)?;
        value.as_f64().ok_or_else(|| {
            self.metadata_error(
                key,
                format!("expected a float, found {}", value.type_name()),
            )
        })
    }

    pub fn require_str(&self, key: &str) -> Result<&str, LlmError> {
        let value = self.require(key)?;
        value.as_str().ok_or_else(|| {
            self.metadata_error(
                key,
                format!("expected a string, found {}", value.type_name()),
            )
        })
    }

    /// An array whose elements are all strings.
    pub fn require_string_array(&self, key: &str) -> Result<Vec<&str>, LlmError> {
        let value = self.require(key)?;
        let array = value.as_array().ok_or_else(|| {
            self.metadata_error(
                key,
                format!("expected an array of strings, found {}", value.type_name()),
            )
        })?;
        array
            .iter()
            .enumerate()
            .map(|(i, element)| {
                element.as_str().ok_or_else(|| {
                    self.metadata_error(
                        key,
                        format!(
                            "element {i} is a {}, expected a string",
                            element.type_name()
                        ),
                    )
                })
            })
            .collect()
    }

    /// The raw bytes of tensor `name`, checked against its type and shape.
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8], LlmError> {
        let info = self
            .tensor(name)
            .ok_or_else(|| self.tensor_error(name, "not in the file"))?;
        let size = info
            .ggml_type
            .bytes_for(info.element_count())
            .ok_or_else(|| {
                self.tensor_error(
                    name,
                    format!(
                        "type {} with shape {:?} is not supported (supported: {})",
                        info.ggml_type,
                        info.dims,
                        GgmlType::SUPPORTED.map(|t| t.name()).join(", ")
                    ),
                )
            })?;
        // Bounds were checked at parse time for every type with a size.
        let start = (self.data_offset + info.offset) as usize;
        Ok(&self.bytes[start..start + size as usize])
    }

    /// Tensor `name` dequantized to f32, in ggml order (row-major with `dims[0]` contiguous).
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>, LlmError> {
        let data = self.tensor_bytes(name)?;
        let info = self.tensor(name).expect("tensor_bytes found it");
        let mut out = vec![0.0f32; info.element_count() as usize];
        match dequantize_into(info.ggml_type, data, &mut out) {
            Ok(()) => Ok(out),
            Err(DequantError::Unsupported) => Err(self.tensor_error(
                name,
                format!("type {} cannot be dequantized", info.ggml_type),
            )),
            Err(DequantError::Invalid(detail)) => Err(self.tensor_error(name, detail)),
        }
    }
}
