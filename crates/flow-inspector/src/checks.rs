//! What each hop proves: the checks a piece made, from the facts its handler attached to the
//! answer ([`HopFacts`]: the endpoint and the check that failed) or, for an answer without facts,
//! inferred from the endpoint and the answer.
//!
//! The inspector does not reach into the state machine. A success from an endpoint means every
//! check that endpoint makes passed (a code redeemed at the token endpoint was single-use,
//! unexpired, the client's, and its PKCE verifier, `redirect_uri` and `resource` matched); an
//! error names the one check that failed. The table is kept small on purpose: each row is what
//! the handler and `flow` actually verify.
//!
//! Which check failed comes from [`HopFacts::failed`] whenever the answer carries facts. Only an
//! answer without them (see the crate's docs for which) has it inferred by
//! [`infer_failed_check`]: from the status, the OAuth error code and words of the description the
//! emulator writes.

use scalekit_wire::{Check, Endpoint, HopFacts, OAuthErrorCode};
use serde::{Serialize, Serializer};

/// One check and its outcome, as a hop shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckOutcome {
    /// What was checked, shown by its words (`PKCE S256 verifier matches`).
    #[serde(rename = "name", serialize_with = "check_name")]
    pub check: Check,
    /// Whether it held.
    pub passed: bool,
    /// For a failure: the error code and description (`invalid_grant: …`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl CheckOutcome {
    /// The words shown for the check.
    pub fn name(&self) -> &'static str {
        self.check.name()
    }

    fn passed(check: Check) -> CheckOutcome {
        CheckOutcome {
            check,
            passed: true,
            detail: None,
        }
    }
}

fn check_name<S: Serializer>(check: &Check, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(check.name())
}

/// How an answer ended, as far as the endpoint's checks go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every check the endpoint makes passed.
    Passed,
    /// The MCP server challenged a request without a bearer: the 401 that starts discovery, the
    /// server doing its job, not a check that failed.
    ChallengedWithoutBearer,
    /// This check failed; `detail` is the error as the hop shows it.
    Failed { check: Check, detail: String },
    /// The answer is an error, but its facts name no failed check: every check of the endpoint
    /// passed and the request was refused for another reason (an MCP session of another user,
    /// a JSON-RPC error), shown as `request valid` failing after them.
    RefusedAfterChecks { detail: String },
}

/// The checks each endpoint makes when it succeeds, in the order it makes them.
pub fn passed_on_success(endpoint: Endpoint) -> &'static [Check] {
    match endpoint {
        Endpoint::Authorize => &[
            Check::ClientKnown,
            Check::RedirectUriRegistered,
            Check::PkceChallengePresent,
            Check::ResourceMatches,
        ],
        Endpoint::TokenAuthorizationCode => &[
            Check::CodeSingleUseAndUnexpired,
            Check::ClientMatches,
            Check::RedirectUriMatches,
            Check::ResourceMatches,
            Check::PkceVerifierMatches,
        ],
        Endpoint::TokenRefresh => &[
            Check::RefreshTokenUnusedAndUnexpired,
            Check::ClientMatches,
            Check::ResourceMatches,
            Check::ScopesWithinGrant,
        ],
        Endpoint::TokenClientCredentials => &[Check::ClientCredentialsValid],
        Endpoint::TokenJwtBearer => &[
            Check::GrantTypeSupported,
            Check::ClientAuthenticated,
            Check::AssertionWellFormed,
            Check::AssertionTyped,
            Check::AssertionIssuerTrusted,
            Check::AssertionSigned,
            Check::AssertionUnexpired,
            Check::AudienceAccepted,
            Check::ClientMatches,
            Check::AssertionSingleUse,
            Check::ResourceMatches,
            Check::CrossAppAccessEnabled,
            Check::ScopesAllowed,
        ],
        Endpoint::TokenOther => &[Check::GrantTypeSupported],
        Endpoint::IdpTokenExchange => &[
            Check::GrantTypeSupported,
            Check::ClientAuthenticated,
            Check::TokenRequestValid,
            Check::SubjectTokenValid,
            Check::AudienceAccepted,
            Check::ResourceMatches,
        ],
        Endpoint::SubmitUser => &[
            Check::ManagementTokenValid,
            Check::LoginRequestPending,
            Check::UserClaimsValid,
        ],
        Endpoint::PartnerCallback => &[
            Check::StateMatches,
            Check::BrowserMatches,
            Check::UserPostedBeforeCallback,
        ],
        Endpoint::Consent => &[
            Check::OriginAllowed,
            Check::ConsentRequestValid,
            Check::BrowserMatches,
            Check::PersonAllowedAccess,
        ],
        Endpoint::Register => &[Check::ClientMetadataValid],
        Endpoint::Revoke => &[Check::ClientAuthenticated],
        Endpoint::Mcp => &[
            Check::BearerTokenPresent,
            Check::TokenValid,
            Check::ScopesSufficient,
        ],
        Endpoint::Other => &[],
    }
}

