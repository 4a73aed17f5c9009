//! The HTTP edge: the axum routes over the state machine, their extractors and error types.
//! Routing and rendering live here; `serve` only hands it the requests that are not gRPC.

mod api;
mod browser;
pub mod cimd;
pub mod control;
pub mod error;
mod error_page;
mod extract;
mod facts;
mod html;
mod idp;
pub mod inspector;
mod oauth;
mod sso;
mod token;
mod wellknown;

#[cfg(test)]
mod tests;

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::Request;
use axum::handler::Handler;
use axum::http::{Method, StatusCode, Uri};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::{Extension, Router};
use scalekit_wire::{Endpoint, OAuthErrorCode};
use tower::ServiceExt as _;
use tower_http::trace::TraceLayer;

use crate::config::Config;
use crate::management::{ApiError, GrpcCode};
use crate::state::AppState;
use error::{HostedErrorPage, OAuthError};

/// The shape a route answers its errors in: one of the emulator's edge types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// RFC 6749 §5.2 JSON `{error, error_description}` ([`error::OAuthError`]).
    OAuth,
    /// Scalekit's gateway body `{code, message, details}` ([`crate::management::ApiError`]).
    Gateway,
    /// The hosted error page, for routes a browser is sent to ([`error::HostedErrorPage`]).
    Page,
}

/// What a route's request body is, for the routes that read one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// JSON.
    Json,
    /// `application/x-www-form-urlencoded`.
    Form,
}

/// One route of the router, as the route table describes it: the router is built from the same
/// rows, so a route cannot be served without being listed here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// The path pattern (`/oauth/token`, `/_emulator/flows/{id}`).
    pub path: &'static str,
    /// The methods served (`GET` routes answer `HEAD` too); every other method gets 405 in the
    /// route's edge shape, with `Allow`.
    pub methods: Vec<Method>,
    /// The shape of the route's errors.
    pub edge: Edge,
    /// The request body the route's `POST` reads, if any.
    pub body: Option<BodyKind>,
    /// The endpoint the route's answers name in their [`scalekit_wire::HopFacts`] (the token
    /// routes name their grant type's instead).
    pub endpoint: Endpoint,
}

/// A row of the route table: its description and its handlers.
pub(crate) struct Route {
    spec: RouteSpec,
    handlers: MethodRouter<AppState>,
}

impl Route {
    pub(crate) fn new(path: &'static str, edge: Edge) -> Route {
        Route {
            spec: RouteSpec {
                path,
                methods: Vec::new(),
                edge,
                body: None,
                endpoint: Endpoint::Other,
            },
            handlers: MethodRouter::new(),
        }
    }

    pub(crate) fn get<H: Handler<T, AppState>, T: 'static>(mut self, handler: H) -> Route {
        self.spec.methods.push(Method::GET);
        self.handlers = self.handlers.get(handler);
        self
    }

    pub(crate) fn post<H: Handler<T, AppState>, T: 'static>(mut self, handler: H) -> Route {
        self.spec.methods.push(Method::POST);
        self.handlers = self.handlers.post(handler);
        self
    }

    pub(crate) fn delete<H: Handler<T, AppState>, T: 'static>(mut self, handler: H) -> Route {
        self.spec.methods.push(Method::DELETE);
        self.handlers = self.handlers.delete(handler);
        self
    }

    /// Declares the endpoint the route serves (default: [`Endpoint::Other`]).
    pub(crate) fn serves(mut self, endpoint: Endpoint) -> Route {
        self.spec.endpoint = endpoint;
        self
    }

    /// Declares the body the route's `POST` reads.
    pub(crate) fn takes(mut self, body: BodyKind) -> Route {
        self.spec.body = Some(body);
        self
    }
}

