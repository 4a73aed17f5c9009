//! The scenario file format: one TOML file per behaviour to check (see `scenarios/README.md`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::steps::{Action, Param, Step};

/// One scenario, parsed strictly: an unknown key is an error naming the file and line.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Stable id, unique across the suite (kebab-case).
    pub id: String,
    /// One line saying what the scenario shows.
    pub title: String,
    /// Spec references, e.g. `RFC7636-4.6`, `scalekit:byoa-step-3`, `mcp-2025-11-25:authorization`.
    pub spec: Vec<String>,
    /// Where the scenario can run.
    pub targets: Vec<Target>,
    /// A probe: it asserts a behaviour `docs/fidelity.md` tags only `decided` or `[I]`. On the
    /// `scalekit` target it runs only with `--probe`, and there a failure is a fidelity finding
    /// (INFO), not a failed run. A probe must list `scalekit`.
    #[serde(default)]
    pub probe: bool,
    /// How the stack is set up.
    #[serde(default)]
    pub stack: StackSetup,
    /// What the MCP client driver asks for (flow scenarios).
    #[serde(default)]
    pub driver: DriverSetup,
    /// What must come out of the driver's flow (flow scenarios).
    pub expect: Option<Expectation>,
    /// The requests to make and their exact answers (step scenarios).
    #[serde(default)]
    pub steps: Vec<Step>,
    /// The file the scenario came from.
    #[serde(skip)]
    pub path: PathBuf,
}

impl Scenario {
    /// Whether a person must act in a browser: a flow scenario with the consent page shown.
    pub fn needs_a_person(&self) -> bool {
        self.expect.is_some() && self.stack.consent == Some(Consent::Prompt)
    }

    /// Whether the scenario acts as the fixtures' agent of the first resource: a flow with
    /// `grant = "client_credentials"`, or a `client-credentials` step.
    pub fn uses_the_fixture_agent(&self) -> bool {
        (self.expect.is_some() && self.driver.grant == Grant::ClientCredentials)
            || self
                .steps
                .iter()
                .any(|step| step.action == Action::ClientCredentials)
    }

    /// Whether the scenario uses the fixtures' trusted identity provider (cross-app access): an
    /// `id-jag` or `jwt-bearer` step.
    pub fn uses_the_fixture_idp(&self) -> bool {
        self.steps
            .iter()
            .any(|step| matches!(step.action, Action::IdJag | Action::JwtBearer))
    }

    /// Whether a step moves the emulator's clock (the stack then runs on a manual clock).
    pub fn moves_the_clock(&self) -> bool {
        self.steps
            .iter()
            .any(|step| step.action == Action::AdvanceClock)
    }
}

/// Where a scenario can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The stack in-process.
    Embedded,
    /// An emulator already running, reached only over HTTP.
    Url,
    /// A real Scalekit environment.
    Scalekit,
}

impl Target {
    /// The name used in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::Url => "url",
            Self::Scalekit => "scalekit",
        }
    }
}

/// The stack a scenario runs against.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackSetup {
    /// The persona Your App signs in headlessly.
    pub persona: Option<String>,
    /// Overrides the resource's consent mode.
    pub consent: Option<Consent>,
    /// Overrides the first resource's `intersect_scopes_user_permission` (scopes granted only
    /// with the permissions of the posted roles).
    pub intersect_scopes_user_permission: Option<bool>,
    /// One deliberate mistake Your App makes when it hands the login back.
    pub app_mistake: Option<AppMistake>,
}

/// A deliberate mistake of Your App's hand-off (steps 2 and 3 of the BYOA flow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AppMistake {
    /// Redirect with the state altered.
    AlterState,
    /// Redirect without the state.
    DropState,
    /// Redirect to `partner:callback` without posting the user.
    RedirectBeforePost,
    /// Post the user without `email`.
    OmitEmail,
    /// Post a phone number that is not E.164.
    PhoneNotE164,
    /// Report a failed login.
    LoginFailed,
    /// Post with a bearer that is not a management token.
    BadBearer,
    /// Post to the resource's `res_…` id where the `conn_…` id belongs.
    ResourceIdAsConnection,
}

/// A resource's consent mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consent {
    /// No consent page.
    Auto,
    /// The consent page is shown.
    Prompt,
}

