//! The conformance harness: scenarios as data files, a runner, and reports.
//!
//! A scenario (`scenarios/**/*.toml`) says how the stack is set up, what the MCP client driver asks
//! for, and what must come out. The runner starts a fresh stack per scenario, so scenarios share no
//! state and run concurrently, drives the flow only over HTTP, and turns what happened into checks
//! whose shape follows the MCP conformance suite's `checks.json`.

pub mod app_check;
mod baseline;
mod exec;
pub mod markdown;
pub mod parity;
pub mod record;
mod report;
mod runner;
mod scenario;
pub mod server_check;
pub mod steps;

pub use baseline::{Baseline, BaselineError};
pub use report::{Report, ScenarioResult, ScenarioStatus, render_html, render_junit, render_table};
pub use runner::{RunOptions, RunTarget, run};
pub use scenario::{
    Consent, ConsentDecision, Expectation, Grant, Outcome, Scenario, ScenarioError, Target,
    load_dir, load_embedded, parse_scenario,
};

use serde::Serialize;

/// The status of one check, as the MCP conformance suite spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CheckStatus {
    /// The check held.
    Success,
    /// The check failed.
    Failure,
    /// A should-level check failed.
    Warning,
    /// The check did not run, with the reason in `details`.
    Skipped,
    /// Information only.
    Info,
}

/// One check, in the MCP conformance suite's `checks.json` shape.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// Stable id, `<scenario id>/<check>`.
    pub id: String,
    /// Short name.
    pub name: String,
    /// What is checked.
    pub description: String,
    /// Outcome.
    pub status: CheckStatus,
    /// The specs the check enforces.
    pub spec_references: Vec<String>,
    /// What was observed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

/// An error and its sources, `: `-separated (reqwest's own message alone says little).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}
