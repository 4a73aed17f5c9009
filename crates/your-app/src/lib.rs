//! The reference "Your App": the customer's own login service in Scalekit's bring-your-own-auth
//! (BYOA) flow.
//!
//! Scalekit sends the browser to `GET /login?login_request_id=lri_…&state=…`. Your App signs the
//! user in (a form, an existing session cookie, or `auto_login` for headless runs), posts the
//! user's claims to Scalekit with a management token (step 2), and redirects the browser to
//! `partner:callback` with the same `state` (step 3). It reaches Scalekit only over HTTP, so it runs
//! unchanged against the emulator or a real environment.

mod config;
mod pages;
mod password;
mod scalekit;
mod session;
mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use testbed_web::{AllowedHosts, Bound};
use url::Url;

pub use config::{Behaviour, Config, ConfigError, Persona, load_personas, personas_from_toml_str};
pub use password::{HashError, hash_password, verify_password};
pub use scalekit::{
    ErrorBody, LoginRequestId, LoginState, ScalekitClient, ScalekitError, ScalekitSettings, Step,
};
pub use session::SESSION_COOKIE;
pub use web::{LoginContinuation, hand_off, router};

use crate::session::Sessions;

/// Your App could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// `auto_login` names a persona the users file does not have.
    #[error("auto_login names `{0}`, which is not a persona in the users file")]
    UnknownAutoLoginPersona(String),
    /// The HTTP client for Scalekit could not be built.
    #[error("cannot build the http client for scalekit")]
    HttpClient(#[source] reqwest::Error),
    /// The listen address could not be bound or read.
    #[error(transparent)]
    Listen(#[from] testbed_web::BindError),
}

/// Shared state of the handlers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    personas: Vec<Persona>,
    /// Index into `personas`, checked at construction.
    auto_login: Option<usize>,
    behaviour: Behaviour,
    scalekit: ScalekitClient,
    sessions: Sessions,
    /// The first login request handed off, for [`Behaviour::ReuseLoginRequest`].
    first_login_request: std::sync::OnceLock<LoginRequestId>,
}

impl AppState {
    /// Builds the state from a config; fails if `auto_login` names an unknown persona.
    pub fn new(config: &Config) -> Result<Self, AppError> {
        let auto_login = config
            .auto_login
            .as_ref()
            .map(|name| {
                config
                    .personas
                    .iter()
                    .position(|persona| persona.name == *name)
                    .ok_or_else(|| AppError::UnknownAutoLoginPersona(name.clone()))
            })
            .transpose()?;
        let scalekit = ScalekitClient::new(ScalekitSettings {
            environment_url: config.environment_url.clone(),
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            connection_id: config.connection_id.clone(),
            ca_cert_pem: config.ca_cert_pem.clone(),
        })
        .map_err(AppError::HttpClient)?;
        Ok(Self {
            inner: Arc::new(Inner {
                personas: config.personas.clone(),
                auto_login,
                behaviour: config.behaviour.clone(),
                scalekit,
                sessions: Sessions::default(),
                first_login_request: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Every persona, in file order.
    pub fn personas(&self) -> &[Persona] {
        &self.inner.personas
    }

    /// The persona with this login name.
    pub fn persona(&self, name: &str) -> Option<&Persona> {
        self.inner
            .personas
            .iter()
            .find(|persona| persona.name == name)
    }

    /// The persona `auto_login` signs in, if set.
    pub fn auto_login_persona(&self) -> Option<&Persona> {
        self.inner
            .auto_login
            .and_then(|index| self.inner.personas.get(index))
    }

    /// The first login request id handed off (kept from then on), for
    /// [`Behaviour::ReuseLoginRequest`].
    pub(crate) fn first_login_request(&self, current: &LoginRequestId) -> &LoginRequestId {
        self.inner
            .first_login_request
            .get_or_init(|| current.clone())
    }

    /// How the hand-off back to Scalekit goes.
    pub fn behaviour(&self) -> &Behaviour {
        &self.inner.behaviour
    }

    /// The Scalekit client (token cache and user-details call).
    pub fn scalekit(&self) -> &ScalekitClient {
        &self.inner.scalekit
    }

    fn sessions(&self) -> &Sessions {
        &self.inner.sessions
    }
}

/// A bound, not yet serving, Your App.
#[derive(Debug)]
pub struct App {
    listener: tokio::net::TcpListener,
    local_addr: SocketAddr,
    base_url: Url,
    /// Loopback, the base URL's host and `config.allowed_hosts`: the listener guard's list.
    allowed_hosts: AllowedHosts,
    state: AppState,
}

impl App {
    /// Binds `config.listen`.
    pub async fn bind(config: Config) -> Result<Self, AppError> {
        let bound = Bound::bind(config.listen, config.public_url.as_ref()).await?;
        Self::from_bound(bound, config)
    }

    /// Uses an already bound listener (tests bind `127.0.0.1:0`); `config.listen` is ignored.
    pub fn from_listener(
        listener: tokio::net::TcpListener,
        config: Config,
    ) -> Result<Self, AppError> {
        let bound = Bound::from_listener(listener, config.public_url.as_ref())?;
        Self::from_bound(bound, config)
    }

    fn from_bound(bound: Bound, config: Config) -> Result<Self, AppError> {
        let (listener, local_addr, base_url) = bound.into_parts();
        let allowed_hosts = AllowedHosts::new(&base_url, &config.allowed_hosts);
        let state = AppState::new(&config)?;
        Ok(Self {
            listener,
            local_addr,
            base_url,
            allowed_hosts,
            state,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `config.public_url`, or `http://{local_addr}/`.
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// `{base_url}/login`: what Scalekit's "Login Endpoint URL" must be set to.
    pub fn login_url(&self) -> Url {
        let mut url = self.base_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push("login");
        }
        url
    }

    /// Serves until the listener fails, refusing requests for a host the app does not answer
    /// for (421) before routing.
    pub fn serve(self) -> impl Future<Output = std::io::Result<()>> {
        self.serve_with(std::convert::identity)
    }

    /// The same, with the router passed through `wrap` first (testbed-stack adds the emulator's
    /// flow-inspector recording layer this way); the listener guard stays outermost.
    pub fn serve_with(
        self,
        wrap: impl FnOnce(axum::Router) -> axum::Router,
    ) -> impl Future<Output = std::io::Result<()>> {
        let router = wrap(router(self.state));
        testbed_web::serve(self.listener, router, self.allowed_hosts)
    }
}

#[cfg(test)]
mod tests {
    use scalekit_wire::Secret;

    use super::*;

    #[test]
    fn debug_output_of_the_config_and_the_state_never_shows_the_client_secret() {
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            public_url: None,
            allowed_hosts: Vec::new(),
            environment_url: Url::parse("http://127.0.0.1:9").unwrap(),
            client_id: "skc_1".into(),
            client_secret: Secret::new("test_sk_must_not_print"),
            connection_id: "conn_1".into(),
            auto_login: None,
            behaviour: Behaviour::Correct,
            personas: Vec::new(),
            ca_cert_pem: None,
        };
        let state = AppState::new(&config).unwrap();
        for debug in [format!("{config:?}"), format!("{state:?}")] {
            assert!(!debug.contains("test_sk_must_not_print"), "{debug}");
            assert!(debug.contains("[redacted]"), "{debug}");
        }
    }
}
