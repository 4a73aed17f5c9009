//! A model-based property test of the whole sign-in over HTTP (issue 5, item 1): random
//! interleavings of concurrent flows with swapped `state`s, users posted to another flow's login
//! request, swapped codes, clients and verifiers, replayed codes and refresh tokens, time moved
//! past each lifetime, and restarts of the emulator on the same state directory.
//!
//! Each case runs one emulator (random ids, a manual clock, a fresh state directory) with two DCR
//! clients registered at the start and the three personas of `fixtures/users.toml`. The model
//! keeps, per flow, what the emulator should hold (login request, posted user, code, refresh
//! tokens) and predicts every answer down to its status and exact error: the OAuth error body of
//! `/oauth/token`, the gateway body of the user-details call, the partner callback's redirect to
//! the hosted `invalid_state` page. On top of the model it checks that every access token carries
//! exactly the persona posted to its flow's login request, its own client, its resource and the
//! granted scopes; that one persona is one `usr_…` id, across restarts too; that no code, login
//! request or refresh token works twice; and that a flow nothing was tampered with, nothing
//! expired in and nothing was lost to a restart in completes, as its own persona.
//!
//! The case count is fixed for CI ([`CASES`]); `PROPTEST_CASES=500 cargo test -p
//! scalekit-emulator --test http properties` soaks it. Failing cases are persisted by proptest in
//! `tests/http/properties.regressions` (committed) and replayed first on every run.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use base64::Engine as _;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config as ProptestConfig, FileFailurePersistence};
use reqwest::StatusCode;
use scalekit_emulator::types::{PkceVerifier, pkce_s256};
use scalekit_emulator::{App, Config, Deps, ManualClock, Signer};
use scalekit_wire::Secret;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::helpers::{
    FIXTURE, RESOURCE, SERVER_URL, TestEnv, json as json_body, location, query_param,
};

/// Cases per run under CI; `PROPTEST_CASES` overrides it.
const CASES: u32 = 32;

const USERS: &str = include_str!("../../../../fixtures/users.toml");
const LOGIN_ENDPOINT: &str = "http://127.0.0.1:8401/login?";
const SCOPE_OFFLINE: &str = "openid email offline_access mcp:read";
const SCOPE_ONLINE: &str = "openid email mcp:read";

const LOGIN_NOT_FOUND: &str = "login request not found: it is unknown, expired, already completed or belongs to another connection";
const STATE_UNKNOWN: &str = "the sign-in request is unknown or was already used";
const STATE_EXPIRED: &str = "the sign-in request expired";
const STATE_NOT_POSTED: &str = "no user was submitted for this sign-in request";
const CODE_UNKNOWN: &str = "the authorization code is invalid or expired";
const CODE_EXPIRED: &str = "the authorization code expired";
const CODE_USED: &str = "the authorization code was already used";
const CODE_OTHER_CLIENT: &str = "the authorization code was issued to another client";
const CODE_VERIFIER: &str = "code_verifier does not match the code_challenge";
const REFRESH_UNKNOWN: &str = "the refresh token is invalid, expired or revoked";
const REFRESH_EXPIRED: &str = "the refresh token expired";
const REFRESH_USED: &str = "the refresh token was already used; the grant is revoked";
const REFRESH_OTHER_CLIENT: &str = "the refresh token was issued to another client";

/// `CASES` unless `PROPTEST_CASES` is set (proptest's default configuration reads it, and
/// overriding `cases` unconditionally would silence it). Failures persist next to this file: the
/// default `SourceParallel` cannot find a `lib.rs` from an integration test.
fn config() -> ProptestConfig {
    let mut config = ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        // Each shrink step replays a whole case over HTTP: bound the time spent shrinking.
        max_shrink_time: 120_000,
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = CASES;
    }
    config
}

/// One signing key for every case: RSA generation is the slowest part of a start.
fn signing_key_pem() -> Secret {
    static PEM: OnceLock<Secret> = OnceLock::new();
    PEM.get_or_init(|| {
        Signer::generate()
            .expect("an RSA key")
            .private_key_pem()
            .clone()
    })
    .clone()
}

/// A unique state directory under the system's temporary directory, removed on drop.
struct StateDir(PathBuf);

