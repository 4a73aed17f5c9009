//! The HTTP edge of Your App: thin handlers that parse requests and call the handoff.

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::header::{CACHE_CONTROL, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Router};
use scalekit_wire::{Secret, UserClaims};
use serde::Deserialize;
use url::Url;

use crate::AppState;
use crate::config::{Behaviour, Persona};
use crate::pages;
use crate::password::{DECOY_HASH, verify_password};
use crate::scalekit::{LoginRequestId, LoginState};

/// Every route of Your App.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(landing))
        .route("/healthz", get(healthz))
        .route("/login", get(login_page).post(login_submit))
        .with_state(state)
}

/// What Scalekit handed the login endpoint, validated: both values present and non-empty.
#[derive(Debug, Clone)]
pub struct LoginContinuation {
    /// The login request to post the user to.
    pub login_request_id: LoginRequestId,
    /// The state to hand back on `partner:callback`.
    pub state: LoginState,
}

impl LoginContinuation {
    /// Parses the two values, or names the missing ones.
    fn parse(
        login_request_id: Option<&str>,
        state: Option<&str>,
    ) -> Result<Self, Vec<&'static str>> {
        let login_request_id = login_request_id.and_then(LoginRequestId::parse);
        let state = state.and_then(LoginState::parse);
        match (login_request_id, state) {
            (Some(login_request_id), Some(state)) => Ok(Self {
                login_request_id,
                state,
            }),
            (login_request_id, state) => {
                let mut missing = Vec::new();
                if login_request_id.is_none() {
                    missing.push("login_request_id");
                }
                if state.is_none() {
                    missing.push("state");
                }
                Err(missing)
            }
        }
    }
}

async fn landing(State(app): State<AppState>) -> Response {
    pages::landing(app.personas())
}

async fn healthz() -> &'static str {
    "ok"
}

#[derive(Deserialize)]
struct LoginQuery {
    login_request_id: Option<String>,
    state: Option<String>,
    /// Filled in by the dev persona picker.
    username: Option<String>,
}

/// `GET /login`: Scalekit's "Login Endpoint URL".
async fn login_page(
    State(app): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<LoginQuery>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => return pages::bad_request(&rejection.body_text()),
    };
    let login =
        match LoginContinuation::parse(query.login_request_id.as_deref(), query.state.as_deref()) {
            Ok(login) => login,
            Err(missing) => return pages::missing_parameters(&missing),
        };
    if let Some(persona) = app.auto_login_persona() {
        return hand_off(&app, persona, &login).await;
    }
    if let Some(persona) = app
        .sessions()
        .persona_of(&headers)
        .and_then(|name| app.persona(&name))
    {
        return hand_off(&app, persona, &login).await;
    }
    pages::login_form(
        StatusCode::OK,
        app.personas(),
        &login.login_request_id,
        &login.state,
        query.username.as_deref().unwrap_or_default(),
        None,
    )
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    password: Option<Secret>,
    login_request_id: Option<String>,
    state: Option<String>,
}

