//! Property tests of the flow state machine (issue 5): a model-based test of many interleaved
//! flows with tampering, replays and expiry, and properties of the small pieces (scopes,
//! redirect-URI matching, PKCE, form encoding, posted user claims).
//!
//! The model keeps, per flow, what the state machine should hold (login request, posted user,
//! code, refresh tokens, each with its expiry) and predicts the exact outcome, down to the error
//! variant, of every step, tampered ones included: another flow's `state`, login request, persona,
//! connection, code, client, verifier, redirect URI, resource or refresh token, a replay, a wrong
//! secret, time moved past a lifetime, a sweep. On top of the model it checks that every grant
//! carries exactly its flow's posted claims, client, resource, scopes and nonce; that a
//! (connection, user) pair has one `usr_…` id that no other pair shares; that no code, login
//! request or refresh token succeeds twice; and that a flow nothing tampered with and nothing
//! expired in completes, as its own user.
//!
//! Case counts are fixed for CI (see [`config`]); `PROPTEST_CASES=10000 cargo test -p
//! scalekit-emulator proptests` soaks them locally. Failing cases are persisted by proptest under
//! `crates/scalekit-emulator/proptest-regressions/flow/proptests.txt`, which is committed.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config as ProptestConfig;
use scalekit_wire::{OAuthErrorCode, Secret, UserClaims};
use serde_json::{Map, Value, json};
use url::Url;

use super::*;
use crate::ids::SequentialIds;
use crate::types::{
    AuthorizationCode, ClientState, PkceVerifier, RedirectUri, RefreshToken, pkce_s256, pkce_verify,
};

/// `cases` unless `PROPTEST_CASES` is set: proptest's default configuration reads that variable,
/// and overriding `cases` unconditionally would silence it.
fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

const ENVIRONMENT_URL: &str = "http://env.test";
const START: u64 = 1_800_000_000;

/// Two connections, two resources with different lifetimes and consent modes, three clients.
const ENVIRONMENT: &str = r#"
listen = "127.0.0.1:0"

[api_client]
client_id = "skc_1"
client_secret = "secret"
token_lifetime_secs = 3600

[[connections]]
id = "conn_1"
login_endpoint = "http://127.0.0.1:8401/login"

[[connections]]
id = "conn_2"
login_endpoint = "http://127.0.0.1:8501/login"

[[resources]]
id = "res_1"
name = "One"
server_url = "http://127.0.0.1:8402/mcp"
connection = "conn_1"
scopes = ["openid", "email", "offline_access", "mcp:read", "mcp:write"]
consent = "auto"
issuer_bound_tokens = false
dynamic_client_registration = true
access_token_lifetime_secs = 3600
refresh_token_lifetime_secs = 2000
authorization_code_lifetime_secs = 300
login_request_lifetime_secs = 600

[[resources]]
id = "res_2"
name = "Two"
server_url = "http://127.0.0.1:8502/mcp"
connection = "conn_2"
scopes = ["openid", "offline_access", "mcp:read"]
consent = "prompt"
issuer_bound_tokens = true
dynamic_client_registration = false
access_token_lifetime_secs = 3600
refresh_token_lifetime_secs = 900
authorization_code_lifetime_secs = 120
login_request_lifetime_secs = 400

[[clients]]
client_id = "public-1"
redirect_uris = ["http://127.0.0.1/cb"]
resource = "res_1"

[[clients]]
client_id = "confidential-1"
redirect_uris = ["http://127.0.0.1/cb"]
resource = "res_1"
client_secret = "s3cret-1"

[[clients]]
client_id = "public-2"
redirect_uris = ["http://127.0.0.1/cb"]
resource = "res_2"
client_name = "Second"
"#;

/// The model's view of a resource.
struct ResourceModel {
    id: &'static str,
    server_url: &'static str,
    connection: &'static str,
    scopes: &'static [&'static str],
    code_lifetime: u64,
    refresh_lifetime: u64,
    login_lifetime: u64,
}

const RESOURCES: [ResourceModel; 2] = [
    ResourceModel {
        id: "res_1",
        server_url: "http://127.0.0.1:8402/mcp",
        connection: "conn_1",
        scopes: &["openid", "email", "offline_access", "mcp:read", "mcp:write"],
        code_lifetime: 300,
        refresh_lifetime: 2000,
        login_lifetime: 600,
    },
    ResourceModel {
        id: "res_2",
        server_url: "http://127.0.0.1:8502/mcp",
        connection: "conn_2",
        scopes: &["openid", "offline_access", "mcp:read"],
        code_lifetime: 120,
        refresh_lifetime: 900,
        login_lifetime: 400,
    },
];

/// `(client_id, secret, resource index)`.
const CLIENTS: [(&str, Option<&str>, usize); 3] = [
    ("public-1", None, 0),
    ("confidential-1", Some("s3cret-1"), 0),
    ("public-2", None, 1),
];

/// The three personas of `fixtures/users.toml`, reduced: every claim, an organization, minimal.
fn persona(index: usize) -> UserClaims {
    let mut attributes = Map::new();
    match index {
        0 => {
            attributes.insert("department".to_owned(), json!("research"));
            attributes.insert("employee_number".to_owned(), json!(1815));
            UserClaims {
                sub: Some("ext-usr-ada-0001".to_owned()),
                email: Some("ada@analytical-engines.example".to_owned()),
                email_verified: Some(true),
                given_name: Some("Ada".to_owned()),
                family_name: Some("Lovelace".to_owned()),
                name: Some("Ada Lovelace".to_owned()),
                phone_number: Some("+442071234567".to_owned()),
                phone_number_verified: Some(true),
                groups: vec!["engineering".to_owned()],
                roles: vec!["admin".to_owned(), "member".to_owned()],
                custom_attributes: Some(attributes),
                organization_external_id: Some("ext-org-analytical-engines".to_owned()),
                organization_external_name: Some("Analytical Engines Ltd".to_owned()),
                ..UserClaims::default()
            }
        }
        1 => {
            attributes.insert("rank".to_owned(), json!("rear admiral"));
            UserClaims {
                sub: Some("ext-usr-grace-0002".to_owned()),
                email: Some("grace@compilers.example".to_owned()),
                custom_attributes: Some(attributes),
                roles: vec!["member".to_owned()],
                organization_external_id: Some("ext-org-compilers".to_owned()),
                ..UserClaims::default()
            }
        }
        _ => UserClaims {
            sub: Some("ext-usr-linus-0003".to_owned()),
            email: Some("linus@kernels.example".to_owned()),
            ..UserClaims::default()
        },
    }
}

