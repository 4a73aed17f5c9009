//! Access-token validation the way resource servers in front of Scalekit do it (scalekit.md §5).
//!
//! [`Validator`] is pure: it checks one JWT against a fixed key set and a fixed [`Policy`] at a
//! given time. [`Authenticator`] owns the IO: it fetches the environment's JWKS (`{env}/keys`),
//! caches it, and refetches at most once per [`JWKS_REFETCH_INTERVAL`] when a token names a key it
//! does not know (key rotation). Nothing here knows about axum.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};
use tokio::time::Instant;
use url::Url;

/// How often an unknown `kid` may trigger a JWKS refetch.
pub const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(10);

/// Why a token was refused. Every variant maps to `error="invalid_token"` (RFC 6750 §3.1); the
/// message is the client-facing `error_description`.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts with a JSON header and payload.
    #[error("the token is not a well-formed JWT")]
    Malformed(#[source] jsonwebtoken::errors::Error),
    /// Anything but RS256, which is all Scalekit signs with.
    #[error("the token is signed with {algorithm:?}; only RS256 is accepted")]
    UnsupportedAlgorithm { algorithm: Algorithm },
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
    /// `iss` is neither the environment URL nor the resource-scoped issuer.
    #[error("the token was issued by an untrusted issuer")]
    WrongIssuer { issuer: String },
    /// `aud` does not contain this server's `res_…` id (RFC 8707 audience binding).
    #[error("the token was not issued for this resource")]
    WrongAudience,
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
    /// The last fetch failed less than [`JWKS_REFETCH_INTERVAL`] ago.
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
    /// Clock tolerance for `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
}

impl Policy {
    /// The policy for a Scalekit environment and one of its resources. `environment_url` is
    /// compared without a trailing slash, and also accepted with one, because `Url` adds it to a
    /// bare origin while Scalekit's `iss` has none.
    pub fn for_environment(environment_url: &Url, resource_id: &str, leeway_secs: u64) -> Policy {
        let environment = environment_url.as_str().trim_end_matches('/').to_owned();
        Policy {
            issuers: vec![
                format!("{environment}/resources/{resource_id}"),
                format!("{environment}/"),
                environment,
            ],
            resource_id: resource_id.to_owned(),
            leeway_secs,
        }
    }
}

/// The claims of a validated access token.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    /// `iss`, one of the policy's issuers.
    pub issuer: String,
    /// `sub`, when present.
    pub subject: Option<String>,
    /// `aud` as a list (a single string becomes one entry).
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

/// The verification keys of an environment, by `kid`.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, DecodingKey>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kids: Vec<&String> = self.keys.keys().collect();
        kids.sort();
        formatter
            .debug_struct("KeySet")
            .field("kids", &kids)
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
            if entry.get("kty").and_then(Value::as_str) != Some("RSA") {
                continue;
            }
            match DecodingKey::from_jwk(&jwk) {
                Ok(key) => {
                    keys.insert(kid, key);
                }
                Err(error) => tracing::debug!(%kid, %error, "skipping an unusable JWKS key"),
            }
        }
        KeySet { keys }
    }

    /// Whether a key with this id is known.
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
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

    /// Validates `token` at `now` (seconds since the epoch): RS256 only, `kid` required and
    /// known, signature, `exp` required and in the future, `nbf` (if any) not in the future, `iss`
    /// one of the policy's issuers, `aud` containing the resource id.
    pub fn validate(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(TokenError::Malformed)?;
        if header.alg != Algorithm::RS256 {
            return Err(TokenError::UnsupportedAlgorithm {
                algorithm: header.alg,
            });
        }
        let kid = header.kid.ok_or(TokenError::MissingKeyId)?;
        let key = self
            .keys
            .keys
            .get(&kid)
            .ok_or(TokenError::UnknownKeyId { kid })?;

        // jsonwebtoken only checks the signature here; the claims are checked below with the
        // injected clock, so tests and the leeway behave the same everywhere.
        let mut signature_only = jsonwebtoken::Validation::new(Algorithm::RS256);
        signature_only.required_spec_claims.clear();
        signature_only.validate_exp = false;
        signature_only.validate_nbf = false;
        signature_only.validate_aud = false;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, &signature_only)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
                _ => TokenError::Malformed(error),
            })?;
        let all = data.claims;

        let expires_at =
            numeric_date(&all, "exp")?.ok_or(TokenError::MissingClaim { claim: "exp" })?;
        let leeway = self.policy.leeway_secs;
        if now >= expires_at.saturating_add(leeway) {
            return Err(TokenError::Expired);
        }
        if let Some(not_before) = numeric_date(&all, "nbf")?
            && not_before > now.saturating_add(leeway)
        {
            return Err(TokenError::NotYetValid);
        }

        let issuer = all
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(TokenError::MissingClaim { claim: "iss" })?
            .to_owned();
        if !self.policy.issuers.contains(&issuer) {
            return Err(TokenError::WrongIssuer { issuer });
        }

        let audience =
            string_or_array(all.get("aud")).ok_or(TokenError::MissingClaim { claim: "aud" })?;
        if !audience.contains(&self.policy.resource_id) {
            return Err(TokenError::WrongAudience);
        }

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

