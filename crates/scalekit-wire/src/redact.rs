//! The one redaction rule of the test bed: which query parameters, form fields, JSON members and
//! headers carry a secret, and how much of a secret a record may show.
//!
//! Three records show traffic and are compared with each other: the emulator's request log
//! (`/_emulator/requests`, its redacted queries), the flow inspector's hops (`/_emulator/flows`)
//! and the MCP client driver's hops. The app check matches a `state` seen by the driver's browser
//! with the one the request log saw at the partner callback, so all three must cut a value the
//! same way; this module is that rule, and each record calls it.
//!
//! The rule: a secret's value keeps at most [`SHOWN_CHARS`] characters, and never more than half
//! of the value, then [`CUT`] (`…`). Six characters of a 256-bit `state` (43 base64url
//! characters, as the emulator mints them) are 36 bits: two states of one run share them with a
//! chance of about one in 2³⁶ per pair, so a prefix tells them apart, while the 220 bits left
//! unshown keep the value unusable. Six is also what the request log has always shown, so an
//! emulator already running elsewhere and this rule agree. The half keeps a short value (a test's
//! `s7`) from being shown almost whole.

use serde_json::Value;

/// The most characters of a secret value a record shows.
pub const SHOWN_CHARS: usize = 6;

/// What follows the shown prefix of a cut value.
pub const CUT: char = '…';

/// Parameter and field names whose values are credentials or single-use values. `state` and
/// `nonce` are not credentials, but each binds a browser or a token to one sign-in, so they are
/// cut like one.
const SECRET_NAMES: &[&str] = &[
    "code",
    "code_verifier",
    "client_secret",
    "client_assertion",
    // A JWT assertion (RFC 7523 `jwt-bearer`): an ID-JAG is a bearer credential until it is
    // redeemed, so no record shows it.
    "assertion",
    "id_jag",
    "refresh_token",
    "access_token",
    "id_token",
    "id_token_hint",
    "token",
    "password",
    "state",
    "nonce",
    // Whoever holds a consent page's id can decide on it (the decision needs no cookie).
    "consent_id",
];

/// Headers whose whole value is a credential (after the authentication scheme, if any).
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

