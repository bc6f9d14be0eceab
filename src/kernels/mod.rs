//! Low-bit GEMV/GEMM by table lookup (the T-MAC method, arXiv 2407.00088), self-contained.
//!
//! Weights of 1, 2, 3, 4 or 8 bits (and ternary stored as 2 bits) are split into bit-planes;
//! each group of four activations becomes a 16-entry int8 table of `±a0 ±a1 ±a2 ±a3`, and a
//! 4-bit slice of one bit-plane picks an entry with one `pshufb` lane. No weight is ever
//! dequantized on the hot path.
//!
//! The pieces, in the order data flows:
//!
//! * [`QuantizedMatrix`]: f32 → codes + fp16 scale/centre per group ([`QuantScheme`]);
//!   [`gguf`] converts Q4_0/Q4_1/Q8_0 blocks into one.
//! * [`PackedMatrix`] / [`PackedView`]: the lookup layout, with a stable serialized form
//!   (64-byte header + payload) and a zero-copy view over bytes read from a file.
//! * [`ActivationTable`]: the tables of one activation vector, built once and shared by every
//!   matrix that reads that vector.
//! * [`gemv`], [`gemm`], [`gemv_rows`], [`gemv_cols`]: the kernels (AVX-512 with or without
//!   VBMI, AVX2 or portable, chosen at run time ([`Isa`]), bit-identical; multi-threaded over
//!   tiles of 32 rows, deterministic).
//! * [`ByteMatrix`], [`Q8Activations`], [`dot_gemv`], [`dot_gemm`]: the same weights one code
//!   per byte, times int8 activations (`vpdpbusd` with AVX-512 VNNI): the 8-bit path, where
//!   eight bit-planes of lookups cost more than one dot product.
//! * [`gemm_q8`]: the prefill GEMM of a lookup-layout matrix with int8 activations: each block
//!   of codes turned back into bytes once (`vgf2p8affineqb`) and multiplied with every vector
//!   (`vpdpbusd`).
//! * [`reference`](mod@reference): dequantize-then-multiply kernels for tests and benchmarks.
//!
//! Guarantees: bad shapes, bit widths and group sizes are [`KernelError`] values, never
//! panics; results do not depend on the thread count or the path. Accuracy: the only
//! approximation is the int8 rounding of table entries, at most half a table step per entry;
//! see `docs/kernels.md` for the bound the tests check.
//!
//! The module depends on nothing else in the crate.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod byte_matrix;
mod dot;
#[cfg(target_arch = "x86_64")]
mod dot_avx2;
#[cfg(target_arch = "x86_64")]
mod dot_avx512;
mod error;
pub mod f16;
pub mod format;
mod gemv;
pub mod gguf;
pub mod isa;
mod packed;
mod prefill;
#[cfg(target_arch = "x86_64")]
mod prefill_avx512;
mod q8;
mod quantize;
pub mod reference;
mod scalar;
mod table;
#[cfg(target_arch = "x86_64")]
mod table_avx2;

pub use byte_matrix::{ByteMatrix, ByteShape, ByteView, DOT_TILE_ROWS};
pub use dot::{dot_gemm, dot_gemv};
pub use error::KernelError;
pub use format::{block_bytes, flush_order, GroupSize, WeightBits, STEP_COLS, TILE_ROWS};
pub use gemv::{
    avx2_available, gemm, gemv, gemv_cols, gemv_f32, gemv_rows, KernelOptions, KernelPath,
};
pub use isa::Isa;
pub use packed::{PackedMatrix, PackedShape, PackedView, HEADER_BYTES};
pub use prefill::gemm_q8;
pub use q8::{Q8Activations, Q8_BLOCK};
pub use quantize::{QuantScheme, QuantizedMatrix};
pub use table::ActivationTable;
