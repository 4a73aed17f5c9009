//! The mistakes an MCP server's token validation can make, each with its spec references and its
//! fix, and the rule that names one root cause when several checks fail for the same reason
//! (a server that checks no audience accepts the management token too). Pure: no IO.

use std::collections::BTreeSet;

use serde::Serialize;

/// How bad a mistake is: a MUST broken fails the run, a SHOULD broken warns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Fails the check and the run.
    Failure,
    /// Reported, but the run still passes.
    Warning,
}

/// One named mistake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mistake {
    /// No protected-resource metadata at the well-known URLs or the challenge's URL.
    MetadataMissing,
    /// The metadata's `resource` is not exactly the Server URL.
    MetadataResourceMismatch,
    /// `authorization_servers` does not name the Scalekit resource issuer.
    MetadataWrongAuthorizationServer,
    /// `bearer_methods_supported` offers more than the header.
    MetadataBearerMethods,
    /// A request without a token is not answered 401.
    NoTokenNotChallenged,
    /// The 401 has no `WWW-Authenticate: Bearer` challenge.
    ChallengeNotBearer,
    /// The challenge has no `resource_metadata`.
    ChallengeWithoutResourceMetadata,
    /// The challenge's `resource_metadata` does not lead to this server's metadata.
    ChallengeResourceMetadataWrong,
    /// A token that is not a JWT was accepted.
    MalformedTokenAccepted,
    /// A bad token was refused with another status than 401.
    InvalidTokenNot401,
    /// A bad token was refused with 401 but without `error="invalid_token"`.
    InvalidTokenErrorMissing,
    /// The MCP client driver could not complete the OAuth flow against the server.
    FlowFailed,
    /// A valid token was refused.
    ValidTokenRefused,
    /// A token with the resource-scoped issuer was refused.
    ResourceIssuerRefused,
    /// An agent's (`client_credentials`) token was refused.
    AgentTokenRefused,
    /// A token for another MCP server was accepted.
    AudienceNotChecked,
    /// The environment's management token was accepted.
    ManagementTokenAccepted,
    /// An ID token was accepted as an access token.
    IdTokenAccepted,
    /// An expired token was accepted.
    ExpiryNotChecked,
    /// A token whose `nbf` and `iat` are in the future was accepted.
    NotBeforeNotChecked,
    /// A token issued in the future was accepted.
    IatNotChecked,
    /// A token from another issuer was accepted.
    IssuerNotChecked,
    /// A token whose payload was changed after signing was accepted.
    SignatureNotChecked,
    /// An unsigned token (`alg: none`) was accepted.
    AlgNoneAccepted,
    /// An HS256 token keyed with the public key was accepted.
    AlgConfusion,
    /// A token naming a key the JWKS does not have was accepted.
    UnknownKidAccepted,
    /// A token in the `access_token` query parameter was accepted.
    QueryTokenAccepted,
    /// A token signed by a newly published key was refused.
    JwksNotRefetched,
    /// A token signed by a retired key was accepted.
    RetiredKeyAccepted,
    /// A token lacking the tool's scope could call the tool.
    ScopeNotEnforced,
    /// A token lacking the tool's scope was refused, but not with 403 `insufficient_scope`.
    InsufficientScopeNot403,
    /// The 403 `insufficient_scope` does not name the needed scope in `scope=`.
    InsufficientScopeWithoutScope,
    /// A token with the tool's scope could not call the tool.
    ScopedCallRefused,
    /// A request from a foreign `Origin` was accepted.
    OriginNotChecked,
    /// A foreign `Origin` was refused, but not with 403.
    ForeignOriginNot403,
    /// A request from the server's own origin was refused.
    OwnOriginRefused,
    /// A request from a loopback origin (a local tool such as MCP Inspector) was refused.
    LoopbackOriginRefused,
}

/// What reports say about a mistake.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// The stable id, e.g. `audience-not-checked`.
    pub id: &'static str,
    /// Failure or warning.
    pub severity: Severity,
    /// What the server did, in one sentence.
    pub summary: &'static str,
    /// The specs it breaks.
    pub spec: &'static [&'static str],
    /// What to change.
    pub fix: &'static str,
}

