//! Scenario inputs: the bundled device and model profiles, loading them by name or path, and
//! experiments that combine a device, a model, a trace, budgets and policies.
//!
//! ```no_run
//! let orin = edgesim::scenario::load_device("jetson-agx-orin")?;
//! let mine = edgesim::scenario::load_device("./my-board.json")?;
//! let mixtral = edgesim::scenario::load_model("mixtral-8x7b")?;
//! # Ok::<(), edgesim::scenario::ScenarioError>(())
//! ```
//!
//! A bare name (`rk3588`) means a bundled profile; anything ending in `.json` or containing a
//! path separator is read from disk. Either way the profile goes through the same checks
//! ([`parse_device`], [`parse_model`]): valid JSON, no unknown or missing field, every number
//! cited, every value possible. A failure names the file, the field and what is wrong.

mod catalog;
mod citations;
mod error;
pub mod experiment;
mod parse;

pub use citations::{citation_problems, CitationProblem};
pub use error::{ProfileKind, ScenarioError};
pub use experiment::{
    AnalysisSpec, BudgetSpec, Experiment, Footprint, GenerateSpec, PolicySpec, WorkloadSpec,
};
pub use parse::{parse_device, parse_model};

use crate::hw::DeviceProfile;
use crate::model::ModelProfile;
use std::path::MAIN_SEPARATOR;

/// Names of the bundled device profiles, sorted.
pub fn device_names() -> Vec<&'static str> {
    catalog::DEVICES.iter().map(|(n, _)| *n).collect()
}

/// Names of the bundled model profiles, sorted.
pub fn model_names() -> Vec<&'static str> {
    catalog::MODELS.iter().map(|(n, _)| *n).collect()
}

/// The JSON text of a bundled profile, e.g. to echo the scenario into a report.
pub fn bundled_text(kind: ProfileKind, name: &str) -> Option<&'static str> {
    match kind {
        ProfileKind::Device => catalog::find(catalog::DEVICES, name),
        ProfileKind::Model => catalog::find(catalog::MODELS, name),
    }
}

/// Loads a bundled device profile by name, or a device profile file by path.
pub fn load_device(name_or_path: &str) -> Result<DeviceProfile, ScenarioError> {
    let (text, file) = resolve(ProfileKind::Device, name_or_path)?;
    parse_device(&text, &file)
}

/// Loads a bundled model profile by name, or a model profile file by path.
pub fn load_model(name_or_path: &str) -> Result<ModelProfile, ScenarioError> {
    let (text, file) = resolve(ProfileKind::Model, name_or_path)?;
    parse_model(&text, &file)
}

/// Whether the argument names a file rather than a bundled profile. Decided by its spelling
/// alone, so a file that happens to exist in the working directory never shadows a bundled
/// name.
fn is_path(arg: &str) -> bool {
    arg.ends_with(".json") || arg.contains('/') || arg.contains(MAIN_SEPARATOR)
}

/// The profile's text and the name errors should give it.
fn resolve(kind: ProfileKind, arg: &str) -> Result<(String, String), ScenarioError> {
    if is_path(arg) {
        let text = std::fs::read_to_string(arg).map_err(|source| ScenarioError::Read {
            kind,
            file: arg.to_string(),
            source,
        })?;
        return Ok((text, arg.to_string()));
    }
    match bundled_text(kind, arg) {
        Some(text) => Ok((
            text.to_string(),
            format!("scenarios/{}/{arg}.json (bundled)", kind.folder()),
        )),
        None => Err(ScenarioError::UnknownName {
            kind,
            name: arg.to_string(),
            known: match kind {
                ProfileKind::Device => device_names(),
                ProfileKind::Model => model_names(),
            }
            .into_iter()
            .map(String::from)
            .collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelling_decides_path_or_name() {
        assert!(is_path("my.json"));
        assert!(is_path("./orin"));
        assert!(is_path("/abs/dir/orin"));
        assert!(!is_path("jetson-agx-orin"));
        assert!(!is_path("bitnet-b1.58-3b"));
    }

    #[test]
    fn unknown_name_lists_the_known_ones() {
        let e = load_model("mixtral-8x22b").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("unknown model `mixtral-8x22b`"), "{msg}");
        for n in model_names() {
            assert!(msg.contains(n), "{msg} lacks {n}");
        }
    }
}
