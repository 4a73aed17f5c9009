//! Claim sets and minting: MCP access tokens and ID tokens (Decisions §4), agents' access tokens
//! (`client_credentials`, docs/fidelity.md "Agents") and the management token of the environment
//! API client (Decisions §3). [`crafted`] makes access tokens on demand
//! for the control API, with or without a deliberate defect.

pub mod crafted;

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Validation};
use scalekit_wire::prefix;
use serde::{Deserialize, Serialize};

use crate::config::ResourceConfig;
use crate::flow::{AgentGrant, AssertionGrant, IssuedGrant};
use crate::ids::IdGenerator;
use crate::keys::{KeyError, KeyRing, Signer};
use crate::types::{AccessToken, IdToken, RefreshToken};

/// The MCP access token's claims.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    /// The environment URL, or `{env}/resources/{res}` with issuer-bound tokens.
    pub iss: String,
    /// `[Server URL, res_…]`, URL first.
    pub aud: Vec<String>,
    /// `usr_…`.
    pub sub: String,
    /// The `sub` "Your App" posted.
    pub xuid: String,
    /// Space-separated scopes.
    pub scope: String,
    /// The same scopes as an array (the Node and Python SDKs read this one).
    pub scopes: Vec<String>,
    /// The client the token was issued to.
    pub client_id: String,
    /// `tkn_…`.
    pub jti: String,
    /// `ses_…`.
    pub sid: String,
    /// Issued at (never in the future: PyJWT has no leeway).
    pub iat: u64,
    /// Not before.
    pub nbf: u64,
    /// Expiry.
    pub exp: u64,
    /// The posted email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The posted `custom_attributes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_claims: Option<serde_json::Map<String, serde_json::Value>>,
    /// `org_…`, only when an organization was posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oid: Option<String>,
    /// The posted roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// The ID token's claims (issued when `openid` was granted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdTokenClaims {
    /// The environment URL, always: Scalekit's ID tokens name the environment (scalekit.md §4),
    /// whatever the resource's issuer-bound switch does to access tokens.
    pub iss: String,
    /// `[client_id]`.
    pub aud: Vec<String>,
    /// The client id.
    pub azp: String,
    /// `[conn_…]`.
    pub amr: Vec<String>,
    /// `usr_…`.
    pub sub: String,
    /// `ses_…`.
    pub sid: String,
    /// The authorization request's nonce, when one was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Left half of SHA-256 of the access token, base64url (OIDC Core §3.1.3.6).
    pub at_hash: String,
    /// Left half of SHA-256 of the authorization code, base64url (OIDC Core §3.3.2.11): on the
    /// ID token of the code exchange only, as Scalekit's ID tokens carry it; a refresh redeems
    /// no code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub c_hash: Option<String>,
    /// Issued at.
    pub iat: u64,
    /// Expiry.
    pub exp: u64,
    /// When the user signed in.
    pub auth_time: u64,
    /// `org_…`, when an organization was posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oid: Option<String>,
    /// Posted profile claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    /// Posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    /// Posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    /// Posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    /// Posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
    /// Posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    /// Posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// Posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    /// Posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number_verified: Option<bool>,
}

/// The management token's claims. `aud` is `[environment URL]`: it is what tells a management
/// token apart from an MCP access token (whose `aud` names a resource), and the REST handlers
/// check it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManagementTokenClaims {
    /// The environment URL.
    pub iss: String,
    /// `skc_…`.
    pub sub: String,
    /// `[environment URL]`.
    pub aud: Vec<String>,
    /// `skc_…`.
    pub client_id: String,
    /// `tkn_…`.
    pub jti: String,
    /// Issued at.
    pub iat: u64,
    /// Not before.
    pub nbf: u64,
    /// Expiry.
    pub exp: u64,
    /// Granted scopes (none are modelled yet).
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// An agent's access token (`client_credentials`): the M2M token Scalekit documents (`sub` =
/// `client_id`, a `scopes` array and no `scope` string, `jti`, times), bound to its MCP server
/// as a user's token is (`aud = [Server URL, res_…]`, `iss` by the issuer switch). No user, so no
/// `sid`, `xuid`, `email` or `oid`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentTokenClaims {
    /// The environment URL, or `{env}/resources/{res}` with issuer-bound tokens.
    pub iss: String,
    /// `[Server URL, res_…]`, URL first.
    pub aud: Vec<String>,
    /// The agent's `m2m_…` id.
    pub sub: String,
    /// The agent's `m2m_…` id.
    pub client_id: String,
    /// The granted scopes.
    pub scopes: Vec<String>,
    /// `tkn_…`.
    pub jti: String,
    /// Issued at.
    pub iat: u64,
    /// Not before.
    pub nbf: u64,
    /// Expiry.
    pub exp: u64,
}

