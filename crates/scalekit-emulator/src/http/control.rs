//! The control API under `/_emulator/` (off with `control = false` or `--no-control`): move the
//! clock, reset the state, read the pending login requests and the last requests served, arm
//! one-shot faults, rotate and retire the signing keys ([`keys`]), mint access tokens with or
//! without a deliberate defect ([`tokens`]), create, list and delete agents ([`agents`]), and
//! sign people in at the trusted identity providers and make ID-JAGs ([`idps`]). It is
//! described by the OpenAPI document at
//! `/_emulator/openapi.json`; the emulated Scalekit surface by the one at
//! `/_emulator/scalekit-openapi.json`.
//!
//! The request log and the fault injection are one middleware around the whole router (see
//! `layer`); `/_emulator/*` itself is neither logged nor faultable, and passes the defences
//! against web pages and the control token first (`guard`). gRPC calls, which bypass the
//! router, are logged by the gRPC service. An error answer's code, message and violated fields
//! come from the [`ErrorSummary`] every error type attaches to its response, so the log never
//! reads a body. Nothing here prints a credential: query parameters that carry one are cut to a
//! short prefix and `…`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Query, Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use scalekit_wire::ErrorSummary;
use serde::de::{DeserializeOwned, Error as _, Unexpected};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Number, Value};
use url::Url;

use super::extract::JsonObject;
use super::{BodyKind, Edge, EdgeState, Route};
use crate::clock::ClockError;
use crate::flow::Flows;
use crate::management::{ApiError, GrpcCode, violation};
use crate::request_log::{REQUEST_LOG_CAPACITY, RequestRecord, truncate, wall_clock_millis};
use crate::state::AppState;
use flow_inspector::redact::redact_query;

pub mod agents;
pub(super) mod guard;
pub mod idps;
pub mod keys;
pub mod tokens;

/// The path prefix of every control route.
pub const PREFIX: &str = "/_emulator/";

/// `GET /_emulator/requests` without `limit`.
const DEFAULT_REQUEST_LIMIT: usize = 50;

/// How many faults may be armed at once.
pub const MAX_ARMED_FAULTS: usize = 100;

/// The longest delay a fault may add.
const MAX_FAULT_DELAY_MS: u64 = 60_000;

/// The most requests one fault may answer.
const MAX_FAULT_TIMES: u32 = 1000;

/// The state the control API keeps besides the emulator's own and the request log: the armed
/// faults.
#[derive(Debug, Default)]
pub struct ControlState {
    faults: Mutex<Vec<ArmedFault>>,
}

impl ControlState {
    fn faults(&self) -> MutexGuard<'_, Vec<ArmedFault>> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes one use of the first armed fault matching the request; a fault used up is disarmed.
    fn take_fault(&self, method: &Method, path: &str) -> Option<ArmedFault> {
        let mut faults = self.faults();
        let index = faults
            .iter()
            .position(|fault| fault.matches(method, path))?;
        let fault = &mut faults[index];
        fault.remaining -= 1;
        let taken = fault.clone();
        if fault.remaining == 0 {
            faults.remove(index);
        }
        Some(taken)
    }
}

/// A fault waiting for matching requests, parsed when it was armed: nothing is parsed again
/// when it fires.
#[derive(Debug, Clone)]
struct ArmedFault {
    id: String,
    /// `None`: any method.
    method: Option<Method>,
    path: PathPattern,
    /// `None`: only the delay, then the real handler answers.
    status: Option<StatusCode>,
    body: Option<Value>,
    /// In the order they are set (by name as armed, so a later spelling of the same name wins).
    headers: Vec<FaultHeader>,
    delay_ms: u64,
    remaining: u32,
}

/// A header a fault sets. HTTP names are case-insensitive and [`HeaderName`] keeps them in
/// lower case; the listing echoes the name as it was armed.
#[derive(Debug, Clone)]
struct FaultHeader {
    armed_name: String,
    name: HeaderName,
    value: HeaderValue,
}

/// A fault's path: exact segments, `*` matching any one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PathPattern(Vec<PathSegment>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum PathSegment {
    Any,
    Exact(String),
}

impl PathPattern {
    fn parse(path: &str) -> PathPattern {
        PathPattern(
            path.split('/')
                .map(|segment| match segment {
                    "*" => PathSegment::Any,
                    exact => PathSegment::Exact(exact.to_owned()),
                })
                .collect(),
        )
    }