/// A distinct, well-formed PKCE verifier per flow.
fn verifier(flow: usize) -> String {
    format!("verifier-{flow:0>40}")
}

/// A distinct loopback redirect URI per flow (the registered one matches on any port).
fn redirect_uri(flow: usize) -> String {
    format!("http://127.0.0.1:{}/cb", 5000 + flow)
}

/// One step of a generated run. Indices pick flows among those started so far; `other` is the
/// flow whose artifact a tampered step uses instead of its own.
#[derive(Debug, Clone)]
enum Op {
    Start {
        client: usize,
        persona: usize,
        scope_mask: u8,
        foreign_resource: bool,
    },
    Submit {
        flow: Index,
        other: Index,
        tamper: SubmitTamper,
    },
    Callback {
        flow: Index,
        other: Index,
        tamper: CallbackTamper,
    },
    Exchange {
        flow: Index,
        other: Index,
        tamper: ExchangeTamper,
    },
    Refresh {
        flow: Index,
        other: Index,
        generation_back: usize,
        scope_mask: Option<u8>,
        tamper: RefreshTamper,
    },
    /// The next honest step of a flow, whatever stage it is at.
    Step(Index),
    Advance(u64),
    Sweep,
}

#[derive(Debug, Clone, Copy)]
enum SubmitTamper {
    None,
    /// Post the other flow's persona to this flow's login request.
    OtherPersona,
    /// Post this flow's persona to the other flow's login request.
    OtherLoginRequest,
    /// Use the other flow's connection in the path.
    OtherConnection,
    /// Put the resource id where the connection id belongs.
    ResourceAsConnection,
}

#[derive(Debug, Clone, Copy)]
enum CallbackTamper {
    None,
    /// Come back with the other flow's `state`.
    OtherState,
    /// Come back on the other flow's connection.
    OtherConnection,
}

#[derive(Debug, Clone, Copy)]
enum ExchangeTamper {
    None,
    OtherCode,
    OtherClient,
    OtherVerifier,
    OtherRedirectUri,
    OtherResource,
    WrongSecret,
    UnknownCode,
}

#[derive(Debug, Clone, Copy)]
enum RefreshTamper {
    None,
    OtherToken,
    OtherClient,
    OtherResource,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let start = (0..3usize, 0..3usize, any::<u8>(), prop::bool::weighted(0.1)).prop_map(
        |(client, persona, scope_mask, foreign_resource)| Op::Start {
            client,
            persona,
            scope_mask,
            foreign_resource,
        },
    );
    let submit_tamper = prop_oneof![
        2 => Just(SubmitTamper::None),
        1 => Just(SubmitTamper::OtherPersona),
        1 => Just(SubmitTamper::OtherLoginRequest),
        1 => Just(SubmitTamper::OtherConnection),
        1 => Just(SubmitTamper::ResourceAsConnection),
    ];
    let callback_tamper = prop_oneof![
        1 => Just(CallbackTamper::None),
        1 => Just(CallbackTamper::OtherState),
        1 => Just(CallbackTamper::OtherConnection),
    ];
    let exchange_tamper = prop_oneof![
        1 => Just(ExchangeTamper::None),
        1 => Just(ExchangeTamper::OtherCode),
        1 => Just(ExchangeTamper::OtherClient),
        1 => Just(ExchangeTamper::OtherVerifier),
        1 => Just(ExchangeTamper::OtherRedirectUri),
        1 => Just(ExchangeTamper::OtherResource),
        1 => Just(ExchangeTamper::WrongSecret),
        1 => Just(ExchangeTamper::UnknownCode),
    ];
    let refresh_tamper = prop_oneof![
        1 => Just(RefreshTamper::None),
        1 => Just(RefreshTamper::OtherToken),
        1 => Just(RefreshTamper::OtherClient),
        1 => Just(RefreshTamper::OtherResource),
    ];
    let lifetimes = prop::sample::select(vec![
        1u64, 60, 119, 120, 121, 299, 300, 301, 399, 400, 401, 599, 600, 601, 899, 900, 1999, 2000,
    ]);
    prop_oneof![
        3 => start,
        4 => (any::<Index>(), any::<Index>(), submit_tamper)
            .prop_map(|(flow, other, tamper)| Op::Submit { flow, other, tamper }),
        4 => (any::<Index>(), any::<Index>(), callback_tamper)
            .prop_map(|(flow, other, tamper)| Op::Callback { flow, other, tamper }),
        4 => (any::<Index>(), any::<Index>(), exchange_tamper)
            .prop_map(|(flow, other, tamper)| Op::Exchange { flow, other, tamper }),
        3 => (
            any::<Index>(),
            any::<Index>(),
            prop_oneof![4 => Just(0usize), 1 => Just(1usize), 1 => Just(2usize)],
            proptest::option::weighted(0.2, any::<u8>()),
            refresh_tamper,
        )
            .prop_map(|(flow, other, generation_back, scope_mask, tamper)| Op::Refresh {
                flow,
                other,
                generation_back,
                scope_mask,
                tamper,
            }),
        10 => any::<Index>().prop_map(Op::Step),
        1 => lifetimes.prop_map(Op::Advance),
        1 => Just(Op::Sweep),
    ]
}

/// The model's login request: alive until consumed or expired.
struct LoginModel {
    id: String,
    state: String,
    expires_at: u64,
    /// The persona posted for it, and the `req_…` answered.
    posted: Option<(usize, String)>,
}

struct CodeModel {
    value: String,
    expires_at: u64,
    /// False once the emulator dropped it (expired on use, or swept).
    present: bool,
    redeemed: bool,
}

struct RefreshModel {
    value: String,
    expires_at: u64,
    present: bool,
    rotated: bool,
}

/// Everything the model knows about one flow.
struct FlowModel {
    client: usize,
    /// The persona this flow's user is (index into [`persona`]).
    persona: usize,
    resource: usize,
    scopes: Vec<&'static str>,
    nonce: String,
    client_state: String,
    login: Option<LoginModel>,
    /// Kept after the login request is gone, for tampering with stale values.
    login_id: String,
    login_state: String,
    /// The persona whose claims the grant must carry (the first one posted).
    signed_in_as: Option<usize>,
    code: Option<CodeModel>,
    refresh_tokens: Vec<RefreshModel>,
    /// A tampered step used this flow's artifacts, or this flow used another's.
    tampered: bool,
    /// One of its pending artifacts (login request, code) was refused as expired.
    expired: bool,
}

