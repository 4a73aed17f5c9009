//! The RS256 signing key, its `kid` (`snk_…`) and the JWKS served at `/keys`.

use aws_lc_rs::digest;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use scalekit_wire::{Secret, prefix};
use serde::Serialize;

/// Why a key could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// aws-lc could not generate or export the key.
    #[error("cannot generate an RSA-2048 signing key")]
    Generate,
    /// The PEM or the JWK derived from it was refused.
    #[error("invalid signing key")]
    Invalid(#[source] jsonwebtoken::errors::Error),
    /// The PEM is not an RSA private key aws-lc accepts.
    #[error("the signing key PEM is not an RSA private key (PKCS#8 or PKCS#1)")]
    Pem,
    /// The claims could not be serialised.
    #[error("cannot serialise the token's claims")]
    Claims(#[source] serde_json::Error),
    /// aws-lc refused to sign.
    #[error("cannot sign a token")]
    Sign,
}

/// The environment's signing key.
///
/// Tokens are signed with an aws-lc key pair parsed once, and the encoded header is made once:
/// jsonwebtoken's `encode` parses and checks the DER key on every signature, which cost most of a
/// flow's CPU time (`cargo xtask bench`, docs/performance.md). The tokens are byte-for-byte what
/// jsonwebtoken would make (RSASSA-PKCS1-v1_5 is deterministic; a test checks it).
pub struct Signer {
    kid: String,
    key_pair: RsaKeyPair,
    random: SystemRandom,
    /// `base64url({"typ":"JWT","alg":"RS256","kid":…}) + "."`.
    encoded_header: String,
    decoding: DecodingKey,
    jwk: Jwk,
    pem: Secret,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Signer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A fresh RSA-2048 key (aws-lc exports PKCS#8 only, hence the "PRIVATE KEY" PEM).
    pub fn generate() -> Result<Signer, KeyError> {
        let key_pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError::Generate)?;
        let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der<'static>>::as_der(&key_pair)
            .map_err(|_| KeyError::Generate)?;
        Self::from_pem(&pkcs8_pem(der.as_ref()))
    }

    /// A key from a PKCS#8 "PRIVATE KEY" (or PKCS#1 "RSA PRIVATE KEY") PEM, so a key can be kept
    /// across restarts. The `kid` is derived from the public key, so it is stable too.
    pub fn from_pem(pem: &str) -> Result<Signer, KeyError> {
        let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(KeyError::Invalid)?;
        let mut jwk =
            Jwk::from_encoding_key(&encoding, Algorithm::RS256).map_err(KeyError::Invalid)?;
        let kid = derive_kid(&jwk);
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_id = Some(kid.clone());
        let decoding = DecodingKey::from_jwk(&jwk).map_err(KeyError::Invalid)?;
        let key_pair = rsa_key_pair(pem)?;
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.clone());
        let mut encoded_header =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).map_err(KeyError::Claims)?);
        encoded_header.push('.');
        Ok(Signer {
            kid,
            key_pair,
            random: SystemRandom::new(),
            encoded_header,
            decoding,
            jwk,
            pem: Secret::new(pem),
        })
    }

    /// `snk_…`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The private key as PEM, for persisting it.
    pub fn private_key_pem(&self) -> &Secret {
        &self.pem
    }

    /// The JWKS: one RSA key with `use: sig`, `alg: RS256` and the `kid`.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: vec![self.jwk.clone()],
        }
    }

    /// The key that verifies this signer's tokens.
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }

    /// Signs claims as an RS256 JWT with `typ: JWT` and the `kid`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, KeyError> {
        let mut token = self.encoded_header.clone();
        URL_SAFE_NO_PAD.encode_string(
            serde_json::to_vec(claims).map_err(KeyError::Claims)?,
            &mut token,
        );
        let mut signature = vec![0u8; self.key_pair.public_modulus_len()];
        self.key_pair
            .sign(
                &RSA_PKCS1_SHA256,
                &self.random,
                token.as_bytes(),
                &mut signature,
            )
            .map_err(|_| KeyError::Sign)?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
        Ok(token)
    }
}

/// The aws-lc key pair of a PKCS#8 ("PRIVATE KEY") or PKCS#1 ("RSA PRIVATE KEY") PEM; lines
/// outside the armour (comments) are ignored.
fn rsa_key_pair(pem: &str) -> Result<RsaKeyPair, KeyError> {
    let mut label = None;
    let mut body = String::new();
    for line in pem.lines().map(str::trim) {
        if let Some(begin) = line.strip_prefix("-----BEGIN ") {
            label = Some(begin.trim_end_matches('-').to_owned());
        } else if line.starts_with("-----END ") {
            break;
        } else if label.is_some() {
            body.push_str(line);
        }
    }
    let der = STANDARD.decode(body).map_err(|_| KeyError::Pem)?;
    match label.as_deref() {
        Some("PRIVATE KEY") => RsaKeyPair::from_pkcs8(&der).map_err(|_| KeyError::Pem),
        Some("RSA PRIVATE KEY") => RsaKeyPair::from_der(&der).map_err(|_| KeyError::Pem),
        _ => Err(KeyError::Pem),
    }
}

fn pkcs8_pem(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

/// `snk_` + 18 digits taken from the SHA-256 of the public JWK, so one key always has one `kid`.
fn derive_kid(jwk: &Jwk) -> String {
    let public = serde_json::to_vec(&jwk.algorithm).unwrap_or_default();
    let hash = digest::digest(&digest::SHA256, &public);
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&hash.as_ref()[..8]);
    let digits = 100_000_000_000_000_000 + u64::from_le_bytes(bytes) % 900_000_000_000_000_000;
    format!("{}{digits}", prefix::SIGNING_KEY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_round_trips_through_pem_with_the_same_kid() {
        let signer = Signer::generate().unwrap();
        assert!(signer.kid().starts_with("snk_"));
        let again = Signer::from_pem(signer.private_key_pem().expose()).unwrap();
        assert_eq!(again.kid(), signer.kid());
        let jwks = serde_json::to_value(signer.jwks()).unwrap();
        let key = &jwks["keys"][0];
        assert_eq!(key["kty"], "RSA");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["alg"], "RS256");
        assert_eq!(key["e"], "AQAB");
        assert_eq!(key["kid"], signer.kid());
        assert_eq!(
            format!("{signer:?}"),
            format!("Signer {{ kid: {:?}, .. }}", signer.kid())
        );
    }

    #[test]
    fn tokens_are_byte_for_byte_what_jsonwebtoken_makes_and_verify() {
        let signer = Signer::generate().unwrap();
        let claims =
            serde_json::json!({"sub": "usr_1", "scope": "mcp:read", "exp": 4_000_000_000u64});
        let token = signer.sign(&claims).unwrap();

        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(signer.kid().to_owned());
        let encoding =
            EncodingKey::from_rsa_pem(signer.private_key_pem().expose().as_bytes()).unwrap();
        assert_eq!(
            token,
            jsonwebtoken::encode(&header, &claims, &encoding).unwrap()
        );

        let mut validation = jsonwebtoken::Validation::new(Algorithm::RS256);
        validation.validate_aud = false;
        let decoded =
            jsonwebtoken::decode::<serde_json::Value>(&token, signer.decoding_key(), &validation)
                .unwrap();
        assert_eq!(decoded.claims, claims);
        assert_eq!(decoded.header.kid.as_deref(), Some(signer.kid()));
    }

    #[test]
    fn a_pem_that_is_not_an_rsa_key_is_refused() {
        let error = rsa_key_pair("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "the signing key PEM is not an RSA private key (PKCS#8 or PKCS#1)"
        );
    }
}
