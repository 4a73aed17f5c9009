//! The emulated environment's configuration, read from `fixtures/environment.toml`.
//!
//! Every field is `pub` because the test stack rewrites URLs after binding ephemeral ports. Ids stay
//! plain strings here (they are the fixture's words); the flow state machine turns them into typed
//! ids once, in `Flows::new`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use scalekit_wire::{Secret, prefix};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::types::is_protocol_scope;

/// The whole environment: one API client, BYOA connections, MCP server resources and
/// pre-registered clients.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the emulator listens.
    pub listen: SocketAddr,
    /// The environment URL when it is not `http://{bound address}` (e.g. behind a proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<Url>,
    /// The environment API client "Your App" authenticates with.
    pub api_client: ApiClientConfig,
    /// BYOA connections.
    #[serde(default)]
    pub connections: Vec<ConnectionConfig>,
    /// The environment's roles and the permissions each grants (the dashboard's Roles &
    /// Permissions). A BYOA user holds the permissions of the roles "Your App" posts; a resource
    /// with `intersect_scopes_user_permission` grants only the scopes the user holds a permission
    /// of the same name for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<RoleConfig>,
    /// MCP server resources.
    #[serde(default)]
    pub resources: Vec<ResourceConfig>,
    /// Clients registered ahead of time (besides those registered through DCR).
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    /// The companies' identity providers the environment trusts for cross-app access (ID-JAGs
    /// at `/oauth/token` with `jwt-bearer`), each played by the emulator itself under
    /// `/_idp/{id}` while the control API is on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_idps: Vec<TrustedIdpConfig>,
    /// Sign-ins in progress (login requests plus consent pages waiting for a decision) past
    /// which `/oauth/authorize` answers `temporarily_unavailable` instead of growing.
    #[serde(default = "default_max_pending_login_requests")]
    pub max_pending_login_requests: usize,
    /// Redeemed identity assertions remembered for their replay check (each until its `exp`)
    /// past which the `jwt-bearer` grant answers 503 `temporarily_unavailable` instead of
    /// growing.
    #[serde(default = "default_max_redeemed_assertions")]
    pub max_redeemed_assertions: usize,
    /// Serves the control API under `/_emulator/` (clock, reset, pending login requests, the
    /// request log, fault injection, signing-key rotation, minting access tokens, the flow
    /// inspector); off, those paths answer 404 like any unknown route. Anyone who reaches it can
    /// mint tokens the environment's keys sign.
    #[serde(default = "default_control")]
    pub control: bool,
    /// Lets Client ID Metadata Document URLs be plain `http` on loopback (`127.0.0.1`,
    /// `localhost`, `[::1]`) and resolve to loopback addresses, so tests can serve documents
    /// locally. Off, a document URL must be `https` and resolve to a public address.
    #[serde(default)]
    pub cimd_allow_insecure_loopback: bool,
    /// Host names the emulator answers for besides `localhost`, `127.0.0.1`, `[::1]` and the
    /// environment URL's host (`host` or `host:port`: a container or proxy name); a request for
    /// any other host gets 421 before routing, gRPC included (DNS rebinding).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<testbed_web::AllowedHost>,
    /// When set, every control API and inspector request needs `Authorization: Bearer <token>`
    /// (the inspector page in a browser: open `/_emulator/ui?token=<token>` once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_token: Option<Secret>,
}

fn default_control() -> bool {
    true
}

fn default_client_id_metadata_documents() -> bool {
    true
}

fn default_browser_binding() -> bool {
    true
}

/// The default cap on sign-ins in progress per environment.
pub const DEFAULT_MAX_PENDING_LOGIN_REQUESTS: usize = 10_000;

fn default_max_pending_login_requests() -> usize {
    DEFAULT_MAX_PENDING_LOGIN_REQUESTS
}

/// The default cap on redeemed identity assertions remembered per environment.
pub const DEFAULT_MAX_REDEEMED_ASSERTIONS: usize = 100_000;

fn default_max_redeemed_assertions() -> usize {
    DEFAULT_MAX_REDEEMED_ASSERTIONS
}

/// The environment API client (client credentials, `skc_…`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiClientConfig {
    /// `skc_…`.
    pub client_id: String,
    /// The client secret, sent as a form field or with HTTP Basic.
    pub client_secret: Secret,
    /// Lifetime of the management token (Decisions §3).
    pub token_lifetime_secs: u64,
}

