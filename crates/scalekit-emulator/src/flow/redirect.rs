//! The redirect back to the client's `redirect_uri` (RFC 6749 §4.1.2 and §4.1.2.1, RFC 9207).

use url::Url;

use crate::types::{AuthorizationCode, ClientState, RedirectUri};

/// An error sent to the client on its redirect URI (RFC 6749 §4.1.2.1, RFC 8707 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectError {
    /// `invalid_request`.
    InvalidRequest,
    /// `unsupported_response_type`.
    UnsupportedResponseType,
    /// `invalid_scope`.
    InvalidScope,
    /// `invalid_target` (RFC 8707).
    InvalidTarget,
    /// `access_denied`: the user failed to sign in or denied consent.
    AccessDenied,
    /// `temporarily_unavailable`: too many sign-ins are in progress (RFC 6749 §4.1.2.1).
    TemporarilyUnavailable,
}

impl RedirectError {
    /// The wire code.
    pub fn code(self) -> &'static str {
        match self {
            RedirectError::InvalidRequest => "invalid_request",
            RedirectError::UnsupportedResponseType => "unsupported_response_type",
            RedirectError::InvalidScope => "invalid_scope",
            RedirectError::InvalidTarget => "invalid_target",
            RedirectError::AccessDenied => "access_denied",
            RedirectError::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }
}

/// What the redirect carries.
#[derive(Debug)]
pub enum RedirectOutcome {
    /// Success: a fresh authorization code.
    Code(AuthorizationCode),
    /// Failure: an error code and a description.
    Error {
        error: RedirectError,
        description: String,
    },
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
                RedirectOutcome::Error { error, description } => {
                    query.append_pair("error", error.code());
                    query.append_pair("error_description", description);
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
            outcome: RedirectOutcome::Error {
                error: RedirectError::AccessDenied,
                description: "no".to_owned(),
            },
        };
        assert_eq!(
            redirect.location().unwrap().as_str(),
            "http://127.0.0.1:9/cb?error=access_denied&error_description=no&state=xyz&iss=http%3A%2F%2Fenv"
        );
    }
}
