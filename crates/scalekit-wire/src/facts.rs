//! Facts about an answer, as types: the OAuth error code, what an error answer said, which
//! endpoint served a request and which of its checks failed. Handlers attach them to their
//! responses (as response extensions) and whoever observes the traffic (the request log, the flow
//! inspector) reads them there, so nothing learns what happened by parsing a body, a page title
//! or a path. They also cross process boundaries in the control API's JSON (`/_emulator/requests`,
//! `/_emulator/flows`), which the conformance harness reads.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An OAuth error code: RFC 6749 §4.1.2.1 and §5.2, RFC 6750 §3.1, RFC 7591 §3.2.2, RFC 8707 §2,
/// the two Scalekit names (`invalid_state`, `invalid_client_metadata_url`), and the hosted error
/// page's names for a sign-in finished outside the browser that started it (Decisions §9:
/// `browser_session_missing`, `browser_session_mismatch`, `foreign_origin`). One enum for every
/// place that writes or reads one: JSON error bodies, error redirects, the hosted error page, and
/// the flow inspector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OAuthErrorCode {
    /// `invalid_request`.
    InvalidRequest,
    /// `invalid_client` (answered with 401).
    InvalidClient,
    /// `invalid_grant`.
    InvalidGrant,
    /// `unauthorized_client`.
    UnauthorizedClient,
    /// `unsupported_grant_type`.
    UnsupportedGrantType,
    /// `unsupported_response_type`.
    UnsupportedResponseType,
    /// `invalid_scope`.
    InvalidScope,
    /// `invalid_target` (RFC 8707).
    InvalidTarget,
    /// `access_denied`.
    AccessDenied,
    /// `temporarily_unavailable`.
    TemporarilyUnavailable,
    /// `server_error`.
    ServerError,
    /// `invalid_redirect_uri` (RFC 7591).
    InvalidRedirectUri,
    /// `invalid_client_metadata` (RFC 7591).
    InvalidClientMetadata,
    /// `invalid_client_metadata_url`: Scalekit's error for a Client ID Metadata Document.
    InvalidClientMetadataUrl,
    /// `invalid_state`: Scalekit's error page for an expired or mismatched login `state`.
    InvalidState,
    /// `invalid_token` (RFC 6750, a resource server's challenge).
    InvalidToken,
    /// `insufficient_scope` (RFC 6750, a resource server's challenge).
    InsufficientScope,
    /// `browser_session_missing`: the hosted error page for a callback or consent decision that
    /// came without the sign-in's cookie (a server-side fetch, a user agent that drops cookies).
    BrowserSessionMissing,
    /// `browser_session_mismatch`: the same for one whose sign-in cookies are not this
    /// sign-in's (another browser).
    BrowserSessionMismatch,
    /// `foreign_origin`: the hosted error page (403) for a consent form posted from another
    /// origin than the environment's own.
    ForeignOrigin,
}

impl OAuthErrorCode {
    /// Every code.
    pub const ALL: [OAuthErrorCode; 20] = [
        Self::InvalidRequest,
        Self::InvalidClient,
        Self::InvalidGrant,
        Self::UnauthorizedClient,
        Self::UnsupportedGrantType,
        Self::UnsupportedResponseType,
        Self::InvalidScope,
        Self::InvalidTarget,
        Self::AccessDenied,
        Self::TemporarilyUnavailable,
        Self::ServerError,
        Self::InvalidRedirectUri,
        Self::InvalidClientMetadata,
        Self::InvalidClientMetadataUrl,
        Self::InvalidState,
        Self::InvalidToken,
        Self::InsufficientScope,
        Self::BrowserSessionMissing,
        Self::BrowserSessionMismatch,
        Self::ForeignOrigin,
    ];

    /// The wire code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidTarget => "invalid_target",
            Self::AccessDenied => "access_denied",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::ServerError => "server_error",
            Self::InvalidRedirectUri => "invalid_redirect_uri",
            Self::InvalidClientMetadata => "invalid_client_metadata",
            Self::InvalidClientMetadataUrl => "invalid_client_metadata_url",
            Self::InvalidState => "invalid_state",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::BrowserSessionMissing => "browser_session_missing",
            Self::BrowserSessionMismatch => "browser_session_mismatch",
            Self::ForeignOrigin => "foreign_origin",
        }
    }

    /// The code a wire string names, if it is one of these.
    pub fn parse(code: &str) -> Option<OAuthErrorCode> {
        Self::ALL.into_iter().find(|known| known.as_str() == code)
    }
}

