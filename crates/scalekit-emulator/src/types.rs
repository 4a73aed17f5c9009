//! One newtype per protocol noun (STYLE §4/§5). Secrets print `[redacted]` in `Debug` and are
//! compared in constant time.
//!
//! One secret design for the whole emulator: [`scalekit_wire::Secret`] (redacted `Debug`,
//! constant-time equality, hashable, `Clone`, serde) is the only type that holds a secret, and the
//! secret nouns here are newtypes over it, so that a code cannot be passed where a refresh token
//! is expected while redaction and comparison live in one place. They are `Clone`, unlike the
//! single-use values of STYLE §4: the server keeps what it hands out (a code is both the key of
//! its record and the redirect's value; a refresh token is the key of its record, an entry of its
//! grant, a store row and the token response's field), and a type without `Clone` only forced
//! those copies through `expose()`, out of the type system's sight.

use std::fmt;

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use scalekit_wire::Secret;
use serde::{Deserialize, Serialize};
use url::Url;

/// Defines a plain (non-secret) string newtype.
macro_rules! string_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a value already known to be well formed.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The value as sent on the wire.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(&self.0)
            }
        }
    };
}

/// Defines a secret newtype over [`Secret`]: `Debug` prints `Name([redacted])`, equality is
/// constant-time, and the value travels as a plain string on the wire.
macro_rules! secret_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Secret);

        impl $name {
            /// Wraps a secret value.
            pub fn new(value: impl Into<String>) -> Self {
                Self(Secret::new(value))
            }

            /// The secret itself, for the one place that sends or stores it.
            pub fn expose(&self) -> &str {
                self.0.expose()
            }

            /// The value as the one secret type (what the store keeps).
            pub fn as_secret(&self) -> &Secret {
                &self.0
            }
        }

        impl From<Secret> for $name {
            fn from(secret: Secret) -> Self {
                Self(secret)
            }
        }

        /// A map keyed by this noun is looked up by a presented [`Secret`], compared in constant
        /// time (the derived `Hash` hashes the inner secret alone, as [`Secret`]'s does).
        impl std::borrow::Borrow<Secret> for $name {
            fn borrow(&self) -> &Secret {
                &self.0
            }
        }
    };
}

string_newtype!(
    /// An OAuth client id: `m2m_…` for DCR clients, any string for pre-registered ones.
    ClientId
);
string_newtype!(
    /// The client's own `state`, echoed back on the redirect.
    ClientState
);
string_newtype!(
    /// `lri_…`: the login request handed to "Your App".
    LoginRequestId
);
string_newtype!(
    /// The `state` Scalekit mints for the login endpoint and expects back on `partner:callback`.
    /// Unguessable, but not secret from the browser that carries it.
    LoginState
);
string_newtype!(
    /// The S256 `code_challenge` (RFC 7636 §4.2).
    PkceChallenge
);
string_newtype!(
    /// `conn_…`.
    ConnectionId
);
string_newtype!(
    /// `res_…`.
    ResourceId
);
string_newtype!(
    /// `req_…`: the answer to the user-details call.
    AuthRequestId
);
string_newtype!(
    /// `usr_…`: the Scalekit user minted per (connection, posted `sub`).
    UserId
);
string_newtype!(
    /// `org_…`: minted per (connection, `organization_external_id`).
    OrganizationId
);
string_newtype!(
    /// `ses_…`: one per completed sign-in.
    SessionId
);
secret_newtype!(
    /// The id of a pending consent page: an unguessable secret in the consent form, and all it
    /// takes to decide the consent.
    ConsentId
);
secret_newtype!(
    /// A single-use authorization code.
    AuthorizationCode
);
secret_newtype!(
    /// A refresh token, rotated on every use.
    RefreshToken
);
secret_newtype!(
    /// The PKCE `code_verifier` (RFC 7636 §4.1), well formed.
    PkceVerifier
);
secret_newtype!(
    /// An access token (a signed JWT) in a token response.
    AccessToken
);
secret_newtype!(
    /// An ID token (a signed JWT) in a token response.
    IdToken
);
string_newtype!(
    /// The id of a trusted identity provider (`trusted_idps.id`): its issuer is
    /// `{env}/_idp/{id}`.
    IdpId
);
secret_newtype!(
    /// An identity assertion (ID-JAG, a signed JWT): presented with the `jwt-bearer` grant, and
    /// a bearer credential until it is redeemed.
    Assertion
);
secret_newtype!(
    /// An ID token of an emulated identity provider (the RFC 8693 subject token).
    IdpIdToken
);
secret_newtype!(
    /// An agent's client secret, as minted: shown once, when the agent is created, and then kept
    /// only as its [`ClientSecretDigest`].
    ClientSecret
);

