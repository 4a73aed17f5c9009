//! "Copy as curl": a hop as the `curl` command that repeats it, with every secret value
//! replaced by `<redacted>` (the hop holds only redacted values, so the command never carries a
//! credential; a person pastes their own in).

use serde_json::Value;

use super::Hop;
use super::redact::{is_secret_header, is_secret_name};

/// The placeholder a secret value becomes.
const PLACEHOLDER: &str = "<redacted>";

/// Request headers the command leaves out: curl sets them itself.
const LEFT_OUT: &[&str] = &["host", "content-length", "connection", "accept-encoding"];

/// The command, one option per line (a shell continues each with `\`).
pub fn render(hop: &Hop) -> String {
    let mut parts = vec![format!("curl -i {}", quote(&placeholder_query(&hop.url)))];
    if hop.method != "GET" || hop.request_body.is_some() {
        // Quoted like everything else: a method token may hold `&`, `|`, `$` or a backquote.
        parts.push(format!("-X {}", quote(&hop.method)));
    }
    for header in &hop.request_headers {
        if LEFT_OUT.contains(&header.name.as_str()) {
            continue;
        }
        let value = if is_secret_header(&header.name) {
            placeholder_header(&header.name, &header.value)
        } else {
            header.value.clone()
        };
        parts.push(format!(
            "-H {}",
            quote(&format!("{}: {value}", header.name))
        ));
    }
    if let Some(body) = &hop.request_body {
        let content_type = hop
            .request_headers
            .iter()
            .find(|header| header.name == "content-type")
            .map(|header| header.value.as_str())
            .unwrap_or_default();
        parts.push(format!(
            "--data-raw {}",
            quote(&placeholder_body(content_type, body))
        ));
    }
    parts.join(" \\\n  ")
}

/// A URL whose secret query values are the placeholder.
fn placeholder_query(url: &str) -> String {
    match url.split_once('?') {
        Some((base, query)) => format!("{base}?{}", placeholder_pairs(query)),
        None => url.to_owned(),
    }
}

fn placeholder_pairs(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((raw_name, value)) if !value.is_empty() => {
                let name: String = url::form_urlencoded::parse(raw_name.as_bytes())
                    .next()
                    .map(|(name, _)| name.into_owned())
                    .unwrap_or_default();
                if is_secret_name(&name) {
                    format!("{raw_name}={PLACEHOLDER}")
                } else {
                    pair.to_owned()
                }
            }
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn placeholder_header(name: &str, value: &str) -> String {
    if name.ends_with("authorization") {
        return match value.split_once(' ') {
            Some((scheme, _)) => format!("{scheme} {PLACEHOLDER}"),
            None => PLACEHOLDER.to_owned(),
        };
    }
    value
        .split("; ")
        .map(|cookie| match cookie.split_once('=') {
            Some((cookie_name, _)) => format!("{cookie_name}={PLACEHOLDER}"),
            None => cookie.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn placeholder_body(content_type: &str, body: &str) -> String {
    if content_type.starts_with("application/x-www-form-urlencoded") {
        return placeholder_pairs(body);
    }
    match serde_json::from_str::<Value>(body) {
        Ok(mut json) => {
            placeholder_json(&mut json);
            json.to_string()
        }
        Err(_) => body.to_owned(),
    }
}

fn placeholder_json(value: &mut Value) {
    match value {
        Value::Object(members) => {
            for (name, member) in members.iter_mut() {
                if is_secret_name(name) && !member.is_null() {
                    *member = Value::String(PLACEHOLDER.to_owned());
                } else {
                    placeholder_json(member);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(placeholder_json),
        _ => {}
    }
}

/// POSIX shell single quotes.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Actor, Header, ResponseSummary};

    fn hop(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Hop {
        Hop {
            seq: 1,
            started_at_ms: 0,
            duration_us: 0,
            from: Actor::McpClient,
            to: Actor::Emulator,
            method: method.to_owned(),
            url: url.to_owned(),
            summary: String::new(),
            request_headers: headers
                .iter()
                .map(|(name, value)| Header {
                    name: (*name).to_owned(),
                    value: (*value).to_owned(),
                })
                .collect(),
            request_body: body.map(str::to_owned),
            status: 200,
            response: ResponseSummary::default(),
            checks: Vec::new(),
            matched_by: None,
        }
    }

    #[test]
    fn a_token_request_becomes_a_post_with_placeholders_for_the_secrets() {
        let command = render(&hop(
            "POST",
            "http://127.0.0.1:8400/oauth/token",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("content-length", "120"),
                ("authorization", "Basic c2tjXz…"),
            ],
            Some("grant_type=authorization_code&code=abcdef…&code_verifier=dBjftJ…&client_id=c1"),
        ));
        assert_eq!(
            command,
            "curl -i 'http://127.0.0.1:8400/oauth/token' \\\n  \
             -X 'POST' \\\n  \
             -H 'content-type: application/x-www-form-urlencoded' \\\n  \
             -H 'authorization: Basic <redacted>' \\\n  \
             --data-raw 'grant_type=authorization_code&code=<redacted>&code_verifier=<redacted>&client_id=c1'"
        );
    }

    #[test]
    fn a_redirect_url_keeps_its_harmless_parameters_and_quotes_are_escaped() {
        let command = render(&hop(
            "GET",
            "http://127.0.0.1:8400/sso/v1/connections/conn_1/partner:callback?state=abc…&x=it's",
            &[("cookie", "ya_session=012345…; theme=da…")],
            None,
        ));
        assert_eq!(
            command,
            "curl -i 'http://127.0.0.1:8400/sso/v1/connections/conn_1/partner:callback?state=<redacted>&x=it'\\''s' \\\n  \
             -H 'cookie: ya_session=<redacted>; theme=<redacted>'"
        );
    }

    #[test]
    fn a_hostile_method_cannot_run_a_command_when_pasted() {
        let command = render(&hop("`reboot`&id&", "http://127.0.0.1:8400/x", &[], None));
        assert_eq!(
            command,
            "curl -i 'http://127.0.0.1:8400/x' \\\n  -X '`reboot`&id&'"
        );
    }

    #[test]
    fn json_bodies_get_placeholders_in_secret_members() {
        let command = render(&hop(
            "POST",
            "http://127.0.0.1:8402/mcp",
            &[
                ("content-type", "application/json"),
                ("authorization", "Bearer eyJhbG…"),
            ],
            Some(r#"{"jsonrpc":"2.0","method":"tools/call","params":{"token":"abc…"}}"#),
        ));
        assert!(
            command.contains("-H 'authorization: Bearer <redacted>'"),
            "{command}"
        );
        assert!(
            command.contains(
                r#"--data-raw '{"jsonrpc":"2.0","method":"tools/call","params":{"token":"<redacted>"}}'"#
            ),
            "{command}"
        );
    }
}
