//! The catalogue of the server check's checks: each one's group, stable name, description and
//! spec references, in report order. Reports, documentation and tests all read it from here, so a
//! check says the same thing whichever way its verdict was reached.

/// A group of checks; one scenario of the report each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    /// RFC 9728 protected-resource metadata.
    Metadata,
    /// The 401 challenge.
    Challenge,
    /// Valid tokens are served.
    Accepted,
    /// Invalid tokens are refused.
    Refused,
    /// The scope step-up.
    Scope,
    /// The transport's `Origin` check.
    Origin,
    /// Key rotation.
    Keys,
}

impl Group {
    /// Every group, in the order they run and are reported.
    pub const ALL: [Group; 7] = [
        Group::Metadata,
        Group::Challenge,
        Group::Accepted,
        Group::Refused,
        Group::Scope,
        Group::Origin,
        Group::Keys,
    ];

    /// The id under `server-check/`.
    pub fn id(self) -> &'static str {
        match self {
            Group::Metadata => "metadata",
            Group::Challenge => "challenge",
            Group::Accepted => "accepted",
            Group::Refused => "refused",
            Group::Scope => "scope",
            Group::Origin => "origin",
            Group::Keys => "keys",
        }
    }

    /// One line saying what the group shows.
    pub fn title(self) -> &'static str {
        match self {
            Group::Metadata => {
                "Protected-resource metadata names the Server URL and the Scalekit resource issuer"
            }
            Group::Challenge => {
                "Requests without a valid token get a 401 Bearer challenge that leads to the metadata"
            }
            Group::Accepted => "Valid tokens, from a real flow and minted, open the server",
            Group::Refused => {
                "Tokens that are not valid for this server are refused with 401 invalid_token"
            }
            Group::Scope => {
                "A token without the tool's scope gets 403 insufficient_scope; with it, the call succeeds"
            }
            Group::Origin => {
                "A foreign Origin is refused with 403; the server's own origin and loopback are served"
            }
            Group::Keys => "Rotated keys are picked up, retired and unknown keys are refused",
        }
    }

    /// Its checks, in order.
    pub fn checks(self) -> impl Iterator<Item = CheckId> {
        CheckId::ALL
            .into_iter()
            .filter(move |check| check.entry().group == self)
    }
}

/// One check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CheckId {
    MetadataDocument,
    MetadataResource,
    MetadataAuthorizationServers,
    MetadataBearerMethods,
    ChallengeNoToken,
    ChallengeResourceMetadata,
    ChallengeMalformedToken,
    AcceptedRealFlow,
    AcceptedMintedToken,
    AcceptedStateless,
    AcceptedResourceIssuer,
    AcceptedAgentToken,
    RefusedWrongAudience,
    RefusedManagementToken,
    RefusedIdToken,
    RefusedExpired,
    RefusedExpiredReal,
    RefusedNotYetValid,
    RefusedIssuedInFuture,
    RefusedWrongIssuer,
    RefusedAlteredPayload,
    RefusedAlgNone,
    RefusedAlgConfusion,
    RefusedQueryToken,
    ScopeWithout,
    ScopeWith,
    OriginForeign,
    OriginOwn,
    OriginLoopback,
    KeysNew,
    KeysRetired,
    KeysUnknownKid,
}

/// What reports say about a check.
#[derive(Debug, Clone, Copy)]
pub struct CheckEntry {
    /// Its group.
    pub group: Group,
    /// The stable name, e.g. `wrong-audience` (the id is `server-check/<group>/<name>`).
    pub name: &'static str,
    /// What it shows when it holds.
    pub description: &'static str,
    /// The specs it enforces.
    pub spec: &'static [&'static str],
}

impl CheckId {
    /// Every check, in report order.
    pub const ALL: [CheckId; 32] = [
        Self::MetadataDocument,
        Self::MetadataResource,
        Self::MetadataAuthorizationServers,
        Self::MetadataBearerMethods,
        Self::ChallengeNoToken,
        Self::ChallengeResourceMetadata,
        Self::ChallengeMalformedToken,
        Self::AcceptedRealFlow,
        Self::AcceptedMintedToken,
        Self::AcceptedStateless,
        Self::AcceptedResourceIssuer,
        Self::AcceptedAgentToken,
        Self::RefusedWrongAudience,
        Self::RefusedManagementToken,
        Self::RefusedIdToken,
        Self::RefusedExpired,
        Self::RefusedExpiredReal,
        Self::RefusedNotYetValid,
        Self::RefusedIssuedInFuture,
        Self::RefusedWrongIssuer,
        Self::RefusedAlteredPayload,
        Self::RefusedAlgNone,
        Self::RefusedAlgConfusion,
        Self::RefusedQueryToken,
        Self::ScopeWithout,
        Self::ScopeWith,
        Self::OriginForeign,
        Self::OriginOwn,
        Self::OriginLoopback,
        Self::KeysNew,
        Self::KeysRetired,
        Self::KeysUnknownKid,
    ];