    fn matches(&self, path: &str) -> bool {
        let actual: Vec<&str> = path.split('/').collect();
        self.0.len() == actual.len()
            && self
                .0
                .iter()
                .zip(&actual)
                .all(|(expected, segment)| match expected {
                    PathSegment::Any => true,
                    PathSegment::Exact(exact) => exact == segment,
                })
    }
}

impl std::fmt::Display for PathPattern {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (position, segment) in self.0.iter().enumerate() {
            if position > 0 {
                formatter.write_str("/")?;
            }
            match segment {
                PathSegment::Any => formatter.write_str("*")?,
                PathSegment::Exact(exact) => formatter.write_str(exact)?,
            }
        }
        Ok(())
    }
}

impl ArmedFault {
    fn matches(&self, method: &Method, path: &str) -> bool {
        self.method
            .as_ref()
            .is_none_or(|expected| expected == method)
            && self.path.matches(path)
    }

    /// The injected answer, or `None` when the fault is only a delay.
    fn response(&self) -> Option<Response> {
        let status = self.status?;
        let mut response = match &self.body {
            Some(body) => (status, Json(body.clone())).into_response(),
            None => (status, Body::empty()).into_response(),
        };
        for header in &self.headers {
            response
                .headers_mut()
                .insert(header.name.clone(), header.value.clone());
        }
        Some(response)
    }
}

/// An armed fault as `GET /_emulator/faults` lists it: what was armed, and the uses left.
impl Serialize for ArmedFault {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Listed<'a> {
            id: &'a str,
            method: Option<&'a str>,
            path: String,
            status: Option<u16>,
            body: &'a Option<Value>,
            headers: BTreeMap<&'a str, String>,
            delay_ms: u64,
            remaining: u32,
        }
        Listed {
            id: &self.id,
            method: self.method.as_ref().map(Method::as_str),
            path: self.path.to_string(),
            status: self.status.map(|status| status.as_u16()),
            body: &self.body,
            headers: self
                .headers
                .iter()
                .map(|header| {
                    let value = String::from_utf8_lossy(header.value.as_bytes()).into_owned();
                    (header.armed_name.as_str(), value)
                })
                .collect(),
            delay_ms: self.delay_ms,
            remaining: self.remaining,
        }
        .serialize(serializer)
    }
}

/// The control routes (served only when the control API is on); their state-changing calls take
/// JSON only (`guard::json_calls`).
pub(super) fn routes() -> Vec<Route> {
    let routes = vec![
        Route::new("/_emulator/openapi.json", Edge::Gateway).get(openapi),
        Route::new("/_emulator/scalekit-openapi.json", Edge::Gateway).get(scalekit_openapi),
        Route::new("/_emulator/clock", Edge::Gateway).get(clock),
        Route::new("/_emulator/clock/advance", Edge::Gateway)
            .post(advance_clock)
            .takes(BodyKind::Json),
        Route::new("/_emulator/clock/rewind", Edge::Gateway)
            .post(rewind_clock)
            .takes(BodyKind::Json),
        Route::new("/_emulator/keys", Edge::Gateway).get(keys::list),
        Route::new("/_emulator/keys/rotate", Edge::Gateway)
            .post(keys::rotate)
            .takes(BodyKind::Json),
        Route::new("/_emulator/keys/retire", Edge::Gateway)
            .post(keys::retire)
            .takes(BodyKind::Json),
        Route::new("/_emulator/tokens", Edge::Gateway)
            .post(tokens::mint)
            .takes(BodyKind::Json),
        Route::new("/_emulator/agents", Edge::Gateway)
            .get(agents::list)
            .post(agents::create)
            .takes(BodyKind::Json),
        Route::new("/_emulator/agents/{client_id}", Edge::Gateway).delete(agents::delete),
        Route::new("/_emulator/idps", Edge::Gateway).get(idps::list),
        Route::new("/_emulator/idps/{idp}/id-token", Edge::Gateway)
            .post(idps::id_token)
            .takes(BodyKind::Json),
        Route::new("/_emulator/idps/{idp}/id-jag", Edge::Gateway)
            .post(idps::id_jag)
            .takes(BodyKind::Json),
        Route::new("/_emulator/reset", Edge::Gateway).post(reset),
        Route::new("/_emulator/login-requests", Edge::Gateway).get(login_requests),
        Route::new("/_emulator/requests", Edge::Gateway).get(requests),
        Route::new("/_emulator/faults", Edge::Gateway)
            .get(list_faults)
            .post(arm_fault)
            .delete(clear_faults)
            .takes(BodyKind::Json),
    ];
    routes.into_iter().map(guard::json_calls).collect()
}

