//! The classic resource-server mistakes the reference server can be told to make, one at a time,
//! so that a harness checking somebody's own MCP server (`testbed conformance
//! --mcp-server-url`) can be tested against a server known to make exactly that mistake.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::{JwksPolicy, Lapses};

/// How the server validates requests to `/mcp`: correctly, or with one deliberate mistake. Each
/// variant's documentation ends with the diagnostic the harness names for it
/// ([`Mistake::diagnostic`]); its CLI and serialized name is the kebab-case variant name.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Mistake {
    /// Every check the best real servers make.
    #[default]
    Correct,
    /// `aud` is not checked at all. Diagnostic: `audience-not-checked`.
    SkipAudience,
    /// `aud` may contain the environment URL instead of the `res_…` id (a server configured with
    /// the environment URL as its audience): the environment's management tokens get in, a
    /// token for another resource still does not. Diagnostic: `management-token-accepted`.
    AcceptEnvironmentAudience,
    /// `exp` is not compared with now; it must still be present and a number. Diagnostic:
    /// `expiry-not-checked`.
    SkipExpiry,
    /// `nbf` is not compared with now (`iat` still is). Diagnostic: `not-before-not-checked`.
    SkipNotBefore,
    /// `iat` is not compared with now (`nbf` still is). Diagnostic: `iat-not-checked`.
    SkipIssuedAt,
    /// `iss` is not checked. Diagnostic: `issuer-not-checked`.
    SkipIssuer,
    /// The payload is decoded without verifying any signature (any `alg`, any `kid`, even none);
    /// the claims are still checked. Such a server needs no keys, so it never fetches the JWKS.
    /// Diagnostic: `signature-not-checked`.
    SkipSignature,
    /// A token with header `alg: none` and an empty signature is accepted (its claims are still
    /// checked). Diagnostic: `alg-none-accepted`.
    AcceptAlgNone,
    /// A token with `alg: HS256` is verified with HMAC-SHA256 whose secret is the PEM text of the
    /// RSA public key its `kid` names (`verify(token, publicKeyPem)`); RS256 as usual.
    /// Diagnostic: `alg-confusion`.
    AlgConfusion,
    /// When the header's `kid` is unknown even after the refetch, the signature is tried with
    /// every known key. Diagnostic: `unknown-kid-accepted`.
    IgnoreKid,
    /// The JWKS is fetched once, on the first token, and never again, as Scalekit's own Node SDK
    /// does (until that first fetch succeeds, failed fetches are retried after the cooldown).
    /// Diagnostic: `jwks-not-refetched`.
    NeverRefetchJwks,
    /// A refetch adds new keys to the cached ones and never drops any. Diagnostic:
    /// `retired-key-accepted`.
    KeepRetiredKeys,
    /// With no `Authorization` header, an `access_token` query parameter is used as the bearer
    /// (OAuth 2.1 forbids it). Diagnostic: `query-token-accepted`.
    AcceptQueryToken,
    /// No `Origin` check. Diagnostic: `origin-not-checked`.
    SkipOrigin,
    /// The protected-resource metadata's `resource` is the Server URL with a trailing `/` added
    /// (the real-world trailing-slash mismatch). Diagnostic: `metadata-resource-mismatch`.
    WrongMetadataResource,
    /// The 401 challenges' `WWW-Authenticate` has no `resource_metadata` parameter (the 403 keeps
    /// it). Diagnostic: `challenge-without-resource-metadata`.
    ChallengeWithoutResourceMetadata,
    /// A valid token lacking a required scope gets 401 `invalid_token` instead of 403
    /// `insufficient_scope`. Diagnostic: `insufficient-scope-not-403`.
    #[serde(rename = "insufficient-scope-as-401")]
    #[value(name = "insufficient-scope-as-401")]
    InsufficientScopeAs401,
}

