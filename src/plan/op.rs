//! The operation vocabulary that policies speak and backends execute.
//!
//! An op says *what* happens (read these bytes, compute this shape at this precision), never how
//! long it takes: durations belong to backends. The simulator prices ops from a device profile;
//! the executor performs them and measures.

pub use crate::hw::cost::Kernel;
use crate::model::Precision;
use crate::model::TensorRef;
use serde::Serialize;

/// Global id of an op within one run. Ids grow monotonically across plans, so a plan may depend
/// on an op issued by an earlier plan (a prefetch still in flight).
pub type OpId = u64;

/// Where a compute op runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Unit {
    /// CPU cluster `cluster` (index into the device's `cpu` list), on `threads` cores at once.
    Cpu { cluster: u8, threads: u16 },
    /// The device's accelerator (GPU or NPU).
    Accel,
}

/// The secure or normal world, for TrustZone world switches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum World {
    Secure,
    Normal,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Op {
    /// Read `bytes` of `tensor` at `precision` from the offload tier (flash, or host memory over
    /// the link), issued as requests of `request_bytes` each.
    Read {
        tensor: TensorRef,
        precision: Precision,
        bytes: u64,
        request_bytes: u32,
    },
    /// Decrypt (and authenticate) `bytes` on CPU cluster `cluster` using `threads` cores.
    Decrypt {
        tensor: TensorRef,
        bytes: u64,
        cluster: u8,
        threads: u16,
    },
    /// Reserve `bytes` of memory (secure memory when `secure`) for `tensor`. Memory counts
    /// against the budget from the moment the op starts.
    Alloc {
        tensor: TensorRef,
        bytes: u64,
        secure: bool,
    },
    /// Compute with `tensor`'s weights: a `rows` x `cols` weight matrix (several matrices of one
    /// tensor are stacked into rows) applied to `batch` tokens. `flops` and `bytes` are the
    /// arithmetic and memory traffic the op performs, derived from the shape by the builder.
    Compute {
        tensor: TensorRef,
        unit: Unit,
        precision: Precision,
        rows: u32,
        cols: u32,
        batch: u32,
        flops: u64,
        bytes: u64,
        /// The kind of kernel that computes it on a CPU (LUT by default; llama.cpp's baselines
        /// use dequantize-then-multiply kernels). The accelerator ignores it.
        kernel: Kernel,
    },
    /// Switch the CPU (and the NPU it drives) to `to`.
    WorldSwitch { to: World },
    /// Hand the whole NPU over to `to`'s driver: detach it from one world and re-initialise
    /// its control plane in the other (TZ-LLM §2.3's strawman, which its co-driver replaces
    /// by one [`Op::WorldSwitch`] pair per NPU job).
    NpuHandover { to: World },
    /// Waits for its dependencies and does nothing else: the join point of a layer whose
    /// experts run in parallel, or the end of a warm-up. Takes no time on any backend.
    Join,
    /// Release `tensor`'s `bytes`. Memory returns to the budget when the op ends.
    Evict {
        tensor: TensorRef,
        bytes: u64,
        secure: bool,
    },
}

impl Op {
    /// A matrix product of a `rows` x `cols` weight at `precision` with `batch` activations.
    pub fn matmul(
        tensor: TensorRef,
        unit: Unit,
        precision: Precision,
        rows: u32,
        cols: u32,
        batch: u32,
    ) -> Op {
        let weights = rows as u64 * cols as u64;
        Op::Compute {
            tensor,
            unit,
            precision,
            rows,
            cols,
            batch,
            flops: 2 * weights * batch as u64,
            bytes: precision.bytes_for(weights),
            kernel: Kernel::Lut,
        }
    }

    /// This op computed by `kernel` (ops other than Compute are returned unchanged).
    pub fn with_kernel(mut self, kernel: Kernel) -> Op {
        if let Op::Compute { kernel: k, .. } = &mut self {
            *k = kernel;
        }
        self
    }

    pub fn kind_name(&self) -> &'static str {
        match self {
            Op::Read { .. } => "read",
            Op::Decrypt { .. } => "decrypt",
            Op::Alloc { .. } => "alloc",
            Op::Compute { .. } => "compute",
            Op::WorldSwitch { .. } => "world_switch",
            Op::NpuHandover { .. } => "npu_handover",
            Op::Evict { .. } => "evict",
            Op::Join => "join",
        }
    }

    pub fn tensor(&self) -> Option<TensorRef> {
        match *self {
            Op::Read { tensor, .. }
            | Op::Decrypt { tensor, .. }
            | Op::Alloc { tensor, .. }
            | Op::Compute { tensor, .. }
            | Op::Evict { tensor, .. } => Some(tensor),
            Op::WorldSwitch { .. } | Op::NpuHandover { .. } | Op::Join => None,
        }
    }
}
