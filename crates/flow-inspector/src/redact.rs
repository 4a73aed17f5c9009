//! Redaction for the flow inspector: the test bed's one rule of what is secret and how much of
//! it may be shown ([`scalekit_wire::redact`], re-exported here, which the emulator's request log
//! and the MCP client driver use too), plus the inspector's own size bounds, so that a hop stays
//! small whatever a client sends.

use serde_json::Value;

pub use scalekit_wire::redact::{
    SHOWN_CHARS, is_secret_header, is_secret_name, redact, redact_json, redact_query,
};

/// The longest request body, response body or URL a hop keeps, in bytes (cut on a character
/// boundary, then `…`).
pub const MAX_TEXT_BYTES: usize = 1024;

/// A header value longer than this is cut.
const MAX_HEADER_BYTES: usize = 256;

/// A URL (or a path with a query) redacted by the rule ([`scalekit_wire::redact::redact_url`]:
/// secret query values cut, fragment dropped), then cut to [`MAX_TEXT_BYTES`].
pub fn redact_url(url: &str) -> String {
    cut(&scalekit_wire::redact::redact_url(url), MAX_TEXT_BYTES)
}

/// A header value as a hop keeps it: credentials cut by the rule (the scheme of `Authorization`
/// kept, each cookie's name kept), then long values cut.
pub fn redact_header(name: &str, value: &str) -> String {
    cut(
        &scalekit_wire::redact::redact_header(name, value),
        MAX_HEADER_BYTES,
    )
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
    use super::*;

    #[test]
    fn the_inspectors_url_and_query_redaction_is_the_test_beds_one_rule() {
        let url = "http://127.0.0.1:8400/sso/v1/connections/conn_1/partner:callback\
                   ?state=q7Hx2mPzR4tVb8nK1sLc0dYfWgAeUiOoJ3yXhT5vN6E&code=abcdefghijkl&iss=x#at=1";
        assert_eq!(redact_url(url), scalekit_wire::redact::redact_url(url));
        assert_eq!(
            redact_url(url),
            "http://127.0.0.1:8400/sso/v1/connections/conn_1/partner:callback\
             ?state=q7Hx2m…&code=abcdef…&iss=x"
        );
        // The request log imports `redact_query` from here: the same function as the rule's.
        let query = "state=q7Hx2mPzR4tVb8nK1sLc0dYfWgAeUiOoJ3yXhT5vN6E&consent_id=cns_0123456789";
        assert_eq!(redact_query(query), "state=q7Hx2m…&consent_id=cns_01…");
        assert_eq!(redact_url("/oauth/token"), "/oauth/token");
    }

    #[test]
    fn a_long_url_is_cut_after_redaction() {
        let url = format!("http://h/cb?code=abcdefghijkl&pad={}", "x".repeat(2000));
        let kept = redact_url(&url);
        assert!(
            kept.starts_with("http://h/cb?code=abcdef…&pad=xxx"),
            "{kept}"
        );
        assert_eq!(kept.len(), MAX_TEXT_BYTES + '…'.len_utf8());
    }

    #[test]
    fn credential_headers_keep_their_scheme_and_cookie_names_and_long_values_are_cut() {
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
        let long = "y".repeat(300);
        assert_eq!(
            redact_header("x-long", &long).len(),
            MAX_HEADER_BYTES + '…'.len_utf8()
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