/// A role of the environment and the permissions it grants. A permission grants the resource
/// scope of the same name; one that names no scope grants none (permissions exist without scopes).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    /// The role's name, as "Your App" posts it in the user's `roles`.
    pub name: String,
    /// The permissions the role grants.
    #[serde(default)]
    pub permissions: Vec<String>,
}

/// A BYOA connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    /// `conn_…`.
    pub id: String,
    /// Where Scalekit sends the browser with `login_request_id` and `state`.
    pub login_endpoint: Url,
}

/// Whether the consent page is shown after the partner callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsentMode {
    /// Skip the consent page (headless runs).
    Auto,
    /// Show the consent page.
    Prompt,
}

/// An MCP server resource.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    /// `res_…`.
    pub id: String,
    /// Shown on the consent page.
    pub name: String,
    /// The "Server URL": exactly what the MCP server publishes as `resource`. Optional, as in
    /// Scalekit's dashboard: without one, access tokens carry `aud = [res_…]` only and clients
    /// name the resource by its `res_…` id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_url: Option<Url>,
    /// The `conn_…` users of this resource sign in through.
    pub connection: String,
    /// The scopes clients may ask for.
    pub scopes: Vec<String>,
    /// Scalekit's `intersect_scopes_user_permission` (default off, as the proto's bool): a user
    /// is granted a requested scope only if one of the roles "Your App" posted grants the
    /// permission of the same name; OpenID and OAuth scopes (`openid`, `profile`, `email`,
    /// `offline_access`) are not permissions and are never removed. The narrowing is silent.
    #[serde(default)]
    pub intersect_scopes_user_permission: bool,
    /// Consent page or not.
    pub consent: ConsentMode,
    /// Access tokens carry `iss = {env}/resources/{res}` instead of the environment URL.
    pub issuer_bound_tokens: bool,
    /// Whether `clients:register` is open for this resource.
    pub dynamic_client_registration: bool,
    /// Whether clients may identify themselves with a Client ID Metadata Document URL
    /// (Scalekit's `enable_cimd`); advertised as `client_id_metadata_document_supported`.
    #[serde(default = "default_client_id_metadata_documents")]
    pub client_id_metadata_documents: bool,
    /// Lifetime of access tokens and ID tokens.
    pub access_token_lifetime_secs: u64,
    /// Lifetime of each refresh token.
    pub refresh_token_lifetime_secs: u64,
    /// Lifetime of an authorization code.
    pub authorization_code_lifetime_secs: u64,
    /// Lifetime of a login request (and its `state`).
    pub login_request_lifetime_secs: u64,
    /// Binds each sign-in to the browser that started it (Decisions §9): `/oauth/authorize` sets
    /// a cookie, and `partner:callback` and the consent form require it. Off, a sign-in can be
    /// finished from anywhere its `state` (or consent id) is known.
    #[serde(default = "default_browser_binding")]
    pub browser_binding: bool,
    /// The resource's agents: machine-to-machine clients that get tokens for it with
    /// `client_credentials` (the dashboard's MCP server → Clients → "Create Client").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<AgentConfig>,
    /// Scalekit's "Enable Cross-App Access (XAA)" toggle (`xaa_enabled` of the Resource, default
    /// off): the token endpoint exchanges identity assertions (ID-JAGs) of a trusted identity
    /// provider for access tokens to this MCP server with the `jwt-bearer` grant, without a
    /// consent page.
    #[serde(default)]
    pub cross_app_access: bool,
}

impl ResourceConfig {
    /// The `aud` of its access tokens (Decisions §4): `[Server URL, res_…]`, URL first, or only
    /// `[res_…]` when it has no Server URL.
    pub fn audience(&self) -> Vec<String> {
        self.server_url
            .iter()
            .map(|url| url.as_str().to_owned())
            .chain([self.id.clone()])
            .collect()
    }

    /// Whether `value` is its Server URL (Decisions §2); never when it has none.
    pub fn has_server_url(&self, value: &str) -> bool {
        is_server_url(self.server_url.as_ref(), value)
    }

    /// What a client sends as `resource` (RFC 8707) for it: its Server URL, else its `res_…`
    /// id.
    pub fn resource_indicator(&self) -> &str {
        self.server_url.as_ref().map_or(&self.id, Url::as_str)
    }
}

/// Whether `value` names `server_url`: byte for byte, or as the same URL once parsed (so that
/// `http://host:80/mcp` names `http://host/mcp`). A resource without a Server URL is named by its
/// `res_…` id only.
pub fn is_server_url(server_url: Option<&Url>, value: &str) -> bool {
    server_url.is_some_and(|server_url| {
        server_url.as_str() == value || Url::parse(value).is_ok_and(|url| &url == server_url)
    })
}

