//! The emulated Scalekit environment: an MCP authorization server with bring-your-own-auth
//! (BYOA) connections, served over HTTP.
//!
//! Layers, outermost first: the edges — [`http`] (axum routes and the wire error types) and
//! [`grpc`] (tonic), which share [`state`] and the transport-neutral [`management`] API and
//! never name each other — over [`flow`] (the state machine, no IO), with [`tokens`] and [`keys`]
//! minting and signing, [`metadata`] for the discovery documents, [`idp`] for the companies'
//! identity providers it plays (cross-app access), [`store`] for what survives a restart and
//! [`config`] for `fixtures/environment.toml`. The clock and the id generator are
//! injected through [`Deps`] so tests can move time.

pub mod clock;
pub mod config;
pub mod flow;
pub mod grpc;
pub mod http;
pub mod idp;
pub mod ids;
pub mod keys;
pub mod management;
pub mod metadata;
pub mod request_log;
pub mod serve;
pub mod state;
pub mod store;
pub mod tokens;
pub mod types;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError};

use scalekit_wire::Secret;
use testbed_web::{AllowedHosts, BindError, Bound};
use tokio::net::TcpListener;
use url::Url;

use crate::store::Store;

pub use clock::{Clock, ClockError, ManualClock, OffsetClock, SystemClock};
pub use config::{
    ApiClientConfig, ClientConfig, Config, ConfigError, ConnectionConfig, ConsentMode,
    IdpClientConfig, IdpUserConfig, ResourceConfig, TrustedIdpConfig,
};
pub use http::router;
pub use ids::{IdGenerator, RandomIds, SequentialIds};
pub use keys::{KeyOrigin, KeyRing, Signer};
pub use serve::{TlsError, TlsOptions, TlsSetup};
pub use state::AppState;

/// What the emulator takes from outside: the clock, the id generator, optionally a signing key,
/// and optionally a state directory or a key file to keep state or the key across restarts.
///
/// Keys, first match wins:
/// 1. with `signing_key_pem`, the run starts with that key alone, and its key ring (with any
///    rotation the control API makes) lives in memory only: a state directory's stored ring is
///    neither read nor written, and the next run without an explicit key finds it as it was;
/// 2. with a `state_dir`, its ring is used (in its order; its first key signs), else a fresh
///    RSA-2048 key, saved there; rotations and retirements are then saved at once;
/// 3. with a `signing_key_file`, the key it holds, else a fresh key written there (see
///    [`keys::load_or_create_key_file`]); rotations stay in memory, and the next start signs
///    with the file's key again;
/// 4. else a fresh key, in memory only.
///
/// So without a rotation the `kid` stays the same across restarts (Decisions §4) under 2 and 3,
/// which the binaries use by default. [`App::key_origin`] says which applied.
#[derive(Clone)]
pub struct Deps {
    /// The clock (default: the system clock plus an offset the control API can advance).
    pub clock: Arc<dyn Clock>,
    /// The id and secret generator (default: random).
    pub ids: Arc<dyn IdGenerator>,
    /// A PKCS#8 PEM signing key. When `None`, the state directory's key ring is used, else a
    /// fresh RSA-2048 key is generated (and saved in the state directory, if there is one). When
    /// given, it wins over a stored ring, which is then left untouched (see [`Deps`]).
    pub signing_key_pem: Option<Secret>,
    /// Where `emulator.sqlite3` keeps the signing keys, DCR clients, users, organizations,
    /// remembered consents, grants and refresh tokens; `None` keeps everything in memory.
    pub state_dir: Option<PathBuf>,
    /// A PEM file that keeps the signing key when there is no state directory (and no
    /// `signing_key_pem`): read when it exists, else made. `None` (the default, which tests
    /// embedding the emulator use) writes nothing.
    pub signing_key_file: Option<PathBuf>,
}

impl Default for Deps {
    fn default() -> Self {
        Self {
            clock: Arc::new(OffsetClock::new()),
            ids: Arc::new(RandomIds),
            signing_key_pem: None,
            state_dir: None,
            signing_key_file: None,
        }
    }
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Deps")
            .field("now", &self.clock.now())
            .field("signing_key_pem", &self.signing_key_pem)
            .field("state_dir", &self.state_dir)
            .field("signing_key_file", &self.signing_key_file)
            .finish_non_exhaustive()
    }
}