impl StateDir {
    fn new() -> StateDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default();
        StateDir(std::env::temp_dir().join(format!(
            "scalekit-emulator-properties-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )))
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running emulator on a state directory, with random ids as in production.
struct Emulator {
    env: TestEnv,
    task: JoinHandle<std::io::Result<()>>,
}

impl Emulator {
    /// Starts serving; `browser` is the one cookie jar of every flow (a browser keeps its
    /// sign-in cookies across a restart of the server).
    async fn start(
        state_dir: &Path,
        clock: &ManualClock,
        browser: &Arc<reqwest::cookie::Jar>,
    ) -> Result<Emulator> {
        let config = Config::from_toml_str(FIXTURE)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let deps = Deps {
            clock: Arc::new(clock.clone()),
            signing_key_pem: Some(signing_key_pem()),
            state_dir: Some(state_dir.to_owned()),
            ..Deps::default()
        };
        let app = App::from_listener_with(listener, config, deps)?;
        let base = app.base_url().as_str().trim_end_matches('/').to_owned();
        let task = tokio::spawn(app.serve());
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_provider(browser.clone())
            .build()?;
        let env = TestEnv {
            base,
            http,
            clock: clock.clone(),
        };
        Ok(Emulator { env, task })
    }

    /// Stops serving: the task is aborted, which closes the listener and every connection.
    async fn stop(&mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

/// A persona of `fixtures/users.toml`: the user object "Your App" posts, and what a token must
/// say about it.
struct Persona {
    claims: Value,
    sub: String,
    email: String,
}

fn personas() -> Result<Vec<Persona>> {
    let users: toml::Table = toml::from_str(USERS)?;
    let entries = users
        .get("personas")
        .and_then(toml::Value::as_array)
        .context("personas")?;
    let mut personas = Vec::new();
    for entry in entries {
        let claims = serde_json::to_value(entry.get("claims").context("claims")?)?;
        let sub = claims["sub"].as_str().context("sub")?.to_owned();
        let email = claims["email"].as_str().context("email")?.to_owned();
        personas.push(Persona { claims, sub, email });
    }
    ensure!(personas.len() == 3, "three personas expected");
    Ok(personas)
}

/// A distinct, well-formed PKCE verifier per flow.
fn verifier(flow: usize) -> String {
    format!("verifier-{flow:0>40}")
}

/// A distinct loopback redirect URI per flow (the registered one matches on any port).
fn redirect_uri(flow: usize) -> String {
    format!("http://127.0.0.1:{}/callback", 6000 + flow)
}

fn client_state(flow: usize) -> String {
    format!("client-state-{flow}")
}

/// One step of a generated run. Indices pick flows among those started so far. Where an op has
/// an optional second index, `None` is the honest step and `Some` uses that flow's artifact
/// instead of the flow's own (a swap when it picks another flow).
#[derive(Debug, Clone)]
enum Op {
    /// Authorize for client `client` (a DCR client) as persona `persona`.
    Start {
        client: usize,
        persona: usize,
        offline: bool,
    },
    /// "Your App" posts `flow`'s persona to `to`'s login request.
    Post { flow: Index, to: Option<Index> },
    /// The browser comes back for `flow` with `state_of`'s state.
    Callback {
        flow: Index,
        state_of: Option<Index>,
    },
    /// `flow`'s client exchanges `code_of`'s code with `flow`'s verifier (and the code's own
    /// redirect URI, so that the client and PKCE checks are what decides). Once the code was
    /// redeemed, the honest form is a replay.
    Exchange { flow: Index, code_of: Option<Index> },
    /// `flow`'s client refreshes with `token_of`'s current or rotated-out refresh token.
    Refresh {
        flow: Index,
        token_of: Option<Index>,
        rotated_out: bool,
    },
    /// The next honest step of a flow, whatever stage it is at.
    Step(Index),
    /// Moves the clock: 30 s, or 601 s (past the login-request and code lifetimes).
    Advance(u64),
    /// Stops the emulator and starts another on the same state directory and clock.
    Restart,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    // Mostly another flow's artifact, so that swaps happen while there is something to swap.
    let other = || proptest::option::weighted(0.5, any::<Index>());
    prop_oneof![
        10 => (0..2usize, 0..3usize, prop::bool::weighted(0.7)).prop_map(
            |(client, persona, offline)| Op::Start { client, persona, offline }
        ),
        6 => (any::<Index>(), other()).prop_map(|(flow, to)| Op::Post { flow, to }),
        6 => (any::<Index>(), other())
            .prop_map(|(flow, state_of)| Op::Callback { flow, state_of }),
        6 => (any::<Index>(), other())
            .prop_map(|(flow, code_of)| Op::Exchange { flow, code_of }),
        6 => (any::<Index>(), other(), prop::bool::weighted(0.3)).prop_map(
            |(flow, token_of, rotated_out)| Op::Refresh { flow, token_of, rotated_out }
        ),
        20 => any::<Index>().prop_map(Op::Step),
        2 => prop_oneof![2 => Just(30u64), 1 => Just(601u64)].prop_map(Op::Advance),
        1 => Just(Op::Restart),
    ]
}

struct LoginModel {
    expires_at: u64,
    /// The persona posted for it, and the `req_…` answered.
    posted: Option<(usize, String)>,
}

struct CodeModel {
    value: String,
    expires_at: u64,
    /// False once the emulator no longer holds it (expired on use, or lost to a restart).
    present: bool,
    redeemed: bool,
}

struct RefreshModel {
    value: String,
    /// False once revoked.
    present: bool,
    rotated: bool,
}

/// Everything the model knows about one flow.
struct FlowModel {
    client: usize,
    persona: usize,
    scope: &'static str,
    login_request_id: String,
    login_state: String,
    /// Until the callback consumes it, expiry drops it or a restart loses it.
    login: Option<LoginModel>,
    /// The persona posted to this flow's login request: the one its tokens must carry.
    signed_in_as: Option<usize>,
    code: Option<CodeModel>,
    refresh_tokens: Vec<RefreshModel>,
    /// Its code was exchanged for tokens.
    completed: bool,
    /// Another flow's persona was posted to its login request.
    tampered: bool,
    /// Its login request or code was refused as expired.
    expired: bool,
    /// A restart dropped its login request or unredeemed code.
    lost: bool,
}

/// What the model makes of a login request when it is used.
enum LoginView {
    Live {
        posted: Option<(usize, String)>,
    },
    /// Past its lifetime: the emulator drops it on use (or a sweep already did).
    Expired,
    Gone,
}

/// The emulator, the model, and the facts every step must keep.
struct Run {
    state_dir: StateDir,
    clock: ManualClock,
    /// The cookies of the one browser every flow runs in (Decisions §9).
    browser: Arc<reqwest::cookie::Jar>,
    emulator: Emulator,
    personas: Vec<Persona>,
    clients: Vec<String>,
    login_lifetime: u64,
    code_lifetime: u64,
    flows: Vec<FlowModel>,
    /// `usr_…` per persona: one connection, so one id per persona, across restarts too.
    users: HashMap<usize, String>,
    login_request_ids: HashSet<String>,
    consumed_logins: HashSet<String>,
    redeemed_codes: HashSet<String>,
    used_refresh_tokens: HashSet<String>,
    signature_verified: bool,
}

impl Run {
    async fn start() -> Result<Run> {
        let config = Config::from_toml_str(FIXTURE)?;
        let resource = &config.resources[0];
        let state_dir = StateDir::new();
        let clock = ManualClock::now();
        let browser = Arc::new(reqwest::cookie::Jar::default());
        let emulator = Emulator::start(&state_dir.0, &clock, &browser).await?;
        let mut run = Run {
            state_dir,
            clock,
            browser,
            emulator,
            personas: personas()?,
            clients: Vec::new(),
            login_lifetime: resource.login_request_lifetime_secs,
            code_lifetime: resource.authorization_code_lifetime_secs,
            flows: Vec::new(),
            users: HashMap::new(),
            login_request_ids: HashSet::new(),
            consumed_logins: HashSet::new(),
            redeemed_codes: HashSet::new(),
            used_refresh_tokens: HashSet::new(),
            signature_verified: false,
        };
        for name in ["Properties one", "Properties two"] {
            let client_id = run.register(name).await?;
            run.clients.push(client_id);
        }
        Ok(run)
    }

    fn env(&self) -> &TestEnv {
        &self.emulator.env
    }

    async fn register(&self, name: &str) -> Result<String> {
        let env = self.env();
        let response = env
            .http
            .post(env.url(&format!("/api/v1/resources/{RESOURCE}/clients:register")))
            .json(&json!({
                "client_name": name,
                "redirect_uris": ["http://127.0.0.1/callback"],
                "token_endpoint_auth_method": "none",
            }))
            .send()
            .await?;
        let body = json_body(response, StatusCode::CREATED).await?;
        Ok(body["client_id"].as_str().context("client_id")?.to_owned())
    }

    fn now(&self) -> u64 {
        self.clock.seconds()
    }

    async fn apply(&mut self, op: &Op) -> Result<()> {
        if self.flows.is_empty() && !matches!(op, Op::Start { .. } | Op::Advance(_) | Op::Restart) {
            return Ok(());
        }
        // What a step uses: first flows whose artifact would still work, then flows that can
        // be driven to have one, then flows that ever had one.
        let posted = |model: &FlowModel| {
            model
                .login
                .as_ref()
                .is_some_and(|login| login.posted.is_some())
        };
        let has_login = |model: &FlowModel| model.login.is_some();
        let fresh_code = |model: &FlowModel| {
            model
                .code
                .as_ref()
                .is_some_and(|code| code.present && !code.redeemed)
        };
        let has_code = |model: &FlowModel| model.code.is_some();
        let live_refresh = |model: &FlowModel| {
            model
                .refresh_tokens
                .last()
                .is_some_and(|token| token.present)
        };
        let may_refresh = |model: &FlowModel| {
            model.scope == SCOPE_OFFLINE && (model.login.is_some() || fresh_code(model))
        };
        let has_refresh = |model: &FlowModel| !model.refresh_tokens.is_empty();
        match op {
            Op::Start {
                client,
                persona,
                offline,
            } => self.start_flow(*client, *persona, *offline).await,
            Op::Post { flow, to } => {
                let (flow, to) = self.pick_pair(flow, to.as_ref(), &[&has_login]);
                self.post(flow, to).await
            }
            Op::Callback { flow, state_of } => {
                let (_, owner) = self.pick_pair(flow, state_of.as_ref(), &[&posted, &has_login]);
                self.callback(owner).await
            }
            Op::Exchange { flow, code_of } => {
                let (flow, owner) = self.pick_pair(
                    flow,
                    code_of.as_ref(),
                    &[&fresh_code, &has_login, &has_code],
                );
                if code_of.is_some() {
                    self.prepare(owner, fresh_code).await?;
                }
                self.exchange(flow, owner).await
            }
            Op::Refresh {
                flow,
                token_of,
                rotated_out,
            } => {
                let (flow, owner) = self.pick_pair(
                    flow,
                    token_of.as_ref(),
                    &[&live_refresh, &may_refresh, &has_refresh],
                );
                if token_of.is_some() {
                    self.prepare(owner, has_refresh).await?;
                }
                self.refresh(flow, owner, *rotated_out).await
            }
            Op::Step(flow) => self.step(flow.index(self.flows.len())).await,
            Op::Advance(seconds) => {
                self.clock.advance(*seconds);
                Ok(())
            }
            Op::Restart => self.restart().await,
        }
    }

    /// Drives `owner` honestly (post, callback, exchange) until `ready`, so that a swap has
    /// something to swap. A flow past its code is left alone: its next step would be a refresh.
    async fn prepare(&mut self, owner: usize, ready: impl Fn(&FlowModel) -> bool) -> Result<()> {
        for _ in 0..3 {
            let model = &self.flows[owner];
            let progressable = model.login.is_some()
                || model
                    .code
                    .as_ref()
                    .is_some_and(|code| code.present && !code.redeemed);
            if ready(model) || !progressable {
                break;
            }
            self.step(owner).await?;
        }
        Ok(())
    }

    /// The acting flow and the flow whose artifact it uses. The owner is picked among the flows
    /// that pass the first of `tiers` any flow passes (else among all), so that generated steps
    /// rarely miss: honestly (`other` is `None`) the owner is the acting flow; otherwise the
    /// acting flow is another one, when there is another.
    fn pick_pair(
        &self,
        flow: &Index,
        other: Option<&Index>,
        tiers: &[&dyn Fn(&FlowModel) -> bool],
    ) -> (usize, usize) {
        let holders: Vec<usize> = tiers
            .iter()
            .map(|test| {
                (0..self.flows.len())
                    .filter(|&index| test(&self.flows[index]))
                    .collect::<Vec<usize>>()
            })
            .find(|holders| !holders.is_empty())
            .unwrap_or_default();
        let among = |index: &Index| {
            if holders.is_empty() {
                index.index(self.flows.len())
            } else {
                holders[index.index(holders.len())]
            }
        };
        match other {
            None => {
                let flow = among(flow);
                (flow, flow)
            }
            Some(other) => {
                // A swap: the acting flow is another flow than the owner, when there is one.
                let owner = among(other);
                let others = self.flows.len() - 1;
                if others == 0 {
                    return (owner, owner);
                }
                let flow = flow.index(others);
                (if flow >= owner { flow + 1 } else { flow }, owner)
            }
        }
    }

    async fn start_flow(&mut self, client: usize, persona: usize, offline: bool) -> Result<()> {
        let index = self.flows.len();
        let challenge =
            pkce_s256(&PkceVerifier::parse(&verifier(index)).context("a well-formed verifier")?);
        let scope = if offline { SCOPE_OFFLINE } else { SCOPE_ONLINE };
        let redirect = redirect_uri(index);
        let state = client_state(index);
        let env = self.env();
        let response = env
            .http
            .get(env.url("/oauth/authorize"))
            .query(&[
                ("response_type", "code"),
                ("client_id", self.clients[client].as_str()),
                ("redirect_uri", redirect.as_str()),
                ("scope", scope),
                ("state", state.as_str()),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
                ("resource", SERVER_URL),
            ])
            .send()
            .await?;
        let login = location(response, StatusCode::FOUND)?;
        ensure!(login.as_str().starts_with(LOGIN_ENDPOINT), "{login}");
        let login_request_id = query_param(&login, "login_request_id")?;
        let login_state = query_param(&login, "state")?;
        ensure!(login_request_id.starts_with("lri_"), "{login_request_id}");
        ensure!(
            self.login_request_ids.insert(login_request_id.clone()),
            "a login request id was handed out twice"
        );
        self.flows.push(FlowModel {
            client,
            persona,
            scope,
            login_request_id,
            login_state,
            login: Some(LoginModel {
                expires_at: self.now() + self.login_lifetime,
                posted: None,
            }),
            signed_in_as: None,
            code: None,
            refresh_tokens: Vec::new(),
            completed: false,
            tampered: false,
            expired: false,
            lost: false,
        });
        Ok(())
    }

    fn login_view(&self, flow: usize) -> LoginView {
        match &self.flows[flow].login {
            None => LoginView::Gone,
            Some(login) if login.expires_at <= self.now() => LoginView::Expired,
            Some(login) => LoginView::Live {
                posted: login.posted.clone(),
            },
        }
    }

    /// The emulator dropped an expired login request on use.
    fn drop_expired_login(&mut self, flow: usize) {
        let model = &mut self.flows[flow];
        model.login = None;
        model.expired = true;
    }

    /// "Your App" posts `flow`'s persona to `target`'s login request.
    async fn post(&mut self, flow: usize, target: usize) -> Result<()> {
        let persona = self.flows[flow].persona;
        let env = self.env();
        let management = env.management_token().await?;
        let login_request_id = self.flows[target].login_request_id.clone();
        let response = env
            .post_user(
                &login_request_id,
                Some(&management),
                &self.personas[persona].claims,
            )
            .await?;
        if flow != target {
            self.flows[target].tampered = true;
        }
        match self.login_view(target) {
            LoginView::Gone => {
                gateway_error(response, StatusCode::NOT_FOUND, LOGIN_NOT_FOUND).await
            }
            LoginView::Expired => {
                self.drop_expired_login(target);
                gateway_error(response, StatusCode::NOT_FOUND, LOGIN_NOT_FOUND).await
            }
            LoginView::Live { posted: None } => {
                let body = json_body(response, StatusCode::OK).await?;
                let auth_request_id = body["auth_request_id"]
                    .as_str()
                    .context("auth_request_id")?
                    .to_owned();
                ensure!(auth_request_id.starts_with("req_"), "{body}");
                ensure!(
                    body == json!({"auth_request_id": auth_request_id}),
                    "{body}"
                );
                let model = &mut self.flows[target];
                if let Some(login) = &mut model.login {
                    login.posted = Some((persona, auth_request_id));
                }
                model.signed_in_as = Some(persona);
                Ok(())
            }
            LoginView::Live {
                posted: Some((posted, auth_request_id)),
            } => {
                // The same user again is idempotent; another user is a conflict.
                if self.personas[posted].sub == self.personas[persona].sub {
                    let body = json_body(response, StatusCode::OK).await?;
                    ensure!(
                        body == json!({"auth_request_id": auth_request_id}),
                        "{body}"
                    );
                    Ok(())
                } else {
                    let message = format!(
                        "a different user was already submitted for login request {login_request_id}"
                    );
                    gateway_error(response, StatusCode::CONFLICT, &message).await
                }
            }
        }
    }

    /// The browser comes back with `owner`'s state: whatever happens happens to `owner`'s flow.
    async fn callback(&mut self, owner: usize) -> Result<()> {
        let response = self.env().callback(&self.flows[owner].login_state).await?;
        match self.login_view(owner) {
            LoginView::Gone => return invalid_state(response, &[STATE_UNKNOWN]),
            LoginView::Expired => {
                // Expired on use, or already swept by the emulator's sweeper.
                self.drop_expired_login(owner);
                return invalid_state(response, &[STATE_EXPIRED, STATE_UNKNOWN]);
            }
            LoginView::Live { posted: None } => {
                return invalid_state(response, &[STATE_NOT_POSTED]);
            }
            LoginView::Live { posted: Some(_) } => {}
        }
        let redirect = location(response, StatusCode::FOUND)?;
        let expected_prefix = format!("{}?", redirect_uri(owner));
        ensure!(
            redirect.as_str().starts_with(&expected_prefix),
            "redirected to {redirect}, expected {expected_prefix}…"
        );
        ensure!(
            query_param(&redirect, "state")? == client_state(owner),
            "{redirect}"
        );
        // RFC 9207: the resource's issuer.
        let issuer = format!("{}/resources/{RESOURCE}", self.env().base);
        ensure!(query_param(&redirect, "iss")? == issuer, "{redirect}");
        let code = query_param(&redirect, "code")?;
        let now = self.now();
        let model = &mut self.flows[owner];
        model.login = None;
        ensure!(
            self.consumed_logins.insert(model.login_request_id.clone()),
            "a login request completed twice"
        );
        model.code = Some(CodeModel {
            value: code,
            expires_at: now + self.code_lifetime,
            present: true,
            redeemed: false,
        });
        Ok(())
    }

    /// `flow`'s client exchanges `owner`'s code with `flow`'s verifier.
    async fn exchange(&mut self, flow: usize, owner: usize) -> Result<()> {
        let code = self.flows[owner]
            .code
            .as_ref()
            .map_or("a-code-never-issued".to_owned(), |code| code.value.clone());
        let client_id = self.clients[self.flows[flow].client].clone();
        let response = self
            .token_request(&[
                ("grant_type", "authorization_code"),
                ("client_id", &client_id),
                ("code", &code),
                ("code_verifier", &verifier(flow)),
                ("redirect_uri", &redirect_uri(owner)),
                ("resource", SERVER_URL),
            ])
            .await?;
        let now = self.now();
        let model = &self.flows[owner];
        let Some(record) = model.code.as_ref().filter(|record| record.present) else {
            return expect_oauth_error(&response, &[CODE_UNKNOWN]).map(drop);
        };
        if record.redeemed {
            // A replay revokes what the first redemption issued, whoever presents it. Once the
            // code's lifetime is over a sweep may have dropped it: then it is just unknown.
            let answer = expect_oauth_error(&response, &[CODE_USED, CODE_UNKNOWN])?;
            if answer == CODE_USED {
                self.revoke_grant(owner);
            } else {
                ensure!(
                    record.expires_at <= now,
                    "a redeemed code was forgotten early"
                );
                self.drop_code(owner);
            }
            return Ok(());
        }
        if record.expires_at <= now {
            expect_oauth_error(&response, &[CODE_EXPIRED, CODE_UNKNOWN])?;
            self.drop_code(owner);
            self.flows[owner].expired = true;
            return Ok(());
        }
        // A failed client or PKCE check does not use the code up.
        if model.client != self.flows[flow].client {
            return expect_oauth_error(&response, &[CODE_OTHER_CLIENT]).map(drop);
        }
        if flow != owner {
            return expect_oauth_error(&response, &[CODE_VERIFIER]).map(drop);
        }
        let body = expect_tokens(&response)?;
        ensure!(
            self.redeemed_codes.insert(code),
            "an authorization code worked twice"
        );
        let model = &mut self.flows[owner];
        if let Some(record) = &mut model.code {
            record.redeemed = true;
        }
        model.completed = true;
        let offline = model.scope == SCOPE_OFFLINE;
        self.check_tokens(owner, &body, offline).await?;
        if offline {
            self.flows[owner].refresh_tokens.push(RefreshModel {
                value: body["refresh_token"]
                    .as_str()
                    .context("refresh_token")?
                    .to_owned(),
                present: true,
                rotated: false,
            });
        }
        Ok(())
    }

    fn drop_code(&mut self, owner: usize) {
        if let Some(record) = &mut self.flows[owner].code {
            record.present = false;
        }
    }

    fn revoke_grant(&mut self, owner: usize) {
        for token in &mut self.flows[owner].refresh_tokens {
            token.present = false;
        }
    }

    /// `flow`'s client refreshes with `owner`'s current (or rotated-out) refresh token.
    async fn refresh(&mut self, flow: usize, owner: usize, rotated_out: bool) -> Result<()> {
        let tokens = &self.flows[owner].refresh_tokens;
        let Some(position) = tokens.len().checked_sub(if rotated_out { 2 } else { 1 }) else {
            return Ok(());
        };
        let token = tokens[position].value.clone();
        let client_id = self.clients[self.flows[flow].client].clone();
        let response = self
            .token_request(&[
                ("grant_type", "refresh_token"),
                ("client_id", &client_id),
                ("refresh_token", &token),
            ])
            .await?;
        let record = &self.flows[owner].refresh_tokens[position];
        if !record.present {
            return expect_oauth_error(&response, &[REFRESH_UNKNOWN]).map(drop);
        }
        if record.rotated {
            // Reuse of a rotated-out token revokes the whole grant, whoever presents it.
            expect_oauth_error(&response, &[REFRESH_USED])?;
            self.revoke_grant(owner);
            return Ok(());
        }
        // Refresh tokens live 30 days in the fixture: no generated run gets there.
        ensure!(
            !matches!(&response, TokenAnswer::Error { description, .. } if description == REFRESH_EXPIRED),
            "a refresh token expired within its lifetime"
        );
        if self.flows[owner].client != self.flows[flow].client {
            return expect_oauth_error(&response, &[REFRESH_OTHER_CLIENT]).map(drop);
        }
        let body = expect_tokens(&response)?;
        ensure!(
            self.used_refresh_tokens.insert(token),
            "a refresh token worked twice"
        );
        self.flows[owner].refresh_tokens[position].rotated = true;
        self.check_tokens(owner, &body, true).await?;
        self.flows[owner].refresh_tokens.push(RefreshModel {
            value: body["refresh_token"]
                .as_str()
                .context("refresh_token")?
                .to_owned(),
            present: true,
            rotated: false,
        });
        Ok(())
    }

    /// The next honest step of `flow`.
    async fn step(&mut self, flow: usize) -> Result<()> {
        match self.login_view(flow) {
            LoginView::Live { posted: None } => return self.post(flow, flow).await,
            LoginView::Live { posted: Some(_) } | LoginView::Expired => {
                return self.callback(flow).await;
            }
            LoginView::Gone => {}
        }
        let model = &self.flows[flow];
        if model
            .code
            .as_ref()
            .is_some_and(|code| code.present && !code.redeemed)
        {
            return self.exchange(flow, flow).await;
        }
        self.refresh(flow, flow, false).await
    }

    /// A restart keeps clients, users, grants and refresh tokens, and loses login requests,
    /// consent pages and codes, by design.
    async fn restart(&mut self) -> Result<()> {
        // Stop first: the new emulator opens the same database.
        self.emulator.stop().await;
        self.emulator = Emulator::start(&self.state_dir.0, &self.clock, &self.browser).await?;
        for model in &mut self.flows {
            if model.login.take().is_some() {
                model.lost = true;
            }
            if let Some(code) = &mut model.code {
                if code.present && !code.redeemed {
                    model.lost = true;
                }
                code.present = false;
            }
        }
        Ok(())
    }

    async fn token_request(&self, form: &[(&str, &str)]) -> Result<TokenAnswer> {
        let env = self.env();
        let response = env
            .http
            .post(env.url("/oauth/token"))
            .form(form)
            .send()
            .await?;
        let status = response.status();
        let cache = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body: Value = response.json().await?;
        ensure!(
            cache.as_deref() == Some("no-store"),
            "Cache-Control was {cache:?}"
        );
        if status == StatusCode::OK {
            return Ok(TokenAnswer::Tokens(body));
        }
        ensure!(status == StatusCode::BAD_REQUEST, "{status}: {body}");
        let error = body["error"].as_str().context("error")?.to_owned();
        let description = body["error_description"]
            .as_str()
            .context("error_description")?
            .to_owned();
        ensure!(
            body == json!({"error": error, "error_description": description}),
            "{body}"
        );
        Ok(TokenAnswer::Error { error, description })
    }

    /// Every token says exactly who it is for: the persona posted to the flow's login request,
    /// the flow's client, the resource and the granted scopes.
    async fn check_tokens(&mut self, flow: usize, body: &Value, refresh: bool) -> Result<()> {
        let model = &self.flows[flow];
        let signed_in_as = model
            .signed_in_as
            .context("tokens for a flow nobody was posted to")?;
        ensure!(
            signed_in_as == model.persona || model.tampered,
            "flow {flow} carries persona {signed_in_as}, yet nobody posted it to its request"
        );
        ensure!(
            body["refresh_token"].is_string() == refresh,
            "refresh token expected: {refresh}"
        );
        let access_token = body["access_token"].as_str().context("access_token")?;
        let claims = jwt_payload(access_token)?;
        let persona = &self.personas[signed_in_as];
        ensure!(claims["iss"] == self.env().base.as_str(), "{claims}");
        ensure!(claims["aud"] == json!([SERVER_URL, RESOURCE]), "{claims}");
        ensure!(
            claims["client_id"] == self.clients[model.client].as_str(),
            "{claims}"
        );
        ensure!(claims["xuid"] == persona.sub.as_str(), "{claims}");
        ensure!(claims["email"] == persona.email.as_str(), "{claims}");
        ensure!(claims["scope"] == model.scope, "{claims}");
        let subject = claims["sub"].as_str().context("sub")?.to_owned();
        ensure!(subject.starts_with("usr_"), "{subject}");
        match self.users.get(&signed_in_as) {
            Some(known) => ensure!(known == &subject, "one persona got two user ids"),
            None => {
                ensure!(
                    !self.users.values().any(|known| known == &subject),
                    "two personas share {subject}"
                );
                self.users.insert(signed_in_as, subject);
            }
        }
        if !self.signature_verified {
            let verified: Value = self.env().verify(access_token, RESOURCE).await?;
            ensure!(verified == claims, "{verified} differs from {claims}");
            self.signature_verified = true;
        }
        Ok(())
    }
}

/// The answer of `/oauth/token`.
enum TokenAnswer {
    Tokens(Value),
    Error { error: String, description: String },
}

fn expect_tokens(answer: &TokenAnswer) -> Result<Value> {
    match answer {
        TokenAnswer::Tokens(body) => Ok(body.clone()),
        TokenAnswer::Error { error, description } => {
            Err(anyhow!("expected tokens, got {error}: {description}"))
        }
    }
}

/// Asserts `invalid_grant` with one of `descriptions`; returns the one it was.
fn expect_oauth_error(answer: &TokenAnswer, descriptions: &[&'static str]) -> Result<&'static str> {
    match answer {
        TokenAnswer::Tokens(body) => Err(anyhow!(
            "expected invalid_grant ({descriptions:?}), got tokens: {body}"
        )),
        TokenAnswer::Error { error, description } => {
            ensure!(error == "invalid_grant", "{error}: {description}");
            descriptions
                .iter()
                .find(|expected| *expected == description)
                .copied()
                .ok_or_else(|| anyhow!("expected one of {descriptions:?}, got {description}"))
        }
    }
}

/// Asserts Scalekit's gateway error body.
async fn gateway_error(
    response: reqwest::Response,
    status: StatusCode,
    message: &str,
) -> Result<()> {
    let (code, name) = match status {
        StatusCode::NOT_FOUND => (5, "NOT_FOUND"),
        StatusCode::CONFLICT => (6, "ALREADY_EXISTS"),
        _ => bail!("no gateway code for {status}"),
    };
    let body = json_body(response, status).await?;
    let expected = json!({
        "code": code,
        "message": message,
        "details": [{
            "@type": "type.googleapis.com/scalekit.v1.errdetails.ErrorInfo",
            "error_code": name
        }]
    });
    ensure!(body == expected, "{body}");
    Ok(())
}

/// Asserts the redirect to the hosted `invalid_state` page with one of `descriptions`.
fn invalid_state(response: reqwest::Response, descriptions: &[&str]) -> Result<()> {
    let target = location(response, StatusCode::FOUND)?;
    ensure!(target.path() == "/error", "not the error page: {target}");
    ensure!(
        query_param(&target, "error")? == "invalid_state",
        "{target}"
    );
    let description = query_param(&target, "error_description")?;
    ensure!(
        descriptions.contains(&description.as_str()),
        "expected one of {descriptions:?}: {description}"
    );
    Ok(())
}

/// The JWT's payload, undecoded by any library: the test reads exactly what was signed.
fn jwt_payload(token: &str) -> Result<Value> {
    let payload = token.split('.').nth(1).context("a JWT has three parts")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// Drives every flow honestly to its end, then checks which flows completed.
async fn finish_honestly(run: &mut Run) -> Result<()> {
    for flow in 0..run.flows.len() {
        if let LoginView::Live { posted: None } = run.login_view(flow) {
            run.post(flow, flow).await?;
        }
        if !matches!(run.login_view(flow), LoginView::Gone) {
            run.callback(flow).await?;
        }
        if run.flows[flow]
            .code
            .as_ref()
            .is_some_and(|code| code.present && !code.redeemed)
        {
            run.exchange(flow, flow).await?;
        }
        run.refresh(flow, flow, false).await?;
        // A flow completes iff nothing in it was tampered with, expired or lost; the model has
        // already checked every refusal, so here: the untouched ones completed, as themselves.
        let model = &run.flows[flow];
        if !model.tampered && !model.expired && !model.lost {
            ensure!(model.completed, "flow {flow} did not complete");
            ensure!(model.signed_in_as == Some(model.persona), "flow {flow}");
        }
        if model.completed && !model.tampered {
            ensure!(model.signed_in_as == Some(model.persona), "flow {flow}");
        }
    }
    Ok(())
}

async fn run_case(ops: &[Op]) -> Result<()> {
    let mut run = Run::start().await?;
    for (position, op) in ops.iter().enumerate() {
        run.apply(op)
            .await
            .with_context(|| format!("op {position}: {op:?}"))?;
    }
    finish_honestly(&mut run).await.context("finishing")?;
    run.emulator.stop().await;
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Random interleavings of flows with swaps, replays, expiry and restarts answer exactly as
    /// the model says, and every token carries only its own flow's data.
    #[test]
    fn interleaved_flows_over_http_follow_the_model(
        ops in prop::collection::vec(op_strategy(), 6..=30)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
        runtime
            .block_on(run_case(&ops))
            .map_err(|error| TestCaseError::fail(format!("{error:#}")))?;
    }
}

#[tokio::test]
async fn honest_flows_across_a_restart_all_complete() -> Result<()> {
    let mut run = Run::start().await?;
    for (client, persona) in [(0, 0), (1, 1), (0, 2)] {
        run.start_flow(client, persona, true).await?;
        let flow = run.flows.len() - 1;
        run.step(flow).await?; // post
        run.step(flow).await?; // callback
        run.step(flow).await?; // exchange
    }
    run.restart().await?;
    for flow in 0..run.flows.len() {
        run.step(flow).await?; // refresh after the restart
    }
    finish_honestly(&mut run).await?;
    ensure!(run.flows.iter().all(|flow| flow.completed));
    ensure!(run.users.len() == 3, "three personas, three users");
    ensure!(run.signature_verified);
    run.emulator.stop().await;
    Ok(())
}
