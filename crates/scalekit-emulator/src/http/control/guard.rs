//! The control API's and the inspector's defences against web pages, and, with a control token,
//! against anyone else who reaches the port. Every `/_emulator/` request passes the first two
//! before routing ([`screen`]), and every call a control route serves the third ([`json_calls`]),
//! so that a method a route does not serve still gets its 405 with `Allow`:
//!
//! 1. **No foreign `Origin`** (403, PERMISSION_DENIED). A browser names the page that made a
//!    request in `Origin` (always for cross-origin requests and for any `POST`); only the
//!    emulator's own origin is not foreign: the environment URL's origin, or one naming the very
//!    host and port the request was sent to (its `Host`, which the listener guard already
//!    checked). A page on another port of localhost is another site. `Origin: null`, several
//!    `Origin` headers or one that does not parse are foreign. Programs send no `Origin`.
//! 2. **The control token**, when one is configured (401, UNAUTHENTICATED, with
//!    `WWW-Authenticate: Bearer`): `Authorization: Bearer <token>`, compared in constant time. A
//!    browser cannot add a header to a page load, so `GET /_emulator/ui?token=<token>` answers
//!    303 to the page itself with the token in a cookie (`HttpOnly`, `SameSite=Strict`,
//!    `Path=/_emulator/`, named after the port so that two emulators on one host keep theirs),
//!    which the page's own reads and its event stream then carry; the token leaves the address
//!    bar at once. The cookie is accepted for reads (`GET`, `HEAD`) only: a cookie rides along
//!    with requests other local sites make (cookies ignore ports), so writing always takes the
//!    header.
//! 3. **JSON for every state-changing call** (415, INVALID_ARGUMENT on `content-type`): a method
//!    other than `GET`, `HEAD` and `OPTIONS` needs `Content-Type: application/json`, which a page
//!    cannot send cross-site without a CORS preflight, and the control API answers none (it sends
//!    no `Access-Control-*` header at all; a preflight gets 403 for its `Origin`, or 405).

use axum::extract::Request;
use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, COOKIE, HOST, LOCATION, ORIGIN, REFERRER_POLICY,
    SET_COOKIE, WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use scalekit_wire::Secret;
use testbed_web::Origin;
use url::Url;

use crate::http::Route;
use crate::management::{ApiError, GrpcCode, bearer, violation};
use crate::state::AppState;

/// The inspector's page, the one place the token may come in the query.
const PAGE_PATH: &str = "/_emulator/ui";

/// The most of a refused header a refusal repeats.
const SHOWN_CHARS: usize = 100;

/// The answer to give before routing (a foreign `Origin`, a missing or wrong control token, the
/// inspector page's link with the token), or `None` to route the request. `path` is the
/// request's path with leading slashes collapsed, as routing sees it.
pub(crate) fn screen(state: &AppState, path: &str, request: &Request) -> Option<Response> {
    if let Some(refusal) = foreign_origin(state, request) {
        return Some(refusal);
    }
    if let Some(token) = &state.config.control_token {
        match credential(state, token, path, request) {
            Credential::Accepted => {}
            Credential::PageLink => return Some(remember_token(state, token)),
            Credential::Missing => {
                return Some(unauthenticated(
                    "the control API needs the control token: send Authorization: Bearer <token> \
                     (in a browser, open /_emulator/ui?token=<token> once)",
                ));
            }
            Credential::Wrong => {
                return Some(unauthenticated(
                    "the control token does not match (in a browser, open \
                     /_emulator/ui?token=<token> again)",
                ));
            }
        }
    }
    None
}

/// `route` with its calls refused with 415 unless a state-changing one is JSON.
pub(crate) fn json_calls(route: Route) -> Route {
    Route {
        spec: route.spec,
        handlers: route
            .handlers
            .route_layer(middleware::from_fn(require_json)),
    }
}

async fn require_json(request: Request, next: Next) -> Response {
    if !is_safe(request.method()) && !is_json(request.headers()) {
        return not_json(request.headers());
    }
    next.run(request).await
}

/// 403 for a request whose `Origin` is not the emulator's own.
fn foreign_origin(state: &AppState, request: &Request) -> Option<Response> {
    let mut values = request.headers().get_all(ORIGIN).iter();
    let value = values.next()?;
    let own = values.next().is_none()
        && value
            .to_str()
            .ok()
            .and_then(Origin::parse)
            .is_some_and(|origin| is_own(state, request, &origin));
    if own {
        return None;
    }
    let shown = shown(&String::from_utf8_lossy(value.as_bytes()));
    tracing::warn!(origin = %shown, "refused a control API request from a web page of another origin");
    let error = ApiError::new(
        GrpcCode::PermissionDenied,
        format!(
            "the control API refuses requests from web pages of another origin (Origin: {shown}); \
             call it from a program, which sends no Origin"
        ),
    );
    Some((StatusCode::FORBIDDEN, error).into_response())
}

/// The environment URL's origin, or the origin of the host and port the request was sent to.
fn is_own(state: &AppState, request: &Request, origin: &Origin) -> bool {
    let environment = Url::parse(state.environment_url())
        .ok()
        .and_then(|url| Origin::of_url(&url));
    if environment.as_ref() == Some(origin) {
        return true;
    }
    let authority = match request.uri().authority() {
        Some(authority) => Some(authority.as_str()),
        None => request
            .headers()
            .get(HOST)
            .and_then(|value| value.to_str().ok()),
    };
    authority.is_some_and(|authority| origin.is_authority(authority))
}

