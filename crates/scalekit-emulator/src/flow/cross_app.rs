//! Cross-app access (Scalekit's XAA; MCP's enterprise-managed authorization): an identity
//! assertion (ID-JAG, draft-ietf-oauth-identity-assertion-authz-grant §3) that a trusted
//! identity provider issued is exchanged at the token endpoint with the RFC 7523 `jwt-bearer`
//! grant (draft §4.4) for an access token to an MCP server, without a consent page.
//!
//! The edge verifies the assertion first (`crate::idp::TrustedIdps::verify_assertion`: a JWT,
//! its `typ`, a trusted issuer, the signature, the times and the audience) and hands the
//! [`VerifiedAssertion`] to [`Flows::redeem_assertion`], which checks what needs the state: the
//! client the assertion was issued to, single use (RFC 7523 §3 item 7, MCP EMA §7.4.2: each
//! `(iss, jti)` is remembered until the assertion's `exp`), the resource (RFC 8707) and the
//! scopes (EMA §7.2.1: the request narrowed to what the identity provider granted). The user is
//! a `usr_…` minted per (identity provider, `sub`). Each refusal is a variant whose wire error
//! and description are fixed here (docs/fidelity.md, "Cross-app access").

use std::collections::HashMap;

use scalekit_wire::{Check, prefix};

use super::cimd::is_document_url;
use super::{DurableChange, Flows};
use crate::ids::IdGenerator;
use crate::types::{ClientId, IdpId, ResourceId, ScopeSet, SessionId, UserId};

/// The grant type (RFC 7523 §2.1).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The scope a cross-app access token never carries: the grant issues no refresh token (draft
/// §4.4.3 lets a client present a new assertion instead).
const OFFLINE_ACCESS: &str = "offline_access";
/// Scopes that ask for an ID token or its claims (OIDC Core §5.4), never granted here: the grant
/// issues no ID token.
const ID_TOKEN_SCOPES: [&str; 3] = ["openid", "profile", "email"];

/// Whom a verified assertion's `aud` names: the environment itself (`{env}`) or one MCP server's
/// issuer (`{env}/resources/{res}`, what MCP clients discover and send).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssertionAudience {
    /// `{env}`.
    Environment,
    /// `{env}/resources/{res}`.
    Resource(ResourceId),
}

/// An assertion whose structure, `typ`, issuer, signature, times and audience checked out, as
/// plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAssertion {
    /// The identity provider that signed it.
    pub idp: IdpId,
    /// Its `iss`.
    pub issuer: String,
    /// Its `sub`: the person at the identity provider.
    pub subject: String,
    /// Its `aud`.
    pub audience: AssertionAudience,
    /// Its `client_id`: the client it was issued to, by this environment's id.
    pub client_id: String,
    /// Its `jti`.
    pub jti: String,
    /// Its `exp`.
    pub expires_at: u64,
    /// Its `resource`, when it names one.
    pub resource: Option<String>,
    /// Its `scope`, when it has one.
    pub scope: Option<ScopeSet>,
    /// Its `email`, when it has one.
    pub email: Option<String>,
}

