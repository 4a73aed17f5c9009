//! The flow inspector over HTTP: [`RecordLayer`], the tower layer that hands every request a
//! piece serves to the [`Inspector`], and the routes that show what it kept — `GET /_emulator/ui`
//! (one self-contained page: the sequence diagram, the hop details, copy as curl),
//! `GET /_emulator/flows`, `GET /_emulator/flows/{id}` and `GET /_emulator/ui/events` (a
//! server-sent event per new or changed flow, so the page redraws while a flow runs).
//!
//! The emulator records itself when the control API is on; testbed-stack puts the same layer
//! around Your App and the MCP server when they run in its process, so one inspector sees every
//! hop. Calls from Your App or the MCP server to the emulator are recorded once, by the emulator.
//! gRPC calls go to tonic beside the router and are not recorded.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::{Body, HttpBody as _};
use axum::extract::{Path, Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_LENGTH, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION,
    WWW_AUTHENTICATE, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use futures_util::Stream;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tower::{Layer, Service};

use super::AppState;
use super::error::{ApiError, GrpcCode};
use crate::inspector::{Actor, Exchange, FlowDetail, FlowSummary, HopView, Inspector};

/// Request and response bodies up to this size are read for the inspector (it keeps at most
/// 1 KiB of them, redacted); larger or streamed ones pass through unread.
const MAX_READ_BYTES: u64 = 64 * 1024;

/// The page, with its stylesheet and script inline.
const PAGE: &str = include_str!("inspector.html");

/// Records every request of the service it wraps into an [`Inspector`], except the control
/// API's own (`/_emulator/…`).
#[derive(Debug, Clone)]
pub struct RecordLayer {
    inspector: Inspector,
    served_by: Actor,
    base_url: Arc<str>,
}

impl RecordLayer {
    /// Records what `served_by`, reachable at `base_url`, serves.
    pub fn new(inspector: Inspector, served_by: Actor, base_url: &str) -> Self {
        RecordLayer {
            inspector,
            served_by,
            base_url: Arc::from(base_url.trim_end_matches('/')),
        }
    }
}

impl<S> Layer<S> for RecordLayer {
    type Service = Record<S>;

    fn layer(&self, inner: S) -> Record<S> {
        Record {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`RecordLayer`] makes.
#[derive(Debug, Clone)]
pub struct Record<S> {
    inner: S,
    layer: RecordLayer,
}

impl<S> Service<Request> for Record<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The clone is not ready; the one that was polled ready serves this request.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(record(self.layer.clone(), inner, request))
    }
}

async fn record<S>(layer: RecordLayer, mut inner: S, request: Request) -> Result<Response, S::Error>
where
    S: Service<Request, Response = Response>,
{
    if request
        .uri()
        .path()
        .trim_start_matches('/')
        .starts_with("_emulator/")
    {
        return inner.call(request).await;
    }
    let seq = layer.inspector.next_seq();
    let started = Instant::now();
    let started_at_ms = super::control::wall_clock_millis();
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let (body, request_body) = match declared {
        Some(length) if length > 0 && length <= MAX_READ_BYTES => read(body).await,
        _ => (body, None),
    };
    let method = parts.method.clone();
    let uri = parts.uri.clone();
    let request_headers = parts.headers.clone();
    let response = inner.call(Request::from_parts(parts, body)).await?;
    let duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);

    let (parts, body) = response.into_parts();
    let small = body
        .size_hint()
        .exact()
        .is_some_and(|length| length <= MAX_READ_BYTES);
    let (body, response_body) = if small && worth_reading(&parts.headers) {
        read(body).await
    } else {
        (body, None)
    };
    layer.inspector.record(Exchange {
        served_by: layer.served_by,
        base_url: Arc::clone(&layer.base_url),
        seq,
        started_at_ms,
        duration_us,
        method,
        uri,
        request_headers,
        request_body,
        status: parts.status,
        response_headers: kept_response_headers(&parts.headers),
        response_body,
    });
    Ok(Response::from_parts(parts, body))
}

/// Reads a small body and gives back an identical one. A body that fails to read goes on empty
/// (the client went away; nobody reads the answer).
async fn read(body: Body) -> (Body, Option<Vec<u8>>) {
    match axum::body::to_bytes(body, MAX_READ_BYTES as usize).await {
        Ok(bytes) => {
            let copy = bytes.to_vec();
            (Body::from(bytes), Some(copy))
        }
        Err(_) => (Body::empty(), None),
    }
}

/// The response headers the inspector reads (the rest it would throw away).
fn kept_response_headers(headers: &HeaderMap) -> HeaderMap {
    let mut kept = HeaderMap::new();
    for name in [CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE] {
        if let Some(value) = headers.get(&name) {
            kept.insert(name, value.clone());
        }
    }
    kept
}

/// JSON (token answers, errors) and HTML (the consent page's id, the error page's title).
fn worth_reading(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|content_type| {
            content_type.contains("json") || content_type.starts_with("text/html")
        })
}

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

/// The inspector's routes, or none when the control API is off.
pub(super) fn routes(state: &AppState) -> Router<AppState> {
    if !state.config.control {
        return Router::new();
    }
    Router::new()
        .route("/_emulator/ui", only_get(get(page)))
        .route("/_emulator/ui/events", only_get(get(events)))
        .route("/_emulator/flows", only_get(get(flows)))
        .route("/_emulator/flows/{id}", only_get(get(flow)))
}

fn only_get(route: MethodRouter<AppState>) -> MethodRouter<AppState> {
    route.fallback(|| async {
        ApiError::new(GrpcCode::Unimplemented, "Method Not Allowed")
            .with_status(StatusCode::METHOD_NOT_ALLOWED)
    })
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
    Path(id): Path<String>,
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
            Err(RecvError::Lagged(_)) => crate::inspector::Update { flow: None },
            Err(RecvError::Closed) => return None,
        };
        let data = serde_json::to_string(&update).unwrap_or_else(|_| "{}".to_owned());
        Some((Ok(Event::default().event("update").data(data)), updates))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
