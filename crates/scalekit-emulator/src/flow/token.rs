//! `POST /oauth/token` for MCP clients: the authorization-code grant (RFC 6749 §4.1.3, RFC 7636
//! §4.6) and refresh with rotation (RFC 6749 §6, OAuth 2.1 §4.3.1; Decisions §3).

use scalekit_wire::{Secret, UserClaims};

use super::cimd::is_document_url;
use super::{
    DurableChange, Flows, GRANT_PREFIX, GrantRecord, RefreshRecord, SignIn, StoredGrant,
    StoredRefreshToken, StoredSignIn, code_digest,
};
use crate::ids::IdGenerator;
use crate::types::{
    ClientId, ConnectionId, OrganizationId, PkceVerifier, RefreshToken, ResourceId, ScopeSet,
    SessionId, UserId, pkce_verify,
};

/// Why a token request was refused (OAuth JSON error at the HTTP edge).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// A required parameter is missing: 400 `invalid_request`.
    #[error("{0}")]
    InvalidRequest(String),
    /// Unknown client or wrong secret: 401 `invalid_client`.
    #[error("{0}")]
    InvalidClient(String),
    /// Unknown, expired, reused or foreign code or refresh token, or a PKCE failure: 400
    /// `invalid_grant`.
    #[error("{0}")]
    InvalidGrant(String),
    /// `resource` names another MCP server than the grant's: 400 `invalid_target`.
    #[error("{0}")]
    InvalidTarget(String),
    /// A refresh asked for scopes beyond the grant: 400 `invalid_scope`.
    #[error("{0}")]
    InvalidScope(String),
}

/// An authorization-code token request from an authenticated client.
#[derive(Debug)]
pub struct AuthorizationCodeRequest {
    /// The client, already authenticated.
    pub client_id: ClientId,
    /// `code`.
    pub code: String,
    /// `code_verifier`.
    pub code_verifier: Option<String>,
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
    /// `refresh_token`.
    pub refresh_token: String,
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
    /// When the user signed in.
    pub auth_time: u64,
    /// A new refresh token, when `offline_access` was granted.
    pub refresh_token: Option<RefreshToken>,
}