/// The longest an ID-JAG may live to be accepted (docs/fidelity.md, Decisions): it bounds how
/// long the redeemed `jti`s are remembered.
pub const MAX_ASSERTION_LIFETIME_SECS: u64 = 3600;

/// The longest an ID token of an emulated identity provider may live.
pub const MAX_ID_TOKEN_LIFETIME_SECS: u64 = 24 * 3600;

fn default_id_jag_lifetime_secs() -> u64 {
    300
}

fn default_id_token_lifetime_secs() -> u64 {
    3600
}

/// A company's identity provider the environment trusts for cross-app access, played by the
/// emulator: its issuer is `{env}/_idp/{id}`, its keys are its own (never the environment's),
/// and it issues ID tokens (through the control API, the seam of a single sign-on) and ID-JAGs
/// (RFC 8693 token exchange at its token endpoint, or the control API).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedIdpConfig {
    /// A path segment, `^[a-z0-9-]{1,32}$`.
    pub id: String,
    /// A name to tell identity providers apart by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Lifetime of the ID-JAGs it issues, 1 to [`MAX_ASSERTION_LIFETIME_SECS`].
    #[serde(default = "default_id_jag_lifetime_secs")]
    pub id_jag_lifetime_secs: u64,
    /// Lifetime of the ID tokens it issues, 1 to [`MAX_ID_TOKEN_LIFETIME_SECS`].
    #[serde(default = "default_id_token_lifetime_secs")]
    pub id_token_lifetime_secs: u64,
    /// The MCP clients registered at the identity provider.
    #[serde(default)]
    pub clients: Vec<IdpClientConfig>,
    /// The people who sign in at the identity provider.
    #[serde(default)]
    pub users: Vec<IdpUserConfig>,
}

/// An MCP client registered at an identity provider (for its single sign-on and its token
/// exchange), and the client it is at this environment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdpClientConfig {
    /// Its id at the identity provider: the `aud` of the ID tokens it gets.
    pub client_id: String,
    /// Its secret at the identity provider (token exchange: form fields or HTTP Basic).
    pub client_secret: Secret,
    /// Its `client_id` at this environment, which the ID-JAGs it gets name: a configured client
    /// or an agent of a resource.
    pub resource_client_id: String,
}

/// A person of an identity provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdpUserConfig {
    /// The identity provider's subject identifier: the ID-JAG's `sub`.
    pub sub: String,
    /// The ID token's and the ID-JAG's `email`.
    pub email: String,
    /// The ID token's `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The M2M default lifetime of an agent's token (scalekit.md §4, "M2M default 3600 s").
pub const DEFAULT_AGENT_TOKEN_LIFETIME_SECS: u64 = 3600;

/// The longest lifetime an agent's token may be given: a year.
pub const MAX_AGENT_TOKEN_LIFETIME_SECS: u64 = 365 * 24 * 3600;

fn default_agent_token_lifetime_secs() -> u64 {
    DEFAULT_AGENT_TOKEN_LIFETIME_SECS
}

/// An agent of a resource: a confidential client that authenticates with its secret and gets
/// access tokens for the resource with `client_credentials`, without a user.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// `m2m_…` (docs/fidelity.md, "Agents").
    pub client_id: String,
    /// Its secret, sent as a form field or with HTTP Basic.
    pub client_secret: Secret,
    /// The scopes it may ask for, a subset of the resource's.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Lifetime of its access tokens.
    #[serde(default = "default_agent_token_lifetime_secs")]
    pub token_lifetime_secs: u64,
    /// A name to tell agents apart by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A client registered ahead of time.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Any client id (a URL-free string); DCR clients get `m2m_…`.
    pub client_id: String,
    /// Registered redirect URIs.
    pub redirect_uris: Vec<String>,
    /// The `res_…` this client is for.
    pub resource: String,
    /// A confidential client's secret; a public client has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Secret>,
    /// Shown on the consent page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("{origin}: invalid configuration")]
    Parse {
        origin: String,
        #[source]
        source: toml::de::Error,
    },
    /// The configuration is well formed but inconsistent.
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

