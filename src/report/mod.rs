//! Reports: the figures of a run, tables (CSV, JSON), plots (SVG) and timelines.

pub mod analysis;
pub mod csv_rows;
pub mod file_name;
pub mod headline;
pub mod page;
pub mod plots;
pub mod summary;
pub mod summary_md;
pub mod table;
pub mod timeline;
pub mod write;

pub use file_name::file_name_part;
pub use summary::RunSummary;
pub use table::{ResultRow, RunIdentity};
pub use write::ReportDir;
