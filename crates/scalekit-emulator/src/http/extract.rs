//! Extractors whose rejection is an edge error: a request that does not parse is answered in the
//! shape of the route it was sent to (STYLE §7), never with axum's plain-text rejection. Each one
//! keeps the words its route answered with before it existed.
//!
//! The extractors that also parse (the token and revocation forms, the consent decision, the
//! control API's JSON bodies) live beside their handlers.

use std::fmt;
use std::marker::PhantomData;

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use scalekit_wire::UserClaims;
use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use scalekit_wire::{Check, OAuthErrorCode};

use super::error::{ErrorPageRedirect, HostedErrorPage, OAuthError};
use crate::management::{ApiError, GrpcCode, authenticate_management, bearer};
use crate::state::AppState;

/// A JSON body that must be an object. serde's derived structs also read a JSON array, field by
/// field in declaration order (`["u1", "a@b.c"]` is a user with `sub` and `email`), which no
/// document describes and the gateway refuses; this reads only an object into `T`, with serde's
/// messages (and their positions) for everything else unchanged.
#[derive(Debug)]
pub(super) struct JsonObject<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for JsonObject<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }

        deserializer
            .deserialize_map(ObjectVisitor(PhantomData))
            .map(JsonObject)
    }
}

/// Path parameters of a gateway route; a malformed one is NOT_FOUND.
#[derive(Debug)]
pub(super) struct GatewayPath<T>(pub T);

impl<T, S> FromRequestParts<S> for GatewayPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(value) = Path::<T>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::new(GrpcCode::NotFound, rejection.body_text()))?;
        Ok(GatewayPath(value))
    }
}

/// `{connection}` and `{login_request}` of the user-details call; a malformed one is NOT_FOUND,
/// as the login request cannot be pending.
#[derive(Debug)]
pub(super) struct LoginRequestPath(pub String, pub String);

impl<S: Send + Sync> FromRequestParts<S> for LoginRequestPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path((connection, login_request)) =
            Path::<(String, String)>::from_request_parts(parts, state)
                .await
                .map_err(|rejection| {
                    ApiError::new(GrpcCode::NotFound, rejection.body_text())
                        .failed(Check::LoginRequestPending)
                })?;
        Ok(LoginRequestPath(connection, login_request))
    }
}

/// The query of a gateway route; a malformed one is INVALID_ARGUMENT.
#[derive(Debug)]
pub(super) struct GatewayQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for GatewayQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(value) = Query::<T>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::new(GrpcCode::InvalidArgument, rejection.body_text()))?;
        Ok(GatewayQuery(value))
    }
}

/// A request that carries a live management token of this environment (see
/// [`authenticate_management`]); any other is UNAUTHENTICATED.
#[derive(Debug)]
pub(super) struct ManagementCaller;

impl FromRequestParts<AppState> for ManagementCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authenticate_management(state, bearer(&parts.headers))?;
        Ok(ManagementCaller)
    }
}

/// The user object of the user-details call; anything else is INVALID_ARGUMENT.
#[derive(Debug)]
pub(super) struct UserBody(pub UserClaims);

impl<S: Send + Sync> FromRequest<S> for UserBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let Json(JsonObject(claims)) = Json::<JsonObject<UserClaims>>::from_request(request, state)
            .await
            .map_err(|rejection| {
                ApiError::new(
                    GrpcCode::InvalidArgument,
                    format!("invalid user: {}", rejection.body_text()),
                )
            })?;
        Ok(UserBody(claims))
    }
}

/// `{resource}` of the registration endpoint; a malformed one is 404 `invalid_request`.
#[derive(Debug)]
pub(super) struct RegistrationPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RegistrationPath {
    type Rejection = OAuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, OAuthError> {
        let Path(resource) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| {
                OAuthError::new(OAuthErrorCode::InvalidRequest, rejection.body_text())
                    .with_status(StatusCode::NOT_FOUND)
            })?;
        Ok(RegistrationPath(resource))
    }
}

