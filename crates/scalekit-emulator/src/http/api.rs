//! `/api/v1`: the user-details call (Decisions §5), Dynamic Client Registration (Decisions §7)
//! and the consent API (list and revoke remembered consents).

use axum::Json;
use axum::extract::State;
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use scalekit_wire::AuthRequestResponse;
use serde::{Deserialize, Serialize};

use super::error::OAuthError;
use super::extract::{
    GatewayPath, GatewayQuery, LoginRequestPath, ManagementCaller, RegistrationBody,
    RegistrationPath, UserBody,
};
use crate::flow::{ClientRegistration, RevokeConsentError};
use crate::management::{ApiError, GrpcCode, submit_user_details};
use crate::state::AppState;

/// The path is read first, then the bearer, then the body: a malformed path is NOT_FOUND even
/// without a token, and a malformed body is only read from an authenticated caller.
pub(super) async fn submit_user(
    State(state): State<AppState>,
    LoginRequestPath(connection, login_request): LoginRequestPath,
    _caller: ManagementCaller,
    UserBody(claims): UserBody,
) -> Result<Json<AuthRequestResponse>, ApiError> {
    let auth_request_id = submit_user_details(&state, &connection, &login_request, claims)?;
    Ok(Json(AuthRequestResponse {
        auth_request_id: auth_request_id.to_string(),
    }))
}

/// RFC 7591 §2 client metadata. Unknown fields are ignored (Decisions §7).
#[derive(Debug, Default, Deserialize)]
pub(super) struct RegistrationRequest {
    #[serde(default)]
    redirect_uris: Vec<String>,
    client_name: Option<String>,
    scope: Option<String>,
    application_type: Option<String>,
    software_id: Option<String>,
    software_version: Option<String>,
    client_uri: Option<String>,
    logo_uri: Option<String>,
    tos_uri: Option<String>,
    policy_uri: Option<String>,
}

/// RFC 7591 §3.2.1 response.
#[derive(Debug, Serialize)]
struct RegistrationResponse {
    client_id: String,
    client_id_issued_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_name: Option<String>,
    redirect_uris: Vec<String>,
    grant_types: Vec<&'static str>,
    response_types: Vec<&'static str>,
    token_endpoint_auth_method: &'static str,
    scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    application_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    software_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    software_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logo_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tos_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy_uri: Option<String>,
}

pub(super) async fn register_client(
    State(state): State<AppState>,
    RegistrationPath(resource): RegistrationPath,
    RegistrationBody(request): RegistrationBody<RegistrationRequest>,
) -> Result<Response, OAuthError> {
    let registration = ClientRegistration {
        client_name: request.client_name,
        redirect_uris: request.redirect_uris,
        scope: request.scope,
    };
    let now = state.clock.now();
    let registered =
        state
            .flows()
            .register_client(&resource, registration, now, state.ids.as_ref())?;
    let response = RegistrationResponse {
        client_id: registered.client_id.to_string(),
        client_id_issued_at: registered.issued_at,
        client_name: registered.client_name,
        redirect_uris: registered.redirect_uris,
        grant_types: vec!["authorization_code", "refresh_token"],
        response_types: vec!["code"],
        token_endpoint_auth_method: "none",
        scope: registered.scope.to_space_separated(),
        application_type: request.application_type,
        software_id: request.software_id,
        software_version: request.software_version,
        client_uri: request.client_uri,
        logo_uri: request.logo_uri,
        tos_uri: request.tos_uri,
        policy_uri: request.policy_uri,
    };
    let mut http = (StatusCode::CREATED, Json(response)).into_response();
    http.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(http)
}

/// `GET /api/v1/user_consents` query: both filters optional.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ConsentsQuery {
    user_id: Option<String>,
    client_id: Option<String>,
}

/// One remembered consent on the wire.
#[derive(Debug, Serialize)]
struct ConsentBody {
    id: String,
    user_id: String,
    client_id: String,
    resource_id: String,
    scopes: Vec<String>,
    /// RFC 3339, as the gateway renders a protobuf `Timestamp`.
    create_time: String,
}

#[derive(Debug, Serialize)]
struct ConsentsBody {
    consents: Vec<ConsentBody>,
}

/// `GET /api/v1/user_consents` (management bearer): the remembered consents, filtered by
/// `user_id` and `client_id` when given, oldest first.
pub(super) async fn list_consents(
    State(state): State<AppState>,
    _caller: ManagementCaller,
    GatewayQuery(query): GatewayQuery<ConsentsQuery>,
) -> Result<Response, ApiError> {
    let consents = state.flows().list_consents(
        query.user_id.as_deref().filter(|id| !id.is_empty()),
        query.client_id.as_deref().filter(|id| !id.is_empty()),
    );
    let consents = consents
        .into_iter()
        .map(|consent| ConsentBody {
            create_time: rfc3339(consent.created_at),
            id: consent.id,
            user_id: consent.user_id,
            client_id: consent.client_id,
            resource_id: consent.resource_id,
            scopes: consent.scopes,
        })
        .collect();
    Ok(Json(ConsentsBody { consents }).into_response())
}

/// `DELETE /api/v1/clients/{client_id}/consents/{consent_id}` (management bearer): 200 `{}`.
/// The next sign-in of that user and client shows the consent page again; tokens already
/// issued stay valid.
pub(super) async fn revoke_consent(
    State(state): State<AppState>,
    GatewayPath((client_id, consent_id)): GatewayPath<(String, String)>,
    _caller: ManagementCaller,
) -> Result<Response, ApiError> {
    state
        .flows()
        .revoke_consent(&client_id, &consent_id)
        .map_err(|error| match error {
            RevokeConsentError::InvalidArgument {
                message,
                violations,
            } => ApiError::invalid_argument(message, violations),
            RevokeConsentError::NotFound(message) => ApiError::new(GrpcCode::NotFound, message),
        })?;
    Ok(Json(serde_json::json!({})).into_response())
}

/// Unix seconds as RFC 3339 in UTC (`2026-01-02T03:04:05Z`).
fn rfc3339(seconds: u64) -> String {
    let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|moment| {
            moment
                .format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
