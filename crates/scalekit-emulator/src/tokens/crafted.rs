//! Access tokens made on demand (`POST /_emulator/tokens`): in exactly the shape of a real
//! flow's token ([`AccessTokenClaims`], as `TokenMinter::mint_for_grant` fills it), or with one
//! deliberate [`Defect`], so that an MCP server's token checks can be tested one at a time.
//!
//! Pure: the caller builds the claims of a valid token and supplies whatever a defect needs (a
//! foreign audience, an unknown `kid`, another `sub`); [`craft`] breaks the token as asked and
//! signs it.

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::{Map, Value};

use super::AccessTokenClaims;
use crate::keys::{KeyError, Signer};
use crate::types::AccessToken;

/// The issuer of a `wrong_issuer` token: another Scalekit environment.
pub const WRONG_ISSUER: &str = "https://another-environment.scalekit.dev";

/// The audience of a `wrong_audience` token when the environment has one resource only:
/// `[Server URL, res_…]` of an MCP server that is not configured.
pub const FOREIGN_AUDIENCE: [&str; 2] = [
    "https://another-mcp-server.example/mcp",
    "res_10000000000000001",
];

/// How far `expired`, `not_yet_valid` and `issued_in_future` move the times, in seconds: well
/// past the leeway of common verifiers (PyJWT 0, jose 0, jsonwebtoken 60).
pub const TIME_SKEW_SECS: u64 = 600;

/// The name of a defect, as the control API spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefectKind {
    /// `wrong_audience`.
    WrongAudience,
    /// `wrong_issuer`.
    WrongIssuer,
    /// `expired`.
    Expired,
    /// `not_yet_valid`.
    NotYetValid,
    /// `issued_in_future`.
    IssuedInFuture,
    /// `alg_none`.
    AlgNone,
    /// `hs256_public_key`.
    Hs256PublicKey,
    /// `unknown_kid`.
    UnknownKid,
    /// `altered_payload`.
    AlteredPayload,
}

impl DefectKind {
    /// Every defect, in the order the control API lists them.
    pub const ALL: [DefectKind; 9] = [
        DefectKind::WrongAudience,
        DefectKind::WrongIssuer,
        DefectKind::Expired,
        DefectKind::NotYetValid,
        DefectKind::IssuedInFuture,
        DefectKind::AlgNone,
        DefectKind::Hs256PublicKey,
        DefectKind::UnknownKid,
        DefectKind::AlteredPayload,
    ];

    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            DefectKind::WrongAudience => "wrong_audience",
            DefectKind::WrongIssuer => "wrong_issuer",
            DefectKind::Expired => "expired",
            DefectKind::NotYetValid => "not_yet_valid",
            DefectKind::IssuedInFuture => "issued_in_future",
            DefectKind::AlgNone => "alg_none",
            DefectKind::Hs256PublicKey => "hs256_public_key",
            DefectKind::UnknownKid => "unknown_kid",
            DefectKind::AlteredPayload => "altered_payload",
        }
    }

    /// The defect named `name`, exactly as [`DefectKind::name`] spells it.
    pub fn parse(name: &str) -> Option<DefectKind> {
        DefectKind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// One deliberate defect, with what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Defect {
    /// `aud` replaced by this audience (another resource's `[Server URL, res_…]`).
    WrongAudience(Vec<String>),
    /// `iss` = [`WRONG_ISSUER`]; still signed by the real key.
    WrongIssuer,
    /// `exp = now - 600`, `iat = nbf = exp - lifetime`.
    Expired,
    /// `nbf = now + 600`, `iat = now`, `exp = nbf + lifetime`.
    NotYetValid,
    /// `iat = now + 600`, `nbf = now`, `exp = now + lifetime`.
    IssuedInFuture,
    /// Header `{"typ":"JWT","alg":"none"}` without `kid`, and an empty signature.
    AlgNone,
    /// Header `{"typ":"JWT","alg":"HS256","kid":<signing kid>}`, HMAC-SHA256 keyed with the bytes
    /// of the signing key's [`Signer::public_key_pem`] (algorithm confusion).
    Hs256PublicKey,
    /// A real RS256 signature, but the header's `kid` is this one, which is not published.
    UnknownKid(String),
    /// Signed as usual, then the payload replaced by the same claims with `sub` set to this
    /// value, so that the signature no longer matches.
    AlteredPayload {
        /// The `sub` the altered payload carries.
        sub: String,
    },
}

