//! The error types at the HTTP edge: one OAuth error (RFC 6749 §5.2 JSON), Scalekit's gateway
//! error for `/api/v1` (the [`ApiError`] of [`crate::management`], rendered here), and the
//! hosted error page, rendered where it happened or reached by a redirect to `{env}/error`.
//! Extractor rejections go through these too.

use axum::Json;
use axum::http::header::{CACHE_CONTROL, LOCATION, PRAGMA, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use scalekit_wire::{
    Check, ErrorDetail, ErrorSummary, GatewayError, OAuthErrorBody, OAuthErrorCode,
    ValidationErrorInfo,
};
use url::Url;

use super::facts::FailedCheck;
use super::html::{error_page, page};
use crate::flow::{AgentTokenError, JwtBearerError, RegisterError, TokenError};
use crate::idp::TokenExchangeError;
use crate::management::ApiError;

/// An OAuth error response: `{error, error_description}` with `Cache-Control: no-store`. The
/// internal message is logged, never sent.
#[derive(Debug)]
pub struct OAuthError {
    code: OAuthErrorCode,
    description: String,
    internal: Option<String>,
    status: StatusCode,
    failed: Option<Check>,
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
            failed: None,
        }
    }

    /// Names the check that failed, when it is not the endpoint's general one.
    pub fn failed(mut self, check: Check) -> Self {
        self.failed = Some(check);
        self
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
        if let Some(check) = self.failed {
            response.extensions_mut().insert(FailedCheck(check));
        }
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
        let code = match error {
            TokenError::InvalidRequest(_) => OAuthErrorCode::InvalidRequest,
            TokenError::InvalidClient(_) => OAuthErrorCode::InvalidClient,
            TokenError::InvalidGrant(_) => OAuthErrorCode::InvalidGrant,
            TokenError::InvalidTarget(_) => OAuthErrorCode::InvalidTarget,
            TokenError::InvalidScope(_) => OAuthErrorCode::InvalidScope,
        };
        OAuthError::new(code, error.to_string()).failed(error.failed_check())
    }
}

impl From<AgentTokenError> for OAuthError {
    fn from(error: AgentTokenError) -> Self {
        let code = match error {
            AgentTokenError::InvalidClient(_) => OAuthErrorCode::InvalidClient,
            AgentTokenError::InvalidTarget { .. } => OAuthErrorCode::InvalidTarget,
            AgentTokenError::InvalidScope { .. } => OAuthErrorCode::InvalidScope,
        };
        OAuthError::new(code, error.to_string()).failed(error.failed_check())
    }
}

impl From<JwtBearerError> for OAuthError {
    fn from(error: JwtBearerError) -> Self {
        let code = match error {
            JwtBearerError::InvalidClient(_) => OAuthErrorCode::InvalidClient,
            JwtBearerError::InvalidGrant(_) => OAuthErrorCode::InvalidGrant,
            JwtBearerError::InvalidTarget(_) => OAuthErrorCode::InvalidTarget,
            JwtBearerError::UnauthorizedClient(_) => OAuthErrorCode::UnauthorizedClient,
            JwtBearerError::InvalidScope(_) => OAuthErrorCode::InvalidScope,
            JwtBearerError::TemporarilyUnavailable => {
                return OAuthError::new(OAuthErrorCode::TemporarilyUnavailable, error.to_string())
                    .with_status(StatusCode::SERVICE_UNAVAILABLE)
                    .failed(error.failed_check());
            }
        };
        OAuthError::new(code, error.to_string()).failed(error.failed_check())
    }
}

impl From<TokenExchangeError> for OAuthError {
    fn from(error: TokenExchangeError) -> Self {
        let code = match error {
            TokenExchangeError::GrantTypeMissing | TokenExchangeError::InvalidRequest(_) => {
                OAuthErrorCode::InvalidRequest
            }
            TokenExchangeError::UnsupportedGrantType(_) => OAuthErrorCode::UnsupportedGrantType,
            TokenExchangeError::InvalidClient => OAuthErrorCode::InvalidClient,
            TokenExchangeError::InvalidGrant(_) => OAuthErrorCode::InvalidGrant,
            TokenExchangeError::UnknownAudience(_)
            | TokenExchangeError::ResourceNotOfAudience { .. } => OAuthErrorCode::InvalidTarget,
        };
        OAuthError::new(code, error.to_string()).failed(error.failed_check())
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        tracing::info!(code = self.code.name(), message = %self.message, "management api error");
        let summary = self.summary();
        let failed = self.failed;
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
        let mut response = (self.code.http_status(), Json(body)).into_response();
        response.extensions_mut().insert(summary);
        if let Some(check) = failed {
            response.extensions_mut().insert(FailedCheck(check));
        }
        response
    }
}

