//! `/_emulator/keys`: list, rotate and retire the environment's signing keys (Decisions §10), so
//! that an MCP server can be checked for refetching the JWKS when a token names a `kid` it has
//! not seen. With a state directory every change is saved before it is answered.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::OptionalControlBody;
use crate::keys::{RetireError, Signer};
use crate::management::{ApiError, GrpcCode};
use crate::state::AppState;
use crate::store::StoreError;

/// `GET /_emulator/keys`.
#[derive(Debug, Serialize)]
pub(super) struct KeysResponse {
    keys: Vec<KeyView>,
}

#[derive(Debug, Serialize)]
struct KeyView {
    kid: String,
    /// Whether this key signs new tokens (the first one).
    signing: bool,
}

/// `POST /_emulator/keys/rotate` takes no fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RotateRequest {}

#[derive(Debug, Serialize)]
pub(super) struct RotateResponse {
    /// The new signing key.
    kid: String,
    /// Every published key, JWKS order.
    keys: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RetireRequest {
    /// The key to drop; absent: every key but the signing one.
    kid: Option<String>,
}

#[derive(Debug, Serialize)]
pub(super) struct RetireResponse {
    retired: Vec<String>,
    keys: Vec<String>,
}

/// The published keys in JWKS order, the signing one first.
pub(super) async fn list(State(state): State<AppState>) -> Json<KeysResponse> {
    let keys = state
        .keys
        .kids()
        .into_iter()
        .enumerate()
        .map(|(position, kid)| KeyView {
            kid,
            signing: position == 0,
        })
        .collect();
    Json(KeysResponse { keys })
}

/// A new RSA-2048 key signs from now on; every older key stays published.
pub(super) async fn rotate(
    State(state): State<AppState>,
    OptionalControlBody(RotateRequest {}): OptionalControlBody<RotateRequest>,
) -> Result<Json<RotateResponse>, ApiError> {
    // RSA key generation takes tens of milliseconds: not on a runtime worker.
    let signer = tokio::task::spawn_blocking(Signer::generate)
        .await
        .map_err(|error| internal(format!("key generation did not finish: {error}")))?
        .map_err(|error| internal(format!("{error}")))?;
    let kid = signer.kid().to_owned();
    let keys = state
        .keys
        .rotate(signer, |keys| save(&state, keys))
        .map_err(|error| internal(format!("cannot save the key ring: {error}")))?;
    tracing::info!(%kid, "signing key rotated through the control API");
    Ok(Json(RotateResponse { kid, keys }))
}

/// Drops the key `kid`, or every key but the signing one; the management tokens a dropped key
/// signed stop verifying.
pub(super) async fn retire(
    State(state): State<AppState>,
    OptionalControlBody(RetireRequest { kid }): OptionalControlBody<RetireRequest>,
) -> Result<Json<RetireResponse>, ApiError> {
    let retired = state
        .keys
        .retire(kid.as_deref(), |keys| save(&state, keys))
        .map_err(|error| match error {
            RetireError::NothingToRetire { .. } | RetireError::SigningKey { .. } => {
                ApiError::new(GrpcCode::FailedPrecondition, error.to_string())
            }
            RetireError::UnknownKid { .. } => ApiError::new(GrpcCode::NotFound, error.to_string()),
            RetireError::Save(source) => internal(format!("cannot save the key ring: {source}")),
        })?;
    tracing::info!(retired = ?retired.retired, "signing keys retired through the control API");
    Ok(Json(RetireResponse {
        retired: retired.retired,
        keys: retired.keys,
    }))
}

/// Writes the new ring to the state directory, when the emulator keeps its keys there.
fn save(state: &AppState, keys: &[Arc<Signer>]) -> Result<(), StoreError> {
    match &state.key_store {
        Some(store) => store.save_key_ring(keys),
        None => Ok(()),
    }
}

fn internal(message: String) -> ApiError {
    ApiError::new(GrpcCode::Internal, message)
}
