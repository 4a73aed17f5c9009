//! Runs scenarios: a fresh stack each, the driver over HTTP, and checks from what came out.

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mcp_driver::browser::{BrowserAgent, Chromium, ConsentChoice, LoginForm};
use mcp_driver::{AgentCredentials, DriverConfig, FlowReport, Phase, UserAgent};
use serde_json::{Value, json};
use testbed_stack::{AppBehaviour, ConsentMode, EmulatorPlacement, Fixtures, Stack, StackConfig};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use url::Url;

use crate::exec::{ErrorPageMatch, StepRunner};
use crate::record::ScenarioRecorder;
use crate::report::{Report, ScenarioResult, ScenarioStatus};
use crate::scenario::{
    AppMistake, Consent, ConsentDecision, Expectation, Grant, Outcome, Scenario, Target,
};
use crate::{Check, CheckStatus};

/// The persona whose claims `post-user` steps send when a scenario names none.
const DEFAULT_PERSONA: &str = "ada";

/// The redirect URI the driver registers; nothing listens there, the user agent stops at it.
const DRIVER_REDIRECT_URI: &str = "http://127.0.0.1:33418/callback";

/// What a run points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunTarget {
    /// A fresh in-process stack per scenario.
    Embedded,
    /// An emulator already running at this environment URL (another process), with the reference
    /// Your App and MCP server started here where the fixtures say.
    Url(Url),
    /// A real Scalekit environment at this URL, with the reference Your App and MCP server started
    /// here; the fixtures carry the environment's ids and credentials.
    Scalekit(Url),
}

impl RunTarget {
    /// The scenario-file target this run target satisfies.
    pub fn kind(&self) -> Target {
        match self {
            Self::Embedded => Target::Embedded,
            Self::Url(_) => Target::Url,
            Self::Scalekit(_) => Target::Scalekit,
        }
    }
}

/// How a run goes.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The fixtures each scenario's stack starts from (for remote targets: the remote's
    /// configuration, whose login endpoint and Server URL say where Your App and the MCP server
    /// listen).
    pub fixtures: Fixtures,
    /// Only scenarios whose id contains this run; commas separate alternatives
    /// (`expired-code,dynamic-registration`: ids containing either).
    pub filter: Option<String>,
    /// How many scenarios run at once.
    pub concurrency: usize,
    /// Where the run goes.
    pub target: RunTarget,
    /// Every flow scenario's user agent is Chromium (one chromedriver for the run, a fresh
    /// session per scenario): Your App shows its login form, which the browser fills in as the
    /// scenario's persona, and consent pages are clicked as the scenario says; at most two
    /// sessions are open at once. Step scenarios are unchanged. On remote targets the one shared
    /// Your App keeps signing its persona in on a plain GET (step scenarios rely on it), so there
    /// the browser follows the redirects and clicks consent.
    pub browser: bool,
    /// Keep each scenario's exchanges, normalized, in [`Report::recordings`] (`--record`).
    pub record: bool,
    /// On the `scalekit` target, run the probe scenarios (`probe = true`) too, and report a
    /// failure of one as a fidelity finding (INFO) rather than a failure (`--probe`). Without it
    /// they are skipped there; on the emulator's targets they are ordinary scenarios.
    pub probe: bool,
}

/// How long the browser may take from the authorization URL to the redirect URI.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(30);

/// The most browser sessions open at once: each one is a Chromium, and these machines have two
/// cores. Step scenarios, which need no browser, still run `concurrency` at a time.
const BROWSER_SESSIONS: usize = 2;

/// The run's one chromedriver and the turns of its sessions.
#[derive(Clone)]
struct Browser {
    chromium: Arc<Chromium>,
    sessions: Arc<Semaphore>,
}

/// The persona the shared Your App signs in on remote targets.
const REMOTE_PERSONA: &str = DEFAULT_PERSONA;

