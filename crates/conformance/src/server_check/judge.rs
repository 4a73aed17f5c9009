//! What one answer of the server under test means: pure verdicts over an [`Observation`], so that
//! every rule of the check is unit-tested without a server.

use serde_json::Value;

use super::diagnose::{Mistake, Severity};
use super::probe::Observation;
use crate::CheckStatus;

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Verdict {
    pub status: CheckStatus,
    /// The mistake the answer shows, if any.
    pub mistake: Option<Mistake>,
    /// Why it failed, warned or was skipped.
    pub message: Option<String>,
}

impl Verdict {
    pub(crate) fn success() -> Verdict {
        Verdict {
            status: CheckStatus::Success,
            mistake: None,
            message: None,
        }
    }

    /// The mistake, as a failure or a warning per its severity, with what was seen.
    pub(crate) fn mistake(mistake: Mistake, seen: impl Into<String>) -> Verdict {
        let entry = mistake.entry();
        let status = match entry.severity {
            Severity::Failure => CheckStatus::Failure,
            Severity::Warning => CheckStatus::Warning,
        };
        Verdict {
            status,
            mistake: Some(mistake),
            message: Some(format!("{}: {} ({})", entry.id, entry.summary, seen.into())),
        }
    }

    /// A failure no named mistake explains (the server did not answer, say).
    pub(crate) fn failure(message: impl Into<String>) -> Verdict {
        Verdict {
            status: CheckStatus::Failure,
            mistake: None,
            message: Some(message.into()),
        }
    }

    /// A warning no named mistake explains.
    pub(crate) fn warning(message: impl Into<String>) -> Verdict {
        Verdict {
            status: CheckStatus::Warning,
            mistake: None,
            message: Some(message.into()),
        }
    }

    pub(crate) fn skipped(reason: impl Into<String>) -> Verdict {
        Verdict {
            status: CheckStatus::Skipped,
            mistake: None,
            message: Some(reason.into()),
        }
    }
}

/// A token that must be refused with 401 `invalid_token` (RFC 6750 §3.1): accepted is
/// `when_accepted`; 401 without the error code warns; another status fails.
pub(crate) fn refusal(observation: &Observation, when_accepted: Mistake) -> Verdict {
    let Some(status) = observation.status() else {
        return Verdict::failure(format!(
            "your server did not answer: {}",
            observation.describe()
        ));
    };
    if observation.accepted() {
        return Verdict::mistake(when_accepted, observation.describe());
    }
    // 403 `insufficient_scope` means the token passed validation and only lacked a scope: with
    // the scope it would have been served (the runner confirms it where it can).
    if refused_for_scope(observation) {
        return Verdict::mistake(
            when_accepted,
            format!(
                "{}: your server validated the token and refused it only for its scopes",
                observation.describe()
            ),
        );
    }
    if status != 401 {
        return Verdict::mistake(Mistake::InvalidTokenNot401, observation.describe());
    }
    match observation
        .challenge()
        .and_then(|challenge| challenge.error)
    {
        Some(error) if error == "invalid_token" => Verdict::success(),
        _ => Verdict::mistake(Mistake::InvalidTokenErrorMissing, observation.describe()),
    }
}

/// Whether the answer is 403 `insufficient_scope`: the token passed validation (or the server
/// checks scopes first) and only lacked a scope.
pub(crate) fn refused_for_scope(observation: &Observation) -> bool {
    observation.status() == Some(403)
        && observation
            .challenge()
            .and_then(|challenge| challenge.error)
            .as_deref()
            == Some("insufficient_scope")
}

/// A token in the query string: any refusal will do (the server may see no token at all and
/// answer 401 without an error code, which is right for a request without credentials).
pub(crate) fn query_refusal(observation: &Observation) -> Verdict {
    match observation.status() {
        None => Verdict::failure(format!(
            "your server did not answer: {}",
            observation.describe()
        )),
        Some(_) if observation.accepted() => {
            Verdict::mistake(Mistake::QueryTokenAccepted, observation.describe())
        }
        Some(_) => Verdict::success(),
    }
}

/// A valid token that must be served: refused with 401 or 403 is `when_refused`.
pub(crate) fn acceptance(observation: &Observation, when_refused: Mistake) -> Verdict {
    match observation.status() {
        None => Verdict::failure(format!(
            "your server did not answer: {}",
            observation.describe()
        )),
        Some(_) if observation.accepted() => Verdict::success(),
        Some(401 | 403) => Verdict::mistake(when_refused, observation.describe()),
        Some(_) => Verdict::failure(format!(
            "a valid token was not served: {}",
            observation.describe()
        )),
    }
}

