//! Activation traces: which experts a router chose (with gate scores), or which FFN neurons
//! fired, per token and layer.
//!
//! The on-disk format is documented in `traces/README.md`.

mod record;

pub use record::{ForwardPass, Phase, TokenRecord};
