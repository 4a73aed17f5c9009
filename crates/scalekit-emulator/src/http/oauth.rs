//! `/oauth/authorize`, `/oauth/consent` and `/oauth/token`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, LOCATION, PRAGMA};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use scalekit_wire::{Check, Endpoint, OAuthErrorCode, Secret};

use super::EdgeState;
use super::browser::{OwnOrigin, ending_sign_in, presented_browser, with_sign_in_cookie};
use super::error::{HostedErrorPage, OAuthError};
use super::extract::{AuthorizeParams, AuthorizePathResource};
use super::facts::{FailedCheck, ServedEndpoint};
use crate::flow::cimd::is_document_url;
use crate::flow::{
    AuthorizationCodeRequest, AuthorizeError, AuthorizeRequest, ClientRedirect, ConsentError,
    IssuedGrant, RedirectOutcome, RefreshRequest,
};
use crate::state::AppState;
use crate::tokens::TokenResponse;
use crate::types::{AuthorizationCode, ConsentId, RefreshToken};

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

impl AuthorizeQuery {
    /// The state machine's request (a method here rather than a `From` on the flow's type, so
    /// that the edge's query type stays the edge's).
    fn into_request(self) -> AuthorizeRequest {
        let query = self;
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
        Err(_) => HostedErrorPage::new(OAuthErrorCode::ServerError, "cannot build the redirect")
            .into_response(),
    }
}

/// A 302 to the client's redirect URI with code or error, `state` and `iss`. An error redirect
/// names the check its reason failed, although its status is not an error's.
pub(super) fn redirect_to(redirect: &ClientRedirect) -> Response {
    let Some(location) = redirect.location() else {
        return HostedErrorPage::new(
            OAuthErrorCode::InvalidRequest,
            "the redirect URI cannot be used",
        )
        .into_response();
    };
    let mut response = found(location.as_str());
    if let RedirectOutcome::Error { reason, .. } = &redirect.outcome {
        response
            .extensions_mut()
            .insert(FailedCheck(reason.failed_check()));
    }
    response
}

pub(super) async fn authorize(
    State(state): State<AppState>,
    Extension(edge): Extension<Arc<EdgeState>>,
    AuthorizeParams(query): AuthorizeParams<AuthorizeQuery>,
) -> Response {
    authorize_request(&state, &edge, query.into_request()).await
}

/// `/resources/{res}/oauth/authorize`: the path's resource is the default `resource`.
pub(super) async fn authorize_for_resource(
    State(state): State<AppState>,
    Extension(edge): Extension<Arc<EdgeState>>,
    AuthorizePathResource(resource): AuthorizePathResource,
    AuthorizeParams(query): AuthorizeParams<AuthorizeQuery>,
) -> Response {
    let mut request = query.into_request();
    request.resource = request.resource.or(Some(resource));
    authorize_request(&state, &edge, request).await
}