/// The SHA-256 of a client secret: what the emulator keeps of an agent's secret, in memory and in
/// the store, so that neither holds a secret it did not need to keep. A plain hash is enough for
/// the secrets the emulator mints (256 random bits); a fixture's secret is in its file anyway.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ClientSecretDigest([u8; 32]);

impl ClientSecretDigest {
    /// The digest of `secret`.
    pub fn of(secret: &str) -> ClientSecretDigest {
        let hashed = digest::digest(&digest::SHA256, secret.as_bytes());
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(hashed.as_ref());
        ClientSecretDigest(bytes)
    }

    /// Whether `presented` hashes to this digest; the digests are compared in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        constant_time_eq(&Self::of(presented).0, &self.0)
    }

    /// Lowercase hex, as the store keeps it.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// Parses [`ClientSecretDigest::to_hex`]; `None` for anything else.
    pub fn from_hex(hex: &str) -> Option<ClientSecretDigest> {
        if hex.len() != 64 || !hex.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[index * 2..index * 2 + 2], 16).ok()?;
        }
        Some(ClientSecretDigest(bytes))
    }
}

/// A digest says nothing useful in a log and is not printed.
impl fmt::Debug for ClientSecretDigest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("ClientSecretDigest([redacted])")
    }
}

impl PkceVerifier {
    /// Checks the RFC 7636 §4.1 grammar: 43–128 characters of `[A-Za-z0-9-._~]`.
    pub fn parse(value: &str) -> Option<PkceVerifier> {
        let well_formed = (43..=128).contains(&value.len())
            && value.bytes().all(|byte| {
                byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
            });
        well_formed.then(|| PkceVerifier::new(value))
    }
}

/// `BASE64URL(SHA256(ASCII(code_verifier)))` (RFC 7636 §4.2).
pub fn pkce_s256(verifier: &PkceVerifier) -> PkceChallenge {
    let hash = digest::digest(&digest::SHA256, verifier.expose().as_bytes());
    PkceChallenge(URL_SAFE_NO_PAD.encode(hash.as_ref()))
}

/// True when the verifier hashes to the challenge; compared in constant time.
pub fn pkce_verify(verifier: &PkceVerifier, challenge: &PkceChallenge) -> bool {
    constant_time_eq(pkce_s256(verifier).0.as_bytes(), challenge.0.as_bytes())
}

/// A redirect URI as the client sent it (absolute, no fragment: RFC 6749 §3.1.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct RedirectUri(String);

impl RedirectUri {
    /// Parses an absolute URI without a fragment.
    pub fn parse(value: &str) -> Option<RedirectUri> {
        let url = Url::parse(value).ok()?;
        if url.fragment().is_some() || url.cannot_be_a_base() {
            return None;
        }
        Some(RedirectUri(value.to_owned()))
    }

    /// The URI exactly as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URI as a `Url`, for appending parameters.
    pub fn to_url(&self) -> Option<Url> {
        Url::parse(&self.0).ok()
    }

    /// Whether this URI matches a registered one: byte for byte, except that for loopback `http`
    /// redirect URIs (`127.0.0.1`, `localhost`, `[::1]`) the port may differ (RFC 8252 §7.3).
    pub fn matches_registered(&self, registered: &str) -> bool {
        if self.0 == registered {
            return true;
        }
        let (Ok(presented), Ok(registered)) = (Url::parse(&self.0), Url::parse(registered)) else {
            return false;
        };
        if !is_loopback_http(&presented) || !is_loopback_http(&registered) {
            return false;
        }
        let (mut presented, mut registered) = (presented, registered);
        // Setting the port cannot fail on an http URL with a host.
        if presented.set_port(None).is_err() || registered.set_port(None).is_err() {
            return false;
        }
        presented == registered
    }

