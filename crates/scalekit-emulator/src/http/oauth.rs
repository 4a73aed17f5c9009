//! `/oauth/authorize`, `/oauth/consent` and `/oauth/token`.

use axum::Form;
use axum::Json;
use axum::extract::rejection::{FormRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, LOCATION, PRAGMA};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use super::AppState;
use super::error::{HostedErrorPage, OAuthError, OAuthErrorCode};
use crate::flow::cimd::is_document_url;
use crate::flow::{
    AuthorizationCodeRequest, AuthorizeError, AuthorizeRequest, ClientRedirect, IssuedGrant,
    RefreshRequest,
};
use crate::tokens::TokenResponse;

/// The authorization request's query, all optional: the state machine checks it.
#[derive(Debug, Default, Deserialize)]
pub(super) struct AuthorizeQuery {
    client_id: Option<String>,
    redirect_uri: Option<String>,
    response_type: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    nonce: Option<String>,
    resource: Option<String>,
}

impl From<AuthorizeQuery> for AuthorizeRequest {
    fn from(query: AuthorizeQuery) -> Self {
        AuthorizeRequest {
            client_id: query.client_id,
            redirect_uri: query.redirect_uri,
            response_type: query.response_type,
            scope: query.scope,
            state: query.state,
            code_challenge: query.code_challenge,
            code_challenge_method: query.code_challenge_method,
            nonce: query.nonce,
            resource: query.resource,
        }
    }
}

/// A 302 to `location`.
fn found(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => (StatusCode::FOUND, [(LOCATION, value)]).into_response(),
        Err(_) => HostedErrorPage::new("server_error", "cannot build the redirect").into_response(),
    }
}

/// A 302 to the client's redirect URI with code or error, `state` and `iss`.
pub(super) fn redirect_to(redirect: &ClientRedirect) -> Response {
    match redirect.location() {
        Some(location) => found(location.as_str()),
        None => HostedErrorPage::new("invalid_request", "the redirect URI cannot be used")
            .into_response(),
    }
}

pub(super) async fn authorize(
    State(state): State<AppState>,
    query: Result<Query<AuthorizeQuery>, QueryRejection>,
) -> Response {
    match query {
        Ok(Query(query)) => authorize_request(&state, query.into()).await,
        Err(rejection) => {
            HostedErrorPage::new("invalid_request", rejection.body_text()).into_response()
        }
    }
}

/// `/resources/{res}/oauth/authorize`: the path's resource is the default `resource`.
pub(super) async fn authorize_for_resource(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<AuthorizeQuery>, QueryRejection>,
) -> Response {
    let Ok(Path(resource)) = path else {
        return HostedErrorPage::new("invalid_request", "the resource in the path is malformed")
            .into_response();
    };
    match query {
        Ok(Query(query)) => {
            let mut request: AuthorizeRequest = query.into();
            request.resource = request.resource.or(Some(resource));
            authorize_request(&state, request).await
        }
        Err(rejection) => {
            HostedErrorPage::new("invalid_request", rejection.body_text()).into_response()
        }
    }
}