impl Flows {
    /// Authenticates a client at the token endpoint: confidential clients must present their
    /// secret; public clients (no secret registered) are identified by `client_id` alone.
    pub fn authenticate_client(
        &self,
        client_id: &str,
        secret: Option<&str>,
    ) -> Result<ClientId, TokenError> {
        let failed = || TokenError::InvalidClient("client authentication failed".to_owned());
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
        let invalid = |why: &str| TokenError::InvalidGrant(why.to_owned());
        let Some(record) = self.codes.get(&request.code) else {
            return match self.redeemed_grant(&code_digest(&request.code)) {
                Some(grant) => {
                    self.revoke_grant(&grant);
                    Err(invalid("the authorization code was already used"))
                }
                None => Err(invalid("the authorization code is invalid or expired")),
            };
        };
        let expires_at = record.expires_at;
        if expires_at <= now {
            self.codes.remove(&request.code);
            return Err(invalid("the authorization code expired"));
        }
        let authorization = &record.sign_in.authorization;
        if authorization.client != request.client_id {
            return Err(invalid(
                "the authorization code was issued to another client",
            ));
        }
        match request.redirect_uri.as_deref() {
            None => {
                return Err(TokenError::InvalidRequest(
                    "redirect_uri is required".to_owned(),
                ));
            }
            Some(uri) if uri != authorization.redirect_uri.as_str() => {
                return Err(invalid(
                    "redirect_uri does not match the authorization request",
                ));
            }
            Some(_) => {}
        }
        self.check_resource(request.resource.as_deref(), &authorization.resource)?;
        let verifier = request
            .code_verifier
            .as_deref()
            .ok_or_else(|| invalid("code_verifier is required"))?;
        let verifier =
            PkceVerifier::parse(verifier).ok_or_else(|| invalid("code_verifier is malformed"))?;
        if !pkce_verify(&verifier, &authorization.challenge) {
            return Err(invalid("code_verifier does not match the code_challenge"));
        }

        let grant_id = ids.id(GRANT_PREFIX);
        let sign_in = match self.codes.remove(&request.code) {
            Some(record) => *record.sign_in,
            None => return Err(invalid("the authorization code is invalid or expired")),
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
        Ok(issued(sign_in, scopes, nonce, refresh_token))
    }

    /// Exchanges a refresh token for new tokens, rotating it. Presenting a rotated token again
    /// revokes the whole grant.
    pub fn refresh(
        &mut self,
        request: RefreshRequest,
        now: u64,
        ids: &dyn IdGenerator,
    ) -> Result<IssuedGrant, TokenError> {
        let invalid = |why: &str| TokenError::InvalidGrant(why.to_owned());
        let record = self
            .refresh_tokens
            .get(&request.refresh_token)
            .cloned()
            .ok_or_else(|| invalid("the refresh token is invalid, expired or revoked"))?;
        if record.rotated {
            self.revoke_grant(&record.grant);
            return Err(invalid(
                "the refresh token was already used; the grant is revoked",
            ));
        }
        if record.expires_at <= now {
            self.refresh_tokens.remove(&request.refresh_token);
            if self.grants_in_store {
                self.record(DurableChange::RefreshTokenDropped {
                    token: Secret::new(request.refresh_token.as_str()),
                });
            }
            return Err(invalid("the refresh token expired"));
        }
        if record.client != request.client_id {
            return Err(invalid("the refresh token was issued to another client"));
        }
        let sign_in = self
            .grants
            .get(&record.grant)
            .map(|grant| grant.sign_in.clone())
            .ok_or_else(|| invalid("the refresh token is invalid, expired or revoked"))?;
        self.check_resource(request.resource.as_deref(), &sign_in.authorization.resource)?;
        let granted = &sign_in.authorization.scopes;
        let scopes = match request.scope.as_deref() {
            None => granted.clone(),
            Some(scope) => {
                let requested = ScopeSet::parse(scope);
                let beyond = requested.outside_of(granted.as_slice());
                if !beyond.is_empty() {
                    return Err(TokenError::InvalidScope(format!(
                        "scope {} was not granted",
                        beyond.join(" ")
                    )));
                }
                if requested.is_empty() {
                    granted.clone()
                } else {
                    requested
                }
            }
        };

        if let Some(old) = self.refresh_tokens.get_mut(&request.refresh_token) {
            old.rotated = true;
            self.record(DurableChange::RefreshTokenRotated {
                token: Secret::new(request.refresh_token.as_str()),
            });
        }
        let refresh_token = self.mint_refresh_token(&record.grant, &sign_in, now, ids);
        Ok(issued(sign_in, scopes, None, Some(refresh_token)))
    }

    /// Token revocation (RFC 7009; Decisions §1). Only confidential clients may revoke, so public
    /// DCR clients get `invalid_client` as Scalekit documents. A refresh token of the client
    /// revokes its whole grant; anything else (access tokens are self-contained JWTs, unknown
    /// tokens) is accepted without effect, as RFC 7009 §2.2 asks.
    pub fn revoke(
        &mut self,
        client_id: &str,
        secret: Option<&str>,
        token: &str,
    ) -> Result<(), TokenError> {
        let public = || {
            TokenError::InvalidClient(
                "public clients cannot revoke tokens: client authentication is required".to_owned(),
            )
        };
        if is_document_url(client_id) && !self.clients.contains_key(&ClientId::new(client_id)) {
            return Err(public());
        }
        let client = self
            .clients
            .get(&ClientId::new(client_id))
            .ok_or_else(|| TokenError::InvalidClient("client authentication failed".to_owned()))?;
        let Some(expected) = &client.secret else {
            return Err(public());
        };
        if !secret.is_some_and(|presented| expected.matches(presented)) {
            return Err(TokenError::InvalidClient(
                "client authentication failed".to_owned(),
            ));
        }
        let grant = self
            .refresh_tokens
            .get(token)
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
            _ => Err(TokenError::InvalidTarget(format!(
                "resource {value} is not the resource this grant is for"
            ))),
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
            token.expose().to_owned(),
            RefreshRecord {
                grant: grant_id.to_owned(),
                client: sign_in.authorization.client.clone(),
                expires_at,
                rotated: false,
            },
        );
        self.record(DurableChange::RefreshTokenIssued(StoredRefreshToken {
            token: Secret::new(token.expose()),
            grant_id: grant_id.to_owned(),
            client: sign_in.authorization.client.to_string(),
            expires_at,
            rotated: false,
        }));
        if let Some(grant) = self.grants.get_mut(grant_id) {
            grant.refresh_tokens.push(token.expose().to_owned());
        }
        token
    }
}

fn issued(
    sign_in: SignIn,
    scopes: ScopeSet,
    nonce: Option<String>,
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
        auth_time: sign_in.auth_time,
        refresh_token,
    }
}