impl fmt::Display for OAuthErrorCode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// What an error answer said, in one shape whatever its wire form (OAuth JSON, Scalekit's gateway
/// JSON, the hosted error page, a gRPC status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorSummary {
    /// The OAuth error code (`invalid_grant`), the gateway code name (`NOT_FOUND`) or the hosted
    /// page's error (`invalid_state`).
    pub code: String,
    /// The description or message, as sent.
    pub message: String,
    /// The fields a gateway `INVALID_ARGUMENT` names in its violations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

/// An endpoint of the flow whose checks the flow inspector knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// The authorization server's `GET /oauth/authorize`.
    Authorize,
    /// The token endpoint with `grant_type=authorization_code`.
    TokenAuthorizationCode,
    /// The same with `grant_type=refresh_token`.
    TokenRefresh,
    /// The same with `grant_type=client_credentials` (a management token).
    TokenClientCredentials,
    /// The same with `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` (RFC 7523): an
    /// identity assertion (ID-JAG) exchanged for an access token, cross-app access.
    TokenJwtBearer,
    /// The token endpoint with another or no grant type.
    TokenOther,
    /// The token endpoint of the company identity provider the emulator plays
    /// (`POST /_idp/{idp}/oauth/token`, RFC 8693 token exchange): an ID token exchanged for an
    /// ID-JAG.
    IdpTokenExchange,
    /// `POST /api/v1/connections/{conn}/auth-requests/{lri}/user` (REST or gRPC).
    SubmitUser,
    /// `GET /sso/v1/connections/{conn}/partner:callback`.
    PartnerCallback,
    /// `POST /oauth/consent`.
    Consent,
    /// `POST /api/v1/resources/{res}/clients:register`.
    Register,
    /// `POST /oauth/revoke`.
    Revoke,
    /// An MCP server's Streamable HTTP endpoint.
    Mcp,
    /// Anything else (discovery documents, the JWKS, pages): nothing to check.
    Other,
}

/// One check an endpoint makes; its name is what the flow inspector shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// The `client_id` is known.
    ClientKnown,
    /// The `redirect_uri` is registered for the client.
    RedirectUriRegistered,
    /// A PKCE S256 `code_challenge` is present.
    PkceChallengePresent,
    /// The `resource` names the resource of the request.
    ResourceMatches,
    /// The requested scopes are the resource's.
    ScopesAllowed,
    /// The authorization request is otherwise well formed.
    AuthorizationRequestValid,
    /// The client authenticated (secret, or none for a public client).
    ClientAuthenticated,
    /// The code is known, unused and unexpired.
    CodeSingleUseAndUnexpired,
    /// The code or refresh token belongs to the presenting client.
    ClientMatches,
    /// The token request's `redirect_uri` is the authorization request's.
    RedirectUriMatches,
    /// The PKCE S256 `code_verifier` matches the challenge.
    PkceVerifierMatches,
    /// The token request is otherwise well formed.
    TokenRequestValid,
    /// The refresh token is known, not rotated out and unexpired.
    RefreshTokenUnusedAndUnexpired,
    /// The refresh asks for scopes within the grant.
    ScopesWithinGrant,
    /// The API client's credentials are right.
    ClientCredentialsValid,
    /// The grant type is supported.
    GrantTypeSupported,
    /// The bearer is a live management token of the environment.
    ManagementTokenValid,
    /// The login request is pending on this connection.
    LoginRequestPending,
    /// The posted user's claims are valid.
    UserClaimsValid,
    /// A login request takes one user.
    OneUserPerLoginRequest,
    /// The `state` names a sign-in in progress.
    StateMatches,
    /// The user was posted before the callback.
    UserPostedBeforeCallback,
    /// The request came from the browser that started the sign-in: it carries the sign-in's
    /// cookie (Decisions §9).
    BrowserMatches,
    /// The consent form was posted from the environment's own origin (or without `Origin`).
    OriginAllowed,
    /// The consent decision is for a pending consent page.
    ConsentRequestValid,
    /// The person allowed access.
    PersonAllowedAccess,
    /// The registration's client metadata is valid.
    ClientMetadataValid,
    /// The assertion is a compact JWS whose header and claims are JSON and carry the claims an
    /// ID-JAG needs.
    AssertionWellFormed,
    /// The assertion's `typ` is `oauth-id-jag+jwt`.
    AssertionTyped,
    /// The assertion's issuer is an identity provider the environment trusts.
    AssertionIssuerTrusted,
    /// The assertion is signed with RS256 by one of its issuer's keys.
    AssertionSigned,
    /// The assertion is current: issued, valid and not expired now, and short-lived.
    AssertionUnexpired,
    /// The audience names an authorization server that is expected here.
    AudienceAccepted,
    /// The assertion was not redeemed before.
    AssertionSingleUse,
    /// Cross-app access is enabled for the MCP server.
    CrossAppAccessEnabled,
    /// The subject token is an ID token the identity provider issued to the client, unexpired.
    SubjectTokenValid,
    /// A bearer token was sent.
    BearerTokenPresent,
    /// The bearer token is valid (signature, `iss`, `aud`, `exp`).
    TokenValid,
    /// The token has the scopes the request needs.
    ScopesSufficient,
    /// A request without a bearer was challenged (the 401 that starts discovery).
    ChallengedWithoutBearer,
    /// Anything else about the request.
    RequestValid,
}