/// What a request presents for the control token.
enum Credential {
    /// The bearer header, or on a read the cookie, carries the token.
    Accepted,
    /// The inspector page's link carries the token in its query: set the cookie.
    PageLink,
    /// Nothing.
    Missing,
    /// Something that is not the token.
    Wrong,
}

fn credential(state: &AppState, token: &Secret, path: &str, request: &Request) -> Credential {
    let judged = |presented: &str| {
        if token.matches(presented) {
            Credential::Accepted
        } else {
            Credential::Wrong
        }
    };
    if request.headers().contains_key(AUTHORIZATION) {
        return match bearer(request.headers()) {
            Some(presented) => judged(presented),
            None => Credential::Wrong,
        };
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return Credential::Missing;
    }
    if path == PAGE_PATH
        && let Some(presented) = query_token(request)
    {
        return match judged(&presented) {
            Credential::Accepted => Credential::PageLink,
            other => other,
        };
    }
    match cookie(request.headers(), &cookie_name(state)) {
        Some(presented) => judged(presented),
        None => Credential::Missing,
    }
}

/// The `token` query parameter, decoded.
fn query_token(request: &Request) -> Option<String> {
    let query = request.uri().query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value.into_owned())
}

/// The cookie that carries the token for the inspector page: one name per port, since cookies
/// are shared by every port of a host.
fn cookie_name(state: &AppState) -> String {
    let port = Url::parse(state.environment_url())
        .ok()
        .and_then(|url| url.port_or_known_default())
        .unwrap_or_default();
    format!("emulator_control_{port}")
}

/// The value of the first cookie called `name` (RFC 6265 §5.4: `name=value` pairs separated by
/// `; `, possibly over several `Cookie` headers under HTTP/2).
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(cookie_name, _)| *cookie_name == name)
        .map(|(_, value)| value)
}

/// 303 back to the page without the token in its address, the token now in the cookie.
fn remember_token(state: &AppState, token: &Secret) -> Response {
    let secure = match Url::parse(state.environment_url()) {
        Ok(url) if url.scheme() == "https" => "; Secure",
        _ => "",
    };
    let cookie = format!(
        "{}={}; Path=/_emulator/; HttpOnly; SameSite=Strict{secure}",
        cookie_name(state),
        token.expose()
    );
    // The configuration admits only tokens that make a cookie value (`Config::validate`).
    let Ok(cookie) = HeaderValue::from_str(&cookie) else {
        return ApiError::new(
            GrpcCode::Internal,
            "the control token cannot be put in a cookie",
        )
        .into_response();
    };
    (
        StatusCode::SEE_OTHER,
        [
            (LOCATION, HeaderValue::from_static("ui")),
            (SET_COOKIE, cookie),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        ],
    )
        .into_response()
}

fn unauthenticated(message: &'static str) -> Response {
    let mut response = ApiError::new(GrpcCode::Unauthenticated, message).into_response();
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"emulator control API\""),
    );
    response
}

/// `GET`, `HEAD` and `OPTIONS` change nothing.
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Exactly one `Content-Type`, `application/json` (parameters such as `charset` allowed).
fn is_json(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(CONTENT_TYPE).iter();
    let Some(value) = values.next() else {
        return false;
    };
    values.next().is_none()
        && value.to_str().ok().is_some_and(|value| {
            let essence = value.split(';').next().unwrap_or_default().trim();
            essence.eq_ignore_ascii_case("application/json")
        })
}

/// 415 in the gateway shape, naming what was sent.
fn not_json(headers: &HeaderMap) -> Response {
    let sent = match headers.get(CONTENT_TYPE) {
        Some(value) => shown(&String::from_utf8_lossy(value.as_bytes())),
        None => "none".to_owned(),
    };
    let error = ApiError::invalid_argument(
        "the control API takes state-changing calls as JSON only: send Content-Type: \
         application/json (curl: -H 'content-type: application/json')",
        vec![violation(
            "content-type",
            format!("must be application/json, not {sent}"),
        )],
    );
    (StatusCode::UNSUPPORTED_MEDIA_TYPE, error).into_response()
}

fn shown(text: &str) -> String {
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).expect("a header value"));
        }
        headers
    }

    #[test]
    fn only_application_json_is_json() {
        assert!(is_json(&headers(&[("content-type", "application/json")])));
        assert!(is_json(&headers(&[(
            "content-type",
            "Application/JSON; charset=utf-8"
        )])));
        for not_json in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
            "",
        ] {
            assert!(
                !is_json(&headers(&[("content-type", not_json)])),
                "{not_json}"
            );
        }
        assert!(!is_json(&HeaderMap::new()));
        assert!(!is_json(&headers(&[
            ("content-type", "application/json"),
            ("content-type", "text/plain"),
        ])));
    }

    #[test]
    fn the_cookie_is_found_by_its_exact_name_in_any_cookie_header() {
        let sent = headers(&[
            ("cookie", "a=1; emulator_control_84000=x"),
            ("cookie", "emulator_control_8400=tok; b=2"),
        ]);
        assert_eq!(cookie(&sent, "emulator_control_8400"), Some("tok"));
        assert_eq!(cookie(&sent, "emulator_control"), None);
    }
}
