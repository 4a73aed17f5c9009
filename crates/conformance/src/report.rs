//! What a run produced: per-scenario results, the expected-failures baseline, the summary table,
//! and the report files (JSON, `checks.json`, JUnit XML, HTML).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
// One escaping for the HTML report and JUnit XML: the five characters both escape, with
// references XML knows too.
use testbed_web::escape;

use crate::baseline::Baseline;
use crate::record::Recording;
use crate::{Check, CheckStatus};

/// The outcome of one scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScenarioStatus {
    /// Every check held.
    Passed,
    /// At least one check failed.
    Failed,
    /// Nothing ran on this target.
    Skipped,
    /// It failed, and the baseline says it is expected to: the run still passes.
    ExpectedFailure,
    /// It passed, but the baseline still lists it as failing: the baseline is stale, the run fails.
    StaleBaseline,
    /// A probe that failed on a real environment (`--probe`): a fidelity finding, the emulator's
    /// decided or inferred behaviour differs from Scalekit's. It never fails the run.
    Info,
}

impl ScenarioStatus {
    /// The word printed in tables.
    pub fn label(self) -> &'static str {
        match self {
            Self::Passed => "PASS",
            Self::Failed => "FAIL",
            Self::Skipped => "SKIP",
            Self::ExpectedFailure => "XFAIL",
            Self::StaleBaseline => "STALE",
            Self::Info => "INFO",
        }
    }

    /// Whether this status fails the run.
    pub fn fails_the_run(self) -> bool {
        matches!(self, Self::Failed | Self::StaleBaseline)
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
    /// Why the baseline lists it, for expected failures and stale entries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_reason: Option<String>,
    /// Wall time of the scenario, stack start included.
    pub duration_ms: u128,
    /// Its checks.
    pub checks: Vec<Check>,
}

impl ScenarioResult {
    /// A probe's failure on a real environment is a fidelity finding: the scenario becomes INFO
    /// and each failed check an INFO check that keeps its message.
    pub(crate) fn report_failures_as_findings(&mut self) {
        if self.status != ScenarioStatus::Failed {
            return;
        }
        self.status = ScenarioStatus::Info;
        for check in &mut self.checks {
            if check.status == CheckStatus::Failure {
                check.status = CheckStatus::Info;
            }
        }
    }

