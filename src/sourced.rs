//! `Sourced<T>`: a profile number that carries where it came from.
//!
//! Every number in a device or model profile is written as `{"value": 32, "source": "..."}`.
//! Making the citation part of the type means a profile without one does not parse, so "a number
//! with no source" is caught when the file is loaded, not in review.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sourced<T> {
    pub value: T,
    /// Paper table, datasheet, configuration file or calibration run the value comes from.
    pub source: String,
}

impl<T: Copy> Sourced<T> {
    pub fn get(&self) -> T {
        self.value
    }
}

impl<T> Sourced<T> {
    pub fn new(value: T, source: impl Into<String>) -> Self {
        Sourced {
            value,
            source: source.into(),
        }
    }

    /// A citation must say something; an empty or placeholder source is as bad as none.
    pub fn check_source(&self, field: &str) -> Result<(), String> {
        let s = self.source.trim();
        if s.is_empty() || s.eq_ignore_ascii_case("todo") || s == "?" {
            return Err(format!(
                "field `{field}` has no source; cite where its value comes from"
            ));
        }
        Ok(())
    }
}
