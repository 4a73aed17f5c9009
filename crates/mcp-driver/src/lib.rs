//! The MCP client driver: behaves like the strictest real MCP client, given only the MCP URL.
//!
//! [`run_flow`] performs, over HTTP only: the unauthenticated `initialize` and its 401 challenge,
//! protected-resource metadata discovery (RFC 9728), authorization-server metadata discovery in the
//! MCP spec's order with a byte-exact issuer check (RFC 8414 §3.3), dynamic client registration
//! (RFC 7591), an authorization request with PKCE S256 (RFC 7636) and `resource` (RFC 8707), a
//! headless user agent following the redirect chain with cookies, the authorization-response
//! checks (RFC 9207 `iss`, `state`), the code exchange, ID-token verification when `openid` was
//! granted, and finally an MCP session that calls the `whoami` tool with the access token.
//! Every HTTP exchange is recorded as a [`Hop`].
//!
//! The user agent is a cookie-keeping HTTP client by default ([`UserAgent::Http`]: every hop must
//! be a redirect, as with Your App's `auto_login` and `consent = "auto"`), or Chromium over
//! WebDriver ([`UserAgent::Browser`], see [`browser`]), where the login form is filled in and the
//! consent page clicked like a person would.
//!
//! [`run_client_credentials`] runs the same flow as an agent: `client_credentials` at the token
//! endpoint instead of registration, the user agent and the code exchange.
//!
//! [`run_session`] is the general MCP client the `mcp-driver` binary runs for the official MCP
//! conformance suite: it authorizes whenever a request is answered 401 or 403
//! `insufficient_scope` (step-up with the union of scopes, at most
//! [`ClientOptions::max_authorizations`] times), uses pre-registered credentials, a Client ID
//! Metadata Document URL or DCR (one identity per issuer), or an agent's `client_credentials`,
//! authenticates at the token endpoint with `none`, `client_secret_post` or
//! `client_secret_basic`, and speaks both the 2025-11-25 session protocol and the stateless
//! 2026-07-28 one.

pub mod browser;
mod callback;
mod challenge;
mod client_auth;
mod discovery;
mod error;
mod flow;
mod hop;
mod mcp;
mod session;

use std::time::Duration;

use scalekit_wire::Secret;
use url::Url;

pub use callback::{CallbackExpectation, check_callback, is_redirect_uri, resolve_location};
pub use challenge::{BearerChallenge, Challenge, parse_challenges};
pub use client_auth::{
    TokenEndpointAuthMethod, may_authorize_again, registration_auth_method, token_auth_method,
    union_scopes,
};
pub use discovery::{
    AuthorizationServerMetadata, ProtectedResourceMetadata, accepted_id_token_issuers,
    authorization_server_metadata_candidates, check_resource,
    protected_resource_metadata_candidates, select_scopes,
};
pub use error::DriverError;
pub use flow::excerpt;
pub use hop::{Hop, Phase, redact_url};
pub use session::{SessionReport, jsonrpc_messages, run_session};

/// The redirect URI the driver registers. Nothing listens there: the user agent stops when a
/// `Location` points at it.
pub const DEFAULT_REDIRECT_URI: &str = "http://127.0.0.1:33418/callback";

/// What the driver needs to know; everything else it discovers.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// The MCP server's Streamable HTTP endpoint.
    pub mcp_url: Url,
    /// The redirect URI registered and used in the authorization request.
    pub redirect_uri: Url,
    /// `client_name` for dynamic client registration and the MCP `clientInfo`.
    pub client_name: String,
    /// Scopes added to the selected ones when the AS lists them in `scopes_supported`, e.g.
    /// `offline_access` and `openid`.
    pub extra_scopes: Vec<String>,
    /// Timeout of each HTTP request.
    pub timeout: Duration,
    /// Who follows the authorization request to the redirect URI.
    pub user_agent: UserAgent,
    /// A CA certificate (PEM) the driver's HTTP clients trust besides the system's roots (the
    /// emulator's development CA under TLS).
    pub ca_cert_pem: Option<String>,
}

/// The user agent that takes the authorization request to the redirect URI.
#[derive(Debug, Clone, Default)]
pub enum UserAgent {
    /// The driver's cookie-keeping HTTP client: follows redirects and fails on any other answer.
    #[default]
    Http,
    /// Chromium over WebDriver: signs in through the login form and decides on the consent page.
    Browser(browser::BrowserAgent),
}