async fn authorize_request(
    state: &AppState,
    edge: &EdgeState,
    request: AuthorizeRequest,
) -> Response {
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
                    OAuthErrorCode::InvalidClientMetadataUrl,
                    "client ID metadata documents are not accepted in this environment",
                )
                .failed(Check::ClientKnown)
                .into_response();
            }
            let fetched = edge
                .metadata_documents
                .get(&client_id, state.clock.now())
                .await;
            match fetched {
                Ok(metadata) => Some(metadata),
                Err(error) => {
                    let error = AuthorizeError::MetadataDocument(error);
                    return HostedErrorPage::new(
                        OAuthErrorCode::InvalidClientMetadataUrl,
                        error.to_string(),
                    )
                    .failed(error.failed_check())
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
    let error = match result {
        Ok(login) => {
            return with_sign_in_cookie(found(login.location().as_str()), &login, state);
        }
        Err(error) => error,
    };
    // The client and its redirect URI are not trusted yet: the hosted error page, never a
    // redirect, except for the refusals that go back to the client.
    let code = match &error {
        AuthorizeError::Redirect(redirect) => return redirect_to(redirect),
        AuthorizeError::MissingClientId | AuthorizeError::InvalidRedirectUri(_) => {
            OAuthErrorCode::InvalidRequest
        }
        AuthorizeError::UnknownClient(_) => OAuthErrorCode::InvalidClient,
        AuthorizeError::MetadataDocument(_) => OAuthErrorCode::InvalidClientMetadataUrl,
        AuthorizeError::InvalidTarget(_) => OAuthErrorCode::InvalidTarget,
    };
    HostedErrorPage::new(code, error.to_string())
        .failed(error.failed_check())
        .into_response()
}

/// The consent form as posted.
#[derive(Debug, Deserialize)]
struct ConsentForm {
    consent_id: Option<ConsentId>,
    decision: Option<String>,
}

/// The consent page's answer: which consent, and whether the person allowed it. A form that is
/// malformed, lacks a decision or lacks the consent id gets the hosted error page.
#[derive(Debug)]
pub(super) struct ConsentDecision {
    consent_id: ConsentId,
    approve: bool,
}

impl<S: Send + Sync> FromRequest<S> for ConsentDecision {
    type Rejection = HostedErrorPage;

    async fn from_request(request: Request, state: &S) -> Result<Self, HostedErrorPage> {
        let Ok(Form(form)) = Form::<ConsentForm>::from_request(request, state).await else {
            return Err(HostedErrorPage::new(
                OAuthErrorCode::InvalidRequest,
                "the consent form is malformed",
            ));
        };
        let approve = match form.decision.as_deref() {
            Some("approve") => true,
            Some("deny") => false,
            _ => {
                return Err(HostedErrorPage::new(
                    OAuthErrorCode::InvalidRequest,
                    "decision must be approve or deny",
                ));
            }
        };
        let consent_id = form.consent_id.ok_or_else(|| {
            HostedErrorPage::new(OAuthErrorCode::InvalidRequest, "consent_id is required")
        })?;
        Ok(ConsentDecision {
            consent_id,
            approve,
        })
    }
}

/// `POST /oauth/consent`: from the environment's own origin ([`OwnOrigin`], checked before the
/// form is read) and the browser that started the sign-in (its sign-in cookie, Decisions §9).
pub(super) async fn consent(
    State(state): State<AppState>,
    _origin: OwnOrigin,
    headers: HeaderMap,
    ConsentDecision {
        consent_id,
        approve,
    }: ConsentDecision,
) -> Response {
    let browser = presented_browser(&headers);
    let now = state.clock.now();
    let (sign_in, result) = {
        let mut flows = state.flows();
        let sign_in = flows.sign_in_of_consent(&consent_id);
        let result = flows.decide_consent(&consent_id, approve, &browser, now, state.ids.as_ref());
        (sign_in, result)
    };
    match result {
        Ok(redirect) => ending_sign_in(redirect_to(&redirect), sign_in.as_ref(), &state),
        Err(error) => {
            let code = match &error {
                ConsentError::UnknownConsent => OAuthErrorCode::InvalidRequest,
                ConsentError::Browser(refusal) => refusal.code(),
            };
            HostedErrorPage::new(code, error.to_string())
                .failed(error.failed_check())
                .into_response()
        }
    }
}

/// The token request's form fields as posted, all optional: [`TokenRequest::parse`] reads them
/// once. A body that is not a form is `invalid_request`.
#[derive(Debug, Deserialize)]
pub(super) struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<Secret>,
    code: Option<AuthorizationCode>,
    code_verifier: Option<Secret>,
    redirect_uri: Option<String>,
    resource: Option<String>,
    refresh_token: Option<RefreshToken>,
    scope: Option<String>,
}

impl<S: Send + Sync> FromRequest<S> for TokenForm {
    type Rejection = OAuthError;

