//! The control API under `/_emulator/` (off with `control = false` or `--no-control`): move the
//! clock, reset the state, read the pending login requests and the last requests served, arm
//! one-shot faults, rotate and retire the signing keys ([`keys`]) and mint access tokens with or
//! without a deliberate defect ([`tokens`]). It is described by the OpenAPI document at
//! `/_emulator/openapi.json`.
//!
//! The request log and the fault injection are one middleware around the whole router (see
//! `layer`); `/_emulator/*` itself is neither logged nor faultable. gRPC calls, which bypass the
//! router, are logged by the gRPC service. An error answer's code, message and violated fields
//! come from the [`ErrorSummary`] every error type attaches to its response, so the log never
//! reads a body. Nothing here prints a credential: query parameters that carry one are cut to a
//! short prefix and `…`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use scalekit_wire::FieldViolation;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use super::AppState;
use super::error::{ApiError, ErrorSummary, GrpcCode};
use crate::clock::ClockError;
use crate::flow::Flows;
use flow_inspector::redact::redact_query;

pub mod keys;
pub mod tokens;

/// The path prefix of every control route.
pub const PREFIX: &str = "/_emulator/";

/// How many requests the log keeps (the oldest go first).
pub const REQUEST_LOG_CAPACITY: usize = 1000;

/// `GET /_emulator/requests` without `limit`.
const DEFAULT_REQUEST_LIMIT: usize = 50;

/// How many faults may be armed at once.
pub const MAX_ARMED_FAULTS: usize = 100;

/// The longest delay a fault may add.
const MAX_FAULT_DELAY_MS: u64 = 60_000;

/// The most requests one fault may answer.
const MAX_FAULT_TIMES: u32 = 1000;

/// Paths and queries longer than this are cut in the log, so that it stays bounded.
const MAX_LOGGED_CHARS: usize = 2048;

/// The state the control API keeps besides the emulator's own: the request log and the armed
/// faults.
#[derive(Debug, Default)]
pub struct ControlState {
    requests: Mutex<VecDeque<RequestRecord>>,
    faults: Mutex<Vec<ArmedFault>>,
}