impl Check {
    /// The words the flow inspector shows.
    pub fn name(self) -> &'static str {
        match self {
            Self::ClientKnown => "client known",
            Self::RedirectUriRegistered => "redirect_uri registered",
            Self::PkceChallengePresent => "PKCE S256 challenge present",
            Self::ResourceMatches => "resource matches",
            Self::ScopesAllowed => "scopes allowed",
            Self::AuthorizationRequestValid => "authorization request valid",
            Self::ClientAuthenticated => "client authenticated",
            Self::CodeSingleUseAndUnexpired => "code single-use and unexpired",
            Self::ClientMatches => "client matches",
            Self::RedirectUriMatches => "redirect_uri matches",
            Self::PkceVerifierMatches => "PKCE S256 verifier matches",
            Self::TokenRequestValid => "token request valid",
            Self::RefreshTokenUnusedAndUnexpired => "refresh token unused and unexpired",
            Self::ScopesWithinGrant => "scopes within the grant",
            Self::ClientCredentialsValid => "client credentials valid",
            Self::GrantTypeSupported => "grant type supported",
            Self::ManagementTokenValid => "management token valid",
            Self::LoginRequestPending => "login request pending on this connection",
            Self::UserClaimsValid => "user claims valid",
            Self::OneUserPerLoginRequest => "one user per login request",
            Self::StateMatches => "state matches a sign-in in progress",
            Self::UserPostedBeforeCallback => "user posted before the callback",
            Self::BrowserMatches => "browser that started the sign-in",
            Self::OriginAllowed => "posted from the environment's own origin",
            Self::ConsentRequestValid => "consent request valid",
            Self::PersonAllowedAccess => "person allowed access",
            Self::ClientMetadataValid => "client metadata valid",
            Self::AssertionWellFormed => "assertion well formed (a JWT with the ID-JAG claims)",
            Self::AssertionTyped => "assertion typ oauth-id-jag+jwt",
            Self::AssertionIssuerTrusted => "assertion from a trusted identity provider",
            Self::AssertionSigned => "assertion signed (RS256, the identity provider's key)",
            Self::AssertionUnexpired => "assertion current (iat, nbf, exp)",
            Self::AudienceAccepted => "audience accepted",
            Self::AssertionSingleUse => "assertion single-use",
            Self::CrossAppAccessEnabled => "cross-app access enabled for the MCP server",
            Self::SubjectTokenValid => "subject token valid (the identity provider's ID token)",
            Self::BearerTokenPresent => "bearer token present",
            Self::TokenValid => "token valid (signature, iss, aud, exp)",
            Self::ScopesSufficient => "scopes sufficient",
            Self::ChallengedWithoutBearer => "request without a bearer challenged",
            Self::RequestValid => "request valid",
        }
    }
}

/// What a handler knows about the answer it gives: the endpoint it served, and, for an error, the
/// check that failed. Attached to the response as an extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HopFacts {
    /// The endpoint served.
    pub endpoint: Endpoint,
    /// The check that failed, for an error answer.
    pub failed: Option<Check>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_oauth_error_code_round_trips_through_its_wire_name_and_serde() {
        for code in OAuthErrorCode::ALL {
            assert_eq!(OAuthErrorCode::parse(code.as_str()), Some(code));
            assert_eq!(
                serde_json::to_value(code).expect("serializes"),
                serde_json::Value::String(code.as_str().to_owned())
            );
        }
        assert_eq!(OAuthErrorCode::parse("not_a_code"), None);
    }
}