/// Wraps the whole router in the request log and the fault injection, when the control API is
/// on. Outermost, so that a fault answers before routing and the log sees injected answers too.
pub(super) fn layer(router: Router, state: &AppState, edge: Arc<EdgeState>) -> Router {
    if !state.config.control {
        return router;
    }
    router.layer(middleware::from_fn_with_state(
        (state.clone(), edge),
        observe,
    ))
}

async fn observe(
    State((state, edge)): State<(AppState, Arc<EdgeState>)>,
    request: Request,
    next: Next,
) -> Response {
    let raw_path = request.uri().path().to_owned();
    // Routing collapses a leading `//`; faults match what routing sees.
    let path = format!("/{}", raw_path.trim_start_matches('/'));
    if path.starts_with(PREFIX) {
        if let Some(answer) = guard::screen(&state, &path, &request) {
            return answer;
        }
        return next.run(request).await;
    }
    let started = Instant::now();
    let at = wall_clock_millis();
    let method = request.method().clone();
    let query = request.uri().query().map(redact_query);
    let fault = edge.control.take_fault(&method, &path);
    let response = match fault {
        None => next.run(request).await,
        Some(fault) => {
            tracing::info!(fault = %fault.id, %method, %path, "injecting a fault");
            if fault.delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(fault.delay_ms)).await;
            }
            let mut response = match fault.response() {
                Some(response) => response,
                None => next.run(request).await,
            };
            if let Ok(id) = HeaderValue::from_str(&fault.id) {
                response.headers_mut().insert("x-emulator-fault", id);
            }
            response
        }
    };
    state.requests.record(RequestRecord {
        method: method.to_string(),
        path: truncate(&raw_path),
        query: query.map(|query| truncate(&query)),
        status: response.status().as_u16(),
        error: response.extensions().get::<ErrorSummary>().cloned(),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        at,
    });
    response
}

async fn openapi() -> Response {
    (
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        include_str!("openapi.json"),
    )
        .into_response()
}

/// The OpenAPI document of the emulated Scalekit surface (every route of the table outside
/// `/_emulator/`), served beside the control API's own.
async fn scalekit_openapi() -> Response {
    (
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        include_str!("scalekit-openapi.json"),
    )
        .into_response()
}

/// A JSON number with no fractional part from 0 to `u64::MAX`, written as an integer or not
/// (`600` or `600.0`): JSON Schema's `integer`, which the OpenAPI document promises. serde reads
/// `600.0` only into a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct WholeNumber(pub u64);

impl<'de> Deserialize<'de> for WholeNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let number = Number::deserialize(deserializer)?;
        whole_number(&number).map(WholeNumber).ok_or_else(|| {
            D::Error::invalid_value(
                Unexpected::Other(&number.to_string()),
                &"an integer from 0 to 18446744073709551615",
            )
        })
    }
}

/// The value of a JSON number with no fractional part from 0 to `u64::MAX`.
pub(super) fn whole_number(number: &Number) -> Option<u64> {
    if let Some(whole) = number.as_u64() {
        return Some(whole);
    }
    // 2^64 is the first float past `u64::MAX`: a float from 0 to below it with no fractional
    // part converts exactly.
    const TWO_TO_THE_64: f64 = 18_446_744_073_709_551_616.0;
    let float = number.as_f64()?;
    if float.fract() != 0.0 || !(0.0..TWO_TO_THE_64).contains(&float) {
        return None;
    }
    Some(float as u64)
}

#[derive(Debug, Serialize)]
struct ClockResponse {
    now: u64,
}

async fn clock(State(state): State<AppState>) -> Json<ClockResponse> {
    Json(ClockResponse {
        now: state.clock.now(),
    })
}

/// `POST /_emulator/clock/advance` and `…/rewind`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockStep {
    seconds: WholeNumber,
}

async fn advance_clock(
    State(state): State<AppState>,
    ControlBody(ClockStep {
        seconds: WholeNumber(seconds),
    }): ControlBody<ClockStep>,
) -> Result<Json<ClockResponse>, ApiError> {
    state.clock.advance(seconds).map_err(clock_error)?;
    Ok(Json(ClockResponse {
        now: state.clock.now(),
    }))
}

