//! The reference protected MCP server: validates Scalekit access tokens the way real MCP servers
//! in front of Scalekit do (scalekit.md §5, mcp-authorization.md §1.1) and serves a `whoami` tool.
//!
//! It talks to the environment only over HTTP (`{env}/keys`), so it runs unchanged against the
//! emulator and against real Scalekit. [`Config::mistake`] makes it commit one classic
//! resource-server mistake on purpose ([`Mistake`]), as the test subject of the harness that checks
//! somebody's own MCP server.

pub mod auth;
pub mod http;
pub mod mistake;
pub mod tools;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use scalekit_wire::prefix;
use testbed_web::{AllowedHost, AllowedHosts, Bound};
use tokio::net::TcpListener;
use url::Url;

pub use auth::{
    AuthError, Authenticator, Claims, Clock, DEFAULT_JWKS_REFETCH_COOLDOWN, JwksPolicy, Lapses,
    Policy, TokenError, Validator,
};
pub use http::{Origin, ProtectedResourceMetadata};
pub use mistake::{Mistake, UnknownMistake};
pub use tools::{SERVER_NAME, TestbedServer};

/// The scope that only asks for a refresh token; the 2026-07-28 spec says a resource server
/// should not advertise it.
const OFFLINE_ACCESS: &str = "offline_access";