/// Why an assertion grants nothing: 400 `invalid_grant` (RFC 7521 §5.2, RFC 7523 §3.1). The
/// `Display` is the `error_description`, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionRefusal {
    /// Not a compact JWS whose header and payload are JSON objects.
    #[error("the assertion is not a JWT")]
    NotAJwt,
    /// `typ` is not `oauth-id-jag+jwt` (draft §3).
    #[error("the assertion's typ must be oauth-id-jag+jwt")]
    WrongType,
    /// `alg` is not RS256 (`none` included).
    #[error("the assertion must be signed with RS256")]
    WrongAlgorithm,
    /// The header has `crit`: the emulator understands no JWS extension (RFC 7515 §4.1.11).
    #[error("the assertion's header has crit, and no extension is understood")]
    CriticalHeader,
    /// A required claim is missing.
    #[error("the assertion lacks the {0} claim")]
    ClaimMissing(&'static str),
    /// A claim has the wrong JSON type.
    #[error("the assertion's {0} claim is malformed")]
    ClaimMalformed(&'static str),
    /// `iss` names no trusted identity provider (the environment itself included).
    #[error("the assertion's issuer is not a trusted identity provider")]
    IssuerUntrusted,
    /// No key of the identity provider has the header's `kid`, or the signature fails.
    #[error("the assertion's signature does not verify with the identity provider's keys")]
    SignatureInvalid,
    /// `exp` is not after now.
    #[error("the assertion expired")]
    Expired,
    /// `iat` is after now.
    #[error("the assertion was issued in the future")]
    IssuedInFuture,
    /// `nbf` is after now.
    #[error("the assertion is not valid yet")]
    NotYetValid,
    /// `exp` is more than the longest accepted lifetime away.
    #[error("the assertion lives longer than {0} seconds")]
    LivesTooLong(u64),
    /// `aud` is an array of other than one entry.
    #[error("the assertion's audience must name exactly one authorization server")]
    AudienceNotOne,
    /// `aud` is not this environment's issuer nor an MCP server's.
    #[error("the assertion's audience is not this authorization server")]
    AudienceForeign,
    /// `resource` is an array of other than one entry.
    #[error("the assertion's resource must name exactly one MCP server")]
    ResourceNotOne,
    /// `client_id` is not the authenticated client (draft §4.4.1).
    #[error("the assertion was issued to another client")]
    IssuedToAnotherClient,
    /// The `(iss, jti)` was redeemed before (EMA §7.4.2).
    #[error("the assertion was already used")]
    Replayed,
    /// `resource` names no MCP server of the environment.
    #[error("the assertion's resource is not an MCP server of this environment")]
    ResourceUnknown,
    /// `aud` names one MCP server and `resource` another.
    #[error("the assertion's audience and resource name different MCP servers")]
    AudienceAndResourceDiffer,
    /// `scope` has a scope the MCP server does not offer (EMA §7.6.2).
    #[error("scope {} in the assertion is not a scope of resource {resource}", .scopes.join(" "))]
    ScopeNotOffered {
        /// The scopes the resource lacks.
        scopes: Vec<String>,
        /// The MCP server.
        resource: ResourceId,
    },
}

impl AssertionRefusal {
    /// The check that failed.
    pub fn failed_check(&self) -> Check {
        match self {
            AssertionRefusal::NotAJwt
            | AssertionRefusal::ClaimMissing(_)
            | AssertionRefusal::ClaimMalformed(_)
            | AssertionRefusal::ResourceNotOne
            | AssertionRefusal::CriticalHeader => Check::AssertionWellFormed,
            AssertionRefusal::WrongType => Check::AssertionTyped,
            AssertionRefusal::WrongAlgorithm | AssertionRefusal::SignatureInvalid => {
                Check::AssertionSigned
            }
            AssertionRefusal::IssuerUntrusted => Check::AssertionIssuerTrusted,
            AssertionRefusal::Expired
            | AssertionRefusal::IssuedInFuture
            | AssertionRefusal::NotYetValid
            | AssertionRefusal::LivesTooLong(_) => Check::AssertionUnexpired,
            AssertionRefusal::AudienceNotOne | AssertionRefusal::AudienceForeign => {
                Check::AudienceAccepted
            }
            AssertionRefusal::IssuedToAnotherClient => Check::ClientMatches,
            AssertionRefusal::Replayed => Check::AssertionSingleUse,
            AssertionRefusal::ResourceUnknown | AssertionRefusal::AudienceAndResourceDiffer => {
                Check::ResourceMatches
            }
            AssertionRefusal::ScopeNotOffered { .. } => Check::ScopesAllowed,
        }
    }
}

/// Why the client of a `jwt-bearer` request is refused: 401 `invalid_client`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AssertionClientRefusal {
    /// Unknown client, or a missing or wrong secret of a confidential one.
    #[error("client authentication failed")]
    AuthenticationFailed,
    /// A Client ID Metadata Document URL: Scalekit supports them with cross-app access, the
    /// emulator does not yet (docs/fidelity.md).
    #[error("cross-app access for Client ID Metadata Document clients is not emulated yet")]
    MetadataDocument,
}

/// Why the resource of a `jwt-bearer` request is refused: 400 `invalid_target` (RFC 8707 §2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionTargetRefusal {
    /// The request's `resource` is not the MCP server the assertion is for.
    #[error("resource {0} is not the resource the assertion is for")]
    NotTheAssertions(String),
    /// The request's `resource` names no MCP server (and the assertion names none).
    #[error("resource {0} is not a registered MCP server")]
    Unknown(String),
    /// The client belongs to another MCP server.
    #[error("client {client} is not registered for resource {resource}")]
    ClientOfAnotherResource {
        /// The client.
        client: ClientId,
        /// The MCP server the assertion is for.
        resource: ResourceId,
    },
}

/// Why the scopes of a `jwt-bearer` request are refused: 400 `invalid_scope`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionScopeRefusal {
    /// The request and the assertion have no scope in common.
    #[error("none of the requested scopes was granted by the identity provider")]
    NoneGranted,
    /// Nothing is left once the client's own scope set and the ID token's scopes are taken out.
    #[error(
        "no scope is left for this client: none is both granted and among its allowed scopes \
         (openid, profile and email come only with an ID token, which this grant does not issue)"
    )]
    NoneForClient,
    /// Without a scope in the assertion, the request asks for scopes the MCP server lacks.
    #[error("scope {} is not offered by this MCP server", .0.join(" "))]
    NotOffered(Vec<String>),
}

