//! What each hop proves: the checks a piece made, implied by the endpoint and its answer.
//!
//! The inspector does not reach into the state machine. A success from an endpoint means every
//! check that endpoint makes passed (a code redeemed at the token endpoint was single-use,
//! unexpired, the client's, and its PKCE verifier, `redirect_uri` and `resource` matched); an
//! error names the one check that failed, from its error code and description. The table is kept
//! small on purpose: each row is what the handler and `flow` actually verify.

use serde::Serialize;

/// One check and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked, in words (`PKCE S256 verifier matches`).
    pub name: &'static str,
    /// Whether it held.
    pub passed: bool,
    /// For a failure: the error code and description (`invalid_grant: …`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The endpoints the inspector knows the checks of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// The emulator's `GET /oauth/authorize`.
    Authorize,
    /// The emulator's token endpoint with `grant_type=authorization_code`.
    TokenAuthorizationCode,
    /// The same with `grant_type=refresh_token`.
    TokenRefresh,
    /// The same with `grant_type=client_credentials` (Your App's management token).
    TokenClientCredentials,
    /// The token endpoint with another or no grant type.
    TokenOther,
    /// `POST /api/v1/connections/{conn}/auth-requests/{lri}/user`.
    SubmitUser,
    /// `GET /sso/v1/connections/{conn}/partner:callback`.
    PartnerCallback,
    /// `POST /oauth/consent`.
    Consent,
    /// `POST /api/v1/resources/{res}/clients:register`.
    Register,
    /// `POST /oauth/revoke`.
    Revoke,
    /// The MCP server's Streamable HTTP endpoint.
    Mcp,
    /// Anything else (discovery documents, the JWKS, Your App's pages): nothing to check.
    Other,
}

/// The checks each endpoint makes when it succeeds, in the order it makes them.
fn passed_on_success(endpoint: Endpoint) -> &'static [&'static str] {
    match endpoint {
        Endpoint::Authorize => &[
            "client known",
            "redirect_uri registered",
            "PKCE S256 challenge present",
            "resource matches",
        ],
        Endpoint::TokenAuthorizationCode => &[
            "code single-use and unexpired",
            "client matches",
            "redirect_uri matches",
            "resource matches",
            "PKCE S256 verifier matches",
        ],
        Endpoint::TokenRefresh => &[
            "refresh token unused and unexpired",
            "client matches",
            "resource matches",
            "scopes within the grant",
        ],
        Endpoint::TokenClientCredentials => &["client credentials valid"],
        Endpoint::TokenOther => &["grant type supported"],
        Endpoint::SubmitUser => &[
            "management token valid",
            "login request pending on this connection",
            "user claims valid",
        ],
        Endpoint::PartnerCallback => &[
            "state matches a sign-in in progress",
            "user posted before the callback",
        ],
        Endpoint::Consent => &["consent request valid", "person allowed access"],
        Endpoint::Register => &["client metadata valid"],
        Endpoint::Revoke => &["client authenticated"],
        Endpoint::Mcp => &[
            "bearer token present",
            "token valid (signature, iss, aud, exp)",
            "scopes sufficient",
        ],
        Endpoint::Other => &[],
    }
}