/// Whether a parameter, form field or JSON member named `name` carries a secret: the names
/// above, and any `…_secret` or `…_token` (`registration_access_token`), in any case.
pub fn is_secret_name(name: &str) -> bool {
    let ends_with = |suffix: &str| {
        name.len() >= suffix.len()
            && name.as_bytes()[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
    };
    SECRET_NAMES
        .iter()
        .any(|secret| secret.eq_ignore_ascii_case(name))
        || ends_with("_secret")
        || ends_with("_token")
}

/// Whether a header named `name` carries a credential.
pub fn is_secret_header(name: &str) -> bool {
    SECRET_HEADERS
        .iter()
        .any(|secret| secret.eq_ignore_ascii_case(name))
}

/// A secret value as a record shows it: at most [`SHOWN_CHARS`] characters and never more than
/// half of the value, then [`CUT`].
pub fn redact(value: &str) -> String {
    let mut shown = shown_prefix_of_raw(value);
    shown.push(CUT);
    shown
}

fn shown_prefix_of_raw(value: &str) -> String {
    let keep = (value.chars().count() / 2).min(SHOWN_CHARS);
    value.chars().take(keep).collect()
}

/// The prefix the rule shows of a value, given either the value itself or a record's redacted
/// form of it (which ends in [`CUT`]). Two records of one value give the same prefix, so this is
/// what compares a `state` across records.
pub fn shown_prefix(value: &str) -> String {
    match value.strip_suffix(CUT) {
        Some(redacted) => redacted.to_owned(),
        None => shown_prefix_of_raw(value),
    }
}

/// A query string or form body with the value of every secret parameter cut by [`redact`] (the
/// prefix percent-encoded again, [`CUT`] as it is); everything else exactly as sent.
pub fn redact_query(query: &str) -> String {
    let mut redacted = String::with_capacity(query.len());
    for (index, pair) in query.split('&').enumerate() {
        if index > 0 {
            redacted.push('&');
        }
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        // Only a secret's value is decoded.
        let secret = !raw_value.is_empty()
            && url::form_urlencoded::parse(raw_name.as_bytes())
                .next()
                .is_some_and(|(name, _)| is_secret_name(&name));
        let value = if secret {
            url::form_urlencoded::parse(pair.as_bytes())
                .next()
                .map(|(_, value)| value)
        } else {
            None
        };
        match value {
            Some(value) if !value.is_empty() => {
                redacted.push_str(raw_name);
                redacted.push('=');
                redacted.extend(url::form_urlencoded::byte_serialize(
                    shown_prefix_of_raw(&value).as_bytes(),
                ));
                redacted.push(CUT);
            }
            _ => redacted.push_str(pair),
        }
    }
    redacted
}

/// A URL (or a path with a query) with its query redacted by [`redact_query`] and its fragment
/// dropped: a fragment may carry tokens (the implicit flow), and no record needs it.
pub fn redact_url(url: &str) -> String {
    let without_fragment = url.split_once('#').map_or(url, |(before, _)| before);
    match without_fragment.split_once('?') {
        Some((base, query)) => format!("{base}?{}", redact_query(query)),
        None => without_fragment.to_owned(),
    }
}

/// A JSON value with every secret member's value cut: strings by [`redact`], anything else but
/// `null` replaced by `"…"`.
pub fn redact_json(value: &mut Value) {
    match value {
        Value::Object(members) => {
            // A gateway error's `code` is its gRPC code, what a reader needs, not an
            // authorization code.
            let gateway_error = members.contains_key("message");
            for (name, member) in members.iter_mut() {
                if is_secret_name(name) && !(gateway_error && name == "code") {
                    *member = match member {
                        Value::String(text) if !text.is_empty() => Value::String(redact(text)),
                        Value::String(_) | Value::Null => member.take(),
                        _ => Value::String(CUT.to_string()),
                    };
                } else {
                    redact_json(member);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_json),
        _ => {}
    }
}

/// A header value with its credentials cut: `Authorization` keeps its scheme, a cookie header
/// each cookie's name. Other headers are returned as they are.
pub fn redact_header(name: &str, value: &str) -> String {
    if !is_secret_header(name) {
        return value.to_owned();
    }
    if name.to_ascii_lowercase().ends_with("authorization") {
        return match value.split_once(' ') {
            Some((scheme, credentials)) => format!("{scheme} {}", redact(credentials.trim())),
            None => redact(value),
        };
    }
    value
        .split(';')
        .map(str::trim)
        .filter(|cookie| !cookie.is_empty())
        .map(|cookie| match cookie.split_once('=') {
            Some((cookie_name, cookie_value)) => format!("{cookie_name}={}", redact(cookie_value)),
            None => cookie.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A callback URL as all three records see it: the driver's browser, the request log and the
    /// flow inspector each redact it with this rule, so the app check can compare them.
    const CALLBACK: &str = "http://127.0.0.1:8400/sso/v1/connections/conn_1/partner:callback\
         ?state=q7Hx2mPzR4tVb8nK1sLc0dYfWgAeUiOoJ3yXhT5vN6E&iss=http%3A%2F%2F127.0.0.1%3A8400";

    #[test]
    fn a_secret_keeps_six_characters_at_most_and_never_more_than_half() {
        assert_eq!(SHOWN_CHARS, 6);
        assert_eq!(
            redact("q7Hx2mPzR4tVb8nK1sLc0dYfWgAeUiOoJ3yXhT5vN6E"),
            "q7Hx2m…"
        );
        assert_eq!(redact("abcdefgh"), "abcd…");
        assert_eq!(redact("s7"), "s…");
        assert_eq!(redact("x"), "…");
        assert_eq!(redact("ééééééééééééé"), "éééééé…");
    }

    #[test]
    fn a_state_shows_the_same_prefix_in_every_record_of_the_rule() {
        let redacted = redact_url(CALLBACK);
        assert_eq!(
            redacted,
            "http://127.0.0.1:8400/sso/v1/connections/conn_1/partner:callback\
             ?state=q7Hx2m…&iss=http%3A%2F%2F127.0.0.1%3A8400"
        );
        let (_, query) = CALLBACK.split_once('?').unwrap_or_default();
        assert_eq!(
            redact_query(query),
            redacted.split_once('?').unwrap_or_default().1,
            "the request log's query is the URL's"
        );
        let state = "q7Hx2mPzR4tVb8nK1sLc0dYfWgAeUiOoJ3yXhT5vN6E";
        assert_eq!(shown_prefix(state), "q7Hx2m");
        assert_eq!(shown_prefix(&redact(state)), "q7Hx2m");
        assert_eq!(shown_prefix("abcdef"), shown_prefix(&redact("abcdef")));
    }

    #[test]
    fn secret_query_parameters_are_cut_and_the_rest_kept_as_sent() {
        assert_eq!(
            redact_query("code=secret0000000042&client_id=mcp&state=client-state-1&scope=a+b"),
            "code=secret…&client_id=mcp&state=client…&scope=a+b"
        );
        assert_eq!(
            redact_query("code=abcd&refresh_token=x&registration_access_token=abcdefghij"),
            "code=ab…&refresh_token=…&registration_access_token=abcde…"
        );
        assert_eq!(
            redact_query("nonce=n-0123456789&client_id=c"),
            "nonce=n-0123…&client_id=c"
        );
    }

    #[test]
    fn encoded_names_and_values_are_recognised_and_stay_encoded() {
        assert_eq!(
            redact_query("client%5Fsecret=a%2Fb%2Fc%2Fd%2Fe%2Ff%2Fg&flag&empty="),
            "client%5Fsecret=a%2Fb%2Fc%2F…&flag&empty="
        );
    }

    #[test]
    fn a_url_loses_its_fragment_and_its_secret_values() {
        assert_eq!(
            redact_url("http://127.0.0.1:9/callback?code=abcdefghijkl&state=s1234567&iss=x#at=1"),
            "http://127.0.0.1:9/callback?code=abcdef…&state=s123…&iss=x"
        );
        assert_eq!(
            redact_url("http://h/cb#access_token=tok&token_type=Bearer"),
            "http://h/cb"
        );
        assert_eq!(redact_url("/oauth/token"), "/oauth/token");
    }

    #[test]
    fn json_members_are_redacted_at_any_depth_and_a_gateway_error_keeps_its_code() {
        let mut body = json!({
            "access_token": "eyJhbGciOiJSUzI1NiJ9.payload.signature",
            "token_type": "Bearer",
            "nested": [{"client_secret": "sk_live_0123456789", "client_id": "skc_1"}],
            "refresh_token": null,
            "password": 1234,
        });
        redact_json(&mut body);
        assert_eq!(
            body,
            json!({
                "access_token": "eyJhbG…",
                "token_type": "Bearer",
                "nested": [{"client_secret": "sk_liv…", "client_id": "skc_1"}],
                "refresh_token": null,
                "password": "…",
            })
        );
        let mut gateway = json!({"code": 5, "message": "login request not found", "details": []});
        redact_json(&mut gateway);
        assert_eq!(
            gateway,
            json!({"code": 5, "message": "login request not found", "details": []})
        );
    }

    #[test]
    fn credential_headers_keep_their_scheme_and_cookie_names_only() {
        assert!(is_secret_header("Proxy-Authorization"));
        assert!(!is_secret_header("content-type"));
        assert_eq!(
            redact_header("Authorization", "Bearer eyJhbGciOiJSUzI1NiJ9.x.y"),
            "Bearer eyJhbG…"
        );
        assert_eq!(
            redact_header("cookie", "ya_session=0123456789abcdef; theme=dark"),
            "ya_session=012345…; theme=da…"
        );
        assert_eq!(
            redact_header("content-type", "application/json"),
            "application/json"
        );
    }

    #[test]
    fn secret_names_are_matched_in_any_case_and_by_suffix() {
        for name in [
            "CODE",
            "State",
            "nonce",
            "consent_id",
            "x_secret",
            "id_TOKEN",
            "assertion",
            "id_jag",
            "subject_token",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in ["client_id", "scope", "iss", "codes", "redirect_uri"] {
            assert!(!is_secret_name(name), "{name}");
        }
    }
}
