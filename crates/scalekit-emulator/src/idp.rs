//! The companies' identity providers the environment trusts for cross-app access (Scalekit's
//! XAA, MCP's enterprise-managed authorization), played by the emulator: a test double, not a
//! fidelity claim (docs/fidelity.md, Decisions).
//!
//! Each `[[trusted_idps]]` entry is an issuer `{env}/_idp/{id}` with a signing key of its own
//! (RS256, made on first use and kept in the state directory, never published at `/keys`: a
//! separate trust domain, draft-ietf-oauth-identity-assertion-authz-grant §8), its RFC 8414
//! metadata and JWKS, ID tokens for its users (the seam of a single sign-on, through the control
//! API) and ID-JAGs (draft §3): from RFC 8693 token exchange at its token endpoint (draft §4.3),
//! or made to order through the control API, defects included. The environment's side, the
//! verification of an assertion presented with `jwt-bearer`, is [`TrustedIdps::verify_assertion`]
//! (RFC 7523 §3, draft §4.4.1); what needs the state machine follows in
//! `Flows::redeem_assertion`.

use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::JwkSet;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::config::{
    Config, IdpClientConfig, IdpUserConfig, MAX_ASSERTION_LIFETIME_SECS, ResourceConfig,
    TrustedIdpConfig,
};
use crate::flow::{AssertionAudience, AssertionRefusal, VerifiedAssertion};
use crate::ids::IdGenerator;
use crate::keys::{KeyError, Signer};
use crate::store::{Store, StoreError};
use crate::types::{IdpId, IdpIdToken, ScopeSet};
use scalekit_wire::{Check, Secret};

/// The ID-JAG's JWT `typ` (draft §3).
pub const ID_JAG_TYP: &str = "oauth-id-jag+jwt";
/// RFC 8693's grant type.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The token type of an ID-JAG (draft §4.3.1).
pub const ID_JAG_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id-jag";
/// The token type of an ID token (RFC 8693 §3).
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
/// The authorization grant profile an authorization server advertises (draft §7.2).
pub const ID_JAG_PROFILE: &str = "urn:ietf:params:oauth:grant-profile:id-jag";
/// The path prefix of the identity providers' routes.
pub const PATH_PREFIX: &str = "/_idp/";

/// The prefix of the `jti` of the ID-JAGs and ID tokens the emulated identity providers issue.
const JTI_PREFIX: &str = "idp_";

/// Why an identity provider could not sign.
#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    /// The key could not be made, read or used.
    #[error("identity provider key")]
    Key(#[from] KeyError),
    /// The state directory could not be read or written.
    #[error("identity provider key in the state directory")]
    Store(#[from] StoreError),
}

/// One trusted identity provider.
pub struct TrustedIdp {
    /// Its id: the path segment under `/_idp/`.
    pub id: IdpId,
    /// Its configuration.
    pub config: TrustedIdpConfig,
    /// `{env}/_idp/{id}`.
    pub issuer: String,
    /// Made on first use (an RSA key costs about 0.1 s, which a stack that never uses cross-app
    /// access should not pay), then kept.
    key: Mutex<Option<Arc<Signer>>>,
}

impl std::fmt::Debug for TrustedIdp {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TrustedIdp")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl TrustedIdp {
    /// The user with this `sub`.
    pub fn user(&self, sub: &str) -> Option<&IdpUserConfig> {
        self.config.users.iter().find(|user| user.sub == sub)
    }

    /// The client with this id at the identity provider.
    pub fn client(&self, client_id: &str) -> Option<&IdpClientConfig> {
        self.config
            .clients
            .iter()
            .find(|client| client.client_id == client_id)
    }

    /// `{issuer}/oauth/token`.
    pub fn token_endpoint(&self) -> String {
        format!("{}/oauth/token", self.issuer)
    }

    /// `{issuer}/keys`.
    pub fn jwks_uri(&self) -> String {
        format!("{}/keys", self.issuer)
    }
}

/// The identity providers of the environment.
#[derive(Debug)]
pub struct TrustedIdps {
    environment_url: String,
    idps: Vec<TrustedIdp>,
    /// Where their keys are kept (`None`: in memory only, as the environment's own ring).
    store: Option<Arc<Store>>,
}

/// An identity provider's RFC 8414 / OIDC discovery document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdpMetadata {
    /// `{env}/_idp/{id}`.
    pub issuer: String,
    /// `{issuer}/authorize`: listed because discovery needs one; not served (its sign-in is the
    /// control API's `id-token` call).
    pub authorization_endpoint: String,
    /// `{issuer}/oauth/token`.
    pub token_endpoint: String,
    /// `{issuer}/keys`.
    pub jwks_uri: String,
    /// `["code"]`.
    pub response_types_supported: Vec<String>,
    /// RFC 8693 token exchange only.
    pub grant_types_supported: Vec<String>,
    /// `client_secret_post`, `client_secret_basic`.
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// Draft §4.3.1: it issues ID-JAGs.
    pub identity_chaining_requested_token_types_supported: Vec<String>,
    /// `["public"]`.
    pub subject_types_supported: Vec<String>,
    /// `["RS256"]`.
    pub id_token_signing_alg_values_supported: Vec<String>,
}

/// What signs an ID-JAG made through the control API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedBy {
    /// The identity provider's key: a valid signature.
    Idp,
    /// The environment's own signing key (a key the identity provider's JWKS does not have).
    Environment,
    /// A fresh key nobody publishes.
    UnknownKey,
    /// Nothing: `alg: none` and an empty signature.
    Nothing,
}

/// A JWT as the control API shows what it made: the token, its header and its claims. Its
/// `Debug` redacts the token (a bearer credential); the header and claims are not secret.
#[derive(Clone)]
pub struct MintedJwt {
    /// The compact JWS.
    pub token: String,
    /// Its header.
    pub header: Map<String, Value>,
    /// Its claims.
    pub claims: Map<String, Value>,
}

impl std::fmt::Debug for MintedJwt {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("MintedJwt")
            .field("token", &Secret::new(""))
            .field("header", &self.header)
            .field("claims", &self.claims)
            .finish()
    }
}

