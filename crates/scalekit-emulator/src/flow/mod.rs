//! The state machine of the emulated authorization server.
//!
//! Architecture invariant: nothing here does IO, knows about axum or tokio, or signs anything.
//! Every transition is a method on [`Flows`] that takes `now` (unix seconds) and the id generator
//! as arguments and returns a typed result or a typed error enum whose variants name the wire
//! error they become at the HTTP edge.

mod agents;
mod authorize;
mod browser;
pub mod cimd;
mod consents;
mod cross_app;
mod durable;
pub mod inspect;
mod login;
mod redirect;
mod register;
mod token;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use scalekit_wire::{Secret, UserClaims};
use url::Url;

pub use agents::{
    AgentGrant, AgentRequest, AgentTokenError, AgentTokenRequest, AgentView, CreateAgentError,
    CreatedAgent, DeleteAgentError, MAX_AGENT_NAME_CHARS, MAX_CREATED_AGENTS, StoredAgent,
};
pub use authorize::{
    AuthorizeError, AuthorizeRequest, LoginRedirect, RedirectUriRefusal, TargetRefusal,
};
pub use browser::{BrowserBinding, BrowserRefusal, PresentedBrowser};
pub use consents::{ConsentView, RevokeConsentError};
pub use cross_app::{
    AssertionAudience, AssertionClient, AssertionClientRefusal, AssertionGrant,
    AssertionRedemption, AssertionRefusal, AssertionScopeRefusal, AssertionTargetRefusal,
    JWT_BEARER, JwtBearerError, StoredAssertion, StoredIdpUser, VerifiedAssertion,
};
pub use durable::{
    DurableChange, DurableState, RESIDENT_GRANTS, RESIDENT_REFRESH_TOKENS, StoredClient,
    StoredConsent, StoredGrant, StoredOrganization, StoredRefreshToken, StoredSignIn, StoredUser,
};
pub use login::{
    CallbackError, CallbackOutcome, CallbackRefusal, ConsentError, ConsentPrompt, SubmitUserError,
    SubmitUserNotFound,
};
pub use redirect::{ClientRedirect, RedirectOutcome, RedirectRefusal};
pub use register::{ClientRegistration, RegisterError, RegisteredClient};
pub use token::{
    AuthorizationCodeRequest, ClientRefusal, GrantRefusal, IssuedGrant, PresentedToken,
    RefreshRequest, StoreLookup, TokenError, TokenRequestRefusal,
};

use crate::config::{Config, ConsentMode, is_server_url};
use crate::types::{
    AuthRequestId, AuthorizationCode, ClientId, ClientState, ConnectionId, ConsentId,
    LoginRequestId, LoginState, OrganizationId, PkceChallenge, RedirectUri, RefreshToken,
    ResourceId, ScopeSet, SessionId, UserId, is_protocol_scope,
};

/// A BYOA connection as the state machine sees it.
#[derive(Debug, Clone)]
struct Connection {
    login_endpoint: Url,
}

/// An MCP server resource as the state machine sees it.
#[derive(Debug, Clone)]
struct Resource {
    id: ResourceId,
    name: String,
    /// The Server URL, when the resource has one.
    server_url: Option<Url>,
    connection: ConnectionId,
    scopes: Vec<String>,
    /// Scalekit's `intersect_scopes_user_permission`: a user gets only the requested scopes a
    /// posted role grants the permission of (protocol scopes always).
    intersect_scopes_user_permission: bool,
    consent: ConsentMode,
    dynamic_client_registration: bool,
    client_id_metadata_documents: bool,
    authorization_code_lifetime_secs: u64,
    refresh_token_lifetime_secs: u64,
    login_request_lifetime_secs: u64,
    /// Sign-ins are finished only by the browser that started them (Decisions §9).
    browser_binding: bool,
    /// Scalekit's XAA toggle: the `jwt-bearer` grant with identity assertions.
    cross_app_access: bool,
}

/// A registered client (from the configuration or DCR).
#[derive(Debug, Clone)]
struct Client {
    id: ClientId,
    name: Option<String>,
    redirect_uris: Vec<String>,
    resource: ResourceId,
    secret: Option<Secret>,
    /// Registered through DCR (durable), not configured.
    dynamic: bool,
}

/// What `/oauth/authorize` remembered while the user signs in at "Your App".
#[derive(Debug, Clone)]
struct LoginRequest {
    state: LoginState,
    connection: ConnectionId,
    authorization: PendingAuthorization,
    expires_at: u64,
    submitted: Option<SubmittedUser>,
    /// The digest of the sign-in cookie's value; `None` when the resource does not bind sign-ins
    /// to a browser.
    browser: Option<browser::BindingDigest>,
}

