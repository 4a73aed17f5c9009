//! `POST /oauth/token` for MCP clients: the authorization-code grant (RFC 6749 §4.1.3, RFC 7636
//! §4.6) and refresh with rotation (RFC 6749 §6, OAuth 2.1 §4.3.1; Decisions §3).

use scalekit_wire::{Check, Secret, UserClaims};

use super::cimd::is_document_url;
use super::{
    DurableChange, Flows, GRANT_PREFIX, GrantRecord, RefreshRecord, SignIn, StoredGrant,
    StoredRefreshToken, StoredSignIn, code_digest,
};
use crate::ids::IdGenerator;
use crate::types::{
    AuthorizationCode, ClientId, ConnectionId, OrganizationId, PkceVerifier, RefreshToken,
    ResourceId, ScopeSet, SessionId, UserId, pkce_verify,
};

/// Why a token request was refused (OAuth JSON error at the HTTP edge): the variant is the wire
/// error, its reason says why (its `Display` is the `error_description`, byte for byte) and which
/// check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// A required parameter is missing: 400 `invalid_request`.
    #[error("{0}")]
    InvalidRequest(TokenRequestRefusal),
    /// Unknown client or wrong secret: 401 `invalid_client`.
    #[error("{0}")]
    InvalidClient(ClientRefusal),
    /// Unknown, expired, reused or foreign code or refresh token, or a PKCE failure: 400
    /// `invalid_grant`.
    #[error("{0}")]
    InvalidGrant(GrantRefusal),
    /// `resource` (this value) names another MCP server than the grant's: 400 `invalid_target`.
    #[error("resource {0} is not the resource this grant is for")]
    InvalidTarget(String),
    /// A refresh asked for these scopes beyond the grant: 400 `invalid_scope`.
    #[error("scope {} was not granted", .0.join(" "))]
    InvalidScope(Vec<String>),
}

/// Why a token request is incomplete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRequestRefusal {
    /// The code exchange lacks `redirect_uri`.
    #[error("redirect_uri is required")]
    RedirectUriMissing,
}

/// Why a client is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClientRefusal {
    /// Unknown client, or a missing or wrong secret.
    #[error("client authentication failed")]
    AuthenticationFailed,
    /// A public client asked to revoke.
    #[error("public clients cannot revoke tokens: client authentication is required")]
    PublicClientRevokes,
}

/// Why a code or refresh token grants nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GrantRefusal {
    /// The code was redeemed before (its grant is revoked now).
    #[error("the authorization code was already used")]
    CodeReused,
    /// No such code (never issued, or gone after its lifetime).
    #[error("the authorization code is invalid or expired")]
    CodeUnknown,
    /// The code's lifetime ended.
    #[error("the authorization code expired")]
    CodeExpired,
    /// The code belongs to another client.
    #[error("the authorization code was issued to another client")]
    CodeOfAnotherClient,
    /// The `redirect_uri` is not the authorization request's.
    #[error("redirect_uri does not match the authorization request")]
    RedirectUriMismatch,
    /// No `code_verifier`.
    #[error("code_verifier is required")]
    VerifierMissing,
    /// A `code_verifier` outside the RFC 7636 grammar.
    #[error("code_verifier is malformed")]
    VerifierMalformed,
    /// The verifier does not hash to the challenge.
    #[error("code_verifier does not match the code_challenge")]
    VerifierMismatch,
    /// No such refresh token (never issued, expired and dropped, or revoked).
    #[error("the refresh token is invalid, expired or revoked")]
    RefreshTokenUnknown,
    /// The refresh token was rotated out before: its grant is revoked now.
    #[error("the refresh token was already used; the grant is revoked")]
    RefreshTokenReused,
    /// The refresh token's lifetime ended.
    #[error("the refresh token expired")]
    RefreshTokenExpired,
    /// The refresh token belongs to another client.
    #[error("the refresh token was issued to another client")]
    RefreshTokenOfAnotherClient,
}

