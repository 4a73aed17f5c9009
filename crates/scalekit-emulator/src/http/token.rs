//! `POST /oauth/token` and `POST /oauth/revoke`.
//!
//! The token endpoint is a grant dispatch: [`TokenRequest::parse`] reads the form and the
//! `Authorization` header once into one variant per grant type, and [`issue_tokens`] hands each
//! variant to its own function (`client_credentials`, `authorization_code`, `refresh_token`,
//! `jwt_bearer`).
//! A new grant is a new variant, a new arm in each of the two, and a new function; its refusals
//! carry the [`Endpoint`] its grant type names.

use axum::Form;
use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, PRAGMA};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use scalekit_wire::{Check, Endpoint, OAuthErrorCode, Secret};

use super::error::OAuthError;
use super::facts::ServedEndpoint;
use crate::flow::{
    AgentTokenRequest, AssertionRedemption, AuthorizationCodeRequest, IssuedGrant, JWT_BEARER,
    RefreshRequest,
};
use crate::ids::IdGenerator;
use crate::state::AppState;
use crate::tokens::TokenResponse;
use crate::types::{Assertion, AuthorizationCode, RefreshToken};

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
    /// The docs' `client_credentials` form parameter for the token's audience.
    audience: Option<String>,
    refresh_token: Option<RefreshToken>,
    scope: Option<String>,
    /// RFC 7523 `jwt-bearer`: the identity assertion (ID-JAG).
    assertion: Option<Assertion>,
}

/// The form of an OAuth endpoint's request (`what`, e.g. "the token request"); a body that is not
/// a form of that shape is `invalid_request`, the rejection's text kept for the request log.
pub(super) async fn oauth_form<T, S>(
    request: Request,
    state: &S,
    what: &str,
) -> Result<T, OAuthError>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    let Form(form) = Form::<T>::from_request(request, state)
        .await
        .map_err(|rejection| {
            OAuthError::new(
                OAuthErrorCode::InvalidRequest,
                format!("{what} must be a form (application/x-www-form-urlencoded)"),
            )
            .internal(rejection.body_text())
        })?;
    Ok(form)
}

impl<S: Send + Sync> FromRequest<S> for TokenForm {
    type Rejection = OAuthError;

    async fn from_request(request: Request, state: &S) -> Result<Self, OAuthError> {
        oauth_form(request, state, "the token request").await
    }
}