/// An RFC 8693 token-exchange request at an identity provider's token endpoint, as posted
/// (client credentials already read from the form or HTTP Basic).
#[derive(Debug, Clone, Default)]
pub struct TokenExchangeRequest {
    /// `grant_type`.
    pub grant_type: Option<String>,
    /// The client at the identity provider.
    pub client_id: Option<String>,
    /// Its secret.
    pub client_secret: Option<Secret>,
    /// `requested_token_type`.
    pub requested_token_type: Option<String>,
    /// `subject_token`: an ID token of the identity provider.
    pub subject_token: Option<IdpIdToken>,
    /// `subject_token_type`.
    pub subject_token_type: Option<String>,
    /// `audience`: the authorization server's issuer.
    pub audience: Option<String>,
    /// `resource`: the MCP server (RFC 9728 `resource`).
    pub resource: Option<String>,
    /// `scope`.
    pub scope: Option<String>,
}

/// An ID-JAG the token exchange issued.
#[derive(Debug)]
pub struct IssuedIdJag {
    /// The ID-JAG.
    pub id_jag: MintedJwt,
    /// Its lifetime.
    pub expires_in: u64,
    /// The `scope` it carries, if any.
    pub scope: Option<String>,
}

/// Why a token exchange was refused (OAuth JSON): the variant is the wire error, its
/// `Display` the description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenExchangeError {
    /// No `grant_type`: 400 `invalid_request`.
    #[error("grant_type is required")]
    GrantTypeMissing,
    /// Another grant type: 400 `unsupported_grant_type`.
    #[error("grant_type {0} is not supported")]
    UnsupportedGrantType(String),
    /// Unknown client or a wrong or missing secret: 401 `invalid_client`.
    #[error("client authentication failed")]
    InvalidClient,
    /// A parameter missing or not what this identity provider issues: 400 `invalid_request`.
    #[error("{0}")]
    InvalidRequest(&'static str),
    /// The subject token: 400 `invalid_grant`.
    #[error("{0}")]
    InvalidGrant(SubjectTokenRefusal),
    /// `audience` is not an authorization server the identity provider trusts: 400
    /// `invalid_target`.
    #[error("audience {0} is not an authorization server this identity provider trusts")]
    UnknownAudience(String),
    /// `resource` is not an MCP server of the audience (MCP EMA §7.6.1): 400 `invalid_target`.
    #[error("resource {resource} does not belong to audience {audience}")]
    ResourceNotOfAudience {
        /// The `resource` sent.
        resource: String,
        /// The `audience` sent.
        audience: String,
    },
}

/// Why a subject token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubjectTokenRefusal {
    /// Not an ID token this identity provider signed.
    #[error("the subject token is invalid")]
    Invalid,
    /// Its `exp` has passed.
    #[error("the subject token expired")]
    Expired,
    /// Its `aud` is not the authenticated client (draft §4.3: the IdP MUST check).
    #[error("the subject token was issued to another client")]
    OfAnotherClient,
}

impl TokenExchangeError {
    /// The check that failed.
    pub fn failed_check(&self) -> Check {
        match self {
            TokenExchangeError::GrantTypeMissing | TokenExchangeError::InvalidRequest(_) => {
                Check::TokenRequestValid
            }
            TokenExchangeError::UnsupportedGrantType(_) => Check::GrantTypeSupported,
            TokenExchangeError::InvalidClient => Check::ClientAuthenticated,
            TokenExchangeError::InvalidGrant(_) => Check::SubjectTokenValid,
            TokenExchangeError::UnknownAudience(_) => Check::AudienceAccepted,
            TokenExchangeError::ResourceNotOfAudience { .. } => Check::ResourceMatches,
        }
    }
}

/// The parts of a compact JWS, decoded: header and payload as JSON objects.
struct DecodedJwt<'a> {
    header: Map<String, Value>,
    claims: Map<String, Value>,
    signing_input: &'a str,
    signature: &'a str,
}

fn decode_jwt(token: &str) -> Option<DecodedJwt<'_>> {
    let (signing_input, signature) = token.rsplit_once('.')?;
    let (header, payload) = signing_input.split_once('.')?;
    if payload.contains('.') {
        return None;
    }
    let object = |part: &str| -> Option<Map<String, Value>> {
        let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
        match serde_json::from_slice::<Value>(&bytes).ok()? {
            Value::Object(map) => Some(map),
            _ => None,
        }
    };
    Some(DecodedJwt {
        header: object(header)?,
        claims: object(payload)?,
        signing_input,
        signature,
    })
}

fn verifies(signer: &Signer, jwt: &DecodedJwt<'_>) -> bool {
    jsonwebtoken::crypto::verify(
        jwt.signature,
        jwt.signing_input.as_bytes(),
        signer.decoding_key(),
        Algorithm::RS256,
    )
    .unwrap_or(false)
}

/// `header.claims.signature` with `signer` (none: an empty signature).
fn sign_jwt(
    header: &Map<String, Value>,
    claims: &Map<String, Value>,
    signer: Option<&Signer>,
) -> Result<String, KeyError> {
    let mut token = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).map_err(KeyError::Claims)?);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(
        serde_json::to_vec(claims).map_err(KeyError::Claims)?,
        &mut token,
    );
    let signature = match signer {
        Some(signer) => signer.signature(token.as_bytes())?,
        None => Vec::new(),
    };
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
    Ok(token)
}

/// Merges `changes` into `target`: a `null` member removes the member.
fn merge(target: &mut Map<String, Value>, changes: Map<String, Value>) {
    for (name, value) in changes {
        if value.is_null() {
            target.remove(&name);
        } else {
            target.insert(name, value);
        }
    }
}

/// A required string claim.
fn string_claim<'a>(
    claims: &'a Map<String, Value>,
    name: &'static str,
) -> Result<&'a str, AssertionRefusal> {
    match claims.get(name) {
        None => Err(AssertionRefusal::ClaimMissing(name)),
        Some(Value::String(value)) => Ok(value),
        Some(_) => Err(AssertionRefusal::ClaimMalformed(name)),
    }
}