/// The check an error answer names: matched on the error code, then on words of the
/// description the emulator writes (see `flow::token`, `flow::login`, `http::api`).
fn failed_check(endpoint: Endpoint, status: u16, error: &str, description: &str) -> &'static str {
    let described = |word: &str| description.contains(word);
    match endpoint {
        Endpoint::Authorize if error == "invalid_client" || described("client") => "client known",
        Endpoint::Authorize if described("redirect_uri") => "redirect_uri registered",
        Endpoint::Authorize if described("code_challenge") || described("PKCE") => {
            "PKCE S256 challenge present"
        }
        Endpoint::Authorize if described("resource") => "resource matches",
        Endpoint::Authorize if error == "invalid_scope" || described("scope") => "scopes allowed",
        Endpoint::Authorize => "authorization request valid",

        Endpoint::TokenAuthorizationCode if error == "invalid_client" => "client authenticated",
        Endpoint::TokenAuthorizationCode if described("code_verifier") => {
            "PKCE S256 verifier matches"
        }
        Endpoint::TokenAuthorizationCode if described("redirect_uri") => "redirect_uri matches",
        Endpoint::TokenAuthorizationCode if described("resource") => "resource matches",
        Endpoint::TokenAuthorizationCode if described("another client") => "client matches",
        Endpoint::TokenAuthorizationCode if error == "invalid_grant" => {
            "code single-use and unexpired"
        }
        Endpoint::TokenAuthorizationCode => "token request valid",

        Endpoint::TokenRefresh if error == "invalid_client" => "client authenticated",
        Endpoint::TokenRefresh if described("another client") => "client matches",
        Endpoint::TokenRefresh if described("resource") => "resource matches",
        Endpoint::TokenRefresh if error == "invalid_scope" => "scopes within the grant",
        Endpoint::TokenRefresh if error == "invalid_grant" => "refresh token unused and unexpired",
        Endpoint::TokenRefresh => "token request valid",

        Endpoint::TokenClientCredentials => "client credentials valid",
        Endpoint::TokenOther if error == "unsupported_grant_type" => "grant type supported",
        Endpoint::TokenOther => "token request valid",

        Endpoint::SubmitUser if status == 401 => "management token valid",
        Endpoint::SubmitUser if status == 404 => "login request pending on this connection",
        Endpoint::SubmitUser if status == 409 => "one user per login request",
        Endpoint::SubmitUser => "user claims valid",

        Endpoint::PartnerCallback if described("no user was submitted") => {
            "user posted before the callback"
        }
        Endpoint::PartnerCallback => "state matches a sign-in in progress",

        Endpoint::Consent if error == "access_denied" => "person allowed access",
        Endpoint::Consent => "consent request valid",
        Endpoint::Register => "client metadata valid",
        Endpoint::Revoke => "client authenticated",

        Endpoint::Mcp if status == 403 || error == "insufficient_scope" => "scopes sufficient",
        Endpoint::Mcp if error.is_empty() => "bearer token present",
        Endpoint::Mcp => "token valid (signature, iss, aud, exp)",

        Endpoint::Other => "request valid",
    }
}

