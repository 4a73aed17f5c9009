//! The HTTP edge: the protected-resource metadata document (RFC 9728), the `Origin` check on
//! `/mcp` (MCP Streamable HTTP, "Security Warning") and the middleware that authenticates every
//! request to `/mcp` (RFC 6750 §3, MCP authorization §"Error handling").
//!
//! Every answer of these carries its facts as response extensions: [`HopFacts`] (the endpoint
//! served and the check that failed) and, for an error with an OAuth code, [`ErrorSummary`], so
//! that whoever records the traffic (the flow inspector's layer, when the test bed runs this
//! server in its process) reads what happened instead of parsing the challenge.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;

use axum::Json;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::{AUTHORIZATION, CACHE_CONTROL, ORIGIN, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use scalekit_wire::{Check, Endpoint, ErrorSummary, HopFacts, OAuthErrorBody, OAuthErrorCode};
use serde::{Deserialize, Serialize};

use crate::auth::AuthError;
use crate::{AppState, Mistake};

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
    with_facts(
        (
            [(
                CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=60"),
            )],
            Json(state.metadata().clone()),
        )
            .into_response(),
        Endpoint::Other,
        None,
    )
}

/// `response` with the facts of its answer attached: the endpoint served and, for an error, the
/// check that failed.
fn with_facts(mut response: Response, endpoint: Endpoint, failed: Option<Check>) -> Response {
    response
        .extensions_mut()
        .insert(HopFacts { endpoint, failed });
    response
}

/// `response` with what its OAuth error said attached.
fn with_error(mut response: Response, code: OAuthErrorCode, message: &str) -> Response {
    response.extensions_mut().insert(ErrorSummary {
        code: code.as_str().to_owned(),
        message: message.to_owned(),
        fields: Vec::new(),
    });
    response
}

/// The origin of a web page as browsers send it in `Origin` (shared with the emulator's control
/// API: `testbed_web::origin`).
pub use testbed_web::Origin;

/// Refuses a request to `/mcp` from a browser page of a foreign origin with 403, before its token
/// is looked at (DNS rebinding protection; MCP Streamable HTTP 2025-11-25, "Security Warning").
/// A request without `Origin` (any non-browser client) passes; so do the server's own origin,
/// loopback origins and the configured ones. `Origin: null`, several `Origin` headers or one
/// that does not parse are foreign. The body is the JSON-RPC error the TypeScript SDK answers.
pub async fn check_origin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if state.mistake() == Mistake::SkipOrigin {
        return next.run(request).await;
    }
    let mut values = request.headers().get_all(ORIGIN).iter();
    let Some(value) = values.next() else {
        return next.run(request).await;
    };
    let allowed = values.next().is_none()
        && value
            .to_str()
            .ok()
            .and_then(Origin::parse)
            .is_some_and(|origin| state.origin_allowed(&origin));
    if allowed {
        return next.run(request).await;
    }
    let origin = String::from_utf8_lossy(value.as_bytes()).into_owned();
    tracing::info!(%origin, "refused a request from a foreign origin");
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "error": {"code": -32000, "message": format!("Forbidden: Origin {origin} is not allowed")},
        "id": null,
    });
    // No check of the token was made: the request itself was refused.
    with_facts(
        (StatusCode::FORBIDDEN, Json(body)).into_response(),
        Endpoint::Mcp,
        Some(Check::RequestValid),
    )
}

