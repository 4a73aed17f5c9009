//! `POST /_emulator/tokens`: an MCP access token in exactly the shape a real flow's token has,
//! signed by the current signing key on the emulator's clock, optionally with one deliberate
//! defect ([`crate::tokens::crafted`]), so that an MCP server's token checks can be tested one
//! at a time without running a sign-in.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::http::header::{CACHE_CONTROL, PRAGMA};
use axum::response::{IntoResponse, Response};
use scalekit_wire::{FieldViolation, prefix};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{OptionalControlBody, whole_number};
use crate::config::ResourceConfig;
use crate::management::{ApiError, GrpcCode, violation};
use crate::state::AppState;
use crate::tokens::AccessTokenClaims;
use crate::tokens::crafted::{self, Defect, DefectKind, FOREIGN_AUDIENCE};
use crate::types::AccessToken;

/// The longest lifetime a minted token may ask for: a year.
const MAX_LIFETIME_SECS: u64 = 31_536_000;

/// How many ids are drawn, at most, to find one that differs from what it must not be.
const ID_ATTEMPTS: usize = 8;

/// The request: every field optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MintRequest {
    /// A `res_…` id or a resource's Server URL; default the first resource.
    resource: Option<String>,
    /// Default a fresh `usr_…`.
    sub: Option<String>,
    /// Default `sub`.
    xuid: Option<String>,
    email: Option<String>,
    /// Default a fresh `m2m_…`.
    client_id: Option<String>,
    /// Default every scope of the resource.
    scopes: Option<Vec<String>>,
    /// Default the resource's access-token lifetime; checked here to name the field.
    lifetime_secs: Option<Value>,
    /// `environment` or `resource`; default per the resource's `issuer_bound_tokens`.
    issuer: Option<String>,
    /// A JSON object merged over the standard claims, last.
    claims: Option<Value>,
    /// A [`DefectKind`] name.
    defect: Option<String>,
}

/// The answer: the token and what it carries.
#[derive(Debug, Serialize)]
struct MintResponse {
    access_token: AccessToken,
    token_type: &'static str,
    /// `max(exp - now, 0)`.
    expires_in: u64,
    scope: String,
    header: Map<String, Value>,
    claims: Map<String, Value>,
}

/// Which issuer the token names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IssuerChoice {
    Environment,
    Resource,
}

