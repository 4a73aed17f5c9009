//! Checking somebody's own login integration: their app takes the reference Your App's place in
//! front of the embedded emulator, a real Chromium signs in through their login page with the
//! profile's credentials and selectors, and what the emulator saw of their app's hand-off (the
//! request log, over HTTP) is turned into named diagnostics.
//!
//! Two sign-ins run one after the other: the first shows the hand-off (user-details call, then
//! `partner:callback` with the state unchanged), the second that a new sign-in uses its own login
//! request rather than one kept from before. Each sign-in's title says what it proves.
//!
//! With TLS (`AppCheckOptions::tls_dir`, or the profile's `[environment] tls = true`) the emulator
//! serves HTTPS and gRPC over TLS with a certificate from the development CA in that folder
//! ([`testbed_stack::DevCa`]), which the check's own clients and the MCP client trust beside the
//! system's roots, and the check's Chromium sessions accept by its public-key pin; the printed
//! settings name the variables that make the app trust it too.

mod diagnose;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mcp_driver::browser::{BrowserAgent, BrowserError, Chromium, ConsentChoice, LoginForm};
use mcp_driver::{DriverConfig, FlowReport, Hop, UserAgent};
use scalekit_wire::Secret;
use serde::Deserialize;
use serde_json::{Value, json};
use testbed_stack::{AppPlacement, ConsentMode, DevCa, DevCaError, Fixtures, Stack, StackConfig};
use url::Url;

pub use diagnose::{
    Diagnostic, IssuedLogin, LoggedError, LoggedRequest, Mistake, SignInContext, diagnose,
    state_prefix,
};

use crate::report::{Report, ScenarioResult, ScenarioStatus};
use crate::{Check, CheckStatus};

/// The spec references of the hand-off checks.
const HAND_OFF_SPEC: &[&str] = &[
    "scalekit:byoa-step-2",
    "scalekit:byoa-step-3",
    "scalekit:state-unchanged",
];

/// The redirect URI the driver registers (nothing listens there; the browser's URL is read).
const REDIRECT_URI: &str = "http://127.0.0.1:33418/callback";

/// How many sign-ins a check runs.
pub const SIGN_IN_COUNT: usize = SIGN_INS.len();

/// Where `--tls` keeps the development CA unless told otherwise.
pub const DEFAULT_TLS_DIR: &str = ".testbed/tls";

/// The sign-ins, in order: id and title, the title saying in one line what the sign-in proves.
const SIGN_INS: [(&str, &str); 2] = [
    (
        "app-check/first-sign-in",
        "Proves the hand-off: your app posts the user, then sends the browser to partner:callback with the state unchanged",
    ),
    (
        "app-check/second-sign-in",
        "Proves a new sign-in uses a fresh login request and state: failing only here means your app reuses something from the first sign-in",
    ),
];

/// What a report of the check means when only the second sign-in failed (the first passed), in
/// one line; `None` otherwise, when the failed checks speak for themselves.
pub fn reading(report: &Report) -> Option<&'static str> {
    let failed = |id: &str| {
        report
            .scenarios
            .iter()
            .any(|result| result.id == id && result.status == ScenarioStatus::Failed)
    };
    let [(first, _), (second, _)] = SIGN_INS;
    (!failed(first) && failed(second)).then_some(
        "Only the second sign-in failed: the hand-off works, but your app reuses something from the first sign-in (a login_request_id, state or session kept across sign-ins)",
    )
}

/// How the checker signs in on the app's login page, where the emulator listens, and what the
/// app should post for that user (`--app-profile`, TOML).
#[derive(Debug, Clone)]
pub struct AppProfile {
    /// What to type where.
    pub login: LoginForm,
    /// Where the emulator listens: the environment URL the app is configured with.
    pub environment_listen: Option<SocketAddr>,
    /// `[environment] tls = true`: the emulator serves HTTPS and gRPC over TLS (what an app on
    /// Scalekit's Python SDK needs, whose gRPC always uses TLS).
    pub environment_tls: bool,
    /// Claims the tokens must carry.
    pub expect: ExpectedUser,
}

