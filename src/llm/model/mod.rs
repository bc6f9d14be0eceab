//! A Llama-architecture transformer (SmolLM2, TinyLlama, Llama 2/3 …) running on [`MatVec`]
//! weights: the f32 reference or the LUT kernels' low-bit formats.
//!
//! [`MatVec`]: crate::llm::matvec::MatVec

mod attention;
mod config;
mod forward;
mod kv_cache;
mod observer;
pub mod ops;
mod weights;
mod workspace;

pub use config::{LlamaConfig, ARCHITECTURE};
pub use forward::{load_model, LlamaModel, LogitsWanted, SteppedPass};
pub use kv_cache::KvCache;
pub use observer::FfnObserver;
pub use ops::RopeLayout;
pub use weights::{LayerWeights, LlamaWeights};