async fn authorize_request(state: &AppState, request: AuthorizeRequest) -> Response {
    // A URL `client_id` names a Client ID Metadata Document: fetch it (IO, outside the lock)
    // unless no resource accepts such clients, then let the state machine check the request.
    let metadata_client = request
        .client_id
        .as_deref()
        .filter(|client_id| is_document_url(client_id))
        .map(str::to_owned);
    let metadata = match metadata_client {
        None => None,
        Some(client_id) => {
            let accepted = state
                .config
                .resources
                .iter()
                .any(|resource| resource.client_id_metadata_documents);
            if !accepted {
                return HostedErrorPage::new(
                    "invalid_client_metadata_url",
                    "client ID metadata documents are not accepted in this environment",
                )
                .into_response();
            }
            let fetched = state
                .metadata_documents
                .get(&client_id, state.clock.now())
                .await;
            match fetched {
                Ok(metadata) => Some(metadata),
                Err(error) => {
                    return HostedErrorPage::new("invalid_client_metadata_url", error.to_string())
                        .into_response();
                }
            }
        }
    };
    let now = state.clock.now();
    let ids = state.ids.as_ref();
    let result = match metadata {
        Some(metadata) => state
            .flows()
            .authorize_metadata_client(request, metadata, now, ids),
        None => state.flows().authorize(request, now, ids),
    };
    match result {
        Ok(login) => found(login.location().as_str()),
        Err(AuthorizeError::MissingClientId) => {
            HostedErrorPage::new("invalid_request", "client_id is required").into_response()
        }
        Err(AuthorizeError::UnknownClient(client)) => HostedErrorPage::new(
            "invalid_client",
            format!("client {client} is not registered"),
        )
        .into_response(),
        Err(AuthorizeError::InvalidRedirectUri(why)) => {
            HostedErrorPage::new("invalid_request", why).into_response()
        }
        Err(AuthorizeError::MetadataDocument(error)) => {
            HostedErrorPage::new("invalid_client_metadata_url", error.to_string()).into_response()
        }
        Err(AuthorizeError::InvalidTarget(why)) => {
            HostedErrorPage::new("invalid_target", why).into_response()
        }
        Err(AuthorizeError::Redirect(redirect)) => redirect_to(&redirect),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct ConsentForm {
    consent_id: Option<String>,
    decision: Option<String>,
}

pub(super) async fn consent(
    State(state): State<AppState>,
    form: Result<Form<ConsentForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return HostedErrorPage::new("invalid_request", "the consent form is malformed")
            .into_response();
    };
    let approve = match form.decision.as_deref() {
        Some("approve") => true,
        Some("deny") => false,
        _ => {
            return HostedErrorPage::new("invalid_request", "decision must be approve or deny")
                .into_response();
        }
    };
    let Some(consent_id) = form.consent_id else {
        return HostedErrorPage::new("invalid_request", "consent_id is required").into_response();
    };
    let now = state.clock.now();
    let result = state
        .flows()
        .decide_consent(&consent_id, approve, now, state.ids.as_ref());
    match result {
        Ok(redirect) => redirect_to(&redirect),
        Err(error) => HostedErrorPage::new("invalid_request", error.to_string()).into_response(),
    }
}

/// The token request's form fields, all optional: checked per grant type.
#[derive(Debug, Default, Deserialize)]
pub(super) struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    code: Option<String>,
    code_verifier: Option<String>,
    redirect_uri: Option<String>,
    resource: Option<String>,
    refresh_token: Option<String>,
    scope: Option<String>,
}

/// `POST /oauth/token`, also served at `/resources/{res}/oauth/token` (the grant decides the
/// resource, so the path's resource is not read).
pub(super) async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Result<Response, OAuthError> {
    let Form(form) = form.map_err(|rejection| {
        OAuthError::new(
            OAuthErrorCode::InvalidRequest,
            "the token request must be a form (application/x-www-form-urlencoded)",
        )
        .internal(rejection.body_text())
    })?;
    token_request(&state, &headers, form)
}