/// Everything that shapes one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The base URL clients use, when it is not `http://{local_addr}` (e.g. behind a proxy). The
    /// MCP endpoint, and the Server URL registered with Scalekit, is `{base}/mcp`.
    pub public_url: Option<Url>,
    /// Host names the server answers for besides loopback and its base URL's host (a container
    /// or proxy name); a request for any other host is refused before routing (DNS rebinding).
    pub allowed_hosts: Vec<AllowedHost>,
    /// The Scalekit environment URL, e.g. `https://acme.scalekit.dev`.
    pub environment_url: Url,
    /// The MCP server resource id, `res_…`.
    pub resource_id: String,
    /// The scopes published in the protected-resource metadata (`offline_access` is left out).
    pub scopes_supported: Vec<String>,
    /// The scopes a token needs to call tools.
    pub required_scopes: Vec<String>,
    /// The `resource_name` published in the protected-resource metadata.
    pub resource_name: String,
    /// Clock tolerance for `exp`, `nbf` and `iat`, in seconds.
    pub leeway_secs: u64,
    /// Origins, besides the server's own and loopback ones, whose browsers may call `/mcp`:
    /// exact origins, `scheme://host[:port]` (MCP Streamable HTTP, "Security Warning").
    pub allowed_origins: Vec<String>,
    /// After a JWKS refetch that failed or did not bring in the key its token named, how long
    /// unknown `kid`s trigger no further refetch ([`DEFAULT_JWKS_REFETCH_COOLDOWN`]).
    pub jwks_refetch_cooldown: Duration,
    /// Validate correctly ([`Mistake::Correct`]) or make one classic mistake on purpose.
    pub mistake: Mistake,
    /// A CA certificate (PEM) trusted besides the system's roots when fetching the JWKS: the
    /// emulator's development CA under `--tls`.
    pub ca_cert_pem: Option<String>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listener could not be bound or inspected.
    #[error(transparent)]
    Listen(#[from] testbed_web::BindError),
    /// The resource id does not look like a Scalekit resource id.
    #[error("the resource id {0:?} does not start with {prefix}", prefix = prefix::RESOURCE)]
    ResourceId(String),
    /// A URL cannot carry a path (e.g. `mailto:`), so no endpoint can be derived from it.
    #[error("{which} {url} cannot be used as a base URL")]
    BaseUrl { which: &'static str, url: String },
    /// The HTTP client for the JWKS could not be built.
    #[error("cannot build the HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// A configured allowed origin is not `scheme://host[:port]`.
    #[error("the allowed origin {0:?} is not scheme://host[:port]")]
    AllowedOrigin(String),
}

/// The state every handler shares.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    mcp_url: Url,
    metadata_url: Url,
    metadata: ProtectedResourceMetadata,
    required_scopes: Vec<String>,
    /// The server's own origin and the configured ones (loopback origins are always allowed).
    allowed_origins: Vec<Origin>,
    /// Loopback, the base URL's host and the configured ones: the listener guard's list, and
    /// rmcp's own Host check on `/mcp`.
    allowed_hosts: AllowedHosts,
    mistake: Mistake,
    authenticator: Authenticator,
    clock: Clock,
    sessions: http::SessionOwners,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AppState")
            .field("mcp_url", &self.inner.mcp_url.as_str())
            .field("required_scopes", &self.inner.required_scopes)
            .field("allowed_origins", &self.inner.allowed_origins)
            .field("mistake", &self.inner.mistake)
            .field("authenticator", &self.inner.authenticator)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// The state for a server reachable at `base_url`, with the system clock.
    pub fn new(config: &Config, base_url: &Url) -> Result<AppState, StartError> {
        AppState::with_clock(config, base_url, auth::system_clock())
    }

    /// The state for a server reachable at `base_url`, telling time with `clock`.
    pub fn with_clock(
        config: &Config,
        base_url: &Url,
        clock: Clock,
    ) -> Result<AppState, StartError> {
        if !config.resource_id.starts_with(prefix::RESOURCE) {
            return Err(StartError::ResourceId(config.resource_id.clone()));
        }
        let mcp_url = append_path(base_url, "mcp", "the public URL")?;
        let metadata_url = append_path(
            base_url,
            ".well-known/oauth-protected-resource/mcp",
            "the public URL",
        )?;
        let authorization_server = append_path(
            &config.environment_url,
            &format!("resources/{}", config.resource_id),
            "the environment URL",
        )?;
        let jwks_url = append_path(&config.environment_url, "keys", "the environment URL")?;
        let mut allowed_origins: Vec<Origin> = Origin::of_url(&mcp_url).into_iter().collect();
        for origin in &config.allowed_origins {
            let parsed =
                Origin::parse(origin).ok_or_else(|| StartError::AllowedOrigin(origin.clone()))?;
            allowed_origins.push(parsed);
        }

        let resource = if config.mistake == Mistake::WrongMetadataResource {
            format!("{mcp_url}/")
        } else {
            mcp_url.to_string()
        };
        let metadata = ProtectedResourceMetadata {
            resource,
            authorization_servers: vec![authorization_server.to_string()],
            bearer_methods_supported: vec!["header".to_owned()],
            scopes_supported: without_offline_access(&config.scopes_supported),
            resource_name: config.resource_name.clone(),
            resource_documentation: None,
        };
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10));
        if let Some(pem) = &config.ca_cert_pem {
            let certificate =
                reqwest::Certificate::from_pem(pem.as_bytes()).map_err(StartError::HttpClient)?;
            builder = builder.tls_certs_merge([certificate]);
        }
        let http = builder.build().map_err(StartError::HttpClient)?;
        let mut policy = Policy::for_environment(
            &config.environment_url,
            &config.resource_id,
            config.leeway_secs,
        );
        policy.lapses = config.mistake.lapses();
        let jwks_policy = config.mistake.jwks_policy(config.jwks_refetch_cooldown);
        Ok(AppState {
            inner: Arc::new(Inner {
                mcp_url,
                metadata_url,
                metadata,
                required_scopes: without_offline_access(&config.required_scopes),
                allowed_origins,
                allowed_hosts: AllowedHosts::new(base_url, &config.allowed_hosts),
                mistake: config.mistake,
                authenticator: Authenticator::new(policy, jwks_policy, jwks_url, http),
                clock,
                sessions: http::SessionOwners::default(),
            }),
        })
    }

    /// The MCP endpoint, `{base}/mcp`: the Server URL.
    pub fn mcp_url(&self) -> &Url {
        &self.inner.mcp_url
    }

    /// The path-suffixed protected-resource metadata URL, as put in challenges.
    pub fn metadata_url(&self) -> &Url {
        &self.inner.metadata_url
    }

    /// The protected-resource metadata document.
    pub fn metadata(&self) -> &ProtectedResourceMetadata {
        &self.inner.metadata
    }

    /// The scopes a token needs to call tools.
    pub fn required_scopes(&self) -> &[String] {
        &self.inner.required_scopes
    }

    /// Whether a browser page from `origin` may call `/mcp`: the server's own origin, a loopback
    /// origin (any port; MCP Inspector runs on `http://localhost:6274`) or a configured one.
    pub fn origin_allowed(&self, origin: &Origin) -> bool {
        origin.is_loopback() || self.inner.allowed_origins.contains(origin)
    }

    /// The hosts the server answers for: loopback names, its base URL's host and the configured
    /// ones.
    pub fn allowed_hosts(&self) -> &AllowedHosts {
        &self.inner.allowed_hosts
    }

    /// The mistake this server makes on purpose, if any.
    pub fn mistake(&self) -> Mistake {
        self.inner.mistake
    }

    /// The token checker.
    pub fn authenticator(&self) -> &Authenticator {
        &self.inner.authenticator
    }

    /// The clock tokens are judged by.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// Which user opened each MCP session.
    pub fn sessions(&self) -> &http::SessionOwners {
        &self.inner.sessions
    }

    fn challenge(&self, challenge: http::Challenge) -> axum::response::Response {
        let resource_metadata = match challenge {
            http::Challenge::NoToken | http::Challenge::InvalidToken { .. }
                if self.mistake() == Mistake::ChallengeWithoutResourceMetadata =>
            {
                None
            }
            _ => Some(self.metadata_url().as_str()),
        };
        challenge.into_response(resource_metadata, self.required_scopes())
    }
}