impl FlowModel {
    fn resource(&self) -> &'static ResourceModel {
        &RESOURCES[self.resource]
    }

    fn live_login(&mut self, now: u64) -> Option<&mut LoginModel> {
        // An expired login request is refused on every path, so the model forgets it.
        if self
            .login
            .as_ref()
            .is_some_and(|login| login.expires_at <= now)
        {
            self.login = None;
            self.expired = true;
        }
        self.login.as_mut()
    }

    fn revoke_refresh_tokens(&mut self) {
        for token in &mut self.refresh_tokens {
            token.present = false;
        }
    }
}

/// The system under test, the model, and the facts every step must keep.
struct Run {
    flows: Flows,
    ids: SequentialIds,
    now: u64,
    model: Vec<FlowModel>,
    /// `usr_…` per (connection, persona): the same user always, different users never equal.
    users: HashMap<(&'static str, usize), UserId>,
    used_codes: HashSet<String>,
    used_refresh_tokens: HashSet<String>,
    completed_logins: HashSet<String>,
    completed_flows: usize,
    /// The sign-in cookies of every flow started: one browser starts them all and carries them
    /// on each callback and consent decision, as the HTTP property's cookie jar does.
    browser_cookies: Vec<String>,
}

fn pick(index: &Index, length: usize) -> usize {
    index.index(length)
}

fn scope_subset(scopes: &'static [&'static str], mask: u8) -> Vec<&'static str> {
    scopes
        .iter()
        .enumerate()
        .filter(|(position, _)| mask & (1 << position) != 0)
        .map(|(_, scope)| *scope)
        .collect()
}

impl Run {
    fn new() -> Run {
        let config = Config::from_toml_str(ENVIRONMENT).expect("the test environment parses");
        let environment_url = Url::parse(ENVIRONMENT_URL).expect("a URL");
        Run {
            flows: Flows::new(&config, &environment_url),
            ids: SequentialIds::new(),
            now: START,
            model: Vec::new(),
            users: HashMap::new(),
            used_codes: HashSet::new(),
            used_refresh_tokens: HashSet::new(),
            completed_logins: HashSet::new(),
            completed_flows: 0,
            browser_cookies: Vec::new(),
        }
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let tampered = match op {
            Op::Submit {
                flow,
                other,
                tamper,
            } => (!matches!(tamper, SubmitTamper::None)).then_some((flow, other)),
            Op::Callback {
                flow,
                other,
                tamper,
            } => (!matches!(tamper, CallbackTamper::None)).then_some((flow, other)),
            Op::Exchange {
                flow,
                other,
                tamper,
            } => (!matches!(tamper, ExchangeTamper::None)).then_some((flow, other)),
            _ => None,
        };
        if let Some((flow, other)) = tampered {
            self.mark_tampered(flow, other);
        }
        match op {
            Op::Start {
                client,
                persona,
                scope_mask,
                foreign_resource,
            } => self.start(*client, *persona, *scope_mask, *foreign_resource),
            Op::Submit {
                flow,
                other,
                tamper,
            } => self.with_flows(flow, other, |run, flow, other| {
                run.submit(flow, other, *tamper)
            }),
            Op::Callback {
                flow,
                other,
                tamper,
            } => self.with_flows(flow, other, |run, flow, other| {
                run.callback(flow, other, *tamper)
            }),
            Op::Exchange {
                flow,
                other,
                tamper,
            } => self.with_flows(flow, other, |run, flow, other| {
                run.exchange(flow, other, *tamper)
            }),
            Op::Refresh {
                flow,
                other,
                generation_back,
                scope_mask,
                tamper,
            } => self.with_flows(flow, other, |run, flow, other| {
                run.refresh(flow, other, *generation_back, *scope_mask, *tamper)
            }),
            Op::Step(flow) => self.with_flows(flow, flow, |run, flow, _| run.step(flow)),
            Op::Advance(seconds) => {
                self.now += seconds;
                Ok(())
            }
            Op::Sweep => {
                self.sweep();
                Ok(())
            }
        }
    }

    fn with_flows(
        &mut self,
        flow: &Index,
        other: &Index,
        step: impl FnOnce(&mut Run, usize, usize) -> Result<(), TestCaseError>,
    ) -> Result<(), TestCaseError> {
        if self.model.is_empty() {
            return Ok(());
        }
        let length = self.model.len();
        step(self, pick(flow, length), pick(other, length))
    }

    /// Marks both flows of a tampered step.
    fn mark_tampered(&mut self, flow: &Index, other: &Index) {
        let length = self.model.len();
        if length == 0 {
            return;
        }
        self.model[pick(flow, length)].tampered = true;
        self.model[pick(other, length)].tampered = true;
    }

