//! The one error type the command line reports, and its exit code.

use std::fmt;

/// A failure to report to the user. The message must say what to fix.
#[derive(Debug)]
pub struct CliError {
    message: String,
}

impl CliError {
    pub fn new(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
        }
    }

    /// Bad input (a file, a flag, a profile) exits with 2, like a usage error.
    pub fn exit_code(&self) -> i32 {
        2
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// Any library error converts with its own message; callers add file context themselves.
macro_rules! from_display {
    ($($t:ty),*) => {$(
        impl From<$t> for CliError {
            fn from(e: $t) -> Self { CliError::new(e.to_string()) }
        }
    )*};
}

from_display!(
    crate::policy::PolicyError,
    crate::backend::BackendError,
    crate::plan::PlanError,
    crate::scenario::ScenarioError,
    crate::replay::ReplayError,
    std::io::Error
);
