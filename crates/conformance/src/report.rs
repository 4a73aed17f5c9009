//! What a run produced: per-scenario results, the summary table and the JSON report.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::{Check, CheckStatus};

/// The outcome of one scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScenarioStatus {
    /// Every check held.
    Passed,
    /// At least one check failed.
    Failed,
    /// Nothing ran on this target.
    Skipped,
}

impl ScenarioStatus {
    /// The word printed in tables.
    pub fn label(self) -> &'static str {
        match self {
            Self::Passed => "PASS",
            Self::Failed => "FAIL",
            Self::Skipped => "SKIP",
        }
    }
}

/// One scenario's result.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    /// The scenario id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// The file it came from.
    pub path: String,
    /// The outcome.
    pub status: ScenarioStatus,
    /// Wall time of the scenario, stack start included.
    pub duration_ms: u128,
    /// Its checks.
    pub checks: Vec<Check>,
}

impl ScenarioResult {
    /// A scenario whose task died: a bug in the harness, reported as a failure.
    pub(crate) fn crashed(message: String) -> Self {
        Self {
            id: "<crashed>".to_owned(),
            title: "a scenario task panicked".to_owned(),
            path: String::new(),
            status: ScenarioStatus::Failed,
            duration_ms: 0,
            checks: vec![Check {
                id: "<crashed>/task".to_owned(),
                name: "task".to_owned(),
                description: "The scenario's task ran to the end".to_owned(),
                status: CheckStatus::Failure,
                spec_references: Vec::new(),
                details: None,
                error_message: Some(message),
            }],
        }
    }
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenarios that passed.
    pub passed: usize,
    /// Scenarios that failed.
    pub failed: usize,
    /// Scenarios skipped on this target.
    pub skipped: usize,
    /// Wall time of the run.
    pub duration_ms: u128,
    /// Every scenario, sorted by id.
    pub scenarios: Vec<ScenarioResult>,
}

impl Report {
    pub(crate) fn new(scenarios: Vec<ScenarioResult>, elapsed: Duration) -> Self {
        let count = |status| {
            scenarios
                .iter()
                .filter(|result| result.status == status)
                .count()
        };
        Self {
            passed: count(ScenarioStatus::Passed),
            failed: count(ScenarioStatus::Failed),
            skipped: count(ScenarioStatus::Skipped),
            duration_ms: elapsed.as_millis(),
            scenarios,
        }
    }

    /// Whether the run should pass a CI gate.
    pub fn succeeded(&self) -> bool {
        self.failed == 0
    }

    /// Every check of every scenario, in the MCP conformance suite's `checks.json` shape.
    pub fn checks(&self) -> Vec<&Check> {
        self.scenarios
            .iter()
            .flat_map(|result| &result.checks)
            .collect()
    }

    /// Writes `report.json` (the whole run) and `checks.json` (the flat check list) into `directory`.
    pub fn write_json(&self, directory: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(directory)?;
        let report = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(directory.join("report.json"), report)?;
        let checks = serde_json::to_vec_pretty(&self.checks()).map_err(std::io::Error::other)?;
        std::fs::write(directory.join("checks.json"), checks)
    }
}

/// The summary table, then one line per failed check.
pub fn render_table(report: &Report) -> String {
    let id_width = report
        .scenarios
        .iter()
        .map(|result| result.id.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let mut out = format!(
        "{:<6} {:<id_width$} {:>7} {:>8}  TITLE\n",
        "STATUS", "SCENARIO", "CHECKS", "TIME"
    );
    for result in &report.scenarios {
        let held = result
            .checks
            .iter()
            .filter(|check| check.status == CheckStatus::Success)
            .count();
        out.push_str(&format!(
            "{:<6} {:<id_width$} {:>7} {:>6}ms  {}\n",
            result.status.label(),
            result.id,
            format!("{held}/{}", result.checks.len()),
            result.duration_ms,
            result.title
        ));
    }
    let failures: Vec<&Check> = report
        .checks()
        .into_iter()
        .filter(|check| check.status == CheckStatus::Failure)
        .collect();
    if !failures.is_empty() {
        out.push_str("\nFailed checks:\n");
        for check in failures {
            out.push_str(&format!(
                "  {}: {}\n    {}\n",
                check.id,
                check.description,
                check.error_message.as_deref().unwrap_or("(no message)")
            ));
        }
    }
    // The count line stands alone so that CI log readers recognise it.
    out.push_str(&format!(
        "\nWall time {:.1}s\n{} passed, {} failed, {} skipped\n",
        report.duration_ms as f64 / 1000.0,
        report.passed,
        report.failed,
        report.skipped,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: &str, status: CheckStatus) -> ScenarioResult {
        ScenarioResult {
            id: id.to_owned(),
            title: format!("{id} title"),
            path: format!("scenarios/{id}.toml"),
            status: if status == CheckStatus::Failure {
                ScenarioStatus::Failed
            } else {
                ScenarioStatus::Passed
            },
            duration_ms: 12,
            checks: vec![Check {
                id: format!("{id}/flow-completes"),
                name: "flow-completes".to_owned(),
                description: "The flow completes".to_owned(),
                status,
                spec_references: vec!["RFC7636-4.6".to_owned()],
                details: None,
                error_message: (status == CheckStatus::Failure).then(|| "boom".to_owned()),
            }],
        }
    }

    #[test]
    fn a_failed_check_fails_the_run_and_is_listed() {
        let report = Report::new(
            vec![
                result("good", CheckStatus::Success),
                result("bad", CheckStatus::Failure),
            ],
            Duration::from_millis(1500),
        );
        assert!(!report.succeeded());
        assert_eq!((report.passed, report.failed, report.skipped), (1, 1, 0));
        let table = render_table(&report);
        assert!(table.contains("FAIL   bad"), "{table}");
        assert!(
            table.contains("  bad/flow-completes: The flow completes\n    boom\n"),
            "{table}"
        );
        assert!(
            table.ends_with("\nWall time 1.5s\n1 passed, 1 failed, 0 skipped\n"),
            "{table}"
        );
    }

    #[test]
    fn checks_serialise_in_the_conformance_suite_shape() {
        let check = &result("good", CheckStatus::Success).checks[0];
        let json = serde_json::to_value(check).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "id": "good/flow-completes",
                "name": "flow-completes",
                "description": "The flow completes",
                "status": "SUCCESS",
                "specReferences": ["RFC7636-4.6"]
            })
        );
    }
}