    fn start(
        &mut self,
        client: usize,
        persona: usize,
        scope_mask: u8,
        foreign_resource: bool,
    ) -> Result<(), TestCaseError> {
        let index = self.model.len();
        let (client_id, _, resource) = CLIENTS[client];
        let scopes = scope_subset(RESOURCES[resource].scopes, scope_mask);
        let challenge = pkce_s256(&PkceVerifier::parse(&verifier(index)).expect("a verifier"));
        let requested_resource = if foreign_resource {
            RESOURCES[1 - resource].server_url
        } else {
            RESOURCES[resource].server_url
        };
        let request = AuthorizeRequest {
            client_id: Some(client_id.to_owned()),
            redirect_uri: Some(redirect_uri(index)),
            response_type: Some("code".to_owned()),
            scope: Some(scopes.join(" ")),
            state: Some(format!("client-state-{index}")),
            code_challenge: Some(challenge.as_str().to_owned()),
            code_challenge_method: Some("S256".to_owned()),
            nonce: Some(format!("nonce-{index}")),
            resource: Some(requested_resource.to_owned()),
        };
        let result = self.flows.authorize(request, self.now, &self.ids);
        if foreign_resource {
            let Err(AuthorizeError::Redirect(redirect)) = result else {
                return Err(TestCaseError::fail(format!(
                    "a foreign resource was not refused: {result:?}"
                )));
            };
            let invalid_target = matches!(
                redirect.outcome,
                RedirectOutcome::Error {
                    error: OAuthErrorCode::InvalidTarget,
                    ..
                }
            );
            prop_assert!(invalid_target, "{:?}", redirect.outcome);
            prop_assert_eq!(redirect.redirect_uri.as_str(), redirect_uri(index));
            return Ok(());
        }
        let login = result.map_err(|error| {
            TestCaseError::fail(format!("an honest authorization failed: {error:?}"))
        })?;
        if let Some(binding) = &login.browser_binding {
            self.browser_cookies.push(binding.expose().to_owned());
        }
        let resource_model = &RESOURCES[resource];
        prop_assert_eq!(
            login.login_endpoint.as_str(),
            if resource == 0 {
                "http://127.0.0.1:8401/login"
            } else {
                "http://127.0.0.1:8501/login"
            }
        );
        // No scope asked for means the resource's scopes.
        let granted = if scopes.is_empty() {
            resource_model.scopes.to_vec()
        } else {
            scopes
        };
        self.model.push(FlowModel {
            client,
            persona,
            resource,
            scopes: granted,
            nonce: format!("nonce-{index}"),
            client_state: format!("client-state-{index}"),
            login_id: login.login_request_id.to_string(),
            login_state: login.state.to_string(),
            login: Some(LoginModel {
                id: login.login_request_id.to_string(),
                state: login.state.to_string(),
                expires_at: self.now + resource_model.login_lifetime,
                posted: None,
            }),
            signed_in_as: None,
            code: None,
            refresh_tokens: Vec::new(),
            tampered: false,
            expired: false,
        });
        Ok(())
    }

    /// The browser every flow was started in.
    fn browser(&self) -> PresentedBrowser {
        PresentedBrowser::new(self.browser_cookies.iter().map(String::as_str))
    }

    fn persona_of(&self, flow: usize) -> usize {
        self.model[flow].persona
    }

    fn submit(
        &mut self,
        flow: usize,
        other: usize,
        tamper: SubmitTamper,
    ) -> Result<(), TestCaseError> {
        let posted_persona = match tamper {
            SubmitTamper::OtherPersona => self.persona_of(other),
            _ => self.persona_of(flow),
        };
        let target = match tamper {
            SubmitTamper::OtherLoginRequest => other,
            _ => flow,
        };
        let connection = match tamper {
            SubmitTamper::OtherConnection => self.model[other].resource().connection,
            SubmitTamper::ResourceAsConnection => self.model[flow].resource().id,
            _ => self.model[flow].resource().connection,
        };
        let login_id = self.model[target].login_id.clone();
        let result = self.flows.submit_user(
            connection,
            &login_id,
            persona(posted_persona),
            self.now,
            &self.ids,
        );

        let now = self.now;
        let target_model = &mut self.model[target];
        let target_connection = target_model.resource().connection;
        if connection.starts_with("res_") || connection != target_connection {
            prop_assert!(
                matches!(result, Err(SubmitUserError::NotFound(_))),
                "{result:?}"
            );
            return Ok(());
        }
        let Some(login) = target_model.live_login(now) else {
            prop_assert!(
                matches!(result, Err(SubmitUserError::NotFound(_))),
                "{result:?}"
            );
            return Ok(());
        };
        match &login.posted {
            None => {
                let auth_request_id = result.map_err(|error| {
                    TestCaseError::fail(format!("a valid user post failed: {error:?}"))
                })?;
                prop_assert!(auth_request_id.as_str().starts_with("req_"));
                login.posted = Some((posted_persona, auth_request_id.to_string()));
                target_model.signed_in_as = Some(posted_persona);
            }
            Some((posted, auth_request_id)) => {
                // The same user again is idempotent; another user is a conflict.
                if persona(*posted).sub == persona(posted_persona).sub {
                    prop_assert_eq!(
                        result.as_ref().map(|id| id.as_str()),
                        Ok(auth_request_id.as_str())
                    );
                } else {
                    prop_assert!(
                        matches!(result, Err(SubmitUserError::AlreadyExists(_))),
                        "{result:?}"
                    );
                }
            }
        }
        Ok(())
    }

    fn callback(
        &mut self,
        flow: usize,
        other: usize,
        tamper: CallbackTamper,
    ) -> Result<(), TestCaseError> {
        let owner = match tamper {
            CallbackTamper::OtherState => other,
            _ => flow,
        };
        let connection = match tamper {
            CallbackTamper::OtherConnection => self.model[other].resource().connection,
            _ => self.model[flow].resource().connection,
        };
        let state = self.model[owner].login_state.clone();
        let browser = self.browser();
        let result = self
            .flows
            .partner_callback(connection, &state, &browser, self.now, &self.ids);

        // The state decides whose flow this is: whatever comes back belongs to `owner`.
        let now = self.now;
        let owner_model = &mut self.model[owner];
        let owner_connection = owner_model.resource().connection;
        let Some(login) = owner_model.live_login(now) else {
            prop_assert!(
                matches!(result, Err(CallbackError::InvalidState(_))),
                "{result:?}"
            );
            return Ok(());
        };
        if connection != owner_connection || login.posted.is_none() {
            prop_assert!(
                matches!(result, Err(CallbackError::InvalidState(_))),
                "{result:?}"
            );
            return Ok(());
        }
        prop_assert_eq!(login.state.as_str(), state.as_str());
        let login_id = login.id.clone();
        owner_model.login = None;
        prop_assert!(
            self.completed_logins.insert(login_id),
            "a login request completed twice"
        );

        let redirect = match result {
            Ok(CallbackOutcome::Redirect(redirect)) => redirect,
            Ok(CallbackOutcome::NeedsConsent(prompt)) => {
                let owner_model = &self.model[owner];
                prop_assert_eq!(owner_model.resource, 1, "consent on an auto resource");
                let expected_user = persona(owner_model.signed_in_as.unwrap_or(0)).email;
                prop_assert_eq!(Some(prompt.user.clone()), expected_user);
                prop_assert_eq!(prompt.scopes.as_slice(), owner_model.scopes.as_slice());
                prop_assert_eq!(prompt.redirect_host.as_str(), "127.0.0.1");
                self.flows
                    .decide_consent(&prompt.consent_id, true, &browser, self.now, &self.ids)
                    .map_err(|error| TestCaseError::fail(format!("consent: {error:?}")))?
            }
            Err(error) => {
                return Err(TestCaseError::fail(format!(
                    "a valid callback failed: {error:?}"
                )));
            }
        };
        let owner_model = &mut self.model[owner];
        prop_assert_eq!(redirect.redirect_uri.as_str(), redirect_uri(owner));
        prop_assert_eq!(
            redirect.state.as_ref().map(|state| state.as_str()),
            Some(owner_model.client_state.as_str())
        );
        prop_assert_eq!(
            redirect.iss,
            format!("{ENVIRONMENT_URL}/resources/{}", owner_model.resource().id)
        );
        let RedirectOutcome::Code(code) = redirect.outcome else {
            return Err(TestCaseError::fail("a signed-in user got no code"));
        };
        owner_model.code = Some(CodeModel {
            value: code.expose().to_owned(),
            expires_at: now + owner_model.resource().code_lifetime,
            present: true,
            redeemed: false,
        });
        Ok(())
    }

