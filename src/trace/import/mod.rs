//! Importers: other people's routing recordings converted to edgesim traces, with every repair
//! counted and described in the header.

mod mixtral_jsonl;

pub use mixtral_jsonl::{
    import_mixtral_jsonl, read_mixtral_jsonl, read_mixtral_jsonl_from, ImportReport, MixtralLayout,
};
