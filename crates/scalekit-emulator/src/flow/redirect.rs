//! The redirect back to the client's `redirect_uri` (RFC 6749 §4.1.2 and §4.1.2.1, RFC 9207).

use scalekit_wire::{Check, OAuthErrorCode};
use url::Url;

use crate::types::{AuthorizationCode, ClientId, ClientState, RedirectUri, ResourceId};

/// Why the client is sent an error on its redirect URI (RFC 6749 §4.1.2.1, RFC 8707 §2): each
/// reason has its wire code, its description (its `Display`, byte for byte what the client gets)
/// and the check the flow inspector shows failing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectRefusal {
    /// No `response_type`.
    #[error("response_type is required")]
    ResponseTypeMissing,
    /// A `response_type` other than `code`.
    #[error("response_type {0} is not supported; use code")]
    ResponseTypeUnsupported(String),
    /// No `code_challenge`.
    #[error("code_challenge is required (PKCE with S256)")]
    ChallengeMissing,
    /// A `code_challenge` outside the RFC 7636 grammar.
    #[error("code_challenge is malformed")]
    ChallengeMalformed,
    /// A `code_challenge_method` other than `S256`.
    #[error("code_challenge_method must be S256")]
    ChallengeMethodNotS256,
    /// The `resource` names no MCP server of the environment.
    #[error("resource {0} is not a registered MCP server")]
    UnknownResource(String),
    /// The client's own resource is missing from the configuration.
    #[error("the client's resource is not configured")]
    ClientResourceNotConfigured,
    /// The `resource` is not the one the client was registered for.
    #[error("client {client} is not registered for resource {resource}")]
    ClientNotForResource {
        /// The client.
        client: ClientId,
        /// The resource asked for.
        resource: ResourceId,
    },
    /// Scopes the MCP server does not offer.
    #[error("scope {} is not offered by this MCP server", .0.join(" "))]
    UnknownScopes(Vec<String>),
    /// More sign-ins are in progress than `max_pending_login_requests`.
    #[error("too many sign-ins are in progress; try again in a few minutes")]
    TooManySignIns,
    /// The resource's connection is missing from the configuration.
    #[error("the resource's connection is not configured")]
    ConnectionNotConfigured,
    /// "Your App" posted `login_failed`.
    #[error("the user could not be signed in")]
    LoginFailed,
    /// The person denied access on the consent page.
    #[error("the user denied access")]
    Denied,
}

impl RedirectRefusal {
    /// The wire code.
    pub fn code(&self) -> OAuthErrorCode {
        match self {
            RedirectRefusal::ResponseTypeUnsupported(_) => OAuthErrorCode::UnsupportedResponseType,
            RedirectRefusal::UnknownResource(_)
            | RedirectRefusal::ClientResourceNotConfigured
            | RedirectRefusal::ClientNotForResource { .. } => OAuthErrorCode::InvalidTarget,
            RedirectRefusal::UnknownScopes(_) => OAuthErrorCode::InvalidScope,
            RedirectRefusal::TooManySignIns => OAuthErrorCode::TemporarilyUnavailable,
            RedirectRefusal::LoginFailed | RedirectRefusal::Denied => OAuthErrorCode::AccessDenied,
            RedirectRefusal::ResponseTypeMissing
            | RedirectRefusal::ChallengeMissing
            | RedirectRefusal::ChallengeMalformed
            | RedirectRefusal::ChallengeMethodNotS256
            | RedirectRefusal::ConnectionNotConfigured => OAuthErrorCode::InvalidRequest,
        }
    }