    fn exchange(
        &mut self,
        flow: usize,
        other: usize,
        tamper: ExchangeTamper,
    ) -> Result<(), TestCaseError> {
        let pick_other = |kind| if kind { other } else { flow };
        let code_owner = pick_other(matches!(tamper, ExchangeTamper::OtherCode));
        let client = self.model[pick_other(matches!(tamper, ExchangeTamper::OtherClient))].client;
        let verifier_of = pick_other(matches!(tamper, ExchangeTamper::OtherVerifier));
        let redirect_of = pick_other(matches!(tamper, ExchangeTamper::OtherRedirectUri));
        let resource_of = pick_other(matches!(tamper, ExchangeTamper::OtherResource));
        let code = match (&self.model[code_owner].code, tamper) {
            (_, ExchangeTamper::UnknownCode) | (None, _) => "no-such-code".to_owned(),
            (Some(code), _) => code.value.clone(),
        };
        let (client_id, secret, _) = CLIENTS[client];
        let secret = match tamper {
            ExchangeTamper::WrongSecret => Some("wrong-secret"),
            _ => secret,
        };
        let resource = self.model[resource_of].resource();

        let authenticated = self.flows.authenticate_client(client_id, secret);
        if matches!(tamper, ExchangeTamper::WrongSecret) && CLIENTS[client].1.is_some() {
            prop_assert!(
                matches!(authenticated, Err(TokenError::InvalidClient(_))),
                "{authenticated:?}"
            );
            return Ok(());
        }
        let client_id = authenticated
            .map_err(|error| TestCaseError::fail(format!("authentication: {error:?}")))?;
        let result = self.flows.exchange_code(
            AuthorizationCodeRequest {
                client_id,
                code: AuthorizationCode::new(code.clone()),
                code_verifier: Some(Secret::new(verifier(verifier_of))),
                redirect_uri: Some(redirect_uri(redirect_of)),
                resource: Some(resource.server_url.to_owned()),
            },
            self.now,
            &self.ids,
        );

        let now = self.now;
        let invalid_grant = matches!(result, Err(TokenError::InvalidGrant(_)));
        let owner = &mut self.model[code_owner];
        let Some((redeemed, expires_at)) = owner
            .code
            .as_ref()
            .filter(|record| record.present && record.value == code)
            .map(|record| (record.redeemed, record.expires_at))
        else {
            prop_assert!(invalid_grant, "{result:?}");
            return Ok(());
        };
        if redeemed {
            // A replay fails and revokes what the first redemption issued.
            prop_assert!(invalid_grant, "a code worked twice: {result:?}");
            owner.revoke_refresh_tokens();
            return Ok(());
        }
        if expires_at <= now {
            prop_assert!(invalid_grant, "an expired code worked: {result:?}");
            if let Some(record) = &mut owner.code {
                record.present = false;
            }
            owner.expired = true;
            return Ok(());
        }
        if client != owner.client || redirect_of != code_owner {
            // Every flow has its own redirect URI, so another flow's never matches.
            prop_assert!(invalid_grant, "{result:?}");
            return Ok(());
        }
        if owner.resource().id != resource.id {
            prop_assert!(
                matches!(result, Err(TokenError::InvalidTarget(_))),
                "{result:?}"
            );
            return Ok(());
        }
        if verifier_of != code_owner {
            prop_assert!(invalid_grant, "{result:?}");
            return Ok(());
        }
        let grant = result
            .map_err(|error| TestCaseError::fail(format!("an honest exchange: {error:?}")))?;
        if let Some(record) = &mut owner.code {
            record.redeemed = true;
        }
        prop_assert!(self.used_codes.insert(code), "a code was redeemed twice");
        self.completed_flows += 1;
        let scopes = self.model[code_owner].scopes.clone();
        self.check_grant(code_owner, &grant, &scopes)?;
        let owner = &self.model[code_owner];
        prop_assert_eq!(grant.nonce.as_deref(), Some(owner.nonce.as_str()));
        let refresh_lifetime = owner.resource().refresh_lifetime;
        match (
            &grant.refresh_token,
            owner.scopes.contains(&"offline_access"),
        ) {
            (Some(token), true) => {
                let value = token.expose().to_owned();
                self.model[code_owner].refresh_tokens.push(RefreshModel {
                    value,
                    expires_at: now + refresh_lifetime,
                    present: true,
                    rotated: false,
                });
            }
            (None, false) => {}
            (token, offline) => {
                return Err(TestCaseError::fail(format!(
                    "refresh token {} with offline_access {offline}",
                    token.is_some()
                )));
            }
        }
        Ok(())
    }

