//! Errors of the kernel library: every bad input becomes one of these values, never a panic.

use thiserror::Error;

/// What went wrong when quantizing, packing, reading packed bytes or running a kernel.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum KernelError {
    #[error("unsupported weight bit width {0}: the LUT kernels take 1, 2, 3, 4 or 8 bits")]
    UnsupportedBits(u32),

    #[error("unsupported group size {0}: the LUT kernels take 32, 64 or 128 weights per group")]
    UnsupportedGroupSize(usize),

    #[error("{what}: {cols} columns is not a multiple of the group size {group}")]
    ColsNotMultipleOfGroup {
        what: &'static str,
        cols: usize,
        group: usize,
    },

    #[error("{what}: expected {expected}, got {actual}")]
    ShapeMismatch {
        what: &'static str,
        expected: usize,
        actual: usize,
    },

    #[error("{what}: value at index {index} is not finite ({value})")]
    NonFinite {
        what: &'static str,
        index: usize,
        value: f32,
    },

    #[error("{what}: value {value} at index {index} does not fit an fp16 scale (|v| <= 65504)")]
    ScaleOutOfRange {
        what: &'static str,
        index: usize,
        value: f32,
    },

    #[error("{what}: index {index} is out of range (length {len})")]
    IndexOutOfRange {
        what: &'static str,
        index: usize,
        len: usize,
    },

    #[error(
        "activation table groups of {table_group} do not divide the matrix's weight groups of \
         {matrix_group}: build the table with the matrix's group size or a divisor of it"
    )]
    TableGroupMismatch {
        table_group: usize,
        matrix_group: usize,
    },

    #[error("packed matrix bytes: field `{field}` is invalid: {detail}")]
    BadHeader { field: &'static str, detail: String },

    #[error("packed matrix bytes: checksum mismatch (header says {expected:#010x}, payload has {actual:#010x})")]
    ChecksumMismatch { expected: u32, actual: u32 },

    #[error("{what}: buffer of {actual} bytes, need {expected}")]
    BufferLength {
        what: &'static str,
        expected: usize,
        actual: usize,
    },

    #[error("GGUF {kind} data: {detail}")]
    GgufBlocks { kind: &'static str, detail: String },

    #[error("kernel path {0} is not available on this CPU")]
    PathUnavailable(&'static str),

    #[error("thread count must be at least 1")]
    ZeroThreads,
}