/// Runs every scenario that matches the filter and targets, `concurrency` at a time, printing a
/// line as each one finishes. On a remote target the scenarios share one environment, so those that
/// move its clock run one at a time after the others.
pub async fn run(scenarios: Vec<Scenario>, options: &RunOptions) -> Report {
    let started = Instant::now();
    let selected: Vec<Scenario> = scenarios
        .into_iter()
        .filter(|scenario| {
            options.filter.as_ref().is_none_or(|filter| {
                filter
                    .split(',')
                    .any(|part| scenario.id.contains(part.trim()))
            })
        })
        .collect();
    let total = selected.len();
    let progress = Progress::new();
    let mut results = Vec::with_capacity(total);
    let mut recordings = Vec::new();
    let recorded_at = crate::record::today();
    // Chromium only when a flow scenario will use it; if it cannot start, those scenarios fail
    // and the step scenarios still run.
    let mut selected = selected;
    let browser = if options.browser && selected.iter().any(|scenario| scenario.expect.is_some()) {
        match Chromium::start().await {
            Ok(chromium) => Some(Browser {
                chromium: Arc::new(chromium),
                sessions: Arc::new(Semaphore::new(BROWSER_SESSIONS)),
            }),
            Err(error) => {
                let (flows, steps): (Vec<Scenario>, Vec<Scenario>) = selected
                    .into_iter()
                    .partition(|scenario| scenario.expect.is_some());
                selected = steps;
                let check = (
                    "browser-starts",
                    "Chromium starts for the browser user agent",
                );
                results.extend(failed_all(flows, check, &error));
                None
            }
        }
    } else {
        None
    };
    let shared = match &options.target {
        RunTarget::Embedded => None,
        RunTarget::Url(url) | RunTarget::Scalekit(url) => {
            // The shared Your App signs one persona in on its own, with or without the browser:
            // step scenarios on these targets rely on it (a GET of the login endpoint answers
            // with the hand-off), and they share this one Your App with the flow scenarios.
            let mut config = StackConfig::ephemeral(options.fixtures.clone(), Some(REMOTE_PERSONA));
            config.emulator = EmulatorPlacement::Remote(url.clone());
            match Stack::spawn(config).await {
                Ok(stack) => Some(Arc::new(stack)),
                Err(error) => {
                    let check = ("stack-starts", "Your App and the MCP server start");
                    results.extend(failed_all(selected, check, &error));
                    results.sort_by(|left, right| left.id.cmp(&right.id));
                    return Report::new(results, started.elapsed());
                }
            }
        }
    };
    let (serial, concurrent): (Vec<Scenario>, Vec<Scenario>) = selected
        .into_iter()
        .partition(|scenario| shared.is_some() && scenario.moves_the_clock());
    for (batch, width) in [(concurrent, options.concurrency.max(1)), (serial, 1)] {
        let mut pending = batch.into_iter();
        let mut running = JoinSet::new();
        loop {
            while running.len() < width {
                let Some(scenario) = pending.next() else {
                    break;
                };
                let fixtures = options.fixtures.clone();
                let target = options.target.clone();
                let shared = shared.clone();
                let browser = browser.clone();
                let run = ScenarioRun {
                    record: options.record,
                    probe: options.probe,
                };
                running.spawn(async move {
                    run_scenario(scenario, fixtures, target, shared, browser, run).await
                });
            }
            let Some(joined) = running.join_next().await else {
                break;
            };
            let result = match joined {
                Ok((result, recorder)) => {
                    if let Some(recorder) = recorder {
                        recordings.push(recorder.finish(
                            &result.id,
                            options.target.kind(),
                            &recorded_at,
                        ));
                    }
                    result
                }
                Err(join_error) => ScenarioResult::crashed(join_error.to_string()),
            };
            progress.finished(&result, results.len() + 1, total);
            results.push(result);
        }
    }
    results.sort_by(|left, right| left.id.cmp(&right.id));
    recordings.sort_by(|left, right| left.scenario.cmp(&right.scenario));
    let mut report = Report::new(results, started.elapsed());
    report.recordings = recordings;
    report
}

/// What a run asks of each scenario besides its checks.
#[derive(Debug, Clone, Copy)]
struct ScenarioRun {
    /// Record its exchanges.
    record: bool,
    /// `--probe`: run a probe on the `scalekit` target, a failure being a finding.
    probe: bool,
}

/// Every scenario failed by one check that could not hold for any of them, sorted by id.
fn failed_all(
    scenarios: Vec<Scenario>,
    (id, name): (&str, &str),
    error: &dyn std::fmt::Display,
) -> Vec<ScenarioResult> {
    let mut results: Vec<ScenarioResult> = scenarios
        .iter()
        .map(|scenario| {
            let mut checks = Checks::new(scenario);
            checks.fail(id, name, error.to_string());
            checks.finish(scenario, Duration::ZERO)
        })
        .collect();
    results.sort_by(|left, right| left.id.cmp(&right.id));
    results
}