    fn refresh(
        &mut self,
        flow: usize,
        other: usize,
        generation_back: usize,
        scope_mask: Option<u8>,
        tamper: RefreshTamper,
    ) -> Result<(), TestCaseError> {
        let pick_other = |kind| if kind { other } else { flow };
        let owner = pick_other(matches!(tamper, RefreshTamper::OtherToken));
        let client = self.model[pick_other(matches!(tamper, RefreshTamper::OtherClient))].client;
        let resource =
            self.model[pick_other(matches!(tamper, RefreshTamper::OtherResource))].resource();
        let tokens = &self.model[owner].refresh_tokens;
        let Some(position) = tokens.len().checked_sub(1 + generation_back) else {
            return Ok(());
        };
        let token = tokens[position].value.clone();
        let requested =
            scope_mask.map(|mask| scope_subset(self.model[owner].resource().scopes, mask));
        let (client_id, secret, _) = CLIENTS[client];
        let client_id = self
            .flows
            .authenticate_client(client_id, secret)
            .map_err(|error| TestCaseError::fail(format!("authentication: {error:?}")))?;
        let presented = self
            .flows
            .present(RefreshToken::new(token.clone()))
            .map_err(|_| TestCaseError::fail("grants live in memory"))?;
        let result = self.flows.refresh(
            RefreshRequest {
                client_id,
                refresh_token: presented,
                resource: Some(resource.server_url.to_owned()),
                scope: requested.as_ref().map(|scopes| scopes.join(" ")),
            },
            self.now,
            &self.ids,
        );

        let now = self.now;
        let invalid_grant = matches!(result, Err(TokenError::InvalidGrant(_)));
        let owner_model = &mut self.model[owner];
        let record = &owner_model.refresh_tokens[position];
        let (present, rotated, expires_at) = (record.present, record.rotated, record.expires_at);
        if !present {
            prop_assert!(invalid_grant, "a dropped refresh token worked: {result:?}");
            return Ok(());
        }
        if rotated {
            prop_assert!(invalid_grant, "a refresh token worked twice: {result:?}");
            owner_model.revoke_refresh_tokens();
            return Ok(());
        }
        if expires_at <= now {
            prop_assert!(invalid_grant, "an expired refresh token worked: {result:?}");
            owner_model.refresh_tokens[position].present = false;
            return Ok(());
        }
        if client != owner_model.client {
            prop_assert!(invalid_grant, "{result:?}");
            return Ok(());
        }
        if owner_model.resource().id != resource.id {
            prop_assert!(
                matches!(result, Err(TokenError::InvalidTarget(_))),
                "{result:?}"
            );
            return Ok(());
        }
        let granted = owner_model.scopes.clone();
        let scopes = match requested {
            Some(requested) if requested.iter().any(|scope| !granted.contains(scope)) => {
                prop_assert!(
                    matches!(result, Err(TokenError::InvalidScope(_))),
                    "{result:?}"
                );
                return Ok(());
            }
            Some(requested) if !requested.is_empty() => requested,
            _ => granted,
        };
        let grant =
            result.map_err(|error| TestCaseError::fail(format!("an honest refresh: {error:?}")))?;
        owner_model.refresh_tokens[position].rotated = true;
        prop_assert!(
            self.used_refresh_tokens.insert(token),
            "a refresh token was exchanged twice"
        );
        self.check_grant(owner, &grant, &scopes)?;
        prop_assert_eq!(grant.nonce, None);
        let Some(new_token) = &grant.refresh_token else {
            return Err(TestCaseError::fail("a refresh did not rotate the token"));
        };
        let refresh_lifetime = self.model[owner].resource().refresh_lifetime;
        self.model[owner].refresh_tokens.push(RefreshModel {
            value: new_token.expose().to_owned(),
            expires_at: now + refresh_lifetime,
            present: true,
            rotated: false,
        });
        Ok(())
    }

    fn step(&mut self, flow: usize) -> Result<(), TestCaseError> {
        let now = self.now;
        let model = &mut self.model[flow];
        let posted = model.live_login(now).map(|login| login.posted.is_some());
        match posted {
            Some(false) => return self.submit(flow, flow, SubmitTamper::None),
            Some(true) => return self.callback(flow, flow, CallbackTamper::None),
            None => {}
        }
        if model.code.as_ref().is_some_and(|code| !code.redeemed) {
            return self.exchange(flow, flow, ExchangeTamper::None);
        }
        self.refresh(flow, flow, 0, None, RefreshTamper::None)
    }

    fn sweep(&mut self) {
        self.flows.sweep(self.now);
        let now = self.now;
        for flow in &mut self.model {
            flow.live_login(now);
            if let Some(code) = &mut flow.code
                && code.expires_at <= now
            {
                code.present = false;
                flow.expired |= !code.redeemed;
            }
            for token in &mut flow.refresh_tokens {
                if token.expires_at <= now {
                    token.present = false;
                }
            }
        }
    }

    /// A grant carries exactly its own flow's persona, client, resource and scopes.
    fn check_grant(
        &mut self,
        flow: usize,
        grant: &IssuedGrant,
        scopes: &[&str],
    ) -> Result<(), TestCaseError> {
        let model = &self.model[flow];
        let Some(signed_in_as) = model.signed_in_as else {
            return Err(TestCaseError::fail("a grant without a signed-in user"));
        };
        let claims = persona(signed_in_as);
        prop_assert_eq!(&grant.claims, &claims);
        prop_assert_eq!(Some(grant.external_sub.clone()), claims.sub.clone());
        prop_assert_eq!(grant.client_id.as_str(), CLIENTS[model.client].0);
        prop_assert_eq!(grant.resource.as_str(), model.resource().id);
        prop_assert_eq!(grant.connection.as_str(), model.resource().connection);
        prop_assert_eq!(grant.scopes.as_slice(), scopes);
        prop_assert_eq!(
            grant.organization.is_some(),
            claims.organization_external_id.is_some()
        );
        let key = (model.resource().connection, signed_in_as);
        let subject = grant.subject.clone();
        match self.users.get(&key) {
            Some(known) => prop_assert_eq!(known, &subject, "one user got two ids"),
            None => {
                prop_assert!(
                    !self.users.values().any(|known| known == &subject),
                    "two users share {}",
                    subject
                );
                self.users.insert(key, subject);
            }
        }
        Ok(())
    }
}

