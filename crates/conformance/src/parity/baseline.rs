//! The parity baseline: differences known and accepted, each with a reason.
//!
//! ```toml
//! [[expected_difference]]
//! scenario = "consent-is-remembered"
//! step = 8
//! field = "/status"
//! reason = "Scalekit shows the consent page again; the emulator remembers it (Decision 8)"
//! ```
//! A step scenario's entry names its `step` (from 1), a flow scenario's its driver `hop`; `field`
//! is the JSON pointer `testbed parity` prints (`""` for a step or hop only one side has). A
//! listed difference does not fail the run; an entry that matches no difference is reported as
//! stale, so that it can be removed, without failing the run.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Difference, Place};

/// A parsed parity baseline.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParityBaseline {
    #[serde(default)]
    expected_difference: Vec<Entry>,
}

/// One accepted difference.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The scenario id.
    pub scenario: String,
    /// A step scenario's step, from 1.
    pub step: Option<usize>,
    /// A flow scenario's driver hop, from 1.
    pub hop: Option<usize>,
    /// The field, as `testbed parity` prints it.
    pub field: String,
    /// Why the difference is accepted.
    pub reason: String,
}

impl Entry {
    fn place(&self) -> Option<Place> {
        match (self.step, self.hop) {
            (Some(step), None) => Some(Place::Step(step)),
            (None, Some(hop)) => Some(Place::Hop(hop)),
            _ => None,
        }
    }

    /// Whether this entry accepts `difference`.
    pub fn matches(&self, difference: &Difference) -> bool {
        self.scenario == difference.scenario
            && self.place() == Some(difference.place)
            && self.field == difference.field
    }

    /// `scenario step N field` for messages.
    pub fn describe(&self) -> String {
        let place = match self.place() {
            Some(place) => place.to_string(),
            None => "?".to_owned(),
        };
        format!("{} {place} {:?}", self.scenario, self.field)
    }
}

/// A baseline file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ParityBaselineError {
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

impl ParityBaseline {
    /// Reads a baseline file.
    pub fn load(path: &Path) -> Result<Self, ParityBaselineError> {
        let text = std::fs::read_to_string(path).map_err(|source| ParityBaselineError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses a baseline's text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ParityBaselineError> {
        let invalid = |message: String| ParityBaselineError::Invalid {
            path: path.to_owned(),
            message,
        };
        let baseline: ParityBaseline =
            toml::from_str(text).map_err(|error| invalid(error.message().to_owned()))?;
        for (index, entry) in baseline.expected_difference.iter().enumerate() {
            if entry.place().is_none() {
                return Err(invalid(format!(
                    "{}: an entry names exactly one of `step` and `hop`",
                    entry.scenario
                )));
            }
            if entry.reason.trim().is_empty() {
                return Err(invalid(format!("{} needs a reason", entry.describe())));
            }
            if baseline.expected_difference[..index].contains(entry) {
                return Err(invalid(format!("{} is listed twice", entry.describe())));
            }
        }
        Ok(baseline)
    }

    /// The entry that accepts `difference`, if one does.
    pub fn accepting(&self, difference: &Difference) -> Option<&Entry> {
        self.expected_difference
            .iter()
            .find(|entry| entry.matches(difference))
    }

    /// Every entry.
    pub fn entries(&self) -> &[Entry] {
        &self.expected_difference
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_names_a_step_or_a_hop_and_a_reason() {
        let both = "[[expected_difference]]\nscenario = \"s\"\nstep = 1\nhop = 2\nfield = \"/status\"\nreason = \"r\"\n";
        assert_eq!(
            ParityBaseline::parse(Path::new("b.toml"), both)
                .unwrap_err()
                .to_string(),
            "b.toml: s: an entry names exactly one of `step` and `hop`"
        );
        let no_reason = "[[expected_difference]]\nscenario = \"s\"\nstep = 1\nfield = \"/status\"\nreason = \"\"\n";
        assert_eq!(
            ParityBaseline::parse(Path::new("b.toml"), no_reason)
                .unwrap_err()
                .to_string(),
            "b.toml: s step 1 \"/status\" needs a reason"
        );
        let unknown = "[[expected_difference]]\nscenario = \"s\"\nstep = 1\nfield = \"\"\nreason = \"r\"\nwhy = 1\n";
        assert!(ParityBaseline::parse(Path::new("b.toml"), unknown).is_err());
    }
}
