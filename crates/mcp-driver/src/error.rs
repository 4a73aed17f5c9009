//! Every way a driver run can fail, one variant per failure a conformance scenario may assert.

use url::Url;

/// Why a run of the driver failed.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The unauthenticated MCP request was not answered with 401 (the status is in the hops and
    /// the log).
    #[error("the MCP server did not answer the unauthenticated request with 401")]
    NoChallenge,
    /// No protected-resource metadata could be fetched or parsed (RFC 9728).
    #[error("protected resource metadata at {url}: {reason}")]
    ProtectedResourceMetadata {
        /// The (last) URL tried.
        url: Url,
        /// What went wrong.
        reason: String,
    },
    /// The PRM `resource` is neither the MCP URL nor a same-origin path prefix of it (RFC 9728 §3.3).
    #[error("protected resource metadata names resource {published:?}, expected {expected}")]
    ResourceMismatch {
        /// The `resource` the PRM published.
        published: String,
        /// The MCP server URL the driver was given.
        expected: Url,
    },
    /// PRM lists no authorization server.
    #[error("protected resource metadata lists no authorization_servers")]
    NoAuthorizationServer,
    /// No authorization-server metadata document was found at any well-known URL.
    #[error("no authorization server metadata for issuer {issuer:?} (tried {tried:?})")]
    AuthorizationServerMetadata {
        /// `authorization_servers[0]` from the PRM.
        issuer: String,
        /// Every URL tried, in order.
        tried: Vec<Url>,
    },
    /// The metadata `issuer` is not byte-identical to the issuer used for discovery (RFC 8414 §3.3).
    #[error("authorization server metadata issuer {found:?} differs from {expected:?}")]
    IssuerMismatch {
        /// `authorization_servers[0]` from the PRM.
        expected: String,
        /// The document's `issuer`.
        found: String,
    },
    /// `code_challenge_methods_supported` is absent or lacks `S256`.
    #[error(
        "authorization server does not advertise PKCE S256 in code_challenge_methods_supported"
    )]
    PkceNotSupported,
    /// The metadata has no `registration_endpoint`, so the driver cannot register.
    #[error("authorization server metadata has no registration_endpoint")]
    NoRegistrationEndpoint,
    /// Dynamic client registration failed.
    #[error("client registration answered {status}: {body}")]
    Registration {
        /// The HTTP status.
        status: u16,
        /// The response body (or what was wrong with it).
        body: String,
    },
    /// The authorize redirect chain broke before reaching the redirect URI.
    #[error("authorization redirect chain broken: {reason}")]
    AuthorizationRedirect {
        /// Status, URL and a body excerpt of the page where it stopped.
        reason: String,
    },
    /// The sign-in ended on the authorization server's hosted error page, a page whose URL names
    /// the error (`?error=invalid_state&error_description=…`): Scalekit's `invalid_state` page,
    /// the emulator's `/error`. The person can only restart sign-in from the MCP client.
    #[error(
        "the sign-in ended on the hosted error page {error}: {} ({} at {url})",
        error_description.as_deref().unwrap_or("(no description)"),
        crate::browser::describe_status(*status)
    )]
    HostedErrorPage {
        /// The page's `error` (`invalid_state`).
        error: String,
        /// The page's `error_description`, if any.
        error_description: Option<String>,
        /// The page's HTTP status; 0 when the browser could not tell.
        status: u16,
        /// The page's address, redacted.
        url: String,
    },
    /// The redirect URI came back with `error=` (RFC 6749 §4.1.2.1).
    #[error("authorization error {error}: {}", error_description.as_deref().unwrap_or("(no description)"))]
    AuthorizationError {
        /// The RFC 6749 error code.
        error: String,
        /// `error_description`, if any.
        error_description: Option<String>,
    },
    /// The callback `state` is not the one the driver sent.
    #[error("the callback state does not match the state sent")]
    StateMismatch,
    /// The AS advertises RFC 9207 `iss` but the callback has none.
    #[error("the callback has no iss although the authorization server advertises it (RFC 9207)")]
    MissingIss,
    /// The callback `iss` differs from the metadata issuer (RFC 9207 §2.4).
    #[error("the callback iss {found:?} differs from the issuer {expected:?} (RFC 9207)")]
    IssMismatch {
        /// The metadata issuer.
        expected: String,
        /// The callback's `iss`.
        found: String,
    },
    /// The token endpoint refused or answered something unusable.
    #[error("token endpoint answered {status}: {error} ({})", error_description.as_deref().unwrap_or("no description"))]
    TokenEndpoint {
        /// The HTTP status (0 if no response was received).
        status: u16,
        /// The RFC 6749 §5.2 error code, or a driver-made code such as `invalid_response`.
        error: String,
        /// `error_description`, or what could not be parsed.
        error_description: Option<String>,
    },
    /// The ID token failed verification.
    #[error("id token: {0}")]
    IdToken(String),
    /// The MCP session or the whoami call failed.
    #[error("mcp: {0}")]
    Mcp(String),
    /// An answer was longer than the driver reads (a server that streams without end).
    #[error("the answer from {url} is longer than {limit} bytes")]
    ResponseTooLarge {
        /// The URL asked, redacted.
        url: String,
        /// The most the driver reads.
        limit: usize,
    },
    /// The HTTP client failed (connection refused, timeout, …).
    #[error("http request failed")]
    Http(#[source] reqwest::Error),
    /// A URL in a document or header could not be parsed.
    #[error("invalid url {value:?} in {context}")]
    InvalidUrl {
        /// Where the URL came from.
        context: &'static str,
        /// The value.
        value: String,
    },
    /// The browser user agent could not be started or driven (not a page it landed on: those
    /// are [`DriverError::AuthorizationRedirect`] and [`DriverError::HostedErrorPage`]).
    #[error(transparent)]
    Browser(#[from] crate::browser::BrowserError),
    /// `refresh` was called for a flow that returned no refresh token.
    #[error("no refresh token was issued in this flow")]
    NoRefreshToken,
}

impl DriverError {
    /// The error for a page the sign-in stopped on (not the redirect URI) whose URL names an
    /// error and that the authorization server serves (the host and port of `authorize_url`):
    /// the hosted error page; `None` for any other page (Your App's login page showing its own
    /// `?error=`, say), which the caller reports as [`DriverError::AuthorizationRedirect`]. A
    /// URL, not the page's markup: Scalekit's docs promise `error=invalid_state` in its page's
    /// URL and nothing about the page.
    pub(crate) fn hosted_error_page(
        url: &Url,
        status: u16,
        authorize_url: &Url,
    ) -> Option<DriverError> {
        if url.host_str() != authorize_url.host_str()
            || url.port_or_known_default() != authorize_url.port_or_known_default()
        {
            return None;
        }
        let value = |name: &str| {
            url.query_pairs()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.into_owned())
        };
        let error = value("error").filter(|error| !error.is_empty())?;
        Some(DriverError::HostedErrorPage {
            error,
            error_description: value("error_description"),
            status,
            url: crate::redact_url(url),
        })
    }
}