/// Runs one scenario; with `run.record`, its recording too (none when it was skipped).
async fn run_scenario(
    scenario: Scenario,
    fixtures: Fixtures,
    target: RunTarget,
    shared: Option<Arc<Stack>>,
    browser: Option<Browser>,
    run: ScenarioRun,
) -> (ScenarioResult, Option<ScenarioRecorder>) {
    let started = Instant::now();
    let mut checks = Checks::new(&scenario);
    let skip = skip_reason(&scenario, &target, &fixtures, browser.is_some())
        .or_else(|| probe_skip_reason(&scenario, &target, run.probe));
    if let Some(reason) = skip {
        checks.push(
            "target",
            "The scenario runs on this target",
            CheckStatus::Skipped,
            None,
            Some(reason),
        );
        return (checks.finish(&scenario, started.elapsed()), None);
    }
    let browser = browser.as_ref();
    let mut recorder = run.record.then(ScenarioRecorder::new);
    let recording = recorder.as_mut();
    match shared {
        Some(stack) => run_on(&scenario, &stack, &target, &mut checks, browser, recording).await,
        None => run_embedded(&scenario, fixtures, &mut checks, browser, recording).await,
    }
    let mut result = checks.finish(&scenario, started.elapsed());
    if scenario.probe && matches!(target, RunTarget::Scalekit(_)) {
        result.report_failures_as_findings();
    }
    (result, recorder)
}

/// Why a probe does not run: on the `scalekit` target it runs only with `--probe`, so that a
/// behaviour the emulator decided or inferred never fails somebody's run against their
/// environment unasked.
fn probe_skip_reason(scenario: &Scenario, target: &RunTarget, probe: bool) -> Option<String> {
    (scenario.probe && !probe && matches!(target, RunTarget::Scalekit(_))).then(|| {
        "a probe (it checks a behaviour the emulator decided or inferred): runs on scalekit with --probe, where a failure is a fidelity finding"
            .to_owned()
    })
}

/// Why `scenario` cannot run on `target` (with the browser user agent or without), if it cannot.
fn skip_reason(
    scenario: &Scenario,
    target: &RunTarget,
    fixtures: &Fixtures,
    browser: bool,
) -> Option<String> {
    let kind = target.kind();
    if !scenario.targets.contains(&kind) {
        return Some(format!(
            "the scenario does not list the {} target",
            kind.name()
        ));
    }
    let declares_an_agent = fixtures
        .environment
        .resources
        .first()
        .is_some_and(|resource| !resource.agents.is_empty());
    if scenario.uses_the_fixture_agent() && !declares_an_agent {
        return Some(
            "acts as the fixtures' agent of the first resource, and the fixtures declare none (add [[resources.agents]])"
                .to_owned(),
        );
    }
    if scenario.uses_the_fixture_idp() && fixtures.environment.trusted_idps.is_empty() {
        return Some(
            "uses the fixtures' trusted identity provider, and the fixtures declare none (add [[trusted_idps]])"
                .to_owned(),
        );
    }
    if scenario.needs_a_person() && !browser {
        return Some(
            "needs a person to decide on the consent page, which the HTTP user agent cannot do; runs with --browser"
                .to_owned(),
        );
    }
    if *target == RunTarget::Embedded {
        return None;
    }
    if let Some(consent) = scenario.stack.consent {
        let wanted = match consent {
            Consent::Auto => ConsentMode::Auto,
            Consent::Prompt => ConsentMode::Prompt,
        };
        if let Some(reason) =
            remote_resource_differs(fixtures, "consent mode", wanted, |resource| {
                resource.consent
            })
        {
            return Some(reason);
        }
    }
    if let Some(wanted) = scenario.stack.intersect_scopes_user_permission
        && let Some(reason) = remote_resource_differs(
            fixtures,
            "intersect_scopes_user_permission",
            wanted,
            |resource| resource.intersect_scopes_user_permission,
        )
    {
        return Some(reason);
    }
    if scenario.expect.is_some()
        && let Some(persona) = &scenario.stack.persona
        && persona != REMOTE_PERSONA
    {
        return Some(format!(
            "needs Your App to sign in {persona}; on a remote target the shared Your App signs in {REMOTE_PERSONA}"
        ));
    }
    if scenario.stack.app_mistake.is_some() {
        return Some(
            "needs Your App to make a deliberate mistake; on a remote target the shared Your App behaves correctly"
                .to_owned(),
        );
    }
    if matches!(target, RunTarget::Scalekit(_)) && scenario.moves_the_clock() {
        return Some("moves the clock, which only the emulator's control API can do".to_owned());
    }
    None
}

