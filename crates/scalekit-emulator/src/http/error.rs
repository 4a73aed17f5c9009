//! The error types at the HTTP edge: one OAuth error (RFC 6749 §5.2 JSON), Scalekit's gateway
//! error for `/api/v1`, and the hosted error page. Extractor rejections go through these too.

use axum::Json;
use axum::http::header::{CACHE_CONTROL, PRAGMA, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use scalekit_wire::{
    ErrorDetail, FieldViolation, GatewayError, OAuthErrorBody, ValidationErrorInfo,
};

use super::html::{error_page, page};
use crate::flow::{RegisterError, TokenError};

/// What an error answer said, in one shape whatever its wire form (OAuth JSON, gateway JSON, the
/// hosted error page). Every error type here attaches it to its response as an extension, so
/// that the request log can name the error without reading the body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ErrorSummary {
    /// The OAuth error code (`invalid_grant`), the gateway code name (`NOT_FOUND`) or the hosted
    /// page's error (`invalid_state`).
    pub code: String,
    /// The description or message, as sent.
    pub message: String,
    /// The fields a gateway `INVALID_ARGUMENT` names in its violations.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

/// An OAuth error code (RFC 6749 §5.2, RFC 8707 §2, RFC 7591 §3.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthErrorCode {
    /// `invalid_request`.
    InvalidRequest,
    /// `invalid_client` (401).
    InvalidClient,
    /// `invalid_grant`.
    InvalidGrant,
    /// `unauthorized_client`.
    UnauthorizedClient,
    /// `unsupported_grant_type`.
    UnsupportedGrantType,
    /// `invalid_scope`.
    InvalidScope,
    /// `invalid_target` (RFC 8707).
    InvalidTarget,
    /// `access_denied`.
    AccessDenied,
    /// `invalid_redirect_uri` (RFC 7591).
    InvalidRedirectUri,
    /// `invalid_client_metadata` (RFC 7591).
    InvalidClientMetadata,
}

impl OAuthErrorCode {
    /// The wire code.
    pub fn as_str(self) -> &'static str {
        match self {
            OAuthErrorCode::InvalidRequest => "invalid_request",
            OAuthErrorCode::InvalidClient => "invalid_client",
            OAuthErrorCode::InvalidGrant => "invalid_grant",
            OAuthErrorCode::UnauthorizedClient => "unauthorized_client",
            OAuthErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            OAuthErrorCode::InvalidScope => "invalid_scope",
            OAuthErrorCode::InvalidTarget => "invalid_target",
            OAuthErrorCode::AccessDenied => "access_denied",
            OAuthErrorCode::InvalidRedirectUri => "invalid_redirect_uri",
            OAuthErrorCode::InvalidClientMetadata => "invalid_client_metadata",
        }
    }
}

/// An OAuth error response: `{error, error_description}` with `Cache-Control: no-store`. The
/// internal message is logged, never sent.
#[derive(Debug)]
pub struct OAuthError {
    code: OAuthErrorCode,
    description: String,
    internal: Option<String>,
    status: StatusCode,
}

impl OAuthError {
    /// An error with its default status: 401 for `invalid_client`, else 400.
    pub fn new(code: OAuthErrorCode, description: impl Into<String>) -> Self {
        let status = match code {
            OAuthErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_REQUEST,
        };
        Self {
            code,
            description: description.into(),
            internal: None,
            status,
        }
    }

    /// Adds a message for the log only.
    pub fn internal(mut self, message: impl Into<String>) -> Self {
        self.internal = Some(message.into());
        self
    }

    /// Overrides the status (DCR: 403, 404).
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        tracing::info!(
            error = self.code.as_str(),
            description = %self.description,
            internal = self.internal.as_deref().unwrap_or(""),
            "oauth error"
        );
        let summary = ErrorSummary {
            code: self.code.as_str().to_owned(),
            message: self.description.clone(),
            fields: Vec::new(),
        };
        let body = OAuthErrorBody {
            error: self.code.as_str().to_owned(),
            error_description: Some(self.description),
        };
        let mut response = (self.status, Json(body)).into_response();
        response.extensions_mut().insert(summary);
        let headers = response.headers_mut();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
        if self.code == OAuthErrorCode::InvalidClient {
            headers.insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"oauth\""),
            );
        }
        response
    }
}

impl From<TokenError> for OAuthError {
    fn from(error: TokenError) -> Self {
        match error {
            TokenError::InvalidRequest(why) => OAuthError::new(OAuthErrorCode::InvalidRequest, why),
            TokenError::InvalidClient(why) => OAuthError::new(OAuthErrorCode::InvalidClient, why),
            TokenError::InvalidGrant(why) => OAuthError::new(OAuthErrorCode::InvalidGrant, why),
            TokenError::InvalidTarget(why) => OAuthError::new(OAuthErrorCode::InvalidTarget, why),
            TokenError::InvalidScope(why) => OAuthError::new(OAuthErrorCode::InvalidScope, why),
        }
    }
}

