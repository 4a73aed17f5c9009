//! The emulated Scalekit environment: an MCP authorization server with bring-your-own-auth
//! (BYOA) connections, served over HTTP.
//!
//! Layers, outermost first: [`http`] (axum routes and the wire error types) over [`flow`] (the
//! state machine, no IO), with [`tokens`] and [`keys`] minting and signing, [`metadata`] for the
//! discovery documents and [`config`] for `fixtures/environment.toml`. The clock and the id
//! generator are injected through [`Deps`] so tests can move time.

pub mod clock;
pub mod config;
pub mod flow;
pub mod http;
pub mod ids;
pub mod keys;
pub mod metadata;
pub mod tokens;
pub mod types;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use scalekit_wire::Secret;
use tokio::net::TcpListener;
use url::Url;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    ApiClientConfig, ClientConfig, Config, ConfigError, ConnectionConfig, ConsentMode,
    ResourceConfig,
};
pub use http::{AppState, router};
pub use ids::{IdGenerator, RandomIds, SequentialIds};
pub use keys::Signer;

/// How often expired login requests, codes and refresh tokens are dropped.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// What the emulator takes from outside: the clock, the id generator and, optionally, a signing
/// key to keep across restarts.
#[derive(Clone)]
pub struct Deps {
    /// The clock (default: the system clock).
    pub clock: Arc<dyn Clock>,
    /// The id and secret generator (default: random).
    pub ids: Arc<dyn IdGenerator>,
    /// A PKCS#8 PEM signing key; a fresh RSA-2048 key is generated when `None`.
    pub signing_key_pem: Option<Secret>,
}

impl Default for Deps {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            ids: Arc::new(RandomIds),
            signing_key_pem: None,
        }
    }
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Deps")
            .field("now", &self.clock.now())
            .field("signing_key_pem", &self.signing_key_pem)
            .finish_non_exhaustive()
    }
}

/// Why the emulator did not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The listen address could not be bound or read.
    #[error("cannot listen on {address}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The bound address does not make a URL (cannot happen for IP addresses).
    #[error("{0} does not make an environment URL")]
    BaseUrl(String),
    /// The signing key could not be made.
    #[error("signing key")]
    Key(#[from] keys::KeyError),
}

/// A bound, not yet serving emulator.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    local_addr: SocketAddr,
    base_url: Url,
    state: AppState,
}

impl App {
    /// Binds `config.listen`.
    pub async fn bind(config: Config) -> Result<App, AppError> {
        let address = config.listen;
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| AppError::Listen { address, source })?;
        Self::from_listener(listener, config)
    }

    /// Serves on an already bound listener with the system clock and random ids.
    pub fn from_listener(listener: TcpListener, config: Config) -> Result<App, AppError> {
        Self::from_listener_with(listener, config, Deps::default())
    }

    /// Serves on an already bound listener with the given clock, ids and key.
    pub fn from_listener_with(
        listener: TcpListener,
        config: Config,
        deps: Deps,
    ) -> Result<App, AppError> {
        config.validate().map_err(AppError::Config)?;
        let local_addr = listener.local_addr().map_err(|source| AppError::Listen {
            address: config.listen,
            source,
        })?;
        let base_url = match &config.public_url {
            Some(public_url) => public_url.clone(),
            None => Url::parse(&format!("http://{local_addr}"))
                .map_err(|_| AppError::BaseUrl(local_addr.to_string()))?,
        };
        let signer = match &deps.signing_key_pem {
            Some(pem) => Signer::from_pem(pem.expose())?,
            None => Signer::generate()?,
        };
        let state = AppState::new(config, &base_url, signer, deps.clock, deps.ids);
        Ok(App {
            listener,
            local_addr,
            base_url,
            state,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The environment URL: `public_url`, else `http://{local_addr}`. As a `Url` it ends in `/`;
    /// issuers use [`AppState::environment_url`], which does not.
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// The shared state (configuration, state machine, signer, clock).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until an IO error, sweeping expired entries every 30 seconds.
    pub fn serve(self) -> impl Future<Output = std::io::Result<()>> {
        let App {
            listener, state, ..
        } = self;
        async move {
            let sweeper_state = state.clone();
            let sweeper = AbortOnDrop(tokio::spawn(async move {
                let mut interval = tokio::time::interval(SWEEP_INTERVAL);
                loop {
                    interval.tick().await;
                    sweeper_state.sweep();
                }
            }));
            let result = axum::serve(listener, router(state)).await;
            drop(sweeper);
            result
        }
    }
}

/// Stops the sweeper when the serving future ends or is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