/// Claims the signed-in user's tokens must carry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedUser {
    /// The `email` the app posts for the profile's user (the ID token carries it).
    pub email: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    login: LoginSection,
    #[serde(default)]
    environment: EnvironmentSection,
    #[serde(default)]
    expect: ExpectedUser,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginSection {
    username: String,
    password: Option<Secret>,
    password_env: Option<String>,
    #[serde(default = "default_username_selector")]
    username_selector: String,
    #[serde(default = "default_password_selector")]
    password_selector: String,
    #[serde(default = "default_submit_selector")]
    submit_selector: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvironmentSection {
    listen: Option<SocketAddr>,
    #[serde(default)]
    tls: bool,
}

fn default_username_selector() -> String {
    "input[name=username], input[name=email], input[type=email]".to_owned()
}

fn default_password_selector() -> String {
    "input[type=password]".to_owned()
}

fn default_submit_selector() -> String {
    "button[type=submit], input[type=submit]".to_owned()
}

/// A profile that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The file could not be read.
    #[error("cannot read the app profile {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid profile (the message names the line).
    #[error("app profile {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// The password is missing, given twice, or its variable is unset.
    #[error("app profile {path}: {message}")]
    Password { path: PathBuf, message: String },
}

/// Reads a profile file.
pub fn load_profile(path: &Path) -> Result<AppProfile, ProfileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_profile(&text, path, |name| std::env::var(name).ok())
}

/// Parses a profile; `variable` reads `password_env`.
pub fn parse_profile(
    text: &str,
    path: &Path,
    variable: impl Fn(&str) -> Option<String>,
) -> Result<AppProfile, ProfileError> {
    let file: ProfileFile = toml::from_str(text).map_err(|error| ProfileError::Parse {
        path: path.to_owned(),
        message: parse_message(text, &error),
    })?;
    let password_error = |message: String| ProfileError::Password {
        path: path.to_owned(),
        message,
    };
    let login = file.login;
    let password = match (login.password, login.password_env) {
        (Some(password), None) => password,
        (None, Some(name)) => variable(&name).map(Secret::new).ok_or_else(|| {
            password_error(format!(
                "[login] password_env names {name}, which is not set"
            ))
        })?,
        (Some(_), Some(_)) => {
            return Err(password_error(
                "[login] has both password and password_env; keep one".to_owned(),
            ));
        }
        (None, None) => {
            return Err(password_error(
                "[login] needs password or password_env (the name of a variable holding it)"
                    .to_owned(),
            ));
        }
    };
    Ok(AppProfile {
        login: LoginForm {
            username: login.username,
            password,
            username_selector: login.username_selector,
            password_selector: login.password_selector,
            submit_selector: login.submit_selector,
        },
        environment_listen: file.environment.listen,
        environment_tls: file.environment.tls,
        expect: file.expect,
    })
}

/// toml's message with the line and column, without the excerpt of the file toml's `Display`
/// adds: that line may hold the password.
pub(crate) fn parse_message(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end();
    let Some(span) = error.span() else {
        return message.to_owned();
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |start| start.chars().count())
        + 1;
    format!("line {line}, column {column}: {message}")
}