/// Moves the clock back: a token a real flow just issued then looks as old by the wall clock as
/// the emulator's clock was moved, e.g. past its lifetime.
async fn rewind_clock(
    State(state): State<AppState>,
    ControlBody(ClockStep {
        seconds: WholeNumber(seconds),
    }): ControlBody<ClockStep>,
) -> Result<Json<ClockResponse>, ApiError> {
    state.clock.rewind(seconds).map_err(clock_error)?;
    Ok(Json(ClockResponse {
        now: state.clock.now(),
    }))
}

/// A clock that cannot move is FAILED_PRECONDITION; a step it cannot take names `seconds`.
fn clock_error(error: ClockError) -> ApiError {
    match error {
        ClockError::Fixed => ApiError::new(GrpcCode::FailedPrecondition, error.to_string()),
        ClockError::Overflow { .. } | ClockError::BeforeEpoch { .. } => ApiError::invalid_argument(
            "invalid request",
            vec![violation("seconds", error.to_string())],
        ),
    }
}

/// Drops every sign-in in progress, code, grant, refresh token, consent, DCR client, agent created
/// through the control API, user (of a connection or an identity provider), organization and
/// redeemed identity assertion by swapping in the state machine the configuration makes; the
/// configured clients and agents, the signing keys (rotated ones too) and the identity
/// providers' keys, the clock and the configuration stay, and a state
/// directory is emptied of the same. The request log and the armed faults are cleared too.
/// Management tokens are self-contained JWTs and stay valid until they expire or their key is
/// retired.
async fn reset(
    State(state): State<AppState>,
    Extension(edge): Extension<Arc<EdgeState>>,
) -> Result<StatusCode, ApiError> {
    let environment_url = Url::parse(state.environment_url()).map_err(|error| {
        ApiError::new(
            GrpcCode::Internal,
            format!("the environment URL does not parse: {error}"),
        )
    })?;
    let fresh = Flows::new(&state.config, &environment_url);
    // With a store, the guard writes the recorded reset when it is released.
    state.flows().reset_to(fresh);
    state.requests.clear();
    edge.control.faults().clear();
    edge.metadata_documents.clear();
    state.inspector.clear();
    tracing::info!("state reset through the control API");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct LoginRequestsQuery {
    state: Option<String>,
}

#[derive(Debug, Serialize)]
struct LoginRequestsResponse {
    login_requests: Vec<LoginRequestView>,
}

#[derive(Debug, Serialize)]
struct LoginRequestView {
    login_request_id: String,
    connection_id: String,
    client_id: String,
    resource_id: String,
    state: String,
    expires_at: u64,
    user_submitted: bool,
}

async fn login_requests(
    State(state): State<AppState>,
    ControlQuery(query): ControlQuery<LoginRequestsQuery>,
) -> Result<Json<LoginRequestsResponse>, ApiError> {
    let now = state.clock.now();
    let pending = state.flows().pending_login_requests();
    let login_requests = pending
        .into_iter()
        .filter(|request| request.expires_at > now)
        .filter(|request| {
            query
                .state
                .as_deref()
                .is_none_or(|wanted| request.state.as_str() == wanted)
        })
        .map(|request| LoginRequestView {
            login_request_id: request.login_request_id.to_string(),
            connection_id: request.connection_id.to_string(),
            client_id: request.client_id.to_string(),
            resource_id: request.resource_id.to_string(),
            state: request.state.to_string(),
            expires_at: request.expires_at,
            user_submitted: request.user_submitted,
        })
        .collect();
    Ok(Json(LoginRequestsResponse { login_requests }))
}

#[derive(Debug, Deserialize)]
struct RequestsQuery {
    limit: Option<String>,
}

#[derive(Debug, Serialize)]
struct RequestsResponse {
    requests: Vec<RequestRecord>,
}

async fn requests(
    State(state): State<AppState>,
    ControlQuery(query): ControlQuery<RequestsQuery>,
) -> Result<Json<RequestsResponse>, ApiError> {
    let limit = match query.limit.as_deref() {
        None => DEFAULT_REQUEST_LIMIT,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|limit| (1..=REQUEST_LOG_CAPACITY).contains(limit))
            .ok_or_else(|| {
                ApiError::invalid_argument(
                    "invalid request",
                    vec![violation(
                        "limit",
                        format!("must be an integer from 1 to {REQUEST_LOG_CAPACITY}"),
                    )],
                )
            })?,
    };
    let requests = state.requests.newest(limit);
    Ok(Json(RequestsResponse { requests }))
}

/// `POST /_emulator/faults`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRequest {
    method: Option<String>,
    path: String,
    status: Option<WholeNumber>,
    body: Option<Value>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default = "zero")]
    delay_ms: WholeNumber,
    #[serde(default = "one")]
    times: WholeNumber,
}