/// The path of the hosted error page that [`ErrorPageRedirect`] sends the browser to. Scalekit's
/// own page's path is unknown (its docs give only `error=invalid_state` in its URL): this one is
/// the emulator's decision.
pub const ERROR_PAGE_PATH: &str = "/error";

/// The hosted error page (HTML, 400): never a redirect to the client, the user restarts from the
/// MCP client. Rendered where the error happened, or, through [`HostedErrorPage::redirect_from`],
/// at `{env}/error` after a redirect.
#[derive(Debug)]
pub struct HostedErrorPage {
    error: OAuthErrorCode,
    description: String,
    failed: Option<Check>,
}

impl HostedErrorPage {
    /// A page showing `error` and `description`.
    pub fn new(error: OAuthErrorCode, description: impl Into<String>) -> Self {
        Self {
            error,
            description: description.into(),
            failed: None,
        }
    }

    /// Names the check that failed, when it is not the endpoint's general one.
    pub fn failed(mut self, check: Check) -> Self {
        self.failed = Some(check);
        self
    }

    /// The same page, shown after a redirect to `{environment_url}/error`.
    pub fn redirect_from(self, environment_url: &str) -> ErrorPageRedirect {
        ErrorPageRedirect {
            page: self,
            environment_url: environment_url.to_owned(),
        }
    }

    /// The facts of the page's answer, whichever way it is shown.
    fn attach_facts(self, response: &mut Response) {
        response.extensions_mut().insert(ErrorSummary {
            code: self.error.as_str().to_owned(),
            message: self.description,
            fields: Vec::new(),
        });
        if let Some(check) = self.failed {
            response.extensions_mut().insert(FailedCheck(check));
        }
    }
}

impl IntoResponse for HostedErrorPage {
    fn into_response(self) -> Response {
        let error = self.error.as_str();
        tracing::info!(error, description = %self.description, "hosted error page");
        let mut response = page(
            StatusCode::BAD_REQUEST,
            error_page(error, &self.description),
        );
        self.attach_facts(&mut response);
        response
    }
}

/// The hosted error page reached by a redirect, as Scalekit shows its `invalid_state` page "after
/// the callback" with `error=invalid_state` in the page's URL: a 302 to
/// `{env}/error?error=…&error_description=…` (never to the client, whose redirect URI is not
/// trusted), `Cache-Control: no-store`. The answer carries the facts the page would have
/// carried ([`ErrorSummary`], the failed check), so the request log and the flow inspector know
/// what went wrong from the redirect itself; the page at `/error` only shows it.
#[derive(Debug)]
pub struct ErrorPageRedirect {
    page: HostedErrorPage,
    environment_url: String,
}

impl ErrorPageRedirect {
    /// `{env}/error?error=…&error_description=…`, or `None` if the environment URL is no base.
    fn location(&self) -> Option<Url> {
        let base = self.environment_url.trim_end_matches('/');
        let mut location = Url::parse(&format!("{base}{ERROR_PAGE_PATH}")).ok()?;
        location
            .query_pairs_mut()
            .append_pair("error", self.page.error.as_str())
            .append_pair("error_description", &self.page.description);
        Some(location)
    }
}

impl IntoResponse for ErrorPageRedirect {
    fn into_response(self) -> Response {
        let Some(location) = self
            .location()
            .and_then(|location| HeaderValue::from_str(location.as_str()).ok())
        else {
            return HostedErrorPage::new(
                OAuthErrorCode::ServerError,
                "cannot build the redirect to the error page",
            )
            .into_response();
        };
        tracing::info!(
            error = self.page.error.as_str(),
            description = %self.page.description,
            "redirect to the hosted error page"
        );
        let mut response = (
            StatusCode::FOUND,
            [
                (LOCATION, location),
                (CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
        )
            .into_response();
        self.page.attach_facts(&mut response);
        response
    }
}