impl Defect {
    /// Its name.
    pub fn kind(&self) -> DefectKind {
        match self {
            Defect::WrongAudience(_) => DefectKind::WrongAudience,
            Defect::WrongIssuer => DefectKind::WrongIssuer,
            Defect::Expired => DefectKind::Expired,
            Defect::NotYetValid => DefectKind::NotYetValid,
            Defect::IssuedInFuture => DefectKind::IssuedInFuture,
            Defect::AlgNone => DefectKind::AlgNone,
            Defect::Hs256PublicKey => DefectKind::Hs256PublicKey,
            Defect::UnknownKid(_) => DefectKind::UnknownKid,
            Defect::AlteredPayload { .. } => DefectKind::AlteredPayload,
        }
    }
}

/// A JOSE header in jsonwebtoken's field order (`typ`, `alg`, `kid`), so that a token without a
/// header defect is byte for byte what [`Signer::sign`] makes.
#[derive(Debug, Serialize)]
struct JwtHeader<'a> {
    typ: &'static str,
    alg: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kid: Option<&'a str>,
}

/// A token and what it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct CraftedToken {
    /// The compact JWS.
    pub token: AccessToken,
    /// Its header.
    pub header: Map<String, Value>,
    /// Its payload (with `altered_payload`, the altered one).
    pub claims: Map<String, Value>,
}

/// Makes the token: `claims` are those of a valid token issued at `claims.iat` (now) for
/// `claims.exp - claims.iat` seconds; `defect` breaks them or the signature as it says; then
/// `extra_claims` are merged over the result, last, so that they can add or override anything
/// (even what the defect set). Without a defect the token is what [`Signer::sign`] makes of the
/// same claims.
pub fn craft(
    signer: &Signer,
    claims: &AccessTokenClaims,
    extra_claims: &Map<String, Value>,
    defect: Option<&Defect>,
) -> Result<CraftedToken, KeyError> {
    let now = claims.iat;
    let lifetime = claims.exp.saturating_sub(claims.iat);
    let mut standard = claims.clone();
    match defect {
        Some(Defect::WrongAudience(audience)) => standard.aud.clone_from(audience),
        Some(Defect::WrongIssuer) => WRONG_ISSUER.clone_into(&mut standard.iss),
        Some(Defect::Expired) => {
            standard.exp = now.saturating_sub(TIME_SKEW_SECS);
            standard.iat = standard.exp.saturating_sub(lifetime);
            standard.nbf = standard.iat;
        }
        Some(Defect::NotYetValid) => {
            // Only `nbf` is in the future (`iat` is now), so that a verifier checking `iat`
            // but not `nbf` is caught here, and one checking `nbf` but not `iat` by
            // `issued_in_future`.
            standard.iat = now;
            standard.nbf = now.saturating_add(TIME_SKEW_SECS);
            standard.exp = standard.nbf.saturating_add(lifetime);
        }
        Some(Defect::IssuedInFuture) => {
            standard.iat = now.saturating_add(TIME_SKEW_SECS);
            standard.nbf = now;
            standard.exp = now.saturating_add(lifetime);
        }
        _ => {}
    }
    let (payload_json, mut payload) = encode_payload(&standard, extra_claims)?;
    let header = match defect {
        Some(Defect::AlgNone) => JwtHeader {
            typ: "JWT",
            alg: "none",
            kid: None,
        },
        Some(Defect::Hs256PublicKey) => JwtHeader {
            typ: "JWT",
            alg: "HS256",
            kid: Some(signer.kid()),
        },
        Some(Defect::UnknownKid(kid)) => JwtHeader {
            typ: "JWT",
            alg: "RS256",
            kid: Some(kid),
        },
        _ => JwtHeader {
            typ: "JWT",
            alg: "RS256",
            kid: Some(signer.kid()),
        },
    };
    let header_value = serde_json::to_value(&header).map_err(KeyError::Claims)?;
    let mut token = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).map_err(KeyError::Claims)?);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload_json, &mut token);
    let signature = match defect {
        Some(Defect::AlgNone) => Vec::new(),
        Some(Defect::Hs256PublicKey) => {
            let secret = signer.public_key_pem()?;
            let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
            hmac::sign(&key, token.as_bytes()).as_ref().to_vec()
        }
        _ => signer.signature(token.as_bytes())?,
    };
    if let Some(Defect::AlteredPayload { sub }) = defect {
        standard.sub.clone_from(sub);
        let mut altered_extra = extra_claims.clone();
        if altered_extra.contains_key("sub") {
            altered_extra.insert("sub".to_owned(), Value::String(sub.clone()));
        }
        let (altered_json, altered) = encode_payload(&standard, &altered_extra)?;
        payload = altered;
        let header_end = token.find('.').unwrap_or(token.len());
        token.truncate(header_end + 1);
        URL_SAFE_NO_PAD.encode_string(altered_json, &mut token);
    }
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
    let header = match header_value {
        Value::Object(header) => header,
        _ => Map::new(),
    };
    Ok(CraftedToken {
        token: AccessToken::new(token),
        header,
        claims: payload,
    })
}