/// RFC 7591 client metadata; a body that is not a JSON object is `invalid_client_metadata`.
#[derive(Debug)]
pub(super) struct RegistrationBody<T>(pub T);

impl<T, S> FromRequest<S> for RegistrationBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = OAuthError;

    async fn from_request(request: Request, state: &S) -> Result<Self, OAuthError> {
        let Json(JsonObject(value)) = Json::<JsonObject<T>>::from_request(request, state)
            .await
            .map_err(|rejection| {
                OAuthError::new(
                    OAuthErrorCode::InvalidClientMetadata,
                    "the registration request must be a JSON object",
                )
                .internal(rejection.body_text())
            })?;
        Ok(RegistrationBody(value))
    }
}

/// The authorization request's query; a malformed one gets the hosted error page.
#[derive(Debug)]
pub(super) struct AuthorizeParams<T>(pub T);

impl<T, S> FromRequestParts<S> for AuthorizeParams<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = HostedErrorPage;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HostedErrorPage> {
        let Query(value) =
            Query::<T>::from_request_parts(parts, state)
                .await
                .map_err(|rejection| {
                    HostedErrorPage::new(OAuthErrorCode::InvalidRequest, rejection.body_text())
                })?;
        Ok(AuthorizeParams(value))
    }
}

/// `{resource}` of `/resources/{resource}/oauth/authorize`; a malformed one gets the hosted
/// error page.
#[derive(Debug)]
pub(super) struct AuthorizePathResource(pub String);

impl<S: Send + Sync> FromRequestParts<S> for AuthorizePathResource {
    type Rejection = HostedErrorPage;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HostedErrorPage> {
        let Path(resource) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| {
                HostedErrorPage::new(
                    OAuthErrorCode::InvalidRequest,
                    "the resource in the path is malformed",
                )
                .failed(Check::ResourceMatches)
            })?;
        Ok(AuthorizePathResource(resource))
    }
}

/// `{connection}` of the partner callback; a malformed one (a segment that does not decode) gets
/// the hosted error page `invalid_request` at the callback's URL: it names no connection, so
/// there is no sign-in whose `state` could be judged.
#[derive(Debug)]
pub(super) struct CallbackConnection(pub String);

impl<S: Send + Sync> FromRequestParts<S> for CallbackConnection {
    type Rejection = HostedErrorPage;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HostedErrorPage> {
        let Path(connection) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| {
                HostedErrorPage::new(
                    OAuthErrorCode::InvalidRequest,
                    "the connection in the path is malformed",
                )
            })?;
        Ok(CallbackConnection(connection))
    }
}

/// The partner callback's `state`, which it requires: without one, the browser is sent to the
/// hosted `invalid_state` page, as for any `state` that does not match.
#[derive(Debug)]
pub(super) struct CallbackState(pub String);

/// The partner callback's query.
#[derive(Debug, serde::Deserialize)]
struct CallbackQuery {
    state: Option<String>,
}

impl FromRequestParts<AppState> for CallbackState {
    type Rejection = ErrorPageRedirect;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, ErrorPageRedirect> {
        let Ok(Query(CallbackQuery {
            state: Some(login_state),
        })) = Query::<CallbackQuery>::from_request_parts(parts, state).await
        else {
            return Err(HostedErrorPage::new(
                OAuthErrorCode::InvalidState,
                super::error_page::STATE_REQUIRED,
            )
            .failed(Check::StateMatches)
            .redirect_from(state.environment_url()));
        };
        Ok(CallbackState(login_state))
    }
}

/// `{resource}` of a resource's metadata document; a malformed one is NOT_FOUND.
#[derive(Debug)]
pub(super) struct MetadataResource(pub String);

impl<S: Send + Sync> FromRequestParts<S> for MetadataResource {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(resource) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::new(GrpcCode::NotFound, "resource not found"))?;
        Ok(MetadataResource(resource))
    }
}
