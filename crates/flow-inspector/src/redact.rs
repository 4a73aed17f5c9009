//! Redaction for the flow inspector: credential values in queries, form and JSON bodies and
//! headers are cut to a short prefix and `…` (the request log's rule), and long texts are cut so
//! that a hop stays small whatever a client sends.

use serde_json::Value;

/// The longest request body, response body or URL a hop keeps, in bytes (cut on a character
/// boundary, then `…`).
pub const MAX_TEXT_BYTES: usize = 1024;

/// A header value longer than this is cut.
const MAX_HEADER_BYTES: usize = 256;

/// Parameter and field names whose values are credentials or single-use values. `state` is not a
/// credential, but it binds a browser to a sign-in, so it is treated as the request log treats it.
const SECRET_NAMES: &[&str] = &[
    "code",
    "code_verifier",
    "client_secret",
    "client_assertion",
    "assertion",
    "refresh_token",
    "access_token",
    "id_token",
    "id_token_hint",
    "token",
    "password",
    "state",
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
/// above, and any `…_secret` or `…_token` (`registration_access_token`).
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

/// At most 6 characters, and never more than half of the value, then `…`: enough to tell two
/// values apart, too little to use one (the same rule as the control API's request log).
pub fn redact(value: &str) -> String {
    let keep = (value.chars().count() / 2).min(6);
    let prefix: String = value.chars().take(keep).collect();
    format!("{prefix}…")
}

/// A query string or form body with the value of every secret parameter cut by [`redact`]
/// (the prefix percent-encoded again); everything else exactly as sent.
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
                let cut = redact(&value);
                let prefix = cut.trim_end_matches('…');
                redacted.push_str(raw_name);
                redacted.push('=');
                redacted.extend(url::form_urlencoded::byte_serialize(prefix.as_bytes()));
                redacted.push('…');
            }
            _ => redacted.push_str(pair),
        }
    }
    redacted
}

/// A URL (or a path with a query) with its query redacted and its fragment dropped (a fragment
/// may carry tokens in the implicit flow, and no hop here needs it).
pub fn redact_url(url: &str) -> String {
    let without_fragment = url.split_once('#').map_or(url, |(before, _)| before);
    let redacted = match without_fragment.split_once('?') {
        Some((base, query)) => format!("{base}?{}", redact_query(query)),
        None => without_fragment.to_owned(),
    };
    cut(&redacted, MAX_TEXT_BYTES)
}

/// A JSON value with every secret member's value cut: strings by [`redact`], anything else
/// replaced by `"…"`.
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
                        _ => Value::String("…".to_owned()),
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

/// A header value as a hop keeps it: credentials cut (the scheme of `Authorization` kept, each
/// cookie's name kept), long values cut.
pub fn redact_header(name: &str, value: &str) -> String {
    if !is_secret_header(name) {
        return cut(value, MAX_HEADER_BYTES);
    }
    let name = name.to_ascii_lowercase();
    if name.ends_with("authorization") {
        return match value.split_once(' ') {
            Some((scheme, credentials)) => format!("{scheme} {}", redact(credentials.trim())),
            None => redact(value),
        };
    }
    let cookies: Vec<String> = value
        .split(';')
        .map(str::trim)
        .filter(|cookie| !cookie.is_empty())
        .map(|cookie| match cookie.split_once('=') {
            Some((cookie_name, cookie_value)) => format!("{cookie_name}={}", redact(cookie_value)),
            None => cookie.to_owned(),
        })
        .collect();
    cut(&cookies.join("; "), MAX_HEADER_BYTES)
}

/// A request or response body as a hop keeps it: a form's secret fields and a JSON document's
/// secret members cut, other text as it is, binary bodies described; then cut to
/// [`MAX_TEXT_BYTES`].
pub fn redact_body(content_type: Option<&str>, body: &[u8]) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return Some(format!("<{} bytes, not UTF-8>", body.len()));
    };
    let content_type = content_type.unwrap_or_default().to_ascii_lowercase();
    let redacted = if content_type.starts_with("application/x-www-form-urlencoded") {
        redact_query(text)
    } else if let Ok(mut json) = serde_json::from_str::<Value>(text) {
        redact_json(&mut json);
        json.to_string()
    } else if content_type.contains("json") || content_type.is_empty() {
        // Not JSON after all and no type to go by: a form-shaped body is still redacted as one.
        if text.contains('=') && !text.contains(char::is_whitespace) {
            redact_query(text)
        } else {
            text.to_owned()
        }
    } else {
        text.to_owned()
    };
    Some(cut(&redacted, MAX_TEXT_BYTES))
}

/// `text` cut to at most `max_bytes` bytes on a character boundary, with `…` when cut.
pub fn cut(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_owned();
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secret_query_parameters_keep_six_characters_at_most() {
        assert_eq!(
            redact_query("code=secret0000000042&client_id=mcp&state=client-state-1&scope=a+b"),
            "code=secret…&client_id=mcp&state=client…&scope=a+b"
        );
        assert_eq!(
            redact_query("code=abcd&refresh_token=x&registration_access_token=abcdefghij"),
            "code=ab…&refresh_token=…&registration_access_token=abcde…"
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
        assert_eq!(redact_url("/oauth/token"), "/oauth/token");
    }

    #[test]
    fn json_members_are_redacted_at_any_depth() {
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
    }

    #[test]
    fn a_gateway_error_keeps_its_code_and_a_consent_id_is_cut() {
        let mut body = json!({"code": 5, "message": "login request not found", "details": []});
        redact_json(&mut body);
        assert_eq!(
            body,
            json!({"code": 5, "message": "login request not found", "details": []})
        );
        assert_eq!(
            redact_query("consent_id=cns_0123456789&decision=approve"),
            "consent_id=cns_01…&decision=approve"
        );
    }

    #[test]
    fn credential_headers_keep_their_scheme_and_cookie_names_only() {
        assert_eq!(
            redact_header("Authorization", "Bearer eyJhbGciOiJSUzI1NiJ9.x.y"),
            "Bearer eyJhbG…"
        );
        assert_eq!(
            redact_header("authorization", "Basic c2tjXzE6c2VjcmV0"),
            "Basic c2tjXz…"
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
    fn bodies_are_redacted_by_their_type_and_cut_at_one_kibibyte() {
        assert_eq!(
            redact_body(
                Some("application/x-www-form-urlencoded"),
                b"grant_type=authorization_code&code=0123456789&code_verifier=dBjftJeZ4CVP"
            )
            .as_deref(),
            Some("grant_type=authorization_code&code=01234…&code_verifier=dBjftJ…")
        );
        assert_eq!(
            redact_body(
                Some("application/json"),
                br#"{"username":"ada","password":"pw-1"}"#
            )
            .as_deref(),
            Some(r#"{"password":"pw…","username":"ada"}"#)
        );
        assert_eq!(redact_body(None, b"").as_deref(), None);
        assert_eq!(
            redact_body(Some("application/octet-stream"), &[0xff, 0xfe]).as_deref(),
            Some("<2 bytes, not UTF-8>")
        );
        let long = "x".repeat(5000);
        let kept = redact_body(Some("text/plain"), long.as_bytes()).unwrap_or_default();
        assert_eq!(kept.len(), MAX_TEXT_BYTES + '…'.len_utf8());
    }

    #[test]
    fn cutting_respects_character_boundaries() {
        assert_eq!(cut("ééé", 3), "é…");
        assert_eq!(cut("abc", 3), "abc");
    }
}
