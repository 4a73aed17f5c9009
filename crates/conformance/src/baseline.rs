//! The expected-failures baseline: scenarios known to fail, each with a reason.
//!
//! ```toml
//! [[expected_failure]]
//! id = "user-post-phone-not-e164"
//! reason = "the target does not validate phone numbers"
//! ```
//! A listed failure does not fail the run; a listed scenario that passes does (the entry is stale),
//! and so does an entry naming no scenario.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A parsed baseline.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    #[serde(default)]
    expected_failure: Vec<Entry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: String,
    reason: String,
}

/// A baseline file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid baseline.
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Baseline {
    /// Reads a baseline file.
    pub fn load(path: &Path) -> Result<Self, BaselineError> {
        let text = std::fs::read_to_string(path).map_err(|source| BaselineError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses a baseline's text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, BaselineError> {
        let baseline: Baseline = toml::from_str(text).map_err(|error| BaselineError::Invalid {
            path: path.to_owned(),
            message: error.message().to_owned(),
        })?;
        for (index, entry) in baseline.expected_failure.iter().enumerate() {
            if baseline.expected_failure[..index]
                .iter()
                .any(|earlier| earlier.id == entry.id)
            {
                return Err(BaselineError::Invalid {
                    path: path.to_owned(),
                    message: format!("{} is listed twice", entry.id),
                });
            }
            if entry.reason.trim().is_empty() {
                return Err(BaselineError::Invalid {
                    path: path.to_owned(),
                    message: format!("{} needs a reason", entry.id),
                });
            }
        }
        Ok(baseline)
    }

    /// Why `scenario_id` is expected to fail, if it is.
    pub fn reason(&self, scenario_id: &str) -> Option<&str> {
        self.expected_failure
            .iter()
            .find(|entry| entry.id == scenario_id)
            .map(|entry| entry.reason.as_str())
    }

    /// Every listed scenario id.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.expected_failure.iter().map(|entry| entry.id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_without_reason_is_refused() {
        let error = Baseline::parse(
            Path::new("b.toml"),
            "[[expected_failure]]\nid = \"x\"\nreason = \" \"\n",
        )
        .unwrap_err();
        assert_eq!(error.to_string(), "b.toml: x needs a reason");
    }

    #[test]
    fn a_duplicate_entry_is_refused() {
        let text = "[[expected_failure]]\nid = \"x\"\nreason = \"r\"\n[[expected_failure]]\nid = \"x\"\nreason = \"r\"\n";
        let error = Baseline::parse(Path::new("b.toml"), text).unwrap_err();
        assert_eq!(error.to_string(), "b.toml: x is listed twice");
    }
}