/// `{base}/{path}` without doubling or dropping slashes, whatever `base` ends with.
fn append_path(base: &Url, path: &str, which: &'static str) -> Result<Url, StartError> {
    if base.cannot_be_a_base() {
        return Err(StartError::BaseUrl {
            which,
            url: base.to_string(),
        });
    }
    let mut joined = base.clone();
    let base_path = base.path().trim_end_matches('/');
    joined.set_path(&format!("{base_path}/{path}"));
    joined.set_query(None);
    joined.set_fragment(None);
    Ok(joined)
}

fn without_offline_access(scopes: &[String]) -> Vec<String> {
    scopes
        .iter()
        .filter(|scope| scope.as_str() != OFFLINE_ACCESS)
        .cloned()
        .collect()
}

/// The server's routes: the protected-resource metadata at the path-suffixed and the root
/// well-known URLs (RFC 9728 §3.1), readable from any origin, and the MCP Streamable HTTP
/// endpoint behind the `Origin` check and then the token check.
pub fn router(state: AppState) -> Router {
    let mut mcp_config = StreamableHttpServerConfig::default();
    // rmcp refuses Host headers other than loopback by default (DNS rebinding); the listener
    // guard in front of the whole server (`App::serve`) makes the same check on every path, and
    // rmcp's list is kept the same so that neither refuses what the other admits.
    mcp_config.allowed_hosts = state
        .allowed_hosts()
        .as_slice()
        .iter()
        .map(ToString::to_string)
        .collect();
    let mcp_service: StreamableHttpService<TestbedServer, LocalSessionManager> =
        StreamableHttpService::new(
            || Ok(TestbedServer::default()),
            Arc::new(LocalSessionManager::default()),
            mcp_config,
        );
    // The last layer added runs first: a foreign origin is refused before its token is read.
    let protected = Router::new()
        .route_service("/mcp", mcp_service)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            http::require_token,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            http::check_origin,
        ));
    Router::new()
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(http::protected_resource_metadata),
        )
        .route(
            "/.well-known/oauth-protected-resource",
            get(http::protected_resource_metadata),
        )
        .merge(protected)
        .with_state(state)
}

/// A bound server, ready to serve.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    local_addr: SocketAddr,
    base_url: Url,
    state: AppState,
}

impl App {
    /// Binds `config.listen` and builds the server.
    pub async fn bind(config: Config) -> Result<App, StartError> {
        let bound = Bound::bind(config.listen, config.public_url.as_ref()).await?;
        App::from_bound(bound, &config)
    }

    /// Builds the server on a listener bound by the caller (`config.listen` is then ignored).
    pub fn from_listener(listener: TcpListener, config: Config) -> Result<App, StartError> {
        let bound = Bound::from_listener(listener, config.public_url.as_ref())?;
        App::from_bound(bound, &config)
    }

