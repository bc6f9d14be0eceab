//! Model architectures: the profile as written on disk, and the geometry derived from it.
//!
//! A profile states dimensions (layers, hidden width, FFN width, experts, ...) with their
//! sources; tensor sizes at every precision are computed from them, never typed in.

mod geometry;
mod precision;
mod profile;
mod tensor;

pub use geometry::ModelGeometry;
pub use precision::{Precision, QUANT_GROUP};
pub use profile::{FfnKind, ModelProfile, MoeSpec, RouterKind, SparsitySpec};
pub use tensor::{TensorKind, TensorRef, DENSE_FFN};