/// The client's side of a flow: everything the authorization code will be bound to.
#[derive(Debug, Clone)]
struct PendingAuthorization {
    client: ClientId,
    /// Shown on the consent page: the registered or the metadata document's `client_name`.
    client_name: Option<String>,
    redirect_uri: RedirectUri,
    client_state: Option<ClientState>,
    nonce: Option<String>,
    scopes: ScopeSet,
    challenge: PkceChallenge,
    resource: ResourceId,
}

/// The user "Your App" posted for a login request.
#[derive(Debug, Clone)]
struct SubmittedUser {
    auth_request_id: AuthRequestId,
    claims: UserClaims,
}

/// A completed sign-in: the pending authorization plus who signed in.
#[derive(Debug, Clone)]
struct SignIn {
    authorization: PendingAuthorization,
    connection: ConnectionId,
    user: UserId,
    external_sub: String,
    claims: UserClaims,
    organization: Option<OrganizationId>,
    session: SessionId,
    auth_time: u64,
}

/// Scopes a user approved for a client and resource, skipped on the next sign-in.
#[derive(Debug, Clone)]
struct RememberedConsent {
    /// `usrcnst_…`, stable for the (user, client, resource) and across restarts.
    id: String,
    scopes: ScopeSet,
    /// Unix seconds of the first approval.
    created_at: u64,
}

/// A consent page waiting for the user's decision.
#[derive(Debug, Clone)]
struct PendingConsent {
    sign_in: SignIn,
    expires_at: u64,
    /// The login request's browser binding, which the decision must come with too.
    browser: Option<browser::BindingDigest>,
    /// The login request the sign-in started as (it names the sign-in's cookie).
    login_request: LoginRequestId,
}

/// An issued authorization code, kept until it is redeemed or its lifetime ends.
#[derive(Debug, Clone)]
struct CodeRecord {
    expires_at: u64,
    /// Everything the token exchange needs.
    sign_in: Box<SignIn>,
}

/// The first 16 bytes of a code's SHA-256: the key of a redeemed code. A random 256-bit code's
/// digest does not collide in practice, and the code itself is not kept.
type CodeDigest = [u8; 16];

fn code_digest(code: &AuthorizationCode) -> CodeDigest {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, code.expose().as_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest.as_ref()[..16]);
    key
}

/// A redeemed code, kept until the code's lifetime ends only so that a second presentation
/// revokes its grant (RFC 6749 §4.1.2): 32 bytes a code instead of a whole sign-in, because every
/// flow leaves one for the code's lifetime (the memory profile in docs/performance.md).
#[derive(Debug, Clone, Copy)]
struct RedeemedCode {
    expires_at: u64,
    /// The number of a `grant_` + digits id (every id [`crate::ids::RandomIds`] mints), or
    /// [`NAMED_GRANT`] when the id is kept in `Flows::redeemed_named_grants` instead.
    grant_number: u64,
}

/// [`RedeemedCode::grant_number`] of an id that is not `grant_` + a number (test generators).
const NAMED_GRANT: u64 = u64::MAX;

/// The prefix of grant ids (`grant_` + digits, see [`crate::ids`]).
const GRANT_PREFIX: &str = "grant_";

/// The number of `grant_` + the decimal digits of a number, if `grant_id` is one exactly.
fn grant_number(grant_id: &str) -> Option<u64> {
    grant_id
        .strip_prefix(GRANT_PREFIX)
        .and_then(|digits| digits.parse::<u64>().ok())
        .filter(|number| *number != NAMED_GRANT && format!("{GRANT_PREFIX}{number}") == grant_id)
}

/// The grant behind a family of refresh tokens.
#[derive(Debug, Clone)]
struct GrantRecord {
    sign_in: SignIn,
    refresh_tokens: Vec<RefreshToken>,
}

/// One refresh token of a grant.
#[derive(Debug, Clone)]
struct RefreshRecord {
    grant: String,
    client: ClientId,
    expires_at: u64,
    /// Already exchanged for a newer token; presenting it again revokes the grant.
    rotated: bool,
}

