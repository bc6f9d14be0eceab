//! GGUF, the file format of llama.cpp models: a header, typed metadata key/values, tensor infos,
//! and aligned tensor data.
//!
//! Layout (little-endian): magic `GGUF`, u32 version (2 or 3), u64 tensor count, u64 metadata
//! count; each metadata entry is a string key, a u32 value type and the value (arrays carry an
//! element type and a u64 count); each tensor info is a string name, u32 dimension count, u64
//! dimensions (contiguous first), u32 ggml type and u64 offset into the data section, which
//! starts at the next multiple of `general.alignment` (default 32) after the infos.
//!
//! edgesim reads the whole file into memory and dequantizes F32, F16, Q4_0, Q4_1 and Q8_0
//! tensors to f32 (the block decoders are the LUT kernels' own, [`crate::kernels::gguf`]); the
//! model code converts those to whatever weight format it runs.

mod builder;
mod cursor;
mod dequant;
mod file;
mod tensor_type;
mod value;

pub use builder::GgufBuilder;
pub use dequant::{dequantize_into, f16_to_f32, DequantError};
pub use file::{
    GgufFile, TensorInfo, GGUF_ALIGNMENT_DEFAULT, GGUF_MAGIC, GGUF_VERSIONS, TENSOR_DIMS_MAX,
};
pub use tensor_type::{BlockLayout, GgmlType};
pub use value::{value_type, MetadataValue};

#[cfg(test)]
mod tests;
