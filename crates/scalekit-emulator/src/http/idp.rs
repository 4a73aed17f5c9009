//! The routes of the companies' identity providers the emulator plays for cross-app access
//! (`crate::idp`), under `/_idp/{idp}`: the discovery document (at the RFC 8414 inserted
//! well-known URL, which MCP clients try first, and at the OIDC appended one), the JWKS, and the
//! RFC 8693 token endpoint that exchanges an ID token for an ID-JAG. Served only while the
//! control API is on (whoever reaches the control API can sign people in there), and outside
//! its guard: an MCP client calls them as it would call a real identity provider.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use scalekit_wire::{Check, Endpoint, OAuthErrorCode, Secret};

use super::error::OAuthError;
use super::extract::GatewayPath;
use super::token::{ClientCredentials, oauth_form, server_error};
use super::{BodyKind, Edge, Route};
use crate::idp::{ID_JAG_TOKEN_TYPE, IssuedIdJag, TokenExchangeRequest, TrustedIdp};
use crate::management::{ApiError, GrpcCode};
use crate::state::AppState;
use crate::types::{Assertion, IdpIdToken};

/// The identity providers' routes.
pub(super) fn routes() -> Vec<Route> {
    vec![
        Route::new(
            "/.well-known/oauth-authorization-server/_idp/{idp}",
            Edge::Gateway,
        )
        .get(metadata),
        Route::new(
            "/_idp/{idp}/.well-known/openid-configuration",
            Edge::Gateway,
        )
        .get(metadata),
        Route::new("/_idp/{idp}/keys", Edge::Gateway).get(keys),
        Route::new("/_idp/{idp}/oauth/token", Edge::OAuth)
            .serves(Endpoint::IdpTokenExchange)
            .post(token)
            .takes(BodyKind::Form),
    ]
}

/// The identity provider a gateway route names: NOT_FOUND when there is none.
fn gateway_idp<'a>(state: &'a AppState, id: &str) -> Result<&'a TrustedIdp, ApiError> {
    state.idps.get(id).ok_or_else(|| {
        ApiError::new(
            GrpcCode::NotFound,
            format!("identity provider {id} not found"),
        )
    })
}

async fn metadata(
    State(state): State<AppState>,
    GatewayPath(id): GatewayPath<String>,
) -> Result<Response, ApiError> {
    let idp = gateway_idp(&state, &id)?;
    Ok(Json(state.idps.metadata(idp)).into_response())
}

async fn keys(
    State(state): State<AppState>,
    GatewayPath(id): GatewayPath<String>,
) -> Result<Response, ApiError> {
    let idp = gateway_idp(&state, &id)?;
    let jwks = state
        .idps
        .jwks(idp)
        .map_err(|error| ApiError::new(GrpcCode::Internal, error.to_string()))?;
    Ok(Json(jwks).into_response())
}

/// `{idp}` of the token route; a malformed one is the same 404 as an unknown one.
struct TokenPath(String);

impl<S: Send + Sync> FromRequestParts<S> for TokenPath {
    type Rejection = OAuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, OAuthError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection: PathRejection| unknown_idp(&rejection.body_text()))?;
        Ok(TokenPath(id))
    }
}

fn unknown_idp(id: &str) -> OAuthError {
    OAuthError::new(
        OAuthErrorCode::InvalidRequest,
        format!("identity provider {id} not found"),
    )
    .with_status(StatusCode::NOT_FOUND)
    .failed(Check::RequestValid)
}

/// The token-exchange form as posted (RFC 8693 §2.1), all optional.
#[derive(Debug, Deserialize)]
struct TokenExchangeForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<Secret>,
    requested_token_type: Option<String>,
    subject_token: Option<IdpIdToken>,
    subject_token_type: Option<String>,
    audience: Option<String>,
    resource: Option<String>,
    scope: Option<String>,
}

impl<S: Send + Sync> FromRequest<S> for TokenExchangeForm {
    type Rejection = OAuthError;

    async fn from_request(request: Request, state: &S) -> Result<Self, OAuthError> {
        oauth_form(request, state, "the token request").await
    }
}

/// The token-exchange answer (RFC 8693 §2.2.1, draft §4.3.2): the ID-JAG in `access_token`,
/// `token_type` `N_A`.
#[derive(Debug, Serialize)]
struct TokenExchangeResponse {
    issued_token_type: &'static str,
    access_token: Assertion,
    token_type: &'static str,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
}

/// `POST /_idp/{idp}/oauth/token`: an ID token of the identity provider exchanged for an
/// ID-JAG (`crate::idp::TrustedIdps::exchange` says in which order it checks).
async fn token(
    State(state): State<AppState>,
    TokenPath(id): TokenPath,
    headers: HeaderMap,
    form: TokenExchangeForm,
) -> Result<Response, OAuthError> {
    let Some(idp) = state.idps.get(&id) else {
        return Err(unknown_idp(&id));
    };
    let TokenExchangeForm {
        grant_type,
        client_id,
        client_secret,
        requested_token_type,
        subject_token,
        subject_token_type,
        audience,
        resource,
        scope,
    } = form;
    // A malformed Basic header is `invalid_client`, after the grant type (step 2).
    let credentials = ClientCredentials::parse(&headers, client_id, client_secret);
    let mut request = TokenExchangeRequest {
        grant_type,
        requested_token_type,
        subject_token,
        subject_token_type,
        audience,
        resource,
        scope,
        ..TokenExchangeRequest::default()
    };
    let supported = request.grant_type.as_deref() == Some(crate::idp::TOKEN_EXCHANGE);
    match credentials {
        Ok(credentials) => {
            request.client_id = credentials.client_id;
            request.client_secret = credentials.client_secret;
        }
        Err(error) if supported => return Err(error.failed(Check::ClientAuthenticated)),
        Err(_) => {}
    }
    let now = state.clock.now();
    let issued = state
        .idps
        .exchange(
            idp,
            &request,
            &state.config.resources,
            now,
            state.ids.as_ref(),
        )
        .map_err(|error| server_error(&error))??;
    let IssuedIdJag {
        id_jag,
        expires_in,
        scope,
    } = issued;
    let mut response = Json(TokenExchangeResponse {
        issued_token_type: ID_JAG_TOKEN_TYPE,
        access_token: Assertion::new(id_jag.token),
        token_type: "N_A",
        expires_in,
        scope,
    })
    .into_response();
    no_store(&mut response);
    Ok(response)
}

/// `Cache-Control: no-store` and `Pragma: no-cache` on an answer that carries a token.
pub(super) fn no_store(response: &mut Response) {
    use axum::http::HeaderValue;
    use axum::http::header::{CACHE_CONTROL, PRAGMA};
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
        .headers_mut()
        .insert(PRAGMA, HeaderValue::from_static("no-cache"));
}