impl TokenError {
    /// The check that failed (the same at the token and the revocation endpoint: a client is
    /// refused there by "client authenticated" alone).
    pub fn failed_check(&self) -> Check {
        match self {
            TokenError::InvalidRequest(TokenRequestRefusal::RedirectUriMissing) => {
                Check::RedirectUriMatches
            }
            TokenError::InvalidClient(_) => Check::ClientAuthenticated,
            TokenError::InvalidGrant(reason) => match reason {
                GrantRefusal::CodeReused
                | GrantRefusal::CodeUnknown
                | GrantRefusal::CodeExpired => Check::CodeSingleUseAndUnexpired,
                GrantRefusal::CodeOfAnotherClient | GrantRefusal::RefreshTokenOfAnotherClient => {
                    Check::ClientMatches
                }
                GrantRefusal::RedirectUriMismatch => Check::RedirectUriMatches,
                GrantRefusal::VerifierMissing
                | GrantRefusal::VerifierMalformed
                | GrantRefusal::VerifierMismatch => Check::PkceVerifierMatches,
                GrantRefusal::RefreshTokenUnknown
                | GrantRefusal::RefreshTokenReused
                | GrantRefusal::RefreshTokenExpired => Check::RefreshTokenUnusedAndUnexpired,
            },
            TokenError::InvalidTarget(_) => Check::ResourceMatches,
            TokenError::InvalidScope(_) => Check::ScopesWithinGrant,
        }
    }
}

/// An authorization-code token request from an authenticated client.
#[derive(Debug)]
pub struct AuthorizationCodeRequest {
    /// The client, already authenticated.
    pub client_id: ClientId,
    /// `code`.
    pub code: AuthorizationCode,
    /// `code_verifier` as presented: the transition checks its grammar, then its hash.
    pub code_verifier: Option<Secret>,
    /// `redirect_uri`.
    pub redirect_uri: Option<String>,
    /// `resource` (RFC 8707), optional here.
    pub resource: Option<String>,
}

/// A refresh-token request from an authenticated client.
#[derive(Debug)]
pub struct RefreshRequest {
    /// The client, already authenticated.
    pub client_id: ClientId,
    /// `refresh_token`, presented ([`Flows::present`]).
    pub refresh_token: PresentedToken,
    /// `resource` (RFC 8707), optional.
    pub resource: Option<String>,
    /// `scope`: a subset of the grant's scopes, optional.
    pub scope: Option<String>,
}

/// A grant to mint tokens for: plain data for the token minter.
#[derive(Debug)]
pub struct IssuedGrant {
    /// `usr_…`, the access token's `sub`.
    pub subject: UserId,
    /// The `sub` "Your App" posted (`xuid`).
    pub external_sub: String,
    /// Everything "Your App" posted.
    pub claims: UserClaims,
    /// `org_…` when an organization was posted.
    pub organization: Option<OrganizationId>,
    /// The client the tokens are for.
    pub client_id: ClientId,
    /// The MCP server the tokens are for.
    pub resource: ResourceId,
    /// The connection the user signed in through (`amr`).
    pub connection: ConnectionId,
    /// The scopes of this access token.
    pub scopes: ScopeSet,
    /// `ses_…`.
    pub session: SessionId,
    /// The OIDC `nonce` of the authorization request (code grant only).
    pub nonce: Option<String>,
    /// The code redeemed for this grant (code grant only): the ID token's `c_hash`.
    pub authorization_code: Option<AuthorizationCode>,
    /// When the user signed in.
    pub auth_time: u64,
    /// A new refresh token, when `offline_access` was granted.
    pub refresh_token: Option<RefreshToken>,
}

/// A refresh token presented to [`Flows::refresh`] or [`Flows::revoke`], once the state machine
/// holds what the environment knows of it. Those transitions take nothing else, and only
/// [`Flows::present`] and [`Flows::presented_from_store`] make one: while grants live in the store
/// (see [`Flows::evict_grants`]), a token that is not held cannot reach them without its grant
/// having been read from the store first. A revoked token that is no refresh token is presented
/// all the same, and matches nothing.
#[derive(Debug)]
pub struct PresentedToken(RefreshToken);