/// Why the check could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum AppCheckError {
    /// The emulator or the MCP server did not start (e.g. the address is taken).
    #[error("the emulator did not start")]
    Stack(#[from] testbed_stack::StackError),
    /// The development CA could not be made or loaded.
    #[error("the development CA for TLS could not be set up")]
    Tls(#[from] DevCaError),
    /// An HTTP client trusting the development CA could not be built.
    #[error("the check's HTTP client could not be built")]
    HttpClient(#[source] reqwest::Error),
    /// Chromium did not start.
    #[error("the browser did not start")]
    Browser(#[from] BrowserError),
    /// Nothing answers at the login endpoint.
    #[error("nothing answers at {url} ({reason}): start your app first, with the settings above")]
    AppUnreachable { url: Url, reason: String },
}

/// What a run of the check needs.
#[derive(Debug, Clone)]
pub struct AppCheckOptions {
    /// The environment (API client, connection, resource) the app is configured with.
    pub fixtures: Fixtures,
    /// The app's login endpoint, where the emulator sends the browser.
    pub login_url: Url,
    /// How to sign in, and where the emulator listens.
    pub profile: AppProfile,
    /// Where screenshots of every page go (`<dir>/<sign-in>/`), if anywhere.
    pub screenshots: Option<PathBuf>,
    /// A Chromium to use instead of starting one (under TLS it is told to trust the CA).
    pub chromium: Option<Arc<Chromium>>,
    /// Serve TLS with the development CA kept in this folder (made there on first run); `None`
    /// serves plain HTTP unless the profile says `tls = true`, which uses [`DEFAULT_TLS_DIR`].
    pub tls_dir: Option<PathBuf>,
}

/// The emulator and MCP server started for the check, waiting for [`AppCheck::run`].
#[derive(Debug)]
pub struct AppCheck {
    stack: Stack,
    options: AppCheckOptions,
    /// The development CA under TLS.
    trust: Option<DevCa>,
    /// The check's own calls (the login endpoint, the request log, the flow inspector), trusting
    /// the CA under TLS.
    http: reqwest::Client,
}

impl AppCheck {
    /// Starts the emulator where the profile says (or the fixtures' address) with the
    /// connection's login endpoint at the app, and the reference MCP server.
    pub async fn start(options: AppCheckOptions) -> Result<AppCheck, AppCheckError> {
        let tls_dir = match &options.tls_dir {
            Some(directory) => Some(directory.clone()),
            None => options
                .profile
                .environment_tls
                .then(|| PathBuf::from(DEFAULT_TLS_DIR)),
        };
        let trust = match &tls_dir {
            Some(directory) => Some(DevCa::load_or_create(directory)?),
            None => None,
        };
        let mut http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        if let Some(trust) = &trust {
            let certificate =
                reqwest::Certificate::from_pem(trust.setup().ca_cert_pem().as_bytes())
                    .map_err(AppCheckError::HttpClient)?;
            http = http.tls_certs_merge([certificate]);
        }
        let http = http.build().map_err(AppCheckError::HttpClient)?;
        let mut config = StackConfig::ephemeral(options.fixtures.clone(), None);
        config.tls = trust.as_ref().map(DevCa::setup);
        config.app = AppPlacement::External(options.login_url.clone());
        config.environment_listen = Some(
            options
                .profile
                .environment_listen
                .unwrap_or(options.fixtures.environment.listen),
        );
        config.consent = Some(ConsentMode::Auto);
        let stack = Stack::spawn(config).await?;
        Ok(AppCheck {
            stack,
            options,
            trust,
            http,
        })
    }

    /// What the app must be configured with, one `NAME=value` per line (the secret included:
    /// it is the fixtures' development secret, already in the repository); under TLS also the
    /// variables that make Node, Python and gRPC trust the development CA (`TESTBED_CA_CERT`
    /// names the CA itself).
    pub fn app_settings(&self) -> String {
        use testbed_stack::settings::{LOGIN_SERVICE_SETTINGS, quoted, settings};
        let trust_names: Vec<&str> = self
            .trust
            .iter()
            .flat_map(DevCa::variables)
            .map(|variable| variable.name)
            .collect();
        settings(&self.stack, self.trust.as_ref())
            .into_iter()
            .filter(|setting| {
                LOGIN_SERVICE_SETTINGS.contains(&setting.name)
                    || trust_names.contains(&setting.name)
            })
            .map(|setting| format!("{}={}", setting.name, quoted(&setting.value)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Under TLS, where the development CA is and which trust variable names which file (for
    /// people, after [`AppCheck::app_settings`]); `None` without TLS.
    pub fn tls_description(&self) -> Option<String> {
        let trust = self.trust.as_ref()?;
        let naming = |path: &Path| {
            trust
                .variables()
                .into_iter()
                .filter(|variable| variable.path == path)
                .map(|variable| variable.name)
                .collect::<Vec<_>>()
                .join(", ")
        };
        Some(format!(
            "TLS: the emulator serves HTTPS and gRPC over TLS with a certificate from the development CA\n  {ca}\n\
             {ca_variables} name it; {bundle_variables} name {bundle} (the system's roots, then the CA).\n\
             Start your app with them, so that Node, Python and gRPC trust the emulator.",
            ca = trust.ca_path().display(),
            ca_variables = naming(trust.ca_path()),
            bundle_variables = naming(trust.bundle_path()),
            bundle = trust.bundle_path().display(),
        ))
    }

    /// The environment URL the app must use (`https://…` under TLS).
    pub fn environment_url(&self) -> &Url {
        &self.stack.environment_url
    }

    /// Runs the sign-ins through Chromium and reports each with its diagnostics, calling
    /// `finished` after each one.
    pub async fn run(
        self,
        mut finished: impl FnMut(&ScenarioResult),
    ) -> Result<Report, AppCheckError> {
        let started = Instant::now();
        self.app_answers().await?;
        let mut chromium = match &self.options.chromium {
            Some(chromium) => chromium.clone(),
            None => Arc::new(Chromium::start().await?),
        };
        // Only this check's sessions accept the development CA, not other users of a shared
        // chromedriver.
        if let Some(trust) = &self.trust {
            chromium =
                Arc::new(chromium.trusting_public_key_pin(trust.setup().ca_public_key_pin()));
        }
        let connection_id = self
            .stack
            .fixtures
            .environment
            .resources
            .first()
            .map(|resource| resource.connection.clone())
            .unwrap_or_default();
        let mut earlier: Vec<IssuedLogin> = Vec::new();
        let mut results = Vec::new();
        for (id, title) in SIGN_INS {
            let sign_in = SignIn {
                id,
                title,
                connection_id: &connection_id,
                chromium: &chromium,
            };
            let (result, issued) = sign_in.run(&self, &earlier).await;
            finished(&result);
            results.push(result);
            earlier.extend(issued);
        }
        Ok(Report::new(results, started.elapsed()))
    }
}

impl AppCheck {
    /// Any HTTP answer at the login endpoint will do: the browser would only meet a refused
    /// connection there.
    async fn app_answers(&self) -> Result<(), AppCheckError> {
        let url = self.options.login_url.clone();
        let request = self.http.get(url.clone()).timeout(Duration::from_secs(5));
        match request.send().await {
            Ok(_) => Ok(()),
            Err(error) => Err(AppCheckError::AppUnreachable {
                url,
                reason: crate::error_chain(&error),
            }),
        }
    }
}

struct SignIn<'a> {
    id: &'static str,
    title: &'static str,
    connection_id: &'a str,
    chromium: &'a Arc<Chromium>,
}

impl SignIn<'_> {
    async fn run(
        &self,
        check: &AppCheck,
        earlier: &[IssuedLogin],
    ) -> (ScenarioResult, Vec<IssuedLogin>) {
        let started = Instant::now();
        let options = &check.options;
        let mut agent = BrowserAgent::new(self.chromium.clone());
        agent.login = Some(options.profile.login.clone());
        agent.consent = ConsentChoice::Approve;
        agent.screenshots = options
            .screenshots
            .as_ref()
            .map(|directory| directory.join(self.id.trim_start_matches("app-check/")));
        let mut driver = DriverConfig::new(check.stack.mcp_url.clone());
        driver.redirect_uri = Url::parse(REDIRECT_URI).expect("a constant URL");
        driver.client_name = "testbed app check".to_owned();
        driver.extra_scopes = vec!["openid".to_owned(), "email".to_owned()];
        driver.timeout = Duration::from_secs(15);
        driver.user_agent = UserAgent::Browser(agent);
        driver.ca_cert_pem = check
            .trust
            .as_ref()
            .map(|trust| trust.setup().ca_cert_pem().to_owned());

        let since = wall_clock_millis();
        let (hops, outcome) = mcp_driver::run_flow_recorded(&driver).await;
        // The emulator knows what it sent to the login page, even when the app's login endpoint
        // redirects at once and the browser never settles on it; the browser's pages are the
        // fallback.
        let issued =
            match issued_by_emulator(&check.http, &check.stack.environment_url, since).await {
                Some(issued) => Some(issued),
                None => issued_login(&hops, &options.login_url).map(|current| IssuedInSignIn {
                    current,
                    superseded: Vec::new(),
                }),
            };
        let log = request_log(&check.http, &check.stack.environment_url, since).await;

        let mut checks = Vec::new();
        let mut check_of = |name: &str,
                            description: &str,
                            status: CheckStatus,
                            details: Option<Value>,
                            error: Option<String>| {
            checks.push(Check {
                id: format!("{}/{name}", self.id),
                name: name.to_owned(),
                description: description.to_owned(),
                status,
                spec_references: HAND_OFF_SPEC
                    .iter()
                    .map(|each| (*each).to_owned())
                    .collect(),
                details,
                error_message: error,
            });
        };

        match &issued {
            Some(issued) => check_of(
                "login-page",
                "The browser reaches the app's login page with login_request_id and state",
                CheckStatus::Success,
                Some(if issued.superseded.is_empty() {
                    json!({ "login_request_id": issued.current.login_request_id })
                } else {
                    json!({
                        "login_request_id": issued.current.login_request_id,
                        "superseded_login_request_ids": issued
                            .superseded
                            .iter()
                            .map(|each| each.login_request_id.as_str())
                            .collect::<Vec<_>>(),
                    })
                }),
                None,
            ),
            None => check_of(
                "login-page",
                "The browser reaches the app's login page with login_request_id and state",
                CheckStatus::Failure,
                Some(json!({ "browser": hops_summary(&hops) })),
                Some(format!(
                    "the browser never loaded {} with login_request_id and state",
                    options.login_url
                )),
            ),
        }

        match log {
            Ok(records) => {
                let context = SignInContext {
                    connection_id: self.connection_id,
                    current: issued.as_ref().map(|issued| &issued.current),
                    superseded: issued
                        .as_ref()
                        .map_or(&[], |issued| issued.superseded.as_slice()),
                    earlier,
                };
                let diagnostics = diagnose(&records, &context);
                if diagnostics.is_empty() {
                    check_of(
                        "hand-off",
                        "The app posts the user, then redirects to partner:callback with the state unchanged",
                        CheckStatus::Success,
                        None,
                        None,
                    );
                }
                for diagnostic in diagnostics {
                    check_of(
                        diagnostic.mistake.id(),
                        diagnostic.mistake.summary(),
                        CheckStatus::Failure,
                        Some(json!({
                            "evidence": diagnostic.evidence,
                            "fix": diagnostic.mistake.fix(),
                        })),
                        Some(diagnostic.to_string()),
                    );
                }
            }
            Err(message) => check_of(
                "hand-off",
                "The app posts the user, then redirects to partner:callback with the state unchanged",
                CheckStatus::Failure,
                None,
                Some(format!("cannot read the emulator's request log: {message}")),
            ),
        }

        match &outcome {
            Ok(report) => {
                check_of(
                    "flow-completes",
                    "The MCP client gets tokens and calls the MCP server",
                    CheckStatus::Success,
                    Some(json!({ "whoami": report.whoami })),
                    None,
                );
                claims_checks(report, &options.profile.expect, &mut check_of);
            }
            Err(error) => check_of(
                "flow-completes",
                "The MCP client gets tokens and calls the MCP server",
                CheckStatus::Failure,
                Some(json!({ "browser": hops_summary(&hops) })),
                Some(error.to_string()),
            ),
        }

        let failed = checks
            .iter()
            .any(|check| check.status == CheckStatus::Failure);
        let result = ScenarioResult {
            id: self.id.to_owned(),
            title: self.title.to_owned(),
            path: options.login_url.to_string(),
            status: if failed {
                ScenarioStatus::Failed
            } else {
                ScenarioStatus::Passed
            },
            baseline_reason: None,
            duration_ms: started.elapsed().as_millis(),
            checks,
        };
        let all_issued = issued
            .map(|issued| {
                let mut all = issued.superseded;
                all.push(issued.current);
                all
            })
            .unwrap_or_default();
        (result, all_issued)
    }
}

/// The profile's `[expect]` against the ID token (the app's `email`) and `whoami`.
fn claims_checks(
    report: &FlowReport,
    expect: &ExpectedUser,
    check_of: &mut impl FnMut(&str, &str, CheckStatus, Option<Value>, Option<String>),
) {
    let Some(email) = &expect.email else {
        return;
    };
    let seen = report
        .id_token_claims
        .as_ref()
        .and_then(|claims| claims.get("email"))
        .and_then(Value::as_str);
    let (status, error) = if seen == Some(email.as_str()) {
        (CheckStatus::Success, None)
    } else {
        (
            CheckStatus::Failure,
            Some(format!(
                "the ID token's email is {seen:?}; the profile expects {email:?}: your app posted another user or no email"
            )),
        )
    };
    check_of(
        "claims",
        "The tokens carry the claims the profile expects",
        status,
        Some(json!({ "email": seen })),
        error,
    );
}

/// The login requests the emulator issued during one sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct IssuedInSignIn {
    /// The one the sign-in settled on.
    current: IssuedLogin,
    /// Those issued before it, oldest first: the browser loaded the authorization URL again.
    superseded: Vec<IssuedLogin>,
}

/// One login request the emulator issued, as its flow inspector shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct IssuedFlow {
    issued: IssuedLogin,
    /// The flow's authorization code was exchanged for tokens.
    tokens_issued: bool,
}

/// The login requests and states the emulator sent to the login page during this sign-in: the
/// flows its inspector opened since `since` (a flow is named by its login request id), each
/// with the `state` in its authorize redirect (`/_emulator/flows`, over HTTP).
async fn issued_by_emulator(
    http: &reqwest::Client,
    environment_url: &Url,
    since: u64,
) -> Option<IssuedInSignIn> {
    #[derive(Deserialize)]
    struct Flows {
        flows: Vec<FlowSummary>,
    }
    #[derive(Deserialize)]
    struct FlowSummary {
        id: String,
        started_at_ms: u64,
        #[serde(default)]
        tokens_issued: bool,
    }
    #[derive(Deserialize)]
    struct Flow {
        hop_list: Vec<HopView>,
    }
    #[derive(Deserialize)]
    struct HopView {
        response: HopResponse,
    }
    #[derive(Deserialize)]
    struct HopResponse {
        location: Option<String>,
    }
    let get = |path: String| {
        let mut url = environment_url.clone();
        url.set_path(&path);
        async move {
            http.get(url)
                .send()
                .await
                .ok()?
                .error_for_status()
                .ok()?
                .json::<Value>()
                .await
                .ok()
        }
    };
    let flows: Flows = serde_json::from_value(get("/_emulator/flows".to_owned()).await?).ok()?;
    let mut opened: Vec<FlowSummary> = flows
        .flows
        .into_iter()
        .filter(|flow| flow.started_at_ms >= since)
        .collect();
    opened.sort_by_key(|flow| flow.started_at_ms);
    let mut issued = Vec::new();
    for summary in opened {
        let Some(flow) = get(format!("/_emulator/flows/{}", summary.id)).await else {
            continue;
        };
        let Ok(flow) = serde_json::from_value::<Flow>(flow) else {
            continue;
        };
        let state = flow.hop_list.iter().find_map(|hop| {
            let location = Url::parse(hop.response.location.as_deref()?).ok()?;
            let has_this_request = location
                .query_pairs()
                .any(|(name, value)| name == "login_request_id" && value == summary.id.as_str());
            has_this_request
                .then(|| {
                    location
                        .query_pairs()
                        .find(|(name, _)| name == "state")
                        .map(|(_, value)| value.into_owned())
                })
                .flatten()
        });
        if let Some(state) = state {
            issued.push(IssuedFlow {
                issued: IssuedLogin {
                    login_request_id: summary.id,
                    state_prefix: state_prefix(&state),
                },
                tokens_issued: summary.tokens_issued,
            });
        }
    }
    settled(issued)
}

/// Which of the login requests issued during one sign-in (oldest first) the sign-in settled on:
/// the one whose code got tokens, else the newest (a new load of the authorization URL replaces
/// the page of the one before). The others are superseded.
fn settled(mut issued: Vec<IssuedFlow>) -> Option<IssuedInSignIn> {
    let position = issued
        .iter()
        .rposition(|flow| flow.tokens_issued)
        .or_else(|| issued.len().checked_sub(1))?;
    let current = issued.remove(position).issued;
    Some(IssuedInSignIn {
        current,
        superseded: issued.into_iter().map(|flow| flow.issued).collect(),
    })
}

/// The login request and state the browser brought to the app's login page (the last time, if
/// it came there more than once).
fn issued_login(hops: &[Hop], login_url: &Url) -> Option<IssuedLogin> {
    hops.iter().rev().find_map(|hop| {
        let url = Url::parse(&hop.url).ok()?;
        let same_page = url.origin() == login_url.origin() && url.path() == login_url.path();
        if !same_page {
            return None;
        }
        let value = |name: &str| {
            url.query_pairs()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.into_owned())
        };
        Some(IssuedLogin {
            login_request_id: value("login_request_id")?,
            state_prefix: state_prefix(&value("state")?),
        })
    })
}

fn hops_summary(hops: &[Hop]) -> Vec<String> {
    hops.iter().map(ToString::to_string).collect()
}

/// The emulator's request log since `since` (wall-clock ms), oldest first.
async fn request_log(
    http: &reqwest::Client,
    environment_url: &Url,
    since: u64,
) -> Result<Vec<LoggedRequest>, String> {
    #[derive(Deserialize)]
    struct Log {
        requests: Vec<LoggedRequest>,
    }
    let mut url = environment_url.clone();
    url.set_path("/_emulator/requests");
    url.set_query(Some("limit=1000"));
    let response = http
        .get(url)
        .send()
        .await
        .map_err(|error| error.to_string())?;
    if !response.status().is_success() {
        return Err(format!("{} from the control API", response.status()));
    }
    let log: Log = response.json().await.map_err(|error| error.to_string())?;
    let mut records: Vec<LoggedRequest> = log
        .requests
        .into_iter()
        .filter(|record| record.at >= since)
        .collect();
    records.reverse();
    Ok(records)
}

fn wall_clock_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AppProfile, ProfileError> {
        parse_profile(text, Path::new("profile.toml"), |name| {
            (name == "APP_PASSWORD").then(|| "from-env".to_owned())
        })
    }

    #[test]
    fn a_profile_with_defaults_parses_and_hides_the_password() {
        let profile = parse("[login]\nusername = \"ada@example.com\"\npassword = \"s3cr3t-pw\"\n")
            .expect("a valid profile");
        assert_eq!(profile.login.username, "ada@example.com");
        assert_eq!(profile.login.password.expose(), "s3cr3t-pw");
        assert_eq!(profile.login.password_selector, "input[type=password]");
        assert_eq!(profile.environment_listen, None);
        assert!(!profile.environment_tls);
        assert!(!format!("{profile:?}").contains("s3cr3t"), "{profile:?}");
    }

    #[test]
    fn the_password_can_come_from_a_variable() {
        let profile = parse(
            "[login]\nusername = \"u\"\npassword_env = \"APP_PASSWORD\"\n\n[environment]\nlisten = \"127.0.0.1:9400\"\ntls = true\n\n[expect]\nemail = \"u@example.com\"\n",
        )
        .expect("a valid profile");
        assert_eq!(profile.login.password.expose(), "from-env");
        assert_eq!(
            profile.environment_listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 9400)))
        );
        assert!(profile.environment_tls);
        assert_eq!(profile.expect.email.as_deref(), Some("u@example.com"));
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_the_line() {
        let error =
            parse("[login]\nusername = \"u\"\npassword = \"p\"\nusernme_selector = \"#u\"\n")
                .expect_err("an unknown key");
        let message = error.to_string();
        assert!(
            message.starts_with(
                "app profile profile.toml: line 4, column 1: unknown field `usernme_selector`"
            ),
            "{message}"
        );
    }

    #[test]
    fn a_malformed_password_line_is_located_without_quoting_it() {
        let error = parse("[login]\nusername = \"u\"\npassword = hunter2-s3cr3t\n")
            .expect_err("an unquoted string");
        let message = error.to_string();
        assert!(
            message.starts_with("app profile profile.toml: line 3, column 12: "),
            "{message}"
        );
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn a_missing_or_doubled_password_is_named() {
        let missing = parse("[login]\nusername = \"u\"\n").expect_err("no password");
        assert_eq!(
            missing.to_string(),
            "app profile profile.toml: [login] needs password or password_env (the name of a variable holding it)"
        );
        let unset = parse("[login]\nusername = \"u\"\npassword_env = \"NOPE\"\n")
            .expect_err("unset variable");
        assert_eq!(
            unset.to_string(),
            "app profile profile.toml: [login] password_env names NOPE, which is not set"
        );
        let both =
            parse("[login]\nusername = \"u\"\npassword = \"p\"\npassword_env = \"APP_PASSWORD\"\n")
                .expect_err("both");
        assert_eq!(
            both.to_string(),
            "app profile profile.toml: [login] has both password and password_env; keep one"
        );
    }

    #[test]
    fn a_sign_in_settles_on_the_login_request_that_got_tokens_else_the_newest() {
        let flow = |login_request_id: &str, tokens_issued: bool| IssuedFlow {
            issued: IssuedLogin {
                login_request_id: login_request_id.to_owned(),
                state_prefix: format!("{login_request_id}-state"),
            },
            tokens_issued,
        };
        let ids = |settled: Option<IssuedInSignIn>| {
            settled.map(|settled| {
                (
                    settled.current.login_request_id,
                    settled
                        .superseded
                        .into_iter()
                        .map(|each| each.login_request_id)
                        .collect::<Vec<_>>(),
                )
            })
        };
        assert_eq!(
            ids(settled(vec![
                flow("lri_1", false),
                flow("lri_2", false),
                flow("lri_3", false)
            ])),
            Some((
                "lri_3".to_owned(),
                vec!["lri_1".to_owned(), "lri_2".to_owned()]
            ))
        );
        assert_eq!(
            ids(settled(vec![flow("lri_1", true), flow("lri_2", false)])),
            Some(("lri_1".to_owned(), vec!["lri_2".to_owned()]))
        );
        assert_eq!(
            ids(settled(vec![flow("lri_1", false)])),
            Some(("lri_1".to_owned(), Vec::new()))
        );
        assert_eq!(ids(settled(Vec::new())), None);
    }

    #[test]
    fn the_login_page_visit_gives_the_issued_login_request_and_state_prefix() {
        let login_url = Url::parse("http://127.0.0.1:9401/login").expect("a URL");
        let hop = |url: &str| Hop {
            phase: mcp_driver::Phase::Authorization,
            method: "GET".to_owned(),
            url: url.to_owned(),
            status: 200,
            location: None,
            cache_control: None,
            detail: None,
        };
        let hops = [
            hop("http://127.0.0.1:9400/oauth/authorize?client_id=c&state=abcdef…"),
            hop("http://127.0.0.1:9401/login?login_request_id=lri_1&state=qrstuv…"),
        ];
        assert_eq!(
            issued_login(&hops, &login_url),
            Some(IssuedLogin {
                login_request_id: "lri_1".to_owned(),
                state_prefix: "qrstuv".to_owned(),
            })
        );
        assert_eq!(issued_login(&hops[..1], &login_url), None);
    }
}