/// Why a `jwt-bearer` token request was refused (OAuth JSON at the HTTP edge): the variant is
/// the wire error, its reason the `error_description`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtBearerError {
    /// 401 `invalid_client`.
    #[error("{0}")]
    InvalidClient(AssertionClientRefusal),
    /// 400 `invalid_grant`.
    #[error("{0}")]
    InvalidGrant(AssertionRefusal),
    /// 400 `invalid_target`.
    #[error("{0}")]
    InvalidTarget(AssertionTargetRefusal),
    /// The MCP server has cross-app access off: 400 `unauthorized_client` (RFC 6749 §5.2, the
    /// client may not use this grant there).
    #[error("cross-app access is not enabled for resource {0}")]
    UnauthorizedClient(ResourceId),
    /// 400 `invalid_scope`.
    #[error("{0}")]
    InvalidScope(AssertionScopeRefusal),
    /// `max_redeemed_assertions` unexpired assertions are remembered: 503
    /// `temporarily_unavailable`, so that the replay memory stays bounded in count too.
    #[error("too many identity assertions are remembered as redeemed; try again later")]
    TemporarilyUnavailable,
}

impl JwtBearerError {
    /// The check that failed.
    pub fn failed_check(&self) -> Check {
        match self {
            JwtBearerError::InvalidClient(_) => Check::ClientAuthenticated,
            JwtBearerError::InvalidGrant(refusal) => refusal.failed_check(),
            JwtBearerError::InvalidTarget(_) => Check::ResourceMatches,
            JwtBearerError::UnauthorizedClient(_) => Check::CrossAppAccessEnabled,
            JwtBearerError::InvalidScope(_) => Check::ScopesAllowed,
            JwtBearerError::TemporarilyUnavailable => Check::AssertionSingleUse,
        }
    }
}

impl From<AssertionRefusal> for JwtBearerError {
    fn from(refusal: AssertionRefusal) -> Self {
        JwtBearerError::InvalidGrant(refusal)
    }
}

/// A client that authenticated for the `jwt-bearer` grant, and the MCP server it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionClient {
    /// The client.
    pub id: ClientId,
    /// Its MCP server.
    pub resource: ResourceId,
    /// The scopes it may have, when it has a set of its own (an agent's); `None`: any of the
    /// MCP server's.
    pub allowed_scopes: Option<ScopeSet>,
}

/// A `jwt-bearer` request of an authenticated client with a verified assertion.
#[derive(Debug, Clone)]
pub struct AssertionRedemption<'a> {
    /// The client, authenticated.
    pub client: AssertionClient,
    /// The assertion, verified.
    pub assertion: VerifiedAssertion,
    /// The form's `resource` (RFC 8707), when sent.
    pub resource: Option<&'a str>,
    /// The form's `scope`, when sent.
    pub scope: Option<&'a str>,
}

/// What a redeemed assertion grants: plain data for the token minter. No refresh token, no ID
/// token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionGrant {
    /// `usr_…`, the access token's `sub`.
    pub subject: UserId,
    /// The assertion's `sub` (`xuid`).
    pub external_sub: String,
    /// The assertion's `email`.
    pub email: Option<String>,
    /// The client.
    pub client_id: ClientId,
    /// The MCP server.
    pub resource: ResourceId,
    /// The granted scopes.
    pub scopes: ScopeSet,
    /// `ses_…`, one per redemption.
    pub session: SessionId,
}

/// The key of a redeemed assertion: the first 16 bytes of SHA-256 over its issuer, a NUL and
/// its `jti` (a `jti` is unique per issuer, draft §3).
pub(super) type AssertionDigest = [u8; 16];

fn assertion_digest(issuer: &str, jti: &str) -> AssertionDigest {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    context.update(issuer.as_bytes());
    context.update(&[0]);
    context.update(jti.as_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&context.finish().as_ref()[..16]);
    key
}

/// A redeemed assertion as the store keeps it: its digest, never the assertion or its `jti`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAssertion {
    /// The first 16 bytes of SHA-256 over the issuer, a NUL and the `jti`, as lowercase hex.
    pub digest: String,
    /// The assertion's `exp`: remembered until then.
    pub expires_at: u64,
}

/// The `usr_…` minted for an (identity provider, `sub`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredIdpUser {
    /// The identity provider's id.
    pub idp: String,
    /// The assertion's `sub`.
    pub external_sub: String,
    /// `usr_…`.
    pub user: String,
}

/// What cross-app access keeps: the assertions redeemed and not yet expired, and the users.
#[derive(Debug, Default)]
pub(super) struct CrossAppState {
    redeemed: HashMap<AssertionDigest, u64>,
    users: HashMap<(IdpId, String), UserId>,
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn from_hex(hex: &str) -> Option<AssertionDigest> {
    if hex.len() != 32 || !hex.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return None;
    }
    let mut digest = [0u8; 16];
    for (index, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[index * 2..index * 2 + 2], 16).ok()?;
    }
    Some(digest)
}

