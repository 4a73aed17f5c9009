//! The HTTP edge: the protected-resource metadata document (RFC 9728) and the middleware that
//! authenticates every request to `/mcp` (RFC 6750 §3, MCP authorization §"Error handling").

use std::collections::HashMap;
use std::sync::Mutex;

use axum::Json;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::{AUTHORIZATION, CACHE_CONTROL, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use scalekit_wire::OAuthErrorBody;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::AuthError;

/// The protected-resource metadata document (RFC 9728 §2), as Scalekit's dashboard prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtectedResourceMetadata {
    /// The Server URL, exactly as registered with Scalekit.
    pub resource: String,
    /// `["{env}/resources/{res}"]`.
    pub authorization_servers: Vec<String>,
    /// Always `["header"]`: tokens are never read from the query or the body.
    pub bearer_methods_supported: Vec<String>,
    /// The resource's scopes, without `offline_access`.
    pub scopes_supported: Vec<String>,
    /// A human-readable name.
    pub resource_name: String,
    /// A page about the server, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_documentation: Option<String>,
}

/// `GET /.well-known/oauth-protected-resource[/mcp]`.
pub async fn protected_resource_metadata(State(state): State<AppState>) -> Response {
    (
        [(
            CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=60"),
        )],
        Json(state.metadata().clone()),
    )
        .into_response()
}

/// Authenticates a request to `/mcp`. On success the validated [`crate::Claims`] are put into
/// the request extensions, where the MCP tools read them.
pub async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(token) = bearer_token(request.headers()) else {
        return state.challenge(Challenge::NoToken);
    };
    let now = (state.clock())();
    let claims = match state.authenticator().authenticate(token, now).await {
        Ok(claims) => claims,
        Err(AuthError::Token(error)) => {
            tracing::info!(%error, "refused a token");
            return state.challenge(Challenge::InvalidToken {
                description: error.to_string(),
            });
        }
        Err(error @ AuthError::KeysUnavailable(_)) => {
            let cause = std::error::Error::source(&error).map(ToString::to_string);
            tracing::warn!(%error, ?cause, "cannot check a token");
            let body = OAuthErrorBody {
                error: "temporarily_unavailable".to_owned(),
                error_description: Some(error.to_string()),
            };
            return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
        }
    };
    let missing = claims.missing_scopes(state.required_scopes());
    if !missing.is_empty() {
        tracing::info!(subject = ?claims.subject, ?missing, "refused a token without the required scopes");
        return state.challenge(Challenge::InsufficientScope);
    }

    // A session is bound to the user who opened it (MCP security best practices, "Session
    // Hijacking"): another user's token on it gets the same 404 as an unknown session, and the
    // client starts over with `initialize`.
    let principal = claims.subject.clone().unwrap_or_default();
    let session = request
        .headers()
        .get(MCP_SESSION_ID)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    if let Some(session) = &session
        && state
            .sessions()
            .owner(session)
            .is_some_and(|owner| owner != principal)
    {
        tracing::info!(subject = %principal, "refused a session opened by another user");
        return (StatusCode::NOT_FOUND, "Not Found: Session not found").into_response();
    }
    let closing = request.method() == Method::DELETE;
    request.extensions_mut().insert(claims);
    let response = next.run(request).await;

    match session {
        None => {
            if let Some(opened) = response
                .headers()
                .get(MCP_SESSION_ID)
                .and_then(|value| value.to_str().ok())
            {
                state.sessions().bind(opened, principal);
            }
        }
        Some(session) if closing && response.status().is_success() => {
            state.sessions().forget(&session)
        }
        Some(_) => {}
    }
    response
}

/// The Streamable HTTP session header.
const MCP_SESSION_ID: &str = "mcp-session-id";

/// Which user opened each MCP session.
#[derive(Debug, Default)]
pub struct SessionOwners {
    owners: Mutex<HashMap<String, String>>,
}

impl SessionOwners {
    fn owners(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        // The map stays consistent even if a holder panicked: every change is one insert or remove.
        self.owners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The `sub` of the user who opened `session`, if this server saw it opened.
    pub fn owner(&self, session: &str) -> Option<String> {
        self.owners().get(session).cloned()
    }

    fn bind(&self, session: &str, principal: String) {
        self.owners().insert(session.to_owned(), principal);
    }

    fn forget(&self, session: &str) {
        self.owners().remove(session);
    }
}

/// The bearer token of an `Authorization: Bearer <token>` header (RFC 6750 §2.1). Anything else
/// (no header, another scheme, an empty token, non-ASCII) counts as no token.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim_matches(' ');
    if token.is_empty() || token.contains(' ') {
        return None;
    }
    Some(token)
}

