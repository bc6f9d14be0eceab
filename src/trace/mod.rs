//! Activation traces: which experts a router chose (with gate scores), or which FFN neurons
//! fired, per token and layer.
//!
//! - [`TraceWriter`] / [`TraceReader`]: the versioned binary format (documented byte by byte in
//!   `traces/README.md`), streamed with flat memory, every record checked on read.
//! - [`TokenSource`]: anything yielding records one by one (a file, a generator, a vector).
//! - [`PassGrouper`]: records → [`ForwardPass`]es, the unit a policy plans for.
//! - [`stats`]: the statistics policies depend on (popularity skew, reuse distance, cross-layer
//!   predictability, neuron hot sets).
//! - [`gen`]: seeded synthetic traces calibrated to published statistics.
//! - [`import`]: converters from other people's recordings.

mod codec;
mod error;
pub mod gen;
mod grouper;
mod header;
pub mod import;
mod layout;
mod order;
mod reader;
mod record;
pub mod stats;
mod summary;
pub mod trailer;
mod varint;
mod writer;

pub use error::{TraceError, TraceErrorKind};
pub use grouper::PassGrouper;
pub use header::{
    SourceKind, StatTarget, TraceHeader, TraceKind, TraceSource, FORMAT_NAME, FORMAT_VERSION,
    SCORE_SUM_TOLERANCE,
};
pub use reader::{TokenSource, TraceReader, VecSource};
pub use record::{ForwardPass, Phase, TokenRecord, NO_PREDICTION};
pub use summary::{validate_file, TraceSummary, ValidatedTrace};
pub use writer::TraceWriter;