impl From<reqwest::Error> for DriverError {
    fn from(error: reqwest::Error) -> Self {
        Self::Http(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_page_of_the_authorization_server_that_names_an_error_is_the_hosted_error_page() {
        let authorize = Url::parse("http://127.0.0.1:8400/oauth/authorize?client_id=c").unwrap();
        let page = Url::parse(
            "http://127.0.0.1:8400/error?error=invalid_state&error_description=the+sign-in+request+expired",
        )
        .unwrap();
        match DriverError::hosted_error_page(&page, 400, &authorize) {
            Some(DriverError::HostedErrorPage {
                error,
                error_description,
                status,
                ..
            }) => {
                assert_eq!(error, "invalid_state");
                assert_eq!(
                    error_description.as_deref(),
                    Some("the sign-in request expired")
                );
                assert_eq!(status, 400);
            }
            other => panic!("{other:?}"),
        }
        // Your App's login page showing its own error, on another port: not the hosted page.
        let login = Url::parse("http://127.0.0.1:8401/login?error=wrong_password").unwrap();
        assert!(DriverError::hosted_error_page(&login, 200, &authorize).is_none());
        // The authorization server's page without an error.
        let consent = Url::parse("http://127.0.0.1:8400/oauth/consent").unwrap();
        assert!(DriverError::hosted_error_page(&consent, 200, &authorize).is_none());
    }
}