    /// The check that failed, as the flow inspector has always named it: a refusal that names
    /// the client is "client known", one that names the resource "resource matches". A failed
    /// login fails "state matches" at the callback (no check of the callback is about the
    /// person).
    pub fn failed_check(&self) -> Check {
        match self {
            RedirectRefusal::ResponseTypeMissing
            | RedirectRefusal::ResponseTypeUnsupported(_)
            | RedirectRefusal::TooManySignIns => Check::AuthorizationRequestValid,
            RedirectRefusal::ChallengeMissing
            | RedirectRefusal::ChallengeMalformed
            | RedirectRefusal::ChallengeMethodNotS256 => Check::PkceChallengePresent,
            RedirectRefusal::UnknownResource(_) | RedirectRefusal::ConnectionNotConfigured => {
                Check::ResourceMatches
            }
            RedirectRefusal::ClientResourceNotConfigured
            | RedirectRefusal::ClientNotForResource { .. } => Check::ClientKnown,
            RedirectRefusal::UnknownScopes(_) => Check::ScopesAllowed,
            RedirectRefusal::LoginFailed => Check::StateMatches,
            RedirectRefusal::Denied => Check::PersonAllowedAccess,
        }
    }
}

/// What the redirect carries.
#[derive(Debug)]
pub enum RedirectOutcome {
    /// Success: a fresh authorization code.
    Code(AuthorizationCode),
    /// Failure: the error code and why (the `error_description`).
    Error {
        /// `error`: always `reason.code()`.
        error: OAuthErrorCode,
        /// Why, sent as `error_description`.
        reason: RedirectRefusal,
    },
}

impl RedirectOutcome {
    /// The error outcome for `reason`.
    pub fn refused(reason: RedirectRefusal) -> RedirectOutcome {
        RedirectOutcome::Error {
            error: reason.code(),
            reason,
        }
    }
}

/// A redirect to the client. `state` is omitted when the client sent none; `iss` is always sent,
/// errors included (RFC 9207 §2).
#[derive(Debug)]
pub struct ClientRedirect {
    /// The redirect URI the client sent (and that was checked against its registration).
    pub redirect_uri: RedirectUri,
    /// The client's own `state`.
    pub state: Option<ClientState>,
    /// The issuer identifier.
    pub iss: String,
    /// Code or error.
    pub outcome: RedirectOutcome,
}

impl ClientRedirect {
    /// The `Location`: the redirect URI with its existing query kept and the parameters appended.
    pub fn location(&self) -> Option<Url> {
        let mut url = self.redirect_uri.to_url()?;
        {
            let mut query = url.query_pairs_mut();
            match &self.outcome {
                RedirectOutcome::Code(code) => {
                    query.append_pair("code", code.expose());
                }
                RedirectOutcome::Error { error, reason } => {
                    query.append_pair("error", error.as_str());
                    query.append_pair("error_description", &reason.to_string());
                }
            }
            if let Some(state) = &self.state {
                query.append_pair("state", state.as_str());
            }
            query.append_pair("iss", &self.iss);
        }
        Some(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_location_keeps_the_existing_query_and_omits_a_missing_state() {
        let redirect = ClientRedirect {
            redirect_uri: RedirectUri::parse("http://127.0.0.1:9/cb?tenant=a").unwrap(),
            state: None,
            iss: "http://env/resources/res_1".to_owned(),
            outcome: RedirectOutcome::Code(AuthorizationCode::new("c0de")),
        };
        assert_eq!(
            redirect.location().unwrap().as_str(),
            "http://127.0.0.1:9/cb?tenant=a&code=c0de&iss=http%3A%2F%2Fenv%2Fresources%2Fres_1"
        );
    }

    #[test]
    fn an_error_location_carries_error_state_and_iss() {
        let redirect = ClientRedirect {
            redirect_uri: RedirectUri::parse("http://127.0.0.1:9/cb").unwrap(),
            state: Some(ClientState::new("xyz")),
            iss: "http://env".to_owned(),
            outcome: RedirectOutcome::refused(RedirectRefusal::Denied),
        };
        assert_eq!(
            redirect.location().unwrap().as_str(),
            "http://127.0.0.1:9/cb?error=access_denied&error_description=the+user+denied+access&state=xyz&iss=http%3A%2F%2Fenv"
        );
    }
}