impl Mistake {
    /// Every mistake, in report order.
    pub const ALL: [Mistake; 37] = [
        Self::MetadataMissing,
        Self::MetadataResourceMismatch,
        Self::MetadataWrongAuthorizationServer,
        Self::MetadataBearerMethods,
        Self::NoTokenNotChallenged,
        Self::ChallengeNotBearer,
        Self::ChallengeWithoutResourceMetadata,
        Self::ChallengeResourceMetadataWrong,
        Self::MalformedTokenAccepted,
        Self::InvalidTokenNot401,
        Self::InvalidTokenErrorMissing,
        Self::FlowFailed,
        Self::ValidTokenRefused,
        Self::ResourceIssuerRefused,
        Self::AgentTokenRefused,
        Self::AudienceNotChecked,
        Self::ManagementTokenAccepted,
        Self::IdTokenAccepted,
        Self::ExpiryNotChecked,
        Self::NotBeforeNotChecked,
        Self::IatNotChecked,
        Self::IssuerNotChecked,
        Self::SignatureNotChecked,
        Self::AlgNoneAccepted,
        Self::AlgConfusion,
        Self::UnknownKidAccepted,
        Self::QueryTokenAccepted,
        Self::JwksNotRefetched,
        Self::RetiredKeyAccepted,
        Self::ScopeNotEnforced,
        Self::InsufficientScopeNot403,
        Self::InsufficientScopeWithoutScope,
        Self::ScopedCallRefused,
        Self::OriginNotChecked,
        Self::ForeignOriginNot403,
        Self::OwnOriginRefused,
        Self::LoopbackOriginRefused,
    ];

