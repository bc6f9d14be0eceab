//! Seeded synthetic traces calibrated to published statistics. Every generated header says it
//! is synthetic, lists the generator's parameters (given and calibrated) and the target
//! statistics with their citations.
//!
//! The generators take a [`crate::model::ModelGeometry`], so any model profile works (the
//! command line loads bundled profiles from `scenarios/models/` through [`crate::scenario`]).

mod expert;
mod neurons;
mod normal;
mod routing;
mod schedule;
pub mod targets;

pub use expert::{ExpertGenConfig, ExpertTraceGenerator, HOBBIT_PREDICTION_ACCURACY};
pub use neurons::{
    NeuronGenConfig, NeuronPredictorSpec, NeuronTraceGenerator, DEFAULT_AUTOCORRELATION,
};
pub use routing::{RoutingKnobs, RoutingProcess};
pub use targets::RoutingTargets;

use super::error::TraceError;
use super::reader::TokenSource;
use super::record::TokenRecord;
use super::writer::TraceWriter;
use std::path::Path;

/// Streams every record of `source` into a new trace file at `path`; returns the record count.
/// On any error nothing is left at `path`.
pub fn write_trace(source: &mut impl TokenSource, path: &Path) -> Result<u64, TraceError> {
    let mut writer = TraceWriter::create(path, source.header().clone())?;
    let mut rec = TokenRecord::default();
    while source.next_into(&mut rec)? {
        writer.write(&rec)?;
    }
    writer.finish()
}