    /// A scenario whose task died: a bug in the harness, reported as a failure.
    pub(crate) fn crashed(message: String) -> Self {
        Self {
            id: "<crashed>".to_owned(),
            title: "a scenario task panicked".to_owned(),
            path: String::new(),
            status: ScenarioStatus::Failed,
            baseline_reason: None,
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
    /// Scenarios that fail the run: failures not in the baseline, and stale baseline entries.
    pub failed: usize,
    /// Scenarios skipped on this target.
    pub skipped: usize,
    /// Failures the baseline expects.
    pub expected_failures: usize,
    /// Fidelity findings: probes that failed on a real environment (INFO).
    pub findings: usize,
    /// Baseline entries that name no scenario of the suite (the scenario was renamed or removed).
    pub unknown_baseline_entries: Vec<String>,
    /// Wall time of the run.
    pub duration_ms: u128,
    /// Every scenario, sorted by id.
    pub scenarios: Vec<ScenarioResult>,
    /// With `RunOptions::record`, each scenario's recording (skipped ones have none), by id.
    #[serde(skip)]
    pub recordings: Vec<Recording>,
}

impl Report {
    pub(crate) fn new(scenarios: Vec<ScenarioResult>, elapsed: Duration) -> Self {
        let mut report = Self {
            passed: 0,
            failed: 0,
            skipped: 0,
            expected_failures: 0,
            findings: 0,
            unknown_baseline_entries: Vec::new(),
            duration_ms: elapsed.as_millis(),
            scenarios,
            recordings: Vec::new(),
        };
        report.count();
        report
    }

    fn count(&mut self) {
        let count = |status| {
            self.scenarios
                .iter()
                .filter(|result| result.status == status)
                .count()
        };
        self.passed = count(ScenarioStatus::Passed);
        self.skipped = count(ScenarioStatus::Skipped);
        self.expected_failures = count(ScenarioStatus::ExpectedFailure);
        self.findings = count(ScenarioStatus::Info);
        self.failed = self
            .scenarios
            .iter()
            .filter(|result| result.status.fails_the_run())
            .count()
            + self.unknown_baseline_entries.len();
    }

    /// Applies an expected-failures baseline: a listed failure no longer fails the run, a listed
    /// scenario that passes does (stale baseline), and an entry naming no scenario of the run does
    /// too.
    pub fn apply_baseline(&mut self, baseline: &Baseline) {
        for result in &mut self.scenarios {
            let Some(reason) = baseline.reason(&result.id) else {
                continue;
            };
            result.baseline_reason = Some(reason.to_owned());
            result.status = match result.status {
                ScenarioStatus::Failed => ScenarioStatus::ExpectedFailure,
                ScenarioStatus::Passed => ScenarioStatus::StaleBaseline,
                other => other,
            };
        }
        self.unknown_baseline_entries = baseline
            .ids()
            .filter(|id| !self.scenarios.iter().any(|result| result.id == *id))
            .map(str::to_owned)
            .collect();
        self.count();
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

    /// Writes `report.json` (the whole run), `checks.json` (the flat check list), `junit.xml` and
    /// `report.html` into `directory`.
    pub fn write_files(&self, directory: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(directory)?;
        let report = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(directory.join("report.json"), report)?;
        let checks = serde_json::to_vec_pretty(&self.checks()).map_err(std::io::Error::other)?;
        std::fs::write(directory.join("checks.json"), checks)?;
        std::fs::write(directory.join("junit.xml"), render_junit(self))?;
        std::fs::write(directory.join("report.html"), render_html(self))
    }
}

/// The summary table, then one line per failed check, then the counts.
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
        let _ = writeln!(
            out,
            "{:<6} {:<id_width$} {:>7} {:>6}ms  {}",
            result.status.label(),
            result.id,
            format!("{held}/{}", result.checks.len()),
            result.duration_ms,
            result.title
        );
    }
    let failing: Vec<&ScenarioResult> = report
        .scenarios
        .iter()
        .filter(|result| result.status == ScenarioStatus::Failed)
        .collect();
    if !failing.is_empty() {
        out.push_str("\nFailed checks:\n");
        for check in failing.iter().flat_map(|result| &result.checks) {
            if check.status == CheckStatus::Failure {
                let _ = write!(
                    out,
                    "  {}: {}\n    {}\n",
                    check.id,
                    check.description,
                    check.error_message.as_deref().unwrap_or("(no message)")
                );
            }
        }
    }
    let findings: Vec<&ScenarioResult> = report
        .scenarios
        .iter()
        .filter(|result| result.status == ScenarioStatus::Info)
        .collect();
    if !findings.is_empty() {
        out.push_str(
            "\nFidelity findings (probes whose answer differs from the emulator's; correct docs/fidelity.md):\n",
        );
        for check in findings.iter().flat_map(|result| &result.checks) {
            if check.status == CheckStatus::Info {
                let _ = write!(
                    out,
                    "  {}: {}\n    {}\n",
                    check.id,
                    check.description,
                    check.error_message.as_deref().unwrap_or("(no message)")
                );
            }
        }
    }
    let stale: Vec<&ScenarioResult> = report
        .scenarios
        .iter()
        .filter(|result| result.status == ScenarioStatus::StaleBaseline)
        .collect();
    if !stale.is_empty() || !report.unknown_baseline_entries.is_empty() {
        out.push_str("\nStale baseline entries (remove them from the baseline file):\n");
        for result in stale {
            let _ = writeln!(out, "  {}: passes now", result.id);
        }
        for id in &report.unknown_baseline_entries {
            let _ = writeln!(out, "  {id}: no such scenario");
        }
    }
    let findings = match report.findings {
        0 => String::new(),
        1 => ", 1 fidelity finding".to_owned(),
        count => format!(", {count} fidelity findings"),
    };
    // The count line stands alone so that CI log readers recognise it.
    let _ = write!(
        out,
        "\nWall time {:.1}s, {} expected failures{findings}\n{} passed, {} failed, {} skipped\n",
        report.duration_ms as f64 / 1000.0,
        report.expected_failures,
        report.passed,
        report.failed,
        report.skipped,
    );
    out
}

/// JUnit XML: one test suite, one test case per check (class name = scenario id).
pub fn render_junit(report: &Report) -> String {
    let checks = report.checks();
    let failures = checks
        .iter()
        .filter(|check| check.status == CheckStatus::Failure)
        .count();
    let skipped = checks
        .iter()
        .filter(|check| check.status == CheckStatus::Skipped)
        .count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"testbed conformance\" tests=\"{}\" failures=\"{failures}\" time=\"{:.3}\">",
        checks.len(),
        report.duration_ms as f64 / 1000.0
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"conformance\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{:.3}\">",
        checks.len(),
        report.duration_ms as f64 / 1000.0
    );
    for result in &report.scenarios {
        for check in &result.checks {
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"{}\">",
                escape(&result.id),
                escape(&check.name)
            );
            match check.status {
                CheckStatus::Failure if result.status == ScenarioStatus::ExpectedFailure => {
                    let _ = write!(
                        out,
                        "<skipped message=\"expected failure: {}\"/>",
                        escape(result.baseline_reason.as_deref().unwrap_or_default())
                    );
                }
                CheckStatus::Failure => {
                    let message = check.error_message.as_deref().unwrap_or("failed");
                    let _ = write!(
                        out,
                        "<failure message=\"{}\">{}</failure>",
                        escape(message),
                        escape(&check.description)
                    );
                }
                CheckStatus::Skipped => {
                    let message = check.error_message.as_deref().unwrap_or("skipped");
                    let _ = write!(out, "<skipped message=\"{}\"/>", escape(message));
                }
                CheckStatus::Success | CheckStatus::Warning | CheckStatus::Info => {}
            }
            out.push_str("</testcase>\n");
        }
        if result.status == ScenarioStatus::StaleBaseline {
            let _ = writeln!(
                out,
                "    <testcase classname=\"{}\" name=\"baseline\"><failure message=\"stale baseline entry: the scenario passes now\"/></testcase>",
                escape(&result.id)
            );
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// A self-contained HTML page: the summary and, per scenario, its checks.
pub fn render_html(report: &Report) -> String {
    let mut out = String::from(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>testbed conformance report</title>\n<style>\n\
         body{font-family:system-ui,sans-serif;margin:2rem;color:#1b1b1b}\n\
         table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}\n\
         .PASS{color:#1a7f37}.FAIL,.STALE{color:#cf222e;font-weight:bold}.SKIP,.XFAIL{color:#9a6700}.INFO{color:#0969da}\n\
         details{margin:.2rem 0}code{font-size:.9em}\n</style>\n</head>\n<body>\n",
    );
    let _ = writeln!(
        out,
        "<h1>testbed conformance report</h1>\n<p>{} passed, {} failed, {} skipped, {} expected failures, {} fidelity findings, in {:.1}s.</p>",
        report.passed,
        report.failed,
        report.skipped,
        report.expected_failures,
        report.findings,
        report.duration_ms as f64 / 1000.0
    );
    out.push_str("<table>\n<thead><tr><th>Status</th><th>Scenario</th><th>Checks</th></tr></thead>\n<tbody>\n");
    for result in &report.scenarios {
        let label = result.status.label();
        let _ = write!(
            out,
            "<tr><td class=\"{label}\">{label}</td><td><strong>{}</strong><br>{}<br><code>{}</code></td><td>",
            escape(&result.id),
            escape(&result.title),
            escape(&result.path)
        );
        for check in &result.checks {
            let status = format!("{:?}", check.status).to_uppercase();
            let _ = write!(
                out,
                "<details><summary>{} <code>{}</code>: {}</summary>",
                escape(&status),
                escape(&check.name),
                escape(&check.description)
            );
            if let Some(message) = &check.error_message {
                let _ = write!(out, "<p>{}</p>", escape(message));
            }
            if let Some(details) = &check.details {
                let _ = write!(out, "<pre>{}</pre>", escape(&details.to_string()));
            }
            let _ = write!(
                out,
                "<p>Spec: {}</p></details>",
                escape(&check.spec_references.join(", "))
            );
        }
        out.push_str("</td></tr>\n");
    }
    out.push_str("</tbody>\n</table>\n</body>\n</html>\n");
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
            baseline_reason: None,
            duration_ms: 12,
            checks: vec![Check {
                id: format!("{id}/flow-completes"),
                name: "flow-completes".to_owned(),
                description: "The flow completes".to_owned(),
                status,
                spec_references: vec!["RFC7636-4.6".to_owned()],
                details: None,
                error_message: (status == CheckStatus::Failure).then(|| "boom <&>".to_owned()),
            }],
        }
    }

    fn baseline(text: &str) -> Baseline {
        Baseline::parse(Path::new("baseline.toml"), text).unwrap()
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
            table.contains("  bad/flow-completes: The flow completes\n    boom <&>\n"),
            "{table}"
        );
        assert!(
            table.ends_with(
                "\nWall time 1.5s, 0 expected failures\n1 passed, 1 failed, 0 skipped\n"
            ),
            "{table}"
        );
    }