/// Drives every flow honestly to its end, so a run always checks some completions.
fn finish_honestly(run: &mut Run) -> Result<(), TestCaseError> {
    for flow in 0..run.model.len() {
        if run.model[flow].login.is_some() {
            run.submit(flow, flow, SubmitTamper::None)?;
            run.callback(flow, flow, CallbackTamper::None)?;
        }
        if run.model[flow].code.is_some() {
            run.exchange(flow, flow, ExchangeTamper::None)?;
        }
        if !run.model[flow].refresh_tokens.is_empty() {
            run.refresh(flow, flow, 0, None, RefreshTamper::None)?;
        }
        // A flow nothing tampered with and nothing expired in completes, as its own user.
        let model = &run.model[flow];
        let completed = model.code.as_ref().is_some_and(|code| code.redeemed);
        if !model.tampered && !model.expired {
            prop_assert!(completed, "flow {} did not complete", flow);
            prop_assert_eq!(model.signed_in_as, Some(model.persona));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    /// Random interleavings of concurrent flows with tampering, replays and expiry behave exactly
    /// as the model says, and every grant carries only its own flow's data.
    #[test]
    fn interleaved_flows_follow_the_model(ops in prop::collection::vec(op_strategy(), 8..80)) {
        let mut run = Run::new();
        for op in &ops {
            run.apply(op)?;
        }
        finish_honestly(&mut run)?;
    }
}

/// A run with no tampering and no time passing completes every flow.
#[test]
fn honest_flows_all_complete() {
    let mut run = Run::new();
    for (client, persona) in [(0, 0), (1, 1), (2, 2), (0, 2), (2, 0)] {
        run.start(client, persona, 0, false).unwrap();
    }
    finish_honestly(&mut run).unwrap();
    assert_eq!(run.completed_flows, 5);
    // Ada and Linus on both connections, Grace on one: five distinct users.
    assert_eq!(run.users.len(), 5);
}

// --- The small pieces -------------------------------------------------------------------------

fn scope_token() -> impl Strategy<Value = String> {
    prop::string::string_regex("[a-z:_]{1,6}").expect("a regex")
}

fn unreserved(length: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
                .chars()
                .collect::<Vec<_>>(),
        ),
        length,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

/// The parts of a generated redirect URI; the matching rule is defined on these.
#[derive(Debug, Clone)]
struct UriParts {
    scheme: &'static str,
    host: &'static str,
    port: Option<u16>,
    path: &'static str,
    query: Option<&'static str>,
}

impl UriParts {
    fn render(&self) -> String {
        let port = self.port.map(|port| format!(":{port}")).unwrap_or_default();
        let query = self
            .query
            .map(|query| format!("?{query}"))
            .unwrap_or_default();
        format!("{}://{}{port}{}{query}", self.scheme, self.host, self.path)
    }

    fn is_loopback_http(&self) -> bool {
        self.scheme == "http" && matches!(self.host, "127.0.0.1" | "localhost" | "[::1]")
    }
}

fn uri_parts() -> impl Strategy<Value = UriParts> {
    (
        prop::sample::select(vec!["http", "https"]),
        prop::sample::select(vec![
            "127.0.0.1",
            "localhost",
            "[::1]",
            "127.0.0.2",
            "app.example",
        ]),
        proptest::option::of(prop::sample::select(vec![
            1u16, 80, 443, 3000, 53124, 65535,
        ])),
        prop::sample::select(vec!["/cb", "/callback", "/cb/", ""]),
        proptest::option::of(prop::sample::select(vec!["a=1", "a=2"])),
    )
        .prop_map(|(scheme, host, port, path, query)| UriParts {
            scheme,
            host,
            port,
            path,
            query,
        })
}

/// Arbitrary JSON, biased towards the user object's field names and plausible values.
fn claims_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|number| json!(number)),
        ".{0,8}".prop_map(Value::String),
        prop::sample::select(vec![
            "+14155550123",
            "+0123",
            "+1",
            "14155550123",
            "+1234567890123456",
            " ",
            "",
        ])
        .prop_map(|text| Value::String(text.to_owned())),
        (0usize..260).prop_map(|length| Value::String("x".repeat(length))),
    ];
    let value = leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map(".{0,4}", inner, 0..3)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    });
    let key = prop::sample::select(vec![
        "sub",
        "email",
        "login_failed",
        "loginFailed",
        "phone_number",
        "phoneNumber",
        "organization_external_name",
        "organization_external_id",
        "custom_attributes",
        "groups",
        "roles",
        "email_verified",
        "given_name",
        "unknown_field",
    ]);
    prop::collection::btree_map(key, value, 0..8).prop_map(|map| {
        Value::Object(
            map.into_iter()
                .map(|(key, value)| (key.to_owned(), value))
                .collect(),
        )
    })
}

/// The documented validation, written independently: the field names that must be refused.
fn expected_violations(claims: &UserClaims) -> Vec<&'static str> {
    let blank = |value: &Option<String>| value.as_deref().is_none_or(|text| text.trim().is_empty());
    let mut fields = Vec::new();
    if !claims.login_failed && blank(&claims.sub) {
        fields.push("sub");
    }
    if !claims.login_failed && blank(&claims.email) {
        fields.push("email");
    }
    if let Some(phone) = &claims.phone_number {
        let digits = phone.strip_prefix('+').unwrap_or("");
        let e164 = phone.starts_with('+')
            && (2..=15).contains(&digits.len())
            && digits.chars().all(|character| character.is_ascii_digit())
            && !digits.starts_with('0');
        if !e164 {
            fields.push("phone_number");
        }
    }
    if claims
        .organization_external_name
        .as_ref()
        .is_some_and(|name| name.chars().count() > 200)
    {
        fields.push("organization_external_name");
    }
    fields
}