    async fn from_request(request: Request, state: &S) -> Result<Self, OAuthError> {
        let Form(form) = Form::<TokenForm>::from_request(request, state)
            .await
            .map_err(|rejection| {
                OAuthError::new(
                    OAuthErrorCode::InvalidRequest,
                    "the token request must be a form (application/x-www-form-urlencoded)",
                )
                .internal(rejection.body_text())
            })?;
        Ok(form)
    }
}

/// Client credentials as presented: HTTP Basic (RFC 6749 §2.3.1, form-encoded parts) when the
/// `Authorization` header is Basic, else the form's `client_id` and `client_secret`.
#[derive(Debug)]
pub(super) struct ClientCredentials {
    client_id: Option<String>,
    client_secret: Option<Secret>,
}

/// A client that named itself: its id and, for a confidential client, its secret.
#[derive(Debug)]
pub(super) struct PresentedClient {
    client_id: String,
    client_secret: Option<Secret>,
}

impl ClientCredentials {
    /// Basic credentials when the header carries them (a malformed Basic header is
    /// `invalid_client`), else the form's.
    fn parse(
        headers: &HeaderMap,
        client_id: Option<String>,
        client_secret: Option<Secret>,
    ) -> Result<ClientCredentials, OAuthError> {
        let from_form = ClientCredentials {
            client_id,
            client_secret,
        };
        let Some(header) = headers.get(AUTHORIZATION) else {
            return Ok(from_form);
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
            return Ok(from_form);
        };
        let decoded = STANDARD.decode(encoded.trim()).map_err(|_| malformed())?;
        let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
        let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
        Ok(ClientCredentials {
            client_id: Some(form_decode(id)),
            client_secret: Some(Secret::new(form_decode(secret))),
        })
    }

    /// The client, or `missing` when no `client_id` was presented.
    fn presented(
        self,
        missing: impl FnOnce() -> OAuthError,
    ) -> Result<PresentedClient, OAuthError> {
        let client_id = self.client_id.ok_or_else(missing)?;
        Ok(PresentedClient {
            client_id,
            client_secret: self.client_secret,
        })
    }
}

fn form_decode(value: &str) -> String {
    url::form_urlencoded::parse(format!("v={value}").as_bytes())
        .next()
        .map(|(_, decoded)| decoded.into_owned())
        .unwrap_or_default()
}

/// A token request, parsed once from the form and the `Authorization` header: the grant type
/// decides which fields it needs, and a request that lacks one does not become a `TokenRequest`.
#[derive(Debug)]
pub(super) enum TokenRequest {
    /// `client_credentials`: the environment's API client asks for a management token.
    ClientCredentials(ClientCredentials),
    /// `authorization_code` (RFC 6749 §4.1.3, RFC 7636 §4.5).
    AuthorizationCode {
        client: PresentedClient,
        code: AuthorizationCode,
        code_verifier: Option<Secret>,
        redirect_uri: Option<String>,
        resource: Option<String>,
    },
    /// `refresh_token` (RFC 6749 §6).
    RefreshToken {
        client: PresentedClient,
        refresh_token: RefreshToken,
        resource: Option<String>,
        scope: Option<String>,
    },
    /// Another grant type.
    Unsupported(String),
    /// No `grant_type`.
    Missing,
}