/// Runs a scenario against a stack that is already up (remote targets). On a real Scalekit
/// environment, whose hosted error page's path is unknown, `redirect = "error-page"` accepts any
/// page on the environment's host whose query names an error.
async fn run_on(
    scenario: &Scenario,
    stack: &Stack,
    target: &RunTarget,
    checks: &mut Checks,
    browser: Option<&Browser>,
    recorder: Option<&mut ScenarioRecorder>,
) {
    let error_page = match target {
        RunTarget::Scalekit(_) => ErrorPageMatch::AnyOnTheEnvironmentsHost,
        RunTarget::Embedded | RunTarget::Url(_) => ErrorPageMatch::Emulator,
    };
    match &scenario.expect {
        Some(expect) => run_flow(scenario, expect, stack, checks, browser, recorder).await,
        None => run_steps(scenario, stack, error_page, checks, recorder).await,
    }
}

/// Why a scenario cannot run on a remote target whose first resource's `setting` (read by
/// `read` from the fixtures that describe it) is not `wanted`: a remote environment's settings
/// are its own.
fn remote_resource_differs<T: PartialEq + std::fmt::Debug>(
    fixtures: &Fixtures,
    setting: &str,
    wanted: T,
    read: impl Fn(&testbed_stack::ResourceConfig) -> T,
) -> Option<String> {
    let actual = fixtures.environment.resources.first().map(read);
    (actual.as_ref() != Some(&wanted)).then(|| {
        format!(
            "needs the resource's {setting} to be {wanted:?}; the target's is {actual:?} and cannot be changed from here"
        )
    })
}

/// One signing key for every embedded stack of the process: generating an RSA key per scenario
/// took about 0.1 s each. Each stack still has its own issuer (its own port), so no token of one
/// scenario is valid in another. `None` (each stack makes its own) if generation failed.
fn shared_signing_key() -> Option<scalekit_wire::Secret> {
    static KEY: std::sync::OnceLock<Option<scalekit_wire::Secret>> = std::sync::OnceLock::new();
    KEY.get_or_init(|| testbed_stack::generate_signing_key().ok())
        .clone()
}

async fn run_embedded(
    scenario: &Scenario,
    fixtures: Fixtures,
    checks: &mut Checks,
    browser: Option<&Browser>,
    recorder: Option<&mut ScenarioRecorder>,
) {
    // A browser signs the persona in through Your App's form; the HTTP user agent needs Your
    // App to sign it in on a plain GET.
    let auto_login = match (&scenario.expect, browser) {
        (Some(_), Some(_)) => None,
        _ => scenario.stack.persona.as_deref(),
    };
    let mut fixtures = fixtures;
    if let Some(intersect) = scenario.stack.intersect_scopes_user_permission
        && let Some(resource) = fixtures.environment.resources.first_mut()
    {
        resource.intersect_scopes_user_permission = intersect;
    }
    let mut config = StackConfig::ephemeral(fixtures, auto_login);
    config.signing_key_pem = shared_signing_key();
    config.consent = scenario.stack.consent.map(|consent| match consent {
        Consent::Auto => ConsentMode::Auto,
        Consent::Prompt => ConsentMode::Prompt,
    });
    if let Some(mistake) = scenario.stack.app_mistake {
        let resource_id = config
            .fixtures
            .environment
            .resources
            .first()
            .map(|resource| resource.id.clone());
        config.app_behaviour = match mistake {
            AppMistake::AlterState => AppBehaviour::AlterState,
            AppMistake::DropState => AppBehaviour::DropState,
            AppMistake::RedirectBeforePost => AppBehaviour::RedirectBeforePost,
            AppMistake::OmitEmail => AppBehaviour::OmitEmail,
            AppMistake::PhoneNotE164 => AppBehaviour::PhoneNotE164,
            AppMistake::LoginFailed => AppBehaviour::LoginFailed,
            AppMistake::BadBearer => AppBehaviour::BadBearer,
            AppMistake::ResourceIdAsConnection => {
                AppBehaviour::WrongConnection(resource_id.unwrap_or_default())
            }
        };
    }
    let stack = match Stack::spawn(config).await {
        Ok(stack) => stack,
        Err(error) => {
            checks.fail("stack-starts", "The stack starts", format!("{error}"));
            return;
        }
    };
    match &scenario.expect {
        Some(expect) => run_flow(scenario, expect, &stack, checks, browser, recorder).await,
        None => run_steps(scenario, &stack, ErrorPageMatch::Emulator, checks, recorder).await,
    }
}