impl Flows {
    /// Authenticates the client of a `jwt-bearer` request: a configured or DCR client (public
    /// ones by `client_id` alone, as Scalekit supports DCR clients with XAA; confidential ones
    /// by their secret, compared in constant time) or an agent (its secret's digest). A Client
    /// ID Metadata Document URL is refused: not emulated yet.
    pub fn authenticate_assertion_client(
        &self,
        client_id: &str,
        secret: Option<&str>,
    ) -> Result<AssertionClient, JwtBearerError> {
        let failed = || JwtBearerError::InvalidClient(AssertionClientRefusal::AuthenticationFailed);
        if let Some(client) = self.clients.get(&ClientId::new(client_id)) {
            let authenticated = match &client.secret {
                None => true,
                Some(expected) => secret.is_some_and(|presented| expected.matches(presented)),
            };
            if !authenticated {
                return Err(failed());
            }
            return Ok(AssertionClient {
                id: client.id.clone(),
                resource: client.resource.clone(),
                allowed_scopes: None,
            });
        }
        if let Some(agent) = self.agent_with_secret(client_id, secret) {
            return Ok(agent);
        }
        if is_document_url(client_id) {
            return Err(JwtBearerError::InvalidClient(
                AssertionClientRefusal::MetadataDocument,
            ));
        }
        Err(failed())
    }

    /// Redeems a verified assertion: the client it names, single use, the resource, the scopes;
    /// then the user and the grant, handed to `mint` (the token minter, under the same lock).
    /// Only a redemption that succeeds consumes the assertion: one `mint` refuses leaves it
    /// unredeemed (Decision 20).
    pub fn redeem_assertion<T, E: From<JwtBearerError>>(
        &mut self,
        request: AssertionRedemption<'_>,
        now: u64,
        ids: &dyn IdGenerator,
        mint: impl FnOnce(&AssertionGrant) -> Result<T, E>,
    ) -> Result<T, E> {
        let (grant, digest, expires_at) = self.check_redemption(request, now, ids)?;
        // The replay memory is bounded in time (each entry until its `exp`) and in count: past
        // the cap the expired entries go first, and if that is not enough the client is asked
        // to come back later, as `/oauth/authorize` does past `max_pending_login_requests`.
        if self.cross_app.redeemed.len() >= self.max_redeemed_assertions {
            self.sweep_redeemed_assertions(now);
        }
        if self.cross_app.redeemed.len() >= self.max_redeemed_assertions {
            return Err(JwtBearerError::TemporarilyUnavailable.into());
        }
        let minted = mint(&grant)?;
        self.cross_app.redeemed.insert(digest, expires_at);
        self.record(DurableChange::AssertionRedeemed(StoredAssertion {
            digest: to_hex(&digest),
            expires_at,
        }));
        Ok(minted)
    }

