//! Password hashing and verification with Argon2id (argon2's default parameters).

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use scalekit_wire::Secret;

/// A hash of a random password nobody knows, verified against when the username is unknown so that
/// an unknown user costs the same time as a wrong password.
pub(crate) const DECOY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$EjUq5njdhO1sWAyAHqs04w$UmprdJI+OJh8RNfbaKWDhcMCueR0jUk5b2OiXfUEYIw";

/// Hashing failed: the randomness source or argon2 itself refused.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The system randomness source failed.
    #[error("cannot generate a salt")]
    Salt,
    /// argon2 refused the input.
    #[error("cannot hash the password: {0}")]
    Argon2(String),
}

/// Hashes a password into an Argon2id PHC string with a fresh 16-byte salt.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    let mut salt = [0_u8; 16];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| HashError::Salt)?;
    let hash: PasswordHash = Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map_err(|error| HashError::Argon2(error.to_string()))?;
    Ok(hash.to_string())
}

/// Checks a password against a PHC string. argon2 compares the outputs in constant time; a
/// malformed hash never verifies.
pub fn verify_password(password_hash: &Secret, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(password_hash.expose()) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_hash_verifies_only_its_own_password() {
        let hash = Secret::new(hash_password("correct horse").unwrap());
        assert!(hash.expose().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_password(&hash, "correct horse"));
        assert!(!verify_password(&hash, "correct horse "));
    }

    #[test]
    fn two_hashes_of_one_password_differ_by_salt() {
        assert_ne!(
            hash_password("same").unwrap(),
            hash_password("same").unwrap()
        );
    }

    #[test]
    fn a_malformed_hash_never_verifies() {
        assert!(!verify_password(&Secret::new("not a phc string"), ""));
    }

    #[test]
    fn the_decoy_hash_parses_and_rejects_an_empty_password() {
        assert!(PasswordHash::new(DECOY_HASH).is_ok());
        assert!(!verify_password(&Secret::new(DECOY_HASH), ""));
    }
}
