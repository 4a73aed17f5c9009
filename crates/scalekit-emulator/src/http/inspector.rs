//! The flow inspector over HTTP: the routes that show what the [`flow_inspector::Inspector`]
//! kept — `GET /_emulator/ui` (one self-contained page: the sequence diagram, the hop details,
//! copy as curl), `GET /_emulator/flows`, `GET /_emulator/flows/{id}` and
//! `GET /_emulator/ui/events` (a server-sent event per new or changed flow, so the page redraws
//! while a flow runs) — and the recording layer around the emulator's own router.
//!
//! They are control routes: the control API's defences (no foreign `Origin`, the control token)
//! apply to them too. With a control token the page is opened once as `/_emulator/ui?token=…`,
//! which sets the cookie its reads and its event stream then carry (`http::control::guard`).
//!
//! The emulator records itself when the control API is on; testbed-stack puts the same layer
//! around Your App and the MCP server when they run in its process, so one inspector sees every
//! hop. Calls from Your App or the MCP server to the emulator are recorded once, by the emulator.
//! gRPC calls go to tonic beside the router and are not recorded.

use std::convert::Infallible;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, X_FRAME_OPTIONS};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use flow_inspector::{Actor, FlowDetail, FlowSummary, HopView, RecordLayer};
use futures_util::Stream;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use super::extract::GatewayPath;
use super::{Edge, Route};
use crate::management::{ApiError, GrpcCode};
use crate::state::AppState;

/// The page, with its stylesheet and script inline.
const PAGE: &str = include_str!("inspector.html");

/// Wraps the emulator's router in the recording layer when the control API is on.
pub(super) fn layer(router: Router, state: &AppState) -> Router {
    if !state.config.control {
        return router;
    }
    router.layer(RecordLayer::new(
        state.inspector.clone(),
        Actor::Emulator,
        state.environment_url(),
    ))
}

/// The inspector's routes (served only when the control API is on).
pub(super) fn routes() -> Vec<Route> {
    vec![
        Route::new("/_emulator/ui", Edge::Gateway).get(page),
        Route::new("/_emulator/ui/events", Edge::Gateway).get(events),
        Route::new("/_emulator/flows", Edge::Gateway).get(flows),
        Route::new("/_emulator/flows/{id}", Edge::Gateway).get(flow),
    ]
}

async fn page() -> Response {
    let mut response = Html(PAGE).into_response();
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    response
}

/// `GET /_emulator/flows`.
#[derive(Debug, Serialize)]
struct FlowsResponse {
    /// Newest first.
    flows: Vec<FlowSummary>,
    /// Hops tied to no flow, newest first.
    other_requests: Vec<HopView>,
}

async fn flows(State(state): State<AppState>) -> Json<FlowsResponse> {
    Json(FlowsResponse {
        flows: state.inspector.flows(),
        other_requests: state.inspector.other_requests(),
    })
}

async fn flow(
    State(state): State<AppState>,
    GatewayPath(id): GatewayPath<String>,
) -> Result<Json<FlowDetail>, ApiError> {
    state.inspector.flow(&id).map(Json).ok_or_else(|| {
        ApiError::new(
            GrpcCode::NotFound,
            format!("flow {id} not found: it is unknown or was dropped for newer ones"),
        )
    })
}

async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let updates = state.inspector.subscribe();
    let stream = futures_util::stream::unfold(updates, |mut updates| async move {
        let update = match updates.recv().await {
            Ok(update) => update,
            // Missed updates: tell the page to redraw everything.
            Err(RecvError::Lagged(_)) => flow_inspector::Update { flow: None },
            Err(RecvError::Closed) => return None,
        };
        let data = serde_json::to_string(&update).unwrap_or_else(|_| "{}".to_owned());
        Some((Ok(Event::default().event("update").data(data)), updates))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