/// The in-memory state of the emulated environment.
#[derive(Debug)]
pub struct Flows {
    environment_url: String,
    connections: HashMap<ConnectionId, Connection>,
    /// The permissions of each role of the environment, by role name.
    role_permissions: HashMap<String, Vec<String>>,
    resources: Vec<Resource>,
    clients: HashMap<ClientId, Client>,
    login_requests: HashMap<LoginRequestId, LoginRequest>,
    login_states: HashMap<LoginState, LoginRequestId>,
    consents: HashMap<ConsentId, PendingConsent>,
    codes: HashMap<AuthorizationCode, CodeRecord>,
    redeemed_codes: HashMap<CodeDigest, RedeemedCode>,
    /// The grant ids of redeemed codes that are not `grant_` + a number.
    redeemed_named_grants: HashMap<CodeDigest, String>,
    grants: HashMap<String, GrantRecord>,
    refresh_tokens: HashMap<RefreshToken, RefreshRecord>,
    users: HashMap<(ConnectionId, String), UserId>,
    organizations: HashMap<(ConnectionId, String), OrganizationId>,
    remembered_consents: HashMap<(UserId, ClientId, ResourceId), RememberedConsent>,
    /// The resources' agents: the fixtures' in their order, then those the control API created.
    agents: Vec<agents::Agent>,
    /// Cross-app access: redeemed assertions (until their `exp`) and the identity providers'
    /// users.
    cross_app: cross_app::CrossAppState,
    /// Login requests and consent pages in progress past which `/oauth/authorize` refuses.
    max_pending_login_requests: usize,
    /// Redeemed assertions remembered past which the `jwt-bearer` grant refuses.
    max_redeemed_assertions: usize,
    /// Durable changes not yet drained by the edge; `None` when nobody drains them.
    durable_log: Option<Vec<DurableChange>>,
    /// Grants and refresh tokens live in the store, not in `grants` and `refresh_tokens`: the
    /// edge loads the one a request presents before the transition and evicts them after (see
    /// [`Flows::evict_grants`]).
    grants_in_store: bool,
}

impl Flows {
    /// The state for `config`, served at `environment_url` (no trailing slash is kept).
    pub fn new(config: &Config, environment_url: &Url) -> Flows {
        let connections = config
            .connections
            .iter()
            .map(|connection| {
                (
                    ConnectionId::new(&connection.id),
                    Connection {
                        login_endpoint: connection.login_endpoint.clone(),
                    },
                )
            })
            .collect();
        let resources = config
            .resources
            .iter()
            .map(|resource| Resource {
                id: ResourceId::new(&resource.id),
                name: resource.name.clone(),
                server_url: resource.server_url.clone(),
                connection: ConnectionId::new(&resource.connection),
                scopes: resource.scopes.clone(),
                intersect_scopes_user_permission: resource.intersect_scopes_user_permission,
                consent: resource.consent,
                dynamic_client_registration: resource.dynamic_client_registration,
                client_id_metadata_documents: resource.client_id_metadata_documents,
                authorization_code_lifetime_secs: resource.authorization_code_lifetime_secs,
                refresh_token_lifetime_secs: resource.refresh_token_lifetime_secs,
                login_request_lifetime_secs: resource.login_request_lifetime_secs,
                browser_binding: resource.browser_binding,
                cross_app_access: resource.cross_app_access,
            })
            .collect();
        let clients = config
            .clients
            .iter()
            .map(|client| {
                let id = ClientId::new(&client.client_id);
                let record = Client {
                    id: id.clone(),
                    name: client.client_name.clone(),
                    redirect_uris: client.redirect_uris.clone(),
                    resource: ResourceId::new(&client.resource),
                    secret: client.client_secret.clone(),
                    dynamic: false,
                };
                (id, record)
            })
            .collect();
        let agents = config
            .resources
            .iter()
            .flat_map(agents::Agent::configured)
            .collect();
        let role_permissions = config
            .roles
            .iter()
            .map(|role| (role.name.clone(), role.permissions.clone()))
            .collect();
        Flows {
            environment_url: environment_url.as_str().trim_end_matches('/').to_owned(),
            connections,
            role_permissions,
            resources,
            clients,
            login_requests: HashMap::new(),
            login_states: HashMap::new(),
            consents: HashMap::new(),
            codes: HashMap::new(),
            redeemed_codes: HashMap::new(),
            redeemed_named_grants: HashMap::new(),
            grants: HashMap::new(),
            refresh_tokens: HashMap::new(),
            users: HashMap::new(),
            organizations: HashMap::new(),
            remembered_consents: HashMap::new(),
            agents,
            cross_app: cross_app::CrossAppState::default(),
            max_pending_login_requests: config.max_pending_login_requests,
            max_redeemed_assertions: config.max_redeemed_assertions,
            durable_log: None,
            grants_in_store: false,
        }
    }

    /// `{env}/resources/{res}`: the per-resource issuer, sent as `iss` on every redirect to the
    /// client (RFC 9207), because MCP clients discover the per-resource metadata document.
    pub fn resource_issuer(&self, resource: &ResourceId) -> String {
        format!("{}/resources/{resource}", self.environment_url)
    }