impl TokenRequest {
    /// Parses the form. The credentials are read first, whatever the grant type, so a malformed
    /// Basic header is `invalid_client` before anything else; a refusal carries the endpoint its
    /// grant type names.
    pub(super) fn parse(
        form: TokenForm,
        headers: &HeaderMap,
    ) -> Result<TokenRequest, (Endpoint, OAuthError)> {
        let TokenForm {
            grant_type,
            client_id,
            client_secret,
            code,
            code_verifier,
            redirect_uri,
            resource,
            refresh_token,
            scope,
        } = form;
        let credentials = ClientCredentials::parse(headers, client_id, client_secret);
        let client_id_required = || {
            OAuthError::new(OAuthErrorCode::InvalidClient, "client_id is required")
                .failed(Check::ClientAuthenticated)
        };
        match grant_type.as_deref() {
            Some("client_credentials") => {
                let refuse = |error| (Endpoint::TokenClientCredentials, error);
                Ok(TokenRequest::ClientCredentials(
                    credentials.map_err(refuse)?,
                ))
            }
            Some("authorization_code") => {
                let refuse = |error| (Endpoint::TokenAuthorizationCode, error);
                let client = credentials
                    .map_err(|error| refuse(error.failed(Check::ClientAuthenticated)))?
                    .presented(client_id_required)
                    .map_err(refuse)?;
                let code = code.ok_or_else(|| {
                    refuse(OAuthError::new(
                        OAuthErrorCode::InvalidRequest,
                        "code is required",
                    ))
                })?;
                Ok(TokenRequest::AuthorizationCode {
                    client,
                    code,
                    code_verifier,
                    redirect_uri,
                    resource,
                })
            }
            Some("refresh_token") => {
                let refuse = |error| (Endpoint::TokenRefresh, error);
                let client = credentials
                    .map_err(|error| refuse(error.failed(Check::ClientAuthenticated)))?
                    .presented(client_id_required)
                    .map_err(refuse)?;
                let refresh_token = refresh_token.ok_or_else(|| {
                    refuse(OAuthError::new(
                        OAuthErrorCode::InvalidRequest,
                        "refresh_token is required",
                    ))
                })?;
                Ok(TokenRequest::RefreshToken {
                    client,
                    refresh_token,
                    resource,
                    scope,
                })
            }
            Some(other) => {
                credentials.map_err(|error| (Endpoint::TokenOther, error))?;
                Ok(TokenRequest::Unsupported(other.to_owned()))
            }
            None => {
                credentials.map_err(|error| (Endpoint::TokenOther, error))?;
                Ok(TokenRequest::Missing)
            }
        }
    }

    /// The endpoint the grant type names (the flow inspector's view of the token endpoint).
    fn endpoint(&self) -> Endpoint {
        match self {
            TokenRequest::ClientCredentials(_) => Endpoint::TokenClientCredentials,
            TokenRequest::AuthorizationCode { .. } => Endpoint::TokenAuthorizationCode,
            TokenRequest::RefreshToken { .. } => Endpoint::TokenRefresh,
            TokenRequest::Unsupported(_) | TokenRequest::Missing => Endpoint::TokenOther,
        }
    }
}

/// `POST /oauth/token`, also served at `/resources/{res}/oauth/token` (the grant decides the
/// resource, so the path's resource is not read).
pub(super) async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: TokenForm,
) -> Response {
    let request = match TokenRequest::parse(form, &headers) {
        Ok(request) => request,
        Err((endpoint, error)) => return (ServedEndpoint(endpoint), error).into_response(),
    };
    let endpoint = ServedEndpoint(request.endpoint());
    match issue_tokens(&state, request) {
        Ok(response) => (endpoint, response).into_response(),
        Err(error) => (endpoint, error).into_response(),
    }
}

