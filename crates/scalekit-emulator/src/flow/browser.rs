//! Browser binding (Decisions §9): a sign-in is finished only by the browser that started it.
//!
//! `/oauth/authorize` mints a random id with the injected generator
//! ([`crate::ids::IdGenerator::browser_binding`]); the edge hands it to the browser as the value
//! of the sign-in's cookie, and the login request keeps only its SHA-256, so neither `Debug`, the
//! control API's views nor anything else the state machine holds carries the cookie's value. The
//! partner callback and the consent decision are given the sign-in cookies their request carried
//! ([`PresentedBrowser`], hashed at the edge before the state lock is taken) and refuse a request
//! that lacks this sign-in's with a [`BrowserRefusal`].
//!
//! Each sign-in has a cookie of its own, so that several sign-ins in one browser (two tabs, two
//! MCP clients) do not overwrite each other's; the state machine does not need the cookies'
//! names, only their values, because a value names its sign-in by its digest.

use std::fmt;

use aws_lc_rs::{constant_time, digest};
use scalekit_wire::{OAuthErrorCode, Secret};

/// The value of a sign-in's cookie: a random id and nothing else. A secret: with it and the
/// `state`, a sign-in can be finished from anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserBinding(Secret);

impl BrowserBinding {
    /// Wraps a freshly minted id.
    pub(super) fn new(value: String) -> BrowserBinding {
        BrowserBinding(Secret::new(value))
    }

    /// The cookie's value, for the one place that sets the cookie.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// All the state machine keeps of it.
    pub(super) fn digest(&self) -> BindingDigest {
        BindingDigest::of(self.expose())
    }
}

/// The SHA-256 of a binding's value.
#[derive(Clone, Copy)]
pub(super) struct BindingDigest([u8; 32]);

impl BindingDigest {
    fn of(value: &str) -> BindingDigest {
        let hashed = digest::digest(&digest::SHA256, value.as_bytes());
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(hashed.as_ref());
        BindingDigest(bytes)
    }

    /// Constant-time, as every comparison with something a request presented.
    fn matches(&self, other: &BindingDigest) -> bool {
        constant_time::verify_slices_are_equal(&self.0, &other.0).is_ok()
    }
}

/// A digest says nothing useful in a log and is not printed.
impl fmt::Debug for BindingDigest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("BindingDigest([redacted])")
    }
}

/// The sign-in cookies a request carried, as digests. No cookie at all is a request that does not
/// come from a browser that started a sign-in here (a server-side fetch, a user agent that drops
/// cookies).
#[derive(Debug, Clone, Default)]
pub struct PresentedBrowser {
    digests: Vec<BindingDigest>,
}

impl PresentedBrowser {
    /// At most this many cookie values are read from one request: about what a browser keeps for
    /// one site (Chromium keeps 180 cookies per domain), far more than the sign-ins one person
    /// starts within a cookie's lifetime.
    pub const MAX_COOKIES: usize = 200;

    /// The values of the sign-in cookies a request carried (the first [`Self::MAX_COOKIES`]).
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> PresentedBrowser {
        PresentedBrowser {
            digests: values
                .into_iter()
                .take(Self::MAX_COOKIES)
                .map(BindingDigest::of)
                .collect(),
        }
    }

    /// A request without any sign-in cookie.
    pub fn none() -> PresentedBrowser {
        PresentedBrowser::default()
    }

    /// The browser of `binding`: a request carrying that sign-in's cookie and no other (tests).
    pub fn of(binding: Option<&BrowserBinding>) -> PresentedBrowser {
        PresentedBrowser::new(binding.map(BrowserBinding::expose))
    }

    /// Whether this request may finish a sign-in bound to `bound` (`None`: the resource does not
    /// bind sign-ins to a browser).
    pub(super) fn check(&self, bound: Option<&BindingDigest>) -> Result<(), BrowserRefusal> {
        let Some(bound) = bound else {
            return Ok(());
        };
        if self.digests.is_empty() {
            return Err(BrowserRefusal::Missing);
        }
        // Every presented digest is compared, so the time taken does not say which one matched.
        let matched = self
            .digests
            .iter()
            .fold(false, |matched, digest| digest.matches(bound) | matched);
        if matched {
            Ok(())
        } else {
            Err(BrowserRefusal::Mismatch)
        }
    }
}

/// Why a request may not finish a sign-in: it does not come from the browser that started it.
/// The `Display` is the hosted error page's description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BrowserRefusal {
    /// No sign-in cookie came with the request.
    #[error(
        "the request carries no sign-in cookie: a sign-in must be finished by the browser that \
         started it, not by a server or a client that drops cookies"
    )]
    Missing,
    /// Sign-in cookies came, but none of this sign-in's.
    #[error(
        "the request carries no cookie of this sign-in: it was started in another browser, \
         which must finish it"
    )]
    Mismatch,
}

impl BrowserRefusal {
    /// The hosted error page's error.
    pub fn code(self) -> OAuthErrorCode {
        match self {
            BrowserRefusal::Missing => OAuthErrorCode::BrowserSessionMissing,
            BrowserRefusal::Mismatch => OAuthErrorCode::BrowserSessionMismatch,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_bindings_own_cookie_passes_and_no_cookie_is_told_from_a_foreign_one() {
        let binding = BrowserBinding::new("browser-one".to_owned());
        let bound = binding.digest();
        assert_eq!(
            PresentedBrowser::of(Some(&binding)).check(Some(&bound)),
            Ok(())
        );
        assert_eq!(
            PresentedBrowser::new(["other", "browser-one"]).check(Some(&bound)),
            Ok(()),
            "a browser with two sign-ins in progress presents both cookies"
        );
        assert_eq!(
            PresentedBrowser::none().check(Some(&bound)),
            Err(BrowserRefusal::Missing)
        );
        assert_eq!(
            PresentedBrowser::new(["browser-two"]).check(Some(&bound)),
            Err(BrowserRefusal::Mismatch)
        );
        assert_eq!(PresentedBrowser::none().check(None), Ok(()));
    }

    #[test]
    fn debug_output_never_shows_the_value_or_its_digest() {
        let binding = BrowserBinding::new("browser-secret-value".to_owned());
        let presented = PresentedBrowser::of(Some(&binding));
        for debug in [
            format!("{binding:?}"),
            format!("{:?}", binding.digest()),
            format!("{presented:?}"),
        ] {
            assert!(!debug.contains("browser-secret-value"), "{debug}");
            assert!(debug.contains("redacted"), "{debug}");
        }
    }
}