/// The fallback for an error answer without facts: the check it names, matched on the status and
/// the OAuth error code, then on words of the description the emulator writes (see `flow::token`,
/// `flow::login`, `http::api`). `error` is the error code the answer carried, if any.
pub fn infer_failed_check(
    endpoint: Endpoint,
    status: u16,
    error: Option<&str>,
    description: &str,
) -> Check {
    use OAuthErrorCode as Code;
    let code = error.and_then(OAuthErrorCode::parse);
    let described = |word: &str| description.contains(word);
    match endpoint {
        Endpoint::Authorize if code == Some(Code::InvalidClient) || described("client") => {
            Check::ClientKnown
        }
        Endpoint::Authorize if described("redirect_uri") => Check::RedirectUriRegistered,
        Endpoint::Authorize if described("code_challenge") || described("PKCE") => {
            Check::PkceChallengePresent
        }
        Endpoint::Authorize if described("resource") => Check::ResourceMatches,
        Endpoint::Authorize if code == Some(Code::InvalidScope) || described("scope") => {
            Check::ScopesAllowed
        }
        Endpoint::Authorize => Check::AuthorizationRequestValid,

        Endpoint::TokenAuthorizationCode if code == Some(Code::InvalidClient) => {
            Check::ClientAuthenticated
        }
        Endpoint::TokenAuthorizationCode if described("code_verifier") => {
            Check::PkceVerifierMatches
        }
        Endpoint::TokenAuthorizationCode if described("redirect_uri") => Check::RedirectUriMatches,
        Endpoint::TokenAuthorizationCode if described("resource") => Check::ResourceMatches,
        Endpoint::TokenAuthorizationCode if described("another client") => Check::ClientMatches,
        Endpoint::TokenAuthorizationCode if code == Some(Code::InvalidGrant) => {
            Check::CodeSingleUseAndUnexpired
        }
        Endpoint::TokenAuthorizationCode => Check::TokenRequestValid,

        Endpoint::TokenRefresh if code == Some(Code::InvalidClient) => Check::ClientAuthenticated,
        Endpoint::TokenRefresh if described("another client") => Check::ClientMatches,
        Endpoint::TokenRefresh if described("resource") => Check::ResourceMatches,
        Endpoint::TokenRefresh if code == Some(Code::InvalidScope) => Check::ScopesWithinGrant,
        Endpoint::TokenRefresh if code == Some(Code::InvalidGrant) => {
            Check::RefreshTokenUnusedAndUnexpired
        }
        Endpoint::TokenRefresh => Check::TokenRequestValid,

        Endpoint::TokenClientCredentials => Check::ClientCredentialsValid,

        Endpoint::TokenJwtBearer | Endpoint::IdpTokenExchange
            if code == Some(Code::UnsupportedGrantType) =>
        {
            Check::GrantTypeSupported
        }
        Endpoint::TokenJwtBearer | Endpoint::IdpTokenExchange
            if code == Some(Code::InvalidClient) =>
        {
            Check::ClientAuthenticated
        }
        Endpoint::TokenJwtBearer if code == Some(Code::UnauthorizedClient) => {
            Check::CrossAppAccessEnabled
        }
        Endpoint::TokenJwtBearer | Endpoint::IdpTokenExchange
            if code == Some(Code::InvalidTarget) =>
        {
            Check::ResourceMatches
        }
        Endpoint::TokenJwtBearer if code == Some(Code::InvalidScope) => Check::ScopesAllowed,
        Endpoint::TokenJwtBearer if described("already used") => Check::AssertionSingleUse,
        Endpoint::TokenJwtBearer if described("another client") => Check::ClientMatches,
        Endpoint::TokenJwtBearer if code == Some(Code::InvalidGrant) => Check::AssertionSigned,
        Endpoint::IdpTokenExchange if code == Some(Code::InvalidGrant) => Check::SubjectTokenValid,
        Endpoint::TokenJwtBearer | Endpoint::IdpTokenExchange => Check::TokenRequestValid,

        Endpoint::TokenOther if code == Some(Code::UnsupportedGrantType) => {
            Check::GrantTypeSupported
        }
        Endpoint::TokenOther => Check::TokenRequestValid,

        Endpoint::SubmitUser if status == 401 => Check::ManagementTokenValid,
        Endpoint::SubmitUser if status == 404 => Check::LoginRequestPending,
        Endpoint::SubmitUser if status == 409 => Check::OneUserPerLoginRequest,
        Endpoint::SubmitUser => Check::UserClaimsValid,

        Endpoint::PartnerCallback | Endpoint::Consent
            if matches!(
                code,
                Some(Code::BrowserSessionMissing | Code::BrowserSessionMismatch)
            ) =>
        {
            Check::BrowserMatches
        }
        Endpoint::PartnerCallback if described("no user was submitted") => {
            Check::UserPostedBeforeCallback
        }
        Endpoint::PartnerCallback => Check::StateMatches,

        Endpoint::Consent if code == Some(Code::ForeignOrigin) => Check::OriginAllowed,
        Endpoint::Consent if code == Some(Code::AccessDenied) => Check::PersonAllowedAccess,
        Endpoint::Consent => Check::ConsentRequestValid,
        Endpoint::Register => Check::ClientMetadataValid,
        Endpoint::Revoke => Check::ClientAuthenticated,

        Endpoint::Mcp if status == 403 || code == Some(Code::InsufficientScope) => {
            Check::ScopesSufficient
        }
        Endpoint::Mcp if error.is_none() => Check::BearerTokenPresent,
        Endpoint::Mcp => Check::TokenValid,

        Endpoint::Other => Check::RequestValid,
    }
}