/// The answer to a request without a token: 401 with a Bearer challenge.
pub(crate) fn unauthenticated(observation: &Observation) -> Verdict {
    match observation.status() {
        None => Verdict::failure(format!(
            "your server did not answer: {}",
            observation.describe()
        )),
        Some(401) if observation.challenge().is_some() => Verdict::success(),
        Some(401) => Verdict::mistake(Mistake::ChallengeNotBearer, observation.describe()),
        Some(_) => Verdict::mistake(Mistake::NoTokenNotChallenged, observation.describe()),
    }
}

/// A valid token lacking `scope`, on a request that needs it: 403 `insufficient_scope` naming
/// the scope (MCP "Scope Challenge Handling").
pub(crate) fn insufficient_scope(observation: &Observation, scope: &str) -> Verdict {
    let Some(status) = observation.status() else {
        return Verdict::failure(format!(
            "your server did not answer: {}",
            observation.describe()
        ));
    };
    if observation.accepted() {
        return Verdict::mistake(Mistake::ScopeNotEnforced, observation.describe());
    }
    let challenge = observation.challenge().unwrap_or_default();
    if status != 403 || challenge.error.as_deref() != Some("insufficient_scope") {
        return Verdict::mistake(Mistake::InsufficientScopeNot403, observation.describe());
    }
    let named = challenge
        .scope
        .as_deref()
        .is_some_and(|scopes| scopes.split_whitespace().any(|each| each == scope));
    if named {
        Verdict::success()
    } else {
        Verdict::mistake(
            Mistake::InsufficientScopeWithoutScope,
            format!(
                "{}; the challenge was {:?}",
                observation.describe(),
                observation.www_authenticate().unwrap_or_default()
            ),
        )
    }
}

/// A request from a foreign `Origin` with a valid token: 403.
pub(crate) fn foreign_origin(observation: &Observation) -> Verdict {
    match observation.status() {
        None => Verdict::failure(format!(
            "your server did not answer: {}",
            observation.describe()
        )),
        Some(_) if observation.accepted() => {
            Verdict::mistake(Mistake::OriginNotChecked, observation.describe())
        }
        Some(403) => Verdict::success(),
        Some(_) => Verdict::mistake(Mistake::ForeignOriginNot403, observation.describe()),
    }
}

/// Whether a JSON-RPC reply carries a result (not an error).
pub(crate) fn has_result(reply: Option<&Value>) -> bool {
    reply.is_some_and(|reply| reply.get("result").is_some() && reply.get("error").is_none())
}

#[cfg(test)]
mod tests {
    use reqwest::header::{HeaderMap, HeaderValue, WWW_AUTHENTICATE};

    use super::super::probe::{Answer, SentRequest};
    use super::*;

    fn answered(status: u16, challenge: Option<&str>) -> Observation {
        answered_with(status, challenge, b"")
    }

