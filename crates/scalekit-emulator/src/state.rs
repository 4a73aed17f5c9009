//! The state every edge shares (the HTTP routes, the gRPC service and the sweeper): the
//! configuration, the state machine behind its lock, the keys, the clock, the id generator, the
//! store, the request log and the flow inspector. It names no edge: what only the HTTP edge keeps
//! (the armed faults, the metadata document cache) is `http`'s own.

use std::sync::{Arc, Mutex, PoisonError};

use crate::clock::Clock;
use crate::config::Config;
use crate::flow::Flows;
use crate::idp::TrustedIdps;
use crate::ids::IdGenerator;
use crate::keys::KeyRing;
use crate::request_log::RequestLog;
use crate::store::{FlowsGuard, Store};
use crate::tokens::TokenMinter;

/// Everything a handler needs. Cheap to clone: every field is an `Arc`. The flow state sits
/// behind a `std::sync::Mutex` that is never held across an `.await`.
#[derive(Clone)]
pub struct AppState {
    /// The configuration the emulator runs with.
    pub config: Arc<Config>,
    /// The state machine.
    pub flows: Arc<Mutex<Flows>>,
    /// The published keys; the first signs (Decisions §10).
    pub keys: Arc<KeyRing>,
    /// Token minting.
    pub minter: Arc<TokenMinter>,
    /// The injected clock.
    pub clock: Arc<dyn Clock>,
    /// The injected id generator.
    pub ids: Arc<dyn IdGenerator>,
    /// Where durable changes are written (`None`: memory only).
    pub store: Option<Arc<Store>>,
    /// Where the key ring is written when the control API rotates or retires keys (`None`: in
    /// memory only, also with a state directory when the emulator was given its key).
    pub key_store: Option<Arc<Store>>,
    /// The last requests served, HTTP and gRPC (read by the control API).
    pub requests: Arc<RequestLog>,
    /// The flow inspector's recent flows (recorded only when the control API is on).
    pub inspector: flow_inspector::Inspector,
    /// The companies' identity providers the environment trusts (cross-app access), with
    /// their keys.
    pub idps: Arc<TrustedIdps>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AppState")
            .field("environment_url", &self.minter.environment_url())
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// The state for `config` served at `environment_url`.
    pub fn new(
        config: Config,
        environment_url: &url::Url,
        keys: KeyRing,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
    ) -> AppState {
        let flows = Flows::new(&config, environment_url);
        let idps = Arc::new(TrustedIdps::new(&config, environment_url.as_str(), None));
        AppState {
            idps,
            minter: Arc::new(TokenMinter::new(environment_url.as_str())),
            config: Arc::new(config),
            flows: Arc::new(Mutex::new(flows)),
            keys: Arc::new(keys),
            clock,
            ids,
            store: None,
            key_store: None,
            requests: Arc::default(),
            inspector: flow_inspector::Inspector::new(),
        }
    }

    /// The environment URL without a trailing slash (the issuer string).
    pub fn environment_url(&self) -> &str {
        self.minter.environment_url()
    }

    /// Locks the state machine. A panic in another handler does not poison the emulator: the
    /// maps stay consistent because every transition checks before it mutates. Releasing the
    /// guard writes the transition's durable changes to the store, if there is one.
    pub fn flows(&self) -> FlowsGuard<'_> {
        let flows = self.flows.lock().unwrap_or_else(PoisonError::into_inner);
        FlowsGuard::new(flows, self.store.as_deref())
    }

    /// Drops expired entries now.
    pub fn sweep(&self) {
        let now = self.clock.now();
        self.flows().sweep(now);
    }
}