    /// Everything [`Flows::redeem_assertion`] decides before the mint, consuming nothing (the
    /// user of an (identity provider, `sub`) is minted on first sight: a mapping, not a grant).
    fn check_redemption(
        &mut self,
        request: AssertionRedemption<'_>,
        now: u64,
        ids: &dyn IdGenerator,
    ) -> Result<(AssertionGrant, AssertionDigest, u64), JwtBearerError> {
        let AssertionRedemption {
            client,
            assertion,
            resource: requested_resource,
            scope: requested_scope,
        } = request;
        if assertion.client_id != client.id.as_str() {
            return Err(AssertionRefusal::IssuedToAnotherClient.into());
        }
        let digest = assertion_digest(&assertion.issuer, &assertion.jti);
        if self
            .cross_app
            .redeemed
            .get(&digest)
            .is_some_and(|expires_at| *expires_at > now)
        {
            return Err(AssertionRefusal::Replayed.into());
        }
        let claimed = match assertion.resource.as_deref() {
            None => None,
            Some(value) => Some(
                self.resolve_resource(value)
                    .map(|resource| resource.id.clone())
                    .ok_or(AssertionRefusal::ResourceUnknown)?,
            ),
        };
        let from_audience = match &assertion.audience {
            AssertionAudience::Resource(resource) => Some(resource.clone()),
            AssertionAudience::Environment => None,
        };
        if let (Some(audience), Some(claimed)) = (&from_audience, &claimed)
            && audience != claimed
        {
            return Err(AssertionRefusal::AudienceAndResourceDiffer.into());
        }
        let target = match (from_audience.or(claimed), requested_resource) {
            (Some(target), None) => target,
            (Some(target), Some(value)) => {
                let names_it = self
                    .resolve_resource(value)
                    .is_some_and(|resource| resource.id == target);
                if !names_it {
                    return Err(JwtBearerError::InvalidTarget(
                        AssertionTargetRefusal::NotTheAssertions(value.to_owned()),
                    ));
                }
                target
            }
            (None, Some(value)) => self
                .resolve_resource(value)
                .map(|resource| resource.id.clone())
                .ok_or_else(|| {
                    JwtBearerError::InvalidTarget(AssertionTargetRefusal::Unknown(value.to_owned()))
                })?,
            (None, None) => client.resource.clone(),
        };
        if client.resource != target {
            return Err(JwtBearerError::InvalidTarget(
                AssertionTargetRefusal::ClientOfAnotherResource {
                    client: client.id,
                    resource: target,
                },
            ));
        }
        let Some(resource) = self.resource(&target) else {
            return Err(JwtBearerError::InvalidTarget(
                AssertionTargetRefusal::Unknown(target.to_string()),
            ));
        };
        if !resource.cross_app_access {
            return Err(JwtBearerError::UnauthorizedClient(target));
        }
        let offered = &resource.scopes;
        if let Some(asserted) = &assertion.scope {
            let lacking = asserted.outside_of(offered);
            if !lacking.is_empty() {
                return Err(AssertionRefusal::ScopeNotOffered {
                    scopes: lacking.into_iter().map(str::to_owned).collect(),
                    resource: target,
                }
                .into());
            }
        }
        let requested: ScopeSet = ScopeSet::parse(requested_scope.unwrap_or(""))
            .as_slice()
            .iter()
            .map(String::as_str)
            .filter(|scope| *scope != OFFLINE_ACCESS)
            .collect();
        let granted: ScopeSet = match (requested.is_empty(), &assertion.scope) {
            (false, Some(asserted)) => {
                let common: ScopeSet = requested
                    .as_slice()
                    .iter()
                    .map(String::as_str)
                    .filter(|scope| asserted.contains(scope))
                    .collect();
                if common.is_empty() {
                    return Err(JwtBearerError::InvalidScope(
                        AssertionScopeRefusal::NoneGranted,
                    ));
                }
                common
            }
            (false, None) => {
                let lacking = requested.outside_of(offered);
                if !lacking.is_empty() {
                    return Err(JwtBearerError::InvalidScope(
                        AssertionScopeRefusal::NotOffered(
                            lacking.into_iter().map(str::to_owned).collect(),
                        ),
                    ));
                }
                requested
            }
            (true, Some(asserted)) => asserted.clone(),
            (true, None) => offered.iter().map(String::as_str).collect(),
        };
        // Decision 23: never `offline_access` (no refresh token) nor the ID token's scopes (no ID
        // token), and never beyond the client's own set when it has one (an agent's).
        let scopes: ScopeSet = granted
            .as_slice()
            .iter()
            .map(String::as_str)
            .filter(|scope| *scope != OFFLINE_ACCESS && !ID_TOKEN_SCOPES.contains(scope))
            .filter(|scope| {
                client
                    .allowed_scopes
                    .as_ref()
                    .is_none_or(|allowed| allowed.contains(scope))
            })
            .collect();
        if scopes.is_empty() {
            return Err(JwtBearerError::InvalidScope(
                AssertionScopeRefusal::NoneForClient,
            ));
        }

        let subject = self.idp_user_for(&assertion.idp, &assertion.subject, ids);
        let grant = AssertionGrant {
            subject,
            external_sub: assertion.subject,
            email: assertion.email,
            client_id: client.id,
            resource: target,
            scopes,
            session: SessionId::new(ids.id(prefix::SESSION)),
        };
        Ok((grant, digest, assertion.expires_at))
    }

    /// The `usr_…` of an (identity provider, `sub`), minted on first sight.
    fn idp_user_for(&mut self, idp: &IdpId, external_sub: &str, ids: &dyn IdGenerator) -> UserId {
        let key = (idp.clone(), external_sub.to_owned());
        if let Some(user) = self.cross_app.users.get(&key) {
            return user.clone();
        }
        let user = UserId::new(ids.id(prefix::USER));
        self.cross_app.users.insert(key, user.clone());
        self.record(DurableChange::IdpUserCreated(StoredIdpUser {
            idp: idp.to_string(),
            external_sub: external_sub.to_owned(),
            user: user.to_string(),
        }));
        user
    }

    /// Forgets the redeemed assertions whose `exp` has passed: past it the assertion is refused
    /// as expired anyway, so the memory of them stays bounded by the longest accepted lifetime
    /// (and in count by `max_redeemed_assertions`). A clock rewound past a forgotten `exp` (the
    /// control API's `clock/rewind`, a test tool) makes that assertion fresh again (Decision 20).
    pub(super) fn sweep_redeemed_assertions(&mut self, now: u64) {
        self.cross_app
            .redeemed
            .retain(|_, expires_at| *expires_at > now);
    }

    /// How many redeemed assertions are remembered (for tests and logs).
    pub fn redeemed_assertions(&self) -> usize {
        self.cross_app.redeemed.len()
    }

    /// The redeemed assertions and the identity providers' users, as the store keeps them.
    pub(super) fn export_cross_app(&self) -> (Vec<StoredAssertion>, Vec<StoredIdpUser>) {
        let mut assertions: Vec<StoredAssertion> = self
            .cross_app
            .redeemed
            .iter()
            .map(|(digest, expires_at)| StoredAssertion {
                digest: to_hex(digest),
                expires_at: *expires_at,
            })
            .collect();
        assertions.sort_by(|left, right| left.digest.cmp(&right.digest));
        let mut users: Vec<StoredIdpUser> = self
            .cross_app
            .users
            .iter()
            .map(|((idp, external_sub), user)| StoredIdpUser {
                idp: idp.to_string(),
                external_sub: external_sub.clone(),
                user: user.to_string(),
            })
            .collect();
        users.sort_by(|left, right| left.user.cmp(&right.user));
        (assertions, users)
    }

