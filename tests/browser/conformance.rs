//! The conformance runner with the browser user agent (`--browser`): flow scenarios played by a
//! person in Chromium, who signs in through Your App's form and decides on the consent page.

use std::path::Path;

use anyhow::Context;
use conformance::{RunOptions, RunTarget, Scenario, ScenarioResult, ScenarioStatus};
use serde_json::Value;
use testbed_stack::Fixtures;

use crate::harness::browser_installed;

/// Shipped flow scenarios: the happy path, a claims persona, two of Your App's mistakes (one
/// that stops on Your App's own error page, one the client hears about), and the two only a
/// person can play (approve and deny on the consent page).
const SHIPPED: &[&str] = &[
    "happy-path",
    "minimal-persona",
    "missing-email-stops-at-your-app",
    "login-failed-reaches-the-client-as-access-denied",
    "person-approves-on-the-consent-page",
    "person-denies-on-the-consent-page",
];

fn scenarios() -> anyhow::Result<Vec<Scenario>> {
    let folder = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../scenarios"));
    let scenarios: Vec<Scenario> = conformance::load_dir(folder)?
        .into_iter()
        .filter(|scenario| SHIPPED.contains(&scenario.id.as_str()))
        .collect();
    anyhow::ensure!(
        scenarios.len() == SHIPPED.len(),
        "a shipped scenario is missing"
    );
    Ok(scenarios)
}

fn options(browser: bool) -> anyhow::Result<RunOptions> {
    Ok(RunOptions {
        fixtures: Fixtures::embedded()?,
        filter: None,
        concurrency: 2,
        target: RunTarget::Embedded,
        browser,
        record: false,
        probe: false,
    })
}

/// The check that says how the flow ended (`flow-completes` or `flow-fails`).
fn flow_check(result: &ScenarioResult) -> anyhow::Result<&conformance::Check> {
    result
        .checks
        .iter()
        .find(|check| check.name == "flow-completes" || check.name == "flow-fails")
        .with_context(|| format!("{} has no flow check", result.id))
}

/// The browser's hops of a scenario, one line each.
fn browser_path(result: &ScenarioResult) -> anyhow::Result<String> {
    let details = flow_check(result)?
        .details
        .as_ref()
        .with_context(|| format!("{}: the flow check has no details", result.id))?;
    let hops = details["browser_path"]
        .as_array()
        .with_context(|| format!("{}: no browser_path in {details}", result.id))?;
    Ok(hops
        .iter()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join("\n"))
}

/// The browser's part of each hop: `(browser: …)` at the end of its line.
fn what_the_browser_did(path: &str) -> Vec<&str> {
    path.lines()
        .filter_map(|line| line.rsplit_once("(browser: "))
        .map(|(_, did)| did.trim_end_matches(')'))
        .collect()
}

#[tokio::test]
async fn the_runner_with_the_browser_signs_each_persona_in_through_the_form_and_clicks_consent()
-> anyhow::Result<()> {
    if !browser_installed() {
        return Ok(());
    }
    let report = conformance::run(scenarios()?, &options(true)?).await;

    let table = conformance::render_table(&report);
    let result = |id: &str| {
        report
            .scenarios
            .iter()
            .find(|result| result.id == id)
            .with_context(|| format!("no result for {id}"))
    };
    for scenario in report.scenarios.iter() {
        assert_eq!(
            scenario.status,
            ScenarioStatus::Passed,
            "{}:\n{table}",
            scenario.id
        );
    }
    assert_eq!(report.scenarios.len(), SHIPPED.len(), "{table}");

    // Every persona was typed into Your App's form, and the consent page was clicked.
    let happy = browser_path(result("happy-path")?)?;
    assert!(happy.contains("GET http://127.0.0.1:"), "{happy}");
    assert!(happy.contains("browser: login page"), "{happy}");
    assert!(
        happy.contains("browser: redirect URI, after signing in as ada"),
        "{happy}"
    );
    let minimal = browser_path(result("minimal-persona")?)?;
    assert!(minimal.contains("after signing in as linus"), "{minimal}");
    let approved = browser_path(result("person-approves-on-the-consent-page")?)?;
    assert!(
        approved.contains("browser: consent page, after signing in as grace"),
        "{approved}"
    );
    assert!(
        approved.contains("browser: redirect URI, after clicking approve"),
        "{approved}"
    );
    let denied = browser_path(result("person-denies-on-the-consent-page")?)?;
    assert_eq!(
        what_the_browser_did(&denied),
        [
            "opened the authorization URL",
            "login page",
            "consent page, after signing in as ada",
            "redirect URI, after clicking deny",
        ],
        "{denied}"
    );

    // Your App's error page is quoted as a person reads it, with the status the browser saw.
    let missing_email = flow_check(result("missing-email-stops-at-your-app")?)?;
    let message = missing_email
        .details
        .as_ref()
        .and_then(|details| details["message"].as_str())
        .context("the flow-fails check has a message")?;
    assert!(
        message.starts_with("authorization redirect chain broken: the browser landed on an error page: 502 Bad Gateway at http://127.0.0.1:"),
        "{message}"
    );
    assert!(
        message.contains("/login: Your App · the reference login service Sign-in failed"),
        "{message}"
    );
    assert!(message.contains("INVALID_ARGUMENT"), "{message}");
    // The form's own answer: Your App's POST /login answered 502 itself.
    let stopped = browser_path(result("missing-email-stops-at-your-app")?)?;
    let last = stopped.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("[authorization] POST http://127.0.0.1:"),
        "{stopped}"
    );
    assert!(
        last.ends_with("/login -> 502 (browser: error page, after signing in as ada)"),
        "{stopped}"
    );
    Ok(())
}

#[tokio::test]
async fn without_the_browser_a_flow_that_needs_a_person_is_skipped_with_the_reason()
-> anyhow::Result<()> {
    let scenario = scenarios()?
        .into_iter()
        .find(|scenario| scenario.id == "person-approves-on-the-consent-page")
        .context("the shipped scenario")?;

    let report = conformance::run(vec![scenario], &options(false)?).await;

    assert_eq!(report.skipped, 1);
    let check = &report.scenarios[0].checks[0];
    assert_eq!(check.status, conformance::CheckStatus::Skipped);
    assert_eq!(
        check.error_message.as_deref(),
        Some(
            "needs a person to decide on the consent page, which the HTTP user agent cannot do; runs with --browser"
        )
    );
    Ok(())
}
