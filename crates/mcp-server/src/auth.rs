//! Access-token validation the way resource servers in front of Scalekit do it (scalekit.md §5),
//! and, when asked, the way the classic broken ones do it.
//!
//! [`Validator`] is pure: it checks one JWT against a fixed key set and a fixed [`Policy`] at a
//! given time. The policy's [`Lapses`] switch single checks off, one per classic mistake
//! ([`crate::Mistake`] chooses them); none switched off is the correct behaviour.
//!
//! [`Authenticator`] owns the IO: it fetches the environment's JWKS (`{env}/keys`) on the first
//! token that needs a key, caches it, and refetches it when a token names a key it does not know.
//! The refetch policy ([`JwksPolicy`]) picks up a genuine key rotation at once and still cannot
//! be made to hammer the environment with forged `kid`s:
//! - an unknown `kid` triggers a refetch, unless a refetch in the last
//!   [`JwksPolicy::refetch_cooldown`] failed or did not bring in the key its token named (a
//!   negative cache). During such a cooldown an unknown `kid` is refused without a fetch: 401
//!   `invalid_token`, or 503 when the refetch that started the cooldown failed, because then the
//!   keys are not known to be current;
//! - a refetch that found the key its token named starts no cooldown, so the next rotation is
//!   picked up at once too;
//! - a refetch replaces the key set: a key the environment no longer publishes (a retired key)
//!   stops working at the next refetch.
//!
//! Nothing here knows about axum.

mod spki;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};
use tokio::time::Instant;
use url::Url;

/// How long, by default, unknown `kid`s trigger no refetch after a refetch that failed or did not
/// bring in the key its token named.
pub const DEFAULT_JWKS_REFETCH_COOLDOWN: Duration = Duration::from_secs(10);

