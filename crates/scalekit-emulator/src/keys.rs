//! The RS256 signing keys, their `kid` (`snk_…`) and the JWKS served at `/keys`: one [`Signer`]
//! per key, the [`KeyRing`] that rotates them (Decisions §10), and the key file that keeps the
//! key of a run without a state directory ([`load_or_create_key_file`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use aws_lc_rs::digest;
use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use scalekit_wire::{Secret, prefix};
use serde::Serialize;
use testbed_web::files::{Created, create_atomically};

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
    /// aws-lc could not export the public key.
    #[error("cannot export the public key")]
    PublicKey,
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

    /// `base64url({"typ":"JWT","alg":"RS256","kid":…}) + "."`: how every token this key signs
    /// with [`Signer::sign`] starts.
    pub fn encoded_header(&self) -> &str {
        &self.encoded_header
    }

    /// Signs claims as an RS256 JWT with `typ: JWT` and the `kid`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, KeyError> {
        let mut token = self.encoded_header.clone();
        URL_SAFE_NO_PAD.encode_string(
            serde_json::to_vec(claims).map_err(KeyError::Claims)?,
            &mut token,
        );
        let signature = self.signature(token.as_bytes())?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
        Ok(token)
    }

    /// The RS256 (RSASSA-PKCS1-v1_5 with SHA-256) signature of `message`: for a JWS whose header
    /// is not this key's usual one (`POST /_emulator/tokens` with `unknown_kid`).
    pub fn signature(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut signature = vec![0u8; self.key_pair.public_modulus_len()];
        self.key_pair
            .sign(&RSA_PKCS1_SHA256, &self.random, message, &mut signature)
            .map_err(|_| KeyError::Sign)?;
        Ok(signature)
    }

    /// The public key as a PEM text: `-----BEGIN PUBLIC KEY-----\n`, the base64 (standard,
    /// padded) of the SubjectPublicKeyInfo DER (RFC 5280 §4.1.2.7) in lines of 64 characters,
    /// each ending with `\n`, then `-----END PUBLIC KEY-----\n`. A verifier that takes "the
    /// key" as an HMAC secret when a token says `alg: HS256` uses these bytes (the algorithm
    /// confusion `POST /_emulator/tokens` forges with `hs256_public_key`).
    pub fn public_key_pem(&self) -> Result<String, KeyError> {
        let der: PublicKeyX509Der<'static> = self
            .key_pair
            .public_key()
            .as_der()
            .map_err(|_| KeyError::PublicKey)?;
        Ok(pem("PUBLIC KEY", der.as_ref()))
    }
}

/// The environment's published keys (Decisions §10): the first signs, every one is in the JWKS
/// (signing key first) and verifies the management tokens it signed. `POST
/// /_emulator/keys/rotate` puts a new key first and keeps the others; `…/retire` drops keys other
/// than the signing one, and the tokens they signed stop verifying.
///
/// Reading is a read lock and an `Arc` clone, so signing costs what it did with one key; the
/// rare changes take the write lock, and [`KeyRing::rotate`] and [`KeyRing::retire`] save the
/// new ring (through the closure they are given) before it becomes visible, so what is published
/// is always what is stored.
pub struct KeyRing {
    ring: RwLock<Ring>,
}

/// The keys in JWKS order; a ring is never empty.
struct Ring {
    signing: Arc<Signer>,
    older: Vec<Arc<Signer>>,
}

impl Ring {
    fn iter(&self) -> impl Iterator<Item = &Arc<Signer>> {
        std::iter::once(&self.signing).chain(&self.older)
    }

    fn to_vec(&self) -> Vec<Arc<Signer>> {
        self.iter().cloned().collect()
    }

    fn kids(&self) -> Vec<String> {
        self.iter().map(|signer| signer.kid().to_owned()).collect()
    }
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("KeyRing")
            .field("kids", &self.kids())
            .finish()
    }
}

/// What [`KeyRing::retire`] dropped and what is left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retired {
    /// The `kid`s dropped, in their former JWKS order.
    pub retired: Vec<String>,
    /// The `kid`s still published, signing key first.
    pub keys: Vec<String>,
}

