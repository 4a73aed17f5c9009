//! The injected id and secret generator.

use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Mints ids (`prefix` + digits) and secrets (codes, refresh tokens, states, consent ids).
pub trait IdGenerator: Send + Sync + 'static {
    /// A new id such as `lri_123456789012345678`.
    fn id(&self, prefix: &str) -> String;
    /// A new unguessable secret, base64url without padding.
    fn secret(&self) -> String;
    /// A new browser-binding id: the value of a sign-in's cookie (Decisions §9), a secret like
    /// [`IdGenerator::secret`]. Its own method so that [`SequentialIds`] can count these apart:
    /// every other id and secret keeps the number it had before sign-ins were bound to a browser.
    fn browser_binding(&self) -> String {
        self.secret()
    }
}

/// Random ids: prefix + 18 decimal digits, the first non-zero (snowflake-like, as Scalekit's
/// ids look); secrets are 32 random bytes (256 bits) in base64url.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomIds;

const SMALLEST_18_DIGITS: u64 = 100_000_000_000_000_000;

impl IdGenerator for RandomIds {
    fn id(&self, prefix: &str) -> String {
        let mut bytes = [0u8; 8];
        fill_random(&mut bytes);
        // The modulo bias is irrelevant for ids: they are names, not secrets.
        let digits = SMALLEST_18_DIGITS + u64::from_le_bytes(bytes) % (9 * SMALLEST_18_DIGITS);
        format!("{prefix}{digits}")
    }

    fn secret(&self) -> String {
        let mut bytes = [0u8; 32];
        fill_random(&mut bytes);
        URL_SAFE_NO_PAD.encode(bytes)
    }
}

fn fill_random(bytes: &mut [u8]) {
    // aws-lc's system RNG does not fail on supported platforms; a failure here means the process
    // cannot mint anything safe, so stopping is the only sound answer.
    aws_lc_rs::rand::fill(bytes).expect("the system random number generator failed");
}

/// Deterministic ids for tests: a shared counter, still prefixed; browser-binding ids have a
/// counter of their own.
#[derive(Debug, Default)]
pub struct SequentialIds {
    counter: AtomicU64,
    browser_bindings: AtomicU64,
}

impl SequentialIds {
    /// A generator whose first id ends in …001.
    pub fn new() -> Self {
        Self::default()
    }

    fn next(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::SeqCst) + 1
    }
}

impl IdGenerator for SequentialIds {
    fn id(&self, prefix: &str) -> String {
        format!("{prefix}{}", SMALLEST_18_DIGITS + self.next())
    }

    fn secret(&self) -> String {
        format!("secret{:037}", self.next())
    }

    fn browser_binding(&self) -> String {
        let number = self.browser_bindings.fetch_add(1, Ordering::SeqCst) + 1;
        format!("browser{number:036}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_have_the_prefix_and_eighteen_digits() {
        let id = RandomIds.id("lri_");
        let digits = id.strip_prefix("lri_").unwrap();
        assert_eq!(digits.len(), 18);
        assert!(digits.bytes().all(|byte| byte.is_ascii_digit()));
        assert_ne!(digits.as_bytes()[0], b'0');
    }

    #[test]
    fn random_secrets_carry_256_bits_and_differ() {
        let first = RandomIds.secret();
        assert_eq!(first.len(), 43);
        assert_ne!(first, RandomIds.secret());
    }

    #[test]
    fn sequential_ids_count_up() {
        let ids = SequentialIds::new();
        assert_eq!(ids.id("usr_"), "usr_100000000000000001");
        assert_eq!(ids.id("usr_"), "usr_100000000000000002");
        assert_eq!(ids.secret().len(), 43);
    }

    #[test]
    fn sequential_browser_bindings_count_apart_from_the_other_ids() {
        let ids = SequentialIds::new();
        assert_eq!(ids.id("lri_"), "lri_100000000000000001");
        assert_eq!(ids.browser_binding().len(), 43);
        assert_eq!(ids.secret(), format!("secret{:037}", 2));
        assert_ne!(ids.browser_binding(), ids.browser_binding());
        assert_ne!(RandomIds.browser_binding(), RandomIds.browser_binding());
    }
}