    #[test]
    fn a_failure_listed_in_the_baseline_does_not_fail_the_run() {
        let mut report = Report::new(
            vec![
                result("good", CheckStatus::Success),
                result("bad", CheckStatus::Failure),
            ],
            Duration::ZERO,
        );
        report.apply_baseline(&baseline(
            "[[expected_failure]]\nid = \"bad\"\nreason = \"known gap\"\n",
        ));
        assert!(report.succeeded());
        assert_eq!(
            (report.passed, report.failed, report.expected_failures),
            (1, 0, 1)
        );
        assert_eq!(report.scenarios[1].status, ScenarioStatus::ExpectedFailure);
    }

    #[test]
    fn a_baseline_entry_that_passes_now_is_stale_and_fails_the_run() {
        let mut report = Report::new(vec![result("good", CheckStatus::Success)], Duration::ZERO);
        report.apply_baseline(&baseline(
            "[[expected_failure]]\nid = \"good\"\nreason = \"was broken\"\n",
        ));
        assert!(!report.succeeded());
        assert_eq!(report.scenarios[0].status, ScenarioStatus::StaleBaseline);
        assert!(render_table(&report).contains(
            "Stale baseline entries (remove them from the baseline file):\n  good: passes now\n"
        ));
    }

    #[test]
    fn a_baseline_entry_naming_no_scenario_fails_the_run() {
        let mut report = Report::new(vec![result("good", CheckStatus::Success)], Duration::ZERO);
        report.apply_baseline(&baseline(
            "[[expected_failure]]\nid = \"renamed\"\nreason = \"r\"\n",
        ));
        assert!(!report.succeeded());
        assert_eq!(report.unknown_baseline_entries, ["renamed"]);
        assert!(render_table(&report).contains("  renamed: no such scenario\n"));
    }

