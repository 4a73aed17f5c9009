//! The emulator's hosted pages: the consent page and the error page, and their one stylesheet.
//! Plain HTML, no JavaScript; everything interpolated is escaped (`testbed_web::escape`, the
//! test bed's one HTML escaping).

use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, X_FRAME_OPTIONS};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use testbed_web::escape;

use crate::flow::ConsentPrompt;

/// The one stylesheet of the hosted pages. Inline, because the CSP allows no other source;
/// indigo so that a person can tell the emulator's pages from Your App's (teal) during a sign-in.
const STYLESHEET: &str = "\
*{box-sizing:border-box}\
body{margin:0;padding:1.5rem 1rem 3rem;font:1rem/1.5 system-ui,sans-serif;color:#1f2937;background:#eef2ff}\
header,main{max-width:34rem;margin:0 auto}\
header{padding:0 0 .75rem;color:#3730a3;font-weight:600}\
header span{color:#4b5563;font-weight:400}\
main{background:#fff;border:1px solid #c7d2fe;border-radius:.5rem;padding:1.5rem 2rem}\
h1{font-size:1.5rem;line-height:1.3;margin:0 0 1rem}\
h2{font-size:1rem;margin:1.25rem 0 .5rem}\
ul{margin:0;padding-left:1.25rem}\
li{padding:.15rem 0}\
.scope-hint{color:#4b5563}\
.host{padding:.75rem 1rem;background:#f9fafb;border-left:4px solid #4338ca}\
.actions{display:flex;gap:.75rem;margin-top:1.5rem}\
button{flex:1;font:inherit;font-weight:600;cursor:pointer;border-radius:.25rem;padding:.6rem 1rem;border:1px solid #4338ca}\
#approve{background:#4338ca;color:#fff}\
#approve:hover{background:#3730a3}\
#deny{background:#fff;color:#3730a3}\
#error{color:#b91c1c}\
#error_description{font-size:1.1rem}\
#error_description::first-letter{text-transform:uppercase}\
.hint{color:#4b5563;font-size:.9rem}\
:focus-visible{outline:3px solid #1d4ed8;outline-offset:2px}\
code{font:.9em ui-monospace,monospace}";

/// An HTML page that is never cached and never framed (the consent form must not be
/// clickjacked), and loads nothing but its inline stylesheet.
pub fn page(status: StatusCode, body: String) -> Response {
    let mut response = (status, Html(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // No `form-action`: browsers apply it to the redirect that follows the consent post, and
    // that redirect goes to the client.
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    response
}

/// A whole document. `title` and `main` must already be safe HTML.
///
/// The title comes first in `<head>`, before the stylesheet: a raw excerpt of the page (a log
/// line, a client printing a body's first characters) then starts with what went wrong, not CSS.
fn document(title: &str, main: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{title}</title>\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <style>{STYLESHEET}</style>\n</head>\n<body>\n\
         <header>Scalekit <span>· emulated environment</span></header>\n\
         <main>\n{main}</main>\n</body>\n</html>\n"
    )
}

/// What a well-known scope lets the client do, in words a person reads on the consent page.
/// Scopes a resource defines itself (`mcp:read`) have no fixed meaning and are shown as they are.
fn scope_hint(scope: &str) -> Option<&'static str> {
    match scope {
        "openid" => Some("confirm who you are"),
        "profile" => Some("see your name and profile details"),
        "email" => Some("see your email address"),
        "phone" => Some("see your phone number"),
        "offline_access" => Some("keep access while you are away (a refresh token)"),
        _ => None,
    }
}

/// The consent page: the MCP server (resource) and the environment's domain (`127.0.0.1:8400`; a
/// custom domain is not emulated), as Scalekit's shows them, the client, the user, the scopes
/// and the redirect host, with approve and deny buttons.
pub fn consent_page(prompt: &ConsentPrompt, environment_domain: &str) -> String {
    let scopes: String = prompt
        .scopes
        .as_slice()
        .iter()
        .map(|scope| match scope_hint(scope) {
            Some(hint) => format!(
                "<li><code>{}</code> <span class=\"scope-hint\">— {hint}</span></li>\n",
                escape(scope)
            ),
            None => format!("<li><code>{}</code></li>\n", escape(scope)),
        })
        .collect();
    let client = escape(&prompt.client_name);
    let resource = escape(&prompt.resource_name);
    let main = format!(
        "<h1><span id=\"client_name\">{client}</span> wants to access \
         <span id=\"resource_name\">{resource}</span></h1>\n\
         <p>Signed in as <strong id=\"user\">{user}</strong> on \
         <strong id=\"environment_domain\">{domain}</strong>.</p>\n\
         <h2 id=\"scopes_heading\">It asks for these scopes</h2>\n\
         <ul id=\"scopes\" aria-labelledby=\"scopes_heading\">\n{scopes}</ul>\n\
         <p class=\"host\">Whichever you choose, you will be sent back to \
         <strong id=\"redirect_host\">{host}</strong>.</p>\n\
         <form method=\"post\" action=\"/oauth/consent\">\n\
         <input type=\"hidden\" name=\"consent_id\" value=\"{consent_id}\">\n\
         <div class=\"actions\">\n\
         <button type=\"submit\" id=\"approve\" name=\"decision\" value=\"approve\">Allow</button>\n\
         <button type=\"submit\" id=\"deny\" name=\"decision\" value=\"deny\">Deny</button>\n\
         </div>\n</form>\n\
         <p class=\"hint\">Allowing is remembered: the next sign-in of this client to this MCP \
         server with the same scopes skips this page.</p>\n",
        user = escape(&prompt.user),
        domain = escape(environment_domain),
        host = escape(&prompt.redirect_host),
        consent_id = escape(prompt.consent_id.expose()),
    );
    document(&format!("Authorize {client}"), &main)
}

/// The hosted error page: `error` is an OAuth-style code (`invalid_state`), `description` says
/// what went wrong. The title carries both, so the browser tab (and a screen reader, which reads
/// the title first) says what happened.
pub fn error_page(error: &str, description: &str) -> String {
    let error = escape(error);
    let description = escape(description);
    let main = format!(
        "<h1>Sign-in could not be completed</h1>\n\
         <p id=\"error_description\">{description}</p>\n\
         <p>Please restart sign-in from your MCP client.</p>\n\
         <p class=\"hint\">error=<code id=\"error\">{error}</code></p>\n"
    );
    document(&format!("Sign-in error: {error} ({description})"), &main)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_page_names_the_error_in_its_title_before_the_stylesheet() {
        let html = error_page("invalid_state", "the <sign-in> expired");

        assert!(
            html.contains(
                "<title>Sign-in error: invalid_state (the &lt;sign-in&gt; expired)</title>"
            )
        );
        assert!(html.contains("error=<code id=\"error\">invalid_state</code>"));
        assert!(html.contains("<p id=\"error_description\">the &lt;sign-in&gt; expired</p>"));
        assert!(html.find("<title>") < html.find("<style>"));
        assert!(!html.contains("<script"));
    }

    #[test]
    fn well_known_scopes_are_explained_and_others_shown_as_they_are() {
        assert_eq!(scope_hint("openid"), Some("confirm who you are"));
        assert_eq!(scope_hint("mcp:read"), None);
    }
}
