//! The management API whatever its transport: Scalekit's gateway error ([`ApiError`], a gRPC
//! code with a message and field violations), the management-token check and the user-details
//! transition. The REST form (`http::api`) and the gRPC form (`grpc`) both call these and differ
//! only in how they encode the answer (ARCHITECTURE: one token check, one flow transition).

use ::http::header::AUTHORIZATION;
use ::http::{HeaderMap, StatusCode};
use scalekit_wire::{Check, ErrorSummary, FieldViolation, UserClaims};

use crate::flow::SubmitUserError;
use crate::state::AppState;
use crate::types::AuthRequestId;

/// gRPC status codes used by the management API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcCode {
    /// 3.
    InvalidArgument,
    /// 5.
    NotFound,
    /// 6.
    AlreadyExists,
    /// 7.
    PermissionDenied,
    /// 8.
    ResourceExhausted,
    /// 9.
    FailedPrecondition,
    /// 12.
    Unimplemented,
    /// 13.
    Internal,
    /// 16.
    Unauthenticated,
}

impl GrpcCode {
    /// The code's number, as gRPC and the gateway body's `code` carry it.
    pub fn number(self) -> i32 {
        match self {
            GrpcCode::InvalidArgument => 3,
            GrpcCode::NotFound => 5,
            GrpcCode::AlreadyExists => 6,
            GrpcCode::PermissionDenied => 7,
            GrpcCode::ResourceExhausted => 8,
            GrpcCode::FailedPrecondition => 9,
            GrpcCode::Unimplemented => 12,
            GrpcCode::Internal => 13,
            GrpcCode::Unauthenticated => 16,
        }
    }

    /// The code's name, as `ErrorInfo.error_code` carries it.
    pub fn name(self) -> &'static str {
        match self {
            GrpcCode::InvalidArgument => "INVALID_ARGUMENT",
            GrpcCode::NotFound => "NOT_FOUND",
            GrpcCode::AlreadyExists => "ALREADY_EXISTS",
            GrpcCode::PermissionDenied => "PERMISSION_DENIED",
            GrpcCode::ResourceExhausted => "RESOURCE_EXHAUSTED",
            GrpcCode::FailedPrecondition => "FAILED_PRECONDITION",
            GrpcCode::Unimplemented => "UNIMPLEMENTED",
            GrpcCode::Internal => "INTERNAL",
            GrpcCode::Unauthenticated => "UNAUTHENTICATED",
        }
    }

    /// The HTTP status the gateway maps this code to (NODE `base-exception.js`).
    pub fn http_status(self) -> StatusCode {
        match self {
            GrpcCode::InvalidArgument => StatusCode::BAD_REQUEST,
            GrpcCode::NotFound => StatusCode::NOT_FOUND,
            GrpcCode::AlreadyExists => StatusCode::CONFLICT,
            GrpcCode::PermissionDenied => StatusCode::FORBIDDEN,
            GrpcCode::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            GrpcCode::FailedPrecondition => StatusCode::BAD_REQUEST,
            GrpcCode::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            GrpcCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            GrpcCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        }
    }
}

/// A management-API error: Scalekit's gateway body `{code, message, details: [ErrorInfo]}` over
/// HTTP, the same code, message and `ErrorInfo` in a gRPC status.
#[derive(Debug)]
pub struct ApiError {
    pub(crate) code: GrpcCode,
    pub(crate) message: String,
    pub(crate) violations: Vec<FieldViolation>,
    /// The check that failed, for the flow inspector (HTTP only: a gRPC call is not a hop).
    pub(crate) failed: Option<Check>,
}

impl ApiError {
    /// An error without field violations.
    pub fn new(code: GrpcCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            violations: Vec::new(),
            failed: None,
        }
    }

    /// INVALID_ARGUMENT with `validation_error_info.field_violations`.
    pub fn invalid_argument(message: impl Into<String>, violations: Vec<FieldViolation>) -> Self {
        Self {
            code: GrpcCode::InvalidArgument,
            message: message.into(),
            violations,
            failed: None,
        }
    }

    /// Names the check that failed, when it is not the endpoint's general one.
    pub fn failed(mut self, check: Check) -> Self {
        self.failed = Some(check);
        self
    }

    /// The code name, message and violated fields, for the request log.
    pub fn summary(&self) -> ErrorSummary {
        ErrorSummary {
            code: self.code.name().to_owned(),
            message: self.message.clone(),
            fields: self
                .violations
                .iter()
                .map(|violation| violation.field.clone())
                .collect(),
        }
    }
}

/// One field violation of an INVALID_ARGUMENT of the control API, which is the emulator's own
/// and names no `constraint`; Scalekit's rules use [`FieldViolation::new`] with theirs.
pub fn violation(field: &str, description: impl Into<String>) -> FieldViolation {
    FieldViolation {
        field: field.to_owned(),
        description: description.into(),
        constraint: None,
    }
}

/// The management-token check every `/api/v1` call and every gRPC method shares: a missing
/// token is "Token empty", anything that is not a live management token of this environment's
/// API client is "invalid token" (both UNAUTHENTICATED, which makes the SDKs fetch a token).
pub fn authenticate_management(state: &AppState, token: Option<&str>) -> Result<(), ApiError> {
    let token = token.ok_or_else(|| {
        ApiError::new(GrpcCode::Unauthenticated, "Token empty").failed(Check::ManagementTokenValid)
    })?;
    state
        .minter
        .verify_management(
            &state.keys,
            token,
            &state.config.api_client.client_id,
            state.clock.now(),
        )
        .map(|_| ())
        .ok_or_else(|| {
            ApiError::new(GrpcCode::Unauthenticated, "invalid token")
                .failed(Check::ManagementTokenValid)
        })
}

/// The bearer token of an `Authorization` header (HTTP headers or gRPC metadata), or `None`
/// when the header is missing or empty.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .unwrap_or(value)
        .trim();
    (!token.is_empty() && token != "Bearer").then_some(token)
}

/// The user-details transition (REST and gRPC): records the user for a pending login request.
pub fn submit_user_details(
    state: &AppState,
    connection: &str,
    login_request: &str,
    claims: UserClaims,
) -> Result<AuthRequestId, ApiError> {
    let now = state.clock.now();
    let result =
        state
            .flows()
            .submit_user(connection, login_request, claims, now, state.ids.as_ref());
    result.map_err(|error| {
        let failed = error.failed_check();
        let api_error = match error {
            SubmitUserError::NotFound(reason) => {
                ApiError::new(GrpcCode::NotFound, reason.to_string())
            }
            SubmitUserError::InvalidArgument {
                message,
                violations,
            } => ApiError::invalid_argument(message, violations),
            already @ SubmitUserError::AlreadyExists(_) => {
                ApiError::new(GrpcCode::AlreadyExists, already.to_string())
            }
        };
        api_error.failed(failed)
    })
}
