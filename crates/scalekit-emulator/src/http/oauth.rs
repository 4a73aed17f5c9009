//! `/oauth/authorize` and `/oauth/consent`; the token and revocation endpoints are `token`.

use std::sync::Arc;

use axum::extract::{FromRequest, Request, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use serde::Deserialize;

use scalekit_wire::{Check, OAuthErrorCode};

use super::EdgeState;
use super::browser::{OwnOrigin, ending_sign_in, presented_browser, with_sign_in_cookie};
use super::error::HostedErrorPage;
use super::extract::{AuthorizeParams, AuthorizePathResource};
use super::facts::FailedCheck;
use crate::flow::cimd::is_document_url;
use crate::flow::{
    AuthorizeError, AuthorizeRequest, ClientRedirect, ConsentError, RedirectOutcome,
};
use crate::state::AppState;
use crate::types::ConsentId;

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
    let (code, description) = match &error {
        AuthorizeError::Redirect(redirect) => return redirect_to(redirect),
        AuthorizeError::MissingClientId | AuthorizeError::InvalidRedirectUri(_) => {
            (OAuthErrorCode::InvalidRequest, error.to_string())
        }
        // Scalekit's docs: `invalid_client_metadata_url` for "a `client_id` that Scalekit never
        // issued", what a client that cached its registration from another environment sees.
        AuthorizeError::UnknownClient(client_id) => (
            OAuthErrorCode::InvalidClientMetadataUrl,
            format!(
                "client {client_id} was not issued by this environment, perhaps cached from \
                 another environment; register again"
            ),
        ),
        AuthorizeError::MetadataDocument(_) => {
            (OAuthErrorCode::InvalidClientMetadataUrl, error.to_string())
        }
        AuthorizeError::InvalidTarget(_) => (OAuthErrorCode::InvalidTarget, error.to_string()),
    };
    HostedErrorPage::new(code, description)
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