/// A presented refresh token that the state machine does not hold while grants live in the
/// store: the store's record of [`StoreLookup::token`] goes to [`Flows::presented_from_store`].
#[derive(Debug)]
pub struct StoreLookup(RefreshToken);

impl StoreLookup {
    /// The token to read from the store.
    pub fn token(&self) -> &RefreshToken {
        &self.0
    }
}

impl Flows {
    /// Presents `token` for a refresh or a revocation: ready when it is held or grants live in
    /// memory, else the store lookup it needs first.
    pub fn present(&self, token: RefreshToken) -> Result<PresentedToken, StoreLookup> {
        if self.grants_in_store && !self.refresh_tokens.contains_key(&token) {
            return Err(StoreLookup(token));
        }
        Ok(PresentedToken(token))
    }

    /// Presents the token of `lookup` with what the store holds of it (`None`: nothing, and the
    /// token is as unknown as any other): its record and its grant, held from now on.
    pub fn presented_from_store(
        &mut self,
        lookup: StoreLookup,
        stored: Option<(StoredGrant, StoredRefreshToken)>,
    ) -> PresentedToken {
        if let Some((grant, token)) = stored {
            self.import_grants_and_tokens(vec![grant], vec![token]);
        }
        PresentedToken(lookup.0)
    }

    /// Authenticates a client at the token endpoint: confidential clients must present their
    /// secret; public clients (no secret registered) are identified by `client_id` alone.
    pub fn authenticate_client(
        &self,
        client_id: &str,
        secret: Option<&str>,
    ) -> Result<ClientId, TokenError> {
        let failed = || TokenError::InvalidClient(ClientRefusal::AuthenticationFailed);
        // A metadata-document client is public and is not kept between flows: its URL is its
        // identity, and codes and refresh tokens are bound to that URL.
        if is_document_url(client_id) && !self.clients.contains_key(&ClientId::new(client_id)) {
            return Ok(ClientId::new(client_id));
        }
        let client = self
            .clients
            .get(&ClientId::new(client_id))
            .ok_or_else(failed)?;
        match (&client.secret, secret) {
            (None, _) => Ok(client.id.clone()),
            (Some(expected), Some(presented)) if expected.matches(presented) => {
                Ok(client.id.clone())
            }
            (Some(_), _) => Err(failed()),
        }
    }