    fn from_bound(bound: Bound, config: &Config) -> Result<App, StartError> {
        let (listener, local_addr, base_url) = bound.into_parts();
        let state = AppState::new(config, &base_url)?;
        Ok(App {
            listener,
            local_addr,
            base_url,
            state,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `config.public_url`, or `http://{local_addr}`.
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// The MCP endpoint, `{base}/mcp`: the Server URL to register with Scalekit.
    pub fn mcp_url(&self) -> Url {
        self.state.mcp_url().clone()
    }

    /// Serves until the listener fails, refusing requests for a host the server does not answer
    /// for (421) before routing, the metadata included.
    pub fn serve(self) -> impl Future<Output = std::io::Result<()>> {
        self.serve_with(std::convert::identity)
    }

    /// The same, with the router passed through `wrap` first (testbed-stack adds the emulator's
    /// flow-inspector recording layer this way); the listener guard stays outermost.
    pub fn serve_with(
        self,
        wrap: impl FnOnce(Router) -> Router,
    ) -> impl Future<Output = std::io::Result<()>> {
        tracing::info!(mcp_url = %self.state.mcp_url(), "MCP server listening");
        let allowed_hosts = self.state.allowed_hosts().clone();
        let router = wrap(router(self.state));
        testbed_web::serve(self.listener, router, allowed_hosts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            listen: "127.0.0.1:0".parse().expect("an address"),
            public_url: None,
            allowed_hosts: Vec::new(),
            environment_url: Url::parse("http://127.0.0.1:9000/").expect("a URL"),
            resource_id: "res_1".to_owned(),
            scopes_supported: vec![
                "openid".to_owned(),
                "offline_access".to_owned(),
                "mcp:read".to_owned(),
            ],
            required_scopes: vec!["mcp:read".to_owned()],
            resource_name: "Test".to_owned(),
            leeway_secs: 0,
            allowed_origins: Vec::new(),
            jwks_refetch_cooldown: DEFAULT_JWKS_REFETCH_COOLDOWN,
            mistake: Mistake::Correct,
            ca_cert_pem: None,
        }
    }

    #[test]
    fn urls_are_derived_without_double_slashes() {
        let base = Url::parse("http://127.0.0.1:8402/").expect("a URL");
        let state = AppState::new(&config(), &base).expect("a valid config");
        assert_eq!(state.mcp_url().as_str(), "http://127.0.0.1:8402/mcp");
        assert_eq!(
            state.metadata_url().as_str(),
            "http://127.0.0.1:8402/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            state.metadata().authorization_servers,
            vec!["http://127.0.0.1:9000/resources/res_1"]
        );
        assert_eq!(
            state.metadata().scopes_supported,
            vec!["openid", "mcp:read"]
        );
    }

    #[test]
    fn a_base_url_with_a_path_keeps_it() {
        let base = Url::parse("https://example.com/tenant").expect("a URL");
        let state = AppState::new(&config(), &base).expect("a valid config");
        assert_eq!(state.mcp_url().as_str(), "https://example.com/tenant/mcp");
    }

    #[test]
    fn the_own_origin_and_the_configured_ones_are_allowed() {
        let mut config = config();
        config.allowed_origins = vec!["https://app.example.com".to_owned()];
        let base = Url::parse("https://mcp.example.com/tenant").expect("a URL");
        let state = AppState::new(&config, &base).expect("a valid config");
        for allowed in [
            "https://mcp.example.com",
            "https://app.example.com",
            "http://localhost:6274",
        ] {
            let origin = Origin::parse(allowed).expect("an origin");
            assert!(state.origin_allowed(&origin), "{allowed}");
        }
        let foreign = Origin::parse("https://example.com").expect("an origin");
        assert!(!state.origin_allowed(&foreign));
    }

    #[test]
    fn an_allowed_origin_with_a_path_is_refused_at_start() {
        let mut config = config();
        config.allowed_origins = vec!["https://app.example.com/app".to_owned()];
        let base = Url::parse("http://127.0.0.1:8402").expect("a URL");
        let error = AppState::new(&config, &base).expect_err("a path is not an origin");
        assert!(
            matches!(error, StartError::AllowedOrigin(ref origin) if origin == "https://app.example.com/app"),
            "{error:?}"
        );
    }

    #[test]
    fn wrong_metadata_resource_adds_a_trailing_slash() {
        let mut config = config();
        config.mistake = Mistake::WrongMetadataResource;
        let base = Url::parse("http://127.0.0.1:8402").expect("a URL");
        let state = AppState::new(&config, &base).expect("a valid config");
        assert_eq!(state.metadata().resource, "http://127.0.0.1:8402/mcp/");
        assert_eq!(state.mcp_url().as_str(), "http://127.0.0.1:8402/mcp");
    }

    #[test]
    fn a_connection_id_is_not_a_resource_id() {
        let mut config = config();
        config.resource_id = "conn_1".to_owned();
        let base = Url::parse("http://127.0.0.1:8402").expect("a URL");
        let error = AppState::new(&config, &base).expect_err("conn_ is refused");
        assert!(
            matches!(error, StartError::ResourceId(ref id) if id == "conn_1"),
            "{error:?}"
        );
    }
}