/// A step scenario: each step is one check; the first failing step ends the scenario. With a
/// recorder, each step that ran is recorded, the failing one included.
async fn run_steps(
    scenario: &Scenario,
    stack: &Stack,
    error_page: ErrorPageMatch,
    checks: &mut Checks,
    mut recorder: Option<&mut ScenarioRecorder>,
) {
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
        Ok(runner) => runner.with_error_page(error_page),
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
        let exchanges = runner.take_exchanges();
        if let Some(recorder) = recorder.as_deref_mut() {
            recorder.step(index + 1, step.action.name(), runner.variables(), exchanges);
        }
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

/// The browser user agent for a flow scenario: signs the scenario's persona in through the
/// reference Your App's form and decides on the consent page as the scenario says.
fn browser_agent(scenario: &Scenario, chromium: &Arc<Chromium>) -> BrowserAgent {
    let persona = scenario.stack.persona.as_deref().unwrap_or(DEFAULT_PERSONA);
    BrowserAgent {
        chromium: chromium.clone(),
        login: Some(LoginForm::reference_app(persona)),
        consent: match scenario.driver.consent {
            Some(ConsentDecision::Deny) => ConsentChoice::Deny,
            Some(ConsentDecision::Approve) | None => ConsentChoice::Approve,
        },
        timeout: BROWSER_TIMEOUT,
        screenshots: None,
    }
}

/// What the browser did, hop by hop, for a check's details (`null` with the HTTP user agent).
fn browser_path(driver_config: &DriverConfig, hops: &[mcp_driver::Hop]) -> Value {
    match driver_config.user_agent {
        UserAgent::Http => Value::Null,
        UserAgent::Browser(_) => hops
            .iter()
            .filter(|hop| hop.phase == Phase::Authorization)
            .map(ToString::to_string)
            .collect(),
    }
}

/// A flow scenario: the driver runs the whole flow, then the expectations are checked.
async fn run_flow(
    scenario: &Scenario,
    expect: &Expectation,
    stack: &Stack,
    checks: &mut Checks,
    browser: Option<&Browser>,
    recorder: Option<&mut ScenarioRecorder>,
) {
    let driver_config = DriverConfig {
        mcp_url: stack.mcp_url.clone(),
        redirect_uri: Url::parse(DRIVER_REDIRECT_URI).expect("a constant URL"),
        client_name: "testbed conformance".to_owned(),
        extra_scopes: scenario.driver.extra_scopes.clone(),
        timeout: Duration::from_secs(10),
        user_agent: browser.map_or(UserAgent::Http, |browser| {
            UserAgent::Browser(browser_agent(scenario, &browser.chromium))
        }),
        ca_cert_pem: None,
    };
    let agent = match scenario.driver.grant {
        Grant::AuthorizationCode => None,
        Grant::ClientCredentials => {
            let agent = stack
                .fixtures
                .environment
                .resources
                .first()
                .and_then(|resource| resource.agents.first());
            let Some(agent) = agent else {
                checks.fail(
                    "agent",
                    "The fixtures declare an agent of the first resource",
                    "no [[resources.agents]] in the fixtures".to_owned(),
                );
                return;
            };
            Some(AgentCredentials {
                client_id: agent.client_id.clone(),
                client_secret: agent.client_secret.clone(),
            })
        }
    };
    let agent_id = agent.as_ref().map(|agent| agent.client_id.clone());
    let (hops, outcome) = match agent {
        // An agent has no user agent: no browser turn.
        Some(agent) => mcp_driver::run_client_credentials(&driver_config, agent).await,
        None => {
            // A turn for the browser session; the semaphore is never closed, so `acquire`
            // cannot fail.
            let _turn = match browser {
                Some(browser) => browser.sessions.acquire().await.ok(),
                None => None,
            };
            mcp_driver::run_flow_recorded(&driver_config).await
        }
    };
    if let Some(recorder) = recorder {
        // The driver's redirect URI is the step runner's, so the stack's variables name it.
        match crate::exec::stack_variables(stack) {
            Ok(variables) => recorder.hops(&variables, &hops),
            Err(message) => checks.fail("record", "The flow's hops are recorded", message),
        }
    }
    let path = browser_path(&driver_config, &hops);
    if expect.outcome == Outcome::Failure {
        check_failure(expect, outcome, path, checks);
        return;
    }
    let report = match outcome {
        Ok(report) => {
            let mut details = json!({ "hops": report.hops.len(), "client_id": report.client_id });
            if !path.is_null() {
                details["browser_path"] = path;
            }
            checks.pass(
                "flow-completes",
                "The MCP client completes the OAuth flow and calls the MCP server",
                Some(details),
            );
            report
        }
        Err(error) => {
            let name = "The MCP client completes the OAuth flow and calls the MCP server";
            if path.is_null() {
                checks.fail("flow-completes", name, format!("{error}"));
            } else {
                let details = json!({ "browser_path": path });
                checks.fail_with("flow-completes", name, details, format!("{error}"));
            }
            return;
        }
    };
    if let Some(agent_id) = &agent_id {
        check_agent_identity(agent_id, &report, checks);
    }
    check_expectations(expect, stack, &driver_config, &report, checks).await;
}

/// An agent's token, as the MCP server's `whoami` echoes it: `sub` and `client_id` are the
/// agent, the scopes an array, and no user.
fn check_agent_identity(agent_id: &str, report: &FlowReport, checks: &mut Checks) {
    let name =
        "The MCP server sees the agent: sub and client_id are its client id, scopes an array";
    let whoami = &report.whoami;
    let details = json!({
        "sub": whoami.get("sub"),
        "client_id": whoami.get("client_id"),
        "scopes": whoami.get("scopes"),
    });
    let is_the_agent = whoami.get("sub").and_then(Value::as_str) == Some(agent_id)
        && whoami.get("client_id").and_then(Value::as_str) == Some(agent_id)
        && whoami.get("scopes").is_some_and(Value::is_array)
        && whoami.get("email").is_none();
    if is_the_agent {
        checks.pass("agent-identity", name, Some(details));
    } else {
        checks.fail_with(
            "agent-identity",
            name,
            details,
            format!("expected sub = client_id = {agent_id}, a scopes array and no user claims"),
        );
    }
}

/// A flow that must stop: the driver's error must be of the expected kind and say what it must.
fn check_failure(
    expect: &Expectation,
    outcome: Result<FlowReport, mcp_driver::DriverError>,
    browser_path: Value,
    checks: &mut Checks,
) {
    let name = "The MCP client's flow stops with the expected error";
    let error = match outcome {
        Ok(report) => {
            checks.fail_with(
                "flow-fails",
                name,
                json!({ "client_id": report.client_id, "whoami": report.whoami }),
                "the flow completed".to_owned(),
            );
            return;
        }
        Err(error) => error,
    };
    let kind = driver_error_kind(&error);
    let message = error.to_string();
    let mut details = json!({ "error": kind, "message": message });
    if !browser_path.is_null() {
        details["browser_path"] = browser_path;
    }
    let mut problems = Vec::new();
    if let Some(expected) = &expect.error
        && expected != kind
    {
        problems.push(format!("error {kind} (expected {expected})"));
    }
    for needle in &expect.error_contains {
        if !message.contains(needle.as_str()) {
            problems.push(format!("the message does not contain {needle:?}"));
        }
    }
    if problems.is_empty() {
        checks.pass("flow-fails", name, Some(details));
    } else {
        checks.fail_with(
            "flow-fails",
            name,
            details,
            format!("{}; message: {message}", problems.join("; ")),
        );
    }
}

/// The kebab-case name of a driver error's kind, as scenarios spell it.
fn driver_error_kind(error: &mcp_driver::DriverError) -> &'static str {
    use mcp_driver::DriverError as E;
    match error {
        E::NoChallenge => "no-challenge",
        E::ProtectedResourceMetadata { .. } => "protected-resource-metadata",
        E::ResourceMismatch { .. } => "resource-mismatch",
        E::NoAuthorizationServer => "no-authorization-server",
        E::AuthorizationServerMetadata { .. } => "authorization-server-metadata",
        E::IssuerMismatch { .. } => "issuer-mismatch",
        E::PkceNotSupported => "pkce-not-supported",
        E::NoRegistrationEndpoint => "no-registration-endpoint",
        E::Registration { .. } => "registration",
        E::AuthorizationRedirect { .. } => "authorization-redirect",
        E::HostedErrorPage { .. } => "hosted-error-page",
        E::AuthorizationError { .. } => "authorization-error",
        E::StateMismatch => "state-mismatch",
        E::MissingIss => "missing-iss",
        E::IssMismatch { .. } => "iss-mismatch",
        E::TokenEndpoint { .. } => "token-endpoint",
        E::IdToken(_) => "id-token",
        E::Mcp(_) => "mcp",
        E::ResponseTooLarge { .. } => "response-too-large",
        E::Http(_) => "http",
        E::InvalidUrl { .. } => "invalid-url",
        E::NoRefreshToken => "no-refresh-token",
        E::Browser(_) => "browser",
    }
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
        Some(resource) if audience_strings == resource.audience() => {
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::scenario::parse_scenario;

    fn scenario(targets: &str, stack: &str) -> Scenario {
        let text = format!(
            "id = \"s\"\ntitle = \"t\"\nspec = [\"x\"]\ntargets = [{targets}]\n[stack]\n{stack}\n\
             [expect]\noutcome = \"success\"\n"
        );
        parse_scenario(Path::new("s.toml"), &text).unwrap()
    }

    #[test]
    fn a_flow_with_the_consent_page_is_skipped_without_the_browser_and_runs_with_it() {
        let person = scenario("\"embedded\"", "consent = \"prompt\"");
        let fixtures = Fixtures::embedded().unwrap();
        assert_eq!(
            skip_reason(&person, &RunTarget::Embedded, &fixtures, false).as_deref(),
            Some(
                "needs a person to decide on the consent page, which the HTTP user agent cannot do; runs with --browser"
            )
        );
        assert_eq!(
            skip_reason(&person, &RunTarget::Embedded, &fixtures, true),
            None
        );
        let automatic = scenario("\"embedded\"", "consent = \"auto\"");
        assert_eq!(
            skip_reason(&automatic, &RunTarget::Embedded, &fixtures, false),
            None
        );
    }

    #[test]
    fn on_a_remote_target_another_persona_is_skipped_with_the_browser_too() {
        let grace = scenario("\"url\"", "persona = \"grace\"");
        let fixtures = Fixtures::embedded().unwrap();
        let remote = RunTarget::Url(Url::parse("http://127.0.0.1:9/").unwrap());
        for browser in [false, true] {
            assert_eq!(
                skip_reason(&grace, &remote, &fixtures, browser).as_deref(),
                Some(
                    "needs Your App to sign in grace; on a remote target the shared Your App signs in ada"
                ),
                "browser: {browser}"
            );
        }
    }

    #[test]
    fn the_scope_intersection_is_set_on_the_embedded_stack_and_required_of_a_remote_one() {
        let intersecting = scenario(
            "\"embedded\", \"url\"",
            "intersect_scopes_user_permission = true",
        );
        let mut fixtures = Fixtures::embedded().unwrap();
        assert!(!fixtures.environment.resources[0].intersect_scopes_user_permission);
        assert_eq!(
            skip_reason(&intersecting, &RunTarget::Embedded, &fixtures, false),
            None
        );
        let remote = RunTarget::Url(Url::parse("http://127.0.0.1:9/").unwrap());
        assert_eq!(
            skip_reason(&intersecting, &remote, &fixtures, false).as_deref(),
            Some(
                "needs the resource's intersect_scopes_user_permission to be true; the target's is Some(false) and cannot be changed from here"
            )
        );
        fixtures.environment.resources[0].intersect_scopes_user_permission = true;
        assert_eq!(skip_reason(&intersecting, &remote, &fixtures, false), None);
    }
}