    /// The host shown on the consent page.
    pub fn host(&self) -> String {
        Url::parse(&self.0)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// `http://127.0.0.1`, `http://localhost` or `http://[::1]`.
pub fn is_loopback_http(url: &Url) -> bool {
    url.scheme() == "http" && matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"))
}

/// The OpenID Connect and OAuth scopes (OIDC Core §5.4 and §11): they ask for an ID token, its
/// profile claims and a refresh token, and are not permissions of the environment, so neither
/// Scalekit's scope-name grammar nor the intersection with a user's permissions applies to them.
pub const PROTOCOL_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// Whether `scope` is one of [`PROTOCOL_SCOPES`].
pub fn is_protocol_scope(scope: &str) -> bool {
    PROTOCOL_SCOPES.contains(&scope)
}

/// An ordered, de-duplicated set of scopes (RFC 6749 §3.3: space-separated).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ScopeSet(Vec<String>);

impl ScopeSet {
    /// Parses a space-separated scope string; empty items are skipped, duplicates dropped.
    pub fn parse(value: &str) -> ScopeSet {
        Self::from_iter(value.split(' ').filter(|scope| !scope.is_empty()))
    }

    /// Whether every scope here is in `allowed`.
    pub fn is_subset_of(&self, allowed: &[String]) -> bool {
        self.0.iter().all(|scope| allowed.contains(scope))
    }

    /// The scopes not in `allowed`.
    pub fn outside_of(&self, allowed: &[String]) -> Vec<&str> {
        self.0
            .iter()
            .filter(|scope| !allowed.contains(scope))
            .map(String::as_str)
            .collect()
    }

    /// Whether `scope` is in the set.
    pub fn contains(&self, scope: &str) -> bool {
        self.0.iter().any(|each| each == scope)
    }

    /// The scopes in order.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// Whether no scope was asked for.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The space-separated form.
    pub fn to_space_separated(&self) -> String {
        self.0.join(" ")
    }
}

impl<'a> FromIterator<&'a str> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = &'a str>>(items: I) -> Self {
        let mut scopes: Vec<String> = Vec::new();
        for scope in items {
            if !scopes.iter().any(|each| each == scope) {
                scopes.push(scope.to_owned());
            }
        }
        ScopeSet(scopes)
    }
}

/// True when both slices are equal, without an early exit on the first difference.
fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(left, right).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_vector() {
        let verifier = PkceVerifier::parse("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk").unwrap();
        assert_eq!(
            pkce_s256(&verifier).as_str(),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(pkce_verify(
            &verifier,
            &PkceChallenge::new("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
        ));
    }

    #[test]
    fn verifiers_outside_the_grammar_are_refused() {
        assert!(PkceVerifier::parse(&"a".repeat(42)).is_none());
        assert!(PkceVerifier::parse(&"a".repeat(43)).is_some());
        assert!(PkceVerifier::parse(&"a".repeat(128)).is_some());
        assert!(PkceVerifier::parse(&"a".repeat(129)).is_none());
        assert!(PkceVerifier::parse(&format!("{}+", "a".repeat(43))).is_none());
    }

    #[test]
    fn a_secret_digest_matches_its_secret_only_and_round_trips_through_hex() {
        let digest = ClientSecretDigest::of("agent-secret");
        assert!(digest.matches("agent-secret"));
        assert!(!digest.matches("agent-secre"));
        assert!(!digest.matches("agent-secret2"));
        let hex = digest.to_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(ClientSecretDigest::from_hex(&hex), Some(digest));
        assert_eq!(ClientSecretDigest::from_hex("00"), None);
        assert_eq!(ClientSecretDigest::from_hex(&"g".repeat(64)), None);
        assert_eq!(format!("{digest:?}"), "ClientSecretDigest([redacted])");
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let code = AuthorizationCode::new("abc");
        assert_eq!(format!("{code:?}"), "AuthorizationCode([redacted])");
    }

    #[test]
    fn loopback_redirect_uris_match_on_any_port() {
        let presented = RedirectUri::parse("http://127.0.0.1:53124/callback").unwrap();
        assert!(presented.matches_registered("http://127.0.0.1/callback"));
        assert!(presented.matches_registered("http://127.0.0.1:3000/callback"));
        assert!(!presented.matches_registered("http://127.0.0.1:3000/other"));
        assert!(!presented.matches_registered("http://localhost:3000/callback"));
        let ipv6 = RedirectUri::parse("http://[::1]:1/cb").unwrap();
        assert!(ipv6.matches_registered("http://[::1]:2/cb"));
    }

    #[test]
    fn other_redirect_uris_match_exactly() {
        let presented = RedirectUri::parse("https://app.example/cb").unwrap();
        assert!(presented.matches_registered("https://app.example/cb"));
        assert!(!presented.matches_registered("https://app.example:8443/cb"));
        assert!(!presented.matches_registered("https://app.example/cb/"));
        assert!(RedirectUri::parse("https://app.example/cb#frag").is_none());
        assert!(RedirectUri::parse("not a uri").is_none());
    }

    #[test]
    fn scope_sets_keep_order_and_drop_duplicates() {
        let scopes = ScopeSet::parse("openid  mcp:read openid");
        assert_eq!(scopes.as_slice(), ["openid", "mcp:read"]);
        assert_eq!(scopes.to_space_separated(), "openid mcp:read");
        assert!(scopes.is_subset_of(&["mcp:read".into(), "openid".into()]));
        assert_eq!(scopes.outside_of(&["openid".into()]), ["mcp:read"]);
    }
}