impl Config {
    /// Parses and validates a configuration given as text.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        Self::parse("configuration", text)
    }

    /// Reads, parses and validates a configuration file; errors name the file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    fn parse(origin: &str, text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            origin: origin.to_owned(),
            source,
        })?;
        config.validate().map_err(|message| ConfigError::Invalid {
            origin: origin.to_owned(),
            message,
        })?;
        Ok(config)
    }

    /// Checks id prefixes, references between sections and scope names.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_pending_login_requests == 0 {
            return Err("max_pending_login_requests must be at least 1".to_owned());
        }
        if self.max_redeemed_assertions == 0 {
            return Err("max_redeemed_assertions must be at least 1".to_owned());
        }
        // A header value and a cookie value (RFC 6265 §4.1.1 cookie-octets), so that the
        // inspector page can carry it in its cookie.
        if self.control_token.as_ref().is_some_and(|token| {
            token.expose().is_empty()
                || !token.expose().bytes().all(|byte| {
                    byte.is_ascii_graphic() && !matches!(byte, b'"' | b',' | b';' | b'\\')
                })
        }) {
            return Err("control_token must be printable ASCII without spaces, quotes, commas, semicolons or backslashes".to_owned());
        }
        check_prefix(
            "api_client.client_id",
            &self.api_client.client_id,
            prefix::API_CLIENT,
        )?;
        for connection in &self.connections {
            check_prefix("connections.id", &connection.id, prefix::CONNECTION)?;
        }
        // A role is looked up by the name "Your App" posts, so two of one name would be
        // ambiguous; a permission may name no scope of any resource (permissions exist without
        // scopes), and a posted role that is not declared simply grants nothing.
        let mut role_names: Vec<&str> = Vec::new();
        for role in &self.roles {
            if role.name.is_empty() {
                return Err("roles.name must not be empty".to_owned());
            }
            if role_names.contains(&role.name.as_str()) {
                return Err(format!("role {} is declared twice", role.name));
            }
            role_names.push(&role.name);
        }
        for resource in &self.resources {
            check_prefix("resources.id", &resource.id, prefix::RESOURCE)?;
            if !self
                .connections
                .iter()
                .any(|connection| connection.id == resource.connection)
            {
                return Err(format!(
                    "resource {} names connection {}, which is not configured",
                    resource.id, resource.connection
                ));
            }
            for scope in &resource.scopes {
                if !is_valid_scope_name(scope) {
                    return Err(format!(
                        "resource {} has scope {scope:?}, which does not match ^[a-zA-Z0-9:]{{1,64}}$ (Scalekit's scope names) and is not an OpenID or OAuth scope",
                        resource.id
                    ));
                }
            }
        }
        let mut agent_ids: Vec<&str> = Vec::new();
        for resource in &self.resources {
            for agent in &resource.agents {
                check_prefix(
                    "resources.agents.client_id",
                    &agent.client_id,
                    prefix::MCP_CLIENT,
                )?;
                let taken = agent_ids.contains(&agent.client_id.as_str())
                    || agent.client_id == self.api_client.client_id
                    || self
                        .clients
                        .iter()
                        .any(|client| client.client_id == agent.client_id);
                if taken {
                    return Err(format!(
                        "agent {} of resource {} uses a client id that is taken",
                        agent.client_id, resource.id
                    ));
                }
                agent_ids.push(&agent.client_id);
                if let Some(scope) = agent
                    .scopes
                    .iter()
                    .find(|scope| !resource.scopes.contains(scope))
                {
                    return Err(format!(
                        "agent {} has scope {scope:?}, which resource {} does not offer",
                        agent.client_id, resource.id
                    ));
                }
                if !(1..=MAX_AGENT_TOKEN_LIFETIME_SECS).contains(&agent.token_lifetime_secs) {
                    return Err(format!(
                        "agent {} needs token_lifetime_secs from 1 to {MAX_AGENT_TOKEN_LIFETIME_SECS}",
                        agent.client_id
                    ));
                }
            }
        }
        for client in &self.clients {
            if client.client_id.is_empty() {
                return Err("clients.client_id must not be empty".to_owned());
            }
            if crate::flow::cimd::is_document_url(&client.client_id) {
                return Err(format!(
                    "client {} must not be a URL: URL client ids name Client ID Metadata Documents",
                    client.client_id
                ));
            }
            if !self
                .resources
                .iter()
                .any(|resource| resource.id == client.resource)
            {
                return Err(format!(
                    "client {} names resource {}, which is not configured",
                    client.client_id, client.resource
                ));
            }
            if client.redirect_uris.is_empty() {
                return Err(format!("client {} has no redirect_uris", client.client_id));
            }
        }
        self.validate_trusted_idps()
    }

    /// Trusted identity providers: ids that are path segments and unique, lifetimes in range,
    /// clients that name a client of this environment, users with distinct `sub`s.
    fn validate_trusted_idps(&self) -> Result<(), String> {
        let mut idp_ids: Vec<&str> = Vec::new();
        for idp in &self.trusted_idps {
            let segment = (1..=32).contains(&idp.id.len())
                && idp
                    .id
                    .bytes()
                    .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-');
            if !segment {
                return Err(format!(
                    "trusted_idps.id {:?} must match ^[a-z0-9-]{{1,32}}$",
                    idp.id
                ));
            }
            if idp_ids.contains(&idp.id.as_str()) {
                return Err(format!(
                    "trusted identity provider {} is declared twice",
                    idp.id
                ));
            }
            idp_ids.push(&idp.id);
            if !(1..=MAX_ASSERTION_LIFETIME_SECS).contains(&idp.id_jag_lifetime_secs) {
                return Err(format!(
                    "trusted identity provider {} needs id_jag_lifetime_secs from 1 to {MAX_ASSERTION_LIFETIME_SECS}",
                    idp.id
                ));
            }
            if !(1..=MAX_ID_TOKEN_LIFETIME_SECS).contains(&idp.id_token_lifetime_secs) {
                return Err(format!(
                    "trusted identity provider {} needs id_token_lifetime_secs from 1 to {MAX_ID_TOKEN_LIFETIME_SECS}",
                    idp.id
                ));
            }
            let mut client_ids: Vec<&str> = Vec::new();
            for client in &idp.clients {
                if client.client_id.is_empty() || client_ids.contains(&client.client_id.as_str()) {
                    return Err(format!(
                        "trusted identity provider {} has an empty or repeated client_id {:?}",
                        idp.id, client.client_id
                    ));
                }
                client_ids.push(&client.client_id);
                let known = self
                    .clients
                    .iter()
                    .any(|known| known.client_id == client.resource_client_id)
                    || self.resources.iter().any(|resource| {
                        resource
                            .agents
                            .iter()
                            .any(|agent| agent.client_id == client.resource_client_id)
                    });
                if !known {
                    return Err(format!(
                        "client {} of trusted identity provider {} names resource_client_id {}, which is neither a configured client nor an agent",
                        client.client_id, idp.id, client.resource_client_id
                    ));
                }
            }
            let mut subs: Vec<&str> = Vec::new();
            for user in &idp.users {
                if user.sub.is_empty() || subs.contains(&user.sub.as_str()) {
                    return Err(format!(
                        "trusted identity provider {} has an empty or repeated user sub {:?}",
                        idp.id, user.sub
                    ));
                }
                subs.push(&user.sub);
            }
        }
        Ok(())
    }

    /// The resource with this `res_…` id.
    pub fn resource(&self, id: &str) -> Option<&ResourceConfig> {
        self.resources.iter().find(|resource| resource.id == id)
    }
}