/// A required NumericDate claim (whole seconds).
fn time_claim(claims: &Map<String, Value>, name: &'static str) -> Result<u64, AssertionRefusal> {
    match claims.get(name) {
        None => Err(AssertionRefusal::ClaimMissing(name)),
        Some(value) => value.as_u64().ok_or(AssertionRefusal::ClaimMalformed(name)),
    }
}

/// `aud` as a string or an array of strings.
fn audience_claim(claims: &Map<String, Value>) -> Result<Vec<&str>, AssertionRefusal> {
    match claims.get("aud") {
        None => Err(AssertionRefusal::ClaimMissing("aud")),
        Some(Value::String(value)) => Ok(vec![value]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().ok_or(AssertionRefusal::ClaimMalformed("aud")))
            .collect(),
        Some(_) => Err(AssertionRefusal::ClaimMalformed("aud")),
    }
}

/// `typ` compared as RFC 7515 §4.1.9 says: case-insensitive, `application/` optional.
fn is_id_jag_typ(typ: &str) -> bool {
    let lower = typ.to_ascii_lowercase();
    lower.strip_prefix("application/").unwrap_or(&lower) == ID_JAG_TYP
}

impl TrustedIdps {
    /// The identity providers `config` declares, served under `environment_url`, their keys
    /// kept in `store` when there is one.
    pub fn new(config: &Config, environment_url: &str, store: Option<Arc<Store>>) -> TrustedIdps {
        let environment_url = environment_url.trim_end_matches('/').to_owned();
        let idps = config
            .trusted_idps
            .iter()
            // With the control API off the identity providers are not served, and not trusted
            // either: nobody could sign in there, so nothing they sign is taken (Decision 16).
            .filter(|_| config.control)
            .map(|idp| TrustedIdp {
                id: IdpId::new(&idp.id),
                config: idp.clone(),
                issuer: format!("{environment_url}{PATH_PREFIX}{}", idp.id),
                key: Mutex::new(None),
            })
            .collect();
        TrustedIdps {
            environment_url,
            idps,
            store,
        }
    }

    /// Every identity provider, in configuration order.
    pub fn all(&self) -> &[TrustedIdp] {
        &self.idps
    }

    /// The identity provider with this id.
    pub fn get(&self, id: &str) -> Option<&TrustedIdp> {
        self.idps.iter().find(|idp| idp.id.as_str() == id)
    }

    fn by_issuer(&self, issuer: &str) -> Option<&TrustedIdp> {
        self.idps.iter().find(|idp| idp.issuer == issuer)
    }

    /// The identity provider's signing key: made on first use, read from or saved to the state
    /// directory when there is one. Only what signs calls this; what verifies calls
    /// [`TrustedIdps::existing_signer`], so that no unauthenticated request makes a key.
    pub fn signer(&self, idp: &TrustedIdp) -> Result<Arc<Signer>, IdpError> {
        self.load_signer(idp, true)
            .map(|signer| signer.expect("a key is made when there is none"))
    }

    /// The identity provider's signing key if it has one (in memory or in the state directory),
    /// never made here: with no key, nothing it signed exists, and every signature is invalid.
    pub fn existing_signer(&self, idp: &TrustedIdp) -> Result<Option<Arc<Signer>>, IdpError> {
        self.load_signer(idp, false)
    }

    fn load_signer(&self, idp: &TrustedIdp, make: bool) -> Result<Option<Arc<Signer>>, IdpError> {
        let mut key = idp.key.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(signer) = key.as_ref() {
            return Ok(Some(Arc::clone(signer)));
        }
        let stored = match &self.store {
            Some(store) => store.idp_signing_key(idp.id.as_str())?,
            None => None,
        };
        let signer = match stored {
            Some(stored) => Signer::from_pem(stored.pem.expose())?,
            None if !make => return Ok(None),
            None => {
                let signer = Signer::generate()?;
                if let Some(store) = &self.store {
                    store.save_idp_signing_key(idp.id.as_str(), &signer)?;
                }
                signer
            }
        };
        let signer = Arc::new(signer);
        *key = Some(Arc::clone(&signer));
        Ok(Some(signer))
    }

    /// The identity provider's JWKS: its one key.
    pub fn jwks(&self, idp: &TrustedIdp) -> Result<JwkSet, IdpError> {
        Ok(self.signer(idp)?.jwks())
    }

    /// Its discovery document.
    pub fn metadata(&self, idp: &TrustedIdp) -> IdpMetadata {
        let strings = |items: &[&str]| items.iter().map(|item| (*item).to_owned()).collect();
        IdpMetadata {
            issuer: idp.issuer.clone(),
            authorization_endpoint: format!("{}/authorize", idp.issuer),
            token_endpoint: idp.token_endpoint(),
            jwks_uri: idp.jwks_uri(),
            response_types_supported: strings(&["code"]),
            grant_types_supported: strings(&[TOKEN_EXCHANGE]),
            token_endpoint_auth_methods_supported: strings(&[
                "client_secret_post",
                "client_secret_basic",
            ]),
            identity_chaining_requested_token_types_supported: strings(&[ID_JAG_TOKEN_TYPE]),
            subject_types_supported: strings(&["public"]),
            id_token_signing_alg_values_supported: strings(&["RS256"]),
        }
    }