    /// Adds loaded redeemed assertions (a digest that does not parse is dropped) and users.
    pub(super) fn import_cross_app(
        &mut self,
        assertions: Vec<StoredAssertion>,
        users: Vec<StoredIdpUser>,
    ) {
        for assertion in assertions {
            if let Some(digest) = from_hex(&assertion.digest) {
                self.cross_app.redeemed.insert(digest, assertion.expires_at);
            }
        }
        for user in users {
            self.cross_app.users.insert(
                (IdpId::new(user.idp), user.external_sub),
                UserId::new(user.user),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use url::Url;

    use super::*;
    use crate::config::Config;
    use crate::flow::DurableChange;
    use crate::ids::SequentialIds;

    const FIXTURE: &str = include_str!("../../../../fixtures/environment.toml");
    const AGENT: &str = "m2m_81920374650192842";
    const AGENT_SECRET: &str = "test_agent_secret_testbed_dev_not_for_production";
    const RESOURCE: &str = "res_81920374650192839";
    const SECOND: &str = "res_20000000000000002";
    const SERVER_URL: &str = "http://127.0.0.1:8402/mcp";
    const ISSUER: &str = "http://127.0.0.1:8400/_idp/acme-idp";
    const NOW: u64 = 1_000_000;

    fn flows_with(edit: impl FnOnce(&mut Config)) -> Flows {
        let mut config = Config::from_toml_str(FIXTURE).expect("the fixture parses");
        edit(&mut config);
        let mut flows = Flows::new(&config, &Url::parse("http://127.0.0.1:8400").unwrap());
        flows.record_durable_changes();
        flows
    }

    fn flows() -> Flows {
        flows_with(|_| {})
    }

    /// A second MCP server, cross-app access as `on` says, with a public client of its own.
    fn with_second(on: bool) -> impl FnOnce(&mut Config) {
        move |config| {
            let mut second = config.resources[0].clone();
            second.id = SECOND.to_owned();
            second.server_url = Some(Url::parse("http://127.0.0.1:9/other").unwrap());
            second.cross_app_access = on;
            second.agents.clear();
            config.resources.push(second);
            config.clients.push(crate::config::ClientConfig {
                client_id: "second-client".to_owned(),
                redirect_uris: vec!["http://127.0.0.1/cb".to_owned()],
                resource: SECOND.to_owned(),
                client_secret: None,
                client_name: None,
            });
        }
    }

    fn assertion() -> VerifiedAssertion {
        VerifiedAssertion {
            idp: IdpId::new("acme-idp"),
            issuer: ISSUER.to_owned(),
            subject: "00u-ada-0001".to_owned(),
            audience: AssertionAudience::Resource(ResourceId::new(RESOURCE)),
            client_id: AGENT.to_owned(),
            jti: "jti-1".to_owned(),
            expires_at: NOW + 300,
            resource: Some(SERVER_URL.to_owned()),
            scope: None,
            email: Some("ada@analytical-engines.example".to_owned()),
        }
    }

    fn agent() -> AssertionClient {
        AssertionClient {
            id: ClientId::new(AGENT),
            resource: ResourceId::new(RESOURCE),
            allowed_scopes: Some(ScopeSet::parse("mcp:read")),
        }
    }

    fn redeem(
        flows: &mut Flows,
        client: AssertionClient,
        assertion: VerifiedAssertion,
        resource: Option<&str>,
        scope: Option<&str>,
    ) -> Result<AssertionGrant, JwtBearerError> {
        flows.redeem_assertion(
            AssertionRedemption {
                client,
                assertion,
                resource,
                scope,
            },
            NOW,
            &SequentialIds::new(),
            |grant| Ok::<_, JwtBearerError>(grant.clone()),
        )
    }

    #[test]
    fn a_redeemed_assertion_grants_once_and_is_forgotten_at_its_exp() {
        let mut flows = flows();
        let grant = redeem(&mut flows, agent(), assertion(), None, None).unwrap();
        assert_eq!(grant.client_id.as_str(), AGENT);
        assert_eq!(grant.resource.as_str(), RESOURCE);
        assert_eq!(grant.external_sub, "00u-ada-0001");
        assert_eq!(
            grant.scopes.as_slice(),
            ["mcp:read"],
            "the resource's scopes without offline_access nor the ID token's, within the agent's"
        );
        let changes = flows.take_durable_changes();
        assert!(
            matches!(changes.as_slice(), [DurableChange::IdpUserCreated(user), DurableChange::AssertionRedeemed(stored)]
                if stored.expires_at == NOW + 300 && !stored.digest.contains("jti") && user.user == grant.subject.as_str()),
            "{changes:?}"
        );
        let replay = redeem(&mut flows, agent(), assertion(), None, None).unwrap_err();
        assert_eq!(replay.to_string(), "the assertion was already used");
        assert_eq!(replay.failed_check(), Check::AssertionSingleUse);

        // Another jti of the same person: the same user.
        let other = VerifiedAssertion {
            jti: "jti-2".to_owned(),
            ..assertion()
        };
        let again = redeem(&mut flows, agent(), other, None, None).unwrap();
        assert_eq!(again.subject, grant.subject);
        assert_ne!(again.session, grant.session);

        assert_eq!(flows.redeemed_assertions(), 2);
        flows.sweep(NOW + 299);
        assert_eq!(flows.redeemed_assertions(), 2);
        flows.sweep(NOW + 300);
        assert_eq!(
            flows.redeemed_assertions(),
            0,
            "bounded by the assertions' exp"
        );
    }

    #[test]
    fn a_refused_redemption_does_not_consume_the_assertion() {
        let mut flows = flows();
        let refused = redeem(
            &mut flows,
            agent(),
            assertion(),
            Some("http://x.example/mcp"),
            None,
        );
        assert_eq!(
            refused.unwrap_err().to_string(),
            "resource http://x.example/mcp is not the resource the assertion is for"
        );
        assert!(flows.take_durable_changes().is_empty());

        // The mint fails (the resource left the configuration, the key broke): not consumed.
        let unminted = flows.redeem_assertion(
            AssertionRedemption {
                client: agent(),
                assertion: assertion(),
                resource: None,
                scope: None,
            },
            NOW,
            &SequentialIds::new(),
            |_| Err::<(), _>(JwtBearerError::from(AssertionRefusal::ResourceUnknown)),
        );
        assert!(unminted.is_err());
        assert_eq!(flows.redeemed_assertions(), 0);
        assert!(
            !flows
                .take_durable_changes()
                .iter()
                .any(|change| matches!(change, DurableChange::AssertionRedeemed(_)))
        );
        assert!(redeem(&mut flows, agent(), assertion(), Some(RESOURCE), None).is_ok());
        assert_eq!(flows.redeemed_assertions(), 1);
    }

    #[test]
    fn each_refusal_names_its_wire_error_and_check() {
        let refused = |edit: &dyn Fn(&mut VerifiedAssertion), resource, scope| {
            let mut flows = flows_with(with_second(true));
            let mut asserted = assertion();
            edit(&mut asserted);
            let error = redeem(&mut flows, agent(), asserted, resource, scope).unwrap_err();
            (error.to_string(), error.failed_check())
        };
        assert_eq!(
            refused(&|a| a.client_id = "someone-else".to_owned(), None, None),
            (
                "the assertion was issued to another client".to_owned(),
                Check::ClientMatches
            )
        );
        assert_eq!(
            refused(
                &|a| a.resource = Some("https://nowhere.example/mcp".to_owned()),
                None,
                None
            ),
            (
                "the assertion's resource is not an MCP server of this environment".to_owned(),
                Check::ResourceMatches
            )
        );
        assert_eq!(
            refused(&|a| a.resource = Some(SECOND.to_owned()), None, None),
            (
                "the assertion's audience and resource name different MCP servers".to_owned(),
                Check::ResourceMatches
            )
        );
        assert_eq!(
            refused(
                &|a| {
                    a.audience = AssertionAudience::Environment;
                    a.resource = None;
                },
                Some("res_9"),
                None
            ),
            (
                "resource res_9 is not a registered MCP server".to_owned(),
                Check::ResourceMatches
            )
        );
        assert_eq!(
            refused(
                &|a| {
                    a.audience = AssertionAudience::Resource(ResourceId::new(SECOND));
                    a.resource = None;
                },
                None,
                None
            ),
            (
                format!("client {AGENT} is not registered for resource {SECOND}"),
                Check::ResourceMatches
            )
        );
        assert_eq!(
            refused(
                &|a| a.scope = Some(ScopeSet::parse("mcp:read admin")),
                None,
                None
            ),
            (
                format!("scope admin in the assertion is not a scope of resource {RESOURCE}"),
                Check::ScopesAllowed
            )
        );
        assert_eq!(
            refused(
                &|a| a.scope = Some(ScopeSet::parse("mcp:read")),
                None,
                Some("mcp:write")
            ),
            (
                "none of the requested scopes was granted by the identity provider".to_owned(),
                Check::ScopesAllowed
            )
        );
        assert_eq!(
            refused(&|_| {}, None, Some("mcp:read admin")),
            (
                "scope admin is not offered by this MCP server".to_owned(),
                Check::ScopesAllowed
            )
        );

        let mut off = flows_with(with_second(false));
        let second_client = AssertionClient {
            id: ClientId::new("second-client"),
            resource: ResourceId::new(SECOND),
            allowed_scopes: None,
        };
        let for_second = VerifiedAssertion {
            client_id: "second-client".to_owned(),
            audience: AssertionAudience::Resource(ResourceId::new(SECOND)),
            resource: None,
            ..assertion()
        };
        let error = redeem(&mut off, second_client, for_second, None, None).unwrap_err();
        assert_eq!(
            error,
            JwtBearerError::UnauthorizedClient(ResourceId::new(SECOND))
        );
        assert_eq!(
            error.to_string(),
            format!("cross-app access is not enabled for resource {SECOND}")
        );
        assert_eq!(error.failed_check(), Check::CrossAppAccessEnabled);
    }

    #[test]
    fn the_request_is_narrowed_to_what_the_identity_provider_granted() {
        let as_client =
            |client: AssertionClient, asserted: Option<&str>, requested: Option<&str>| {
                let mut flows = flows();
                let asserted = VerifiedAssertion {
                    scope: asserted.map(ScopeSet::parse),
                    ..assertion()
                };
                redeem(&mut flows, client, asserted, None, requested)
                    .map(|grant| grant.scopes.to_space_separated())
            };
        // A client without a scope set of its own (a configured or DCR client).
        let unrestricted = AssertionClient {
            allowed_scopes: None,
            ..agent()
        };
        let granted = |asserted: Option<&str>, requested: Option<&str>| {
            as_client(unrestricted.clone(), asserted, requested).unwrap()
        };
        // No ID token: never openid, profile, email.
        assert_eq!(granted(None, None), "mcp:read mcp:write");
        assert_eq!(granted(Some("openid email mcp:write"), None), "mcp:write");
        assert_eq!(
            as_client(unrestricted.clone(), Some("openid profile"), None).unwrap_err(),
            JwtBearerError::InvalidScope(AssertionScopeRefusal::NoneForClient)
        );
        // An agent: within its own scopes (`mcp:read`), whatever the assertion says.
        assert_eq!(
            as_client(agent(), Some("mcp:read mcp:write"), None).unwrap(),
            "mcp:read"
        );
        assert_eq!(as_client(agent(), None, None).unwrap(), "mcp:read");
        assert_eq!(
            as_client(agent(), Some("mcp:write"), None).unwrap_err(),
            JwtBearerError::InvalidScope(AssertionScopeRefusal::NoneForClient)
        );
        assert_eq!(
            granted(Some("mcp:read mcp:write"), Some("mcp:read email")),
            "mcp:read"
        );
        assert_eq!(granted(Some("mcp:read offline_access"), None), "mcp:read");
        assert_eq!(granted(None, Some("mcp:write offline_access")), "mcp:write");
        assert_eq!(
            granted(Some("mcp:read"), Some("offline_access")),
            "mcp:read"
        );
    }

    #[test]
    fn clients_authenticate_as_they_are_registered() {
        let flows = flows_with(with_second(true));
        assert_eq!(
            flows
                .authenticate_assertion_client(AGENT, Some(AGENT_SECRET))
                .unwrap(),
            agent()
        );
        let failed = JwtBearerError::InvalidClient(AssertionClientRefusal::AuthenticationFailed);
        assert_eq!(
            flows
                .authenticate_assertion_client(AGENT, Some("wrong"))
                .unwrap_err(),
            failed
        );
        assert_eq!(
            flows
                .authenticate_assertion_client(AGENT, None)
                .unwrap_err(),
            failed
        );
        assert_eq!(
            flows
                .authenticate_assertion_client("nobody", None)
                .unwrap_err(),
            failed
        );
        assert_eq!(
            flows
                .authenticate_assertion_client("second-client", None)
                .unwrap()
                .resource
                .as_str(),
            SECOND,
            "a public client by its id alone"
        );
        let document = flows
            .authenticate_assertion_client("https://client.example/metadata.json", None)
            .unwrap_err();
        assert_eq!(
            document.to_string(),
            "cross-app access for Client ID Metadata Document clients is not emulated yet"
        );
        assert_eq!(document.failed_check(), Check::ClientAuthenticated);
    }

    #[test]
    fn the_redeemed_assertions_and_users_survive_an_export_and_import() {
        let mut flows = flows();
        let grant = redeem(&mut flows, agent(), assertion(), None, None).unwrap();
        let exported = flows.export_durable();
        assert_eq!(exported.assertions.len(), 1);
        assert_eq!(exported.idp_users.len(), 1);
        let mut restarted = self::flows();
        restarted.import_durable(exported);
        assert_eq!(
            redeem(&mut restarted, agent(), assertion(), None, None)
                .unwrap_err()
                .to_string(),
            "the assertion was already used"
        );
        let other = VerifiedAssertion {
            jti: "jti-2".to_owned(),
            ..assertion()
        };
        assert_eq!(
            redeem(&mut restarted, agent(), other, None, None)
                .unwrap()
                .subject,
            grant.subject
        );
    }
}