    /// Redeems an authorization code. A second presentation of a redeemed code fails and revokes
    /// the refresh tokens issued from it.
    pub fn exchange_code(
        &mut self,
        request: AuthorizationCodeRequest,
        now: u64,
        ids: &dyn IdGenerator,
    ) -> Result<IssuedGrant, TokenError> {
        let invalid = TokenError::InvalidGrant;
        let Some(record) = self.codes.get(&request.code) else {
            return match self.redeemed_grant(&code_digest(&request.code)) {
                Some(grant) => {
                    self.revoke_grant(&grant);
                    Err(invalid(GrantRefusal::CodeReused))
                }
                None => Err(invalid(GrantRefusal::CodeUnknown)),
            };
        };
        let expires_at = record.expires_at;
        if expires_at <= now {
            self.codes.remove(&request.code);
            return Err(invalid(GrantRefusal::CodeExpired));
        }
        let authorization = &record.sign_in.authorization;
        if authorization.client != request.client_id {
            return Err(invalid(GrantRefusal::CodeOfAnotherClient));
        }
        match request.redirect_uri.as_deref() {
            None => {
                return Err(TokenError::InvalidRequest(
                    TokenRequestRefusal::RedirectUriMissing,
                ));
            }
            Some(uri) if uri != authorization.redirect_uri.as_str() => {
                return Err(invalid(GrantRefusal::RedirectUriMismatch));
            }
            Some(_) => {}
        }
        self.check_resource(request.resource.as_deref(), &authorization.resource)?;
        let verifier = request
            .code_verifier
            .as_ref()
            .ok_or(invalid(GrantRefusal::VerifierMissing))?;
        let verifier = PkceVerifier::parse(verifier.expose())
            .ok_or(invalid(GrantRefusal::VerifierMalformed))?;
        if !pkce_verify(&verifier, &authorization.challenge) {
            return Err(invalid(GrantRefusal::VerifierMismatch));
        }

        let grant_id = ids.id(GRANT_PREFIX);
        let sign_in = match self.codes.remove(&request.code) {
            Some(record) => *record.sign_in,
            None => return Err(invalid(GrantRefusal::CodeUnknown)),
        };
        // Only a digest and the grant id stay, so that a second presentation revokes the grant
        // (RFC 6749 §4.1.2) without holding the whole sign-in for the code's lifetime.
        self.remember_redeemed(code_digest(&request.code), expires_at, &grant_id);
        let scopes = sign_in.authorization.scopes.clone();
        let refresh_token = if scopes.contains("offline_access") {
            self.grants.insert(
                grant_id.clone(),
                GrantRecord {
                    sign_in: sign_in.clone(),
                    refresh_tokens: Vec::new(),
                },
            );
            self.record(DurableChange::GrantCreated(Box::new(StoredGrant {
                grant_id: grant_id.clone(),
                sign_in: StoredSignIn::from(&sign_in),
            })));
            Some(self.mint_refresh_token(&grant_id, &sign_in, now, ids))
        } else {
            None
        };
        let nonce = sign_in.authorization.nonce.clone();
        Ok(issued(
            sign_in,
            scopes,
            nonce,
            Some(request.code),
            refresh_token,
        ))
    }

    /// Exchanges a refresh token for new tokens, rotating it. Presenting a rotated token again
    /// revokes the whole grant.
    pub fn refresh(
        &mut self,
        request: RefreshRequest,
        now: u64,
        ids: &dyn IdGenerator,
    ) -> Result<IssuedGrant, TokenError> {
        let invalid = TokenError::InvalidGrant;
        let record = self
            .refresh_tokens
            .get(&request.refresh_token.0)
            .cloned()
            .ok_or(invalid(GrantRefusal::RefreshTokenUnknown))?;
        if record.rotated {
            self.revoke_grant(&record.grant);
            return Err(invalid(GrantRefusal::RefreshTokenReused));
        }
        if record.expires_at <= now {
            self.refresh_tokens.remove(&request.refresh_token.0);
            if self.grants_in_store {
                self.record(DurableChange::RefreshTokenDropped {
                    token: request.refresh_token.0.as_secret().clone(),
                });
            }
            return Err(invalid(GrantRefusal::RefreshTokenExpired));
        }
        if record.client != request.client_id {
            return Err(invalid(GrantRefusal::RefreshTokenOfAnotherClient));
        }
        let sign_in = self
            .grants
            .get(&record.grant)
            .map(|grant| grant.sign_in.clone())
            .ok_or(invalid(GrantRefusal::RefreshTokenUnknown))?;
        self.check_resource(request.resource.as_deref(), &sign_in.authorization.resource)?;
        let granted = &sign_in.authorization.scopes;
        let scopes = match request.scope.as_deref() {
            None => granted.clone(),
            Some(scope) => {
                let requested = ScopeSet::parse(scope);
                let beyond = requested.outside_of(granted.as_slice());
                if !beyond.is_empty() {
                    return Err(TokenError::InvalidScope(
                        beyond.into_iter().map(str::to_owned).collect(),
                    ));
                }
                if requested.is_empty() {
                    granted.clone()
                } else {
                    requested
                }
            }
        };

        if let Some(old) = self.refresh_tokens.get_mut(&request.refresh_token.0) {
            old.rotated = true;
            self.record(DurableChange::RefreshTokenRotated {
                token: request.refresh_token.0.as_secret().clone(),
            });
        }
        let refresh_token = self.mint_refresh_token(&record.grant, &sign_in, now, ids);
        Ok(issued(sign_in, scopes, None, None, Some(refresh_token)))
    }