    /// An ID token of `user` for the identity provider's client `audience` (any id: a test may
    /// want a token of another client), as a single sign-on would give it.
    pub fn mint_id_token(
        &self,
        idp: &TrustedIdp,
        user: &IdpUserConfig,
        audience: &str,
        lifetime_secs: u64,
        now: u64,
        ids: &dyn IdGenerator,
    ) -> Result<MintedJwt, IdpError> {
        let signer = self.signer(idp)?;
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(idp.issuer));
        claims.insert("sub".into(), json!(user.sub));
        claims.insert("aud".into(), json!(audience));
        claims.insert("iat".into(), json!(now));
        claims.insert("exp".into(), json!(now.saturating_add(lifetime_secs)));
        claims.insert("auth_time".into(), json!(now));
        claims.insert("jti".into(), json!(ids.id(JTI_PREFIX)));
        claims.insert("email".into(), json!(user.email));
        if let Some(name) = &user.name {
            claims.insert("name".into(), json!(name));
        }
        let mut header = Map::new();
        header.insert("typ".into(), json!("JWT"));
        header.insert("alg".into(), json!("RS256"));
        header.insert("kid".into(), json!(signer.kid()));
        let token = sign_jwt(&header, &claims, Some(&signer))?;
        Ok(MintedJwt {
            token,
            header,
            claims,
        })
    }

    /// The claims of an ID-JAG (draft §3) for `user`, issued to `client_id` (the client's id at
    /// the authorization server), for `audience`.
    #[allow(clippy::too_many_arguments)] // reason: each is one claim of the ID-JAG
    pub fn id_jag_claims(
        &self,
        idp: &TrustedIdp,
        user: &IdpUserConfig,
        client_id: &str,
        audience: &str,
        resource: Option<&str>,
        scope: Option<&str>,
        lifetime_secs: u64,
        now: u64,
        ids: &dyn IdGenerator,
    ) -> Map<String, Value> {
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(idp.issuer));
        claims.insert("sub".into(), json!(user.sub));
        claims.insert("aud".into(), json!(audience));
        claims.insert("client_id".into(), json!(client_id));
        claims.insert("jti".into(), json!(ids.id(JTI_PREFIX)));
        claims.insert("iat".into(), json!(now));
        claims.insert("exp".into(), json!(now.saturating_add(lifetime_secs)));
        if let Some(resource) = resource {
            claims.insert("resource".into(), json!(resource));
        }
        if let Some(scope) = scope {
            claims.insert("scope".into(), json!(scope));
        }
        claims.insert("email".into(), json!(user.email));
        claims.insert("auth_time".into(), json!(now));
        claims
    }

    /// Signs ID-JAG claims: the header `{"typ":"oauth-id-jag+jwt","alg":"RS256","kid":…}` with
    /// `header_changes` merged last (a `null` member removes one), signed as `signed_by` says
    /// (the environment's key is `environment_key`).
    pub fn sign_id_jag(
        &self,
        idp: &TrustedIdp,
        claims: Map<String, Value>,
        header_changes: Map<String, Value>,
        signed_by: SignedBy,
        environment_key: &Signer,
    ) -> Result<MintedJwt, IdpError> {
        let own;
        let fresh;
        let signer: Option<&Signer> = match signed_by {
            SignedBy::Idp => {
                own = self.signer(idp)?;
                Some(&own)
            }
            SignedBy::Environment => Some(environment_key),
            SignedBy::UnknownKey => {
                fresh = Signer::generate()?;
                Some(&fresh)
            }
            SignedBy::Nothing => None,
        };
        let mut header = Map::new();
        header.insert("typ".into(), json!(ID_JAG_TYP));
        match signer {
            Some(signer) => {
                header.insert("alg".into(), json!("RS256"));
                header.insert("kid".into(), json!(signer.kid()));
            }
            None => {
                header.insert("alg".into(), json!("none"));
            }
        }
        merge(&mut header, header_changes);
        let token = sign_jwt(&header, &claims, signer)?;
        Ok(MintedJwt {
            token,
            header,
            claims,
        })
    }

    /// Merges claim changes into ID-JAG claims (a `null` member removes one).
    pub fn merge_claims(claims: &mut Map<String, Value>, changes: Map<String, Value>) {
        merge(claims, changes);
    }

    /// RFC 8693 token exchange at the identity provider's token endpoint (draft §4.3), checked
    /// in this order: the grant type, the client, the requested and subject token types, the
    /// subject token (an ID token this identity provider issued to this client, unexpired),
    /// the audience (this environment or one of its MCP servers), the resource (an MCP server
    /// of the audience). No scope policy: whatever `scope` asks is in the ID-JAG.
    pub fn exchange(
        &self,
        idp: &TrustedIdp,
        request: &TokenExchangeRequest,
        resources: &[ResourceConfig],
        now: u64,
        ids: &dyn IdGenerator,
    ) -> Result<Result<IssuedIdJag, TokenExchangeError>, IdpError> {
        let refused = |error| Ok(Err(error));
        match request.grant_type.as_deref() {
            None => return refused(TokenExchangeError::GrantTypeMissing),
            Some(TOKEN_EXCHANGE) => {}
            Some(other) => {
                return refused(TokenExchangeError::UnsupportedGrantType(other.to_owned()));
            }
        }
        let client = request
            .client_id
            .as_deref()
            .and_then(|client_id| idp.client(client_id))
            .filter(|client| {
                request
                    .client_secret
                    .as_ref()
                    .is_some_and(|secret| client.client_secret.matches(secret.expose()))
            });
        let Some(client) = client else {
            return refused(TokenExchangeError::InvalidClient);
        };
        if request.requested_token_type.as_deref() != Some(ID_JAG_TOKEN_TYPE) {
            return refused(TokenExchangeError::InvalidRequest(
                "requested_token_type must be urn:ietf:params:oauth:token-type:id-jag",
            ));
        }
        if request.subject_token_type.as_deref() != Some(ID_TOKEN_TYPE) {
            return refused(TokenExchangeError::InvalidRequest(
                "subject_token_type must be urn:ietf:params:oauth:token-type:id_token",
            ));
        }
        let Some(subject_token) = request
            .subject_token
            .as_ref()
            .map(IdpIdToken::expose)
            .filter(|token| !token.is_empty())
        else {
            return refused(TokenExchangeError::InvalidRequest(
                "subject_token is required",
            ));
        };
        let user = match self.check_subject_token(idp, subject_token, &client.client_id, now)? {
            Ok(user) => user,
            Err(refusal) => return refused(TokenExchangeError::InvalidGrant(refusal)),
        };
        let Some(audience) = request.audience.as_deref().filter(|a| !a.is_empty()) else {
            return refused(TokenExchangeError::InvalidRequest("audience is required"));
        };
        let audience_resource = if audience == self.environment_url {
            None
        } else {
            let found = resources.iter().find(|resource| {
                audience == format!("{}/resources/{}", self.environment_url, resource.id)
            });
            match found {
                Some(resource) => Some(resource),
                None => return refused(TokenExchangeError::UnknownAudience(audience.to_owned())),
            }
        };
        if let Some(resource) = request.resource.as_deref() {
            let named = resources
                .iter()
                .find(|candidate| candidate.has_server_url(resource) || candidate.id == resource);
            let belongs = match (named, audience_resource) {
                (Some(named), Some(audience_resource)) => named.id == audience_resource.id,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if !belongs {
                return refused(TokenExchangeError::ResourceNotOfAudience {
                    resource: resource.to_owned(),
                    audience: audience.to_owned(),
                });
            }
        }
        let lifetime = idp.config.id_jag_lifetime_secs;
        let claims = self.id_jag_claims(
            idp,
            user,
            &client.resource_client_id,
            audience,
            request.resource.as_deref(),
            request.scope.as_deref().filter(|scope| !scope.is_empty()),
            lifetime,
            now,
            ids,
        );
        let signer = self.signer(idp)?;
        let id_jag = self.sign_id_jag(idp, claims, Map::new(), SignedBy::Idp, &signer)?;
        Ok(Ok(IssuedIdJag {
            id_jag,
            expires_in: lifetime,
            scope: request.scope.clone().filter(|scope| !scope.is_empty()),
        }))
    }

    /// The user of a subject token: an ID token this identity provider signed, for `client_id`,
    /// unexpired, of one of its users.
    fn check_subject_token<'a>(
        &self,
        idp: &'a TrustedIdp,
        token: &str,
        client_id: &str,
        now: u64,
    ) -> Result<Result<&'a IdpUserConfig, SubjectTokenRefusal>, IdpError> {
        let invalid = Ok(Err(SubjectTokenRefusal::Invalid));
        let Some(signer) = self.existing_signer(idp)? else {
            return invalid;
        };
        let Some(jwt) = decode_jwt(token) else {
            return invalid;
        };
        // An ID token says `JWT` or nothing (an ID-JAG, `oauth-id-jag+jwt`, is not one).
        let typed = match jwt.header.get("typ") {
            None => true,
            Some(typ) => typ
                .as_str()
                .is_some_and(|typ| typ.eq_ignore_ascii_case("JWT")),
        };
        let signed = typed
            && jwt.header.get("alg") == Some(&json!("RS256"))
            && !jwt.header.contains_key("crit")
            && verifies(&signer, &jwt);
        if !signed || jwt.claims.get("iss") != Some(&json!(idp.issuer)) {
            return invalid;
        }
        let Some(user) = jwt
            .claims
            .get("sub")
            .and_then(Value::as_str)
            .and_then(|sub| idp.user(sub))
        else {
            return invalid;
        };
        let Some(expires_at) = jwt.claims.get("exp").and_then(Value::as_u64) else {
            return invalid;
        };
        if expires_at <= now {
            return Ok(Err(SubjectTokenRefusal::Expired));
        }
        let for_client = match jwt.claims.get("aud") {
            Some(Value::String(audience)) => audience == client_id,
            Some(Value::Array(audiences)) => audiences.contains(&json!(client_id)),
            _ => false,
        };
        if !for_client {
            return Ok(Err(SubjectTokenRefusal::OfAnotherClient));
        }
        Ok(Ok(user))
    }

    /// Verifies an identity assertion presented with `jwt-bearer` (RFC 7523 §3, draft §4.4.1,
    /// MCP EMA §7.4–7.6), the first failing check answering: a compact JWS with JSON header and
    /// claims; `typ`; `alg` RS256; `iss` a trusted identity provider (never the environment
    /// itself); the signature with that identity provider's key; the claims `sub`, `aud`,
    /// `client_id`, `jti`, `exp`, `iat` present and typed; not expired (no leeway), not issued or
    /// valid only in the future, living at most [`MAX_ASSERTION_LIFETIME_SECS`]; `aud` one value,
    /// `{env}` or `{env}/resources/{res}` of a configured resource; `resource` one value if
    /// present.
    pub fn verify_assertion(
        &self,
        token: &str,
        resources: &[ResourceConfig],
        now: u64,
    ) -> Result<Result<VerifiedAssertion, AssertionRefusal>, IdpError> {
        match self.check_assertion(token, resources, now) {
            Ok(verified) => Ok(Ok(verified)),
            Err(Unverified::Refused(refusal)) => Ok(Err(refusal)),
            Err(Unverified::Failed(error)) => Err(error),
        }
    }

    fn check_assertion(
        &self,
        token: &str,
        resources: &[ResourceConfig],
        now: u64,
    ) -> Result<VerifiedAssertion, Unverified> {
        let jwt = decode_jwt(token).ok_or(AssertionRefusal::NotAJwt)?;
        let typ = jwt.header.get("typ").and_then(Value::as_str);
        if !typ.is_some_and(is_id_jag_typ) {
            return Err(AssertionRefusal::WrongType.into());
        }
        if jwt.header.get("alg").and_then(Value::as_str) != Some("RS256") {
            return Err(AssertionRefusal::WrongAlgorithm.into());
        }
        if jwt.header.contains_key("crit") {
            return Err(AssertionRefusal::CriticalHeader.into());
        }
        let claims = &jwt.claims;
        let issuer = string_claim(claims, "iss")?;
        let idp = self
            .by_issuer(issuer)
            .ok_or(AssertionRefusal::IssuerUntrusted)?;
        let signer = self
            .existing_signer(idp)
            .map_err(Unverified::Failed)?
            .ok_or(AssertionRefusal::SignatureInvalid)?;
        let kid_matches = match jwt.header.get("kid") {
            None => true,
            Some(kid) => kid.as_str() == Some(signer.kid()),
        };
        if !kid_matches || !verifies(&signer, &jwt) {
            return Err(AssertionRefusal::SignatureInvalid.into());
        }
        let subject = string_claim(claims, "sub")?;
        let audiences = audience_claim(claims)?;
        let client_id = string_claim(claims, "client_id")?;
        let jti = string_claim(claims, "jti")?;
        let expires_at = time_claim(claims, "exp")?;
        let issued_at = time_claim(claims, "iat")?;
        let not_before = match claims.get("nbf") {
            None => None,
            Some(value) => Some(
                value
                    .as_u64()
                    .ok_or(AssertionRefusal::ClaimMalformed("nbf"))?,
            ),
        };
        if expires_at <= now {
            return Err(AssertionRefusal::Expired.into());
        }
        if issued_at > now {
            return Err(AssertionRefusal::IssuedInFuture.into());
        }
        if not_before.is_some_and(|not_before| not_before > now) {
            return Err(AssertionRefusal::NotYetValid.into());
        }
        if expires_at - now > MAX_ASSERTION_LIFETIME_SECS {
            return Err(AssertionRefusal::LivesTooLong(MAX_ASSERTION_LIFETIME_SECS).into());
        }
        let [audience] = audiences.as_slice() else {
            return Err(AssertionRefusal::AudienceNotOne.into());
        };
        let audience = if *audience == self.environment_url {
            AssertionAudience::Environment
        } else {
            let resource = resources
                .iter()
                .find(|resource| {
                    *audience == format!("{}/resources/{}", self.environment_url, resource.id)
                })
                .ok_or(AssertionRefusal::AudienceForeign)?;
            AssertionAudience::Resource(crate::types::ResourceId::new(&resource.id))
        };
        let resource = match claims.get("resource") {
            None => None,
            Some(Value::String(value)) => Some(value.clone()),
            Some(Value::Array(items)) => match items.as_slice() {
                [Value::String(value)] => Some(value.clone()),
                [_] => return Err(AssertionRefusal::ClaimMalformed("resource").into()),
                _ => return Err(AssertionRefusal::ResourceNotOne.into()),
            },
            Some(_) => return Err(AssertionRefusal::ClaimMalformed("resource").into()),
        };
        let scope = match claims.get("scope") {
            None => None,
            Some(Value::String(value)) => Some(ScopeSet::parse(value)),
            Some(_) => return Err(AssertionRefusal::ClaimMalformed("scope").into()),
        };
        let email = match claims.get("email") {
            None => None,
            Some(Value::String(value)) => Some(value.clone()),
            Some(_) => return Err(AssertionRefusal::ClaimMalformed("email").into()),
        };
        Ok(VerifiedAssertion {
            idp: idp.id.clone(),
            issuer: issuer.to_owned(),
            subject: subject.to_owned(),
            audience,
            client_id: client_id.to_owned(),
            jti: jti.to_owned(),
            expires_at,
            resource,
            scope,
            email,
        })
    }
}