/// What the driver asks for.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriverSetup {
    /// Scopes added to those the driver selects from the challenge, if the AS supports them.
    #[serde(default)]
    pub extra_scopes: Vec<String>,
    /// What the person clicks on the consent page (default approve). A person is needed for
    /// that: with `[stack] consent = "prompt"` a flow scenario runs only with the browser user
    /// agent (`--browser`) and is skipped otherwise.
    pub consent: Option<ConsentDecision>,
    /// How the driver gets its token: a user's `authorization_code` flow (default) or an
    /// agent's `client_credentials`, as the fixtures' agent of the first resource.
    #[serde(default)]
    pub grant: Grant,
}

/// The grant a flow scenario's driver uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// Registration, the user agent through the sign-in, the code exchange.
    #[default]
    AuthorizationCode,
    /// An agent's `client_credentials` (no user).
    ClientCredentials,
}

/// What the person decides on the consent page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsentDecision {
    /// Click Allow.
    Approve,
    /// Click Deny.
    Deny,
}

/// What must come out of a scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// Whether the flow completes.
    pub outcome: Outcome,
    /// The persona whose identity the MCP server's `whoami` must show.
    pub identity: Option<String>,
    /// The exact scopes granted, in any order.
    pub granted_scopes: Option<Vec<String>>,
    /// Whether a refresh token is issued.
    pub refresh_token: Option<bool>,
    /// Whether a verified ID token is issued.
    pub id_token: Option<bool>,
    /// Refresh once: a new refresh token comes back and the old one is refused with `invalid_grant`.
    #[serde(default)]
    pub refresh_rotates: bool,
    /// With `outcome = "failure"`: the kind of driver error, e.g. `authorization-redirect`.
    pub error: Option<String>,
    /// With `outcome = "failure"`: texts the driver's error message must contain.
    #[serde(default)]
    pub error_contains: Vec<String>,
}

/// The outcome of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The driver reaches the MCP tool with a token.
    Success,
    /// The driver stops with an error (`error`, `error_contains`).
    Failure,
}

/// A scenario file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file or folder could not be read.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid scenario; the message carries the line.
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    /// Two files use one id.
    #[error("scenario id {id} is used by both {first} and {second}")]
    DuplicateId {
        id: String,
        first: PathBuf,
        second: PathBuf,
    },
}

/// Parses one scenario file's text.
pub fn parse_scenario(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
    let invalid = |message: String| ScenarioError::Invalid {
        path: path.to_owned(),
        message,
    };
    let mut scenario: Scenario =
        toml::from_str(text).map_err(|error| invalid(describe_toml_error(text, &error)))?;
    if scenario.id.is_empty()
        || !scenario
            .id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(invalid(format!(
            "id {:?} must be non-empty kebab-case",
            scenario.id
        )));
    }
    if scenario.spec.is_empty() {
        return Err(invalid("spec must name at least one reference".to_owned()));
    }
    if scenario.targets.is_empty() {
        return Err(invalid("targets must name at least one target".to_owned()));
    }
    if scenario.probe && !scenario.targets.contains(&Target::Scalekit) {
        return Err(invalid(
            "probe = true needs \"scalekit\" in targets: a probe asks a real environment"
                .to_owned(),
        ));
    }
    match (&scenario.expect, scenario.steps.is_empty()) {
        (Some(_), false) => {
            return Err(invalid(
                "a scenario has either [expect] (a driver flow) or [[steps]], not both".to_owned(),
            ));
        }
        (None, true) => return Err(invalid("a scenario needs [expect] or [[steps]]".to_owned())),
        _ => {}
    }
    if let Some(expect) = &scenario.expect {
        let failure_keys = expect.error.is_some() || !expect.error_contains.is_empty();
        if expect.outcome == Outcome::Failure && expect.error.is_none() {
            return Err(invalid(
                "outcome = \"failure\" needs `error`, the kind of driver error".to_owned(),
            ));
        }
        if expect.outcome == Outcome::Success && failure_keys {
            return Err(invalid(
                "`error` and `error_contains` need outcome = \"failure\"".to_owned(),
            ));
        }
        let for_a_user = expect.identity.is_some()
            || expect.refresh_rotates
            || scenario.driver.consent.is_some()
            || scenario.stack.consent.is_some();
        if scenario.driver.grant == Grant::ClientCredentials && for_a_user {
            return Err(invalid(
                "grant = \"client_credentials\" has no user: `identity`, `refresh_rotates` and consent do not apply".to_owned(),
            ));
        }
    }
    for (index, step) in scenario.steps.iter().enumerate() {
        let number = index + 1;
        if step
            .params
            .values()
            .any(|param| *param == Param::Omit(true))
        {
            return Err(invalid(format!(
                "step {number}: a parameter is a string, or false to leave it out"
            )));
        }
        if step.action == Action::AdvanceClock && step.seconds.is_none() {
            return Err(invalid(format!(
                "step {number}: advance-clock needs `seconds`"
            )));
        }
        if step.action == Action::Request && step.path.is_none() {
            return Err(invalid(format!("step {number}: request needs `path`")));
        }
    }
    scenario.path = path.to_owned();
    Ok(scenario)
}