    /// The stable id.
    pub fn id(self) -> &'static str {
        self.entry().id
    }

    /// Failure or warning.
    pub fn severity(self) -> Severity {
        self.entry().severity
    }

    /// The mistake whose id this is.
    pub fn from_id(id: &str) -> Option<Mistake> {
        Self::ALL.into_iter().find(|mistake| mistake.id() == id)
    }

    /// What reports say about it.
    pub fn entry(self) -> Entry {
        use Severity::{Failure, Warning};
        let (id, severity, summary, spec, fix): (_, _, _, &'static [&'static str], _) = match self {
            Self::MetadataMissing => (
                "metadata-missing",
                Failure,
                "no protected-resource metadata was found at the well-known URL derived from the Server URL, at the root well-known URL, or at the challenge's resource_metadata",
                &["RFC9728-3", "mcp-2025-11-25:authorization-server-location"],
                "serve the metadata (JSON with resource, authorization_servers) at /.well-known/oauth-protected-resource followed by your MCP endpoint's path, e.g. /.well-known/oauth-protected-resource/mcp",
            ),
            Self::MetadataResourceMismatch => (
                "metadata-resource-mismatch",
                Failure,
                "the metadata's resource is not exactly the Server URL registered with Scalekit",
                &["RFC9728-3.3", "scalekit:protected-metadata"],
                "publish resource byte for byte as the Server URL (scheme, host, port, path, no added trailing slash); clients send it as RFC 8707 resource and Scalekit puts it in aud",
            ),
            Self::MetadataWrongAuthorizationServer => (
                "metadata-wrong-authorization-server",
                Failure,
                "the metadata's authorization_servers does not name the Scalekit resource issuer {env}/resources/{res}",
                &["RFC9728-2", "scalekit:protected-metadata"],
                "list {env}/resources/{res_…} in authorization_servers, exactly as the dashboard's Metadata JSON shows: clients discover the authorization server's metadata from it",
            ),
            Self::MetadataBearerMethods => (
                "metadata-bearer-methods",
                Failure,
                "the metadata's bearer_methods_supported offers more than the Authorization header",
                &["RFC9728-2", "mcp-2025-11-25:token-handling"],
                "publish bearer_methods_supported = [\"header\"] (or leave it out): MCP clients MUST send tokens in the header only",
            ),
            Self::NoTokenNotChallenged => (
                "no-token-not-challenged",
                Failure,
                "a request without a token was not answered 401",
                &["RFC6750-3", "mcp-2025-11-25:authorization-flow-steps"],
                "answer every MCP request without a valid bearer token with 401 and WWW-Authenticate: Bearer resource_metadata=\"…\"; MCP clients start the OAuth flow only on a 401",
            ),
            Self::ChallengeNotBearer => (
                "challenge-not-bearer",
                Failure,
                "the 401 carries no WWW-Authenticate: Bearer challenge",
                &["RFC6750-3", "RFC9110-11.6.1"],
                "send WWW-Authenticate: Bearer resource_metadata=\"<metadata URL>\" with the 401",
            ),
            Self::ChallengeWithoutResourceMetadata => (
                "challenge-without-resource-metadata",
                Failure,
                "the 401 challenge has no resource_metadata parameter",
                &[
                    "RFC9728-5.1",
                    "mcp-2025-06-18:authorization-server-location",
                    "scalekit:challenge",
                ],
                "add resource_metadata=\"<your metadata URL>\" to WWW-Authenticate: Bearer, as Scalekit's quickstart shows; clients that do not probe well-known URLs need it",
            ),
            Self::ChallengeResourceMetadataWrong => (
                "challenge-resource-metadata-wrong",
                Failure,
                "the challenge's resource_metadata does not lead to this server's protected-resource metadata",
                &["RFC9728-5.1"],
                "point resource_metadata at the URL that serves your metadata (its resource must be this server's Server URL)",
            ),
            Self::MalformedTokenAccepted => (
                "malformed-token-accepted",
                Failure,
                "a bearer token that is not a JWT was accepted",
                &["RFC6750-3.1", "mcp-2025-11-25:token-handling"],
                "validate every bearer token (signature with the environment's JWKS, iss, aud, exp) before serving the request",
            ),
            Self::InvalidTokenNot401 => (
                "invalid-token-not-401",
                Failure,
                "a bad token was refused, but not with 401",
                &["RFC6750-3.1", "mcp-2025-11-25:error-handling"],
                "answer an invalid or expired token with 401 and WWW-Authenticate: Bearer error=\"invalid_token\"; MCP clients re-authorize only on a 401",
            ),
            Self::InvalidTokenErrorMissing => (
                "invalid-token-error-missing",
                Warning,
                "a bad token was refused with 401, but the challenge does not say error=\"invalid_token\"",
                &["RFC6750-3.1"],
                "add error=\"invalid_token\" (and an error_description) to the Bearer challenge when a token was sent but failed validation",
            ),
            Self::FlowFailed => (
                "flow-failed",
                Failure,
                "the MCP client could not complete the OAuth flow against your server",
                &["mcp-2025-11-25:authorization-flow-steps"],
                "see the driver's error and hops: the flow starts from your 401 and your protected-resource metadata",
            ),
            Self::ValidTokenRefused => (
                "valid-token-refused",
                Failure,
                "a valid access token for this server was refused",
                &["RFC9068-4", "scalekit:token-claims"],
                "accept tokens signed by a key in {env}/keys, with iss {env} or {env}/resources/{res}, aud containing your res_… id or Server URL, and exp in the future",
            ),
            Self::ResourceIssuerRefused => (
                "resource-issuer-refused",
                Warning,
                "a token whose iss is the resource issuer {env}/resources/{res} was refused",
                &["scalekit:issuer-migration"],
                "accept both issuers, {env} and {env}/resources/{res}: Scalekit is moving access tokens to the resource-scoped issuer (issuer-bound tokens)",
            ),
            Self::AgentTokenRefused => (
                "agent-token-refused",
                Failure,
                "a valid token of an agent (client_credentials: sub = client_id = the agent, scopes only in the scopes array, no email or user claims) was refused",
                &["RFC6749-4.4", "scalekit:agent-mcp"],
                "accept tokens without a user: do not require email, sid or xuid, take sub as the caller (the agent's m2m_… client id), and read scopes from the scopes array as well as the scope string",
            ),
            Self::AudienceNotChecked => (
                "audience-not-checked",
                Failure,
                "a token issued for another MCP server was accepted (the confused deputy)",
                &[
                    "RFC8707-2",
                    "RFC9068-4",
                    "mcp-2025-11-25:token-audience-binding-and-validation",
                ],
                "require aud to contain your res_… id (or your Server URL): with Scalekit's Node SDK pass { audience: [resourceId] } to validateToken",
            ),
            Self::ManagementTokenAccepted => (
                "management-token-accepted",
                Failure,
                "the environment's management token (client_credentials, aud = the environment) was accepted",
                &[
                    "RFC8707-2",
                    "mcp-2025-11-25:token-audience-binding-and-validation",
                ],
                "require aud to contain your res_… id; the environment URL is not an audience of MCP tokens (management tokens are signed by the same keys)",
            ),
            Self::IdTokenAccepted => (
                "id-token-accepted",
                Failure,
                "an ID token (aud = the MCP client) was accepted as an access token",
                &["RFC9068-4", "OIDC-Core-2"],
                "require aud to contain your res_… id; ID tokens are for the client, not for resource servers",
            ),
            Self::ExpiryNotChecked => (
                "expiry-not-checked",
                Failure,
                "an expired token was accepted",
                &["RFC7519-4.1.4", "RFC9068-4"],
                "refuse tokens whose exp is in the past (a leeway of a minute or two is fine)",
            ),
            Self::NotBeforeNotChecked => (
                "not-before-not-checked",
                Failure,
                "a token that is not valid yet (nbf and iat in the future) was accepted",
                &["RFC7519-4.1.5"],
                "refuse tokens whose nbf is in the future, beyond a small leeway",
            ),
            Self::IatNotChecked => (
                "iat-not-checked",
                Warning,
                "a token issued in the future (iat) was accepted",
                &["RFC7519-4.1.6", "scalekit:python-sdk-iat"],
                "refuse tokens whose iat is in the future beyond a small leeway, as Scalekit's Python SDK (PyJWT) does; Scalekit never issues one",
            ),
            Self::IssuerNotChecked => (
                "issuer-not-checked",
                Failure,
                "a token from another issuer (signed by the same key) was accepted",
                &["RFC9068-4", "RFC8414-3.3"],
                "require iss to be {env} or {env}/resources/{res}",
            ),
            Self::SignatureNotChecked => (
                "signature-not-checked",
                Failure,
                "a token whose payload was changed after it was signed was accepted",
                &["RFC7515-5.2", "RFC9068-4"],
                "verify the RS256 signature with the key from {env}/keys named by the header's kid before reading any claim",
            ),
            Self::AlgNoneAccepted => (
                "alg-none-accepted",
                Failure,
                "an unsigned token (alg: none) was accepted",
                &["RFC8725-3.1", "RFC7518-3.6"],
                "allow RS256 only (Scalekit signs nothing else); never accept alg none",
            ),
            Self::AlgConfusion => (
                "alg-confusion",
                Failure,
                "an HS256 token whose HMAC key is the RSA public key was accepted (algorithm confusion)",
                &["RFC8725-3.1", "RFC8725-3.2"],
                "pin the algorithm to RS256 when verifying; never let the token's alg choose how the key is used",
            ),
            Self::UnknownKidAccepted => (
                "unknown-kid-accepted",
                Failure,
                "a token naming a key the JWKS does not publish was accepted",
                &["RFC7515-4.1.4", "RFC8725-3.10"],
                "select the verification key by the header's kid and refuse a kid that {env}/keys does not publish (after one rate-limited refetch)",
            ),
            Self::QueryTokenAccepted => (
                "query-token-accepted",
                Failure,
                "a token sent in the access_token query parameter was accepted",
                &["OAuth-2.1-5.2", "mcp-2025-11-25:token-handling"],
                "read the token from the Authorization: Bearer header only; URLs end up in logs and Referer headers",
            ),
            Self::JwksNotRefetched => (
                "jwks-not-refetched",
                Failure,
                "a token signed by a newly published key was refused: the keys were not fetched again",
                &[
                    "RFC7517-5",
                    "scalekit:decision-10",
                    "OIDF:oidcc-server-rotate-keys",
                ],
                "fetch {env}/keys again when a token names an unknown kid (rate-limited); a JWKS cached forever breaks at Scalekit's next key rotation",
            ),
            Self::RetiredKeyAccepted => (
                "retired-key-accepted",
                Failure,
                "a token signed by a key no longer published in the JWKS was accepted",
                &["RFC7517-5", "scalekit:decision-10"],
                "replace the cached key set on every JWKS fetch instead of adding to it, so retired keys stop working",
            ),
            Self::ScopeNotEnforced => (
                "scope-not-enforced",
                Failure,
                "a valid token without the tool's scope called the tool",
                &["RFC6750-3.1", "mcp-2025-11-25:scope-challenge-handling"],
                "check the scopes a request needs against the token's scopes array (or scope string) and answer 403 insufficient_scope when one is missing",
            ),
            Self::InsufficientScopeNot403 => (
                "insufficient-scope-not-403",
                Failure,
                "a valid token without the tool's scope was refused, but not with 403 and error=\"insufficient_scope\"",
                &["RFC6750-3.1", "mcp-2025-11-25:scope-challenge-handling"],
                "answer a valid token that lacks a scope with 403 and WWW-Authenticate: Bearer error=\"insufficient_scope\", scope=\"<the scopes needed>\", so the client can step up",
            ),
            Self::InsufficientScopeWithoutScope => (
                "insufficient-scope-without-scope",
                Failure,
                "the 403 insufficient_scope challenge does not name the needed scope in scope=",
                &["RFC6750-3", "mcp-2025-11-25:scope-challenge-handling"],
                "add scope=\"<every scope the request needs>\" to the insufficient_scope challenge",
            ),
            Self::ScopedCallRefused => (
                "scoped-call-refused",
                Failure,
                "a valid token with the tool's scope could not call the tool",
                &["mcp-2025-11-25:scope-challenge-handling"],
                "let a token that has the scope call the tool (check the scope against the token's scopes array or scope string)",
            ),
            Self::OriginNotChecked => (
                "origin-not-checked",
                Failure,
                "a request with a foreign Origin was served (DNS rebinding)",
                &["mcp-2025-11-25:transports-security-warning"],
                "validate Origin on every request: answer 403 when it is present and not one you expect (your own origin, loopback for local tools)",
            ),
            Self::ForeignOriginNot403 => (
                "foreign-origin-not-403",
                Warning,
                "a foreign Origin was refused, but not with 403",
                &["mcp-2025-11-25:transports-security-warning"],
                "answer a foreign Origin with 403 Forbidden, as the transport specification says",
            ),
            Self::OwnOriginRefused => (
                "own-origin-refused",
                Failure,
                "a request from the server's own origin was refused",
                &["mcp-2025-11-25:transports-security-warning"],
                "accept requests without Origin and from the origins you serve; refuse only foreign ones",
            ),
            Self::LoopbackOriginRefused => (
                "loopback-origin-refused",
                Warning,
                "a request from a loopback origin (MCP Inspector's http://localhost:6274) was refused",
                &["mcp-2025-11-25:transports-security-warning"],
                "accept loopback origins (http://localhost:<port>, http://127.0.0.1:<port>) next to your own, so that local tools such as MCP Inspector can reach the server during development",
            ),
        };
        Entry {
            id,
            severity,
            summary,
            spec,
            fix,
        }
    }

    /// The mistake that explains this one when both were seen: a server that does not check
    /// the audience accepts the management token and the ID token for that reason; one that does
    /// not check signatures accepts any `alg` and any `kid`; a flow that stopped at the metadata
    /// or the challenge stopped for that reason.
    pub fn explained_by(self) -> &'static [Mistake] {
        match self {
            Self::ManagementTokenAccepted | Self::IdTokenAccepted => &[Self::AudienceNotChecked],
            Self::AgentTokenRefused => &[Self::ValidTokenRefused],
            Self::AlgNoneAccepted
            | Self::AlgConfusion
            | Self::UnknownKidAccepted
            | Self::RetiredKeyAccepted => &[Self::SignatureNotChecked],
            Self::ChallengeResourceMetadataWrong => &[Self::MetadataResourceMismatch],
            Self::FlowFailed => &[
                Self::MetadataMissing,
                Self::MetadataResourceMismatch,
                Self::MetadataWrongAuthorizationServer,
                Self::NoTokenNotChallenged,
                Self::ChallengeNotBearer,
                Self::ChallengeResourceMetadataWrong,
            ],
            _ => &[],
        }
    }
}