/// Why an assertion was not verified: refused, or the identity provider's key could not be had.
enum Unverified {
    Refused(AssertionRefusal),
    Failed(IdpError),
}

impl From<AssertionRefusal> for Unverified {
    fn from(refusal: AssertionRefusal) -> Self {
        Unverified::Refused(refusal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::SequentialIds;

    const FIXTURE: &str = include_str!("../../../fixtures/environment.toml");
    const ENV: &str = "http://127.0.0.1:8400";
    const RESOURCE: &str = "res_81920374650192839";
    const SERVER_URL: &str = "http://127.0.0.1:8402/mcp";
    const AGENT: &str = "m2m_81920374650192842";
    const NOW: u64 = 1_000_000;

    struct Fixture {
        config: Config,
        idps: TrustedIdps,
        environment_key: Signer,
        ids: SequentialIds,
    }

    impl Fixture {
        fn new() -> Fixture {
            let config = Config::from_toml_str(FIXTURE).expect("the fixture parses");
            let idps = TrustedIdps::new(&config, ENV, None);
            Fixture {
                config,
                idps,
                environment_key: Signer::generate().expect("a key"),
                ids: SequentialIds::new(),
            }
        }

        fn idp(&self) -> &TrustedIdp {
            self.idps
                .get("acme-idp")
                .expect("the fixture's identity provider")
        }

        /// A valid ID-JAG with `claims` and `header` merged, signed as `signed_by` says.
        fn id_jag(&self, claims: Value, header: Value, signed_by: SignedBy) -> String {
            let idp = self.idp();
            let mut merged = self.idps.id_jag_claims(
                idp,
                &idp.config.users[0],
                AGENT,
                &format!("{ENV}/resources/{RESOURCE}"),
                Some(SERVER_URL),
                None,
                300,
                NOW,
                &self.ids,
            );
            let Value::Object(changes) = claims else {
                panic!("claims")
            };
            TrustedIdps::merge_claims(&mut merged, changes);
            let Value::Object(header) = header else {
                panic!("header")
            };
            self.idps
                .sign_id_jag(idp, merged, header, signed_by, &self.environment_key)
                .expect("signed")
                .token
        }

        fn verify(&self, token: &str) -> Result<VerifiedAssertion, AssertionRefusal> {
            self.idps
                .verify_assertion(token, &self.config.resources, NOW)
                .expect("the key")
        }
    }

    #[test]
    fn a_valid_id_jag_verifies_into_its_claims() {
        let fixture = Fixture::new();
        let verified = fixture
            .verify(&fixture.id_jag(json!({ "scope": "mcp:read" }), json!({}), SignedBy::Idp))
            .unwrap();
        assert_eq!(verified.issuer, format!("{ENV}/_idp/acme-idp"));
        assert_eq!(verified.subject, "00u-ada-0001");
        assert_eq!(verified.client_id, AGENT);
        assert_eq!(
            verified.audience,
            AssertionAudience::Resource(crate::types::ResourceId::new(RESOURCE))
        );
        assert_eq!(verified.resource.as_deref(), Some(SERVER_URL));
        assert_eq!(verified.scope, Some(ScopeSet::parse("mcp:read")));
        assert_eq!(verified.expires_at, NOW + 300);
        let environment = fixture
            .verify(&fixture.id_jag(
                json!({ "aud": [ENV], "resource": [RESOURCE] }),
                json!({}),
                SignedBy::Idp,
            ))
            .unwrap();
        assert_eq!(environment.audience, AssertionAudience::Environment);
        assert_eq!(environment.resource.as_deref(), Some(RESOURCE));
        // RFC 7515 §4.1.9: case-insensitive, `application/` optional.
        for typ in ["application/oauth-id-jag+jwt", "OAuth-ID-JAG+JWT"] {
            assert!(
                fixture
                    .verify(&fixture.id_jag(json!({}), json!({ "typ": typ }), SignedBy::Idp))
                    .is_ok(),
                "{typ}"
            );
        }
    }

    #[test]
    fn the_verifier_never_makes_a_key_and_nothing_is_trusted_with_the_control_api_off() {
        let fixture = Fixture::new();
        // Another instance: the same issuer, its own key, made by signing.
        let signed_elsewhere = Fixture::new().id_jag(json!({}), json!({}), SignedBy::Idp);
        let unverified = fixture.verify(&signed_elsewhere).unwrap_err();
        assert_eq!(unverified, AssertionRefusal::SignatureInvalid);
        assert!(
            fixture
                .idps
                .existing_signer(fixture.idp())
                .unwrap()
                .is_none(),
            "verifying made a key"
        );

        let mut config = fixture.config.clone();
        config.control = false;
        let off = TrustedIdps::new(&config, ENV, None);
        assert!(off.all().is_empty());
        assert_eq!(
            off.verify_assertion(&signed_elsewhere, &config.resources, NOW)
                .unwrap()
                .unwrap_err(),
            AssertionRefusal::IssuerUntrusted
        );
    }

    #[test]
    fn each_defect_is_refused_with_its_own_description() {
        let fixture = Fixture::new();
        let refused = |claims: Value, header: Value, signed_by| {
            fixture
                .verify(&fixture.id_jag(claims, header, signed_by))
                .unwrap_err()
        };
        let valid = fixture.id_jag(json!({}), json!({}), SignedBy::Idp);
        assert_eq!(
            fixture.verify("not.a-jwt").unwrap_err(),
            AssertionRefusal::NotAJwt
        );
        assert_eq!(
            fixture.verify(&format!("{valid}.extra")).unwrap_err(),
            AssertionRefusal::NotAJwt
        );
        assert_eq!(
            refused(json!({}), json!({ "typ": "JWT" }), SignedBy::Idp),
            AssertionRefusal::WrongType
        );
        assert_eq!(
            refused(json!({}), json!({ "typ": null }), SignedBy::Idp),
            AssertionRefusal::WrongType
        );
        assert_eq!(
            refused(json!({}), json!({}), SignedBy::Nothing),
            AssertionRefusal::WrongAlgorithm
        );
        assert_eq!(
            refused(json!({}), json!({ "alg": "HS256" }), SignedBy::Idp),
            AssertionRefusal::WrongAlgorithm
        );
        // RFC 7515 §4.1.11: an extension the recipient does not understand makes it invalid.
        assert_eq!(
            refused(
                json!({ "ext": 1 }),
                json!({ "crit": ["ext"] }),
                SignedBy::Idp
            ),
            AssertionRefusal::CriticalHeader
        );
        assert_eq!(
            refused(json!({ "iss": null }), json!({}), SignedBy::Idp),
            AssertionRefusal::ClaimMissing("iss")
        );
        assert_eq!(
            refused(json!({ "iss": ENV }), json!({}), SignedBy::Idp),
            AssertionRefusal::IssuerUntrusted
        );
        assert_eq!(
            refused(json!({}), json!({}), SignedBy::Environment),
            AssertionRefusal::SignatureInvalid
        );
        assert_eq!(
            refused(json!({}), json!({}), SignedBy::UnknownKey),
            AssertionRefusal::SignatureInvalid
        );
        assert_eq!(
            refused(json!({}), json!({ "kid": "snk_1" }), SignedBy::Idp),
            AssertionRefusal::SignatureInvalid
        );
        for claim in ["sub", "aud", "client_id", "jti", "exp", "iat"] {
            assert_eq!(
                refused(json!({ claim: null }), json!({}), SignedBy::Idp),
                AssertionRefusal::ClaimMissing(claim)
            );
            assert_eq!(
                refused(json!({ claim: true }), json!({}), SignedBy::Idp),
                AssertionRefusal::ClaimMalformed(claim)
            );
        }
        assert_eq!(
            refused(json!({ "exp": NOW }), json!({}), SignedBy::Idp),
            AssertionRefusal::Expired
        );
        assert_eq!(
            refused(json!({ "iat": NOW + 1 }), json!({}), SignedBy::Idp),
            AssertionRefusal::IssuedInFuture
        );
        assert_eq!(
            refused(json!({ "nbf": NOW + 1 }), json!({}), SignedBy::Idp),
            AssertionRefusal::NotYetValid
        );
        assert_eq!(
            refused(json!({ "exp": NOW + 3601 }), json!({}), SignedBy::Idp),
            AssertionRefusal::LivesTooLong(3600)
        );
        assert!(
            fixture
                .verify(&fixture.id_jag(json!({ "exp": NOW + 3600 }), json!({}), SignedBy::Idp))
                .is_ok()
        );
        assert_eq!(
            refused(json!({ "aud": [ENV, ENV] }), json!({}), SignedBy::Idp),
            AssertionRefusal::AudienceNotOne
        );
        assert_eq!(
            refused(json!({ "aud": [] }), json!({}), SignedBy::Idp),
            AssertionRefusal::AudienceNotOne
        );
        assert_eq!(
            refused(
                json!({ "aud": format!("{ENV}/oauth/token") }),
                json!({}),
                SignedBy::Idp
            ),
            AssertionRefusal::AudienceForeign
        );
        assert_eq!(
            refused(
                json!({ "aud": format!("{ENV}/") }),
                json!({}),
                SignedBy::Idp
            ),
            AssertionRefusal::AudienceForeign,
            "no trailing-slash variant"
        );
        assert_eq!(
            refused(json!({ "resource": [] }), json!({}), SignedBy::Idp),
            AssertionRefusal::ResourceNotOne
        );
        assert_eq!(
            refused(json!({ "resource": 7 }), json!({}), SignedBy::Idp),
            AssertionRefusal::ClaimMalformed("resource")
        );
        assert_eq!(
            refused(json!({ "scope": ["mcp:read"] }), json!({}), SignedBy::Idp),
            AssertionRefusal::ClaimMalformed("scope")
        );
        assert_eq!(
            AssertionRefusal::LivesTooLong(3600).to_string(),
            "the assertion lives longer than 3600 seconds"
        );
    }

    fn exchange_request(fixture: &Fixture) -> TokenExchangeRequest {
        let idp = fixture.idp();
        let id_token = fixture
            .idps
            .mint_id_token(
                idp,
                &idp.config.users[0],
                "acme-mcp-agent",
                3600,
                NOW,
                &fixture.ids,
            )
            .unwrap()
            .token;
        TokenExchangeRequest {
            grant_type: Some(TOKEN_EXCHANGE.to_owned()),
            client_id: Some("acme-mcp-agent".to_owned()),
            client_secret: Some(Secret::new(
                "acme_idp_secret_testbed_dev_not_for_production",
            )),
            requested_token_type: Some(ID_JAG_TOKEN_TYPE.to_owned()),
            subject_token: Some(IdpIdToken::new(id_token)),
            subject_token_type: Some(ID_TOKEN_TYPE.to_owned()),
            audience: Some(format!("{ENV}/resources/{RESOURCE}")),
            resource: Some(SERVER_URL.to_owned()),
            scope: None,
        }
    }

    #[test]
    fn the_token_exchange_issues_an_id_jag_the_environment_verifies() {
        let fixture = Fixture::new();
        let issued = fixture
            .idps
            .exchange(
                fixture.idp(),
                &exchange_request(&fixture),
                &fixture.config.resources,
                NOW,
                &fixture.ids,
            )
            .unwrap()
            .unwrap();
        assert_eq!(issued.expires_in, 300);
        assert_eq!(issued.id_jag.header["typ"], ID_JAG_TYP);
        let verified = fixture.verify(&issued.id_jag.token).unwrap();
        assert_eq!(
            verified.client_id, AGENT,
            "the client's id at the environment"
        );
        assert_eq!(verified.subject, "00u-ada-0001");
    }

    #[test]
    fn the_token_exchange_checks_in_order_and_says_why() {
        let fixture = Fixture::new();
        let refused = |edit: &dyn Fn(&mut TokenExchangeRequest)| {
            let mut request = exchange_request(&fixture);
            edit(&mut request);
            let error = fixture
                .idps
                .exchange(
                    fixture.idp(),
                    &request,
                    &fixture.config.resources,
                    NOW,
                    &fixture.ids,
                )
                .unwrap()
                .unwrap_err();
            (error.to_string(), error.failed_check())
        };
        assert_eq!(
            refused(&|r| r.grant_type = None).0,
            "grant_type is required"
        );
        assert_eq!(
            refused(&|r| {
                r.grant_type = Some("jwt".to_owned());
                r.client_secret = None;
            }),
            (
                "grant_type jwt is not supported".to_owned(),
                Check::GrantTypeSupported
            )
        );
        assert_eq!(
            refused(&|r| {
                r.client_secret = Some(Secret::new("wrong"));
                r.requested_token_type = None;
            }),
            (
                "client authentication failed".to_owned(),
                Check::ClientAuthenticated
            )
        );
        assert_eq!(
            refused(&|r| r.requested_token_type =
                Some("urn:ietf:params:oauth:token-type:access_token".to_owned()))
            .0,
            "requested_token_type must be urn:ietf:params:oauth:token-type:id-jag"
        );
        assert_eq!(
            refused(&|r| r.subject_token_type =
                Some("urn:ietf:params:oauth:token-type:saml2".to_owned()))
            .0,
            "subject_token_type must be urn:ietf:params:oauth:token-type:id_token"
        );
        assert_eq!(
            refused(&|r| r.subject_token = None).0,
            "subject_token is required"
        );
        assert_eq!(
            refused(&|r| r.subject_token = Some(IdpIdToken::new("x.y.z"))),
            (
                "the subject token is invalid".to_owned(),
                Check::SubjectTokenValid
            )
        );
        let idp = fixture.idp();
        let expired = fixture
            .idps
            .mint_id_token(
                idp,
                &idp.config.users[0],
                "acme-mcp-agent",
                10,
                NOW - 10,
                &fixture.ids,
            )
            .unwrap()
            .token;
        assert_eq!(
            refused(&|r| r.subject_token = Some(IdpIdToken::new(expired.clone()))).0,
            "the subject token expired"
        );
        let foreign = fixture
            .idps
            .mint_id_token(
                idp,
                &idp.config.users[0],
                "other-client",
                10,
                NOW,
                &fixture.ids,
            )
            .unwrap()
            .token;
        assert_eq!(
            refused(&|r| r.subject_token = Some(IdpIdToken::new(foreign.clone()))).0,
            "the subject token was issued to another client"
        );
        // An ID-JAG of the same identity provider, for the same client, is not an ID token.
        let id_jag_claims = fixture.idps.id_jag_claims(
            idp,
            &idp.config.users[0],
            AGENT,
            "acme-mcp-agent",
            None,
            None,
            300,
            NOW,
            &fixture.ids,
        );
        let id_jag = fixture
            .idps
            .sign_id_jag(
                idp,
                id_jag_claims,
                Map::new(),
                SignedBy::Idp,
                &fixture.environment_key,
            )
            .unwrap()
            .token;
        assert_eq!(
            refused(&|r| r.subject_token = Some(IdpIdToken::new(id_jag.clone()))).0,
            "the subject token is invalid"
        );
        assert_eq!(refused(&|r| r.audience = None).0, "audience is required");
        assert_eq!(
            refused(&|r| r.audience = Some("https://elsewhere.example".to_owned())),
            (
                "audience https://elsewhere.example is not an authorization server this identity provider trusts".to_owned(),
                Check::AudienceAccepted
            )
        );
        assert_eq!(
            refused(&|r| r.resource = Some("https://elsewhere.example/mcp".to_owned())),
            (
                format!(
                    "resource https://elsewhere.example/mcp does not belong to audience {ENV}/resources/{RESOURCE}"
                ),
                Check::ResourceMatches
            )
        );
    }
}