/// The checks of one answer. `error` is the error code an error answer carried (empty when it
/// carried none, like the MCP server's bare 401); `None` for a success.
pub fn checks(endpoint: Endpoint, status: u16, error: Option<(&str, &str)>) -> Vec<Check> {
    let all = passed_on_success(endpoint);
    if all.is_empty() {
        return Vec::new();
    }
    let Some((code, description)) = error else {
        return all
            .iter()
            .map(|name| Check {
                name,
                passed: true,
                detail: None,
            })
            .collect();
    };
    // The MCP server's bare 401 is the server doing its job: the challenge that starts
    // discovery, not a check that failed.
    if endpoint == Endpoint::Mcp && status == 401 && code.is_empty() && description.is_empty() {
        return vec![Check {
            name: "request without a bearer challenged",
            passed: true,
            detail: Some(
                "no bearer token: the 401 challenge points to the protected-resource metadata"
                    .to_owned(),
            ),
        }];
    }
    let failed = failed_check(endpoint, status, code, description);
    let detail = match (code.is_empty(), description.is_empty()) {
        (true, true) => format!("HTTP {status}"),
        (true, false) => description.to_owned(),
        (false, true) => code.to_owned(),
        (false, false) => format!("{code}: {description}"),
    };
    // The checks made before the failed one passed; those after it were not reached.
    let mut result: Vec<Check> = all
        .iter()
        .take_while(|name| **name != failed)
        .map(|name| Check {
            name,
            passed: true,
            detail: None,
        })
        .collect();
    // A check outside the success list (client authentication, made before anything else)
    // proves nothing else.
    if !all.contains(&failed) {
        result.clear();
    }
    result.push(Check {
        name: failed,
        passed: false,
        detail: Some(detail),
    });
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(checks: &[Check]) -> Vec<(&'static str, bool)> {
        checks
            .iter()
            .map(|check| (check.name, check.passed))
            .collect()
    }

    #[test]
    fn a_redeemed_code_proves_every_check_of_the_token_endpoint() {
        assert_eq!(
            names(&checks(Endpoint::TokenAuthorizationCode, 200, None)),
            [
                ("code single-use and unexpired", true),
                ("client matches", true),
                ("redirect_uri matches", true),
                ("resource matches", true),
                ("PKCE S256 verifier matches", true),
            ]
        );
    }

    #[test]
    fn a_wrong_verifier_fails_the_pkce_check_after_the_others_passed() {
        let checks = checks(
            Endpoint::TokenAuthorizationCode,
            400,
            Some((
                "invalid_grant",
                "code_verifier does not match the code_challenge",
            )),
        );
        assert_eq!(
            names(&checks),
            [
                ("code single-use and unexpired", true),
                ("client matches", true),
                ("redirect_uri matches", true),
                ("resource matches", true),
                ("PKCE S256 verifier matches", false),
            ]
        );
        assert_eq!(
            checks.last().and_then(|check| check.detail.as_deref()),
            Some("invalid_grant: code_verifier does not match the code_challenge")
        );
    }

    #[test]
    fn a_reused_code_fails_the_first_check() {
        assert_eq!(
            names(&checks(
                Endpoint::TokenAuthorizationCode,
                400,
                Some(("invalid_grant", "the authorization code was already used"))
            )),
            [("code single-use and unexpired", false)]
        );
        assert_eq!(
            names(&checks(
                Endpoint::TokenAuthorizationCode,
                400,
                Some((
                    "invalid_grant",
                    "redirect_uri does not match the authorization request"
                ))
            )),
            [
                ("code single-use and unexpired", true),
                ("client matches", true),
                ("redirect_uri matches", false),
            ]
        );
    }

    #[test]
    fn an_unknown_client_fails_a_check_outside_the_success_list() {
        assert_eq!(
            names(&checks(
                Endpoint::TokenAuthorizationCode,
                401,
                Some(("invalid_client", "client authentication failed"))
            )),
            [("client authenticated", false)]
        );
    }

    #[test]
    fn the_user_post_names_its_check_by_status() {
        assert_eq!(
            names(&checks(
                Endpoint::SubmitUser,
                401,
                Some(("16", "invalid token"))
            )),
            [("management token valid", false)]
        );
        assert_eq!(
            names(&checks(
                Endpoint::SubmitUser,
                404,
                Some(("5", "login request not found"))
            )),
            [
                ("management token valid", true),
                ("login request pending on this connection", false),
            ]
        );
    }

    #[test]
    fn the_mcp_server_challenges_name_their_check() {
        assert_eq!(
            names(&checks(Endpoint::Mcp, 401, Some(("", "")))),
            [("request without a bearer challenged", true)]
        );
        assert_eq!(
            names(&checks(
                Endpoint::Mcp,
                401,
                Some(("invalid_token", "the token expired"))
            )),
            [
                ("bearer token present", true),
                ("token valid (signature, iss, aud, exp)", false),
            ]
        );
        assert_eq!(
            names(&checks(
                Endpoint::Mcp,
                403,
                Some((
                    "insufficient_scope",
                    "this server requires the scopes mcp:read"
                ))
            )),
            [
                ("bearer token present", true),
                ("token valid (signature, iss, aud, exp)", true),
                ("scopes sufficient", false),
            ]
        );
        assert_eq!(names(&checks(Endpoint::Mcp, 200, None)).len(), 3);
    }

    #[test]
    fn a_callback_before_the_user_post_names_that_check() {
        assert_eq!(
            names(&checks(
                Endpoint::PartnerCallback,
                400,
                Some((
                    "invalid_state",
                    "no user was submitted for this sign-in request"
                ))
            )),
            [
                ("state matches a sign-in in progress", true),
                ("user posted before the callback", false),
            ]
        );
    }

    #[test]
    fn discovery_has_nothing_to_check() {
        assert!(checks(Endpoint::Other, 200, None).is_empty());
        assert!(checks(Endpoint::Other, 404, Some(("5", "Not Found"))).is_empty());
    }
}
