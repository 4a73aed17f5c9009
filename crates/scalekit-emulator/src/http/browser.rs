//! The edge of browser binding (Decisions §9): the sign-in cookie `/oauth/authorize` sets, the
//! sign-in cookies a request carries, and the consent form's `Origin` check.
//!
//! One cookie per sign-in, named by its login request (`sk_signin_lri_…`): two sign-ins in one
//! browser (two tabs, two MCP clients) each keep their own, and a person reading the browser's
//! cookies can tell which sign-in one belongs to. Its value is the random id the state machine
//! minted and nothing else. `HttpOnly` (no script needs it), `SameSite=Lax` (the callback is a
//! top-level `GET` navigation from Your App's site, which Lax allows; the consent form posts
//! from the emulator's own pages), `Path=/`, `Secure` when the environment URL is `https`. It
//! lives as long as the sign-in can: the login request's lifetime and then the consent page's,
//! and is cleared when the sign-in ends (the redirect to the client), so that a browser that
//! signs in again and again does not pile them up; an abandoned one expires.

use axum::extract::FromRequestParts;
use axum::http::header::{COOKIE, ORIGIN, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use scalekit_wire::{Check, OAuthErrorCode};
use url::Url;

use super::error::HostedErrorPage;
use crate::flow::{LoginRedirect, PresentedBrowser};
use crate::state::AppState;
use crate::types::LoginRequestId;

/// The name of a sign-in's cookie is this plus its login request id.
pub const SIGN_IN_COOKIE_PREFIX: &str = "sk_signin_";

/// The `Set-Cookie` value of `login`'s sign-in cookie, if the resource binds sign-ins to a
/// browser. `secure` when the environment is served over `https`.
pub(super) fn sign_in_cookie(login: &LoginRedirect, secure: bool) -> Option<HeaderValue> {
    let binding = login.browser_binding.as_ref()?;
    let mut cookie = format!(
        "{SIGN_IN_COOKIE_PREFIX}{}={}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax",
        login.login_request_id,
        binding.expose(),
        login.binding_lifetime_secs
    );
    if secure {
        cookie.push_str("; Secure");
    }
    HeaderValue::from_str(&cookie).ok()
}

/// Adds `login`'s sign-in cookie to the redirect to the login endpoint.
pub(super) fn with_sign_in_cookie(
    mut response: Response,
    login: &LoginRedirect,
    state: &AppState,
) -> Response {
    if let Some(cookie) = sign_in_cookie(login, is_secure(state)) {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    response
}

/// Clears the cookie of the sign-in that `response` (the redirect to the client) ends. The same
/// attributes as when it was set, so that every browser matches it.
pub(super) fn ending_sign_in(
    mut response: Response,
    sign_in: Option<&LoginRequestId>,
    state: &AppState,
) -> Response {
    let Some(sign_in) = sign_in else {
        return response;
    };
    let mut cookie =
        format!("{SIGN_IN_COOKIE_PREFIX}{sign_in}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax");
    if is_secure(state) {
        cookie.push_str("; Secure");
    }
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

/// `Secure` only when the environment is served over `https`: a browser drops a `Secure` cookie
/// set over plain `http`.
fn is_secure(state: &AppState) -> bool {
    state.environment_url().starts_with("https://")
}

/// The sign-in cookies a request carried (every `Cookie` header: HTTP/2 may split them), hashed
/// here, before the state lock is taken.
pub(super) fn presented_browser(headers: &HeaderMap) -> PresentedBrowser {
    let values = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|header| header.to_str().ok())
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| name.starts_with(SIGN_IN_COOKIE_PREFIX))
        .map(|(_, value)| value.trim());
    PresentedBrowser::new(values)
}

/// A consent form posted from the environment's own origin, or without `Origin` (a client that
/// is not a browser; every current browser sends `Origin` on a form `POST`). Any other origin,
/// `null` included, is refused with the hosted error page `foreign_origin` (403) before the form
/// is read: a page on another origin of the same site (another port of `127.0.0.1`, where
/// `SameSite=Lax` still sends the sign-in cookie) must not be able to approve for the person.
#[derive(Debug)]
pub(super) struct OwnOrigin;

impl FromRequestParts<AppState> for OwnOrigin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(origin) = parts.headers.get(ORIGIN) else {
            return Ok(OwnOrigin);
        };
        let own = Url::parse(state.environment_url())
            .map(|url| url.origin().ascii_serialization())
            .unwrap_or_default();
        if origin.as_bytes() == own.as_bytes() {
            return Ok(OwnOrigin);
        }
        let shown = String::from_utf8_lossy(origin.as_bytes()).into_owned();
        let mut response = HostedErrorPage::new(
            OAuthErrorCode::ForeignOrigin,
            format!("the consent form was posted from {shown}, not from this environment ({own})"),
        )
        .failed(Check::OriginAllowed)
        .into_response();
        *response.status_mut() = StatusCode::FORBIDDEN;
        Err(response)
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderName;

    use super::*;

    fn presented(pairs: &[(HeaderName, &str)]) -> usize {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        // The digests are not printed, but they are counted.
        format!("{:?}", presented_browser(&map))
            .matches("BindingDigest")
            .count()
    }

    #[test]
    fn only_sign_in_cookies_are_read_from_every_cookie_header() {
        assert_eq!(
            presented(&[(COOKIE, "your_app_session=abc; theme=dark")]),
            0
        );
        assert_eq!(
            presented(&[
                (COOKIE, "theme=dark; sk_signin_lri_1=one"),
                (COOKIE, "sk_signin_lri_2=two"),
                (ORIGIN, "sk_signin_lri_3=three"),
            ]),
            2
        );
    }
}
