//! `GET /sso/v1/connections/{conn}/partner:callback` (Decisions §6), from the browser that
//! started the sign-in (Decisions §9).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use scalekit_wire::OAuthErrorCode;

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
        Ok(CallbackOutcome::NeedsConsent(prompt)) => page(StatusCode::OK, consent_page(&prompt)),
        Err(error) => {
            let code = match &error {
                CallbackError::InvalidState(_) => OAuthErrorCode::InvalidState,
                CallbackError::Browser(refusal) => refusal.code(),
            };
            HostedErrorPage::new(code, error.to_string())
                .failed(error.failed_check())
                .into_response()
        }
    }
}
