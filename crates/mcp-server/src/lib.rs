//! The reference protected MCP server: validates Scalekit access tokens the way real MCP servers
//! in front of Scalekit do (scalekit.md §5, mcp-authorization.md §1.1) and serves a `whoami` tool.
//!
//! It talks to the environment only over HTTP (`{env}/keys`), so it runs unchanged against the
//! emulator and against real Scalekit.

pub mod auth;
pub mod http;
pub mod tools;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use scalekit_wire::prefix;
use tokio::net::TcpListener;
use url::Url;

pub use auth::{AuthError, Authenticator, Claims, Clock, Policy, TokenError, Validator};
pub use http::ProtectedResourceMetadata;
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
    /// Clock tolerance for `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listener could not be bound or inspected.
    #[error("cannot listen on {address}")]
    Listen {
        address: String,
        #[source]
        source: std::io::Error,
    },
    /// The resource id does not look like a Scalekit resource id.
    #[error("the resource id {0:?} does not start with {prefix}", prefix = prefix::RESOURCE)]
    ResourceId(String),
    /// A URL cannot carry a path (e.g. `mailto:`), so no endpoint can be derived from it.
    #[error("{which} {url} cannot be used as a base URL")]
    BaseUrl { which: &'static str, url: String },
    /// The HTTP client for the JWKS could not be built.
    #[error("cannot build the HTTP client")]
    HttpClient(#[source] reqwest::Error),
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

        let metadata = ProtectedResourceMetadata {
            resource: mcp_url.to_string(),
            authorization_servers: vec![authorization_server.to_string()],
            bearer_methods_supported: vec!["header".to_owned()],
            scopes_supported: without_offline_access(&config.scopes_supported),
            resource_name: config.resource_name.clone(),
            resource_documentation: None,
        };
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(StartError::HttpClient)?;
        let policy = Policy::for_environment(
            &config.environment_url,
            &config.resource_id,
            config.leeway_secs,
        );
        Ok(AppState {
            inner: Arc::new(Inner {
                mcp_url,
                metadata_url,
                metadata,
                required_scopes: without_offline_access(&config.required_scopes),
                authenticator: Authenticator::new(policy, jwks_url, http),
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
        challenge.into_response(self.metadata_url().as_str(), self.required_scopes())
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
/// well-known URLs (RFC 9728 §3.1), and the MCP Streamable HTTP endpoint behind the token check.
pub fn router(state: AppState) -> Router {
    let mut mcp_config = StreamableHttpServerConfig::default();
    // rmcp refuses Host headers other than loopback by default (DNS rebinding); a server behind a
    // public URL must also accept that URL's host.
    if let Some(host) = state.mcp_url().host_str() {
        let host = host.to_owned();
        if !mcp_config.allowed_hosts.contains(&host) {
            mcp_config.allowed_hosts.push(host);
        }
    }
    let mcp_service: StreamableHttpService<TestbedServer, LocalSessionManager> =
        StreamableHttpService::new(
            || Ok(TestbedServer::default()),
            Arc::new(LocalSessionManager::default()),
            mcp_config,
        );
    let protected = Router::new().route_service("/mcp", mcp_service).layer(
        axum::middleware::from_fn_with_state(state.clone(), http::require_token),
    );
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
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Listen {
                    address: config.listen.to_string(),
                    source,
                })?;
        App::from_listener(listener, config)
    }

    /// Builds the server on a listener bound by the caller (`config.listen` is then ignored).
    pub fn from_listener(listener: TcpListener, config: Config) -> Result<App, StartError> {
        let local_addr = listener.local_addr().map_err(|source| StartError::Listen {
            address: config.listen.to_string(),
            source,
        })?;
        let base_url = match &config.public_url {
            Some(public_url) => public_url.clone(),
            None => {
                Url::parse(&format!("http://{local_addr}")).map_err(|_| StartError::BaseUrl {
                    which: "the listen address",
                    url: local_addr.to_string(),
                })?
            }
        };
        let state = AppState::new(&config, &base_url)?;
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

    /// Serves until the listener fails.
    pub fn serve(self) -> impl Future<Output = std::io::Result<()>> {
        self.serve_with(std::convert::identity)
    }

    /// The same, with the router passed through `wrap` first (testbed-stack adds the emulator's
    /// flow-inspector recording layer this way).
    pub fn serve_with(
        self,
        wrap: impl FnOnce(Router) -> Router,
    ) -> impl Future<Output = std::io::Result<()>> {
        tracing::info!(mcp_url = %self.state.mcp_url(), "MCP server listening");
        let router = wrap(router(self.state));
        async move { axum::serve(self.listener, router).await }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            listen: "127.0.0.1:0".parse().expect("an address"),
            public_url: None,
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
