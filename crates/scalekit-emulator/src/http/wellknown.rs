//! `/keys` and the discovery documents.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::jwk::JwkSet;

use super::extract::MetadataResource;
use crate::management::{ApiError, GrpcCode};
use crate::metadata::{self, AuthorizationServerMetadata};
use crate::state::AppState;

pub(super) async fn keys(State(state): State<AppState>) -> Json<JwkSet> {
    Json(state.keys.jwks())
}

pub(super) async fn openid_configuration(
    State(state): State<AppState>,
) -> Json<AuthorizationServerMetadata> {
    Json(metadata::openid_configuration(
        state.environment_url(),
        &state.config,
    ))
}

pub(super) async fn environment_metadata(
    State(state): State<AppState>,
) -> Json<AuthorizationServerMetadata> {
    Json(metadata::environment_metadata(
        state.environment_url(),
        &state.config,
    ))
}

pub(super) async fn resource_metadata(
    State(state): State<AppState>,
    MetadataResource(resource): MetadataResource,
) -> Response {
    match state.config.resource(&resource) {
        Some(resource) => Json(metadata::resource_metadata(
            state.environment_url(),
            &state.config,
            resource,
        ))
        .into_response(),
        None => ApiError::new(GrpcCode::NotFound, format!("resource {resource} not found"))
            .into_response(),
    }
}