/// Why a request to `/mcp` is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// No usable bearer token: 401 without an `error` (RFC 6750 §3.1).
    NoToken,
    /// A token that failed validation: 401 `invalid_token`.
    InvalidToken { description: String },
    /// A valid token without every required scope: 403 `insufficient_scope`.
    InsufficientScope,
}

impl Challenge {
    /// The `WWW-Authenticate` value, in the parameter order the MCP spec's examples use.
    pub fn header_value(&self, resource_metadata: &str, required_scopes: &[String]) -> String {
        let scope = required_scopes.join(" ");
        let scope_param = if scope.is_empty() {
            String::new()
        } else {
            format!(", scope=\"{scope}\"")
        };
        match self {
            Challenge::NoToken => {
                format!("Bearer resource_metadata=\"{resource_metadata}\"{scope_param}")
            }
            Challenge::InvalidToken { description } => format!(
                "Bearer resource_metadata=\"{resource_metadata}\"{scope_param}, error=\"invalid_token\", \
                 error_description=\"{}\"",
                quoted_string_safe(description)
            ),
            Challenge::InsufficientScope => format!(
                "Bearer error=\"insufficient_scope\"{scope_param}, resource_metadata=\"{resource_metadata}\""
            ),
        }
    }

    /// The response: status, `WWW-Authenticate` and (except for a missing token) an OAuth error
    /// body repeating the error.
    pub fn into_response(self, resource_metadata: &str, required_scopes: &[String]) -> Response {
        let header = self.header_value(resource_metadata, required_scopes);
        let header = HeaderValue::from_str(&header)
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer error=\"invalid_token\""));
        match self {
            Challenge::NoToken => {
                (StatusCode::UNAUTHORIZED, [(WWW_AUTHENTICATE, header)]).into_response()
            }
            Challenge::InvalidToken { description } => (
                StatusCode::UNAUTHORIZED,
                [(WWW_AUTHENTICATE, header)],
                Json(OAuthErrorBody {
                    error: "invalid_token".to_owned(),
                    error_description: Some(description),
                }),
            )
                .into_response(),
            Challenge::InsufficientScope => (
                StatusCode::FORBIDDEN,
                [(WWW_AUTHENTICATE, header)],
                Json(OAuthErrorBody {
                    error: "insufficient_scope".to_owned(),
                    error_description: Some(format!(
                        "this server requires the scopes {}",
                        required_scopes.join(" ")
                    )),
                }),
            )
                .into_response(),
        }
    }
}

/// Makes a description fit an RFC 7230 quoted-string and RFC 6750's `error_description` charset
/// (%x20-21 / %x23-5B / %x5D-7E): quotes and backslashes become apostrophes, anything else
/// outside the range becomes a space.
fn quoted_string_safe(text: &str) -> String {
    text.chars()
        .map(|character| match character {
            '"' | '\\' => '\'',
            ' '..='~' => character,
            _ => ' ',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(authorization).expect("a header value"),
        );
        headers
    }

    #[test]
    fn a_bearer_token_is_read_case_insensitively() {
        assert_eq!(
            bearer_token(&headers("Bearer abc.def.ghi")),
            Some("abc.def.ghi")
        );
        assert_eq!(bearer_token(&headers("bearer abc")), Some("abc"));
    }

    #[test]
    fn other_schemes_and_empty_tokens_are_no_token() {
        assert_eq!(bearer_token(&HeaderMap::new()), None);
        assert_eq!(bearer_token(&headers("Basic dXNlcjpwYXNz")), None);
        assert_eq!(bearer_token(&headers("Bearer ")), None);
        assert_eq!(bearer_token(&headers("Bearer")), None);
        assert_eq!(bearer_token(&headers("Bearer a b")), None);
    }

    #[test]
    fn challenges_follow_the_spec_examples() {
        let scopes = vec!["mcp:read".to_owned(), "mcp:write".to_owned()];
        let prm = "http://h/.well-known/oauth-protected-resource/mcp";
        assert_eq!(
            Challenge::NoToken.header_value(prm, &scopes),
            "Bearer resource_metadata=\"http://h/.well-known/oauth-protected-resource/mcp\", \
             scope=\"mcp:read mcp:write\""
        );
        assert_eq!(
            Challenge::InvalidToken {
                description: "bad \"x\"\n".to_owned()
            }
            .header_value(prm, &[]),
            "Bearer resource_metadata=\"http://h/.well-known/oauth-protected-resource/mcp\", \
             error=\"invalid_token\", error_description=\"bad 'x' \""
        );
        assert_eq!(
            Challenge::InsufficientScope.header_value(prm, &scopes),
            "Bearer error=\"insufficient_scope\", scope=\"mcp:read mcp:write\", \
             resource_metadata=\"http://h/.well-known/oauth-protected-resource/mcp\""
        );
    }
}
