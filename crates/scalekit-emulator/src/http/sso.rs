//! `GET /sso/v1/connections/{conn}/partner:callback` (Decisions §6).

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::error::HostedErrorPage;
use super::html::{consent_page, page};
use super::oauth::redirect_to;
use crate::flow::CallbackOutcome;

#[derive(Debug, Deserialize)]
pub(super) struct CallbackQuery {
    state: Option<String>,
}

pub(super) async fn partner_callback(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<CallbackQuery>, QueryRejection>,
) -> Response {
    let Ok(Path(connection)) = path else {
        return HostedErrorPage::new("invalid_state", "the connection in the path is malformed")
            .into_response();
    };
    let Ok(Query(CallbackQuery {
        state: Some(login_state),
    })) = query
    else {
        return HostedErrorPage::new("invalid_state", "state is required").into_response();
    };
    let now = state.clock.now();
    let outcome =
        state
            .flows()
            .partner_callback(&connection, &login_state, now, state.ids.as_ref());
    match outcome {
        Ok(CallbackOutcome::Redirect(redirect)) => redirect_to(&redirect),
        Ok(CallbackOutcome::NeedsConsent(prompt)) => page(StatusCode::OK, consent_page(&prompt)),
        Err(error) => HostedErrorPage::new("invalid_state", error.to_string()).into_response(),
    }
}