/// The token endpoint's success body (RFC 6749 §5.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The JWT.
    pub access_token: AccessToken,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// The granted scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Present when `offline_access` was granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<RefreshToken>,
    /// Present when `openid` was granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<IdToken>,
}

/// Mints and checks the environment's tokens.
#[derive(Debug)]
pub struct TokenMinter {
    environment_url: String,
    /// The last management tokens whose signature, issuer and audience checked out, most recent
    /// last: "Your App" reuses its token for every user POST, and verifying the same RS256
    /// signature each time cost about 4 % of a flow (the profile in docs/performance.md).
    verified: Mutex<Vec<VerifiedManagementToken>>,
}

/// How many verified management tokens [`TokenMinter`] remembers.
const VERIFIED_MANAGEMENT_TOKENS: usize = 8;

/// A management token that verified, by the SHA-256 of the signer's `kid` and the token (the
/// `kid` is the key's thumbprint, so another key never matches). An entry is used only while
/// its key is published: a retired key's tokens stop verifying at once.
#[derive(Debug, Clone)]
struct VerifiedManagementToken {
    key: [u8; 32],
    claims: ManagementTokenClaims,
}

fn verified_key(signer: &Signer, token: &str) -> [u8; 32] {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(signer.kid().as_bytes());
    context.update(b".");
    context.update(token.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(context.finish().as_ref());
    key
}

impl TokenMinter {
    /// A minter for the environment at `environment_url` (no trailing slash is kept).
    pub fn new(environment_url: &str) -> Self {
        Self {
            environment_url: environment_url.trim_end_matches('/').to_owned(),
            verified: Mutex::new(Vec::with_capacity(VERIFIED_MANAGEMENT_TOKENS)),
        }
    }

    /// The environment URL used as issuer.
    pub fn environment_url(&self) -> &str {
        &self.environment_url
    }

    /// A management token for the environment API client.
    pub fn mint_management(
        &self,
        signer: &Signer,
        client_id: &str,
        lifetime_secs: u64,
        now: u64,
        ids: &dyn IdGenerator,
    ) -> Result<TokenResponse, KeyError> {
        let claims = ManagementTokenClaims {
            iss: self.environment_url.clone(),
            sub: client_id.to_owned(),
            aud: vec![self.environment_url.clone()],
            client_id: client_id.to_owned(),
            jti: ids.id(prefix::TOKEN),
            iat: now,
            nbf: now,
            exp: now + lifetime_secs,
            scopes: Vec::new(),
        };
        Ok(TokenResponse {
            access_token: AccessToken::new(signer.sign(&claims)?),
            token_type: "Bearer".to_owned(),
            expires_in: lifetime_secs,
            scope: None,
            refresh_token: None,
            id_token: None,
        })
    }

    /// Checks a management token: signed by the published key its header's `kid` names, issuer
    /// and audience the environment, subject the API client, and `nbf <= now < exp` on the
    /// injected clock (not the system clock). The signature, issuer and audience of a token seen
    /// recently are not checked again (while its key is published); the times and the subject
    /// always are.
    pub fn verify_management(
        &self,
        keys: &KeyRing,
        token: &str,
        api_client_id: &str,
        now: u64,
    ) -> Option<ManagementTokenClaims> {
        let signer = keys.key_of(token)?;
        let key = verified_key(&signer, token);
        let remembered = self
            .verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|verified| verified.key == key)
            .map(|verified| verified.claims.clone());
        let claims = match remembered {
            Some(claims) => claims,
            None => {
                let claims = self.verify_management_signature(&signer, token)?;
                let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
                if verified.len() == VERIFIED_MANAGEMENT_TOKENS {
                    verified.remove(0);
                }
                verified.push(VerifiedManagementToken {
                    key,
                    claims: claims.clone(),
                });
                claims
            }
        };
        let current = claims.nbf <= now && now < claims.exp;
        (current && claims.sub == api_client_id).then_some(claims)
    }

    /// The claims of a management token whose signature, issuer and audience check out.
    fn verify_management_signature(
        &self,
        signer: &Signer,
        token: &str,
    ) -> Option<ManagementTokenClaims> {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims =
            HashSet::from(["iss".to_owned(), "aud".to_owned(), "sub".to_owned()]);
        validation.set_issuer(&[&self.environment_url]);
        validation.set_audience(&[&self.environment_url]);
        jsonwebtoken::decode::<ManagementTokenClaims>(token, signer.decoding_key(), &validation)
            .ok()
            .map(|data| data.claims)
    }

    /// An agent's access token for its grant: no refresh token (RFC 6749 §4.4.3) and no ID token;
    /// `scope` in the response when any scope was granted (the documented response).
    pub fn mint_agent(
        &self,
        signer: &Signer,
        grant: &AgentGrant,
        resource: &ResourceConfig,
        now: u64,
        ids: &dyn IdGenerator,
    ) -> Result<TokenResponse, KeyError> {
        let lifetime = grant.token_lifetime_secs;
        let claims = AgentTokenClaims {
            iss: self.access_token_issuer(resource),
            aud: resource.audience(),
            sub: grant.client_id.to_string(),
            client_id: grant.client_id.to_string(),
            scopes: grant.scopes.as_slice().to_vec(),
            jti: ids.id(prefix::TOKEN),
            iat: now,
            nbf: now,
            exp: now + lifetime,
        };
        Ok(TokenResponse {
            access_token: AccessToken::new(signer.sign(&claims)?),
            token_type: "Bearer".to_owned(),
            expires_in: lifetime,
            scope: (!grant.scopes.is_empty()).then(|| grant.scopes.to_space_separated()),
            refresh_token: None,
            id_token: None,
        })
    }

    /// The `iss` of the access tokens for `resource`: the environment URL, or `{env}/resources/{res}`
    /// when the resource's issuer-bound switch is on (Decisions §4).
    fn access_token_issuer(&self, resource: &ResourceConfig) -> String {
        if resource.issuer_bound_tokens {
            format!("{}/resources/{}", self.environment_url, resource.id)
        } else {
            self.environment_url.clone()
        }
    }

    /// The access token for a redeemed identity assertion (cross-app access): a user's token of
    /// the usual shape (Decisions §4: `sub` = `usr_…`, `xuid` = the assertion's `sub`, `email`,
    /// `scope` and `scopes`, `sid`), with no refresh token and no ID token (draft §4.4.3: the
    /// client presents a new assertion instead), whatever the scopes.
    pub fn mint_for_assertion(
        &self,
        signer: &Signer,
        grant: &AssertionGrant,
        resource: &ResourceConfig,
        now: u64,
        ids: &dyn IdGenerator,
    ) -> Result<TokenResponse, KeyError> {
        let lifetime = resource.access_token_lifetime_secs;
        let claims = AccessTokenClaims {
            iss: self.access_token_issuer(resource),
            aud: resource.audience(),
            sub: grant.subject.to_string(),
            xuid: grant.external_sub.clone(),
            scope: grant.scopes.to_space_separated(),
            scopes: grant.scopes.as_slice().to_vec(),
            client_id: grant.client_id.to_string(),
            jti: ids.id(prefix::TOKEN),
            sid: grant.session.to_string(),
            iat: now,
            nbf: now,
            exp: now + lifetime,
            email: grant.email.clone(),
            custom_claims: None,
            oid: None,
            roles: Vec::new(),
        };
        Ok(TokenResponse {
            access_token: AccessToken::new(signer.sign(&claims)?),
            token_type: "Bearer".to_owned(),
            expires_in: lifetime,
            scope: Some(grant.scopes.to_space_separated()),
            refresh_token: None,
            id_token: None,
        })
    }

    /// The access token (and ID token when `openid` was granted) for a grant.
    pub fn mint_for_grant(
        &self,
        signer: &Signer,
        grant: &IssuedGrant,
        resource: &ResourceConfig,
        now: u64,
        ids: &dyn IdGenerator,
    ) -> Result<TokenResponse, KeyError> {
        let lifetime = resource.access_token_lifetime_secs;
        let scopes = grant.scopes.as_slice().to_vec();
        let access = AccessTokenClaims {
            iss: self.access_token_issuer(resource),
            aud: resource.audience(),
            sub: grant.subject.to_string(),
            xuid: grant.external_sub.clone(),
            scope: grant.scopes.to_space_separated(),
            scopes,
            client_id: grant.client_id.to_string(),
            jti: ids.id(prefix::TOKEN),
            sid: grant.session.to_string(),
            iat: now,
            nbf: now,
            exp: now + lifetime,
            email: grant.claims.email.clone(),
            custom_claims: grant.claims.custom_attributes.clone(),
            oid: grant.organization.as_ref().map(ToString::to_string),
            roles: grant.claims.roles.clone(),
        };
        let access_token = signer.sign(&access)?;
        let id_token = if grant.scopes.contains("openid") {
            let claims = &grant.claims;
            let id = IdTokenClaims {
                iss: self.environment_url.clone(),
                aud: vec![grant.client_id.to_string()],
                azp: grant.client_id.to_string(),
                amr: vec![grant.connection.to_string()],
                sub: grant.subject.to_string(),
                sid: grant.session.to_string(),
                nonce: grant.nonce.clone(),
                at_hash: at_hash(&access_token),
                c_hash: grant
                    .authorization_code
                    .as_ref()
                    .map(|code| c_hash(code.expose())),
                iat: now,
                exp: now + lifetime,
                auth_time: grant.auth_time,
                oid: grant.organization.as_ref().map(ToString::to_string),
                email: claims.email.clone(),
                email_verified: claims.email_verified,
                name: claims.name.clone(),
                given_name: claims.given_name.clone(),
                family_name: claims.family_name.clone(),
                preferred_username: claims.preferred_username.clone(),
                picture: claims.picture.clone(),
                gender: claims.gender.clone(),
                locale: claims.locale.clone(),
                phone_number: claims.phone_number.clone(),
                phone_number_verified: claims.phone_number_verified,
            };
            Some(IdToken::new(signer.sign(&id)?))
        } else {
            None
        };
        Ok(TokenResponse {
            access_token: AccessToken::new(access_token),
            token_type: "Bearer".to_owned(),
            expires_in: lifetime,
            scope: Some(grant.scopes.to_space_separated()),
            refresh_token: grant.refresh_token.clone(),
            id_token,
        })
    }
}

/// OIDC Core §3.1.3.6: base64url of the left half of SHA-256 of the access token.
pub fn at_hash(access_token: &str) -> String {
    left_half_sha256(access_token)
}

/// OIDC Core §3.3.2.11: base64url of the left half of SHA-256 of the authorization code.
pub fn c_hash(code: &str) -> String {
    left_half_sha256(code)
}

/// The hash of OIDC Core §3.1.3.6 and §3.3.2.11 for RS256: the left-most 128 bits of the SHA-256
/// of the ASCII value, base64url without padding.
fn left_half_sha256(value: &str) -> String {
    let hash = digest::digest(&digest::SHA256, value.as_bytes());
    URL_SAFE_NO_PAD.encode(&hash.as_ref()[..16])
}