/// Loads every `*.toml` under `directory`, recursively, sorted by path.
pub fn load_dir(directory: &Path) -> Result<Vec<Scenario>, ScenarioError> {
    let mut files = Vec::new();
    collect_toml_files(directory, &mut files)?;
    files.sort();
    let mut texts = Vec::with_capacity(files.len());
    for path in files {
        let text = std::fs::read_to_string(&path).map_err(|source| ScenarioError::Read {
            path: path.clone(),
            source,
        })?;
        texts.push((path, text));
    }
    parse_all(texts)
}

include!(concat!(env!("OUT_DIR"), "/embedded_scenarios.rs"));

/// The repository's `scenarios/`, compiled in: what `testbed conformance` runs without
/// `--scenarios`, from any folder. Paths read `scenarios/…`.
pub fn load_embedded() -> Result<Vec<Scenario>, ScenarioError> {
    parse_all(
        EMBEDDED_SCENARIOS
            .iter()
            .map(|(path, text)| (Path::new("scenarios").join(path), (*text).to_owned()))
            .collect(),
    )
}

/// Parses each file, refusing two scenarios with one id.
fn parse_all(texts: Vec<(PathBuf, String)>) -> Result<Vec<Scenario>, ScenarioError> {
    let mut scenarios: Vec<Scenario> = Vec::with_capacity(texts.len());
    for (path, text) in texts {
        let scenario = parse_scenario(&path, &text)?;
        if let Some(first) = scenarios.iter().find(|existing| existing.id == scenario.id) {
            return Err(ScenarioError::DuplicateId {
                id: scenario.id.clone(),
                first: first.path.clone(),
                second: path,
            });
        }
        scenarios.push(scenario);
    }
    Ok(scenarios)
}

