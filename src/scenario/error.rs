//! What can go wrong loading a profile, each case naming the file and the field at fault.

use std::fmt;

/// Which kind of profile a name or file was meant to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfileKind {
    Device,
    Model,
}

impl ProfileKind {
    pub fn name(self) -> &'static str {
        match self {
            ProfileKind::Device => "device",
            ProfileKind::Model => "model",
        }
    }

    /// The folder of `scenarios/` that holds this kind.
    pub fn folder(self) -> &'static str {
        match self {
            ProfileKind::Device => "devices",
            ProfileKind::Model => "models",
        }
    }
}

impl fmt::Display for ProfileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A profile that could not be loaded. Every variant names the file (or the unknown name) and,
/// where there is one, the field path (`storage.read_curve.value[2].bytes_per_s`) and the line
/// and column, so the user can go straight to the mistake.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error(
        "unknown {kind} `{name}`; bundled {kind}s: {}. \
         To load your own file, give a path ending in `.json`",
        known.join(", ")
    )]
    UnknownName {
        kind: ProfileKind,
        name: String,
        known: Vec<String>,
    },

    #[error("cannot read {kind} profile `{file}`: {source}")]
    Read {
        kind: ProfileKind,
        file: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{file}:{line}:{column}: not valid JSON: {message}")]
    Syntax {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },

    /// The JSON is well formed but does not fit the schema: an unknown field, a missing field
    /// (a number without `source` included), a value of the wrong type.
    #[error("{file}:{line}:{column}: field `{field}`: {message}")]
    Field {
        file: String,
        field: String,
        line: usize,
        column: usize,
        message: String,
    },

    /// A number whose citation is empty or a placeholder, or a number outside a
    /// `{"value", "source"}` object.
    #[error("{file}: field `{field}`: {message}")]
    Citation {
        file: String,
        field: String,
        message: String,
    },

    /// The profile parses but a value cannot be right (a zero bandwidth, `top_k` above the
    /// expert count, ...). Lists every problem found.
    #[error("{file}: {}", problems.join("; "))]
    Invalid { file: String, problems: Vec<String> },
}

impl ScenarioError {
    /// The file (or, for an unknown name, the name) the error is about.
    pub fn file(&self) -> &str {
        match self {
            ScenarioError::UnknownName { name, .. } => name,
            ScenarioError::Read { file, .. }
            | ScenarioError::Syntax { file, .. }
            | ScenarioError::Field { file, .. }
            | ScenarioError::Citation { file, .. }
            | ScenarioError::Invalid { file, .. } => file,
        }
    }
}