impl ControlState {
    fn requests(&self) -> MutexGuard<'_, VecDeque<RequestRecord>> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn faults(&self) -> MutexGuard<'_, Vec<ArmedFault>> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, record: RequestRecord) {
        let mut requests = self.requests();
        if requests.len() == REQUEST_LOG_CAPACITY {
            requests.pop_front();
        }
        requests.push_back(record);
    }

    /// Logs a gRPC call (they bypass the HTTP middleware): HTTP status 200 as on the wire, the
    /// gRPC error, if any, in `error`, and the ids from the message as the query.
    pub(crate) fn record_grpc(
        &self,
        path: &str,
        ids: &str,
        error: Option<ErrorSummary>,
        started: Instant,
    ) {
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.record(RequestRecord {
            method: Method::POST.to_string(),
            path: path.to_owned(),
            query: Some(truncate(ids)),
            status: StatusCode::OK.as_u16(),
            error,
            duration_ms,
            at: wall_clock_millis().saturating_sub(duration_ms),
        });
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

/// One request the emulator served.
#[derive(Debug, Clone, Serialize)]
struct RequestRecord {
    method: String,
    path: String,
    /// The query with credential values cut to a prefix and `…`.
    query: Option<String>,
    status: u16,
    /// What an error answer said (OAuth, gateway or hosted-page error); absent on success.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorSummary>,
    duration_ms: u64,
    /// Wall-clock unix milliseconds (the emulator's clock may have been advanced; this is not).
    at: u64,
}

/// A fault waiting for matching requests (listed as is by `GET /_emulator/faults`).
#[derive(Debug, Clone, Serialize)]
struct ArmedFault {
    id: String,
    /// `None`: any method.
    method: Option<String>,
    /// Exact, with `*` matching any one segment.
    path: String,
    /// `None`: only the delay, then the real handler answers.
    status: Option<u16>,
    body: Option<Value>,
    headers: BTreeMap<String, String>,
    delay_ms: u64,
    remaining: u32,
}

impl ArmedFault {
    fn matches(&self, method: &Method, path: &str) -> bool {
        if self
            .method
            .as_deref()
            .is_some_and(|expected| expected != method.as_str())
        {
            return false;
        }
        let pattern: Vec<&str> = self.path.split('/').collect();
        let actual: Vec<&str> = path.split('/').collect();
        pattern.len() == actual.len()
            && pattern
                .iter()
                .zip(&actual)
                .all(|(expected, segment)| *expected == "*" || expected == segment)
    }

    /// The injected answer, or `None` when the fault is only a delay.
    fn response(&self) -> Option<Response> {
        let status = StatusCode::from_u16(self.status?).ok()?;
        let mut response = match &self.body {
            Some(body) => (status, Json(body.clone())).into_response(),
            None => (status, Body::empty()).into_response(),
        };
        for (name, value) in &self.headers {
            // Both were checked when the fault was armed.
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
        Some(response)
    }
}

/// The control routes, or none when the control API is off.
pub(super) fn routes(state: &AppState) -> Router<AppState> {
    if !state.config.control {
        return Router::new();
    }
    Router::new()
        .route("/_emulator/openapi.json", control(get(openapi)))
        .route("/_emulator/clock", control(get(clock)))
        .route("/_emulator/clock/advance", control(post(advance_clock)))
        .route("/_emulator/clock/rewind", control(post(rewind_clock)))
        .route("/_emulator/keys", control(get(keys::list)))
        .route("/_emulator/keys/rotate", control(post(keys::rotate)))
        .route("/_emulator/keys/retire", control(post(keys::retire)))
        .route("/_emulator/tokens", control(post(tokens::mint)))
        .route("/_emulator/reset", control(post(reset)))
        .route("/_emulator/login-requests", control(get(login_requests)))
        .route("/_emulator/requests", control(get(requests)))
        .route(
            "/_emulator/faults",
            control(get(list_faults).post(arm_fault).delete(clear_faults)),
        )
}

/// A control route that answers other methods in the gateway shape.
fn control(route: MethodRouter<AppState>) -> MethodRouter<AppState> {
    route.fallback(method_not_allowed)
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(GrpcCode::Unimplemented, "Method Not Allowed")
        .with_status(StatusCode::METHOD_NOT_ALLOWED)
}

/// Wraps the whole router in the request log and the fault injection, when the control API is
/// on. Outermost, so that a fault answers before routing and the log sees injected answers too.
pub(super) fn layer(router: Router, state: &AppState) -> Router {
    if !state.config.control {
        return router;
    }
    router.layer(middleware::from_fn_with_state(state.clone(), observe))
}

async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let raw_path = request.uri().path().to_owned();
    // Routing collapses a leading `//`; faults match what routing sees.
    let path = format!("/{}", raw_path.trim_start_matches('/'));
    if path.starts_with(PREFIX) {
        return next.run(request).await;
    }
    let started = Instant::now();
    let at = wall_clock_millis();
    let method = request.method().clone();
    let query = request.uri().query().map(redact_query);
    let fault = state.control.take_fault(&method, &path);
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
    state.control.record(RequestRecord {
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

/// Wall-clock unix milliseconds (not the emulator's clock, which the control API may move).
pub(super) fn wall_clock_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_LOGGED_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

async fn openapi() -> Response {
    (
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        include_str!("openapi.json"),
    )
        .into_response()
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
    seconds: u64,
}

async fn advance_clock(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<ClockResponse>, ApiError> {
    let ClockStep { seconds } = parse_body(&body)?;
    state.clock.advance(seconds).map_err(clock_error)?;
    Ok(Json(ClockResponse {
        now: state.clock.now(),
    }))
}

/// Moves the clock back: a token a real flow just issued then looks as old by the wall clock as
/// the emulator's clock was moved, e.g. past its lifetime.
async fn rewind_clock(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<ClockResponse>, ApiError> {
    let ClockStep { seconds } = parse_body(&body)?;
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

/// Drops every sign-in in progress, code, grant, refresh token, consent, DCR client, user and
/// organization by swapping in the state machine the configuration makes; the configured clients,
/// the signing keys (rotated ones too), the clock and the configuration stay, and a state
/// directory is emptied of the same. The request log and the armed faults are cleared too.
/// Management tokens are self-contained JWTs and stay valid until they expire or their key is
/// retired.
async fn reset(State(state): State<AppState>) -> Result<StatusCode, ApiError> {
    let environment_url = Url::parse(state.environment_url()).map_err(|error| {
        ApiError::new(
            GrpcCode::Internal,
            format!("the environment URL does not parse: {error}"),
        )
    })?;
    let fresh = Flows::new(&state.config, &environment_url);
    // With a store, the guard writes the recorded reset when it is released.
    state.flows().reset_to(fresh);
    state.control.requests().clear();
    state.control.faults().clear();
    state.metadata_documents.clear();
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
    query: Result<Query<LoginRequestsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<LoginRequestsResponse>, ApiError> {
    let Query(query) = query.map_err(|rejection| {
        ApiError::invalid_argument(
            "invalid request",
            vec![violation("query", rejection.body_text())],
        )
    })?;
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
    query: Result<Query<RequestsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<RequestsResponse>, ApiError> {
    let Query(query) = query.map_err(|rejection| {
        ApiError::invalid_argument(
            "invalid request",
            vec![violation("query", rejection.body_text())],
        )
    })?;
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
    let requests = state
        .control
        .requests()
        .iter()
        .rev()
        .take(limit)
        .cloned()
        .collect();
    Ok(Json(RequestsResponse { requests }))
}

/// `POST /_emulator/faults`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRequest {
    method: Option<String>,
    path: String,
    status: Option<u16>,
    body: Option<Value>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    delay_ms: u64,
    #[serde(default = "one")]
    times: u32,
}

fn one() -> u32 {
    1
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
    body: Bytes,
) -> Result<(StatusCode, Json<FaultCreated>), ApiError> {
    let request: FaultRequest = parse_body(&body)?;
    let mut violations = Vec::new();
    let method = match request.method {
        None => None,
        Some(method) => {
            let method = method.to_ascii_uppercase();
            if Method::from_bytes(method.as_bytes()).is_err() {
                violations.push(violation("method", "must be an HTTP method"));
            }
            Some(method)
        }
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
    if let Some(status) = request.status {
        if !(200..=599).contains(&status) {
            violations.push(violation("status", "must be from 200 to 599"));
        }
    } else {
        if request.body.is_some() {
            violations.push(violation("body", "needs a status"));
        }
        if !request.headers.is_empty() {
            violations.push(violation("headers", "need a status"));
        }
        if request.delay_ms == 0 {
            violations.push(violation("status", "a fault needs a status or a delay_ms"));
        }
    }
    for (name, value) in &request.headers {
        if HeaderName::from_bytes(name.as_bytes()).is_err() || HeaderValue::from_str(value).is_err()
        {
            violations.push(violation(
                "headers",
                format!("{name:?} is not a valid header"),
            ));
        }
    }
    if request.delay_ms > MAX_FAULT_DELAY_MS {
        violations.push(violation(
            "delay_ms",
            format!("must be at most {MAX_FAULT_DELAY_MS}"),
        ));
    }
    if !(1..=MAX_FAULT_TIMES).contains(&request.times) {
        violations.push(violation(
            "times",
            format!("must be from 1 to {MAX_FAULT_TIMES}"),
        ));
    }
    if !violations.is_empty() {
        return Err(ApiError::invalid_argument("invalid request", violations));
    }
    let mut faults = state.control.faults();
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
        path: request.path,
        status: request.status,
        body: request.body,
        headers: request.headers,
        delay_ms: request.delay_ms,
        remaining: request.times,
    });
    Ok((StatusCode::CREATED, Json(FaultCreated { id })))
}

async fn list_faults(State(state): State<AppState>) -> Json<FaultsResponse> {
    let faults = state.control.faults().clone();
    Json(FaultsResponse { faults })
}

async fn clear_faults(State(state): State<AppState>) -> StatusCode {
    state.control.faults().clear();
    StatusCode::NO_CONTENT
}

/// Parses a JSON body whatever its content type (`curl -d` sends a form type).
fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|error| {
        let message = error.to_string();
        let field = named_field(&message).unwrap_or("body").to_owned();
        ApiError::invalid_argument("invalid request", vec![violation(&field, message)])
    })
}

/// Parses a JSON body that may also be empty (then `{}`).
fn parse_optional_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return parse_body(b"{}");
    }
    parse_body(body)
}

/// The field a serde message names (`missing field `x``, `unknown field `x``), if any.
fn named_field(message: &str) -> Option<&str> {
    let rest = message
        .strip_prefix("missing field `")
        .or_else(|| message.strip_prefix("unknown field `"))?;
    rest.split('`').next()
}

fn violation(field: &str, description: impl Into<String>) -> FieldViolation {
    FieldViolation {
        field: field.to_owned(),
        description: description.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_path_matches_exactly_with_star_for_one_segment() {
        let fault = ArmedFault {
            id: "flt_1".to_owned(),
            method: Some("POST".to_owned()),
            path: "/api/v1/connections/*/auth-requests/*/user".to_owned(),
            status: Some(503),
            body: None,
            headers: BTreeMap::new(),
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
    fn serde_messages_name_the_field() {
        assert_eq!(
            named_field("missing field `seconds` at line 1 column 2"),
            Some("seconds")
        );
        assert_eq!(named_field("expected value at line 1 column 1"), None);
    }

    #[test]
    fn the_request_log_keeps_the_newest_thousand() {
        let control = ControlState::default();
        for index in 0..(REQUEST_LOG_CAPACITY + 5) {
            control.record(RequestRecord {
                method: "GET".to_owned(),
                path: format!("/{index}"),
                query: None,
                status: 200,
                error: None,
                duration_ms: 0,
                at: 0,
            });
        }
        let requests = control.requests();
        assert_eq!(requests.len(), REQUEST_LOG_CAPACITY);
        assert_eq!(
            requests.front().map(|record| record.path.as_str()),
            Some("/5")
        );
    }
}
