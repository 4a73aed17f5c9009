//! Runs scenarios: a fresh stack each, the driver over HTTP, and checks from what came out.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use mcp_driver::{DriverConfig, FlowReport};
use serde_json::{Value, json};
use testbed_stack::{ConsentMode, Fixtures, Stack, StackConfig};
use tokio::task::JoinSet;
use url::Url;

use crate::exec::StepRunner;
use crate::report::{Report, ScenarioResult, ScenarioStatus};
use crate::scenario::{Consent, Expectation, Scenario, Target};
use crate::{Check, CheckStatus};

/// The persona whose claims `post-user` steps send when a scenario names none.
const DEFAULT_PERSONA: &str = "ada";

/// The redirect URI the driver registers; nothing listens there, the user agent stops at it.
const DRIVER_REDIRECT_URI: &str = "http://127.0.0.1:33418/callback";

/// How a run goes.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The fixtures each scenario's stack starts from.
    pub fixtures: Fixtures,
    /// Only scenarios whose id contains this run.
    pub filter: Option<String>,
    /// How many scenarios run at once.
    pub concurrency: usize,
    /// Where the run goes; only [`Target::Embedded`] exists so far.
    pub target: Target,
}

/// Runs every scenario that matches the filter and targets, `concurrency` at a time, printing a
/// line as each one finishes.
pub async fn run(scenarios: Vec<Scenario>, options: &RunOptions) -> Report {
    let started = Instant::now();
    let selected: Vec<Scenario> = scenarios
        .into_iter()
        .filter(|scenario| {
            options
                .filter
                .as_ref()
                .is_none_or(|filter| scenario.id.contains(filter.as_str()))
        })
        .collect();
    let total = selected.len();
    let mut pending = selected.into_iter();
    let mut running = JoinSet::new();
    let mut results = Vec::with_capacity(total);
    let progress = Progress::new();
    loop {
        while running.len() < options.concurrency.max(1) {
            let Some(scenario) = pending.next() else {
                break;
            };
            let fixtures = options.fixtures.clone();
            let target = options.target;
            running.spawn(async move { run_scenario(scenario, fixtures, target).await });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let result = match joined {
            Ok(result) => result,
            Err(join_error) => ScenarioResult::crashed(join_error.to_string()),
        };
        progress.finished(&result, results.len() + 1, total);
        results.push(result);
    }
    results.sort_by(|left, right| left.id.cmp(&right.id));
    Report::new(results, started.elapsed())
}

async fn run_scenario(scenario: Scenario, fixtures: Fixtures, target: Target) -> ScenarioResult {
    let started = Instant::now();
    let mut checks = Checks::new(&scenario);
    if !scenario.targets.contains(&target) {
        checks.push(
            "target",
            "The scenario runs on this target",
            CheckStatus::Skipped,
            None,
            Some(format!(
                "the scenario does not run on the {target:?} target"
            )),
        );
        return checks.finish(&scenario, started.elapsed());
    }
    run_embedded(&scenario, fixtures, &mut checks).await;
    checks.finish(&scenario, started.elapsed())
}

async fn run_embedded(scenario: &Scenario, fixtures: Fixtures, checks: &mut Checks) {
    let mut config = StackConfig::ephemeral(fixtures, scenario.stack.persona.as_deref());
    config.consent = scenario.stack.consent.map(|consent| match consent {
        Consent::Auto => ConsentMode::Auto,
        Consent::Prompt => ConsentMode::Prompt,
    });
    config.manual_clock = scenario.moves_the_clock();
    let stack = match Stack::spawn(config).await {
        Ok(stack) => stack,
        Err(error) => {
            checks.fail("stack-starts", "The stack starts", format!("{error}"));
            return;
        }
    };
    match &scenario.expect {
        Some(expect) => run_flow(scenario, expect, &stack, checks).await,
        None => run_steps(scenario, &stack, checks).await,
    }
}

/// A step scenario: each step is one check; the first failing step ends the scenario.
async fn run_steps(scenario: &Scenario, stack: &Stack, checks: &mut Checks) {
    let persona_name = scenario.stack.persona.as_deref().unwrap_or(DEFAULT_PERSONA);
    let Some(persona) = stack.fixtures.persona(persona_name) else {
        checks.fail(
            "persona",
            "The scenario's persona exists",
            format!("no persona {persona_name:?}"),
        );
        return;
    };
    let claims = match serde_json::to_value(&persona.claims) {
        Ok(claims) => claims,
        Err(error) => {
            checks.fail(
                "persona",
                "The persona's claims serialise",
                error.to_string(),
            );
            return;
        }
    };
    let mut runner = match StepRunner::new(stack, claims) {
        Ok(runner) => runner,
        Err(message) => {
            checks.fail("steps", "The step runner starts", message);
            return;
        }
    };
    let total = scenario.steps.len();
    for (index, step) in scenario.steps.iter().enumerate() {
        let id = format!("step-{:02}-{}", index + 1, step.action.name());
        let description = step
            .note
            .clone()
            .unwrap_or_else(|| format!("Step {} of {total}: {}", index + 1, step.action.name()));
        let outcome = match runner.run(step).await {
            Ok(answer) => runner
                .check(&answer, &step.expect)
                .map(|problems| (answer.status, problems)),
            Err(message) => Err(message),
        };
        match outcome {
            Ok((status, problems)) if problems.is_empty() => {
                checks.push(
                    &id,
                    &description,
                    CheckStatus::Success,
                    Some(json!({ "status": status })),
                    None,
                );
            }
            Ok((status, problems)) => {
                checks.push(
                    &id,
                    &description,
                    CheckStatus::Failure,
                    Some(json!({ "status": status })),
                    Some(problems.join("; ")),
                );
                return;
            }
            Err(message) => {
                checks.fail(&id, &description, message);
                return;
            }
        }
    }
}

/// A flow scenario: the driver runs the whole flow, then the expectations are checked.
async fn run_flow(scenario: &Scenario, expect: &Expectation, stack: &Stack, checks: &mut Checks) {
    let driver_config = DriverConfig {
        mcp_url: stack.mcp_url.clone(),
        redirect_uri: Url::parse(DRIVER_REDIRECT_URI).expect("a constant URL"),
        client_name: "testbed conformance".to_owned(),
        extra_scopes: scenario.driver.extra_scopes.clone(),
        timeout: Duration::from_secs(10),
    };
    let report = match mcp_driver::run_flow(&driver_config).await {
        Ok(report) => {
            checks.pass(
                "flow-completes",
                "The MCP client completes the OAuth flow and calls the MCP server",
                Some(json!({ "hops": report.hops.len(), "client_id": report.client_id })),
            );
            report
        }
        Err(error) => {
            checks.fail(
                "flow-completes",
                "The MCP client completes the OAuth flow and calls the MCP server",
                format!("{error}"),
            );
            return;
        }
    };
    check_expectations(expect, stack, &driver_config, &report, checks).await;
}

async fn check_expectations(
    expect: &Expectation,
    stack: &Stack,
    driver_config: &DriverConfig,
    report: &FlowReport,
    checks: &mut Checks,
) {
    if let Some(persona_name) = &expect.identity {
        let name = "The MCP server sees the persona Your App signed in";
        match stack.fixtures.persona(persona_name) {
            None => checks.fail(
                "identity",
                name,
                format!("the fixtures have no persona {persona_name:?}"),
            ),
            Some(persona) => {
                let email = report.whoami.get("email").and_then(Value::as_str);
                let external_sub = report.whoami.get("xuid").and_then(Value::as_str);
                let subject = report
                    .whoami
                    .get("sub")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let details = json!({ "email": email, "xuid": external_sub, "sub": subject });
                if email == persona.claims.email.as_deref()
                    && external_sub == persona.claims.sub.as_deref()
                    && subject.starts_with("usr_")
                {
                    checks.pass("identity", name, Some(details));
                } else {
                    checks.fail_with(
                        "identity",
                        name,
                        details,
                        format!(
                            "expected email {:?}, xuid {:?} and a usr_ subject",
                            persona.claims.email, persona.claims.sub
                        ),
                    );
                }
            }
        }
    }

    let audience_name = "The access token's audience names the Server URL and the resource id";
    let resource = stack.fixtures.environment.resources.first();
    let audience = report
        .access_token_claims
        .get("aud")
        .cloned()
        .unwrap_or(Value::Null);
    let audience_strings: Vec<&str> = audience
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    match resource {
        Some(resource)
            if audience_strings == [resource.server_url.as_str(), resource.id.as_str()] =>
        {
            checks.pass("audience", audience_name, Some(audience));
        }
        _ => checks.fail_with(
            "audience",
            audience_name,
            audience,
            "expected [Server URL, res_…]".to_owned(),
        ),
    }

    if let Some(expected) = &expect.granted_scopes {
        let mut expected_sorted = expected.clone();
        expected_sorted.sort();
        let mut granted = report.granted_scopes.clone();
        granted.sort();
        let name = "The granted scopes are exactly those expected";
        if granted == expected_sorted {
            checks.pass("granted-scopes", name, Some(json!(granted)));
        } else {
            checks.fail_with(
                "granted-scopes",
                name,
                json!(granted),
                format!("expected {expected_sorted:?}"),
            );
        }
    }

    if let Some(expected) = expect.refresh_token {
        let issued = report.tokens.refresh_token.is_some();
        let name = "A refresh token is issued exactly when offline_access is granted";
        if issued == expected {
            checks.pass("refresh-token-issued", name, Some(json!(issued)));
        } else {
            checks.fail(
                "refresh-token-issued",
                name,
                format!("expected {expected}, got {issued}"),
            );
        }
    }

    if let Some(expected) = expect.id_token {
        let verified = report.id_token_claims.is_some();
        let name = "A verified ID token is issued exactly when openid is granted";
        if verified == expected {
            checks.pass("id-token", name, report.id_token_claims.clone());
        } else {
            checks.fail(
                "id-token",
                name,
                format!("expected {expected}, got {verified}"),
            );
        }
    }

    if expect.refresh_rotates {
        check_refresh_rotation(driver_config, report, checks).await;
    }
}

async fn check_refresh_rotation(
    driver_config: &DriverConfig,
    report: &FlowReport,
    checks: &mut Checks,
) {
    let name = "Refreshing rotates the refresh token and the old one is refused with invalid_grant";
    let rotated = match mcp_driver::refresh(driver_config, report).await {
        Ok(tokens) => tokens,
        Err(error) => {
            checks.fail(
                "refresh-rotates",
                name,
                format!("the first refresh failed: {error}"),
            );
            return;
        }
    };
    let (Some(old), Some(new)) = (&report.tokens.refresh_token, &rotated.refresh_token) else {
        checks.fail(
            "refresh-rotates",
            name,
            "the refresh response carried no refresh token".to_owned(),
        );
        return;
    };
    if old.expose() == new.expose() {
        checks.fail(
            "refresh-rotates",
            name,
            "the refresh token did not change".to_owned(),
        );
        return;
    }
    match mcp_driver::refresh(driver_config, report).await {
        Err(mcp_driver::DriverError::TokenEndpoint { status, error, .. })
            if error == "invalid_grant" =>
        {
            checks.pass(
                "refresh-rotates",
                name,
                Some(json!({ "reuse_status": status, "reuse_error": error })),
            );
        }
        Err(other) => checks.fail(
            "refresh-rotates",
            name,
            format!("reusing the old token failed wrongly: {other}"),
        ),
        Ok(_) => checks.fail(
            "refresh-rotates",
            name,
            "the rotated-out refresh token still worked".to_owned(),
        ),
    }
}

/// Progress on stderr: a bar redrawn in place on a terminal, a line per scenario otherwise (CI
/// logs). Failures always get their own line.
struct Progress {
    terminal: bool,
}

impl Progress {
    fn new() -> Self {
        Self {
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn finished(&self, result: &ScenarioResult, done: usize, total: usize) {
        if !self.terminal {
            eprintln!(
                "[{done}/{total}] {} {} ({} ms)",
                result.status.label(),
                result.id,
                result.duration_ms
            );
            return;
        }
        if result.status != ScenarioStatus::Passed && result.status != ScenarioStatus::Skipped {
            eprintln!("\r\x1b[2K{} {}", result.status.label(), result.id);
        }
        const WIDTH: usize = 30;
        let filled = WIDTH * done / total.max(1);
        eprint!(
            "\r\x1b[2K[{}{}] {done}/{total} {}",
            "#".repeat(filled),
            "-".repeat(WIDTH - filled),
            result.id
        );
        if done == total {
            eprintln!();
        }
    }
}

/// The checks of one scenario as they are made.
struct Checks {
    scenario_id: String,
    spec: Vec<String>,
    checks: Vec<Check>,
}

impl Checks {
    fn new(scenario: &Scenario) -> Self {
        Self {
            scenario_id: scenario.id.clone(),
            spec: scenario.spec.clone(),
            checks: Vec::new(),
        }
    }

    fn push(
        &mut self,
        id: &str,
        name: &str,
        status: CheckStatus,
        details: Option<Value>,
        error_message: Option<String>,
    ) {
        self.checks.push(Check {
            id: format!("{}/{id}", self.scenario_id),
            name: id.to_owned(),
            description: name.to_owned(),
            status,
            spec_references: self.spec.clone(),
            details,
            error_message,
        });
    }

    fn pass(&mut self, id: &str, name: &str, details: Option<Value>) {
        self.push(id, name, CheckStatus::Success, details, None);
    }

    fn fail(&mut self, id: &str, name: &str, message: String) {
        self.push(id, name, CheckStatus::Failure, None, Some(message));
    }

    fn fail_with(&mut self, id: &str, name: &str, details: Value, message: String) {
        self.push(id, name, CheckStatus::Failure, Some(details), Some(message));
    }

    fn finish(self, scenario: &Scenario, elapsed: Duration) -> ScenarioResult {
        let status = if self
            .checks
            .iter()
            .any(|check| check.status == CheckStatus::Failure)
        {
            ScenarioStatus::Failed
        } else if self
            .checks
            .iter()
            .all(|check| check.status == CheckStatus::Skipped)
        {
            ScenarioStatus::Skipped
        } else {
            ScenarioStatus::Passed
        };
        ScenarioResult {
            id: scenario.id.clone(),
            title: scenario.title.clone(),
            path: scenario.path.display().to_string(),
            status,
            baseline_reason: None,
            duration_ms: elapsed.as_millis(),
            checks: self.checks,
        }
    }
}
