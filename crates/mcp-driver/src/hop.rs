//! The record of every HTTP exchange the driver makes, with secrets in URLs redacted by the test
//! bed's one rule (`scalekit_wire::redact`).

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use url::Url;

/// Which step of the flow an HTTP exchange belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The unauthenticated MCP request that should be answered with a 401 challenge.
    Challenge,
    /// Fetching the protected-resource metadata (RFC 9728).
    ProtectedResourceMetadata,
    /// Fetching the authorization-server metadata (RFC 8414 / OIDC discovery).
    AuthorizationServerMetadata,
    /// Dynamic client registration (RFC 7591).
    Registration,
    /// The user agent following the authorization redirect chain.
    Authorization,
    /// The token endpoint (code exchange).
    Token,
    /// Fetching the JWKS to verify the ID token.
    Jwks,
    /// The token endpoint (refresh).
    Refresh,
    /// MCP requests with the access token.
    Mcp,
}

impl fmt::Display for Phase {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Challenge => "challenge",
            Self::ProtectedResourceMetadata => "protected_resource_metadata",
            Self::AuthorizationServerMetadata => "authorization_server_metadata",
            Self::Registration => "registration",
            Self::Authorization => "authorization",
            Self::Token => "token",
            Self::Jwks => "jwks",
            Self::Refresh => "refresh",
            Self::Mcp => "mcp",
        };
        formatter.write_str(name)
    }
}

/// One HTTP exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hop {
    /// The step of the flow.
    pub phase: Phase,
    /// `GET`, `POST`, ….
    pub method: String,
    /// The request URL, with secret query values redacted (see [`redact_url`]).
    pub url: String,
    /// The response status; 0 when it is not known (a browser navigation whose status WebDriver
    /// cannot tell, such as the redirect URI nothing listens on).
    pub status: u16,
    /// The response's `Location` header, redacted the same way, for redirects.
    pub location: Option<String>,
    /// The response's `Cache-Control` header (token responses must say `no-store`).
    pub cache_control: Option<String>,
    /// What the exchange was, where the URL does not say: the JSON-RPC method of an MCP POST.
    pub detail: Option<String>,
}

impl fmt::Display for Hop {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "[{}] {} {} -> ",
            self.phase, self.method, self.url
        )?;
        if self.status == 0 {
            formatter.write_str("(status unknown)")?;
        } else {
            write!(formatter, "{}", self.status)?;
        }
        if let Some(detail) = &self.detail {
            write!(formatter, " ({detail})")?;
        }
        if let Some(location) = &self.location {
            write!(formatter, " (Location: {location})")?;
        }
        Ok(())
    }
}

/// A URL for logs and reports, redacted by the test bed's one rule
/// ([`scalekit_wire::redact::redact_url`], the rule the emulator's request log and flow inspector
/// use too): the values of `code`, `code_verifier`, tokens, secrets, `state` and `nonce` in the
/// query keep at most 6 characters (never more than half) and `…`; the fragment is dropped.
pub fn redact_url(url: &Url) -> String {
    scalekit_wire::redact::redact_url(url.as_str())
}

/// Redacts a `Location` header value that may be relative (then only its query is redacted).
pub fn redact_location(base: &Url, location: &str) -> String {
    match base.join(location) {
        Ok(absolute) => redact_url(&absolute),
        Err(_) => "[unparseable location]".to_owned(),
    }
}

/// The shared, append-only list of hops of one run. Cloned into the OAuth and MCP HTTP clients.
#[derive(Debug, Clone, Default)]
pub(crate) struct HopLog(Arc<Mutex<Vec<Hop>>>);

impl HopLog {
    pub(crate) fn push(&self, hop: Hop) {
        tracing::debug!(%hop, "http exchange");
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(hop);
    }

    pub(crate) fn snapshot(&self) -> Vec<Hop> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The status of the most recent hop, used to report the token endpoint's status (the
    /// `oauth2` crate keeps it to itself).
    pub(crate) fn last_status(&self) -> Option<u16> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last()
            .map(|hop| hop.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hops_redaction_is_the_test_beds_one_rule() {
        for url in [
            "http://127.0.0.1:33418/callback?code=abc123secret&state=0123456789abcdef&iss=http%3A%2F%2F127.0.0.1%3A9%2Fresources%2Fres_1",
            "http://127.0.0.1:8400/oauth/authorize?client_id=m2m_1&state=q7Hx2mPzR4tVb8nK1sLc0dYfWgAeUiOoJ3yXhT5vN6E&nonce=n0123456789&code_challenge=xyz",
            "http://127.0.0.1:8401/login?login_request_id=lri_1&state=q7Hx2mPzR4tVb8nK1sLc0dYfWgAeUiOoJ3yXhT5vN6E",
            "http://h/cb#access_token=tok&token_type=Bearer",
            "http://h/.well-known/oauth-protected-resource/mcp",
        ] {
            let parsed = Url::parse(url).unwrap();
            assert_eq!(
                redact_url(&parsed),
                scalekit_wire::redact::redact_url(parsed.as_str()),
                "{url}"
            );
        }
    }

    #[test]
    fn code_and_state_keep_six_characters_and_the_rest_is_kept() {
        let url = Url::parse(
            "http://127.0.0.1:33418/callback?code=abc123secret&state=0123456789abcdef&iss=http%3A%2F%2F127.0.0.1%3A9%2Fresources%2Fres_1",
        )
        .unwrap();
        assert_eq!(
            redact_url(&url),
            "http://127.0.0.1:33418/callback?code=abc123…&state=012345…&iss=http%3A%2F%2F127.0.0.1%3A9%2Fresources%2Fres_1"
        );
    }

    #[test]
    fn short_values_never_show_more_than_half_and_other_params_are_kept() {
        let url =
            Url::parse("http://h/authorize?state=abc&client_id=m2m_1&code_challenge=xyz").unwrap();
        assert_eq!(
            redact_url(&url),
            "http://h/authorize?state=a…&client_id=m2m_1&code_challenge=xyz"
        );
    }

    #[test]
    fn url_without_query_is_unchanged() {
        let url = Url::parse("http://h/.well-known/oauth-protected-resource/mcp").unwrap();
        assert_eq!(
            redact_url(&url),
            "http://h/.well-known/oauth-protected-resource/mcp"
        );
    }

    #[test]
    fn a_fragment_is_dropped_with_any_token_in_it() {
        let url = Url::parse("http://h/cb#access_token=tok&token_type=Bearer").unwrap();
        assert_eq!(redact_url(&url), "http://h/cb");
    }

    #[test]
    fn relative_location_is_resolved_before_redaction() {
        let base = Url::parse("http://h/a/b?x=1").unwrap();
        assert_eq!(
            redact_location(&base, "/cb?code=zzzzzz"),
            "http://h/cb?code=zzz…"
        );
    }
}