    /// Drops expired login requests, consent pages, codes, refresh tokens and the grants left
    /// without one, and redeemed assertions past their `exp`, so abandoned flows do not grow
    /// memory without bound. Users, organizations,
    /// remembered consents and clients are not time-bound and stay.
    pub fn sweep(&mut self, now: u64) {
        self.drop_expired_sign_ins(now);
        self.codes.retain(|_, code| code.expires_at > now);
        self.redeemed_codes.retain(|_, code| code.expires_at > now);
        let live_codes = &self.redeemed_codes;
        self.redeemed_named_grants
            .retain(|digest, _| live_codes.contains_key(digest));
        self.refresh_tokens
            .retain(|_, token| token.expires_at > now);
        let live_tokens = &self.refresh_tokens;
        for grant in self.grants.values_mut() {
            grant
                .refresh_tokens
                .retain(|token| live_tokens.contains_key(token));
        }
        self.grants
            .retain(|_, grant| !grant.refresh_tokens.is_empty());
        self.sweep_redeemed_assertions(now);
        self.record(DurableChange::Expired { now });
    }

    /// Drops expired login requests (with their `state`) and consent pages: the sign-ins in
    /// progress that count against `max_pending_login_requests`.
    fn drop_expired_sign_ins(&mut self, now: u64) {
        self.login_requests
            .retain(|_, request| request.expires_at > now);
        let live_requests = &self.login_requests;
        self.login_states
            .retain(|_, id| live_requests.contains_key(id));
        self.consents.retain(|_, consent| consent.expires_at > now);
    }

    /// Sign-ins in progress: login requests plus consent pages waiting for a decision.
    fn pending_sign_ins(&self) -> usize {
        self.login_requests.len() + self.consents.len()
    }

    /// How many consent pages wait for a decision (for tests and logs).
    pub fn pending_consents(&self) -> usize {
        self.consents.len()
    }

    /// How many login requests, codes (redeemed ones too) and refresh tokens are held (for tests
    /// and logs).
    pub fn pending_counts(&self) -> (usize, usize, usize) {
        (
            self.login_requests.len(),
            self.codes.len() + self.redeemed_codes.len(),
            self.refresh_tokens.len(),
        )
    }

    /// The resource whose Server URL is exactly `value`, else whose `res_…` id is `value`.
    fn resolve_resource(&self, value: &str) -> Option<&Resource> {
        let by_url = self
            .resources
            .iter()
            .find(|resource| is_server_url(resource.server_url.as_ref(), value));
        by_url.or_else(|| {
            self.resources
                .iter()
                .find(|resource| resource.id.as_str() == value)
        })
    }

    /// Remembers that the code with `digest` was redeemed as `grant_id`, until `expires_at`.
    fn remember_redeemed(&mut self, digest: CodeDigest, expires_at: u64, grant_id: &str) {
        let grant_number = grant_number(grant_id).unwrap_or(NAMED_GRANT);
        if grant_number == NAMED_GRANT {
            self.redeemed_named_grants
                .insert(digest, grant_id.to_owned());
        }
        self.redeemed_codes.insert(
            digest,
            RedeemedCode {
                expires_at,
                grant_number,
            },
        );
    }

    /// The grant a redeemed code was exchanged for, if the code with `digest` was redeemed.
    fn redeemed_grant(&self, digest: &CodeDigest) -> Option<String> {
        let redeemed = self.redeemed_codes.get(digest)?;
        match redeemed.grant_number {
            NAMED_GRANT => self.redeemed_named_grants.get(digest).cloned(),
            number => Some(format!("{GRANT_PREFIX}{number}")),
        }
    }

    fn resource(&self, id: &ResourceId) -> Option<&Resource> {
        self.resources.iter().find(|resource| &resource.id == id)
    }

    /// The scopes of `requested` a user holding `roles` is granted where the resource intersects
    /// scopes with the user's permissions: each scope one of the roles grants the permission of
    /// (a role the environment does not declare grants nothing), and every OpenID or OAuth scope,
    /// which is no permission. Order is kept; nothing is refused, the set only narrows.
    fn within_permissions(&self, requested: &ScopeSet, roles: &[String]) -> ScopeSet {
        let held = |scope: &str| {
            roles.iter().any(|role| {
                self.role_permissions
                    .get(role)
                    .is_some_and(|permissions| permissions.iter().any(|each| each == scope))
            })
        };
        requested
            .as_slice()
            .iter()
            .map(String::as_str)
            .filter(|scope| is_protocol_scope(scope) || held(scope))
            .collect()
    }

    /// Removes a grant and every refresh token of it. When grants live in the store, the grant
    /// may not be held here: the revocation is recorded all the same, for the store.
    fn revoke_grant(&mut self, grant_id: &str) {
        let held = self.grants.remove(grant_id);
        if let Some(grant) = &held {
            for token in &grant.refresh_tokens {
                self.refresh_tokens.remove(token);
            }
        }
        if held.is_some() || self.grants_in_store {
            self.record(DurableChange::GrantRevoked {
                grant_id: grant_id.to_owned(),
            });
        }
    }
}