fn issue_tokens(state: &AppState, request: TokenRequest) -> Result<Response, OAuthError> {
    let now = state.clock.now();
    let ids = state.ids.as_ref();
    match request {
        TokenRequest::ClientCredentials(credentials) => {
            let api_client = &state.config.api_client;
            let authenticated = credentials.client_id.as_deref()
                == Some(api_client.client_id.as_str())
                && credentials
                    .client_secret
                    .as_ref()
                    .is_some_and(|secret| api_client.client_secret == *secret);
            if !authenticated {
                return Err(OAuthError::new(
                    OAuthErrorCode::InvalidClient,
                    "client authentication failed",
                )
                .internal(format!(
                    "client_credentials for {:?}",
                    credentials.client_id
                )));
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
        TokenRequest::AuthorizationCode {
            client,
            code,
            code_verifier,
            redirect_uri,
            resource,
        } => {
            let grant = {
                let mut flows = state.flows();
                let client_id = flows.authenticate_client(
                    &client.client_id,
                    client.client_secret.as_ref().map(Secret::expose),
                )?;
                flows.exchange_code(
                    AuthorizationCodeRequest {
                        client_id,
                        code,
                        code_verifier,
                        redirect_uri,
                        resource,
                    },
                    now,
                    ids,
                )?
            };
            mint_for_grant(state, &grant, now)
        }
        TokenRequest::RefreshToken {
            client,
            refresh_token,
            resource,
            scope,
        } => {
            let grant = {
                let mut flows = state.flows();
                let client_id = flows.authenticate_client(
                    &client.client_id,
                    client.client_secret.as_ref().map(Secret::expose),
                )?;
                let refresh_token = flows.present_refresh_token(refresh_token);
                flows.refresh(
                    RefreshRequest {
                        client_id,
                        refresh_token,
                        resource,
                        scope,
                    },
                    now,
                    ids,
                )?
            };
            mint_for_grant(state, &grant, now)
        }
        TokenRequest::Unsupported(grant_type) => Err(OAuthError::new(
            OAuthErrorCode::UnsupportedGrantType,
            format!("grant_type {grant_type} is not supported"),
        )
        .failed(Check::GrantTypeSupported)),
        TokenRequest::Missing => Err(OAuthError::new(
            OAuthErrorCode::InvalidRequest,
            "grant_type is required",
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
            .failed(Check::ResourceMatches)
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

/// The revocation request's form fields as posted (RFC 7009 §2.1). A body that is not a form is
/// `invalid_request`.
#[derive(Debug, Deserialize)]
pub(super) struct RevokeForm {
    token: Option<Secret>,
    client_id: Option<String>,
    client_secret: Option<Secret>,
}

impl<S: Send + Sync> FromRequest<S> for RevokeForm {
    type Rejection = OAuthError;

    async fn from_request(request: Request, state: &S) -> Result<Self, OAuthError> {
        let Form(form) = Form::<RevokeForm>::from_request(request, state)
            .await
            .map_err(|rejection| {
                OAuthError::new(
                    OAuthErrorCode::InvalidRequest,
                    "the revocation request must be a form (application/x-www-form-urlencoded)",
                )
                .internal(rejection.body_text())
            })?;
        Ok(form)
    }
}

/// A revocation request, parsed once: only an authenticated client may revoke (Decisions §1).
#[derive(Debug)]
struct RevokeRequest {
    client: PresentedClient,
    /// The token to revoke: only a refresh token of the client has an effect (RFC 7009 §2.2).
    token: Secret,
}

impl RevokeRequest {
    fn parse(form: RevokeForm, headers: &HeaderMap) -> Result<RevokeRequest, OAuthError> {
        let client = ClientCredentials::parse(headers, form.client_id, form.client_secret)?
            .presented(|| {
                OAuthError::new(
                    OAuthErrorCode::InvalidClient,
                    "client authentication is required to revoke tokens",
                )
            })?;
        let token = form
            .token
            .ok_or_else(|| OAuthError::new(OAuthErrorCode::InvalidRequest, "token is required"))?;
        Ok(RevokeRequest { client, token })
    }
}

/// `POST /oauth/revoke`: 200 with an empty body, whether or not the token was known.
pub(super) async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: RevokeForm,
) -> Result<Response, OAuthError> {
    let RevokeRequest { client, token } = RevokeRequest::parse(form, &headers)?;
    {
        let mut flows = state.flows();
        let token = flows.present_refresh_token(RefreshToken::from(token));
        flows.revoke(
            &client.client_id,
            client.client_secret.as_ref().map(Secret::expose),
            token,
        )?;
    }
    let mut response = StatusCode::OK.into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