    fn answered_with(status: u16, challenge: Option<&str>, body: &[u8]) -> Observation {
        let mut headers = HeaderMap::new();
        if let Some(challenge) = challenge {
            headers.insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_str(challenge).expect("a header value"),
            );
        }
        Observation {
            request: SentRequest {
                method: "POST".to_owned(),
                url: "http://127.0.0.1:3000/mcp".to_owned(),
                headers: Vec::new(),
                body: None,
            },
            answer: Ok(Answer {
                status,
                headers,
                body: body.to_vec(),
                cut: None,
            }),
        }
    }

    fn unanswered() -> Observation {
        let mut observation = answered(0, None);
        observation.answer = Err("connection refused".to_owned());
        observation
    }

    #[test]
    fn a_refused_token_must_get_401_invalid_token() {
        let invalid = answered(401, Some("Bearer error=\"invalid_token\""));
        assert_eq!(
            refusal(&invalid, Mistake::AudienceNotChecked),
            Verdict::success()
        );
        let served = refusal(&answered(200, None), Mistake::AudienceNotChecked);
        assert_eq!(served.status, CheckStatus::Failure);
        assert_eq!(served.mistake, Some(Mistake::AudienceNotChecked));
        assert_eq!(
            served.message.as_deref(),
            Some(
                "audience-not-checked: a token issued for another MCP server was accepted (the confused deputy) (POST http://127.0.0.1:3000/mcp → 200)"
            )
        );
        let bare = refusal(
            &answered(401, Some("Bearer realm=\"mcp\"")),
            Mistake::AudienceNotChecked,
        );
        assert_eq!(bare.status, CheckStatus::Warning);
        assert_eq!(bare.mistake, Some(Mistake::InvalidTokenErrorMissing));
        let scoped = refusal(
            &answered(
                403,
                Some("Bearer error=\"insufficient_scope\", scope=\"mcp:read\""),
            ),
            Mistake::ManagementTokenAccepted,
        );
        assert_eq!(scoped.mistake, Some(Mistake::ManagementTokenAccepted));
        assert!(
            scoped
                .message
                .as_deref()
                .is_some_and(|message| message.ends_with("refused it only for its scopes)")),
            "{scoped:?}"
        );
        let rpc_error = refusal(
            &answered_with(
                200,
                None,
                br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"Unauthorized"}}"#,
            ),
            Mistake::AudienceNotChecked,
        );
        assert_eq!(rpc_error.mistake, Some(Mistake::InvalidTokenNot401));
        assert_eq!(
            rpc_error.message.as_deref(),
            Some(
                "invalid-token-not-401: a bad token was refused, but not with 401 (POST http://127.0.0.1:3000/mcp → 200 with a JSON-RPC error)"
            )
        );
        let forbidden = refusal(&answered(403, None), Mistake::ExpiryNotChecked);
        assert_eq!(forbidden.mistake, Some(Mistake::InvalidTokenNot401));
        let silent = refusal(&unanswered(), Mistake::ExpiryNotChecked);
        assert_eq!(silent.status, CheckStatus::Failure);
        assert_eq!(silent.mistake, None);
    }

    #[test]
    fn a_query_token_may_be_refused_in_any_way() {
        assert_eq!(query_refusal(&answered(401, None)), Verdict::success());
        assert_eq!(query_refusal(&answered(400, None)), Verdict::success());
        assert_eq!(
            query_refusal(&answered(200, None)).mistake,
            Some(Mistake::QueryTokenAccepted)
        );
    }

    #[test]
    fn a_valid_token_refused_with_401_or_403_is_named() {
        assert_eq!(
            acceptance(&answered(202, None), Mistake::ValidTokenRefused),
            Verdict::success()
        );
        assert_eq!(
            acceptance(&answered(401, None), Mistake::ResourceIssuerRefused).mistake,
            Some(Mistake::ResourceIssuerRefused)
        );
        let teapot = acceptance(&answered(418, None), Mistake::ValidTokenRefused);
        assert_eq!(teapot.status, CheckStatus::Failure);
        assert_eq!(teapot.mistake, None);
    }

    #[test]
    fn no_token_must_get_a_bearer_challenge() {
        assert_eq!(
            unauthenticated(&answered(401, Some("Bearer resource_metadata=\"x\""))),
            Verdict::success()
        );
        assert_eq!(
            unauthenticated(&answered(401, Some("Basic realm=\"x\""))).mistake,
            Some(Mistake::ChallengeNotBearer)
        );
        assert_eq!(
            unauthenticated(&answered(200, None)).mistake,
            Some(Mistake::NoTokenNotChallenged)
        );
    }

    #[test]
    fn insufficient_scope_needs_403_and_the_scope_named() {
        let good = answered(
            403,
            Some("Bearer error=\"insufficient_scope\", scope=\"mcp:read mcp:write\""),
        );
        assert_eq!(insufficient_scope(&good, "mcp:write"), Verdict::success());
        assert_eq!(
            insufficient_scope(&good, "admin").mistake,
            Some(Mistake::InsufficientScopeWithoutScope)
        );
        let as_401 = answered(401, Some("Bearer error=\"invalid_token\""));
        assert_eq!(
            insufficient_scope(&as_401, "mcp:read").mistake,
            Some(Mistake::InsufficientScopeNot403)
        );
        assert_eq!(
            insufficient_scope(&answered(200, None), "mcp:read").mistake,
            Some(Mistake::ScopeNotEnforced)
        );
        let without_scope = answered(403, Some("Bearer error=\"insufficient_scope\""));
        assert_eq!(
            insufficient_scope(&without_scope, "mcp:read").mistake,
            Some(Mistake::InsufficientScopeWithoutScope)
        );
    }

    #[test]
    fn a_foreign_origin_must_get_403() {
        assert_eq!(foreign_origin(&answered(403, None)), Verdict::success());
        assert_eq!(
            foreign_origin(&answered(200, None)).mistake,
            Some(Mistake::OriginNotChecked)
        );
        let other = foreign_origin(&answered(400, None));
        assert_eq!(other.status, CheckStatus::Warning);
        assert_eq!(other.mistake, Some(Mistake::ForeignOriginNot403));
    }
}
