//! Turning profile text into checked [`DeviceProfile`]s and [`ModelProfile`]s.
//!
//! Four passes, each with its own kind of error: JSON syntax (line and column), the schema
//! (unknown or missing fields, wrong types: field path, line and column), the citation rule
//! (field path), and the values themselves (`check()`: field path). A profile that passes all
//! four is safe to simulate with.

use super::citations::citation_problems;
use super::error::ScenarioError;
use crate::hw::DeviceProfile;
use crate::model::ModelProfile;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Parses and checks a device profile. `file` names the text in error messages.
pub fn parse_device(text: &str, file: &str) -> Result<DeviceProfile, ScenarioError> {
    let profile: DeviceProfile = parse_cited(text, file)?;
    profile.check().map_err(|problems| ScenarioError::Invalid {
        file: file.to_string(),
        problems,
    })?;
    Ok(profile)
}

/// Parses and checks a model profile. `file` names the text in error messages.
pub fn parse_model(text: &str, file: &str) -> Result<ModelProfile, ScenarioError> {
    let profile: ModelProfile = parse_cited(text, file)?;
    profile.check().map_err(|problems| ScenarioError::Invalid {
        file: file.to_string(),
        problems,
    })?;
    Ok(profile)
}

/// Syntax, schema and citations; the caller checks values.
fn parse_cited<T: DeserializeOwned>(text: &str, file: &str) -> Result<T, ScenarioError> {
    let tree: Value = serde_json::from_str(text).map_err(|e| ScenarioError::Syntax {
        file: file.to_string(),
        line: e.line(),
        column: e.column(),
        message: message_without_position(&e),
    })?;
    let mut de = serde_json::Deserializer::from_str(text);
    let typed: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = match e.path().to_string() {
            p if p == "." => "(top level)".to_string(),
            p => p,
        };
        let inner = e.inner();
        ScenarioError::Field {
            file: file.to_string(),
            field,
            line: inner.line(),
            column: inner.column(),
            message: with_hint(message_without_position(inner)),
        }
    })?;
    if let Some(p) = citation_problems(&tree).into_iter().next() {
        return Err(ScenarioError::Citation {
            file: file.to_string(),
            field: p.field,
            message: p.message,
        });
    }
    let problems = crate::limits::profile_problems(&tree);
    if !problems.is_empty() {
        return Err(ScenarioError::Invalid {
            file: file.to_string(),
            problems,
        });
    }
    Ok(typed)
}

/// serde_json appends " at line L column C"; the error carries those as fields already.
fn message_without_position(e: &serde_json::Error) -> String {
    let mut msg = e.to_string();
    if let Some(at) = msg.rfind(" at line ") {
        msg.truncate(at);
    }
    msg
}

/// Says how to fix the most common mistake: a number written without its citation.
fn with_hint(message: String) -> String {
    const HINT: &str = "every number is written as {\"value\": ..., \"source\": \"where it comes \
                        from\"}";
    if message.starts_with("missing field `source`") || message.contains("expected struct Sourced")
    {
        format!("{message}; {HINT}")
    } else {
        message
    }
}
