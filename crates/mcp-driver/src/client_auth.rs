//! Pure choices a client makes about its own credentials: the token-endpoint authentication
//! method (RFC 6749 §2.3.1, RFC 7591 §2, RFC 8414 §2) and the scopes of a re-authorization
//! (MCP 2026-07-28 "Scope Challenge Handling").

use std::fmt;

/// How the client authenticates at the token endpoint (RFC 7591 §2
/// `token_endpoint_auth_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEndpointAuthMethod {
    /// A public client: `client_id` in the form body, no secret.
    None,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// HTTP Basic with the form-urlencoded id and secret (RFC 6749 §2.3.1).
    ClientSecretBasic,
}

impl TokenEndpointAuthMethod {
    /// The registered name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ClientSecretPost => "client_secret_post",
            Self::ClientSecretBasic => "client_secret_basic",
        }
    }

    /// Parses a registered name; other methods (`private_key_jwt`, …) are not supported.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "none" => Some(Self::None),
            "client_secret_post" => Some(Self::ClientSecretPost),
            "client_secret_basic" => Some(Self::ClientSecretBasic),
            _ => None,
        }
    }
}

impl fmt::Display for TokenEndpointAuthMethod {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The method to ask for in dynamic client registration: a public client (`none`) whenever the
/// AS allows it (the driver is a native app and cannot keep a secret), else the first secret
/// method the AS lists, preferring Basic (the RFC 8414 §2 default).
pub fn registration_auth_method(supported: Option<&[String]>) -> TokenEndpointAuthMethod {
    let Some(supported) = supported else {
        return TokenEndpointAuthMethod::None;
    };
    let lists = |method: TokenEndpointAuthMethod| supported.iter().any(|s| s == method.as_str());
    [
        TokenEndpointAuthMethod::None,
        TokenEndpointAuthMethod::ClientSecretBasic,
        TokenEndpointAuthMethod::ClientSecretPost,
    ]
    .into_iter()
    .find(|method| lists(*method))
    .unwrap_or(TokenEndpointAuthMethod::None)
}

/// The method to use at the token endpoint. Without a secret only `none` is possible. With one:
/// the method the client was registered with (the DCR response, or what it asked for) when the
/// AS supports it; else, when the AS lists nothing, `client_secret_basic` (the RFC 8414 §2
/// default); else the first of Basic, post, none that the AS lists.
pub fn token_auth_method(
    registered: Option<TokenEndpointAuthMethod>,
    supported: Option<&[String]>,
    has_secret: bool,
) -> TokenEndpointAuthMethod {
    if !has_secret {
        return TokenEndpointAuthMethod::None;
    }
    let Some(supported) = supported else {
        return registered.unwrap_or(TokenEndpointAuthMethod::ClientSecretBasic);
    };
    let lists = |method: TokenEndpointAuthMethod| supported.iter().any(|s| s == method.as_str());
    if let Some(registered) = registered
        && lists(registered)
    {
        return registered;
    }
    [
        TokenEndpointAuthMethod::ClientSecretBasic,
        TokenEndpointAuthMethod::ClientSecretPost,
        TokenEndpointAuthMethod::None,
    ]
    .into_iter()
    .find(|method| lists(*method))
    .unwrap_or(TokenEndpointAuthMethod::ClientSecretBasic)
}

/// The scopes of a re-authorization: those requested before, then each newly challenged one not
/// already there (MCP 2026-07-28: the client requests the union; order kept for readable logs).
pub fn union_scopes(previous: &[String], challenged: &[String]) -> Vec<String> {
    let mut scopes = previous.to_vec();
    for scope in challenged {
        if !scopes.contains(scope) {
            scopes.push(scope.clone());
        }
    }
    scopes
}

/// Whether one more authorization may start after `done` of them, with at most `limit` per run:
/// a server that keeps answering 401 or 403 `insufficient_scope` must not loop the client
/// forever (MCP 2025-11-25 "Step-Up Authorization Flow": retry a bounded number of times).
pub fn may_authorize_again(done: usize, limit: usize) -> bool {
    done < limit
}

#[cfg(test)]
mod tests {
    use super::TokenEndpointAuthMethod as M;
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|value| (*value).to_owned()).collect()
    }

    #[test]
    fn registration_asks_for_a_public_client_when_allowed() {
        assert_eq!(registration_auth_method(None), M::None);
        assert_eq!(
            registration_auth_method(Some(&strings(&["client_secret_basic", "none"]))),
            M::None
        );
        assert_eq!(
            registration_auth_method(Some(&strings(&["client_secret_post"]))),
            M::ClientSecretPost
        );
        assert_eq!(
            registration_auth_method(Some(&strings(&[
                "client_secret_post",
                "client_secret_basic"
            ]))),
            M::ClientSecretBasic
        );
        assert_eq!(
            registration_auth_method(Some(&strings(&["private_key_jwt"]))),
            M::None
        );
    }

    #[test]
    fn without_a_secret_the_token_request_is_public() {
        assert_eq!(
            token_auth_method(
                Some(M::ClientSecretBasic),
                Some(&strings(&["client_secret_basic"])),
                false
            ),
            M::None
        );
    }

    #[test]
    fn the_registered_method_wins_when_the_server_supports_it() {
        let supported = strings(&["client_secret_basic", "client_secret_post", "none"]);
        assert_eq!(
            token_auth_method(Some(M::None), Some(&supported), true),
            M::None
        );
        assert_eq!(
            token_auth_method(Some(M::ClientSecretPost), Some(&supported), true),
            M::ClientSecretPost
        );
        assert_eq!(
            token_auth_method(Some(M::ClientSecretPost), None, true),
            M::ClientSecretPost
        );
    }

    #[test]
    fn otherwise_basic_then_post_then_none() {
        assert_eq!(token_auth_method(None, None, true), M::ClientSecretBasic);
        assert_eq!(
            token_auth_method(
                None,
                Some(&strings(&["client_secret_post", "client_secret_basic"])),
                true
            ),
            M::ClientSecretBasic
        );
        assert_eq!(
            token_auth_method(
                Some(M::ClientSecretBasic),
                Some(&strings(&["client_secret_post"])),
                true
            ),
            M::ClientSecretPost
        );
        assert_eq!(
            token_auth_method(None, Some(&strings(&["none"])), true),
            M::None
        );
    }

    #[test]
    fn method_names_round_trip() {
        for method in [M::None, M::ClientSecretPost, M::ClientSecretBasic] {
            assert_eq!(M::parse(method.as_str()), Some(method));
        }
        assert_eq!(M::parse("private_key_jwt"), None);
    }

    #[test]
    fn a_re_authorization_requests_the_union_in_order() {
        assert_eq!(
            union_scopes(
                &strings(&["mcp:basic"]),
                &strings(&["mcp:write", "mcp:basic"])
            ),
            strings(&["mcp:basic", "mcp:write"])
        );
        assert_eq!(union_scopes(&[], &strings(&["a"])), strings(&["a"]));
        assert_eq!(union_scopes(&strings(&["a"]), &[]), strings(&["a"]));
    }

    #[test]
    fn authorizations_are_bounded() {
        assert!(may_authorize_again(0, 3));
        assert!(may_authorize_again(2, 3));
        assert!(!may_authorize_again(3, 3));
        assert!(!may_authorize_again(0, 0));
    }
}