/// Why keys could not be retired.
#[derive(Debug, thiserror::Error)]
pub enum RetireError<E> {
    /// Only the signing key is published.
    #[error(
        "nothing to retire: {kid} is the only key and it signs; rotate first (POST /_emulator/keys/rotate)"
    )]
    NothingToRetire {
        /// The signing key.
        kid: String,
    },
    /// The key named is the one that signs.
    #[error(
        "{kid} is the signing key and cannot be retired; rotate first (POST /_emulator/keys/rotate)"
    )]
    SigningKey {
        /// The signing key.
        kid: String,
    },
    /// No published key has this `kid`.
    #[error("no published key has the kid {kid}")]
    UnknownKid {
        /// The `kid` asked for.
        kid: String,
    },
    /// The new ring could not be saved; nothing changed.
    #[error("cannot save the key ring")]
    Save(#[source] E),
}

impl KeyRing {
    /// A ring of one key.
    pub fn new(signing: Signer) -> KeyRing {
        KeyRing {
            ring: RwLock::new(Ring {
                signing: Arc::new(signing),
                older: Vec::new(),
            }),
        }
    }

    /// A ring of `keys` in JWKS order (the first signs), or `None` when there is none. A key
    /// that appears twice is kept once, at its first place.
    pub fn from_keys(keys: impl IntoIterator<Item = Signer>) -> Option<KeyRing> {
        let mut keys = keys.into_iter();
        let signing = Arc::new(keys.next()?);
        let mut ring = Ring {
            signing,
            older: Vec::new(),
        };
        for signer in keys {
            if !ring.iter().any(|known| known.kid() == signer.kid()) {
                ring.older.push(Arc::new(signer));
            }
        }
        Some(KeyRing {
            ring: RwLock::new(ring),
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, Ring> {
        // Every change is computed before it is stored, so a panic elsewhere leaves a whole ring.
        self.ring.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The key that signs now.
    pub fn signing(&self) -> Arc<Signer> {
        Arc::clone(&self.read().signing)
    }

    /// Every published key, signing key first.
    pub fn keys(&self) -> Vec<Arc<Signer>> {
        self.read().to_vec()
    }

    /// Every published `kid`, signing key first.
    pub fn kids(&self) -> Vec<String> {
        self.read().kids()
    }

    /// The published key with this `kid`.
    pub fn find(&self, kid: &str) -> Option<Arc<Signer>> {
        self.read()
            .iter()
            .find(|signer| signer.kid() == kid)
            .map(Arc::clone)
    }

    /// The JWKS: every published key, signing key first.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: self
                .read()
                .iter()
                .map(|signer| signer.jwk.clone())
                .collect(),
        }
    }

    /// The published key a JWT names in its header's `kid`, if any; the signature is not
    /// checked here. A token one of these keys signed starts with its encoded header, which is
    /// found without decoding anything; any other header is decoded.
    pub fn key_of(&self, token: &str) -> Option<Arc<Signer>> {
        {
            let ring = self.read();
            if let Some(signer) = ring
                .iter()
                .find(|signer| token.starts_with(signer.encoded_header()))
            {
                return Some(Arc::clone(signer));
            }
        }
        let kid = jsonwebtoken::decode_header(token).ok()?.kid?;
        self.find(&kid)
    }

    /// Puts `signer` first (it signs from now on) and keeps every other key published, once
    /// `save` has stored the new ring. Returns the `kid`s, signing key first.
    pub fn rotate<E>(
        &self,
        signer: Signer,
        save: impl FnOnce(&[Arc<Signer>]) -> Result<(), E>,
    ) -> Result<Vec<String>, E> {
        let mut ring = self.ring.write().unwrap_or_else(PoisonError::into_inner);
        let signer = Arc::new(signer);
        let older = ring
            .iter()
            .filter(|known| known.kid() != signer.kid())
            .cloned()
            .collect();
        let rotated = Ring {
            signing: signer,
            older,
        };
        save(&rotated.to_vec())?;
        let kids = rotated.kids();
        *ring = rotated;
        Ok(kids)
    }

    /// Drops the key `kid`, or without one every key but the signing key, once `save` has
    /// stored the new ring. The signing key is never dropped.
    pub fn retire<E>(
        &self,
        kid: Option<&str>,
        save: impl FnOnce(&[Arc<Signer>]) -> Result<(), E>,
    ) -> Result<Retired, RetireError<E>> {
        let mut ring = self.ring.write().unwrap_or_else(PoisonError::into_inner);
        let signing_kid = ring.signing.kid().to_owned();
        let retired: Vec<String> = match kid {
            None if ring.older.is_empty() => {
                return Err(RetireError::NothingToRetire { kid: signing_kid });
            }
            None => ring
                .older
                .iter()
                .map(|signer| signer.kid().to_owned())
                .collect(),
            Some(kid) if kid == signing_kid => {
                return Err(RetireError::SigningKey { kid: signing_kid });
            }
            Some(kid) if ring.older.iter().any(|signer| signer.kid() == kid) => {
                vec![kid.to_owned()]
            }
            Some(kid) => {
                return Err(RetireError::UnknownKid {
                    kid: kid.to_owned(),
                });
            }
        };
        let remaining = Ring {
            signing: Arc::clone(&ring.signing),
            older: ring
                .older
                .iter()
                .filter(|signer| !retired.iter().any(|kid| kid == signer.kid()))
                .cloned()
                .collect(),
        };
        save(&remaining.to_vec()).map_err(RetireError::Save)?;
        let keys = remaining.kids();
        *ring = remaining;
        Ok(Retired { retired, keys })
    }
}

/// Where the run's signing key comes from, which the binaries' start banners name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrigin {
    /// The embedding program gave it (`Deps::signing_key_pem`); kept in memory only.
    Given,
    /// The state directory's key ring (`DIR/emulator.sqlite3`).
    StateDirectory(PathBuf),
    /// The key file, read or made now (`Deps::signing_key_file`).
    File(PathBuf),
    /// Made for this run and kept nowhere.
    Fresh,
}

impl KeyOrigin {
    /// The start banner's line about the key signing with `kid`, as both binaries print it
    /// (their flags are the same: `--state-dir`, `--signing-key`, `--fresh-signing-key`).
    pub fn banner(&self, kid: &str) -> String {
        match self {
            KeyOrigin::Given => format!("signing key {kid} given by the embedding program"),
            KeyOrigin::StateDirectory(directory) => format!(
                "signing key {kid} kept in the state directory {} (emulator.sqlite3; the same \
                 across restarts)",
                directory.display()
            ),
            KeyOrigin::File(path) => format!(
                "signing key {kid} kept in {} (the same across restarts; --fresh-signing-key for \
                 a new one each start)",
                path.display()
            ),
            KeyOrigin::Fresh => {
                format!("signing key {kid} made for this run only (--fresh-signing-key)")
            }
        }
    }
}

/// Why the key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file exists but could not be read.
    #[error("cannot read the signing key file {}", path.display())]
    Read {
        /// The key file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file holds something other than an RSA private key.
    #[error(
        "the signing key file {} holds no RSA private key (a PKCS#8 or PKCS#1 PEM); delete it to \
         make a new key there, or choose another file",
        path.display()
    )]
    NotAKey {
        /// The key file.
        path: PathBuf,
        /// What the PEM parser said.
        #[source]
        source: KeyError,
    },
    /// A new key could not be written.
    #[error("cannot write the signing key file {}", path.display())]
    Write {
        /// The key file, or the folder that could not be made for it.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A new key could not be made.
    #[error(transparent)]
    Generate(#[from] KeyError),
}

/// The signing key kept in `path`: read when the file exists (it must hold an RSA private key
/// PEM), else a fresh RSA-2048 key written there whole and owner-only (0600).
///
/// The new key goes to a temporary file beside `path` first and is then published under `path`
/// with a hard link, a rename that never replaces: two emulators started at once never read half
/// a file, and the one that loses the race reads the winner's key instead of replacing it, so
/// both sign with the same key. Where the file system has no hard links, a plain rename
/// publishes it (which does replace: two first starts at once may then end with different keys)
/// and the file is read back.
pub fn load_or_create_key_file(path: &Path) -> Result<Signer, KeyFileError> {
    match std::fs::read(path) {
        Ok(pem) => return key_of_file(path, &pem),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(KeyFileError::Read {
                path: path.to_owned(),
                source,
            });
        }
    }
    let signer = Signer::generate()?;
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).map_err(|source| KeyFileError::Write {
            path: parent.to_owned(),
            source,
        })?;
    }
    match create_atomically(path, signer.private_key_pem().expose(), true) {
        Ok(Created::Ours) => Ok(signer),
        // Another emulator published its key first (or a rename may have replaced one).
        Ok(Created::ReadBack) => {
            let pem = std::fs::read(path).map_err(|source| KeyFileError::Read {
                path: path.to_owned(),
                source,
            })?;
            key_of_file(path, &pem)
        }
        Err(source) => Err(KeyFileError::Write {
            path: path.to_owned(),
            source,
        }),
    }
}