/// Why the emulator did not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The listen address could not be bound or read.
    #[error(transparent)]
    Listen(#[from] BindError),
    /// The configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The signing key could not be made.
    #[error("signing key")]
    Key(#[from] keys::KeyError),
    /// The key file could not be read or written, or holds no key.
    #[error(transparent)]
    KeyFile(#[from] keys::KeyFileError),
    /// The state directory could not be opened, read or written.
    #[error("state directory")]
    Store(#[from] store::StoreError),
}

/// A bound, not yet serving emulator.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    local_addr: SocketAddr,
    base_url: Url,
    /// Loopback, the environment URL's host and `config.allowed_hosts`: the listener guard's list.
    allowed_hosts: AllowedHosts,
    state: AppState,
    key_origin: KeyOrigin,
}

impl App {
    /// Binds `config.listen`.
    pub async fn bind(config: Config) -> Result<App, AppError> {
        let bound = Bound::bind(config.listen, None).await?;
        let (listener, _, _) = bound.into_parts();
        Self::from_listener(listener, config)
    }

    /// Serves on an already bound listener with the system clock and random ids.
    pub fn from_listener(listener: TcpListener, config: Config) -> Result<App, AppError> {
        Self::from_listener_with(listener, config, Deps::default())
    }

    /// Serves on an already bound listener with the given clock, ids, key and state directory.
    /// With a state directory, the durable state is loaded from it now and every later change
    /// is written to it (see [`store`]).
    pub fn from_listener_with(
        listener: TcpListener,
        config: Config,
        deps: Deps,
    ) -> Result<App, AppError> {
        config.validate().map_err(AppError::Config)?;
        let (listener, local_addr, base_url) =
            Bound::from_listener(listener, config.public_url.as_ref())?.into_parts();
        let allowed_hosts = AllowedHosts::new(&base_url, &config.allowed_hosts);
        if let Some(warning) = exposed_control_warning(local_addr, &config) {
            tracing::warn!("{warning}");
        }
        let store = deps
            .state_dir
            .as_deref()
            .map(Store::open)
            .transpose()?
            .map(Arc::new);
        // In the order of [`Deps`]'s list.
        let (keys, key_store, key_origin) = if let Some(pem) = &deps.signing_key_pem {
            let signer = Signer::from_pem(pem.expose())?;
            (KeyRing::new(signer), None, KeyOrigin::Given)
        } else if let (Some(store), Some(state_dir)) = (&store, &deps.state_dir) {
            let origin = KeyOrigin::StateDirectory(state_dir.clone());
            (stored_key_ring(store)?, Some(Arc::clone(store)), origin)
        } else if let Some(path) = &deps.signing_key_file {
            let signer = keys::load_or_create_key_file(path)?;
            (KeyRing::new(signer), None, KeyOrigin::File(path.clone()))
        } else {
            (KeyRing::new(Signer::generate()?), None, KeyOrigin::Fresh)
        };
        let mut state = AppState::new(config, &base_url, keys, deps.clock, deps.ids);
        // The identity providers' keys are kept where the environment's are: in the state
        // directory, unless the run was given its key (then in memory only).
        state.idps = Arc::new(idp::TrustedIdps::new(
            &state.config,
            state.environment_url(),
            key_store.clone(),
        ));
        state.key_store = key_store;
        if let Some(store) = store {
            // Grants and refresh tokens stay in the store and are loaded on use (see
            // `store::FlowsGuard`): the start and the memory do not grow with them.
            let durable = store.load_resident()?;
            let now = state.clock.now();
            let mut flows = state.flows.lock().unwrap_or_else(PoisonError::into_inner);
            flows.import_durable(durable);
            flows.evict_grants();
            flows.record_durable_changes();
            // Refresh tokens that expired while the emulator was down go now, from the store too.
            flows.sweep(now);
            store.apply(&flows.take_durable_changes())?;
            drop(flows);
            state.store = Some(store);
        }
        Ok(App {
            listener,
            local_addr,
            base_url,
            allowed_hosts,
            state,
            key_origin,
        })
    }

    /// Where the signing key came from (see [`Deps`]), for the start banner.
    pub fn key_origin(&self) -> &KeyOrigin {
        &self.key_origin
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

    /// The shared state (configuration, state machine, key ring, clock).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves HTTP/1.1, h2c and gRPC on the listener until the future is dropped, sweeping
    /// expired entries every 30 seconds (see [`serve`]). A request for a host the emulator does
    /// not answer for is refused first (421), gRPC included.
    pub fn serve(self) -> impl Future<Output = std::io::Result<()>> {
        serve::serve(self.listener, self.state, self.allowed_hosts, None)
    }

    /// The same over TLS (ALPN `h2` and `http/1.1`) with the certificate of `tls`. The
    /// environment URL should then be `https://…`: set `public_url` before binding.
    pub fn serve_tls(self, tls: TlsSetup) -> impl Future<Output = std::io::Result<()>> {
        let acceptor = serve::acceptor(&tls);
        serve::serve(
            self.listener,
            self.state,
            self.allowed_hosts,
            Some(acceptor),
        )
    }
}

/// The warning to print at start when the control API answers beyond this machine without a
/// control token: anyone who reaches the address can then reset the emulator, move its clock,
/// arm faults, read the request log and mint tokens its keys sign. `None` when the control API
/// is off, has a token, or `local_addr` is a loopback address.
pub fn exposed_control_warning(local_addr: SocketAddr, config: &Config) -> Option<String> {
    if !config.control
        || config.control_token.is_some()
        || local_addr.ip().to_canonical().is_loopback()
    {
        return None;
    }
    Some(format!(
        "the control API (/_emulator/: reset, clock, faults, the request log, minting tokens the \
         environment's keys sign) listens on {local_addr}, beyond this machine, without a control \
         token: anyone who reaches this address can use it. Set --control-token (or control_token \
         in environment.toml), listen on 127.0.0.1, or turn the control API off (--no-control)"
    ))
}

/// The state directory's key ring, in its order; a fresh key (saved) when it holds none. The
/// ring is saved again when a stored `kid` is missing (a key carried over from schema version 3)
/// or is not the one its key derives, so the table always names its keys.
fn stored_key_ring(store: &Store) -> Result<KeyRing, AppError> {
    let stored = store.signing_keys()?;
    let signers = stored
        .iter()
        .map(|key| Signer::from_pem(key.pem.expose()))
        .collect::<Result<Vec<_>, _>>()?;
    let named = stored
        .iter()
        .zip(&signers)
        .all(|(key, signer)| key.kid.as_deref() == Some(signer.kid()));
    let ring = match KeyRing::from_keys(signers) {
        Some(ring) => ring,
        None => KeyRing::new(Signer::generate()?),
    };
    if stored.is_empty() || !named || ring.keys().len() != stored.len() {
        store.save_key_ring(&ring.keys())?;
    }
    Ok(ring)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../../fixtures/environment.toml");

    fn warning(listen: &str, edit: impl FnOnce(&mut Config)) -> Option<String> {
        let mut config = Config::from_toml_str(FIXTURE).expect("the fixture");
        edit(&mut config);
        exposed_control_warning(listen.parse().expect("an address"), &config)
    }

    #[test]
    fn a_control_api_beyond_loopback_without_a_token_is_warned_about() {
        for exposed in ["0.0.0.0:8400", "[::]:8400", "192.168.1.20:8400"] {
            let warning = warning(exposed, |_| {}).expect("a warning");
            assert!(warning.contains(exposed), "{warning}");
            assert!(warning.contains("--control-token"), "{warning}");
        }
    }

    #[test]
    fn loopback_a_token_or_no_control_api_is_not_warned_about() {
        for loopback in ["127.0.0.1:8400", "[::1]:8400", "[::ffff:127.0.0.1]:8400"] {
            assert_eq!(warning(loopback, |_| {}), None, "{loopback}");
        }
        let with_token = warning("0.0.0.0:8400", |config| {
            config.control_token = Some(Secret::new("s3cret-token"));
        });
        assert_eq!(with_token, None);
        let without_control = warning("0.0.0.0:8400", |config| config.control = false);
        assert_eq!(without_control, None);
    }
}
