//! `GET /sso/v1/connections/{conn}/partner:callback` (Decisions §6), from the browser that
//! started the sign-in (Decisions §9): the consent page, the redirect to the client, or the
//! redirect to the hosted `invalid_state` page.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use scalekit_wire::OAuthErrorCode;
use url::Url;

use super::browser::{ending_sign_in, presented_browser};
use super::error::HostedErrorPage;
use super::extract::{CallbackConnection, CallbackState};
use super::html::{consent_page, page};
use super::oauth::redirect_to;
use crate::flow::{CallbackError, CallbackOutcome};
use crate::state::AppState;

pub(super) async fn partner_callback(
    State(state): State<AppState>,
    CallbackConnection(connection): CallbackConnection,
    CallbackState(login_state): CallbackState,
    headers: HeaderMap,
) -> Response {
    let browser = presented_browser(&headers);
    let now = state.clock.now();
    let (sign_in, outcome) = {
        let mut flows = state.flows();
        let sign_in = flows.sign_in_of_state(&login_state);
        let outcome =
            flows.partner_callback(&connection, &login_state, &browser, now, state.ids.as_ref());
        (sign_in, outcome)
    };
    match outcome {
        Ok(CallbackOutcome::Redirect(redirect)) => {
            ending_sign_in(redirect_to(&redirect), sign_in.as_ref(), &state)
        }
        Ok(CallbackOutcome::NeedsConsent(prompt)) => page(
            StatusCode::OK,
            consent_page(&prompt, &environment_domain(state.environment_url())),
        ),
        // Scalekit shows its `invalid_state` page after the callback, with `error=invalid_state`
        // in the page's URL: a redirect to the environment's error page, never to the client.
        Err(error @ CallbackError::InvalidState(_)) => {
            HostedErrorPage::new(OAuthErrorCode::InvalidState, error.to_string())
                .failed(error.failed_check())
                .redirect_from(state.environment_url())
                .into_response()
        }
        // The browser-binding refusals (Decisions §9) are the emulator's own: their page is shown
        // at the callback's URL.
        Err(error @ CallbackError::Browser(refusal)) => {
            HostedErrorPage::new(refusal.code(), error.to_string())
                .failed(error.failed_check())
                .into_response()
        }
    }
}

/// The environment's domain as the consent page names it: the host (and port) of its URL.
fn environment_domain(environment_url: &str) -> String {
    let Ok(url) = Url::parse(environment_url) else {
        return environment_url.to_owned();
    };
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => environment_url.to_owned(),
    }
}