/// Authenticates a request to `/mcp`. On success the validated [`crate::Claims`] are put into
/// the request extensions, where the MCP tools read them.
pub async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let token = match bearer_token(request.headers()) {
        Some(token) => Some(Cow::Borrowed(token)),
        None if state.mistake() == Mistake::AcceptQueryToken
            && !request.headers().contains_key(AUTHORIZATION) =>
        {
            query_token(request.uri()).map(Cow::Owned)
        }
        None => None,
    };
    let Some(token) = token else {
        return state.challenge(Challenge::NoToken);
    };
    let now = (state.clock())();
    let claims = match state.authenticator().authenticate(&token, now).await {
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
            let code = OAuthErrorCode::TemporarilyUnavailable;
            let description = error.to_string();
            let body = OAuthErrorBody {
                error: code.as_str().to_owned(),
                error_description: Some(description.clone()),
            };
            // The token could not be checked, so it was not found valid.
            let response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
            return with_facts(
                with_error(response, code, &description),
                Endpoint::Mcp,
                Some(Check::TokenValid),
            );
        }
    };
    let missing = claims.missing_scopes(state.required_scopes());
    if !missing.is_empty() {
        tracing::info!(subject = ?claims.subject, ?missing, "refused a token without the required scopes");
        if state.mistake() == Mistake::InsufficientScopeAs401 {
            // The answer says `invalid_token`, but the check that failed is the scope check.
            let response = state.challenge(Challenge::InvalidToken {
                description: insufficient_scope_description(state.required_scopes()),
            });
            return with_facts(response, Endpoint::Mcp, Some(Check::ScopesSufficient));
        }
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
        // Every check of the token passed; the session is refused for another reason.
        return with_facts(
            (StatusCode::NOT_FOUND, "Not Found: Session not found").into_response(),
            Endpoint::Mcp,
            None,
        );
    }
    let closing = request.method() == Method::DELETE;
    request.extensions_mut().insert(claims);
    let mut response = next.run(request).await;
    // Every check of the token passed, whatever the MCP service answers.
    if response.extensions().get::<HopFacts>().is_none() {
        response.extensions_mut().insert(HopFacts {
            endpoint: Endpoint::Mcp,
            failed: None,
        });
    }

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

/// An `access_token` query parameter (RFC 6750 §2.3, which OAuth 2.1 forbids): read only
/// under [`Mistake::AcceptQueryToken`].
fn query_token(uri: &Uri) -> Option<String> {
    url::form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(name, _)| name == "access_token")
        .map(|(_, value)| value.into_owned())
        .filter(|value| !value.is_empty())
}