proptest! {
    #![proptest_config(config(256))]

    /// Parsing keeps the first occurrence of each scope in order and skips empty items;
    /// serialising and parsing again gives the same set.
    #[test]
    fn scope_strings_dedup_keep_order_and_round_trip(
        tokens in prop::collection::vec(scope_token(), 0..10),
        separators in prop::collection::vec(1usize..4, 10),
    ) {
        let mut text = String::new();
        for (token, spaces) in tokens.iter().zip(&separators) {
            text.push_str(token);
            text.push_str(&" ".repeat(*spaces));
        }
        let parsed = ScopeSet::parse(&text);
        let mut expected: Vec<String> = Vec::new();
        for token in &tokens {
            if !expected.contains(token) {
                expected.push(token.clone());
            }
        }
        prop_assert_eq!(parsed.as_slice(), expected.as_slice());
        prop_assert_eq!(parsed.is_empty(), tokens.is_empty());
        let serialised = parsed.to_space_separated();
        prop_assert!(!serialised.contains("  ") && !serialised.starts_with(' '));
        prop_assert_eq!(ScopeSet::parse(&serialised), parsed.clone());
        prop_assert!(parsed.is_subset_of(&tokens));
        prop_assert!(parsed.outside_of(&tokens).is_empty());
    }

    /// A presented redirect URI matches a registered one iff the strings are equal, or both are
    /// loopback `http` URIs that differ at most in the port (RFC 8252 §7.3).
    #[test]
    fn redirect_uris_match_exactly_or_on_any_loopback_port(
        presented in uri_parts(),
        registered in uri_parts(),
    ) {
        let presented_text = presented.render();
        let registered_text = registered.render();
        let Some(uri) = RedirectUri::parse(&presented_text) else {
            return Err(TestCaseError::fail(format!("{presented_text} does not parse")));
        };
        let expected = presented_text == registered_text
            || (presented.is_loopback_http()
                && registered.is_loopback_http()
                && presented.host == registered.host
                && same_path(presented.path, registered.path)
                && presented.query == registered.query);
        prop_assert_eq!(
            uri.matches_registered(&registered_text),
            expected,
            "{} against {}",
            presented_text,
            registered_text
        );
        // Matching against itself always holds; a fragment never parses.
        prop_assert!(uri.matches_registered(&presented_text));
        let with_fragment = format!("{presented_text}#frag");
        prop_assert!(RedirectUri::parse(&with_fragment).is_none());
    }

    /// Any verifier of the RFC 7636 grammar matches its own S256 challenge and no other
    /// verifier's.
    #[test]
    fn pkce_s256_matches_its_own_verifier_only(
        verifier in unreserved(43..=128),
        other in unreserved(43..=128),
    ) {
        let Some(parsed) = PkceVerifier::parse(&verifier) else {
            return Err(TestCaseError::fail("a grammatical verifier was refused"));
        };
        let challenge = pkce_s256(&parsed);
        prop_assert_eq!(challenge.as_str().len(), 43);
        prop_assert!(pkce_verify(&parsed, &challenge));
        let Some(other) = PkceVerifier::parse(&other) else {
            return Err(TestCaseError::fail("a grammatical verifier was refused"));
        };
        prop_assert_eq!(pkce_verify(&other, &challenge), other.expose() == verifier);
    }

    /// Verifiers outside 43–128 characters or with a character outside the unreserved set are
    /// refused.
    #[test]
    fn pkce_verifiers_outside_the_grammar_are_refused(
        short in unreserved(0..=42),
        long in unreserved(129..=200),
        valid in unreserved(43..=127),
        position in any::<Index>(),
        bad in prop::sample::select(vec!['+', '/', '=', ' ', '%', 'é', '\n']),
    ) {
        prop_assert!(PkceVerifier::parse(&short).is_none());
        prop_assert!(PkceVerifier::parse(&long).is_none());
        let mut characters: Vec<char> = valid.chars().collect();
        let at = position.index(characters.len() + 1);
        characters.insert(at, bad);
        let tainted: String = characters.into_iter().collect();
        prop_assert!(PkceVerifier::parse(&tainted).is_none());
    }

    /// Form encoding round trips any pairs, and the emulator's redirects carry `state`,
    /// `login_request_id` and `code` back exactly, whatever characters they hold.
    #[test]
    fn form_and_query_encoding_round_trip(
        pairs in prop::collection::vec((".{0,12}", ".{0,12}"), 0..6),
        state in ".{0,24}",
        code in ".{1,24}",
    ) {
        let encoded = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&pairs)
            .finish();
        let decoded: Vec<(String, String)> = url::form_urlencoded::parse(encoded.as_bytes())
            .into_owned()
            .collect();
        prop_assert_eq!(&decoded, &pairs);

        let login = LoginRedirect {
            login_endpoint: Url::parse("http://127.0.0.1:8401/login?tenant=a%20b").map_err(
                |error| TestCaseError::fail(error.to_string()),
            )?,
            login_request_id: LoginRequestId::new(code.clone()),
            state: LoginState::new(state.clone()),
            browser_binding: None,
            binding_lifetime_secs: 0,
        };
        let location = login.location();
        let query: Vec<(String, String)> = location.query_pairs().into_owned().collect();
        prop_assert_eq!(
            query,
            vec![
                ("tenant".to_owned(), "a b".to_owned()),
                ("login_request_id".to_owned(), code.clone()),
                ("state".to_owned(), state.clone()),
            ]
        );

        let redirect = ClientRedirect {
            redirect_uri: RedirectUri::parse("http://127.0.0.1:9/cb?x=1")
                .ok_or_else(|| TestCaseError::fail("redirect URI"))?,
            state: (!state.is_empty()).then(|| ClientState::new(state.clone())),
            iss: format!("{ENVIRONMENT_URL}/resources/res_1"),
            outcome: RedirectOutcome::Code(AuthorizationCode::new(code.clone())),
        };
        let location = redirect
            .location()
            .ok_or_else(|| TestCaseError::fail("no location"))?;
        let query: Vec<(String, String)> = location.query_pairs().into_owned().collect();
        let mut expected = vec![
            ("x".to_owned(), "1".to_owned()),
            ("code".to_owned(), code.clone()),
        ];
        if !state.is_empty() {
            expected.push(("state".to_owned(), state.clone()));
        }
        expected.push(("iss".to_owned(), format!("{ENVIRONMENT_URL}/resources/res_1")));
        prop_assert_eq!(query, expected);
    }

    /// Arbitrary JSON posted as the user either fails to parse, or the emulator answers with a
    /// request id or exactly the documented field-level violations; it never panics.
    #[test]
    fn posted_user_claims_yield_a_claim_set_or_field_violations(body in claims_json()) {
        let Ok(claims) = serde_json::from_value::<UserClaims>(body) else {
            return Ok(());
        };
        let mut run = Run::new();
        run.start(0, 2, 0, false)?;
        let login_id = run.model[0].login_id.clone();
        let expected = expected_violations(&claims);
        let result = run
            .flows
            .submit_user("conn_1", &login_id, claims, run.now, &run.ids);
        match result {
            Ok(id) => {
                prop_assert!(expected.is_empty(), "accepted despite {:?}", expected);
                prop_assert!(id.as_str().starts_with("req_"));
            }
            Err(SubmitUserError::InvalidArgument { message, violations }) => {
                let fields: Vec<&str> =
                    violations.iter().map(|violation| violation.field.as_str()).collect();
                prop_assert_eq!(&fields, &expected);
                prop_assert_eq!(message, format!("invalid user: {}", expected.join(", ")));
                prop_assert!(violations.iter().all(|violation| !violation.description.is_empty()));
            }
            Err(other) => return Err(TestCaseError::fail(format!("unexpected {other:?}"))),
        }
    }
}

/// `/cb` and `` differ as strings, but a URL with an empty path is normalised to `/`.
fn same_path(left: &str, right: &str) -> bool {
    fn normalise(path: &str) -> &str {
        if path.is_empty() { "/" } else { path }
    }
    normalise(left) == normalise(right)
}
