//! `GET /error`: the hosted error page that the partner callback's `invalid_state` redirects the
//! browser to ([`super::error::ErrorPageRedirect`]). Its path is the emulator's decision:
//! Scalekit's docs give only `error=invalid_state` in the page's URL.
//!
//! The page only shows what its query says; the redirect that led here already carried the
//! facts of what went wrong. So that a link to it cannot make the environment's page say anything
//! but what the environment itself says, `error` must be one of the codes the emulator sends
//! ([`OAuthErrorCode`]) and `error_description` one of the descriptions it sends with them (the
//! partner callback's refusals); anything else is not shown.

use axum::extract::RawQuery;
use axum::response::{IntoResponse, Response};
use scalekit_wire::OAuthErrorCode;

use super::error::HostedErrorPage;
use crate::flow::CallbackRefusal;

/// The description of a partner callback without a `state`.
pub const STATE_REQUIRED: &str = "state is required";

/// Whether the environment itself sends `text` as an error description to this page.
fn sent_by_the_environment(text: &str) -> bool {
    text == STATE_REQUIRED
        || CallbackRefusal::ALL
            .iter()
            .any(|refusal| refusal.to_string() == text)
}

/// The page for `?error=…&error_description=…` (400, `no-store`): the first value of each
/// counts. Without an `error`, or with one the emulator never sends, the page says that instead
/// (`invalid_request`), without repeating the unknown code. A missing description is said to be
/// missing, and one the environment never sends is not repeated either.
pub(super) async fn error_page(RawQuery(query): RawQuery) -> Response {
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let first = |name: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let code = match first("error").filter(|error| !error.is_empty()) {
        None => {
            return HostedErrorPage::new(
                OAuthErrorCode::InvalidRequest,
                "the error page needs an error parameter",
            )
            .into_response();
        }
        Some(error) => match OAuthErrorCode::parse(error) {
            Some(code) => code,
            None => {
                return HostedErrorPage::new(
                    OAuthErrorCode::InvalidRequest,
                    "the error page was asked to show an error this environment does not send",
                )
                .into_response();
            }
        },
    };
    let description = match first("error_description").filter(|text| !text.trim().is_empty()) {
        None => "no description was given",
        Some(text) if sent_by_the_environment(text) => text,
        Some(_) => "the description given is not one this environment sends",
    };
    HostedErrorPage::new(code, description).into_response()
}
