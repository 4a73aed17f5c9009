//! The HTML pages of Your App. Plain strings, no JavaScript; everything interpolated is escaped.

use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use testbed_web::escape;

use crate::config::Persona;
use crate::scalekit::{ErrorBody, LoginRequestId, LoginState, ScalekitError};

/// The one stylesheet of Your App's pages. Inline, because the CSP allows no other source; teal
/// so that a person can tell Your App's pages from the emulator's (indigo) during a sign-in.
const STYLESHEET: &str = "\
*{box-sizing:border-box}\
body{margin:0;padding:1.5rem 1rem 3rem;font:1rem/1.5 system-ui,sans-serif;color:#1f2937;background:#f3f4f6}\
header,main{max-width:34rem;margin:0 auto}\
header{padding:0 0 .75rem;color:#115e59;font-weight:600}\
header span{color:#4b5563;font-weight:400}\
main{background:#fff;border:1px solid #d1d5db;border-radius:.5rem;padding:1.5rem 2rem}\
h1{font-size:1.5rem;line-height:1.25;margin:0 0 1rem}\
h2{font-size:1.1rem;margin:2rem 0 .5rem;padding-top:1.25rem;border-top:1px solid #e5e7eb}\
label{display:block;margin-top:1rem;font-weight:600}\
input{display:block;width:100%;margin-top:.25rem;padding:.5rem .6rem;font:inherit;border:1px solid #6b7280;border-radius:.25rem}\
button{font:inherit;cursor:pointer;border-radius:.25rem;padding:.5rem 1rem;border:1px solid #115e59}\
.primary{display:block;width:100%;margin-top:1.5rem;background:#115e59;color:#fff;font-weight:600}\
.primary:hover{background:#134e4a}\
.personas{list-style:none;margin:0;padding:0}\
.personas li{display:flex;gap:.75rem;align-items:baseline;padding:.4rem 0}\
.personas button{flex:none;min-width:10.5rem;text-align:left;background:#f0fdfa;color:#134e4a}\
.personas button[aria-current]{background:#115e59;color:#fff}\
.hint{color:#4b5563;font-size:.9rem}\
.error{color:#b91c1c;font-weight:600}\
:focus-visible{outline:3px solid #1d4ed8;outline-offset:2px}\
code{font:.9em ui-monospace,monospace}\
dt{font-weight:600}dd{margin:0 0 .5rem}\
pre{white-space:pre-wrap;overflow-wrap:anywhere}";

/// A whole page. `title` is escaped here; `body` must already be safe HTML.
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let title = escape(title);
    let html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{title}</title>\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <style>{STYLESHEET}</style>\n\
         </head>\n<body>\n<header>Your App <span>· the reference login service</span></header>\n\
         <main>\n<h1>{title}</h1>\n{body}</main>\n</body>\n</html>\n"
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
         <code>state</code>; this app signs the person in, posts their details to Scalekit and \
         sends the browser back.</p>\n<h2>Users (dev mode)</h2>\n",
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