fn key_of_file(path: &Path, pem: &[u8]) -> Result<Signer, KeyFileError> {
    let pem = std::str::from_utf8(pem).map_err(|_| KeyError::Pem);
    pem.and_then(Signer::from_pem)
        .map_err(|source| KeyFileError::NotAKey {
            path: path.to_owned(),
            source,
        })
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
    pem("PRIVATE KEY", der)
}

/// RFC 7468 armour: the label's BEGIN line, standard base64 in lines of 64 characters, the END
/// line, each ending with `\n`.
fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
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
    fn the_public_key_pem_is_the_spki_of_the_jwk_in_64_character_lines() {
        let signer = Signer::generate().unwrap();
        let pem = signer.public_key_pem().unwrap();
        // Built again from the published JWK's `n` and `e`, as a verifier holding only the JWKS
        // would build it.
        let jwks = serde_json::to_value(signer.jwks()).unwrap();
        let component = |name: &str| {
            URL_SAFE_NO_PAD
                .decode(jwks["keys"][0][name].as_str().unwrap())
                .unwrap()
        };
        let components = aws_lc_rs::rsa::PublicKeyComponents {
            n: component("n"),
            e: component("e"),
        };
        let der: PublicKeyX509Der<'static> = components.as_der().unwrap();
        assert_eq!(pem, super::pem("PUBLIC KEY", der.as_ref()));
        let lines: Vec<&str> = pem.split_inclusive('\n').collect();
        assert_eq!(lines[0], "-----BEGIN PUBLIC KEY-----\n");
        assert_eq!(lines[lines.len() - 1], "-----END PUBLIC KEY-----\n");
        let body = &lines[1..lines.len() - 1];
        assert!(body[..body.len() - 1].iter().all(|line| line.len() == 65));
        assert!(body[body.len() - 1].len() <= 65);
        assert_eq!(
            STANDARD.decode(body.concat().replace('\n', "")).unwrap(),
            der.as_ref()
        );
        // jsonwebtoken reads it as the public key that verifies this signer's tokens.
        let token = signer.sign(&serde_json::json!({"sub": "usr_1"})).unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let key = DecodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
        assert!(jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation).is_ok());
    }

    #[test]
    fn a_rotation_puts_the_new_key_first_and_keeps_the_old_one_published() {
        let first = Signer::generate().unwrap();
        let first_kid = first.kid().to_owned();
        let ring = KeyRing::new(first);
        let second = Signer::generate().unwrap();
        let second_kid = second.kid().to_owned();
        let mut saved = Vec::new();
        let kids = ring
            .rotate(second, |keys| {
                saved = keys.iter().map(|key| key.kid().to_owned()).collect();
                Ok::<(), std::convert::Infallible>(())
            })
            .unwrap();
        assert_eq!(kids, vec![second_kid.clone(), first_kid.clone()]);
        assert_eq!(saved, kids);
        assert_eq!(ring.kids(), kids);
        assert_eq!(ring.signing().kid(), second_kid);
        let jwks = serde_json::to_value(ring.jwks()).unwrap();
        assert_eq!(jwks["keys"][0]["kid"], second_kid);
        assert_eq!(jwks["keys"][1]["kid"], first_kid);
        assert_eq!(ring.find(&first_kid).unwrap().kid(), first_kid);
        assert_eq!(format!("{ring:?}"), format!("KeyRing {{ kids: {kids:?} }}"));
    }

    #[test]
    fn retiring_drops_older_keys_and_never_the_signing_one() {
        let ring = KeyRing::from_keys([
            Signer::generate().unwrap(),
            Signer::generate().unwrap(),
            Signer::generate().unwrap(),
        ])
        .unwrap();
        let kids = ring.kids();
        let saved = |_: &[Arc<Signer>]| Ok::<(), std::convert::Infallible>(());

        let error = ring.retire(Some(&kids[0]), saved).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "{} is the signing key and cannot be retired; rotate first (POST /_emulator/keys/rotate)",
                kids[0]
            )
        );
        let error = ring.retire(Some("snk_1"), saved).unwrap_err();
        assert_eq!(error.to_string(), "no published key has the kid snk_1");

        let retired = ring.retire(Some(&kids[1]), saved).unwrap();
        assert_eq!(
            retired,
            Retired {
                retired: vec![kids[1].clone()],
                keys: vec![kids[0].clone(), kids[2].clone()],
            }
        );
        assert!(ring.find(&kids[1]).is_none());
        let retired = ring.retire(None, saved).unwrap();
        assert_eq!(retired.retired, vec![kids[2].clone()]);
        assert_eq!(ring.kids(), vec![kids[0].clone()]);
        let error = ring.retire(None, saved).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "nothing to retire: {} is the only key and it signs; rotate first (POST /_emulator/keys/rotate)",
                kids[0]
            )
        );
    }

    #[test]
    fn a_change_that_cannot_be_saved_leaves_the_ring_as_it_was() {
        let ring = KeyRing::new(Signer::generate().unwrap());
        let before = ring.kids();
        let failed = ring.rotate(Signer::generate().unwrap(), |_| Err("disk full"));
        assert_eq!(failed, Err("disk full"));
        assert_eq!(ring.kids(), before);
    }

    #[test]
    fn a_token_finds_its_key_by_the_kid_in_its_header() {
        let signer = Signer::generate().unwrap();
        let kid = signer.kid().to_owned();
        let pem = signer.private_key_pem().clone();
        let ring = KeyRing::new(signer);
        let claims = serde_json::json!({"sub": "usr_1"});
        let ours = ring.signing().sign(&claims).unwrap();
        assert_eq!(ring.key_of(&ours).unwrap().kid(), kid);
        // The same kid in a header of another shape (jsonwebtoken with `cty`).
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.clone());
        header.cty = Some("JWT".to_owned());
        let encoding = EncodingKey::from_rsa_pem(pem.expose().as_bytes()).unwrap();
        let other_shape = jsonwebtoken::encode(&header, &claims, &encoding).unwrap();
        assert_eq!(ring.key_of(&other_shape).unwrap().kid(), kid);
        header.kid = Some("snk_1".to_owned());
        let unknown = jsonwebtoken::encode(&header, &claims, &encoding).unwrap();
        assert!(ring.key_of(&unknown).is_none());
        assert!(ring.key_of("not a token").is_none());
    }

    #[test]
    fn the_banner_says_where_the_key_is_kept() {
        let kid = "snk_1";
        assert_eq!(
            KeyOrigin::File(PathBuf::from(".testbed/signing-key.pem")).banner(kid),
            "signing key snk_1 kept in .testbed/signing-key.pem (the same across restarts; \
             --fresh-signing-key for a new one each start)"
        );
        assert_eq!(
            KeyOrigin::StateDirectory(PathBuf::from(".testbed")).banner(kid),
            "signing key snk_1 kept in the state directory .testbed (emulator.sqlite3; the same \
             across restarts)"
        );
        assert_eq!(
            KeyOrigin::Fresh.banner(kid),
            "signing key snk_1 made for this run only (--fresh-signing-key)"
        );
        assert_eq!(
            KeyOrigin::Given.banner(kid),
            "signing key snk_1 given by the embedding program"
        );
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
