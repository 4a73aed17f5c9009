//! HTML escaping and the consent page.

use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, X_FRAME_OPTIONS};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use crate::flow::ConsentPrompt;

/// An HTML page that is never cached and never framed (the consent form must not be
/// clickjacked).
pub fn page(status: StatusCode, body: String) -> Response {
    let mut response = (status, Html(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    response
}

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#x27;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// The consent page: resource, client, scopes and redirect host, with approve and deny buttons.
pub fn consent_page(prompt: &ConsentPrompt) -> String {
    let scopes: String = prompt
        .scopes
        .as_slice()
        .iter()
        .map(|scope| format!("<li><code>{}</code></li>\n", escape(scope)))
        .collect();
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>Authorize {client}</title>\n</head>\n<body>\n<main>\n\
         <h1><span id=\"client_name\">{client}</span> wants to access <span id=\"resource_name\">{resource}</span></h1>\n\
         <p>Signed in as <span id=\"user\">{user}</span>.</p>\n\
         <p>It asks for these scopes:</p>\n<ul id=\"scopes\">\n{scopes}</ul>\n\
         <p>You will be sent back to <strong id=\"redirect_host\">{host}</strong>.</p>\n\
         <form method=\"post\" action=\"/oauth/consent\">\n\
         <input type=\"hidden\" name=\"consent_id\" value=\"{consent_id}\">\n\
         <button type=\"submit\" id=\"approve\" name=\"decision\" value=\"approve\">Allow</button>\n\
         <button type=\"submit\" id=\"deny\" name=\"decision\" value=\"deny\">Deny</button>\n\
         </form>\n</main>\n</body>\n</html>\n",
        client = escape(&prompt.client_name),
        resource = escape(&prompt.resource_name),
        user = escape(&prompt.user),
        host = escape(&prompt.redirect_host),
        consent_id = escape(prompt.consent_id.as_str()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#x27;&amp;&#x27;&lt;/a&gt;"
        );
    }
}