fn check_prefix(field: &str, value: &str, expected: &str) -> Result<(), String> {
    if value.starts_with(expected) && value.len() > expected.len() {
        Ok(())
    } else {
        Err(format!("{field} {value:?} must start with {expected}"))
    }
}

/// Scalekit's scope grammar, `^[a-zA-Z0-9:]{1,64}$` (DESC `Scope.name`), or one of the OpenID and
/// OAuth scopes, which are not Scalekit scopes and keep their standard names: of those only
/// `offline_access` (its `_`) breaks the grammar.
pub(crate) fn is_valid_scope_name(scope: &str) -> bool {
    let scalekit = (1..=64).contains(&scope.len())
        && scope
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b':');
    scalekit || is_protocol_scope(scope)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::PROTOCOL_SCOPES;

    const FIXTURE: &str = include_str!("../../../fixtures/environment.toml");

    #[test]
    fn the_shipped_fixture_parses() {
        let config = Config::from_toml_str(FIXTURE).unwrap();
        assert_eq!(config.api_client.client_id, "skc_81920374650192837");
        assert_eq!(config.resources[0].consent, ConsentMode::Auto);
        assert_eq!(
            config.resources[0].audience(),
            ["http://127.0.0.1:8402/mcp", "res_81920374650192839"]
        );
        assert!(config.clients.is_empty());
        assert_eq!(config.max_pending_login_requests, 10_000);
    }

    #[test]
    fn the_cap_on_pending_login_requests_is_a_setting_and_zero_is_refused() {
        let text = FIXTURE.replace("listen =", "max_pending_login_requests = 3\nlisten =");
        assert_eq!(
            Config::from_toml_str(&text)
                .unwrap()
                .max_pending_login_requests,
            3
        );
        let text = FIXTURE.replace("listen =", "max_pending_login_requests = 0\nlisten =");
        assert_eq!(
            Config::from_toml_str(&text).unwrap_err().to_string(),
            "configuration: max_pending_login_requests must be at least 1"
        );
    }

    #[test]
    fn a_configuration_survives_a_round_trip_through_toml() {
        let config = Config::from_toml_str(FIXTURE).unwrap();
        let text = toml::to_string(&config).unwrap();
        let again = Config::from_toml_str(&text).unwrap();
        assert_eq!(
            again.resources[0].server_url,
            config.resources[0].server_url
        );
        assert_eq!(
            again.api_client.client_secret,
            config.api_client.client_secret
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let text = FIXTURE.replace("listen =", "colour = \"red\"\nlisten =");
        let error = Config::from_toml_str(&text).unwrap_err();
        assert!(matches!(error, ConfigError::Parse { .. }), "{error:?}");
    }

    #[test]
    fn allowed_hosts_and_the_control_token_are_top_level_keys() {
        let config = Config::from_toml_str(FIXTURE).unwrap();
        assert!(config.allowed_hosts.is_empty());
        assert!(config.control_token.is_none());
        let text = FIXTURE.replace(
            "listen =",
            "allowed_hosts = [\"emulator\", \"proxy.internal:443\"]\ncontrol_token = \"ctl-1\"\nlisten =",
        );
        let config = Config::from_toml_str(&text).unwrap();
        let hosts: Vec<String> = config
            .allowed_hosts
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(hosts, ["emulator", "proxy.internal:443"]);
        assert!(
            config
                .control_token
                .as_ref()
                .is_some_and(|token| token.matches("ctl-1"))
        );
        assert!(!format!("{config:?}").contains("ctl-1"));
        let text = FIXTURE.replace(
            "listen =",
            "allowed_hosts = [\"http://emulator\"]\nlisten =",
        );
        assert!(Config::from_toml_str(&text).is_err());
    }

    #[test]
    fn a_control_token_that_cannot_be_a_cookie_value_is_refused() {
        for token in ["", "two words", "semi;colon", "quo\"te"] {
            let text = FIXTURE.replace(
                "listen =",
                &format!("control_token = {:?}\nlisten =", token),
            );
            assert_eq!(
                Config::from_toml_str(&text).unwrap_err().to_string(),
                "configuration: control_token must be printable ASCII without spaces, quotes, commas, semicolons or backslashes",
                "{token:?}"
            );
        }
    }

    #[test]
    fn a_resource_naming_an_unknown_connection_is_refused() {
        let text = FIXTURE.replace(
            "connection = \"conn_81920374650192838\"",
            "connection = \"conn_1\"",
        );
        let error = Config::from_toml_str(&text).unwrap_err();
        assert_eq!(
            error.to_string(),
            "configuration: resource res_81920374650192839 names connection conn_1, which is not configured"
        );
    }

    #[test]
    fn a_wrong_prefix_is_refused() {
        let text = FIXTURE.replace(
            "id = \"res_81920374650192839\"",
            "id = \"conn_81920374650192839\"",
        );
        let error = Config::from_toml_str(&text).unwrap_err();
        assert!(
            error.to_string().contains("must start with res_"),
            "{error}"
        );
    }

    #[test]
    fn a_scope_name_outside_scalekits_grammar_is_refused_naming_the_resource_and_the_scope() {
        let sixty_four = "a".repeat(64);
        for good in ["mcp:write", "MCP:Write:2", sixty_four.as_str()] {
            let text = FIXTURE.replace("\"mcp:write\"", &format!("{good:?}"));
            assert!(Config::from_toml_str(&text).is_ok(), "{good}");
        }
        let sixty_five = "a".repeat(65);
        for bad in [
            "mcp write",
            "mcp_write",
            "mcp.write",
            "mcp-write",
            "",
            sixty_five.as_str(),
        ] {
            let text = FIXTURE.replace("\"mcp:write\"", &format!("{bad:?}"));
            assert_eq!(
                Config::from_toml_str(&text).unwrap_err().to_string(),
                format!(
                    "configuration: resource res_81920374650192839 has scope {bad:?}, which does not match ^[a-zA-Z0-9:]{{1,64}}$ (Scalekit's scope names) and is not an OpenID or OAuth scope"
                ),
            );
        }
    }

    #[test]
    fn the_openid_and_oauth_scopes_keep_their_names_and_only_offline_access_needs_the_exception() {
        for scope in PROTOCOL_SCOPES {
            assert!(is_valid_scope_name(scope), "{scope}");
        }
        let breaking: Vec<&str> = PROTOCOL_SCOPES
            .into_iter()
            .filter(|scope| {
                !scope
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b':')
            })
            .collect();
        assert_eq!(breaking, ["offline_access"]);
        assert!(!is_valid_scope_name("offline_access2"));
    }

    #[test]
    fn an_agents_scope_must_be_one_of_its_resources_so_a_bad_name_cannot_reach_it() {
        let text = FIXTURE.replace("scopes = [\"mcp:read\"]", "scopes = [\"mcp_read\"]");
        assert_eq!(
            Config::from_toml_str(&text).unwrap_err().to_string(),
            "configuration: agent m2m_81920374650192842 has scope \"mcp_read\", which resource res_81920374650192839 does not offer"
        );
    }

    #[test]
    fn roles_need_distinct_names_and_may_grant_permissions_that_name_no_scope() {
        let config = Config::from_toml_str(FIXTURE).unwrap();
        let names: Vec<&str> = config.roles.iter().map(|role| role.name.as_str()).collect();
        assert_eq!(names, ["member", "admin"]);
        assert!(!config.resources[0].intersect_scopes_user_permission);
        let with = |edit: &dyn Fn(&mut Vec<RoleConfig>)| {
            let mut config = config.clone();
            edit(&mut config.roles);
            config.validate()
        };
        assert!(
            with(&|roles| roles[0].permissions.push("billing:view".to_owned())).is_ok(),
            "a permission that names no scope"
        );
        assert!(with(&|roles| roles[0].permissions.clear()).is_ok());
        assert_eq!(
            with(&|roles| roles[1].name = "member".to_owned()).unwrap_err(),
            "role member is declared twice"
        );
        assert_eq!(
            with(&|roles| roles[0].name = String::new()).unwrap_err(),
            "roles.name must not be empty"
        );
        let text = FIXTURE.replace(
            "intersect_scopes_user_permission = false",
            "intersect_scopes_user_permission = true",
        );
        assert!(
            Config::from_toml_str(&text).unwrap().resources[0].intersect_scopes_user_permission
        );
        let text = FIXTURE.replace("intersect_scopes_user_permission = false", "");
        assert!(
            !Config::from_toml_str(&text).unwrap().resources[0].intersect_scopes_user_permission
        );
    }

    #[test]
    fn a_resource_without_a_server_url_is_named_by_its_id_and_its_audience_is_the_id_alone() {
        let mut config = Config::from_toml_str(FIXTURE).unwrap();
        let resource = &mut config.resources[0];
        assert!(resource.has_server_url("http://127.0.0.1:8402/mcp"));
        assert!(resource.has_server_url("HTTP://127.0.0.1:8402/mcp"));
        assert!(!resource.has_server_url("res_81920374650192839"));
        resource.server_url = None;
        assert_eq!(resource.audience(), ["res_81920374650192839"]);
        assert_eq!(resource.resource_indicator(), "res_81920374650192839");
        assert!(!resource.has_server_url("http://127.0.0.1:8402/mcp"));
        let text = toml::to_string(&config).unwrap();
        assert!(!text.contains("server_url"), "{text}");
        assert_eq!(
            Config::from_toml_str(&text).unwrap().resources[0].server_url,
            None
        );
    }

    #[test]
    fn client_id_metadata_documents_default_to_on_and_loopback_documents_to_off() {
        let config = Config::from_toml_str(FIXTURE).unwrap();
        assert!(config.resources[0].client_id_metadata_documents);
        assert!(!config.cimd_allow_insecure_loopback);
        let text = FIXTURE.replace(
            "dynamic_client_registration = true",
            "dynamic_client_registration = true\nclient_id_metadata_documents = false",
        );
        assert!(!Config::from_toml_str(&text).unwrap().resources[0].client_id_metadata_documents);
    }

    #[test]
    fn browser_binding_defaults_to_on_and_can_be_turned_off_per_resource() {
        let config = Config::from_toml_str(FIXTURE).unwrap();
        assert!(config.resources[0].browser_binding);
        let text = FIXTURE.replace("browser_binding = true", "browser_binding = false");
        assert!(!Config::from_toml_str(&text).unwrap().resources[0].browser_binding);
        let text = FIXTURE.replace("browser_binding = true", "");
        assert!(Config::from_toml_str(&text).unwrap().resources[0].browser_binding);
    }

    #[test]
    fn the_shipped_fixture_declares_an_agent_with_the_m2m_defaults() {
        let config = Config::from_toml_str(FIXTURE).unwrap();
        let agent = &config.resources[0].agents[0];
        assert!(agent.client_id.starts_with("m2m_"));
        assert_eq!(agent.scopes, ["mcp:read"]);
        assert_eq!(agent.token_lifetime_secs, DEFAULT_AGENT_TOKEN_LIFETIME_SECS);
        assert!(!format!("{agent:?}").contains(agent.client_secret.expose()));
    }

    #[test]
    fn agents_need_the_m2m_prefix_their_resources_scopes_and_a_free_id() {
        let config = Config::from_toml_str(FIXTURE).unwrap();
        let with = |edit: &dyn Fn(&mut AgentConfig)| {
            let mut config = config.clone();
            edit(&mut config.resources[0].agents[0]);
            config.validate()
        };
        assert!(with(&|_| {}).is_ok());
        assert_eq!(
            with(&|agent| agent.client_id = "agent_1".to_owned()).unwrap_err(),
            "resources.agents.client_id \"agent_1\" must start with m2m_"
        );
        assert!(
            with(&|agent| agent.scopes = vec!["admin".to_owned()])
                .unwrap_err()
                .contains("\"admin\", which resource")
        );
        assert!(
            with(&|agent| agent.token_lifetime_secs = 0)
                .unwrap_err()
                .contains("token_lifetime_secs from 1")
        );
        let mut twice = config.clone();
        let agent = twice.resources[0].agents[0].clone();
        twice.resources[0].agents.push(agent);
        assert!(twice.validate().unwrap_err().contains("is taken"));
    }

    #[test]
    fn the_shipped_fixture_trusts_one_identity_provider_for_cross_app_access() {
        let config = Config::from_toml_str(FIXTURE).unwrap();
        assert!(config.resources[0].cross_app_access);
        let idp = &config.trusted_idps[0];
        assert_eq!(idp.id, "acme-idp");
        assert_eq!(idp.id_jag_lifetime_secs, 300);
        assert_eq!(
            idp.clients[0].resource_client_id,
            config.resources[0].agents[0].client_id
        );
        assert!(!format!("{idp:?}").contains(idp.clients[0].client_secret.expose()));
        let text = FIXTURE.replace("cross_app_access = true", "");
        assert!(!Config::from_toml_str(&text).unwrap().resources[0].cross_app_access);
    }

    #[test]
    fn trusted_identity_providers_need_a_path_segment_id_lifetimes_in_range_and_known_clients() {
        let config = Config::from_toml_str(FIXTURE).unwrap();
        let with = |edit: &dyn Fn(&mut TrustedIdpConfig)| {
            let mut config = config.clone();
            edit(&mut config.trusted_idps[0]);
            config.validate()
        };
        assert!(with(&|_| {}).is_ok());
        assert_eq!(
            with(&|idp| idp.id = "Acme IdP".to_owned()).unwrap_err(),
            "trusted_idps.id \"Acme IdP\" must match ^[a-z0-9-]{1,32}$"
        );
        assert!(
            with(&|idp| idp.id_jag_lifetime_secs = 3601)
                .unwrap_err()
                .contains("id_jag_lifetime_secs from 1 to 3600")
        );
        assert!(
            with(&|idp| idp.clients[0].resource_client_id = "nobody".to_owned())
                .unwrap_err()
                .contains("neither a configured client nor an agent")
        );
        assert!(
            with(&|idp| {
                let user = idp.users[0].clone();
                idp.users.push(user);
            })
            .unwrap_err()
            .contains("repeated user sub")
        );
        let mut twice = config.clone();
        let idp = twice.trusted_idps[0].clone();
        twice.trusted_idps.push(idp);
        assert!(twice.validate().unwrap_err().contains("declared twice"));
    }

    #[test]
    fn a_configured_client_with_a_url_id_is_refused() {
        let mut config = Config::from_toml_str(FIXTURE).unwrap();
        config.clients.push(ClientConfig {
            client_id: "https://client.example/metadata.json".to_owned(),
            redirect_uris: vec!["http://127.0.0.1/cb".to_owned()],
            resource: config.resources[0].id.clone(),
            client_secret: None,
            client_name: None,
        });
        assert_eq!(
            config.validate().unwrap_err(),
            "client https://client.example/metadata.json must not be a URL: URL client ids name Client ID Metadata Documents"
        );
    }

    #[test]
    fn a_missing_file_is_named() {
        let error = Config::from_file(Path::new("/nonexistent/environment.toml")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot read /nonexistent/environment.toml"
        );
    }
}
