//! The real model on the executor: SmolLM2 (or any dense Llama GGUF with a tied head) run
//! under a memory budget, its FFN neurons loaded from the weight store by a neuron-level
//! policy's plan, and the output checked against in-memory runs.
//!
//! - [`gguf_weights`]: `edgesim exec prepare --gguf`: a store of the file's real weights with
//!   the FFNs as neuron clusters;
//! - [`bundle`]: a cluster's stored form and its part of the FFN output;
//! - [`fixed_sum`]: the order-independent sum that makes that output independent of timing;
//! - [`recorded`]: the trace's records with their token ids;
//! - [`session`]: the forward pass driven by compute ops;
//! - [`quality`]: the in-memory runs the offloaded one is compared with.

pub mod bundle;
pub mod fixed_sum;
pub mod gguf_weights;
pub mod quality;
pub mod recorded;
pub mod session;

pub use gguf_weights::{prepare_real, GgufWeights};
pub use quality::{dense_reference, in_memory_sparse, Quality};
pub use recorded::RecordedRun;
pub use session::{ModelSession, PassOutput};
