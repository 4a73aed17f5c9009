//! The HTML pages of Your App. Plain strings, no JavaScript; everything interpolated is escaped.

use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

use crate::config::Persona;
use crate::scalekit::{ErrorBody, LoginRequestId, LoginState, ScalekitError};

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

/// A whole page. `title` is escaped here; `body` must already be safe HTML.
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let title = escape(title);
    let html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n\
         <style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}}\
         label{{display:block;margin-top:.75rem}}input{{display:block;width:100%;padding:.3rem}}\
         button{{margin-top:.75rem}}.error{{color:#a00}}dt{{font-weight:bold}}</style>\n\
         </head>\n<body>\n<h1>{title}</h1>\n{body}</body>\n</html>\n"
    );
    (
        status,
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            // Login pages carry one-time values; a cached copy would replay them.
            (CACHE_CONTROL, "no-store"),
            // No scripts, no framing (clickjacking of the sign-in form). `form-action` is left
            // out on purpose: browsers apply it to the redirect that follows a form post, and
            // that redirect goes to Scalekit.
            (
                CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            ),
        ],
        html,
    )
        .into_response()
}

/// `GET /`: names the app and lists the personas (dev mode).
pub fn landing(personas: &[Persona]) -> Response {
    let mut body = String::from(
        "<p>The reference login service (\"Your App\") of the BYOA test bed. Scalekit sends \
         browsers to <code>/login</code> with a <code>login_request_id</code> and a \
         <code>state</code>.</p>\n<h2>Users (dev mode)</h2>\n",
    );
    body.push_str(&persona_list(personas));
    page(StatusCode::OK, "Your App", &body)
}

fn persona_list(personas: &[Persona]) -> String {
    let mut list = String::from("<dl>\n");
    for persona in personas {
        list.push_str(&format!(
            "<dt>{} <code>{}</code></dt><dd>{}</dd>\n",
            escape(&persona.display_name),
            escape(&persona.name),
            escape(&persona.description),
        ));
    }
    list.push_str("</dl>\n");
    list
}

/// `GET /login` or `POST /login` without the values needed to hand the login back to Scalekit.
pub fn missing_parameters(missing: &[&str]) -> Response {
    let names: Vec<String> = missing
        .iter()
        .map(|name| format!("<code>{}</code>", escape(name)))
        .collect();
    let body = format!(
        "<p class=\"error\">This login cannot continue: the request is missing {}.</p>\n\
         <p>Scalekit opens this page with <code>login_request_id</code> and <code>state</code> \
         query parameters. Without both, a successful login could not be handed back, so please \
         start again from your MCP client.</p>\n",
        names.join(" and ")
    );
    page(StatusCode::BAD_REQUEST, "Cannot sign in", &body)
}

/// A request Your App cannot read at all (a malformed query string or form body).
pub fn bad_request(reason: &str) -> Response {
    let body = format!(
        "<p class=\"error\">This request cannot be read: {}</p>\n\
         <p>Please start again from your MCP client.</p>\n",
        escape(reason)
    );
    page(StatusCode::BAD_REQUEST, "Cannot sign in", &body)
}