/// `POST /login`: the sign-in form.
async fn login_submit(
    State(app): State<AppState>,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Form(form) = match form {
        Ok(form) => form,
        Err(rejection) => return pages::bad_request(&rejection.body_text()),
    };
    let login =
        match LoginContinuation::parse(form.login_request_id.as_deref(), form.state.as_deref()) {
            Ok(login) => login,
            Err(missing) => return pages::missing_parameters(&missing),
        };
    let password = form.password.unwrap_or_else(|| Secret::new(""));
    let persona = app.persona(&form.username);
    // An unknown user still costs one argon2 verification, so timing does not tell which
    // usernames exist.
    let hash = persona.map_or_else(
        || Secret::new(DECOY_HASH),
        |persona| persona.password_hash.clone(),
    );
    // Argon2 is deliberately slow: keep it off the async workers.
    let verified =
        tokio::task::spawn_blocking(move || verify_password(&hash, password.expose())).await;
    let verified = verified.unwrap_or_else(|error| {
        tracing::error!(%error, "password verification did not finish");
        false
    });
    let Some(persona) = persona.filter(|_| verified) else {
        // The username is not logged: people type passwords into the wrong field.
        tracing::info!("sign-in refused: unknown user or wrong password");
        return pages::login_form(
            StatusCode::UNAUTHORIZED,
            app.personas(),
            &login.login_request_id,
            &login.state,
            &form.username,
            Some("Unknown username or wrong password."),
        );
    };
    let set_cookie = match app.sessions().start(&persona.name) {
        Ok(set_cookie) => set_cookie,
        Err(error) => {
            tracing::error!(%error, "cannot start a session");
            return pages::internal_error();
        }
    };
    let mut response = hand_off(&app, persona, &login).await;
    if let Ok(value) = set_cookie.parse() {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

/// Steps 2 and 3 of the BYOA flow for a signed-in persona: post its claims for the login request,
/// then, only if Scalekit accepted them, send the browser to `partner:callback` with the state
/// exactly as received. On any failure the browser gets an error page instead (scalekit.md §7:
/// never redirect after a failed POST).
///
/// This is the one place the handoff happens, so a later `Behaviour` setting (deliberate
/// misbehaviour for negative tests) changes it here.
pub async fn hand_off(app: &AppState, persona: &Persona, login: &LoginContinuation) -> Response {
    let behaviour = app.behaviour();
    let scalekit = app.scalekit();
    let submitted = match behaviour {
        Behaviour::Correct
        | Behaviour::AlterState
        | Behaviour::DropState
        | Behaviour::CallbackServerSide => {
            scalekit
                .submit_user(&login.login_request_id, &persona.claims)
                .await
        }
        Behaviour::RedirectBeforePost => {
            tracing::warn!("misbehaving on purpose: redirecting without posting the user");
            return redirect(scalekit.partner_callback_url(&login.state));
        }
        Behaviour::OmitEmail | Behaviour::PhoneNotE164 | Behaviour::LoginFailed => {
            let claims = match behaviour {
                Behaviour::OmitEmail => UserClaims {
                    email: None,
                    ..persona.claims.clone()
                },
                Behaviour::PhoneNotE164 => UserClaims {
                    phone_number: Some("(415) 555-0101".to_owned()),
                    ..persona.claims.clone()
                },
                _ => UserClaims {
                    login_failed: true,
                    ..UserClaims::default()
                },
            };
            tracing::warn!(?behaviour, "misbehaving on purpose: posting altered claims");
            scalekit.submit_user(&login.login_request_id, &claims).await
        }
        Behaviour::BadBearer => {
            tracing::warn!(
                "misbehaving on purpose: posting with a bearer that is not a management token"
            );
            let url = scalekit.user_details_url(&login.login_request_id);
            let bogus = Secret::new("not-a-management-token");
            scalekit
                .submit_user_once(&url, Some(&bogus), &persona.claims)
                .await
        }
        Behaviour::ReuseLoginRequest => {
            let first = app.first_login_request(&login.login_request_id);
            if *first != login.login_request_id {
                tracing::warn!(
                    reused = first.as_str(),
                    "misbehaving on purpose: posting to the first login request again"
                );
            }
            scalekit.submit_user(first, &persona.claims).await
        }
        Behaviour::WrongConnection(connection_id) => {
            tracing::warn!(
                connection_id,
                "misbehaving on purpose: posting to another connection id"
            );
            let url = scalekit.user_details_url_for(connection_id, &login.login_request_id);
            scalekit.submit_user_once(&url, None, &persona.claims).await
        }
    };
    match submitted {
        Ok(accepted) => {
            tracing::info!(
                persona = %persona.name,
                login_request_id = login.login_request_id.as_str(),
                auth_request_id = %accepted.auth_request_id,
                "user submitted to scalekit; redirecting to partner:callback"
            );
            let mut callback = scalekit.partner_callback_url(&login.state);
            match behaviour {
                Behaviour::AlterState => {
                    let altered = format!("{}x", login.state.as_str());
                    callback
                        .query_pairs_mut()
                        .clear()
                        .append_pair("state", &altered);
                }
                Behaviour::DropState => callback.set_query(None),
                Behaviour::CallbackServerSide => return callback_server_side(callback).await,
                _ => {}
            }
            redirect(callback)
        }
        Err(error) => {
            tracing::warn!(
                persona = %persona.name,
                login_request_id = login.login_request_id.as_str(),
                error = %pages::error_chain(&error),
                "handing the login back to scalekit failed; not redirecting"
            );
            pages::scalekit_error(&error)
        }
    }
}

/// [`Behaviour::CallbackServerSide`]: Your App fetches `partner:callback` itself, with an HTTP
/// client of its own and so without the browser's cookies, then sends the browser where that
/// answer redirected (the client's `redirect_uri`, when the authorization server does not bind a
/// sign-in to its browser), or to its own landing page when it did not redirect.
async fn callback_server_side(callback: Url) -> Response {
    tracing::warn!("misbehaving on purpose: fetching partner:callback server-side");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build();
    let answer = match client {
        Ok(client) => client.get(callback).send().await.ok(),
        Err(_) => None,
    };
    let forwarded = answer
        .filter(|answer| answer.status().is_redirection())
        .and_then(|answer| {
            let location = answer.headers().get(LOCATION)?.to_str().ok()?;
            Url::parse(location).ok()
        });
    match forwarded {
        Some(location) => redirect(location),
        None => (
            StatusCode::FOUND,
            [(LOCATION, "/"), (CACHE_CONTROL, "no-store")],
        )
            .into_response(),
    }
}

fn redirect(location: Url) -> Response {
    (
        StatusCode::FOUND,
        [
            (LOCATION, location.to_string()),
            (CACHE_CONTROL, "no-store".to_owned()),
        ],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_continuation_names_every_missing_value() {
        assert_eq!(
            LoginContinuation::parse(None, Some("")).unwrap_err(),
            ["login_request_id", "state"]
        );
        assert_eq!(
            LoginContinuation::parse(Some("lri_1"), None).unwrap_err(),
            ["state"]
        );
        let login = LoginContinuation::parse(Some("lri_1"), Some("s")).unwrap();
        assert_eq!(login.login_request_id.as_str(), "lri_1");
        assert_eq!(login.state.as_str(), "s");
    }
}
