//! The conformance runner over the real stack: the shipped scenarios pass, and a wrong
//! expectation fails the run (so the gate can fail).

use std::path::Path;

use conformance::{RunOptions, RunTarget};
use testbed_stack::Fixtures;

fn scenarios_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../scenarios"))
}

fn options() -> RunOptions {
    RunOptions {
        fixtures: Fixtures::embedded().unwrap(),
        filter: None,
        concurrency: 2,
        target: RunTarget::Embedded,
        browser: false,
        record: false,
        probe: false,
    }
}

#[tokio::test]
async fn every_shipped_scenario_passes_against_the_embedded_stack() {
    let scenarios = conformance::load_dir(scenarios_dir()).expect("the shipped scenarios parse");
    assert!(scenarios.iter().any(|scenario| scenario.id == "happy-path"));

    let report = conformance::run(scenarios, &options()).await;

    assert!(report.succeeded(), "{}", conformance::render_table(&report));
    assert_eq!(report.failed, 0);
    assert!(report.passed >= 1);
    // The whole suite's outcome, check by check: a scenario or check that appears, disappears or
    // changes status shows up in review. Times, ports and ids vary, so only ids and statuses go in.
    let outcome: String = report
        .scenarios
        .iter()
        .map(|result| {
            let checks: Vec<String> = result
                .checks
                .iter()
                .map(|check| format!("  {} {:?}", check.name, check.status))
                .collect();
            format!(
                "{} {}\n{}\n",
                result.status.label(),
                result.id,
                checks.join("\n")
            )
        })
        .collect();
    insta::assert_snapshot!("conformance_report", outcome);
}

#[tokio::test]
async fn a_scenario_expecting_another_identity_fails_the_run() {
    let path = scenarios_dir().join("happy-path.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("identity = \"ada\"", "identity = \"grace\"");
    let scenario = conformance::parse_scenario(&path, &text).unwrap();

    let report = conformance::run(vec![scenario], &options()).await;

    assert!(!report.succeeded());
    let failed: Vec<&str> = report
        .checks()
        .into_iter()
        .filter(|check| check.status == conformance::CheckStatus::Failure)
        .map(|check| check.id.as_str())
        .collect();
    assert_eq!(failed, ["happy-path/identity"]);
}