/// The sign-in form, with an optional error (wrong credentials), and the dev persona picker.
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
    let chosen = username;
    let username = escape(username);
    // The cursor starts where the person types next: the password once the username is known
    // (picked persona, or a failed attempt), else the username. `autofocus` needs no script.
    let (username_focus, password_focus) = if username.is_empty() {
        (" autofocus", "")
    } else {
        ("", " autofocus")
    };
    let mut body = String::new();
    if let Some(error) = error {
        body.push_str(&format!(
            "<p class=\"error\" role=\"alert\">{}</p>\n",
            escape(error)
        ));
    }
    body.push_str(&format!(
        "<p>Sign in to continue to your MCP client.</p>\n\
         <form method=\"post\" action=\"/login\">\n\
         <input type=\"hidden\" name=\"login_request_id\" value=\"{login_request_id}\">\n\
         <input type=\"hidden\" name=\"state\" value=\"{state}\">\n\
         <label for=\"username\">Username</label>\n\
         <input id=\"username\" name=\"username\" type=\"text\" autocomplete=\"username\" \
         autocapitalize=\"none\" spellcheck=\"false\"{username_focus} required value=\"{username}\">\n\
         <label for=\"password\">Password</label>\n\
         <input id=\"password\" name=\"password\" type=\"password\" \
         autocomplete=\"current-password\"{password_focus} required>\n\
         <button type=\"submit\" id=\"sign_in\" class=\"primary\">Sign in</button>\n\
         </form>\n"
    ));
    // Dev mode: each button reloads this page with the username filled in. Passwords are only in
    // the users file's comment, never on a page.
    body.push_str(
        "<h2 id=\"personas_heading\">Dev personas</h2>\n\
         <p class=\"hint\">Pick a test user to fill in the username. Their passwords are in the \
         comment at the top of <code>fixtures/users.toml</code>.</p>\n\
         <form method=\"get\" action=\"/login\">\n",
    );
    body.push_str(&format!(
        "<input type=\"hidden\" name=\"login_request_id\" value=\"{login_request_id}\">\n\
         <input type=\"hidden\" name=\"state\" value=\"{state}\">\n\
         <ul class=\"personas\" aria-labelledby=\"personas_heading\">\n"
    ));
    for (index, persona) in personas.iter().enumerate() {
        let current = if persona.name == chosen {
            " aria-current=\"true\""
        } else {
            ""
        };
        body.push_str(&format!(
            "<li><button type=\"submit\" name=\"username\" value=\"{name}\" \
             aria-describedby=\"persona_{index}\"{current}>{display_name}</button> \
             <span id=\"persona_{index}\" class=\"hint\"><code>{name}</code> · {description}</span></li>\n",
            name = escape(&persona.name),
            display_name = escape(&persona.display_name),
            description = escape(&persona.description),
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
    use scalekit_wire::{Secret, UserClaims};

    use super::*;

    fn persona(name: &str, display_name: &str) -> Persona {
        Persona {
            name: name.to_owned(),
            display_name: display_name.to_owned(),
            description: format!("{display_name} <test>"),
            password_hash: Secret::new("$argon2id$unused"),
            claims: UserClaims::default(),
        }
    }

    async fn login_page(username: &str) -> String {
        let response = login_form(
            StatusCode::OK,
            &[
                persona("ada", "Ada Lovelace"),
                persona("grace", "Grace Hopper"),
            ],
            &LoginRequestId::parse("lri_1").unwrap(),
            &LoginState::parse("s").unwrap(),
            username,
            None,
        );
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_fresh_login_page_starts_in_the_username_field_and_marks_no_persona() {
        let page = login_page("").await;

        assert!(page.contains(r#"autocomplete="username" autocapitalize="none" spellcheck="false" autofocus required value="">"#), "{page}");
        assert!(!page.contains("aria-current="), "{page}");
        assert!(page.contains(
            r#"<button type="submit" name="username" value="ada" aria-describedby="persona_0">Ada Lovelace</button> <span id="persona_0" class="hint"><code>ada</code> · Ada Lovelace &lt;test&gt;</span>"#
        ), "{page}");
    }

    #[tokio::test]
    async fn a_picked_persona_is_marked_and_the_cursor_waits_in_the_password_field() {
        let page = login_page("grace").await;

        assert!(
            page.contains(r#"spellcheck="false" required value="grace">"#),
            "{page}"
        );
        assert!(
            page.contains(r#"autocomplete="current-password" autofocus required>"#),
            "{page}"
        );
        assert!(page.contains(
            r#"value="grace" aria-describedby="persona_1" aria-current="true">Grace Hopper</button>"#
        ), "{page}");
        assert!(
            page.contains(r#"value="ada" aria-describedby="persona_0">"#),
            "{page}"
        );
    }
}
