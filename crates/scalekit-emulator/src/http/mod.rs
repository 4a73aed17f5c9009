//! The HTTP edge: axum routes over the state machine. Only this module knows about axum.

pub(crate) mod api;
pub mod cimd;
pub mod control;
pub mod error;
mod html;
pub mod inspector;
mod oauth;
mod sso;
mod wellknown;

use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::Request;
use axum::http::Uri;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use tower::ServiceExt as _;
use tower_http::trace::TraceLayer;

use crate::clock::Clock;
use crate::config::Config;
use crate::flow::Flows;
use crate::ids::IdGenerator;
use crate::keys::KeyRing;
use crate::store::{FlowsGuard, Store};
use crate::tokens::TokenMinter;
use error::{ApiError, GrpcCode};

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
    /// The control API's request log and armed faults.
    pub control: Arc<control::ControlState>,
    /// The Client ID Metadata Document fetcher and its cache.
    pub metadata_documents: Arc<cimd::MetadataDocuments>,
    /// The flow inspector's recent flows (recorded only when the control API is on).
    pub inspector: flow_inspector::Inspector,
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
        let metadata_documents = cimd::MetadataDocuments::new(config.cimd_allow_insecure_loopback);
        AppState {
            metadata_documents: Arc::new(metadata_documents),
            minter: Arc::new(TokenMinter::new(environment_url.as_str())),
            config: Arc::new(config),
            flows: Arc::new(Mutex::new(flows)),
            keys: Arc::new(keys),
            clock,
            ids,
            store: None,
            key_store: None,
            control: Arc::default(),
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

/// All routes. A leading `//` in the path (Python's `env_url + "/oauth/token"` with a trailing
/// slash in `env_url`) is collapsed before routing.
pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/oauth/authorize", get(oauth::authorize))
        .route(
            "/resources/{resource}/oauth/authorize",
            get(oauth::authorize_for_resource),
        )
        .route("/oauth/token", post(oauth::token))
        .route("/resources/{resource}/oauth/token", post(oauth::token))
        .route("/oauth/consent", post(oauth::consent))
        .route("/oauth/revoke", post(oauth::revoke))
        .route("/keys", get(wellknown::keys))
        .route(
            "/.well-known/openid-configuration",
            get(wellknown::openid_configuration),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(wellknown::environment_metadata),
        )
        .route(
            "/.well-known/oauth-authorization-server/resources/{resource}",
            get(wellknown::resource_metadata),
        )
        .route(
            "/resources/{resource}/.well-known/oauth-authorization-server",
            get(wellknown::resource_metadata),
        )
        .route(
            "/api/v1/resources/{resource}/clients:register",
            post(api::register_client),
        )
        .route(
            "/api/v1/connections/{connection}/auth-requests/{login_request}/user",
            post(api::submit_user),
        )
        .route("/api/v1/user_consents", get(api::list_consents))
        .route(
            "/api/v1/clients/{client}/consents/{consent}",
            delete(api::revoke_consent),
        )
        .route(
            "/sso/v1/connections/{connection}/partner:callback",
            get(sso::partner_callback),
        )
        .merge(control::routes(&state))
        .merge(inspector::routes(&state))
        .fallback(not_found)
        .with_state(state.clone());
    let normalised = routes.map_request(collapse_leading_slashes);
    let router = Router::new()
        .fallback_service(normalised.map_err(|never: Infallible| match never {}))
        .layer(TraceLayer::new_for_http());
    inspector::layer(control::layer(router, &state), &state)
}

async fn not_found() -> impl IntoResponse {
    ApiError::new(GrpcCode::NotFound, "Not Found")
}

fn collapse_leading_slashes(mut request: Request) -> Request {
    let path = request.uri().path();
    if !path.starts_with("//") {
        return request;
    }
    let collapsed = format!("/{}", path.trim_start_matches('/'));
    let path_and_query = match request.uri().query() {
        Some(query) => format!("{collapsed}?{query}"),
        None => collapsed,
    };
    let mut parts = request.uri().clone().into_parts();
    if let Ok(parsed) = path_and_query.parse() {
        parts.path_and_query = Some(parsed);
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
    request
}