impl DriverConfig {
    /// A configuration with the defaults for everything but the MCP URL.
    pub fn new(mcp_url: Url) -> Self {
        Self {
            mcp_url,
            redirect_uri: Url::parse(DEFAULT_REDIRECT_URI)
                .expect("the default redirect URI parses"),
            client_name: "testbed mcp-driver".to_owned(),
            extra_scopes: Vec::new(),
            timeout: Duration::from_secs(10),
            user_agent: UserAgent::Http,
            ca_cert_pem: None,
        }
    }
}

/// The MCP protocol version [`run_session`] speaks unless told otherwise.
pub const DEFAULT_PROTOCOL_VERSION: &str = "2025-11-25";

/// A client registered out of band (MCP 2025-11-25 "Client Registration Approaches":
/// pre-registration comes first).
#[derive(Debug, Clone)]
pub struct PreRegisteredClient {
    /// The `client_id` the AS issued.
    pub client_id: String,
    /// The secret, for a confidential client.
    pub client_secret: Option<Secret>,
    /// The issuer the credentials belong to; `None` uses them at whatever AS the PRM names.
    /// Credentials are bound to their issuer (MCP 2026-07-28), so with `Some` they are never
    /// shown to another one.
    pub issuer: Option<String>,
}

/// An agent's credentials: a confidential client of the MCP server's authorization server that
/// gets tokens with `client_credentials` (RFC 6749 §4.4), without a user. `Debug` never shows the
/// secret.
#[derive(Debug, Clone)]
pub struct AgentCredentials {
    /// The agent's `client_id`.
    pub client_id: String,
    /// Its secret.
    pub client_secret: Secret,
}

/// How the client identifies itself and how persistent it is. Everything defaults: DCR, no
/// CIMD URL, at most 3 authorizations per run.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Use these credentials instead of registering.
    pub pre_registered: Option<PreRegisteredClient>,
    /// An https URL used as `client_id` when the AS says `client_id_metadata_document_supported`
    /// (the document must be served there; the driver does not serve it).
    pub client_id_metadata_document_url: Option<Url>,
    /// The most authorizations (first one, re-authorizations after 401, step-ups after 403
    /// `insufficient_scope`) one [`run_session`] performs before giving up.
    pub max_authorizations: usize,
    /// The MCP protocol version of [`run_session`]: up to 2025-11-25 it opens a session with
    /// `initialize`; from 2026-07-28 every request is stateless and carries the version in
    /// `MCP-Protocol-Version` and `_meta`.
    pub protocol_version: String,
    /// Scopes requested instead of the spec's selection (challenge > PRM > none).
    pub scope_override: Option<Vec<String>>,
    /// [`run_session`] calls the first listed tool (no arguments) after `tools/list`.
    pub call_first_tool: bool,
    /// Authorize as this agent with `client_credentials` instead of a user's authorization-code
    /// flow: discovery from the challenge, then the token endpoint with `scope` and `resource`.
    pub client_credentials: Option<AgentCredentials>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            pre_registered: None,
            client_id_metadata_document_url: None,
            max_authorizations: 3,
            protocol_version: DEFAULT_PROTOCOL_VERSION.to_owned(),
            scope_override: None,
            call_first_tool: false,
            client_credentials: None,
        }
    }
}

/// Tokens from the token endpoint. `Debug` never shows a token.
#[derive(Debug, Clone)]
pub struct TokenSet {
    /// The access token.
    pub access_token: Secret,
    /// `token_type`, normally `Bearer`.
    pub token_type: String,
    /// The refresh token, when one was issued.
    pub refresh_token: Option<Secret>,
    /// The ID token, when one was issued.
    pub id_token: Option<Secret>,
    /// `expires_in`.
    pub expires_in: Option<Duration>,
    /// `scope` of the response split on spaces, when the response had one.
    pub scope: Option<Vec<String>>,
}

