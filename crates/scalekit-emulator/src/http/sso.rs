//! `GET /sso/v1/connections/{conn}/partner:callback` (Decisions §6).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use scalekit_wire::OAuthErrorCode;

use super::error::HostedErrorPage;
use super::extract::{CallbackConnection, CallbackState};
use super::html::{consent_page, page};
use super::oauth::redirect_to;
use crate::flow::CallbackOutcome;
use crate::state::AppState;

pub(super) async fn partner_callback(
    State(state): State<AppState>,
    CallbackConnection(connection): CallbackConnection,
    CallbackState(login_state): CallbackState,
) -> Response {
    let now = state.clock.now();
    let outcome =
        state
            .flows()
            .partner_callback(&connection, &login_state, now, state.ids.as_ref());
    match outcome {
        Ok(CallbackOutcome::Redirect(redirect)) => redirect_to(&redirect),
        Ok(CallbackOutcome::NeedsConsent(prompt)) => page(StatusCode::OK, consent_page(&prompt)),
        Err(error) => HostedErrorPage::new(OAuthErrorCode::InvalidState, error.to_string())
            .failed(error.failed_check())
            .into_response(),
    }
}