fn collect_toml_files(directory: &Path, files: &mut Vec<PathBuf>) -> Result<(), ScenarioError> {
    let entries = std::fs::read_dir(directory).map_err(|source| ScenarioError::Read {
        path: directory.to_owned(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| ScenarioError::Read {
            path: directory.to_owned(),
            source,
        })?;
        let path = entry.path();
        if path.is_dir() {
            collect_toml_files(&path, files)?;
        } else if path
            .extension()
            .is_some_and(|extension| extension == "toml")
        {
            files.push(path);
        }
    }
    Ok(())
}

/// `line N, column M: message`, computed from the error's byte span.
fn describe_toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end().to_owned();
    let Some(span) = error.span() else {
        return message;
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |last| last.chars().count())
        + 1;
    format!("line {line}, column {column}: {message}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
id = "happy-path"
title = "t"
spec = ["RFC7636-4.6"]
targets = ["embedded"]
[expect]
outcome = "success"
"#;

    #[test]
    fn a_minimal_scenario_parses() {
        let scenario = parse_scenario(Path::new("s.toml"), MINIMAL).unwrap();
        assert_eq!(scenario.id, "happy-path");
        assert_eq!(scenario.targets, vec![Target::Embedded]);
        assert_eq!(scenario.expect.unwrap().outcome, Outcome::Success);
    }

    #[test]
    fn an_unknown_key_is_reported_with_file_and_line() {
        let text = MINIMAL.replace(
            "outcome = \"success\"",
            "outcome = \"success\"\nsurprise = 1",
        );
        let error = parse_scenario(Path::new("scenarios/x.toml"), &text).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("scenarios/x.toml: line 8, column 1: unknown field `surprise`"),
            "{message}"
        );
    }

    #[test]
    fn a_scenario_without_expect_or_steps_is_refused() {
        let text = MINIMAL.replace("[expect]\noutcome = \"success\"\n", "");
        let error = parse_scenario(Path::new("x.toml"), &text).unwrap_err();
        assert_eq!(
            error.to_string(),
            "x.toml: a scenario needs [expect] or [[steps]]"
        );
    }

    #[test]
    fn a_parameter_set_to_true_is_refused() {
        let text = MINIMAL.replace(
            "[expect]\noutcome = \"success\"\n",
            "[[steps]]\ndo = \"authorize\"\nparams = { resource = true }\n",
        );
        let error = parse_scenario(Path::new("x.toml"), &text).unwrap_err();
        assert_eq!(
            error.to_string(),
            "x.toml: step 1: a parameter is a string, or false to leave it out"
        );
    }

    #[test]
    fn a_flow_with_the_consent_page_needs_a_person_who_decides_as_told() {
        let text = MINIMAL.replace(
            "[expect]",
            "[stack]\nconsent = \"prompt\"\n[driver]\nconsent = \"deny\"\n[expect]",
        );
        let scenario = parse_scenario(Path::new("x.toml"), &text).unwrap();
        assert!(scenario.needs_a_person());
        assert_eq!(scenario.driver.consent, Some(ConsentDecision::Deny));
        let automatic = parse_scenario(Path::new("x.toml"), MINIMAL).unwrap();
        assert!(!automatic.needs_a_person());
        assert_eq!(automatic.driver.consent, None);
    }

    #[test]
    fn an_agent_flow_uses_the_fixture_agent_and_has_no_user() {
        let text = MINIMAL.replace(
            "[expect]",
            "[driver]\ngrant = \"client_credentials\"\n[expect]",
        );
        let scenario = parse_scenario(Path::new("x.toml"), &text).unwrap();
        assert_eq!(scenario.driver.grant, Grant::ClientCredentials);
        assert!(scenario.uses_the_fixture_agent());
        assert!(
            !parse_scenario(Path::new("x.toml"), MINIMAL)
                .unwrap()
                .uses_the_fixture_agent()
        );
        let with_identity = text.replace(
            "outcome = \"success\"",
            "outcome = \"success\"\nidentity = \"ada\"",
        );
        assert_eq!(
            parse_scenario(Path::new("x.toml"), &with_identity)
                .unwrap_err()
                .to_string(),
            "x.toml: grant = \"client_credentials\" has no user: `identity`, `refresh_rotates` and consent do not apply"
        );
        let steps = MINIMAL.replace(
            "[expect]\noutcome = \"success\"\n",
            "[[steps]]\ndo = \"client-credentials\"\n",
        );
        assert!(
            parse_scenario(Path::new("x.toml"), &steps)
                .unwrap()
                .uses_the_fixture_agent()
        );
    }

    #[test]
    fn a_probe_is_a_boolean_and_must_list_the_scalekit_target() {
        let probe = MINIMAL.replace(
            "targets = [\"embedded\"]",
            "targets = [\"embedded\", \"scalekit\"]\nprobe = true",
        );
        assert!(parse_scenario(Path::new("x.toml"), &probe).unwrap().probe);
        assert!(!parse_scenario(Path::new("x.toml"), MINIMAL).unwrap().probe);
        let without_scalekit = MINIMAL.replace(
            "targets = [\"embedded\"]",
            "targets = [\"embedded\"]\nprobe = true",
        );
        assert_eq!(
            parse_scenario(Path::new("x.toml"), &without_scalekit)
                .unwrap_err()
                .to_string(),
            "x.toml: probe = true needs \"scalekit\" in targets: a probe asks a real environment"
        );
        let not_a_boolean = probe.replace("probe = true", "probe = \"yes\"");
        assert_eq!(
            parse_scenario(Path::new("x.toml"), &not_a_boolean)
                .unwrap_err()
                .to_string(),
            "x.toml: line 6, column 9: invalid type: string \"yes\", expected a boolean"
        );
    }

    #[test]
    fn an_unknown_consent_mode_is_refused() {
        let text = MINIMAL.replace("[expect]", "[stack]\nconsent = \"sometimes\"\n[expect]");
        let error = parse_scenario(Path::new("x.toml"), &text).unwrap_err();
        assert_eq!(
            error.to_string(),
            "x.toml: line 7, column 11: unknown variant `sometimes`, expected `auto` or `prompt`"
        );
    }

    #[test]
    fn the_compiled_in_scenarios_are_the_repository_folder() {
        let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
        let from_folder = load_dir(&folder).expect("the repository's scenarios");
        let embedded = load_embedded().expect("the compiled-in scenarios");
        let shape = |scenarios: &[Scenario], root: &Path| {
            scenarios
                .iter()
                .map(|scenario| {
                    let path = scenario.path.strip_prefix(root).expect("under its root");
                    (scenario.id.clone(), path.to_owned())
                })
                .collect::<Vec<_>>()
        };
        assert!(embedded.len() > 100, "{} scenarios", embedded.len());
        assert_eq!(
            shape(&embedded, Path::new("scenarios")),
            shape(&from_folder, &folder)
        );
    }
}