fn insufficient_scope_description(required_scopes: &[String]) -> String {
    format!(
        "this server requires the scopes {}",
        required_scopes.join(" ")
    )
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

/// The realm every challenge names first, as Scalekit's MCP quickstart and its demo middleware
/// send it (`Bearer realm="OAuth", resource_metadata="…"`); RFC 6750 §3 makes it optional.
const REALM: &str = "realm=\"OAuth\"";

impl Challenge {
    /// The `WWW-Authenticate` value: `realm="OAuth"` first, as Scalekit's docs show it, then the
    /// parameters in the order the MCP spec's examples use. `resource_metadata` is `None` only
    /// under [`Mistake::ChallengeWithoutResourceMetadata`].
    pub fn header_value(
        &self,
        resource_metadata: Option<&str>,
        required_scopes: &[String],
    ) -> String {
        let scope = required_scopes.join(" ");
        let scope = (!scope.is_empty()).then(|| format!("scope=\"{scope}\""));
        let resource_metadata = resource_metadata.map(|url| format!("resource_metadata=\"{url}\""));
        let parameters: Vec<String> = match self {
            Challenge::NoToken => [resource_metadata, scope].into_iter().flatten().collect(),
            Challenge::InvalidToken { description } => [
                resource_metadata,
                scope,
                Some(format!("error=\"{}\"", OAuthErrorCode::InvalidToken)),
                Some(format!(
                    "error_description=\"{}\"",
                    quoted_string_safe(description)
                )),
            ]
            .into_iter()
            .flatten()
            .collect(),
            Challenge::InsufficientScope => [
                Some(format!("error=\"{}\"", OAuthErrorCode::InsufficientScope)),
                scope,
                resource_metadata,
            ]
            .into_iter()
            .flatten()
            .collect(),
        };
        let parameters: Vec<String> = std::iter::once(REALM.to_owned())
            .chain(parameters)
            .collect();
        format!("Bearer {}", parameters.join(", "))
    }

    /// The response: status, `WWW-Authenticate` and (except for a missing token) an OAuth error
    /// body repeating the error; its facts attached (the check the challenge names as failed,
    /// [`Check::ChallengedWithoutBearer`] for a missing token, which is not a failure, and the
    /// OAuth error as an [`ErrorSummary`]).
    pub fn into_response(
        self,
        resource_metadata: Option<&str>,
        required_scopes: &[String],
    ) -> Response {
        let header = self.header_value(resource_metadata, required_scopes);
        let header = HeaderValue::from_str(&header).unwrap_or_else(|_| {
            HeaderValue::from_static("Bearer realm=\"OAuth\", error=\"invalid_token\"")
        });
        let (status, code, description, failed) = match self {
            Challenge::NoToken => {
                let response = (StatusCode::UNAUTHORIZED, [(WWW_AUTHENTICATE, header)]);
                return with_facts(
                    response.into_response(),
                    Endpoint::Mcp,
                    Some(Check::ChallengedWithoutBearer),
                );
            }
            Challenge::InvalidToken { description } => (
                StatusCode::UNAUTHORIZED,
                OAuthErrorCode::InvalidToken,
                description,
                Check::TokenValid,
            ),
            Challenge::InsufficientScope => (
                StatusCode::FORBIDDEN,
                OAuthErrorCode::InsufficientScope,
                insufficient_scope_description(required_scopes),
                Check::ScopesSufficient,
            ),
        };
        let response = (
            status,
            [(WWW_AUTHENTICATE, header)],
            Json(OAuthErrorBody {
                error: code.as_str().to_owned(),
                error_description: Some(description.clone()),
            }),
        )
            .into_response();
        with_facts(
            with_error(response, code, &description),
            Endpoint::Mcp,
            Some(failed),
        )
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
    fn a_query_token_is_the_first_non_empty_access_token_parameter() {
        let uri: Uri = "/mcp?a=1&access_token=abc%2Edef&access_token=x"
            .parse()
            .expect("a URI");
        assert_eq!(query_token(&uri).as_deref(), Some("abc.def"));
        let uri: Uri = "/mcp?access_token=".parse().expect("a URI");
        assert_eq!(query_token(&uri), None);
        let uri: Uri = "/mcp".parse().expect("a URI");
        assert_eq!(query_token(&uri), None);
    }

    #[test]
    fn a_challenge_without_resource_metadata_keeps_its_other_parameters() {
        let scopes = vec!["mcp:read".to_owned()];
        assert_eq!(
            Challenge::NoToken.header_value(None, &scopes),
            "Bearer realm=\"OAuth\", scope=\"mcp:read\""
        );
        assert_eq!(
            Challenge::NoToken.header_value(None, &[]),
            "Bearer realm=\"OAuth\""
        );
        assert_eq!(
            Challenge::InvalidToken {
                description: "bad".to_owned()
            }
            .header_value(None, &[]),
            "Bearer realm=\"OAuth\", error=\"invalid_token\", error_description=\"bad\""
        );
    }

    #[test]
    fn challenges_follow_the_spec_examples() {
        let scopes = vec!["mcp:read".to_owned(), "mcp:write".to_owned()];
        let prm = "http://h/.well-known/oauth-protected-resource/mcp";
        assert_eq!(
            Challenge::NoToken.header_value(Some(prm), &scopes),
            "Bearer realm=\"OAuth\", \
             resource_metadata=\"http://h/.well-known/oauth-protected-resource/mcp\", \
             scope=\"mcp:read mcp:write\""
        );
        assert_eq!(
            Challenge::InvalidToken {
                description: "bad \"x\"\n".to_owned()
            }
            .header_value(Some(prm), &[]),
            "Bearer realm=\"OAuth\", \
             resource_metadata=\"http://h/.well-known/oauth-protected-resource/mcp\", \
             error=\"invalid_token\", error_description=\"bad 'x' \""
        );
        assert_eq!(
            Challenge::InsufficientScope.header_value(Some(prm), &scopes),
            "Bearer realm=\"OAuth\", error=\"insufficient_scope\", scope=\"mcp:read mcp:write\", \
             resource_metadata=\"http://h/.well-known/oauth-protected-resource/mcp\""
        );
    }
}