/// Client credentials as presented: HTTP Basic (RFC 6749 §2.3.1, form-encoded parts) when the
/// `Authorization` header is Basic, else the form's `client_id` and `client_secret`.
#[derive(Debug)]
pub(super) struct ClientCredentials {
    pub(super) client_id: Option<String>,
    pub(super) client_secret: Option<Secret>,
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
    pub(super) fn parse(
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

/// A `client_credentials` request (RFC 6749 §4.4.2): the environment's API client asking for a
/// management token, or an agent asking for a token for its MCP server.
#[derive(Debug)]
pub(super) struct ClientCredentialsRequest {
    credentials: ClientCredentials,
    scope: Option<String>,
    /// RFC 8707 `resource`.
    resource: Option<String>,
    /// The docs' `audience`.
    audience: Option<String>,
}

/// A token request, parsed once from the form and the `Authorization` header: the grant type
/// decides which fields it needs, and a request that lacks one does not become a `TokenRequest`.
#[derive(Debug)]
pub(super) enum TokenRequest {
    /// `client_credentials`.
    ClientCredentials(ClientCredentialsRequest),
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
    /// `urn:ietf:params:oauth:grant-type:jwt-bearer` (RFC 7523 §2.1) with an identity assertion
    /// (cross-app access), while some resource has it on.
    JwtBearer {
        client: PresentedClient,
        assertion: Assertion,
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
    /// grant type names. `jwt-bearer` is a grant type of this environment only while
    /// `cross_app_access` (some resource has Scalekit's XAA toggle on); otherwise it is
    /// unsupported, as any unknown grant type.
    pub(super) fn parse(
        form: TokenForm,
        headers: &HeaderMap,
        cross_app_access: bool,
    ) -> Result<TokenRequest, (Endpoint, OAuthError)> {
        let TokenForm {
            grant_type,
            client_id,
            client_secret,
            code,
            code_verifier,
            redirect_uri,
            resource,
            audience,
            refresh_token,
            scope,
            assertion,
        } = form;
        let credentials = ClientCredentials::parse(headers, client_id, client_secret);
        let client_id_required = || {
            OAuthError::new(OAuthErrorCode::InvalidClient, "client_id is required")
                .failed(Check::ClientAuthenticated)
        };
        match grant_type.as_deref() {
            Some("client_credentials") => {
                let refuse = |error| (Endpoint::TokenClientCredentials, error);
                Ok(TokenRequest::ClientCredentials(ClientCredentialsRequest {
                    credentials: credentials.map_err(refuse)?,
                    scope,
                    resource,
                    audience,
                }))
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
            Some(JWT_BEARER) if cross_app_access => {
                let refuse = |error| (Endpoint::TokenJwtBearer, error);
                let client = credentials
                    .map_err(|error| refuse(error.failed(Check::ClientAuthenticated)))?
                    .presented(client_id_required)
                    .map_err(refuse)?;
                let assertion = assertion
                    .filter(|assertion| !assertion.expose().is_empty())
                    .ok_or_else(|| {
                        refuse(OAuthError::new(
                            OAuthErrorCode::InvalidRequest,
                            "assertion is required",
                        ))
                    })?;
                Ok(TokenRequest::JwtBearer {
                    client,
                    assertion,
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
            TokenRequest::JwtBearer { .. } => Endpoint::TokenJwtBearer,
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
    let cross_app_access = state
        .config
        .resources
        .iter()
        .any(|resource| crate::metadata::cross_app_access_served(&state.config, resource));
    let request = match TokenRequest::parse(form, &headers, cross_app_access) {
        Ok(request) => request,
        Err((endpoint, error)) => return (ServedEndpoint(endpoint), error).into_response(),
    };
    let endpoint = ServedEndpoint(request.endpoint());
    match issue_tokens(&state, request) {
        Ok(response) => (endpoint, response).into_response(),
        Err(error) => (endpoint, error).into_response(),
    }
}

/// The grant dispatch: each grant type to its own function.
fn issue_tokens(state: &AppState, request: TokenRequest) -> Result<Response, OAuthError> {
    let now = state.clock.now();
    let ids = state.ids.as_ref();
    match request {
        TokenRequest::ClientCredentials(request) => client_credentials(state, request, now, ids),
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
        TokenRequest::JwtBearer {
            client,
            assertion,
            resource,
            scope,
        } => jwt_bearer(
            state,
            JwtBearerRequest {
                client,
                assertion,
                resource,
                scope,
            },
            now,
            ids,
        ),
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

/// `client_credentials`: the environment's API client gets a management token (Decisions §3);
/// any other client is looked up among the resources' agents, and an agent gets an access token
/// for its MCP server.
fn client_credentials(
    state: &AppState,
    request: ClientCredentialsRequest,
    now: u64,
    ids: &dyn IdGenerator,
) -> Result<Response, OAuthError> {
    let ClientCredentialsRequest {
        credentials,
        scope,
        resource,
        audience,
    } = request;
    let api_client = &state.config.api_client;
    if credentials.client_id.as_deref() != Some(api_client.client_id.as_str()) {
        let grant = state.flows().agent_token(AgentTokenRequest {
            client_id: credentials.client_id.as_deref().unwrap_or(""),
            client_secret: credentials.client_secret.as_ref().map(Secret::expose),
            scope: scope.as_deref(),
            resource: resource.as_deref(),
            audience: audience.as_deref(),
        })?;
        let resource = state
            .config
            .resource(grant.resource.as_str())
            .ok_or_else(resource_gone)?;
        let response = state
            .minter
            .mint_agent(&state.keys.signing(), &grant, resource, now, ids)
            .map_err(|error| server_error(&error))?;
        return Ok(token_response(&response));
    }
    let authenticated = credentials
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
    // The API client's tokens are the management API's (`aud = [env]`); asking for one bound to
    // an MCP server is refused rather than answered with a token the server would refuse.
    if let Some(resource) = resource {
        return Err(OAuthError::new(
            OAuthErrorCode::InvalidTarget,
            format!(
                "resource {resource} is not for the environment API client, whose tokens are for the management API"
            ),
        )
        .failed(Check::ResourceMatches));
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

/// A `jwt-bearer` request, parsed.
struct JwtBearerRequest {
    client: PresentedClient,
    assertion: Assertion,
    resource: Option<String>,
    scope: Option<String>,
}

/// `jwt-bearer` with an identity assertion (cross-app access, docs/fidelity.md): the client
/// first (a public client by its id, a confidential one by its secret), then the assertion
/// itself (`crate::idp`: structure, `typ`, issuer, signature, times, audience; outside the state
/// lock), then what the state decides (the client it names, single use, resource, scopes). The
/// access token comes without a consent page, a refresh token or an ID token.
fn jwt_bearer(
    state: &AppState,
    request: JwtBearerRequest,
    now: u64,
    ids: &dyn IdGenerator,
) -> Result<Response, OAuthError> {
    let JwtBearerRequest {
        client,
        assertion,
        resource,
        scope,
    } = request;
    let client = state.flows().authenticate_assertion_client(
        &client.client_id,
        client.client_secret.as_ref().map(Secret::expose),
    )?;
    let verified = state
        .idps
        .verify_assertion(assertion.expose(), &state.config.resources, now)
        .map_err(|error| server_error(&error))?
        .map_err(crate::flow::JwtBearerError::from)?;
    // Minted under the state lock, so that the assertion is consumed with the token or not at
    // all (Decision 20: only a redemption that succeeds consumes it).
    let response = state.flows().redeem_assertion(
        AssertionRedemption {
            client,
            assertion: verified,
            resource: resource.as_deref(),
            scope: scope.as_deref(),
        },
        now,
        ids,
        |grant| {
            let resource = state
                .config
                .resource(grant.resource.as_str())
                .ok_or_else(resource_gone)?;
            state
                .minter
                .mint_for_assertion(&state.keys.signing(), grant, resource, now, ids)
                .map_err(|error| server_error(&error))
        },
    )?;
    Ok(token_response(&response))
}

/// A grant or agent whose resource left the configuration (the state directory outlived it).
fn resource_gone() -> OAuthError {
    OAuthError::new(
        OAuthErrorCode::InvalidTarget,
        "the grant's resource is no longer configured",
    )
    .failed(Check::ResourceMatches)
}

fn mint_for_grant(state: &AppState, grant: &IssuedGrant, now: u64) -> Result<Response, OAuthError> {
    let resource = state
        .config
        .resource(grant.resource.as_str())
        .ok_or_else(resource_gone)?;
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

pub(super) fn server_error(error: &dyn std::error::Error) -> OAuthError {
    OAuthError::new(
        OAuthErrorCode::InvalidRequest,
        "the token could not be issued",
    )
    .with_status(StatusCode::INTERNAL_SERVER_ERROR)
    .internal(error.to_string())
}

/// 200 JSON with `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 §5.1).
pub(super) fn token_response(response: &TokenResponse) -> Response {
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
        oauth_form(request, state, "the revocation request").await
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
