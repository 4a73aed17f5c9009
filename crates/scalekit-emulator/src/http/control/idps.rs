//! `/_emulator/idps`: the companies' identity providers the environment trusts for cross-app
//! access, which the emulator plays (`crate::idp`). List them (never a secret), sign a person in
//! (`id-token`: the ID token a single sign-on would give an MCP client, the subject token of the
//! identity provider's token exchange), and make ID-JAGs to order (`id-jag`: a valid one by
//! default, or with any header or claim changed and any signature, so that each check of the
//! token endpoint's `jwt-bearer` grant can be failed on its own).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::super::extract::GatewayPath;
use super::super::idp::no_store;
use super::{OptionalControlBody, WholeNumber};
use crate::config::{IdpUserConfig, MAX_ID_TOKEN_LIFETIME_SECS};
use crate::idp::{SignedBy, TrustedIdp, TrustedIdps};
use crate::management::{ApiError, GrpcCode, violation};
use crate::state::AppState;
use crate::types::{Assertion, IdpIdToken};

/// The longest lifetime `id-jag` takes: longer than the token endpoint accepts, so that an
/// assertion living too long can be made.
const MAX_MINTED_ID_JAG_LIFETIME_SECS: u64 = 24 * 3600;

#[derive(Debug, Serialize)]
pub(super) struct IdpsBody {
    idps: Vec<IdpBody>,
}

/// An identity provider as listed.
#[derive(Debug, Serialize)]
struct IdpBody {
    id: String,
    name: Option<String>,
    issuer: String,
    metadata_url: String,
    token_endpoint: String,
    jwks_uri: String,
    id_jag_lifetime_secs: u64,
    id_token_lifetime_secs: u64,
    clients: Vec<IdpClientBody>,
    users: Vec<IdpUserConfig>,
}

/// A client of an identity provider as listed: never its secret.
#[derive(Debug, Serialize)]
struct IdpClientBody {
    client_id: String,
    resource_client_id: String,
}

/// `GET /_emulator/idps`.
pub(super) async fn list(State(state): State<AppState>) -> Json<IdpsBody> {
    let environment_url = state.environment_url().to_owned();
    let idps = state
        .idps
        .all()
        .iter()
        .map(|idp| IdpBody {
            id: idp.id.to_string(),
            name: idp.config.name.clone(),
            issuer: idp.issuer.clone(),
            metadata_url: format!(
                "{environment_url}/.well-known/oauth-authorization-server/_idp/{}",
                idp.id
            ),
            token_endpoint: idp.token_endpoint(),
            jwks_uri: idp.jwks_uri(),
            id_jag_lifetime_secs: idp.config.id_jag_lifetime_secs,
            id_token_lifetime_secs: idp.config.id_token_lifetime_secs,
            clients: idp
                .config
                .clients
                .iter()
                .map(|client| IdpClientBody {
                    client_id: client.client_id.clone(),
                    resource_client_id: client.resource_client_id.clone(),
                })
                .collect(),
            users: idp.config.users.clone(),
        })
        .collect();
    Json(IdpsBody { idps })
}

fn idp<'a>(state: &'a AppState, id: &str) -> Result<&'a TrustedIdp, ApiError> {
    state.idps.get(id).ok_or_else(|| {
        ApiError::new(
            GrpcCode::NotFound,
            format!("identity provider {id} not found"),
        )
    })
}

/// The user `sub` names, else the identity provider's first.
fn user<'a>(idp: &'a TrustedIdp, sub: Option<&str>) -> Result<&'a IdpUserConfig, ApiError> {
    match sub {
        Some(sub) => idp.user(sub).ok_or_else(|| {
            ApiError::new(
                GrpcCode::NotFound,
                format!("user {sub} not found at identity provider {}", idp.id),
            )
        }),
        None => idp.config.users.first().ok_or_else(|| {
            ApiError::new(
                GrpcCode::NotFound,
                format!(
                    "identity provider {} has no users; name one in user",
                    idp.id
                ),
            )
        }),
    }
}

/// `lifetime_secs`, from 1 to `max`, else `default`.
fn lifetime(requested: Option<WholeNumber>, default: u64, max: u64) -> Result<u64, ApiError> {
    match requested {
        None => Ok(default),
        Some(WholeNumber(secs)) if (1..=max).contains(&secs) => Ok(secs),
        Some(_) => Err(ApiError::invalid_argument(
            "invalid request",
            vec![violation(
                "lifetime_secs",
                format!("must be from 1 to {max}"),
            )],
        )),
    }
}

/// `POST /_emulator/idps/{idp}/id-token`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IdTokenRequest {
    /// The user's `sub`; default the first user.
    user: Option<String>,
    /// The client at the identity provider the token is for (`aud`, any id); default the first
    /// client.
    client_id: Option<String>,
    /// Default the identity provider's `id_token_lifetime_secs`.
    lifetime_secs: Option<WholeNumber>,
}

#[derive(Debug, Serialize)]
struct IdTokenBody {
    id_token: IdpIdToken,
    claims: Map<String, Value>,
    expires_in: u64,
}