impl Mistake {
    /// The name the harness gives this mistake when it finds it in a server; `None` for
    /// [`Mistake::Correct`].
    pub fn diagnostic(self) -> Option<&'static str> {
        Some(match self {
            Mistake::Correct => return None,
            Mistake::SkipAudience => "audience-not-checked",
            Mistake::AcceptEnvironmentAudience => "management-token-accepted",
            Mistake::SkipExpiry => "expiry-not-checked",
            Mistake::SkipNotBefore => "not-before-not-checked",
            Mistake::SkipIssuedAt => "iat-not-checked",
            Mistake::SkipIssuer => "issuer-not-checked",
            Mistake::SkipSignature => "signature-not-checked",
            Mistake::AcceptAlgNone => "alg-none-accepted",
            Mistake::AlgConfusion => "alg-confusion",
            Mistake::IgnoreKid => "unknown-kid-accepted",
            Mistake::NeverRefetchJwks => "jwks-not-refetched",
            Mistake::KeepRetiredKeys => "retired-key-accepted",
            Mistake::AcceptQueryToken => "query-token-accepted",
            Mistake::SkipOrigin => "origin-not-checked",
            Mistake::WrongMetadataResource => "metadata-resource-mismatch",
            Mistake::ChallengeWithoutResourceMetadata => "challenge-without-resource-metadata",
            Mistake::InsufficientScopeAs401 => "insufficient-scope-not-403",
        })
    }

    /// The CLI name, e.g. `skip-audience`.
    pub fn name(self) -> &'static str {
        match self {
            Mistake::Correct => "correct",
            Mistake::SkipAudience => "skip-audience",
            Mistake::AcceptEnvironmentAudience => "accept-environment-audience",
            Mistake::SkipExpiry => "skip-expiry",
            Mistake::SkipNotBefore => "skip-not-before",
            Mistake::SkipIssuedAt => "skip-issued-at",
            Mistake::SkipIssuer => "skip-issuer",
            Mistake::SkipSignature => "skip-signature",
            Mistake::AcceptAlgNone => "accept-alg-none",
            Mistake::AlgConfusion => "alg-confusion",
            Mistake::IgnoreKid => "ignore-kid",
            Mistake::NeverRefetchJwks => "never-refetch-jwks",
            Mistake::KeepRetiredKeys => "keep-retired-keys",
            Mistake::AcceptQueryToken => "accept-query-token",
            Mistake::SkipOrigin => "skip-origin",
            Mistake::WrongMetadataResource => "wrong-metadata-resource",
            Mistake::ChallengeWithoutResourceMetadata => "challenge-without-resource-metadata",
            Mistake::InsufficientScopeAs401 => "insufficient-scope-as-401",
        }
    }

    /// The validation checks this mistake leaves out (none for the mistakes made elsewhere).
    pub fn lapses(self) -> Lapses {
        let mut lapses = Lapses::default();
        match self {
            Mistake::SkipAudience => lapses.skip_audience = true,
            Mistake::AcceptEnvironmentAudience => lapses.accept_environment_audience = true,
            Mistake::SkipExpiry => lapses.skip_expiry = true,
            Mistake::SkipNotBefore => lapses.skip_not_before = true,
            Mistake::SkipIssuedAt => lapses.skip_issued_at = true,
            Mistake::SkipIssuer => lapses.skip_issuer = true,
            Mistake::SkipSignature => lapses.skip_signature = true,
            Mistake::AcceptAlgNone => lapses.accept_alg_none = true,
            Mistake::AlgConfusion => lapses.alg_confusion = true,
            Mistake::IgnoreKid => lapses.ignore_kid = true,
            Mistake::Correct
            | Mistake::NeverRefetchJwks
            | Mistake::KeepRetiredKeys
            | Mistake::AcceptQueryToken
            | Mistake::SkipOrigin
            | Mistake::WrongMetadataResource
            | Mistake::ChallengeWithoutResourceMetadata
            | Mistake::InsufficientScopeAs401 => {}
        }
        lapses
    }

    /// How the JWKS is refetched under this mistake, with `refetch_cooldown`.
    pub fn jwks_policy(self, refetch_cooldown: Duration) -> JwksPolicy {
        JwksPolicy {
            refetch_cooldown,
            refetch_unknown_kids: self != Mistake::NeverRefetchJwks,
            drop_retired_keys: self != Mistake::KeepRetiredKeys,
        }
    }
}

impl std::fmt::Display for Mistake {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.name())
    }
}

/// A name that is not one of [`Mistake`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not a mistake the reference server can make")]
pub struct UnknownMistake {
    /// The name given.
    pub name: String,
}

impl std::str::FromStr for Mistake {
    type Err = UnknownMistake;

    /// The kebab-case names, as on the command line.
    fn from_str(text: &str) -> Result<Mistake, UnknownMistake> {
        <Mistake as clap::ValueEnum>::from_str(text, false).map_err(|_| UnknownMistake {
            name: text.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    use super::*;

    #[test]
    fn names_are_the_kebab_case_variant_names_everywhere() {
        for mistake in Mistake::value_variants() {
            let clap_name = mistake
                .to_possible_value()
                .expect("no variant is skipped")
                .get_name()
                .to_owned();
            assert_eq!(clap_name, mistake.name());
            assert_eq!(mistake.to_string(), mistake.name());
            assert_eq!(mistake.name().parse::<Mistake>(), Ok(*mistake));
            let serialized = serde_json::to_value(mistake).expect("serializable");
            assert_eq!(serialized, serde_json::json!(mistake.name()));
        }
        assert_eq!(
            "skip_audience".parse::<Mistake>(),
            Err(UnknownMistake {
                name: "skip_audience".to_owned()
            })
        );
        assert_eq!(
            UnknownMistake {
                name: "x".to_owned()
            }
            .to_string(),
            "\"x\" is not a mistake the reference server can make"
        );
    }

    #[test]
    fn every_mistake_but_correct_has_its_own_diagnostic() {
        let mut diagnostics: Vec<&str> = Mistake::value_variants()
            .iter()
            .filter_map(|mistake| mistake.diagnostic())
            .collect();
        assert_eq!(diagnostics.len(), Mistake::value_variants().len() - 1);
        diagnostics.sort_unstable();
        diagnostics.dedup();
        assert_eq!(diagnostics.len(), Mistake::value_variants().len() - 1);
        assert_eq!(Mistake::Correct.diagnostic(), None);
    }

    #[test]
    fn each_mistake_changes_at_most_one_thing() {
        for mistake in Mistake::value_variants() {
            let lapses = mistake.lapses();
            let lapsed = [
                lapses.skip_audience,
                lapses.accept_environment_audience,
                lapses.skip_expiry,
                lapses.skip_not_before,
                lapses.skip_issued_at,
                lapses.skip_issuer,
                lapses.skip_signature,
                lapses.accept_alg_none,
                lapses.alg_confusion,
                lapses.ignore_kid,
            ]
            .into_iter()
            .filter(|lapsed| *lapsed)
            .count();
            let jwks = mistake.jwks_policy(Duration::from_secs(10));
            let jwks_changes =
                usize::from(!jwks.refetch_unknown_kids) + usize::from(!jwks.drop_retired_keys);
            assert!(
                lapsed + jwks_changes <= 1,
                "{mistake} changes more than one thing"
            );
        }
        assert_eq!(Mistake::Correct.lapses(), Lapses::default());
        assert_eq!(
            Mistake::Correct.jwks_policy(crate::auth::DEFAULT_JWKS_REFETCH_COOLDOWN),
            JwksPolicy::default()
        );
    }
}