/// The root causes among the mistakes seen: each seen mistake, or the seen mistake that explains
/// it.
pub fn root_cause(mistake: Mistake, seen: &BTreeSet<Mistake>) -> Mistake {
    mistake
        .explained_by()
        .iter()
        .copied()
        .find(|cause| seen.contains(cause))
        .unwrap_or(mistake)
}

/// The root causes of a set of seen mistakes, in report order.
pub fn root_causes(seen: &BTreeSet<Mistake>) -> BTreeSet<Mistake> {
    seen.iter()
        .map(|mistake| root_cause(*mistake, seen))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_kebab_case_and_round_trip() {
        let mut ids = BTreeSet::new();
        for mistake in Mistake::ALL {
            let id = mistake.id();
            assert!(ids.insert(id), "{id} twice");
            assert!(
                id.chars().all(|character| character.is_ascii_lowercase()
                    || character.is_ascii_digit()
                    || character == '-'),
                "{id}"
            );
            assert_eq!(Mistake::from_id(id), Some(mistake));
            let entry = mistake.entry();
            assert!(!entry.spec.is_empty(), "{id} names no spec");
            assert!(!entry.fix.is_empty() && !entry.summary.is_empty(), "{id}");
        }
    }

    #[test]
    fn a_missing_audience_check_explains_the_management_and_id_tokens() {
        let seen: BTreeSet<Mistake> = [
            Mistake::AudienceNotChecked,
            Mistake::ManagementTokenAccepted,
            Mistake::IdTokenAccepted,
        ]
        .into();
        assert_eq!(root_causes(&seen), [Mistake::AudienceNotChecked].into());
    }

    #[test]
    fn a_management_token_accepted_alone_is_its_own_mistake() {
        let seen: BTreeSet<Mistake> = [Mistake::ManagementTokenAccepted].into();
        assert_eq!(root_causes(&seen), seen);
    }

    #[test]
    fn skipped_signatures_explain_every_key_and_algorithm_finding() {
        let seen: BTreeSet<Mistake> = [
            Mistake::SignatureNotChecked,
            Mistake::AlgNoneAccepted,
            Mistake::AlgConfusion,
            Mistake::UnknownKidAccepted,
            Mistake::RetiredKeyAccepted,
            Mistake::IssuerNotChecked,
        ]
        .into();
        assert_eq!(
            root_causes(&seen),
            [Mistake::SignatureNotChecked, Mistake::IssuerNotChecked].into()
        );
    }

    #[test]
    fn a_metadata_mistake_explains_a_failed_flow() {
        let seen: BTreeSet<Mistake> =
            [Mistake::MetadataResourceMismatch, Mistake::FlowFailed].into();
        assert_eq!(
            root_causes(&seen),
            [Mistake::MetadataResourceMismatch].into()
        );
        let alone: BTreeSet<Mistake> = [Mistake::FlowFailed].into();
        assert_eq!(root_causes(&alone), alone);
    }

    #[test]
    fn a_server_that_refuses_every_valid_token_refuses_the_agents_for_that_reason() {
        let seen: BTreeSet<Mistake> =
            [Mistake::ValidTokenRefused, Mistake::AgentTokenRefused].into();
        assert_eq!(root_causes(&seen), [Mistake::ValidTokenRefused].into());
        let alone: BTreeSet<Mistake> = [Mistake::AgentTokenRefused].into();
        assert_eq!(root_causes(&alone), alone);
    }

    #[test]
    fn nbf_and_iat_are_separate_findings() {
        let seen: BTreeSet<Mistake> = [Mistake::NotBeforeNotChecked, Mistake::IatNotChecked].into();
        assert_eq!(root_causes(&seen), seen);
    }

    #[test]
    fn a_refused_token_does_not_explain_a_flow_that_never_presented_one() {
        let seen: BTreeSet<Mistake> = [Mistake::FlowFailed, Mistake::ValidTokenRefused].into();
        assert_eq!(root_causes(&seen), seen);
    }
}