/// 200 with an ID token of the identity provider (`no-store`).
pub(super) async fn id_token(
    State(state): State<AppState>,
    GatewayPath(id): GatewayPath<String>,
    OptionalControlBody(request): OptionalControlBody<IdTokenRequest>,
) -> Result<Response, ApiError> {
    let idp = idp(&state, &id)?;
    let user = user(idp, request.user.as_deref())?;
    let audience = match request.client_id {
        Some(client_id) => client_id,
        None => idp
            .config
            .clients
            .first()
            .map(|client| client.client_id.clone())
            .ok_or_else(|| {
                ApiError::new(
                    GrpcCode::NotFound,
                    format!(
                        "identity provider {} has no clients; name one in client_id",
                        idp.id
                    ),
                )
            })?,
    };
    let lifetime = lifetime(
        request.lifetime_secs,
        idp.config.id_token_lifetime_secs,
        MAX_ID_TOKEN_LIFETIME_SECS,
    )?;
    let minted = state
        .idps
        .mint_id_token(
            idp,
            user,
            &audience,
            lifetime,
            state.clock.now(),
            state.ids.as_ref(),
        )
        .map_err(|error| ApiError::new(GrpcCode::Internal, error.to_string()))?;
    let mut response = Json(IdTokenBody {
        id_token: IdpIdToken::new(minted.token),
        claims: minted.claims,
        expires_in: lifetime,
    })
    .into_response();
    no_store(&mut response);
    Ok(response)
}

/// What signs an ID-JAG made to order.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum SignedByName {
    /// The identity provider's key.
    Idp,
    /// The environment's signing key.
    Environment,
    /// A fresh key nobody publishes.
    UnknownKey,
    /// `alg: none`, an empty signature.
    None,
}

/// `POST /_emulator/idps/{idp}/id-jag`: every field optional; the defaults make the ID-JAG the
/// identity provider's token exchange would issue for its first user and client, for the first
/// MCP server with cross-app access on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IdJagRequest {
    /// The user's `sub` (a user of the identity provider).
    user: Option<String>,
    /// The `client_id` claim: the client at this environment; default the first client's
    /// `resource_client_id`.
    client_id: Option<String>,
    /// `aud`; default `{env}/resources/{res}` of the first MCP server with cross-app access on.
    audience: Option<String>,
    /// `resource`; default that MCP server's Server URL.
    resource: Option<String>,
    /// `scope`; default none.
    scope: Option<String>,
    /// Default the identity provider's `id_jag_lifetime_secs`.
    lifetime_secs: Option<WholeNumber>,
    /// Header members merged last (`null` removes one).
    header: Option<Map<String, Value>>,
    /// Claims merged last (`null` removes one).
    claims: Option<Map<String, Value>>,
    /// `idp` (default), `environment`, `unknown-key` or `none`.
    signed_by: Option<SignedByName>,
}

#[derive(Debug, Serialize)]
struct IdJagBody {
    id_jag: Assertion,
    header: Map<String, Value>,
    claims: Map<String, Value>,
    expires_in: u64,
}

/// 200 with an ID-JAG as asked (`no-store`).
pub(super) async fn id_jag(
    State(state): State<AppState>,
    GatewayPath(id): GatewayPath<String>,
    OptionalControlBody(request): OptionalControlBody<IdJagRequest>,
) -> Result<Response, ApiError> {
    let idp = idp(&state, &id)?;
    let user = user(idp, request.user.as_deref())?;
    let client_id = match request.client_id {
        Some(client_id) => client_id,
        None => idp
            .config
            .clients
            .first()
            .map(|client| client.resource_client_id.clone())
            .ok_or_else(|| {
                ApiError::new(
                    GrpcCode::NotFound,
                    format!(
                        "identity provider {} has no clients; name one in client_id",
                        idp.id
                    ),
                )
            })?,
    };
    let resources = &state.config.resources;
    let default_resource = resources
        .iter()
        .find(|resource| resource.cross_app_access)
        .or_else(|| resources.first());
    let audience = match (request.audience, default_resource) {
        (Some(audience), _) => audience,
        (None, Some(resource)) => format!("{}/resources/{}", state.environment_url(), resource.id),
        (None, None) => state.environment_url().to_owned(),
    };
    let resource = request
        .resource
        .or_else(|| default_resource.map(|resource| resource.resource_indicator().to_owned()));
    let lifetime = lifetime(
        request.lifetime_secs,
        idp.config.id_jag_lifetime_secs,
        MAX_MINTED_ID_JAG_LIFETIME_SECS,
    )?;
    let mut claims = state.idps.id_jag_claims(
        idp,
        user,
        &client_id,
        &audience,
        resource.as_deref(),
        request.scope.as_deref(),
        lifetime,
        state.clock.now(),
        state.ids.as_ref(),
    );
    TrustedIdps::merge_claims(&mut claims, request.claims.unwrap_or_default());
    let signed_by = match request.signed_by.unwrap_or(SignedByName::Idp) {
        SignedByName::Idp => SignedBy::Idp,
        SignedByName::Environment => SignedBy::Environment,
        SignedByName::UnknownKey => SignedBy::UnknownKey,
        SignedByName::None => SignedBy::Nothing,
    };
    let minted = state
        .idps
        .sign_id_jag(
            idp,
            claims,
            request.header.unwrap_or_default(),
            signed_by,
            &state.keys.signing(),
        )
        .map_err(|error| ApiError::new(GrpcCode::Internal, error.to_string()))?;
    let mut response = Json(IdJagBody {
        id_jag: Assertion::new(minted.token),
        header: minted.header,
        claims: minted.claims,
        expires_in: lifetime,
    })
    .into_response();
    no_store(&mut response);
    Ok(response)
}