    /// Token revocation (RFC 7009; Decisions §1). Only confidential clients may revoke, so public
    /// DCR clients get `invalid_client` as Scalekit documents. A refresh token of the client
    /// revokes its whole grant; anything else (access tokens are self-contained JWTs, unknown
    /// tokens) is accepted without effect, as RFC 7009 §2.2 asks.
    pub fn revoke(
        &mut self,
        client_id: &str,
        secret: Option<&str>,
        token: PresentedToken,
    ) -> Result<(), TokenError> {
        let public = || TokenError::InvalidClient(ClientRefusal::PublicClientRevokes);
        if is_document_url(client_id) && !self.clients.contains_key(&ClientId::new(client_id)) {
            return Err(public());
        }
        let client =
            self.clients
                .get(&ClientId::new(client_id))
                .ok_or(TokenError::InvalidClient(
                    ClientRefusal::AuthenticationFailed,
                ))?;
        let Some(expected) = &client.secret else {
            return Err(public());
        };
        if !secret.is_some_and(|presented| expected.matches(presented)) {
            return Err(TokenError::InvalidClient(
                ClientRefusal::AuthenticationFailed,
            ));
        }
        let grant = self
            .refresh_tokens
            .get(&token.0)
            .filter(|record| record.client == client.id)
            .map(|record| record.grant.clone());
        if let Some(grant) = grant {
            self.revoke_grant(&grant);
        }
        Ok(())
    }

    /// `resource` is optional at the token endpoint; when present it must name the grant's.
    fn check_resource(
        &self,
        presented: Option<&str>,
        granted: &ResourceId,
    ) -> Result<(), TokenError> {
        let Some(value) = presented else {
            return Ok(());
        };
        match self.resolve_resource(value) {
            Some(resource) if &resource.id == granted => Ok(()),
            _ => Err(TokenError::InvalidTarget(value.to_owned())),
        }
    }

    fn mint_refresh_token(
        &mut self,
        grant_id: &str,
        sign_in: &SignIn,
        now: u64,
        ids: &dyn IdGenerator,
    ) -> RefreshToken {
        let lifetime = self
            .resource(&sign_in.authorization.resource)
            .map_or(0, |resource| resource.refresh_token_lifetime_secs);
        let token = RefreshToken::new(ids.secret());
        let expires_at = now + lifetime;
        self.refresh_tokens.insert(
            token.clone(),
            RefreshRecord {
                grant: grant_id.to_owned(),
                client: sign_in.authorization.client.clone(),
                expires_at,
                rotated: false,
            },
        );
        self.record(DurableChange::RefreshTokenIssued(StoredRefreshToken {
            token: token.as_secret().clone(),
            grant_id: grant_id.to_owned(),
            client: sign_in.authorization.client.to_string(),
            expires_at,
            rotated: false,
        }));
        if let Some(grant) = self.grants.get_mut(grant_id) {
            grant.refresh_tokens.push(token.clone());
        }
        token
    }
}

fn issued(
    sign_in: SignIn,
    scopes: ScopeSet,
    nonce: Option<String>,
    authorization_code: Option<AuthorizationCode>,
    refresh_token: Option<RefreshToken>,
) -> IssuedGrant {
    IssuedGrant {
        subject: sign_in.user,
        external_sub: sign_in.external_sub,
        claims: sign_in.claims,
        organization: sign_in.organization,
        client_id: sign_in.authorization.client,
        resource: sign_in.authorization.resource,
        connection: sign_in.connection,
        scopes,
        session: sign_in.session,
        nonce,
        authorization_code,
        auth_time: sign_in.auth_time,
        refresh_token,
    }
}