/// The detail of a failed check: the error code and description the answer carried, or its
/// status when it carried neither.
pub fn detail(status: u16, error: Option<&str>, description: Option<&str>) -> String {
    let error = error.unwrap_or_default();
    let description = description.unwrap_or_default();
    match (error.is_empty(), description.is_empty()) {
        (true, true) => format!("HTTP {status}"),
        (true, false) => description.to_owned(),
        (false, true) => error.to_owned(),
        (false, false) => format!("{error}: {description}"),
    }
}

/// How an answer of `endpoint` ended. With facts, [`HopFacts::failed`] says which check failed,
/// and nothing is inferred. Without them (the fallback), an answer with a status of 400 or more
/// or an error code failed the check [`infer_failed_check`] names, except the MCP server's bare
/// 401, which is the challenge. `error` and `description` are what the answer carried.
pub fn outcome(
    endpoint: Endpoint,
    facts: Option<HopFacts>,
    status: u16,
    error: Option<&str>,
    description: Option<&str>,
) -> Outcome {
    let error_answer = !(200..400).contains(&status) || error.is_some();
    let error = error.filter(|error| !error.is_empty());
    let description = description.filter(|description| !description.is_empty());
    let detail = || detail(status, error, description);
    if let Some(facts) = facts {
        return match facts.failed {
            Some(Check::ChallengedWithoutBearer) => Outcome::ChallengedWithoutBearer,
            Some(check) => Outcome::Failed {
                check,
                detail: detail(),
            },
            None if error_answer => Outcome::RefusedAfterChecks { detail: detail() },
            None => Outcome::Passed,
        };
    }
    if !error_answer {
        return Outcome::Passed;
    }
    if endpoint == Endpoint::Mcp && status == 401 && error.is_none() && description.is_none() {
        return Outcome::ChallengedWithoutBearer;
    }
    Outcome::Failed {
        check: infer_failed_check(endpoint, status, error, description.unwrap_or_default()),
        detail: detail(),
    }
}