/// The payload's JSON and the same as a map. Without extra claims the JSON is the claim struct's
/// own (its field order, as in a real flow's token); with them, the merged map's.
fn encode_payload(
    standard: &AccessTokenClaims,
    extra_claims: &Map<String, Value>,
) -> Result<(Vec<u8>, Map<String, Value>), KeyError> {
    let mut payload = match serde_json::to_value(standard).map_err(KeyError::Claims)? {
        Value::Object(payload) => payload,
        // A struct always serialises as an object.
        _ => Map::new(),
    };
    if extra_claims.is_empty() {
        let json = serde_json::to_vec(standard).map_err(KeyError::Claims)?;
        return Ok((json, payload));
    }
    for (name, value) in extra_claims {
        payload.insert(name.clone(), value.clone());
    }
    let json = serde_json::to_vec(&payload).map_err(KeyError::Claims)?;
    Ok((json, payload))
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    use serde_json::json;

    use super::*;

    const NOW: u64 = 1_800_000_000;
    const LIFETIME: u64 = 3_600;

    fn signer() -> &'static Signer {
        static SIGNER: OnceLock<Signer> = OnceLock::new();
        SIGNER.get_or_init(|| Signer::generate().unwrap())
    }

    fn claims() -> AccessTokenClaims {
        AccessTokenClaims {
            iss: "http://emulator.test".to_owned(),
            aud: vec![
                "http://127.0.0.1:8402/mcp".to_owned(),
                "res_81920374650192839".to_owned(),
            ],
            sub: "usr_100000000000000001".to_owned(),
            xuid: "usr_100000000000000001".to_owned(),
            scope: "openid mcp:read".to_owned(),
            scopes: vec!["openid".to_owned(), "mcp:read".to_owned()],
            client_id: "m2m_100000000000000002".to_owned(),
            jti: "tkn_100000000000000003".to_owned(),
            sid: "ses_100000000000000004".to_owned(),
            iat: NOW,
            nbf: NOW,
            exp: NOW + LIFETIME,
            email: Some("ada@example.com".to_owned()),
            custom_claims: None,
            oid: None,
            roles: Vec::new(),
        }
    }

    /// The claims of a valid token as JSON.
    fn valid() -> Value {
        serde_json::to_value(claims()).unwrap()
    }

    fn make(defect: Option<&Defect>) -> CraftedToken {
        craft(signer(), &claims(), &Map::new(), defect).unwrap()
    }

    /// The header and payload as decoded from the token itself, and the signature's bytes.
    fn parts(token: &str) -> (Value, Value, Vec<u8>) {
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "{token}");
        let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).unwrap();
        (
            serde_json::from_slice(&decode(parts[0])).unwrap(),
            serde_json::from_slice(&decode(parts[1])).unwrap(),
            decode(parts[2]),
        )
    }

    /// Whether the RS256 signature verifies with the signer's public key (times, issuer and
    /// audience are not looked at).
    fn rs256_verifies(token: &str) -> bool {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<Value>(token, signer().decoding_key(), &validation).is_ok()
    }

    fn with(changes: Value) -> Value {
        let mut expected = valid();
        for (name, value) in changes.as_object().unwrap() {
            expected[name] = value.clone();
        }
        expected
    }

    /// The token, its header and payload as decoded, and the reported ones agree.
    fn consistent(crafted: &CraftedToken) -> (Value, Value, Vec<u8>) {
        let (header, payload, signature) = parts(crafted.token.expose());
        assert_eq!(header, Value::Object(crafted.header.clone()));
        assert_eq!(payload, Value::Object(crafted.claims.clone()));
        (header, payload, signature)
    }

    fn standard_header() -> Value {
        json!({"typ": "JWT", "alg": "RS256", "kid": signer().kid()})
    }

    #[test]
    fn defect_names_round_trip() {
        for kind in DefectKind::ALL {
            assert_eq!(DefectKind::parse(kind.name()), Some(kind));
        }
        assert_eq!(DefectKind::parse("Expired"), None);
    }

    #[test]
    fn without_a_defect_the_token_is_what_the_signer_makes_of_the_same_claims() {
        let crafted = make(None);
        assert_eq!(crafted.token.expose(), signer().sign(&claims()).unwrap());
        let (header, payload, _) = consistent(&crafted);
        assert_eq!(header, standard_header());
        assert_eq!(payload, valid());
        assert!(rs256_verifies(crafted.token.expose()));
    }

    #[test]
    fn extra_claims_are_merged_last_and_signed() {
        let extra =
            json!({"roles": ["admin"], "oid": "org_1", "custom_claims": {"plan": "pro"}, "exp": 5});
        let crafted = craft(
            signer(),
            &claims(),
            extra.as_object().unwrap(),
            Some(&Defect::Expired),
        )
        .unwrap();
        let (_, payload, _) = consistent(&crafted);
        let lifetime_end = NOW - TIME_SKEW_SECS;
        assert_eq!(
            payload,
            with(json!({
                "roles": ["admin"], "oid": "org_1", "custom_claims": {"plan": "pro"},
                "exp": 5, "iat": lifetime_end - LIFETIME, "nbf": lifetime_end - LIFETIME,
            }))
        );
        assert!(rs256_verifies(crafted.token.expose()));
    }

    #[test]
    fn wrong_audience_changes_only_aud() {
        let audience = vec!["http://127.0.0.1:8502/mcp".to_owned(), "res_2".to_owned()];
        let crafted = make(Some(&Defect::WrongAudience(audience.clone())));
        let (header, payload, _) = consistent(&crafted);
        assert_eq!(header, standard_header());
        assert_eq!(payload, with(json!({"aud": audience})));
        assert!(rs256_verifies(crafted.token.expose()));
    }

    #[test]
    fn wrong_issuer_changes_only_iss_and_is_signed_by_the_real_key() {
        let crafted = make(Some(&Defect::WrongIssuer));
        let (header, payload, _) = consistent(&crafted);
        assert_eq!(header, standard_header());
        assert_eq!(
            payload,
            with(json!({"iss": "https://another-environment.scalekit.dev"}))
        );
        assert!(rs256_verifies(crafted.token.expose()));
    }

    #[test]
    fn expired_ended_ten_minutes_ago_after_a_full_lifetime() {
        let crafted = make(Some(&Defect::Expired));
        let (header, payload, _) = consistent(&crafted);
        assert_eq!(header, standard_header());
        let exp = NOW - 600;
        assert_eq!(
            payload,
            with(json!({"exp": exp, "iat": exp - LIFETIME, "nbf": exp - LIFETIME}))
        );
        assert!(rs256_verifies(crafted.token.expose()));
    }

    #[test]
    fn not_yet_valid_starts_in_ten_minutes() {
        let crafted = make(Some(&Defect::NotYetValid));
        let (header, payload, _) = consistent(&crafted);
        assert_eq!(header, standard_header());
        let nbf = NOW + 600;
        assert_eq!(
            payload,
            with(json!({"iat": NOW, "nbf": nbf, "exp": nbf + LIFETIME}))
        );
        assert!(rs256_verifies(crafted.token.expose()));
    }

    #[test]
    fn issued_in_future_moves_only_iat() {
        let crafted = make(Some(&Defect::IssuedInFuture));
        let (header, payload, _) = consistent(&crafted);
        assert_eq!(header, standard_header());
        assert_eq!(
            payload,
            with(json!({"iat": NOW + 600, "nbf": NOW, "exp": NOW + LIFETIME}))
        );
        assert!(rs256_verifies(crafted.token.expose()));
    }

    #[test]
    fn alg_none_has_no_kid_and_an_empty_signature() {
        let crafted = make(Some(&Defect::AlgNone));
        assert!(
            crafted.token.expose().ends_with('.'),
            "{}",
            crafted.token.expose()
        );
        let (header, payload, signature) = consistent(&crafted);
        assert_eq!(header, json!({"typ": "JWT", "alg": "none"}));
        assert_eq!(
            crafted.token.expose().split('.').next().unwrap(),
            URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"none"}"#)
        );
        assert_eq!(payload, valid());
        assert!(signature.is_empty());
        assert!(!rs256_verifies(crafted.token.expose()));
    }

    #[test]
    fn hs256_public_key_is_an_hmac_keyed_with_the_public_key_pem() {
        let crafted = make(Some(&Defect::Hs256PublicKey));
        let (header, payload, signature) = consistent(&crafted);
        assert_eq!(
            header,
            json!({"typ": "JWT", "alg": "HS256", "kid": signer().kid()})
        );
        assert_eq!(payload, valid());
        assert_eq!(signature.len(), 32);
        // A verifier that takes the PEM text as the HMAC secret accepts it.
        let secret = signer().public_key_pem().unwrap();
        assert!(secret.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(secret.ends_with("\n-----END PUBLIC KEY-----\n"));
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let decoded = jsonwebtoken::decode::<Value>(
            crafted.token.expose(),
            &DecodingKey::from_secret(secret.as_bytes()),
            &validation,
        )
        .unwrap();
        assert_eq!(decoded.claims, valid());
        assert!(!rs256_verifies(crafted.token.expose()));
    }

    #[test]
    fn unknown_kid_is_a_real_signature_under_another_kid() {
        let crafted = make(Some(&Defect::UnknownKid(
            "snk_100000000000000009".to_owned(),
        )));
        let (header, payload, _) = consistent(&crafted);
        assert_eq!(
            header,
            json!({"typ": "JWT", "alg": "RS256", "kid": "snk_100000000000000009"})
        );
        assert_eq!(payload, valid());
        assert!(rs256_verifies(crafted.token.expose()));
    }

    #[test]
    fn altered_payload_carries_another_sub_under_the_original_signature() {
        let crafted = make(Some(&Defect::AlteredPayload {
            sub: "usr_100000000000000008".to_owned(),
        }));
        let (header, payload, signature) = consistent(&crafted);
        assert_eq!(header, standard_header());
        assert_eq!(payload, with(json!({"sub": "usr_100000000000000008"})));
        assert!(!rs256_verifies(crafted.token.expose()));
        // The signature is the one of the unaltered token.
        let original = signer().sign(&claims()).unwrap();
        let (_, _, original_signature) = parts(&original);
        assert_eq!(signature, original_signature);
    }
}