/// The route table: every route the router serves (the control and inspector routes only when
/// the control API is on).
fn table(config: &Config) -> Vec<Route> {
    let mut table = vec![
        Route::new("/oauth/authorize", Edge::Page)
            .serves(Endpoint::Authorize)
            .get(oauth::authorize),
        Route::new("/resources/{resource}/oauth/authorize", Edge::Page)
            .serves(Endpoint::Authorize)
            .get(oauth::authorize_for_resource),
        Route::new("/oauth/token", Edge::OAuth)
            .serves(Endpoint::TokenOther)
            .post(token::token)
            .takes(BodyKind::Form),
        Route::new("/resources/{resource}/oauth/token", Edge::OAuth)
            .serves(Endpoint::TokenOther)
            .post(token::token)
            .takes(BodyKind::Form),
        Route::new("/oauth/consent", Edge::Page)
            .serves(Endpoint::Consent)
            .post(oauth::consent)
            .takes(BodyKind::Form),
        Route::new("/oauth/revoke", Edge::OAuth)
            .serves(Endpoint::Revoke)
            .post(token::revoke)
            .takes(BodyKind::Form),
        Route::new("/keys", Edge::Gateway).get(wellknown::keys),
        Route::new("/.well-known/openid-configuration", Edge::Gateway)
            .get(wellknown::openid_configuration),
        Route::new("/.well-known/oauth-authorization-server", Edge::Gateway)
            .get(wellknown::environment_metadata),
        Route::new(
            "/.well-known/oauth-authorization-server/resources/{resource}",
            Edge::Gateway,
        )
        .get(wellknown::resource_metadata),
        Route::new(
            "/resources/{resource}/.well-known/oauth-authorization-server",
            Edge::Gateway,
        )
        .get(wellknown::resource_metadata),
        // RFC 7591 answers registration errors in the OAuth shape, not the gateway's.
        Route::new("/api/v1/resources/{resource}/clients:register", Edge::OAuth)
            .serves(Endpoint::Register)
            .post(api::register_client)
            .takes(BodyKind::Json),
        Route::new(
            "/api/v1/connections/{connection}/auth-requests/{login_request}/user",
            Edge::Gateway,
        )
        .serves(Endpoint::SubmitUser)
        .post(api::submit_user)
        .takes(BodyKind::Json),
        Route::new("/api/v1/user_consents", Edge::Gateway).get(api::list_consents),
        Route::new("/api/v1/clients/{client}/consents/{consent}", Edge::Gateway)
            .delete(api::revoke_consent),
        Route::new(
            "/sso/v1/connections/{connection}/partner:callback",
            Edge::Page,
        )
        .serves(Endpoint::PartnerCallback)
        .get(sso::partner_callback),
        // Where the partner callback's `invalid_state` sends the browser (the path is the
        // emulator's decision: Scalekit's is unknown).
        Route::new(error::ERROR_PAGE_PATH, Edge::Page).get(error_page::error_page),
    ];
    if config.control {
        table.extend(control::routes());
        table.extend(inspector::routes());
        // The identity providers the emulator plays hand out assertions to whoever signs in
        // through the control API; without it they do not exist.
        table.extend(idp::routes());
    }
    table
}

/// Every route the router serves with `config`, from the table it is built from.
pub fn routes(config: &Config) -> Vec<RouteSpec> {
    table(config).into_iter().map(|route| route.spec).collect()
}

/// What only the HTTP edge keeps, beside the [`AppState`] every edge shares: the control API's
/// armed faults and the Client ID Metadata Document fetcher with its cache. One per router,
/// reached by handlers as an `Extension`, so that `state` names nothing of `http`.
#[derive(Debug)]
pub(crate) struct EdgeState {
    /// The armed faults.
    pub(crate) control: control::ControlState,
    /// The metadata document fetcher and its cache.
    pub(crate) metadata_documents: cimd::MetadataDocuments,
}

impl EdgeState {
    fn new(config: &Config) -> EdgeState {
        EdgeState {
            control: control::ControlState::default(),
            metadata_documents: cimd::MetadataDocuments::new(config.cimd_allow_insecure_loopback),
        }
    }
}

/// All routes. A leading `//` in the path (Python's `env_url + "/oauth/token"` with a trailing
/// slash in `env_url`) is collapsed before routing.
pub fn router(state: AppState) -> Router {
    let edge = Arc::new(EdgeState::new(&state.config));
    let mut routes = Router::new();
    for Route { spec, handlers } in table(&state.config) {
        let allowed = spec
            .methods
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let edge = spec.edge;
        let endpoint = spec.endpoint;
        // axum adds `Allow` to what a method router's fallback answers.
        let handlers = handlers
            .fallback(
                move |method: Method| async move { method_not_allowed(edge, &method, &allowed) },
            )
            .layer(middleware::map_response(
                move |response: Response| async move { facts::attach(endpoint, response) },
            ));
        routes = routes.route(spec.path, handlers);
    }
    let routes = routes
        .fallback(not_found)
        .layer(Extension(Arc::clone(&edge)))
        .with_state(state.clone());
    let normalised = routes.map_request(collapse_leading_slashes);
    let router = Router::new()
        .fallback_service(normalised.map_err(|never: Infallible| match never {}))
        .layer(TraceLayer::new_for_http());
    inspector::layer(control::layer(router, &state, edge), &state)
}

/// 405 for a method a route does not serve, in the route's edge shape.
fn method_not_allowed(edge: Edge, method: &Method, allowed: &str) -> Response {
    let description = format!("{method} is not allowed here; use {allowed}");
    match edge {
        Edge::OAuth => OAuthError::new(OAuthErrorCode::InvalidRequest, description)
            .with_status(StatusCode::METHOD_NOT_ALLOWED)
            .into_response(),
        Edge::Gateway => (
            StatusCode::METHOD_NOT_ALLOWED,
            ApiError::new(GrpcCode::Unimplemented, "Method Not Allowed"),
        )
            .into_response(),
        Edge::Page => (
            StatusCode::METHOD_NOT_ALLOWED,
            HostedErrorPage::new(OAuthErrorCode::InvalidRequest, description),
        )
            .into_response(),
    }
}

/// What no route serves: a gateway NOT_FOUND, as Scalekit's gateway answers.
async fn not_found() -> Response {
    let response = ApiError::new(GrpcCode::NotFound, "Not Found").into_response();
    facts::attach(Endpoint::Other, response)
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