/// The checks of one answer of `endpoint`.
pub fn checks(endpoint: Endpoint, outcome: &Outcome) -> Vec<CheckOutcome> {
    let all = passed_on_success(endpoint);
    if all.is_empty() {
        return Vec::new();
    }
    match outcome {
        Outcome::Passed => all.iter().copied().map(CheckOutcome::passed).collect(),
        Outcome::ChallengedWithoutBearer => vec![CheckOutcome {
            check: Check::ChallengedWithoutBearer,
            passed: true,
            detail: Some(
                "no bearer token: the 401 challenge points to the protected-resource metadata"
                    .to_owned(),
            ),
        }],
        Outcome::Failed { check, detail } => {
            // A check outside the success list (client authentication, made before anything
            // else) proves nothing else; otherwise the checks made before the failed one passed
            // and those after it were not reached.
            let mut result: Vec<CheckOutcome> = if all.contains(check) {
                all.iter()
                    .copied()
                    .take_while(|made| made != check)
                    .map(CheckOutcome::passed)
                    .collect()
            } else {
                Vec::new()
            };
            result.push(CheckOutcome {
                check: *check,
                passed: false,
                detail: Some(detail.clone()),
            });
            result
        }
        Outcome::RefusedAfterChecks { detail } => {
            let mut result: Vec<CheckOutcome> =
                all.iter().copied().map(CheckOutcome::passed).collect();
            result.push(CheckOutcome {
                check: Check::RequestValid,
                passed: false,
                detail: Some(detail.clone()),
            });
            result
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(checks: &[CheckOutcome]) -> Vec<(&'static str, bool)> {
        checks
            .iter()
            .map(|outcome| (outcome.name(), outcome.passed))
            .collect()
    }

    /// The checks of an answer without facts (the fallback): `error` is `(code, description)`.
    fn inferred(endpoint: Endpoint, status: u16, error: Option<(&str, &str)>) -> Vec<CheckOutcome> {
        let (code, description) = error.unzip();
        checks(
            endpoint,
            &outcome(endpoint, None, status, code, description),
        )
    }

    /// The checks of an answer whose handler attached facts.
    fn with_facts(
        endpoint: Endpoint,
        failed: Option<Check>,
        status: u16,
        error: Option<(&str, &str)>,
    ) -> Vec<CheckOutcome> {
        let (code, description) = error.unzip();
        let facts = HopFacts { endpoint, failed };
        checks(
            endpoint,
            &outcome(endpoint, Some(facts), status, code, description),
        )
    }

    #[test]
    fn a_redeemed_code_proves_every_check_of_the_token_endpoint() {
        let expected = [
            ("code single-use and unexpired", true),
            ("client matches", true),
            ("redirect_uri matches", true),
            ("resource matches", true),
            ("PKCE S256 verifier matches", true),
        ];
        assert_eq!(
            names(&inferred(Endpoint::TokenAuthorizationCode, 200, None)),
            expected
        );
        assert_eq!(
            names(&with_facts(
                Endpoint::TokenAuthorizationCode,
                None,
                200,
                None
            )),
            expected
        );
    }

    #[test]
    fn a_hop_with_facts_names_their_failed_check_whatever_its_description_says() {
        let checks = with_facts(
            Endpoint::TokenAuthorizationCode,
            Some(Check::ResourceMatches),
            400,
            Some(("invalid_grant", "the code was issued to another client")),
        );
        assert_eq!(
            names(&checks),
            [
                ("code single-use and unexpired", true),
                ("client matches", true),
                ("redirect_uri matches", true),
                ("resource matches", false),
            ]
        );
        assert_eq!(
            checks.last().and_then(|check| check.detail.as_deref()),
            Some("invalid_grant: the code was issued to another client")
        );
        // Without facts the same answer is read by its words.
        assert_eq!(
            names(&inferred(
                Endpoint::TokenAuthorizationCode,
                400,
                Some(("invalid_grant", "the code was issued to another client"))
            ))
            .last()
            .copied(),
            Some(("client matches", false))
        );
    }

    #[test]
    fn facts_without_a_failed_check_on_an_error_show_every_check_passed_then_the_request_refused() {
        assert_eq!(
            names(&with_facts(Endpoint::Mcp, None, 404, None)),
            [
                ("bearer token present", true),
                ("token valid (signature, iss, aud, exp)", true),
                ("scopes sufficient", true),
                ("request valid", false),
            ]
        );
    }

    #[test]
    fn the_mcp_servers_facts_name_the_challenge_and_its_failures() {
        assert_eq!(
            with_facts(
                Endpoint::Mcp,
                Some(Check::ChallengedWithoutBearer),
                401,
                None
            ),
            inferred(Endpoint::Mcp, 401, None),
            "the bare 401 is the challenge, with or without facts"
        );
        assert_eq!(
            names(&with_facts(
                Endpoint::Mcp,
                Some(Check::TokenValid),
                401,
                Some(("invalid_token", "the token expired"))
            )),
            [
                ("bearer token present", true),
                ("token valid (signature, iss, aud, exp)", false),
            ]
        );
        assert_eq!(
            names(&with_facts(
                Endpoint::Mcp,
                Some(Check::ScopesSufficient),
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
    }

    #[test]
    fn a_wrong_verifier_fails_the_pkce_check_after_the_others_passed() {
        let checks = inferred(
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
            names(&inferred(
                Endpoint::TokenAuthorizationCode,
                400,
                Some(("invalid_grant", "the authorization code was already used"))
            )),
            [("code single-use and unexpired", false)]
        );
        assert_eq!(
            names(&inferred(
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
        let expected = [("client authenticated", false)];
        assert_eq!(
            names(&inferred(
                Endpoint::TokenAuthorizationCode,
                401,
                Some(("invalid_client", "client authentication failed"))
            )),
            expected
        );
        assert_eq!(
            names(&with_facts(
                Endpoint::TokenAuthorizationCode,
                Some(Check::ClientAuthenticated),
                401,
                Some(("invalid_client", "client authentication failed"))
            )),
            expected
        );
    }

    #[test]
    fn the_user_post_names_its_check_by_status() {
        assert_eq!(
            names(&inferred(
                Endpoint::SubmitUser,
                401,
                Some(("16", "invalid token"))
            )),
            [("management token valid", false)]
        );
        assert_eq!(
            names(&inferred(
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
    fn the_mcp_server_challenges_name_their_check_without_facts() {
        assert_eq!(
            names(&inferred(Endpoint::Mcp, 401, None)),
            [("request without a bearer challenged", true)]
        );
        assert_eq!(
            names(&inferred(
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
            names(&inferred(
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
        assert_eq!(inferred(Endpoint::Mcp, 200, None).len(), 3);
    }

    #[test]
    fn a_callback_before_the_user_post_names_that_check() {
        // The redirect to the hosted `invalid_state` page: its error is in its `Location`.
        assert_eq!(
            names(&inferred(
                Endpoint::PartnerCallback,
                302,
                Some((
                    "invalid_state",
                    "no user was submitted for this sign-in request"
                ))
            )),
            [
                ("state matches a sign-in in progress", true),
                ("browser that started the sign-in", true),
                ("user posted before the callback", false),
            ]
        );
    }

    #[test]
    fn a_sign_in_finished_outside_its_browser_names_the_browser_check() {
        let missing = Some((
            "browser_session_missing",
            "the request carries no sign-in cookie",
        ));
        let expected = [
            ("state matches a sign-in in progress", true),
            ("browser that started the sign-in", false),
        ];
        assert_eq!(
            names(&inferred(Endpoint::PartnerCallback, 400, missing)),
            expected
        );
        assert_eq!(
            names(&with_facts(
                Endpoint::PartnerCallback,
                Some(Check::BrowserMatches),
                400,
                missing
            )),
            expected
        );
        assert_eq!(
            names(&inferred(Endpoint::Consent, 400, missing)),
            [
                ("posted from the environment's own origin", true),
                ("consent request valid", true),
                ("browser that started the sign-in", false),
            ]
        );
        assert_eq!(
            names(&inferred(
                Endpoint::Consent,
                403,
                Some((
                    "foreign_origin",
                    "the consent form was posted from http://evil.example"
                ))
            )),
            [("posted from the environment's own origin", false)]
        );
    }

    #[test]
    fn discovery_has_nothing_to_check() {
        assert!(inferred(Endpoint::Other, 200, None).is_empty());
        assert!(inferred(Endpoint::Other, 404, Some(("5", "Not Found"))).is_empty());
        assert!(with_facts(Endpoint::Other, None, 404, None).is_empty());
    }

    #[test]
    fn a_check_serializes_as_its_words() {
        let outcome = CheckOutcome {
            check: Check::PkceVerifierMatches,
            passed: false,
            detail: Some("invalid_grant: x".to_owned()),
        };
        assert_eq!(
            serde_json::to_value(&outcome).ok(),
            Some(serde_json::json!({
                "name": "PKCE S256 verifier matches",
                "passed": false,
                "detail": "invalid_grant: x",
            }))
        );
    }
}