/// Why a token was refused. Every variant maps to `error="invalid_token"` (RFC 6750 §3.1); the
/// message is the client-facing `error_description`.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts with a JSON header and payload.
    #[error("the token is not a well-formed JWT")]
    Malformed(#[source] MalformedToken),
    /// Anything but RS256, which is all Scalekit signs with (`alg` as the header has it).
    #[error("the token is signed with {algorithm}; only RS256 is accepted")]
    UnsupportedAlgorithm { algorithm: String },
    /// The header names no key, so the key cannot be chosen (the Python SDK requires `kid` too).
    #[error("the token header has no kid")]
    MissingKeyId,
    /// No key with this `kid` in the environment's JWKS, even after a refetch.
    #[error("the token is signed with an unknown key")]
    UnknownKeyId { kid: String },
    /// The signature does not verify with the key the header names.
    #[error("the token signature is invalid")]
    BadSignature,
    /// A claim this server needs is absent or has the wrong JSON type.
    #[error("the token has no valid {claim} claim")]
    MissingClaim { claim: &'static str },
    /// `exp` is in the past (RFC 7519 §4.1.4).
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future (RFC 7519 §4.1.5).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iat` is in the future (RFC 7519 §4.1.6): no token can have been issued later than now.
    /// PyJWT, under Scalekit's Python SDK, refuses it with no leeway; the emulator never issues
    /// one.
    #[error("the token was issued in the future")]
    IssuedInFuture,
    /// `iss` is neither the environment URL nor the resource-scoped issuer.
    #[error("the token was issued by an untrusted issuer")]
    WrongIssuer { issuer: String },
    /// `aud` does not contain this server's `res_…` id (RFC 8707 audience binding).
    #[error("the token was not issued for this resource")]
    WrongAudience,
}

/// What is wrong with a token that is not a well-formed JWS (RFC 7515 §7.1): logged, never sent.
#[derive(Debug, thiserror::Error)]
pub enum MalformedToken {
    /// Not exactly three dot-separated parts.
    #[error("the token is not three dot-separated parts")]
    Parts,
    /// The header or payload is not unpadded base64url.
    #[error("the {part} is not base64url")]
    Base64 {
        part: &'static str,
        #[source]
        source: base64::DecodeError,
    },
    /// The header or payload is not a JSON object.
    #[error("the {part} is not a JSON object")]
    Json {
        part: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// A header parameter this server reads is absent or not a string.
    #[error("the header's {parameter} is missing or not a string")]
    HeaderParameter { parameter: &'static str },
    /// The signature could not be checked at all (e.g. it is not base64url).
    #[error("the signature cannot be checked")]
    Signature(#[source] jsonwebtoken::errors::Error),
}

impl From<MalformedToken> for TokenError {
    fn from(error: MalformedToken) -> TokenError {
        TokenError::Malformed(error)
    }
}

/// Why a token could not be judged or was refused, including key-fetch failures.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token itself is bad.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The environment's JWKS could not be fetched, so the token could not be checked.
    #[error("the signing keys are unavailable")]
    KeysUnavailable(#[source] JwksError),
}

/// Why fetching `{env}/keys` failed.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// The request did not complete or the body was not JSON.
    #[error("cannot fetch the JWKS from {url}")]
    Fetch {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The environment answered with a non-success status.
    #[error("the JWKS endpoint {url} answered {status}")]
    Status { url: String, status: u16 },
    /// The last refetch failed less than [`JwksPolicy::refetch_cooldown`] ago.
    #[error("the last JWKS fetch failed; not retrying yet")]
    BackingOff,
}

/// What a valid token must look like, independent of keys and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Accepted `iss` values: the environment URL and `{env}/resources/{res}` (Scalekit is
    /// migrating to the latter; validators accept both).
    pub issuers: Vec<String>,
    /// The `res_…` id that `aud` must contain.
    pub resource_id: String,
    /// The environment URL, without and with a trailing slash: the `aud` of the environment's
    /// management tokens. Accepted in `aud` only under [`Lapses::accept_environment_audience`].
    pub environment_audiences: Vec<String>,
    /// Clock tolerance for `exp`, `nbf` and `iat`, in seconds.
    pub leeway_secs: u64,
    /// The checks deliberately left out; none by default.
    pub lapses: Lapses,
}

impl Policy {
    /// The correct policy for a Scalekit environment and one of its resources.
    /// `environment_url` is compared without a trailing slash, and also accepted with one,
    /// because `Url` adds it to a bare origin while Scalekit's `iss` has none.
    pub fn for_environment(environment_url: &Url, resource_id: &str, leeway_secs: u64) -> Policy {
        let environment = environment_url.as_str().trim_end_matches('/').to_owned();
        Policy {
            issuers: vec![
                format!("{environment}/resources/{resource_id}"),
                format!("{environment}/"),
                environment.clone(),
            ],
            resource_id: resource_id.to_owned(),
            environment_audiences: vec![environment.clone(), format!("{environment}/")],
            leeway_secs,
            lapses: Lapses::default(),
        }
    }
}

/// Checks a validator deliberately leaves out, one per classic resource-server mistake (see
/// [`crate::Mistake`], which sets them). All `false`, the default, is the correct behaviour. Each
/// lapse changes exactly the check it names; everything else is checked as usual.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lapses {
    /// `aud` is not checked at all (nor required).
    pub skip_audience: bool,
    /// `aud` may contain the environment URL instead of the `res_…` id, as on a server configured
    /// with the environment URL as its audience: the environment's management tokens get in.
    pub accept_environment_audience: bool,
    /// `exp` is not compared with now. It must still be present and a NumericDate.
    pub skip_expiry: bool,
    /// `nbf` is not compared with now (`iat` still is).
    pub skip_not_before: bool,
    /// `iat` is not compared with now (`nbf` still is).
    pub skip_issued_at: bool,
    /// `iss` is not checked at all (nor required).
    pub skip_issuer: bool,
    /// The payload is read without verifying any signature: any `alg`, any `kid` or none.
    pub skip_signature: bool,
    /// A token with header `alg: none` and an empty signature is accepted unsigned.
    pub accept_alg_none: bool,
    /// A token with `alg: HS256` is verified with HMAC-SHA256 keyed by the PEM text of the RSA
    /// public key its `kid` names (`verify(token, publicKeyPem)`): algorithm confusion.
    pub alg_confusion: bool,
    /// When the header's `kid` is unknown even after a refetch, the signature is tried with
    /// every known key.
    pub ignore_kid: bool,
}

/// The claims of a validated access token.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    /// `iss`, one of the policy's issuers (under [`Lapses::skip_issuer`], whatever string it is,
    /// or empty when absent).
    pub issuer: String,
    /// `sub`, when present.
    pub subject: Option<String>,
    /// `aud` as a list (a single string becomes one entry; under [`Lapses::skip_audience`], empty
    /// when absent or not strings).
    pub audience: Vec<String>,
    /// The union of the `scope` string and the `scopes` array.
    pub scopes: BTreeSet<String>,
    /// `exp`, seconds since the epoch.
    pub expires_at: u64,
    /// Every claim, as it was in the token.
    pub all: Map<String, Value>,
}

impl Claims {
    /// The scopes of `required` this token lacks, in the order given.
    pub fn missing_scopes<'a>(&self, required: &'a [String]) -> Vec<&'a str> {
        required
            .iter()
            .filter(|scope| !self.scopes.contains(scope.as_str()))
            .map(String::as_str)
            .collect()
    }
}

/// One verification key of the JWKS.
#[derive(Clone)]
struct VerificationKey {
    /// The RSA public key, for RS256.
    decoding: DecodingKey,
    /// The same key as `PUBLIC KEY` PEM text, the HMAC secret under [`Lapses::alg_confusion`].
    public_key_pem: String,
}

/// The verification keys of an environment, by `kid`.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, VerificationKey>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("KeySet")
            .field("kids", &self.kids())
            .finish()
    }
}

impl KeySet {
    /// Reads a JWKS document (RFC 7517 §5). Keys without a `kid`, not meant for signatures, not
    /// RSA, or marked for another algorithm are skipped, so one odd key does not hide the others.
    pub fn from_jwks(document: &Value) -> KeySet {
        let entries = document
            .get("keys")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let mut keys = HashMap::new();
        for entry in entries {
            let jwk: Jwk = match serde_json::from_value(entry.clone()) {
                Ok(jwk) => jwk,
                Err(error) => {
                    tracing::debug!(%error, "skipping a JWKS entry this server cannot read");
                    continue;
                }
            };
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            if entry
                .get("use")
                .and_then(Value::as_str)
                .is_some_and(|key_use| key_use != "sig")
            {
                continue;
            }
            if entry
                .get("alg")
                .and_then(Value::as_str)
                .is_some_and(|alg| alg != "RS256")
            {
                continue;
            }
            let AlgorithmParameters::RSA(rsa) = &jwk.algorithm else {
                continue;
            };
            let decoding = match DecodingKey::from_jwk(&jwk) {
                Ok(key) => key,
                Err(error) => {
                    tracing::debug!(%kid, %error, "skipping an unusable JWKS key");
                    continue;
                }
            };
            let (Ok(n), Ok(e)) = (base64url_component(&rsa.n), base64url_component(&rsa.e)) else {
                tracing::debug!(%kid, "skipping a JWKS key whose n or e is not base64url");
                continue;
            };
            let public_key_pem = spki::public_key_pem(&spki::rsa_spki_der(&n, &e));
            keys.insert(
                kid,
                VerificationKey {
                    decoding,
                    public_key_pem,
                },
            );
        }
        KeySet { keys }
    }

    /// The keys of `self` and of `newer`; where both have a `kid`, `newer`'s key.
    pub fn merged(&self, newer: KeySet) -> KeySet {
        let mut keys = self.keys.clone();
        keys.extend(newer.keys);
        KeySet { keys }
    }

    /// Whether a key with this id is known.
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// The key ids, sorted.
    pub fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }

    /// The PEM text of the key with this id (`-----BEGIN PUBLIC KEY-----`, SubjectPublicKeyInfo),
    /// as the emulator's `hs256_public_key` token and [`Lapses::alg_confusion`] use it.
    pub fn public_key_pem(&self, kid: &str) -> Option<&str> {
        self.keys.get(kid).map(|key| key.public_key_pem.as_str())
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A JWK's `n` or `e` (RFC 7518 §6.3.1): unpadded base64url, though some publishers pad it.
fn base64url_component(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim_end_matches('='))
}

/// Whether a check is the last word on a token, or a JWKS refetch may still follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// An unknown `kid` is reported as such, so the caller can refetch the keys.
    BeforeRefetch,
    /// No refetch follows: under [`Lapses::ignore_kid`] an unknown `kid` falls back to every key.
    Final,
}

/// A JWS in compact serialization, split but not verified.
struct CompactJws<'a> {
    header: Map<String, Value>,
    /// `base64url(header) "." base64url(payload)`, what the signature covers.
    signing_input: &'a str,
    payload: &'a str,
    signature: &'a str,
}

impl<'a> CompactJws<'a> {
    fn split(token: &'a str) -> Result<CompactJws<'a>, MalformedToken> {
        let (signing_input, signature) = token.rsplit_once('.').ok_or(MalformedToken::Parts)?;
        let (header, payload) = signing_input.split_once('.').ok_or(MalformedToken::Parts)?;
        if payload.contains('.') {
            return Err(MalformedToken::Parts);
        }
        Ok(CompactJws {
            header: json_object(header, "header")?,
            signing_input,
            payload,
            signature,
        })
    }

    /// A header parameter that must be a string when present; `null` counts as absent.
    fn header_string(&self, parameter: &'static str) -> Result<Option<&str>, MalformedToken> {
        match self.header.get(parameter) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(value)) => Ok(Some(value.as_str())),
            Some(_) => Err(MalformedToken::HeaderParameter { parameter }),
        }
    }

    fn claims(&self) -> Result<Map<String, Value>, MalformedToken> {
        json_object(self.payload, "payload")
    }
}

/// An unpadded base64url part (RFC 7515 §2) holding a JSON object.
fn json_object(part: &str, name: &'static str) -> Result<Map<String, Value>, MalformedToken> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|source| MalformedToken::Base64 { part: name, source })?;
    serde_json::from_slice(&bytes).map_err(|source| MalformedToken::Json { part: name, source })
}

/// Checks a token against fixed keys and a fixed policy. Pure: no IO, time is a parameter.
#[derive(Debug, Clone)]
pub struct Validator {
    policy: Policy,
    keys: KeySet,
}

impl Validator {
    /// A validator for `policy` that trusts `keys`.
    pub fn new(policy: Policy, keys: KeySet) -> Validator {
        Validator { policy, keys }
    }

    /// The policy this validator enforces.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The keys this validator trusts.
    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// Validates `token` at `now` (seconds since the epoch): RS256 only, `kid` required and
    /// known, signature, `exp` required and in the future, `nbf` and `iat` (if any) not in the
    /// future, `iss` one of the policy's issuers, `aud` containing the resource id; the policy's
    /// [`Lapses`] leave single checks out.
    pub fn validate(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        self.check(token, now, Attempt::Final)
    }

    /// The same, except that an unknown `kid` is always [`TokenError::UnknownKeyId`], so that
    /// the caller may refetch the keys before the last word.
    fn validate_before_refetch(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        self.check(token, now, Attempt::BeforeRefetch)
    }

    fn check(&self, token: &str, now: u64, attempt: Attempt) -> Result<Claims, TokenError> {
        let jws = CompactJws::split(token)?;
        self.verify_signature(&jws, attempt)?;
        let all = jws.claims()?;
        self.check_claims(all, now)
    }

    fn verify_signature(&self, jws: &CompactJws<'_>, attempt: Attempt) -> Result<(), TokenError> {
        let lapses = self.policy.lapses;
        if lapses.skip_signature {
            return Ok(());
        }
        let algorithm = jws
            .header_string("alg")?
            .ok_or(MalformedToken::HeaderParameter { parameter: "alg" })?;
        match algorithm {
            "RS256" => self.verify_with_keys(jws, attempt, Algorithm::RS256),
            "none" if lapses.accept_alg_none => {
                if jws.signature.is_empty() {
                    Ok(())
                } else {
                    Err(TokenError::BadSignature)
                }
            }
            "HS256" if lapses.alg_confusion => {
                self.verify_with_keys(jws, attempt, Algorithm::HS256)
            }
            other => Err(TokenError::UnsupportedAlgorithm {
                algorithm: other.to_owned(),
            }),
        }
    }

    /// Verifies with the key the header's `kid` names (RS256 with the RSA key; HS256, only under
    /// [`Lapses::alg_confusion`], with its PEM text as the secret).
    fn verify_with_keys(
        &self,
        jws: &CompactJws<'_>,
        attempt: Attempt,
        algorithm: Algorithm,
    ) -> Result<(), TokenError> {
        let kid = jws.header_string("kid")?.ok_or(TokenError::MissingKeyId)?;
        let named = self.keys.keys.get(kid);
        let candidates: Vec<&VerificationKey> = match named {
            Some(key) => vec![key],
            None if attempt == Attempt::Final && self.policy.lapses.ignore_kid => self
                .keys
                .kids()
                .into_iter()
                .filter_map(|kid| self.keys.keys.get(kid))
                .collect(),
            None => {
                return Err(TokenError::UnknownKeyId {
                    kid: kid.to_owned(),
                });
            }
        };
        for key in candidates {
            let verified = if algorithm == Algorithm::HS256 {
                let secret = DecodingKey::from_secret(key.public_key_pem.as_bytes());
                jsonwebtoken::crypto::verify(
                    jws.signature,
                    jws.signing_input.as_bytes(),
                    &secret,
                    algorithm,
                )
            } else {
                jsonwebtoken::crypto::verify(
                    jws.signature,
                    jws.signing_input.as_bytes(),
                    &key.decoding,
                    algorithm,
                )
            }
            .map_err(MalformedToken::Signature)?;
            if verified {
                return Ok(());
            }
        }
        if named.is_some() {
            Err(TokenError::BadSignature)
        } else {
            Err(TokenError::UnknownKeyId {
                kid: kid.to_owned(),
            })
        }
    }

    fn check_claims(&self, all: Map<String, Value>, now: u64) -> Result<Claims, TokenError> {
        let lapses = self.policy.lapses;
        let leeway = self.policy.leeway_secs;

        let expires_at =
            numeric_date(&all, "exp")?.ok_or(TokenError::MissingClaim { claim: "exp" })?;
        if !lapses.skip_expiry && now >= expires_at.saturating_add(leeway) {
            return Err(TokenError::Expired);
        }
        let not_before = numeric_date(&all, "nbf")?;
        let issued_at = numeric_date(&all, "iat")?;
        if !lapses.skip_not_before
            && let Some(not_before) = not_before
            && not_before > now.saturating_add(leeway)
        {
            return Err(TokenError::NotYetValid);
        }
        if !lapses.skip_issued_at
            && let Some(issued_at) = issued_at
            && issued_at > now.saturating_add(leeway)
        {
            return Err(TokenError::IssuedInFuture);
        }

        let issuer = all.get("iss").and_then(Value::as_str).map(str::to_owned);
        let issuer = if lapses.skip_issuer {
            issuer.unwrap_or_default()
        } else {
            let issuer = issuer.ok_or(TokenError::MissingClaim { claim: "iss" })?;
            if !self.policy.issuers.contains(&issuer) {
                return Err(TokenError::WrongIssuer { issuer });
            }
            issuer
        };

        let audience = string_or_array(all.get("aud"));
        let audience = if lapses.skip_audience {
            audience.unwrap_or_default()
        } else {
            let audience = audience.ok_or(TokenError::MissingClaim { claim: "aud" })?;
            let for_this_resource = audience.contains(&self.policy.resource_id)
                || (lapses.accept_environment_audience
                    && audience
                        .iter()
                        .any(|entry| self.policy.environment_audiences.contains(entry)));
            if !for_this_resource {
                return Err(TokenError::WrongAudience);
            }
            audience
        };

        // Scalekit's SDKs disagree on where scopes live (Go reads the `scope` string, Node and
        // Python the `scopes` array), so both are read and joined.
        let mut scopes = BTreeSet::new();
        if let Some(scope) = all.get("scope") {
            let scope = scope
                .as_str()
                .ok_or(TokenError::MissingClaim { claim: "scope" })?;
            scopes.extend(scope.split_whitespace().map(str::to_owned));
        }
        if let Some(list) = all.get("scopes") {
            let list =
                string_or_array(Some(list)).ok_or(TokenError::MissingClaim { claim: "scopes" })?;
            scopes.extend(list);
        }

        let subject = all.get("sub").and_then(Value::as_str).map(str::to_owned);
        Ok(Claims {
            issuer,
            subject,
            audience,
            scopes,
            expires_at,
            all,
        })
    }
}

/// A NumericDate claim (RFC 7519 §2): absent is `None`, anything but a non-negative number is an
/// error. Fractions are truncated.
fn numeric_date(
    claims: &Map<String, Value>,
    claim: &'static str,
) -> Result<Option<u64>, TokenError> {
    let Some(value) = claims.get(claim) else {
        return Ok(None);
    };
    if let Some(seconds) = value.as_u64() {
        return Ok(Some(seconds));
    }
    match value.as_f64() {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "checked non-negative and finite; fractions of a second do not matter"
        )]
        Some(seconds) if seconds.is_finite() && seconds >= 0.0 => Ok(Some(seconds as u64)),
        _ => Err(TokenError::MissingClaim { claim }),
    }
}

/// A claim that is a string or an array of strings (`aud`, RFC 7519 §4.1.3), as a list.
fn string_or_array(value: Option<&Value>) -> Option<Vec<String>> {
    match value? {
        Value::String(single) => Some(vec![single.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect(),
        _ => None,
    }
}

/// The current time in seconds since the epoch; injected so tests can move it.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or(0)
    })
}

/// When and how the JWKS is refetched (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksPolicy {
    /// After a refetch that failed or did not bring in the key its token named, how long unknown
    /// `kid`s trigger no further refetch.
    pub refetch_cooldown: Duration,
    /// Whether an unknown `kid` triggers a refetch once a fetch has succeeded. `false` fetches the
    /// keys once and never again, as Scalekit's Node SDK does.
    pub refetch_unknown_kids: bool,
    /// Whether a refetch replaces the key set (`true`), or only adds new keys to it, so that a
    /// retired key keeps working (`false`).
    pub drop_retired_keys: bool,
}

impl Default for JwksPolicy {
    fn default() -> JwksPolicy {
        JwksPolicy {
            refetch_cooldown: DEFAULT_JWKS_REFETCH_COOLDOWN,
            refetch_unknown_kids: true,
            drop_retired_keys: true,
        }
    }
}

/// Validates tokens with the environment's JWKS, fetched over HTTP and cached.
pub struct Authenticator {
    jwks_url: Url,
    jwks_policy: JwksPolicy,
    http: reqwest::Client,
    validator: RwLock<Arc<Validator>>,
    refetch: tokio::sync::Mutex<RefetchState>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Authenticator")
            .field("jwks_url", &self.jwks_url.as_str())
            .field("jwks_policy", &self.jwks_policy)
            .field("validator", &self.current())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct RefetchState {
    /// Whether a fetch has ever succeeded.
    fetched: bool,
    /// The negative cache: set by a refetch that failed or did not bring in its key.
    cooldown: Option<Cooldown>,
}

#[derive(Debug)]
struct Cooldown {
    since: Instant,
    /// The refetch failed (rather than answering without the key).
    after_failure: bool,
}

impl Authenticator {
    /// An authenticator that fetches keys from `jwks_url` (`{env}/keys`) lazily, on the first
    /// token it needs a key for, and refetches them as `jwks_policy` says.
    pub fn new(
        policy: Policy,
        jwks_policy: JwksPolicy,
        jwks_url: Url,
        http: reqwest::Client,
    ) -> Authenticator {
        Authenticator {
            jwks_url,
            jwks_policy,
            http,
            validator: RwLock::new(Arc::new(Validator::new(policy, KeySet::default()))),
            refetch: tokio::sync::Mutex::new(RefetchState::default()),
        }
    }

    fn current(&self) -> Arc<Validator> {
        // A poisoned lock still holds a complete validator: it is only ever replaced whole.
        Arc::clone(
            &self
                .validator
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Validates `token` at `now`. When the token names an unknown key, the JWKS is fetched
    /// again as the module docs describe.
    pub async fn authenticate(&self, token: &str, now: u64) -> Result<Claims, AuthError> {
        let seen = self.current();
        let kid = match seen.validate_before_refetch(token, now) {
            Err(TokenError::UnknownKeyId { kid }) => kid,
            other => return other.map_err(AuthError::Token),
        };

        // One refetch at a time: the requests that waited see its keys.
        let mut refetch = self.refetch.lock().await;
        let latest = self.current();
        if !Arc::ptr_eq(&latest, &seen) {
            match latest.validate_before_refetch(token, now) {
                Err(TokenError::UnknownKeyId { .. }) => {}
                other => return other.map_err(AuthError::Token),
            }
        }
        if refetch.fetched && !self.jwks_policy.refetch_unknown_kids {
            return latest.validate(token, now).map_err(AuthError::Token);
        }
        if let Some(cooldown) = &refetch.cooldown
            && cooldown.since.elapsed() < self.jwks_policy.refetch_cooldown
        {
            if cooldown.after_failure {
                return Err(AuthError::KeysUnavailable(JwksError::BackingOff));
            }
            return latest.validate(token, now).map_err(AuthError::Token);
        }

        let published = match self.fetch_keys().await {
            Ok(keys) => keys,
            Err(error) => {
                refetch.cooldown = Some(Cooldown {
                    since: Instant::now(),
                    after_failure: true,
                });
                tracing::warn!(error = %error, source = ?std::error::Error::source(&error), "JWKS fetch failed");
                return Err(AuthError::KeysUnavailable(error));
            }
        };
        refetch.fetched = true;
        refetch.cooldown = (!published.contains(&kid)).then(|| Cooldown {
            since: Instant::now(),
            after_failure: false,
        });
        tracing::debug!(keys = ?published, %kid, "fetched the JWKS");
        let keys = if self.jwks_policy.drop_retired_keys {
            published
        } else {
            latest.keys().merged(published)
        };
        let refreshed = Arc::new(Validator::new(latest.policy().clone(), keys));
        *self
            .validator
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::clone(&refreshed);
        refreshed.validate(token, now).map_err(AuthError::Token)
    }

    async fn fetch_keys(&self) -> Result<KeySet, JwksError> {
        let url = self.jwks_url.to_string();
        let response = self
            .http
            .get(self.jwks_url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|source| JwksError::Fetch {
                url: url.clone(),
                source,
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(JwksError::Status {
                url,
                status: status.as_u16(),
            });
        }
        let document: Value = response
            .json()
            .await
            .map_err(|source| JwksError::Fetch { url, source })?;
        Ok(KeySet::from_jwks(&document))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
    use aws_lc_rs::signature::KeyPair as _;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::*;

    const NOW: u64 = 1_800_000_000;
    const ENVIRONMENT: &str = "http://127.0.0.1:9000";

    /// An RSA signing key, its public JWK, and the PEM aws-lc-rs makes of its public key.
    struct Signer {
        kid: String,
        key: EncodingKey,
        jwk: Value,
        public_key_pem: String,
    }

    impl Signer {
        fn generate(kid: &str) -> Signer {
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .expect("an RSA key");
            let der = pair.as_der().expect("a PKCS#8 export");
            let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
            let lines: Vec<&str> = body
                .as_bytes()
                .chunks(64)
                .map(|chunk| std::str::from_utf8(chunk).expect("base64 is ASCII"))
                .collect();
            let pem = format!(
                "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                lines.join("\n")
            );
            let key = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("a PEM key");
            let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).expect("a JWK");
            jwk.common.key_id = Some(kid.to_owned());
            let spki: PublicKeyX509Der<'static> =
                pair.public_key().as_der().expect("an SPKI export");
            Signer {
                kid: kid.to_owned(),
                key,
                jwk: serde_json::to_value(jwk).expect("a JSON JWK"),
                public_key_pem: spki::public_key_pem(spki.as_ref()),
            }
        }

        /// An RS256 token with `kid` in the header.
        fn sign_as(&self, kid: Option<&str>, claims: &Value) -> String {
            let mut header = Header::new(Algorithm::RS256);
            header.kid = kid.map(str::to_owned);
            jsonwebtoken::encode(&header, claims, &self.key).expect("a signed token")
        }

        fn sign(&self, claims: &Value) -> String {
            self.sign_as(Some(&self.kid), claims)
        }
    }

    // RSA key generation is slow unoptimised; the tests share two keys.
    static KEY: LazyLock<Signer> = LazyLock::new(|| Signer::generate("snk_1"));
    static STRANGER: LazyLock<Signer> = LazyLock::new(|| Signer::generate("snk_stranger"));

    fn policy() -> Policy {
        let environment = Url::parse(ENVIRONMENT).expect("a valid URL");
        Policy::for_environment(&environment, "res_1", 0)
    }

    /// A validator trusting [`KEY`], with `lapses` and `leeway_secs`.
    fn validator_with(lapses: Lapses, leeway_secs: u64) -> Validator {
        let mut policy = policy();
        policy.lapses = lapses;
        policy.leeway_secs = leeway_secs;
        Validator::new(policy, KeySet::from_jwks(&json!({ "keys": [KEY.jwk] })))
    }

    fn correct() -> Validator {
        validator_with(Lapses::default(), 0)
    }

    fn claims(exp: u64) -> Value {
        json!({"iss": ENVIRONMENT, "aud": ["res_1"], "sub": "usr_1", "exp": exp})
    }

    fn valid_claims() -> Value {
        let mut claims = claims(NOW + 60);
        claims["iat"] = json!(NOW);
        claims["nbf"] = json!(NOW);
        claims
    }

    /// A compact JWS from a header, claims and a signature, none of them checked.
    fn compact(header: &Value, claims: &Value, signature: &str) -> String {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.{signature}",
            engine.encode(header.to_string()),
            engine.encode(claims.to_string())
        )
    }

    /// An HS256 token keyed by `secret`, with `kid` in the header.
    fn hs256(kid: &str, secret: &[u8], claims: &Value) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret))
            .expect("an HMAC token")
    }

    #[test]
    fn a_token_expires_at_exp_exactly() {
        let validator = correct();
        assert!(matches!(
            validator.validate(&KEY.sign(&claims(NOW)), NOW),
            Err(TokenError::Expired)
        ));
        let valid = validator
            .validate(&KEY.sign(&claims(NOW + 1)), NOW)
            .expect("valid one second before exp");
        assert_eq!(valid.subject.as_deref(), Some("usr_1"));
        assert_eq!(valid.expires_at, NOW + 1);
    }

    #[test]
    fn the_leeway_stretches_exp_nbf_and_iat() {
        let validator = validator_with(Lapses::default(), 30);
        assert!(
            validator
                .validate(&KEY.sign(&claims(NOW - 29)), NOW)
                .is_ok()
        );
        assert!(matches!(
            validator.validate(&KEY.sign(&claims(NOW - 30)), NOW),
            Err(TokenError::Expired)
        ));
        let mut early = claims(NOW + 60);
        early["nbf"] = json!(NOW + 30);
        early["iat"] = json!(NOW + 30);
        assert!(validator.validate(&KEY.sign(&early), NOW).is_ok());
        early["nbf"] = json!(NOW + 31);
        assert!(matches!(
            validator.validate(&KEY.sign(&early), NOW),
            Err(TokenError::NotYetValid)
        ));
        early["nbf"] = json!(NOW);
        early["iat"] = json!(NOW + 31);
        assert!(matches!(
            validator.validate(&KEY.sign(&early), NOW),
            Err(TokenError::IssuedInFuture)
        ));
    }

    #[test]
    fn a_token_issued_in_the_future_is_refused() {
        let mut token = valid_claims();
        token["iat"] = json!(NOW + 1);
        let error = correct()
            .validate(&KEY.sign(&token), NOW)
            .expect_err("iat in the future is refused");
        assert!(matches!(error, TokenError::IssuedInFuture), "{error:?}");
        assert_eq!(error.to_string(), "the token was issued in the future");
        token["iat"] = json!(NOW);
        assert!(correct().validate(&KEY.sign(&token), NOW).is_ok());
        token["iat"] = json!("soon");
        assert!(matches!(
            correct().validate(&KEY.sign(&token), NOW),
            Err(TokenError::MissingClaim { claim: "iat" })
        ));
    }

    #[test]
    fn the_environment_issuer_is_accepted_with_a_trailing_slash() {
        let mut token = claims(NOW + 60);
        token["iss"] = json!("http://127.0.0.1:9000/");
        assert!(correct().validate(&KEY.sign(&token), NOW).is_ok());
        token["iss"] = json!("http://127.0.0.1:9000/resources/res_2");
        assert!(matches!(
            correct().validate(&KEY.sign(&token), NOW),
            Err(TokenError::WrongIssuer { .. })
        ));
    }

    #[test]
    fn a_token_without_aud_or_iss_is_refused() {
        let mut token = claims(NOW + 60);
        token.as_object_mut().expect("an object").remove("aud");
        assert!(matches!(
            correct().validate(&KEY.sign(&token), NOW),
            Err(TokenError::MissingClaim { claim: "aud" })
        ));
        let mut token = claims(NOW + 60);
        token.as_object_mut().expect("an object").remove("iss");
        assert!(matches!(
            correct().validate(&KEY.sign(&token), NOW),
            Err(TokenError::MissingClaim { claim: "iss" })
        ));
    }

    #[test]
    fn scopes_are_the_union_of_the_string_and_the_array() {
        let mut token = claims(NOW + 60);
        token["scope"] = json!("a  b");
        token["scopes"] = json!(["b", "c"]);
        let valid = correct().validate(&KEY.sign(&token), NOW).expect("valid");
        assert_eq!(
            valid.scopes.into_iter().collect::<Vec<_>>(),
            vec!["a", "b", "c"]
        );
        token["scope"] = json!(["not", "a", "string"]);
        assert!(matches!(
            correct().validate(&KEY.sign(&token), NOW),
            Err(TokenError::MissingClaim { claim: "scope" })
        ));
    }

    #[test]
    fn issuers_are_the_environment_with_and_without_slash_and_the_resource_issuer() {
        assert_eq!(
            policy().issuers,
            vec![
                "http://127.0.0.1:9000/resources/res_1".to_owned(),
                "http://127.0.0.1:9000/".to_owned(),
                "http://127.0.0.1:9000".to_owned(),
            ]
        );
        assert_eq!(policy().lapses, Lapses::default());
    }

    #[test]
    fn a_garbage_token_is_malformed() {
        let validator = Validator::new(policy(), KeySet::default());
        for garbage in [
            "not-a-jwt",
            "a.b",
            "a.b.c.d",
            "!!.e30.",
            "e30.!!.",
            "W10.e30.",
        ] {
            let error = validator
                .validate(garbage, 0)
                .expect_err("garbage is refused");
            assert!(
                matches!(error, TokenError::Malformed(_)),
                "{garbage}: {error:?}"
            );
        }
    }

    #[test]
    fn a_token_without_kid_is_refused() {
        assert!(matches!(
            correct().validate(&KEY.sign_as(None, &valid_claims()), NOW),
            Err(TokenError::MissingKeyId)
        ));
    }

    #[test]
    fn a_token_signed_by_another_key_is_refused() {
        assert!(matches!(
            correct().validate(&STRANGER.sign_as(Some("snk_1"), &valid_claims()), NOW),
            Err(TokenError::BadSignature)
        ));
        assert!(matches!(
            correct().validate(&STRANGER.sign(&valid_claims()), NOW),
            Err(TokenError::UnknownKeyId { ref kid }) if kid == "snk_stranger"
        ));
    }

    #[test]
    fn a_jwks_skips_keys_it_cannot_use() {
        let document = json!({"keys": [
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "snk_1", "use": "sig", "alg": "RS256", "n": "AQAB", "e": "AQAB"},
        ]});
        let keys = KeySet::from_jwks(&document);
        assert_eq!(keys.len(), 1);
        assert!(keys.contains("snk_1"));
    }

    #[test]
    fn a_document_without_keys_is_an_empty_set() {
        assert!(KeySet::from_jwks(&json!({"nope": 1})).is_empty());
    }

    #[test]
    fn the_pem_of_a_jwks_key_is_the_one_aws_lc_rs_exports() {
        let keys = KeySet::from_jwks(&json!({ "keys": [KEY.jwk, STRANGER.jwk] }));
        assert_eq!(
            keys.public_key_pem("snk_1"),
            Some(KEY.public_key_pem.as_str())
        );
        assert_eq!(
            keys.public_key_pem("snk_stranger"),
            Some(STRANGER.public_key_pem.as_str())
        );
        assert!(KEY.public_key_pem.starts_with(
            "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"
        ));
    }

    #[test]
    fn merging_key_sets_keeps_the_old_kids_and_adds_the_new() {
        let old = KeySet::from_jwks(&json!({ "keys": [KEY.jwk] }));
        let new = KeySet::from_jwks(&json!({ "keys": [STRANGER.jwk] }));
        assert_eq!(old.merged(new).kids(), vec!["snk_1", "snk_stranger"]);
    }

    #[test]
    fn scopes_missing_are_listed_in_the_order_required() {
        let claims = Claims {
            issuer: String::new(),
            subject: None,
            audience: vec![],
            scopes: ["mcp:read".to_owned()].into_iter().collect(),
            expires_at: 0,
            all: Map::new(),
        };
        let required = vec![
            "mcp:write".to_owned(),
            "mcp:read".to_owned(),
            "admin".to_owned(),
        ];
        assert_eq!(claims.missing_scopes(&required), vec!["mcp:write", "admin"]);
    }

    #[test]
    fn numeric_dates_accept_integers_and_floats_only() {
        let claims = json!({"a": 5, "b": 7.9, "c": "8", "d": -1});
        let claims = claims.as_object().expect("an object");
        assert_eq!(numeric_date(claims, "a").expect("integer"), Some(5));
        assert_eq!(numeric_date(claims, "b").expect("float"), Some(7));
        assert!(numeric_date(claims, "c").is_err());
        assert!(numeric_date(claims, "d").is_err());
        assert_eq!(numeric_date(claims, "missing").expect("absent"), None);
    }

    // One test per lapse: the token it lets in, refused by the correct policy with the right
    // error, and what it still refuses.

    #[test]
    fn skip_audience_lets_in_a_token_for_another_resource() {
        let lapsed = validator_with(
            Lapses {
                skip_audience: true,
                ..Lapses::default()
            },
            0,
        );
        let mut token = valid_claims();
        token["aud"] = json!(["res_999"]);
        let token = KEY.sign(&token);
        assert!(matches!(
            correct().validate(&token, NOW),
            Err(TokenError::WrongAudience)
        ));
        assert_eq!(
            lapsed.validate(&token, NOW).expect("let in").audience,
            vec!["res_999"]
        );
        let mut without = valid_claims();
        without.as_object_mut().expect("an object").remove("aud");
        assert!(lapsed.validate(&KEY.sign(&without), NOW).is_ok());
        let mut expired = valid_claims();
        expired["exp"] = json!(NOW - 1);
        assert!(matches!(
            lapsed.validate(&KEY.sign(&expired), NOW),
            Err(TokenError::Expired)
        ));
    }

    #[test]
    fn accept_environment_audience_lets_in_a_management_token_only() {
        let lapsed = validator_with(
            Lapses {
                accept_environment_audience: true,
                ..Lapses::default()
            },
            0,
        );
        for audience in [ENVIRONMENT, "http://127.0.0.1:9000/"] {
            let mut management = valid_claims();
            management["aud"] = json!([audience]);
            management["sub"] = json!("m2m_1");
            let token = KEY.sign(&management);
            assert!(matches!(
                correct().validate(&token, NOW),
                Err(TokenError::WrongAudience)
            ));
            assert!(lapsed.validate(&token, NOW).is_ok(), "{audience}");
        }
        let mut other_resource = valid_claims();
        other_resource["aud"] = json!(["res_999"]);
        assert!(matches!(
            lapsed.validate(&KEY.sign(&other_resource), NOW),
            Err(TokenError::WrongAudience)
        ));
        assert!(lapsed.validate(&KEY.sign(&valid_claims()), NOW).is_ok());
    }

    #[test]
    fn skip_expiry_lets_in_an_expired_token_but_still_requires_exp() {
        let lapsed = validator_with(
            Lapses {
                skip_expiry: true,
                ..Lapses::default()
            },
            0,
        );
        let mut expired = valid_claims();
        expired["iat"] = json!(NOW - 7200);
        expired["nbf"] = json!(NOW - 7200);
        expired["exp"] = json!(NOW - 3600);
        let token = KEY.sign(&expired);
        assert!(matches!(
            correct().validate(&token, NOW),
            Err(TokenError::Expired)
        ));
        assert!(lapsed.validate(&token, NOW).is_ok());
        let mut without = valid_claims();
        without.as_object_mut().expect("an object").remove("exp");
        assert!(matches!(
            lapsed.validate(&KEY.sign(&without), NOW),
            Err(TokenError::MissingClaim { claim: "exp" })
        ));
    }

    #[test]
    fn skip_not_before_lets_in_a_token_not_valid_yet_only() {
        let lapsed = validator_with(
            Lapses {
                skip_not_before: true,
                ..Lapses::default()
            },
            0,
        );
        let mut early = valid_claims();
        early["nbf"] = json!(NOW + 600);
        let early = KEY.sign(&early);
        assert!(matches!(
            correct().validate(&early, NOW),
            Err(TokenError::NotYetValid)
        ));
        assert!(lapsed.validate(&early, NOW).is_ok());

        let mut future = valid_claims();
        future["iat"] = json!(NOW + 600);
        let future = KEY.sign(&future);
        assert!(matches!(
            correct().validate(&future, NOW),
            Err(TokenError::IssuedInFuture)
        ));
        assert!(matches!(
            lapsed.validate(&future, NOW),
            Err(TokenError::IssuedInFuture)
        ));
    }

    #[test]
    fn skip_issued_at_lets_in_a_token_issued_in_the_future_only() {
        let lapsed = validator_with(
            Lapses {
                skip_issued_at: true,
                ..Lapses::default()
            },
            0,
        );
        let mut future = valid_claims();
        future["iat"] = json!(NOW + 600);
        let future = KEY.sign(&future);
        assert!(matches!(
            correct().validate(&future, NOW),
            Err(TokenError::IssuedInFuture)
        ));
        assert!(lapsed.validate(&future, NOW).is_ok());

        let mut early = valid_claims();
        early["nbf"] = json!(NOW + 600);
        assert!(matches!(
            lapsed.validate(&KEY.sign(&early), NOW),
            Err(TokenError::NotYetValid)
        ));
    }

    #[test]
    fn skip_issuer_lets_in_a_token_from_another_issuer() {
        let lapsed = validator_with(
            Lapses {
                skip_issuer: true,
                ..Lapses::default()
            },
            0,
        );
        let mut foreign = valid_claims();
        foreign["iss"] = json!("https://evil.example");
        let token = KEY.sign(&foreign);
        assert!(matches!(
            correct().validate(&token, NOW),
            Err(TokenError::WrongIssuer { ref issuer }) if issuer == "https://evil.example"
        ));
        assert_eq!(
            lapsed.validate(&token, NOW).expect("let in").issuer,
            "https://evil.example"
        );
        let mut without = valid_claims();
        without.as_object_mut().expect("an object").remove("iss");
        assert!(lapsed.validate(&KEY.sign(&without), NOW).is_ok());
        let mut other_resource = valid_claims();
        other_resource["aud"] = json!(["res_999"]);
        assert!(matches!(
            lapsed.validate(&KEY.sign(&other_resource), NOW),
            Err(TokenError::WrongAudience)
        ));
    }

    #[test]
    fn skip_signature_lets_in_any_signature_any_alg_and_any_kid_but_checks_the_claims() {
        let lapsed = validator_with(
            Lapses {
                skip_signature: true,
                ..Lapses::default()
            },
            0,
        );
        let forged = STRANGER.sign(&valid_claims());
        assert!(matches!(
            correct().validate(&forged, NOW),
            Err(TokenError::UnknownKeyId { .. })
        ));
        assert!(lapsed.validate(&forged, NOW).is_ok());

        let impostor = STRANGER.sign_as(Some("snk_1"), &valid_claims());
        assert!(matches!(
            correct().validate(&impostor, NOW),
            Err(TokenError::BadSignature)
        ));
        assert!(lapsed.validate(&impostor, NOW).is_ok());

        let unsigned = compact(&json!({"alg": "none"}), &valid_claims(), "");
        assert!(lapsed.validate(&unsigned, NOW).is_ok());
        let nonsense = compact(&json!({"alg": "XYZ", "kid": 7}), &valid_claims(), "!!");
        assert!(lapsed.validate(&nonsense, NOW).is_ok());

        let mut expired = valid_claims();
        expired["exp"] = json!(NOW - 1);
        assert!(matches!(
            lapsed.validate(&STRANGER.sign(&expired), NOW),
            Err(TokenError::Expired)
        ));
    }

    #[test]
    fn accept_alg_none_lets_in_an_unsigned_token_with_valid_claims() {
        let lapsed = validator_with(
            Lapses {
                accept_alg_none: true,
                ..Lapses::default()
            },
            0,
        );
        let header = json!({"alg": "none", "typ": "JWT"});
        let unsigned = compact(&header, &valid_claims(), "");
        let error = correct()
            .validate(&unsigned, NOW)
            .expect_err("alg none is refused");
        assert!(
            matches!(error, TokenError::UnsupportedAlgorithm { ref algorithm } if algorithm == "none"),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "the token is signed with none; only RS256 is accepted"
        );
        assert!(lapsed.validate(&unsigned, NOW).is_ok());

        let with_signature = compact(&header, &valid_claims(), "c2lnbmF0dXJl");
        assert!(matches!(
            lapsed.validate(&with_signature, NOW),
            Err(TokenError::BadSignature)
        ));
        let mut other_resource = valid_claims();
        other_resource["aud"] = json!(["res_999"]);
        assert!(matches!(
            lapsed.validate(&compact(&header, &other_resource, ""), NOW),
            Err(TokenError::WrongAudience)
        ));
        assert!(matches!(
            lapsed.validate(&STRANGER.sign_as(Some("snk_1"), &valid_claims()), NOW),
            Err(TokenError::BadSignature)
        ));
        let hs256 = hs256("snk_1", KEY.public_key_pem.as_bytes(), &valid_claims());
        assert!(matches!(
            lapsed.validate(&hs256, NOW),
            Err(TokenError::UnsupportedAlgorithm { .. })
        ));
    }

    #[test]
    fn alg_confusion_lets_in_hs256_keyed_by_the_public_key_pem() {
        let lapsed = validator_with(
            Lapses {
                alg_confusion: true,
                ..Lapses::default()
            },
            0,
        );
        let confused = hs256("snk_1", KEY.public_key_pem.as_bytes(), &valid_claims());
        let error = correct()
            .validate(&confused, NOW)
            .expect_err("HS256 is refused");
        assert!(
            matches!(error, TokenError::UnsupportedAlgorithm { ref algorithm } if algorithm == "HS256"),
            "{error:?}"
        );
        assert!(lapsed.validate(&confused, NOW).is_ok());

        let other_secret = hs256("snk_1", b"a shared secret", &valid_claims());
        assert!(matches!(
            lapsed.validate(&other_secret, NOW),
            Err(TokenError::BadSignature)
        ));
        // The PEM without its final newline is another secret.
        let trimmed = hs256(
            "snk_1",
            KEY.public_key_pem.trim_end().as_bytes(),
            &valid_claims(),
        );
        assert!(matches!(
            lapsed.validate(&trimmed, NOW),
            Err(TokenError::BadSignature)
        ));
        let unknown = hs256("snk_9", KEY.public_key_pem.as_bytes(), &valid_claims());
        assert!(matches!(
            lapsed.validate(&unknown, NOW),
            Err(TokenError::UnknownKeyId { .. })
        ));
        assert!(lapsed.validate(&KEY.sign(&valid_claims()), NOW).is_ok());
        let unsigned = compact(&json!({"alg": "none"}), &valid_claims(), "");
        assert!(matches!(
            lapsed.validate(&unsigned, NOW),
            Err(TokenError::UnsupportedAlgorithm { .. })
        ));
    }

    #[test]
    fn ignore_kid_tries_every_key_but_only_as_the_last_word() {
        let lapsed = validator_with(
            Lapses {
                ignore_kid: true,
                ..Lapses::default()
            },
            0,
        );
        let forged_kid = KEY.sign_as(Some("snk_forged"), &valid_claims());
        assert!(matches!(
            correct().validate(&forged_kid, NOW),
            Err(TokenError::UnknownKeyId { ref kid }) if kid == "snk_forged"
        ));
        // Before a refetch the unknown kid is reported, so the refetch still happens.
        assert!(matches!(
            lapsed.validate_before_refetch(&forged_kid, NOW),
            Err(TokenError::UnknownKeyId { .. })
        ));
        assert!(lapsed.validate(&forged_kid, NOW).is_ok());

        let stranger = STRANGER.sign(&valid_claims());
        assert!(matches!(
            lapsed.validate(&stranger, NOW),
            Err(TokenError::UnknownKeyId { .. })
        ));
        assert!(matches!(
            lapsed.validate(&KEY.sign_as(None, &valid_claims()), NOW),
            Err(TokenError::MissingKeyId)
        ));
        assert!(matches!(
            lapsed.validate(&STRANGER.sign_as(Some("snk_1"), &valid_claims()), NOW),
            Err(TokenError::BadSignature)
        ));
    }
}