/// Validates tokens with the environment's JWKS, fetched over HTTP and cached.
pub struct Authenticator {
    jwks_url: Url,
    http: reqwest::Client,
    validator: RwLock<Arc<Validator>>,
    refetch: tokio::sync::Mutex<RefetchState>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Authenticator")
            .field("jwks_url", &self.jwks_url.as_str())
            .field("validator", &self.current())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct RefetchState {
    last_attempt: Option<Instant>,
    last_failed: bool,
}

impl Authenticator {
    /// An authenticator that fetches keys from `jwks_url` (`{env}/keys`) lazily, on the first
    /// token it sees.
    pub fn new(policy: Policy, jwks_url: Url, http: reqwest::Client) -> Authenticator {
        Authenticator {
            jwks_url,
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
    /// again, but at most once per [`JWKS_REFETCH_INTERVAL`], so forged `kid`s cannot make this
    /// server hammer the environment.
    pub async fn authenticate(&self, token: &str, now: u64) -> Result<Claims, AuthError> {
        let seen = self.current();
        match seen.validate(token, now) {
            Err(TokenError::UnknownKeyId { .. }) => {}
            other => return other.map_err(AuthError::Token),
        }

        let mut refetch = self.refetch.lock().await;
        let latest = self.current();
        if !Arc::ptr_eq(&latest, &seen) {
            // Another request refreshed the keys while this one waited.
            return latest.validate(token, now).map_err(AuthError::Token);
        }
        if let Some(last_attempt) = refetch.last_attempt
            && last_attempt.elapsed() < JWKS_REFETCH_INTERVAL
        {
            if refetch.last_failed {
                return Err(AuthError::KeysUnavailable(JwksError::BackingOff));
            }
            return latest.validate(token, now).map_err(AuthError::Token);
        }

        refetch.last_attempt = Some(Instant::now());
        let keys = match self.fetch_keys().await {
            Ok(keys) => keys,
            Err(error) => {
                refetch.last_failed = true;
                tracing::warn!(error = %error, source = ?std::error::Error::source(&error), "JWKS fetch failed");
                return Err(AuthError::KeysUnavailable(error));
            }
        };
        refetch.last_failed = false;
        tracing::debug!(?keys, "fetched the JWKS");
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
    use aws_lc_rs::encoding::AsDer;
    use base64::Engine;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::*;

    const NOW: u64 = 1_800_000_000;

    /// A validator trusting one fresh RSA key, and a way to sign claims with that key.
    struct Signer {
        validator: Validator,
        key: EncodingKey,
    }

    impl Signer {
        fn new(leeway_secs: u64) -> Signer {
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
            jwk.common.key_id = Some("snk_1".to_owned());
            let keys = KeySet::from_jwks(&json!({ "keys": [jwk] }));
            let environment = Url::parse("http://127.0.0.1:9000").expect("a valid URL");
            let policy = Policy::for_environment(&environment, "res_1", leeway_secs);
            Signer {
                validator: Validator::new(policy, keys),
                key,
            }
        }

        fn validate(&self, claims: &Value) -> Result<Claims, TokenError> {
            let mut header = Header::new(Algorithm::RS256);
            header.kid = Some("snk_1".to_owned());
            let token = jsonwebtoken::encode(&header, claims, &self.key).expect("a signed token");
            self.validator.validate(&token, NOW)
        }
    }

    fn claims(exp: u64) -> Value {
        json!({"iss": "http://127.0.0.1:9000", "aud": ["res_1"], "sub": "usr_1", "exp": exp})
    }

    #[test]
    fn a_token_expires_at_exp_exactly() {
        let signer = Signer::new(0);
        assert!(matches!(
            signer.validate(&claims(NOW)),
            Err(TokenError::Expired)
        ));
        let valid = signer
            .validate(&claims(NOW + 1))
            .expect("valid one second before exp");
        assert_eq!(valid.subject.as_deref(), Some("usr_1"));
        assert_eq!(valid.expires_at, NOW + 1);
    }

    #[test]
    fn the_leeway_stretches_exp_and_nbf() {
        let signer = Signer::new(30);
        assert!(signer.validate(&claims(NOW - 29)).is_ok());
        assert!(matches!(
            signer.validate(&claims(NOW - 30)),
            Err(TokenError::Expired)
        ));
        let mut early = claims(NOW + 60);
        early["nbf"] = json!(NOW + 30);
        assert!(signer.validate(&early).is_ok());
        early["nbf"] = json!(NOW + 31);
        assert!(matches!(
            signer.validate(&early),
            Err(TokenError::NotYetValid)
        ));
    }

    #[test]
    fn the_environment_issuer_is_accepted_with_a_trailing_slash() {
        let signer = Signer::new(0);
        let mut token = claims(NOW + 60);
        token["iss"] = json!("http://127.0.0.1:9000/");
        assert!(signer.validate(&token).is_ok());
        token["iss"] = json!("http://127.0.0.1:9000/resources/res_2");
        assert!(matches!(
            signer.validate(&token),
            Err(TokenError::WrongIssuer { .. })
        ));
    }

    #[test]
    fn a_token_without_aud_or_iss_is_refused() {
        let signer = Signer::new(0);
        let mut token = claims(NOW + 60);
        token.as_object_mut().expect("an object").remove("aud");
        assert!(matches!(
            signer.validate(&token),
            Err(TokenError::MissingClaim { claim: "aud" })
        ));
        let mut token = claims(NOW + 60);
        token.as_object_mut().expect("an object").remove("iss");
        assert!(matches!(
            signer.validate(&token),
            Err(TokenError::MissingClaim { claim: "iss" })
        ));
    }

    #[test]
    fn scopes_are_the_union_of_the_string_and_the_array() {
        let signer = Signer::new(0);
        let mut token = claims(NOW + 60);
        token["scope"] = json!("a  b");
        token["scopes"] = json!(["b", "c"]);
        let valid = signer.validate(&token).expect("valid");
        assert_eq!(
            valid.scopes.into_iter().collect::<Vec<_>>(),
            vec!["a", "b", "c"]
        );
        token["scope"] = json!(["not", "a", "string"]);
        assert!(matches!(
            signer.validate(&token),
            Err(TokenError::MissingClaim { claim: "scope" })
        ));
    }

    fn policy() -> Policy {
        let environment = Url::parse("http://127.0.0.1:9000").expect("a valid URL");
        Policy::for_environment(&environment, "res_1", 0)
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
    }

    #[test]
    fn a_garbage_token_is_malformed() {
        let validator = Validator::new(policy(), KeySet::default());
        let error = validator
            .validate("not-a-jwt", 0)
            .expect_err("garbage is refused");
        assert!(matches!(error, TokenError::Malformed(_)), "{error:?}");
    }

    #[test]
    fn an_unsigned_token_is_refused_for_its_algorithm() {
        // {"alg":"none","typ":"JWT"} . {"sub":"x"} . (empty signature)
        let token = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4In0.";
        let validator = Validator::new(policy(), KeySet::default());
        let error = validator
            .validate(token, 0)
            .expect_err("alg none is refused");
        // jsonwebtoken cannot even parse `none`, which is just as good.
        assert!(matches!(
            error,
            TokenError::Malformed(_) | TokenError::UnsupportedAlgorithm { .. }
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
}