fn zero() -> WholeNumber {
    WholeNumber(0)
}

fn one() -> WholeNumber {
    WholeNumber(1)
}

#[derive(Debug, Serialize)]
struct FaultCreated {
    id: String,
}

#[derive(Debug, Serialize)]
struct FaultsResponse {
    faults: Vec<ArmedFault>,
}

async fn arm_fault(
    State(state): State<AppState>,
    Extension(edge): Extension<Arc<EdgeState>>,
    ControlBody(request): ControlBody<FaultRequest>,
) -> Result<(StatusCode, Json<FaultCreated>), ApiError> {
    let mut violations = Vec::new();
    let method = match request.method {
        None => None,
        Some(method) => match Method::from_bytes(method.to_ascii_uppercase().as_bytes()) {
            Ok(method) => Some(method),
            Err(_) => {
                violations.push(violation("method", "must be an HTTP method"));
                None
            }
        },
    };
    if !request.path.starts_with('/') {
        violations.push(violation("path", "must start with /"));
    } else if format!("/{}", request.path.trim_start_matches('/')).starts_with(PREFIX)
        || request.path.trim_start_matches('/') == PREFIX.trim_matches('/')
    {
        violations.push(violation("path", "the control API cannot be faulted"));
    } else if request.path.contains('?') {
        violations.push(violation("path", "must not have a query"));
    }
    let WholeNumber(delay_ms) = request.delay_ms;
    let WholeNumber(times) = request.times;
    let status = match request.status {
        Some(WholeNumber(status)) => match u16::try_from(status).map(StatusCode::from_u16) {
            Ok(Ok(status)) if (200..=599).contains(&status.as_u16()) => Some(status),
            _ => {
                violations.push(violation("status", "must be from 200 to 599"));
                None
            }
        },
        None => {
            if request.body.is_some() {
                violations.push(violation("body", "needs a status"));
            }
            if !request.headers.is_empty() {
                violations.push(violation("headers", "need a status"));
            }
            if delay_ms == 0 {
                violations.push(violation("status", "a fault needs a status or a delay_ms"));
            }
            None
        }
    };
    let mut headers = Vec::new();
    for (armed_name, value) in request.headers {
        match (
            HeaderName::from_bytes(armed_name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            // The message's framing (RFC 9112 §6) is the emulator's: a `Content-Length` that does
            // not match the body made hyper drop the connection without an answer.
            (Ok(name), Ok(_)) if name == CONTENT_LENGTH || name == TRANSFER_ENCODING => violations
                .push(violation(
                    "headers",
                    format!("{armed_name:?} frames the answer: the emulator sets it"),
                )),
            (Ok(name), Ok(value)) => headers.push(FaultHeader {
                armed_name,
                name,
                value,
            }),
            _ => violations.push(violation(
                "headers",
                format!("{armed_name:?} is not a valid header"),
            )),
        }
    }
    if delay_ms > MAX_FAULT_DELAY_MS {
        violations.push(violation(
            "delay_ms",
            format!("must be at most {MAX_FAULT_DELAY_MS}"),
        ));
    }
    let remaining = u32::try_from(times)
        .ok()
        .filter(|times| (1..=MAX_FAULT_TIMES).contains(times));
    let Some(remaining) = remaining else {
        violations.push(violation(
            "times",
            format!("must be from 1 to {MAX_FAULT_TIMES}"),
        ));
        return Err(ApiError::invalid_argument("invalid request", violations));
    };
    if !violations.is_empty() {
        return Err(ApiError::invalid_argument("invalid request", violations));
    }
    let mut faults = edge.control.faults();
    if faults.len() >= MAX_ARMED_FAULTS {
        return Err(ApiError::new(
            GrpcCode::ResourceExhausted,
            format!(
                "at most {MAX_ARMED_FAULTS} faults can be armed; DELETE /_emulator/faults clears them"
            ),
        ));
    }
    let id = state.ids.id("flt_");
    faults.push(ArmedFault {
        id: id.clone(),
        method,
        path: PathPattern::parse(&request.path),
        status,
        body: request.body,
        headers,
        delay_ms,
        remaining,
    });
    Ok((StatusCode::CREATED, Json(FaultCreated { id })))
}

async fn list_faults(Extension(edge): Extension<Arc<EdgeState>>) -> Json<FaultsResponse> {
    let faults = edge.control.faults().clone();
    Json(FaultsResponse { faults })
}

async fn clear_faults(Extension(edge): Extension<Arc<EdgeState>>) -> StatusCode {
    edge.control.faults().clear();
    StatusCode::NO_CONTENT
}

/// A control request's JSON body (its `Content-Type: application/json` was required before
/// routing, see `guard`). One that does not parse is INVALID_ARGUMENT with a violation on the
/// field serde names, else on `body`.
#[derive(Debug)]
pub(super) struct ControlBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ControlBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let body = body_bytes(request, state).await?;
        parse_body(&body).map(ControlBody)
    }
}

