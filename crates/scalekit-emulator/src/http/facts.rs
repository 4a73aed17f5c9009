//! The facts each route attaches to its answers for whoever observes the traffic (the flow
//! inspector): [`HopFacts`], the endpoint served and, for an error, the check that failed.
//!
//! The route table names each route's endpoint; [`attach`] wraps every route. Handlers and the
//! edge error types say what only they know through two private extensions: an error that knows
//! its check (from its flow reason) carries a [`FailedCheck`], and the token endpoint, whose
//! endpoint is its grant type, a [`ServedEndpoint`]. An error answer that names no check failed
//! its endpoint's general check ([`general_check`]).

use std::convert::Infallible;

use axum::http::StatusCode;
use axum::response::{IntoResponseParts, Response, ResponseParts};
use scalekit_wire::{Check, Endpoint, HopFacts};

/// The check an error answer failed, set by the error that knows it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FailedCheck(pub Check);

/// The endpoint a handler served, when the route alone does not say it (the token endpoint).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServedEndpoint(pub Endpoint);

impl IntoResponseParts for ServedEndpoint {
    type Error = Infallible;

    fn into_response_parts(self, mut parts: ResponseParts) -> Result<ResponseParts, Infallible> {
        parts.extensions_mut().insert(self);
        Ok(parts)
    }
}

/// Replaces the private extensions of a route's answer by its [`HopFacts`].
pub(crate) fn attach(route_endpoint: Endpoint, mut response: Response) -> Response {
    let status = response.status();
    let extensions = response.extensions_mut();
    let endpoint = extensions
        .remove::<ServedEndpoint>()
        .map_or(route_endpoint, |served| served.0);
    let named = extensions.remove::<FailedCheck>().map(|failed| failed.0);
    let error_answer = status.is_client_error() || status.is_server_error();
    // A method the route does not serve was refused before any of the endpoint's checks ran.
    let failed = named.or_else(|| match status {
        StatusCode::METHOD_NOT_ALLOWED => Some(Check::RequestValid),
        _ => error_answer.then(|| general_check(endpoint)),
    });
    extensions.insert(HopFacts { endpoint, failed });
    response
}

/// The check an error of `endpoint` fails when nothing more specific does: whether the request
/// is well formed, for most endpoints; the one check an endpoint makes, for those that make one.
pub(crate) fn general_check(endpoint: Endpoint) -> Check {
    match endpoint {
        Endpoint::Authorize => Check::AuthorizationRequestValid,
        Endpoint::TokenAuthorizationCode
        | Endpoint::TokenRefresh
        | Endpoint::TokenJwtBearer
        | Endpoint::TokenOther
        | Endpoint::IdpTokenExchange => Check::TokenRequestValid,
        Endpoint::TokenClientCredentials => Check::ClientCredentialsValid,
        Endpoint::SubmitUser => Check::UserClaimsValid,
        Endpoint::PartnerCallback => Check::StateMatches,
        Endpoint::Consent => Check::ConsentRequestValid,
        Endpoint::Register => Check::ClientMetadataValid,
        Endpoint::Revoke => Check::ClientAuthenticated,
        Endpoint::Mcp | Endpoint::Other => Check::RequestValid,
    }
}

#[cfg(test)]
mod tests;