/// The sign-in form, with an optional error (wrong credentials).
pub fn login_form(
    status: StatusCode,
    personas: &[Persona],
    login_request_id: &LoginRequestId,
    state: &LoginState,
    username: &str,
    error: Option<&str>,
) -> Response {
    let login_request_id = escape(login_request_id.as_str());
    let state = escape(state.as_str());
    let username = escape(username);
    let mut body = String::new();
    if let Some(error) = error {
        body.push_str(&format!(
            "<p class=\"error\" role=\"alert\">{}</p>\n",
            escape(error)
        ));
    }
    body.push_str(&format!(
        "<form method=\"post\" action=\"/login\">\n\
         <input type=\"hidden\" name=\"login_request_id\" value=\"{login_request_id}\">\n\
         <input type=\"hidden\" name=\"state\" value=\"{state}\">\n\
         <label for=\"username\">Username</label>\n\
         <input id=\"username\" name=\"username\" type=\"text\" autocomplete=\"username\" \
         required value=\"{username}\">\n\
         <label for=\"password\">Password</label>\n\
         <input id=\"password\" name=\"password\" type=\"password\" \
         autocomplete=\"current-password\" required>\n\
         <button type=\"submit\">Sign in</button>\n\
         </form>\n"
    ));
    // Dev mode: each button reloads this page with the username filled in. Passwords are only in
    // the users file's comment, never on a page.
    body.push_str("<h2>Dev personas</h2>\n<form method=\"get\" action=\"/login\">\n");
    body.push_str(&format!(
        "<input type=\"hidden\" name=\"login_request_id\" value=\"{login_request_id}\">\n\
         <input type=\"hidden\" name=\"state\" value=\"{state}\">\n<ul>\n"
    ));
    for persona in personas {
        body.push_str(&format!(
            "<li><button type=\"submit\" name=\"username\" value=\"{}\">{}</button> {}</li>\n",
            escape(&persona.name),
            escape(&persona.display_name),
            escape(&persona.description),
        ));
    }
    body.push_str("</ul>\n</form>\n");
    page(status, "Sign in to Your App", &body)
}

/// A failed call to Scalekit: the login stops here, and the developer sees why.
pub fn scalekit_error(error: &ScalekitError) -> Response {
    let mut body = format!(
        "<p class=\"error\">Signing you in to the MCP client failed: {}.</p>\n\
         <p>The login was not handed back to Scalekit. Start again from your MCP client; if this \
         keeps happening, the details below say what Scalekit answered.</p>\n<dl>\n",
        escape(&error.to_string())
    );
    match error {
        ScalekitError::Transport { source, .. } => {
            body.push_str(&format!(
                "<dt>cause</dt><dd>{}</dd>\n",
                escape(&error_chain(source))
            ));
        }
        ScalekitError::UnexpectedBody { source, .. } => {
            body.push_str(&format!(
                "<dt>cause</dt><dd>{}</dd>\n",
                escape(&error_chain(source))
            ));
        }
        ScalekitError::Rejected {
            status,
            body: error_body,
            ..
        } => {
            body.push_str(&format!(
                "<dt>http status</dt><dd>{}</dd>\n",
                status.as_u16()
            ));
            body.push_str(&error_body_html(error_body));
        }
    }
    body.push_str("</dl>\n");
    page(StatusCode::BAD_GATEWAY, "Sign-in failed", &body)
}

/// An error and its sources, joined by `: ` (e.g. "error sending request: connection refused").
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    chain
}

fn error_body_html(error_body: &ErrorBody) -> String {
    match error_body {
        ErrorBody::Gateway(gateway) => {
            let mut html = format!(
                "<dt>code</dt><dd>{}</dd>\n<dt>message</dt><dd>{}</dd>\n",
                gateway.code,
                escape(&gateway.message)
            );
            for detail in &gateway.details {
                html.push_str(&format!(
                    "<dt>error_code</dt><dd>{}</dd>\n",
                    escape(&detail.error_code)
                ));
                for violation in detail
                    .validation_error_info
                    .iter()
                    .flat_map(|info| &info.field_violations)
                {
                    html.push_str(&format!(
                        "<dt>field <code>{}</code></dt><dd>{}</dd>\n",
                        escape(&violation.field),
                        escape(&violation.description)
                    ));
                }
            }
            html
        }
        ErrorBody::OAuth(oauth) => {
            let mut html = format!("<dt>error</dt><dd>{}</dd>\n", escape(&oauth.error));
            if let Some(description) = &oauth.error_description {
                html.push_str(&format!(
                    "<dt>error_description</dt><dd>{}</dd>\n",
                    escape(description)
                ));
            }
            html
        }
        ErrorBody::Text(text) => format!("<dt>body</dt><dd><pre>{}</pre></dd>\n", escape(text)),
    }
}

/// A failure inside Your App itself (e.g. no randomness for a session id).
pub fn internal_error() -> Response {
    page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "<p class=\"error\">Your App could not complete the request. Please try again.</p>\n",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_and_both_quotes() {
        assert_eq!(
            escape(r#"<a href="x" onclick='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; onclick=&#x27;y&#x27;&gt;&amp;&lt;/a&gt;"
        );
    }
}