/// Everything a successful run saw.
#[derive(Debug, Clone)]
pub struct FlowReport {
    /// Every HTTP exchange in order (secrets in URLs redacted).
    pub hops: Vec<Hop>,
    /// The authorization server's issuer (metadata `issuer`).
    pub authorization_server: Url,
    /// The `client_id` from dynamic client registration.
    pub client_id: String,
    /// The scopes the driver asked for.
    pub requested_scopes: Vec<String>,
    /// The granted scopes: the token response's `scope`, else the requested ones (RFC 6749 §5.1).
    pub granted_scopes: Vec<String>,
    /// The PRM `resource`, sent verbatim as `resource` on every OAuth request.
    pub resource: String,
    /// The metadata `token_endpoint` (used by [`refresh`]).
    pub token_endpoint: Url,
    /// The tokens.
    pub tokens: TokenSet,
    /// The access token's payload, decoded WITHOUT verification (for reporting); `null` when the
    /// token is not a JWT.
    pub access_token_claims: serde_json::Value,
    /// The ID token's payload, after verification, when `openid` was granted and an ID token
    /// returned.
    pub id_token_claims: Option<serde_json::Value>,
    /// What the MCP server's `whoami` tool returned.
    pub whoami: serde_json::Value,
}

/// Runs the whole flow (see the crate documentation).
pub async fn run_flow(config: &DriverConfig) -> Result<FlowReport, DriverError> {
    run_flow_recorded(config).await.1
}

/// Runs the flow as an agent: the unauthenticated request and its challenge, protected-resource
/// and authorization-server metadata, `client_credentials` at the token endpoint (HTTP Basic when
/// the server lists it, else form fields; `scope` selected as for a user, `resource` the PRM's),
/// then `whoami` with the token. No registration, no user agent, no refresh or ID token. The
/// hops come back whatever happened.
pub async fn run_client_credentials(
    config: &DriverConfig,
    agent: AgentCredentials,
) -> (Vec<Hop>, Result<FlowReport, DriverError>) {
    let options = ClientOptions {
        client_credentials: Some(agent),
        ..ClientOptions::default()
    };
    let driver = match flow::Driver::with_options(config, options) {
        Ok(driver) => driver,
        Err(error) => return (Vec::new(), Err(error)),
    };
    let result = driver.run().await;
    (driver.hops(), result)
}

/// Like [`run_flow`], but also returns the hops when the run fails, for reports of failed runs.
pub async fn run_flow_recorded(
    config: &DriverConfig,
) -> (Vec<Hop>, Result<FlowReport, DriverError>) {
    let driver = match flow::Driver::new(config) {
        Ok(driver) => driver,
        Err(error) => return (Vec::new(), Err(error)),
    };
    let result = driver.run().await;
    (driver.hops(), result)
}

/// What [`authorize`] obtained.
#[derive(Debug, Clone)]
pub struct Authorized {
    /// The client identity used (registered by DCR, unless pre-registered).
    pub client_id: String,
    /// The authorization server's issuer (metadata `issuer`).
    pub authorization_server: String,
    /// The PRM `resource`, sent as `resource` on the OAuth requests.
    pub resource: Option<String>,
    /// The scopes the driver asked for.
    pub requested_scopes: Vec<String>,
    /// The tokens.
    pub tokens: TokenSet,
}

/// Runs the flow up to the tokens without calling the MCP server with them: the unauthenticated
/// request and its challenge, discovery, registration, the authorization request through the
/// user agent and the code exchange. The hops come back whatever happened. The ID token is not
/// verified (a harness may obtain tokens issued in the past on purpose).
pub async fn authorize(config: &DriverConfig) -> (Vec<Hop>, Result<Authorized, DriverError>) {
    let driver = match flow::Driver::new(config) {
        Ok(driver) => driver,
        Err(error) => return (Vec::new(), Err(error)),
    };
    let result = driver
        .authorize_from_challenge()
        .await
        .map(|authorization| Authorized {
            client_id: authorization.client.client_id,
            authorization_server: authorization.metadata.issuer,
            resource: authorization.resource,
            requested_scopes: authorization.requested_scopes,
            tokens: authorization.tokens,
        });
    (driver.hops(), result)
}

/// Uses the flow's refresh token (`grant_type=refresh_token`, with `resource`, RFC 8707 §2.2) and
/// returns the new tokens.
pub async fn refresh(config: &DriverConfig, report: &FlowReport) -> Result<TokenSet, DriverError> {
    flow::Driver::new(config)?.refresh(report).await
}