/// The same for the routes whose fields are all optional: an empty body reads as `{}`.
#[derive(Debug)]
pub(super) struct OptionalControlBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OptionalControlBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let body = body_bytes(request, state).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return parse_body(b"{}").map(OptionalControlBody);
        }
        parse_body(&body).map(OptionalControlBody)
    }
}

/// The body, or INVALID_ARGUMENT on `body` when it cannot be read (too large, cut off).
async fn body_bytes<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            ApiError::invalid_argument(
                "invalid request",
                vec![violation("body", rejection.body_text())],
            )
        })
}

fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let parsed = serde_json::from_slice::<JsonObject<T>>(body);
    parsed.map(|JsonObject(value)| value).map_err(|error| {
        let message = error.to_string();
        let field = named_field(&message).unwrap_or("body").to_owned();
        ApiError::invalid_argument("invalid request", vec![violation(&field, message)])
    })
}

/// A control request's query; one that does not parse is INVALID_ARGUMENT with a violation on
/// `query`.
#[derive(Debug)]
pub(super) struct ControlQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ControlQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(query) =
            Query::<T>::from_request_parts(parts, state)
                .await
                .map_err(|rejection| {
                    ApiError::invalid_argument(
                        "invalid request",
                        vec![violation("query", rejection.body_text())],
                    )
                })?;
        Ok(ControlQuery(query))
    }
}

/// The field a serde message names (`missing field `x``, `unknown field `x``), if any.
fn named_field(message: &str) -> Option<&str> {
    let rest = message
        .strip_prefix("missing field `")
        .or_else(|| message.strip_prefix("unknown field `"))?;
    rest.split('`').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_path_matches_exactly_with_star_for_one_segment() {
        let fault = ArmedFault {
            id: "flt_1".to_owned(),
            method: Some(Method::POST),
            path: PathPattern::parse("/api/v1/connections/*/auth-requests/*/user"),
            status: Some(StatusCode::SERVICE_UNAVAILABLE),
            body: None,
            headers: Vec::new(),
            delay_ms: 0,
            remaining: 1,
        };
        assert!(fault.matches(
            &Method::POST,
            "/api/v1/connections/conn_1/auth-requests/lri_2/user"
        ));
        assert!(!fault.matches(
            &Method::GET,
            "/api/v1/connections/conn_1/auth-requests/lri_2/user"
        ));
        assert!(!fault.matches(&Method::POST, "/api/v1/connections/conn_1/auth-requests"));
    }

    #[test]
    fn the_listing_echoes_a_fault_as_it_was_armed() {
        let fault = ArmedFault {
            id: "flt_1".to_owned(),
            method: None,
            path: PathPattern::parse("/oauth/*/x"),
            status: Some(StatusCode::TOO_MANY_REQUESTS),
            body: Some(serde_json::json!({"error": "slow_down"})),
            headers: vec![FaultHeader {
                armed_name: "Retry-After".to_owned(),
                name: HeaderName::from_static("retry-after"),
                value: HeaderValue::from_static("5"),
            }],
            delay_ms: 10,
            remaining: 2,
        };
        assert_eq!(
            serde_json::to_value(&fault).ok(),
            Some(serde_json::json!({
                "id": "flt_1",
                "method": null,
                "path": "/oauth/*/x",
                "status": 429,
                "body": {"error": "slow_down"},
                "headers": {"Retry-After": "5"},
                "delay_ms": 10,
                "remaining": 2
            }))
        );
        let response = fault.response().map(|response| {
            (
                response.status(),
                response.headers().get("retry-after").cloned(),
            )
        });
        assert_eq!(
            response,
            Some((
                StatusCode::TOO_MANY_REQUESTS,
                Some(HeaderValue::from_static("5"))
            ))
        );
    }

    #[test]
    fn serde_messages_name_the_field() {
        assert_eq!(
            named_field("missing field `seconds` at line 1 column 2"),
            Some("seconds")
        );
        assert_eq!(named_field("expected value at line 1 column 1"), None);
    }
}