    #[test]
    fn a_failed_probe_is_a_finding_that_never_fails_the_run() {
        let mut probe = result("consent-is-remembered", CheckStatus::Failure);
        probe.report_failures_as_findings();
        let mut passing = result("good", CheckStatus::Success);
        passing.report_failures_as_findings();
        assert_eq!(passing.status, ScenarioStatus::Passed);
        let report = Report::new(vec![passing, probe], Duration::from_millis(1500));
        assert!(report.succeeded());
        assert_eq!((report.passed, report.failed, report.findings), (1, 0, 1));
        assert_eq!(report.scenarios[1].status, ScenarioStatus::Info);
        assert_eq!(report.scenarios[1].checks[0].status, CheckStatus::Info);
        let table = render_table(&report);
        assert!(table.contains("INFO   consent-is-remembered"), "{table}");
        assert!(
            table.contains(
                "Fidelity findings (probes whose answer differs from the emulator's; correct docs/fidelity.md):\n  consent-is-remembered/flow-completes: The flow completes\n    boom <&>\n"
            ),
            "{table}"
        );
        assert!(
            table.ends_with("\nWall time 1.5s, 0 expected failures, 1 fidelity finding\n1 passed, 0 failed, 0 skipped\n"),
            "{table}"
        );
        let xml = render_junit(&report);
        assert!(!xml.contains("<failure"), "{xml}");
    }

    #[test]
    fn junit_lists_every_check_with_escaped_failures() {
        let report = Report::new(
            vec![
                result("good", CheckStatus::Success),
                result("bad", CheckStatus::Failure),
            ],
            Duration::ZERO,
        );
        let xml = render_junit(&report);
        assert!(
            xml.contains(
                "<testsuite name=\"conformance\" tests=\"2\" failures=\"1\" skipped=\"0\""
            ),
            "{xml}"
        );
        assert!(
            xml.contains("<testcase classname=\"good\" name=\"flow-completes\"></testcase>"),
            "{xml}"
        );
        assert!(
            xml.contains("<failure message=\"boom &lt;&amp;&gt;\">The flow completes</failure>"),
            "{xml}"
        );
    }

    #[test]
    fn html_is_self_contained_and_escaped() {
        let report = Report::new(vec![result("bad", CheckStatus::Failure)], Duration::ZERO);
        let html = render_html(&report);
        assert!(html.starts_with("<!doctype html>"));
        assert!(html.contains("<p>boom &lt;&amp;&gt;</p>"), "{html}");
        assert!(
            !html.contains("<script"),
            "no scripts, no external resources"
        );
        assert!(!html.contains("http"), "no external resources");
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