impl From<RegisterError> for OAuthError {
    fn from(error: RegisterError) -> Self {
        let description = error.to_string();
        match error {
            RegisterError::UnknownResource(_) => {
                OAuthError::new(OAuthErrorCode::InvalidRequest, description)
                    .with_status(StatusCode::NOT_FOUND)
            }
            RegisterError::Disabled(_) => {
                OAuthError::new(OAuthErrorCode::AccessDenied, description)
                    .with_status(StatusCode::FORBIDDEN)
            }
            RegisterError::InvalidRedirectUri(_) => {
                OAuthError::new(OAuthErrorCode::InvalidRedirectUri, description)
            }
            RegisterError::InvalidClientMetadata(_) => {
                OAuthError::new(OAuthErrorCode::InvalidClientMetadata, description)
            }
        }
    }
}

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
    fn number(self) -> i32 {
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

    fn name(self) -> &'static str {
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
    fn http_status(self) -> StatusCode {
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

/// A management-API error in Scalekit's gateway shape `{code, message, details: [ErrorInfo]}`.
#[derive(Debug)]
pub struct ApiError {
    code: GrpcCode,
    message: String,
    violations: Vec<FieldViolation>,
    /// Replaces the code's usual HTTP status (e.g. 405 for a method a route does not serve).
    status: Option<StatusCode>,
}

impl ApiError {
    /// An error without field violations.
    pub fn new(code: GrpcCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            violations: Vec::new(),
            status: None,
        }
    }

    /// INVALID_ARGUMENT with `validation_error_info.field_violations`.
    pub fn invalid_argument(message: impl Into<String>, violations: Vec<FieldViolation>) -> Self {
        Self {
            code: GrpcCode::InvalidArgument,
            message: message.into(),
            violations,
            status: None,
        }
    }

    /// The same body with another HTTP status.
    pub fn with_status(self, status: StatusCode) -> Self {
        Self {
            status: Some(status),
            ..self
        }
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        tracing::info!(code = self.code.name(), message = %self.message, "management api error");
        let summary = self.summary();
        let mut detail = ErrorDetail::new(self.code.name());
        if !self.violations.is_empty() {
            detail.validation_error_info = Some(ValidationErrorInfo {
                field_violations: self.violations,
            });
        }
        let body = GatewayError {
            code: self.code.number(),
            message: self.message,
            details: vec![detail],
        };
        let status = self.status.unwrap_or(self.code.http_status());
        let mut response = (status, Json(body)).into_response();
        response.extensions_mut().insert(summary);
        response
    }
}

impl ApiError {
    /// The same error as a gRPC status: the same code and message, and the same `ErrorInfo` in
    /// `grpc-status-details-bin` (a `google.rpc.Status` whose `details` hold it as an `Any`), the
    /// way Scalekit's SDKs read it with `findDetails(ErrorInfo)`.
    pub fn into_status(self) -> tonic::Status {
        use prost::Message as _;

        use crate::grpc::proto::google::rpc;
        use crate::grpc::proto::scalekit::v1::errdetails;

        tracing::info!(code = self.code.name(), message = %self.message, "grpc error");
        let validation_error_info =
            (!self.violations.is_empty()).then(|| errdetails::ValidationErrorInfo {
                field_violations: self
                    .violations
                    .iter()
                    .map(
                        |violation| errdetails::validation_error_info::FieldViolation {
                            field: violation.field.clone(),
                            description: violation.description.clone(),
                            constraint: String::new(),
                        },
                    )
                    .collect(),
            });
        let info = errdetails::ErrorInfo {
            error_code: self.code.name().to_owned(),
            validation_error_info,
            ..errdetails::ErrorInfo::default()
        };
        let status = rpc::Status {
            code: self.code.number(),
            message: self.message.clone(),
            details: vec![prost_types::Any {
                type_url: scalekit_wire::ERROR_INFO_TYPE.to_owned(),
                value: info.encode_to_vec(),
            }],
        };
        tonic::Status::with_details(
            tonic::Code::from_i32(self.code.number()),
            self.message,
            status.encode_to_vec().into(),
        )
    }
}

/// The hosted error page (HTML, 400): never a redirect, the user restarts from the MCP client.
#[derive(Debug)]
pub struct HostedErrorPage {
    error: &'static str,
    description: String,
}

impl HostedErrorPage {
    /// A page showing `error` and `description`.
    pub fn new(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            error,
            description: description.into(),
        }
    }
}

impl IntoResponse for HostedErrorPage {
    fn into_response(self) -> Response {
        tracing::info!(error = self.error, description = %self.description, "hosted error page");
        let mut response = page(
            StatusCode::BAD_REQUEST,
            error_page(self.error, &self.description),
        );
        response.extensions_mut().insert(ErrorSummary {
            code: self.error.to_owned(),
            message: self.description,
            fields: Vec::new(),
        });
        response
    }
}