pub(super) async fn mint(
    State(state): State<AppState>,
    OptionalControlBody(request): OptionalControlBody<MintRequest>,
) -> Result<Response, ApiError> {
    let mut violations = Vec::new();

    let resource = resolve_resource(&state, request.resource.as_deref(), &mut violations);
    let scopes = match (resource, request.scopes) {
        (Some(resource), Some(scopes)) => {
            for scope in &scopes {
                if !resource.scopes.contains(scope) {
                    violations.push(violation(
                        "scopes",
                        format!("{scope:?} is not a scope of {}", resource.id),
                    ));
                }
            }
            scopes
        }
        (Some(resource), None) => resource.scopes.clone(),
        (None, scopes) => scopes.unwrap_or_default(),
    };
    let lifetime_secs = match &request.lifetime_secs {
        None => resource.map(|resource| resource.access_token_lifetime_secs),
        Some(value) => match value.as_number().and_then(whole_number) {
            Some(lifetime) if (1..=MAX_LIFETIME_SECS).contains(&lifetime) => Some(lifetime),
            _ => {
                violations.push(violation(
                    "lifetime_secs",
                    format!("must be an integer from 1 to {MAX_LIFETIME_SECS}"),
                ));
                None
            }
        },
    };
    let issuer = match request.issuer.as_deref() {
        None => None,
        Some("environment") => Some(IssuerChoice::Environment),
        Some("resource") => Some(IssuerChoice::Resource),
        Some(_) => {
            violations.push(violation(
                "issuer",
                "must be \"environment\" or \"resource\"",
            ));
            None
        }
    };
    let defect = match request.defect.as_deref() {
        None => None,
        Some(name) => {
            let kind = DefectKind::parse(name);
            if kind.is_none() {
                let names: Vec<&str> = DefectKind::ALL.iter().map(|kind| kind.name()).collect();
                violations.push(violation(
                    "defect",
                    format!("must be one of {}", names.join(", ")),
                ));
            }
            kind
        }
    };
    let extra_claims = match request.claims {
        None => Map::new(),
        Some(Value::Object(claims)) => claims,
        Some(_) => {
            violations.push(violation("claims", "must be a JSON object"));
            Map::new()
        }
    };
    let (Some(resource), Some(lifetime_secs), true) =
        (resource, lifetime_secs, violations.is_empty())
    else {
        return Err(ApiError::invalid_argument("invalid request", violations));
    };

    let ids = state.ids.as_ref();
    let now = state.clock.now();
    let issuer_bound = match issuer {
        Some(choice) => choice == IssuerChoice::Resource,
        None => resource.issuer_bound_tokens,
    };
    let iss = if issuer_bound {
        format!("{}/resources/{}", state.environment_url(), resource.id)
    } else {
        state.environment_url().to_owned()
    };
    let sub = request.sub.unwrap_or_else(|| ids.id(prefix::USER));
    let claims = AccessTokenClaims {
        iss,
        aud: resource.audience(),
        xuid: request.xuid.unwrap_or_else(|| sub.clone()),
        sub,
        scope: scopes.join(" "),
        scopes,
        client_id: request
            .client_id
            .unwrap_or_else(|| ids.id(prefix::MCP_CLIENT)),
        jti: ids.id(prefix::TOKEN),
        sid: ids.id(prefix::SESSION),
        iat: now,
        nbf: now,
        exp: now.saturating_add(lifetime_secs),
        email: request.email,
        custom_claims: None,
        oid: None,
        roles: Vec::new(),
    };
    let signer = state.keys.signing();
    let defect = defect.map(|kind| match kind {
        DefectKind::WrongAudience => {
            let audience = state
                .config
                .resources
                .iter()
                .find(|other| other.id != resource.id)
                .map(ResourceConfig::audience)
                .unwrap_or_else(|| FOREIGN_AUDIENCE.map(str::to_owned).to_vec());
            Defect::WrongAudience(audience)
        }
        DefectKind::WrongIssuer => Defect::WrongIssuer,
        DefectKind::Expired => Defect::Expired,
        DefectKind::NotYetValid => Defect::NotYetValid,
        DefectKind::IssuedInFuture => Defect::IssuedInFuture,
        DefectKind::AlgNone => Defect::AlgNone,
        DefectKind::Hs256PublicKey => Defect::Hs256PublicKey,
        DefectKind::UnknownKid => Defect::UnknownKid(fresh_id(
            || ids.id(prefix::SIGNING_KEY),
            |kid| state.keys.find(kid).is_none(),
            // Derived kids have 18 digits and never start with 0.
            "snk_000000000000000001",
        )),
        DefectKind::AlteredPayload => Defect::AlteredPayload {
            sub: fresh_id(
                || ids.id(prefix::USER),
                |sub| sub != claims.sub,
                "usr_000000000000000001",
            ),
        },
    });
    let crafted = crafted::craft(&signer, &claims, &extra_claims, defect.as_ref())
        .map_err(|error| ApiError::new(GrpcCode::Internal, format!("{error}")))?;
    let exp = crafted
        .claims
        .get("exp")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let response = MintResponse {
        access_token: crafted.token,
        token_type: "Bearer",
        expires_in: exp.saturating_sub(now),
        scope: claims.scope,
        header: crafted.header,
        claims: crafted.claims,
    };
    let mut response = Json(response).into_response();
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// The resource a request names (by Server URL, then by id; Decisions §2), else the first one.
fn resolve_resource<'a>(
    state: &'a AppState,
    value: Option<&str>,
    violations: &mut Vec<FieldViolation>,
) -> Option<&'a ResourceConfig> {
    let resources = &state.config.resources;
    let Some(value) = value else {
        let first = resources.first();
        if first.is_none() {
            violations.push(violation("resource", "the environment has no resource"));
        }
        return first;
    };
    let by_url = resources
        .iter()
        .find(|resource| resource.has_server_url(value));
    let found = by_url.or_else(|| resources.iter().find(|resource| resource.id == value));
    if found.is_none() {
        violations.push(violation(
            "resource",
            format!("no resource has the id or Server URL {value:?}"),
        ));
    }
    found
}

/// An id from `next` that `acceptable` takes, drawn at most [`ID_ATTEMPTS`] times (a custom
/// generator may repeat itself), else `fallback`.
fn fresh_id(
    next: impl Fn() -> String,
    acceptable: impl Fn(&str) -> bool,
    fallback: &str,
) -> String {
    (0..ID_ATTEMPTS)
        .map(|_| next())
        .find(|id| acceptable(id))
        .unwrap_or_else(|| fallback.to_owned())
}
