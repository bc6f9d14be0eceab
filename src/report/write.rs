//! Writing a report folder all at once: a [`crate::staged_dir::StagedDir`] whose finished
//! folders are recognised by `results.json` (validation bundles: `bundle.json`).

pub use crate::staged_dir::StagedDir as ReportDir;

/// The file every finished report folder holds.
pub const REPORT_MARKER: &str = "results.json";
