//! [`RecordLayer`]: the tower layer that hands every request a piece serves to the
//! [`Inspector`] as an [`Exchange`], except the control API's own (`/_emulator/…`). The emulator
//! wraps its router in it when the control API is on; testbed-stack puts the same layer around Your
//! App and the MCP server when they run in its process, so one inspector sees every hop. The
//! facts a handler attached to its response ([`HopFacts`], [`ErrorSummary`], as extensions) are
//! copied into the exchange, so the inspector reads what happened instead of inferring it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, HttpBody as _};
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use axum::response::Response;
use scalekit_wire::{ErrorSummary, HopFacts};
use tower::{Layer, Service};

use crate::{Actor, Exchange, Inspector};

/// Request and response bodies up to this size are read for the inspector (it keeps at most
/// 1 KiB of them, redacted); larger or streamed ones pass through unread.
const MAX_READ_BYTES: u64 = 64 * 1024;

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
    let started_at_ms = wall_clock_millis();
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
        hop_facts: parts.extensions.get::<HopFacts>().copied(),
        error_summary: parts.extensions.get::<ErrorSummary>().cloned(),
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

/// Wall-clock unix milliseconds (not the emulator's clock, which the control API may move).
fn wall_clock_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