    /// `server-check/<group>/<name>`.
    pub fn id(self) -> String {
        let entry = self.entry();
        format!("server-check/{}/{}", entry.group.id(), entry.name)
    }

    /// What reports say about it.
    pub fn entry(self) -> CheckEntry {
        use Group::{Accepted, Challenge, Keys, Metadata, Origin, Refused, Scope};
        let (group, name, description, spec): (_, _, _, &'static [&'static str]) = match self {
            Self::MetadataDocument => (
                Metadata,
                "document",
                "Protected-resource metadata is served at the well-known URL derived from the Server URL (RFC 9728 §3.1)",
                &["RFC9728-3", "mcp-2025-11-25:authorization-server-location"],
            ),
            Self::MetadataResource => (
                Metadata,
                "resource",
                "resource is exactly the Server URL",
                &["RFC9728-3.3", "scalekit:protected-metadata"],
            ),
            Self::MetadataAuthorizationServers => (
                Metadata,
                "authorization-servers",
                "authorization_servers names the Scalekit resource issuer {env}/resources/{res}",
                &["RFC9728-2", "scalekit:protected-metadata"],
            ),
            Self::MetadataBearerMethods => (
                Metadata,
                "bearer-methods",
                "bearer_methods_supported, if present, is the header only",
                &["RFC9728-2", "mcp-2025-11-25:token-handling"],
            ),
            Self::ChallengeNoToken => (
                Challenge,
                "no-token",
                "A request without a token gets 401 with WWW-Authenticate: Bearer",
                &["RFC6750-3", "mcp-2025-11-25:authorization-flow-steps"],
            ),
            Self::ChallengeResourceMetadata => (
                Challenge,
                "resource-metadata",
                "The challenge's resource_metadata leads to this server's protected-resource metadata (RFC 9728 §5.1)",
                &["RFC9728-5.1", "scalekit:challenge"],
            ),
            Self::ChallengeMalformedToken => (
                Challenge,
                "malformed-token",
                "A token that is not a JWT gets 401 with error=\"invalid_token\"",
                &["RFC6750-3.1"],
            ),
            Self::AcceptedRealFlow => (
                Accepted,
                "real-flow",
                "An MCP client completes the OAuth flow from your 401 (metadata, DCR, PKCE, resource) and its token opens a 2025-11-25 session: initialize, tools/list",
                &[
                    "mcp-2025-11-25:authorization-flow-steps",
                    "RFC8707-2",
                    "RFC7636",
                ],
            ),
            Self::AcceptedMintedToken => (
                Accepted,
                "minted-token",
                "A valid token minted by the emulator, in a real flow's shape, is accepted",
                &["RFC9068-4", "scalekit:token-claims"],
            ),
            Self::AcceptedStateless => (
                Accepted,
                "stateless-protocol",
                "Where the server speaks it, a stateless 2026-07-28 tools/list with a valid token works",
                &["mcp-2026-07-28:transports"],
            ),
            Self::AcceptedResourceIssuer => (
                Accepted,
                "resource-issuer",
                "A token with the resource-scoped issuer {env}/resources/{res} is accepted (Scalekit is migrating to it)",
                &["scalekit:issuer-migration"],
            ),
            Self::AcceptedAgentToken => (
                Accepted,
                "agent-token",
                "An agent's client_credentials token (sub = client_id = the agent, a scopes array, no user claims) is accepted",
                &["RFC6749-4.4", "scalekit:agent-mcp"],
            ),
            Self::RefusedWrongAudience => (
                Refused,
                "wrong-audience",
                "A real token issued for another MCP server of the environment is refused (confused deputy)",
                &[
                    "RFC8707-2",
                    "mcp-2025-11-25:token-audience-binding-and-validation",
                ],
            ),
            Self::RefusedManagementToken => (
                Refused,
                "management-token",
                "The environment's management token (client_credentials, signed by the same keys) is refused",
                &[
                    "RFC8707-2",
                    "mcp-2025-11-25:token-audience-binding-and-validation",
                ],
            ),
            Self::RefusedIdToken => (
                Refused,
                "id-token",
                "An ID token (aud = the MCP client) is refused as an access token",
                &["RFC9068-4"],
            ),
            Self::RefusedExpired => (
                Refused,
                "expired",
                "A token that expired 10 minutes ago is refused",
                &["RFC7519-4.1.4"],
            ),
            Self::RefusedExpiredReal => (
                Refused,
                "expired-real",
                "A token from a real flow whose lifetime has passed (issued with the emulator's clock moved back) is refused",
                &["RFC7519-4.1.4"],
            ),
            Self::RefusedNotYetValid => (
                Refused,
                "not-yet-valid",
                "A token whose nbf is 10 minutes in the future is refused",
                &["RFC7519-4.1.5"],
            ),
            Self::RefusedIssuedInFuture => (
                Refused,
                "issued-in-future",
                "A token whose iat is 10 minutes in the future is refused",
                &["RFC7519-4.1.6"],
            ),
            Self::RefusedWrongIssuer => (
                Refused,
                "wrong-issuer",
                "A token from another issuer, signed by the same key, is refused",
                &["RFC9068-4"],
            ),
            Self::RefusedAlteredPayload => (
                Refused,
                "altered-payload",
                "A token whose payload was changed after signing is refused",
                &["RFC7515-5.2"],
            ),
            Self::RefusedAlgNone => (
                Refused,
                "alg-none",
                "An unsigned token (alg: none) is refused",
                &["RFC8725-3.1"],
            ),
            Self::RefusedAlgConfusion => (
                Refused,
                "alg-confusion",
                "An HS256 token keyed with the RSA public key's PEM is refused",
                &["RFC8725-3.1"],
            ),
            Self::RefusedQueryToken => (
                Refused,
                "query-token",
                "A valid token in the access_token query parameter instead of the header is refused",
                &["OAuth-2.1-5.2", "mcp-2025-11-25:token-handling"],
            ),
            Self::ScopeWithout => (
                Scope,
                "without-scope",
                "A valid token without the tool's scope gets 403 with error=\"insufficient_scope\" and scope= naming it",
                &["RFC6750-3.1", "mcp-2025-11-25:scope-challenge-handling"],
            ),
            Self::ScopeWith => (
                Scope,
                "with-scope",
                "A valid token with the tool's scope calls the tool",
                &["mcp-2025-11-25:scope-challenge-handling"],
            ),
            Self::OriginForeign => (
                Origin,
                "foreign-origin",
                "A valid token sent with Origin: http://evil.example gets 403 (DNS rebinding)",
                &["mcp-2025-11-25:transports-security-warning"],
            ),
            Self::OriginOwn => (
                Origin,
                "own-origin",
                "A valid token sent from the server's own origin is served",
                &["mcp-2025-11-25:transports-security-warning"],
            ),
            Self::OriginLoopback => (
                Origin,
                "loopback-origin",
                "A valid token sent from a loopback origin (MCP Inspector's http://localhost:6274) is served",
                &["mcp-2025-11-25:transports-security-warning"],
            ),
            Self::KeysNew => (
                Keys,
                "new-key",
                "After a key rotation, a token signed by the new key is accepted (the server fetches the JWKS again on an unknown kid)",
                &["RFC7517-5", "scalekit:decision-10"],
            ),
            Self::KeysRetired => (
                Keys,
                "retired-key",
                "After the old key is retired (and a later rotation makes the server refetch), a token signed by it is refused",
                &["RFC7517-5", "scalekit:decision-10"],
            ),
            Self::KeysUnknownKid => (
                Keys,
                "unknown-kid",
                "A token naming a kid the JWKS does not publish is refused",
                &["RFC7515-4.1.4", "RFC8725-3.10"],
            ),
        };
        CheckEntry {
            group,
            name,
            description,
            spec,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn checks_are_listed_in_group_order_with_unique_names() {
        let mut names = BTreeSet::new();
        let mut last_group = Group::Metadata;
        for check in CheckId::ALL {
            let entry = check.entry();
            assert!(entry.group >= last_group, "{check:?} is out of group order");
            last_group = entry.group;
            assert!(names.insert(check.id()), "{} twice", check.id());
            assert!(!entry.spec.is_empty() && !entry.description.is_empty());
        }
        let counted: usize = Group::ALL.iter().map(|group| group.checks().count()).sum();
        assert_eq!(counted, CheckId::ALL.len());
    }
}