/// The revocation request's form fields (RFC 7009 §2.1).
#[derive(Debug, Default, Deserialize)]
pub(super) struct RevokeForm {
    token: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// `POST /oauth/revoke`: 200 with an empty body, whether or not the token was known.
pub(super) async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<RevokeForm>, FormRejection>,
) -> Result<Response, OAuthError> {
    let Form(form) = form.map_err(|rejection| {
        OAuthError::new(
            OAuthErrorCode::InvalidRequest,
            "the revocation request must be a form (application/x-www-form-urlencoded)",
        )
        .internal(rejection.body_text())
    })?;
    let credentials = TokenForm {
        client_id: form.client_id,
        client_secret: form.client_secret,
        ..TokenForm::default()
    };
    let (client_id, client_secret) = client_credentials(&headers, &credentials)?;
    let client_id = client_id.ok_or_else(|| {
        OAuthError::new(
            OAuthErrorCode::InvalidClient,
            "client authentication is required to revoke tokens",
        )
    })?;
    let token = form
        .token
        .ok_or_else(|| OAuthError::new(OAuthErrorCode::InvalidRequest, "token is required"))?;
    state
        .flows()
        .revoke(&client_id, client_secret.as_deref(), &token)?;
    let mut response = StatusCode::OK.into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Client credentials from HTTP Basic (RFC 6749 §2.3.1, form-encoded parts) or the form.
fn client_credentials(
    headers: &HeaderMap,
    form: &TokenForm,
) -> Result<(Option<String>, Option<String>), OAuthError> {
    let Some(header) = headers.get(AUTHORIZATION) else {
        return Ok((form.client_id.clone(), form.client_secret.clone()));
    };
    let malformed = || {
        OAuthError::new(
            OAuthErrorCode::InvalidClient,
            "malformed HTTP Basic credentials",
        )
    };
    let value = header.to_str().map_err(|_| malformed())?;
    let Some(encoded) = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
    else {
        return Ok((form.client_id.clone(), form.client_secret.clone()));
    };
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    Ok((Some(form_decode(id)), Some(form_decode(secret))))
}

fn form_decode(value: &str) -> String {
    url::form_urlencoded::parse(format!("v={value}").as_bytes())
        .next()
        .map(|(_, decoded)| decoded.into_owned())
        .unwrap_or_default()
}

fn token_request(
    state: &AppState,
    headers: &HeaderMap,
    form: TokenForm,
) -> Result<Response, OAuthError> {
    let (client_id, client_secret) = client_credentials(headers, &form)?;
    let now = state.clock.now();
    let ids = state.ids.as_ref();
    let grant_type = form
        .grant_type
        .as_deref()
        .ok_or_else(|| OAuthError::new(OAuthErrorCode::InvalidRequest, "grant_type is required"))?;
    match grant_type {
        "client_credentials" => {
            let api_client = &state.config.api_client;
            let authenticated = client_id.as_deref() == Some(api_client.client_id.as_str())
                && client_secret
                    .as_deref()
                    .is_some_and(|secret| api_client.client_secret.matches(secret));
            if !authenticated {
                return Err(OAuthError::new(
                    OAuthErrorCode::InvalidClient,
                    "client authentication failed",
                )
                .internal(format!("client_credentials for {client_id:?}")));
            }
            let response = state
                .minter
                .mint_management(
                    &state.keys.signing(),
                    &api_client.client_id,
                    api_client.token_lifetime_secs,
                    now,
                    ids,
                )
                .map_err(|error| server_error(&error))?;
            Ok(token_response(&response))
        }
        "authorization_code" => {
            let client_id = client_id.ok_or_else(|| {
                OAuthError::new(OAuthErrorCode::InvalidClient, "client_id is required")
            })?;
            let code = form.code.ok_or_else(|| {
                OAuthError::new(OAuthErrorCode::InvalidRequest, "code is required")
            })?;
            let grant = {
                let mut flows = state.flows();
                let client_id = flows.authenticate_client(&client_id, client_secret.as_deref())?;
                flows.exchange_code(
                    AuthorizationCodeRequest {
                        client_id,
                        code,
                        code_verifier: form.code_verifier,
                        redirect_uri: form.redirect_uri,
                        resource: form.resource,
                    },
                    now,
                    ids,
                )?
            };
            mint_for_grant(state, &grant, now)
        }
        "refresh_token" => {
            let client_id = client_id.ok_or_else(|| {
                OAuthError::new(OAuthErrorCode::InvalidClient, "client_id is required")
            })?;
            let refresh_token = form.refresh_token.ok_or_else(|| {
                OAuthError::new(OAuthErrorCode::InvalidRequest, "refresh_token is required")
            })?;
            let grant = {
                let mut flows = state.flows();
                let client_id = flows.authenticate_client(&client_id, client_secret.as_deref())?;
                flows.refresh(
                    RefreshRequest {
                        client_id,
                        refresh_token,
                        resource: form.resource,
                        scope: form.scope,
                    },
                    now,
                    ids,
                )?
            };
            mint_for_grant(state, &grant, now)
        }
        other => Err(OAuthError::new(
            OAuthErrorCode::UnsupportedGrantType,
            format!("grant_type {other} is not supported"),
        )),
    }
}

fn mint_for_grant(state: &AppState, grant: &IssuedGrant, now: u64) -> Result<Response, OAuthError> {
    let resource = state
        .config
        .resource(grant.resource.as_str())
        .ok_or_else(|| {
            OAuthError::new(
                OAuthErrorCode::InvalidTarget,
                "the grant's resource is no longer configured",
            )
        })?;
    let response = state
        .minter
        .mint_for_grant(
            &state.keys.signing(),
            grant,
            resource,
            now,
            state.ids.as_ref(),
        )
        .map_err(|error| server_error(&error))?;
    Ok(token_response(&response))
}

fn server_error(error: &dyn std::error::Error) -> OAuthError {
    OAuthError::new(
        OAuthErrorCode::InvalidRequest,
        "the token could not be issued",
    )
    .with_status(StatusCode::INTERNAL_SERVER_ERROR)
    .internal(error.to_string())
}

/// 200 JSON with `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 §5.1).
fn token_response(response: &TokenResponse) -> Response {
    let mut http = Json(response).into_response();
    http.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    http.headers_mut()
        .insert(PRAGMA, HeaderValue::from_static("no-cache"));
    http
}
