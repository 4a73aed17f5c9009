//! Test helpers: a fake Scalekit (token endpoint and user-details call) that records its requests,
//! and a Your App started on `127.0.0.1:0` against it.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use reqwest::header::{LOCATION, SET_COOKIE};
use scalekit_wire::{ErrorDetail, GatewayError, Secret};
use serde_json::{Value, json};
use url::Url;
use your_app::{App, Config, Persona, load_personas};

pub const CLIENT_ID: &str = "skc_81920374650192837";
pub const CLIENT_SECRET: &str = "test_sk_fake_secret";
pub const CONNECTION_ID: &str = "conn_81920374650192838";

/// A user-details call as the fake received it.
#[derive(Debug, Clone)]
pub struct UserPost {
    pub connection_id: String,
    pub login_request_id: String,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct Recorded {
    token_requests: Vec<HashMap<String, String>>,
    user_posts: Vec<UserPost>,
    /// Scripted answers to the next user posts; when empty, 200 with a `req_…` id.
    scripted_user_answers: VecDeque<(StatusCode, Value)>,
}

#[derive(Clone)]
struct FakeState {
    recorded: Arc<Mutex<Recorded>>,
    token_lifetime_secs: u64,
}

/// The fake Scalekit environment.
pub struct FakeScalekit {
    pub url: Url,
    state: FakeState,
}

impl FakeScalekit {
    /// Starts a fake whose management tokens live `token_lifetime_secs`.
    pub async fn start(token_lifetime_secs: u64) -> anyhow::Result<Self> {
        let state = FakeState {
            recorded: Arc::default(),
            token_lifetime_secs,
        };
        let router = Router::new()
            .route("/oauth/token", post(token))
            .route(
                "/api/v1/connections/{connection_id}/auth-requests/{login_request_id}/user",
                post(user_details),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = Url::parse(&format!("http://{}", listener.local_addr()?))?;
        tokio::spawn(async move { axum::serve(listener, router).await });
        Ok(Self { url, state })
    }

    /// Makes the next user-details calls answer these, in order.
    pub fn script_user_answers(&self, answers: impl IntoIterator<Item = (StatusCode, Value)>) {
        self.lock().scripted_user_answers.extend(answers);
    }

    pub fn token_requests(&self) -> Vec<HashMap<String, String>> {
        self.lock().token_requests.clone()
    }

    pub fn user_posts(&self) -> Vec<UserPost> {
        self.lock().user_posts.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.state
            .recorded
            .lock()
            .expect("the fake's lock is never poisoned")
    }
}

/// `POST /oauth/token`: client credentials as form fields, like Scalekit (scalekit.md §1).
async fn token(
    State(state): State<FakeState>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut recorded = state.recorded.lock().expect("not poisoned");
    recorded.token_requests.push(form.clone());
    let valid = form.get("grant_type").map(String::as_str) == Some("client_credentials")
        && form.get("client_id").map(String::as_str) == Some(CLIENT_ID)
        && form.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET);
    if !valid {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client", "error_description": "client authentication failed"})),
        )
            .into_response();
    }
    let number = recorded.token_requests.len();
    Json(json!({
        "access_token": format!("mgmt-token-{number}"),
        "token_type": "Bearer",
        "expires_in": state.token_lifetime_secs,
    }))
    .into_response()
}

async fn user_details(
    State(state): State<FakeState>,
    UrlPath((connection_id, login_request_id)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let mut recorded = state.recorded.lock().expect("not poisoned");
    recorded.user_posts.push(UserPost {
        connection_id,
        login_request_id,
        authorization: header("authorization"),
        content_type: header("content-type"),
        body: serde_json::from_str(&body).unwrap_or(Value::String(body)),
    });
    let number = recorded.user_posts.len();
    match recorded.scripted_user_answers.pop_front() {
        Some((status, answer)) => (status, Json(answer)).into_response(),
        None => Json(json!({"auth_request_id": format!("req_{number:018}")})).into_response(),
    }
}

/// Scalekit's gateway error body with one `ErrorInfo`.
pub fn gateway_error(code: i32, message: &str, error_code: &str) -> Value {
    serde_json::to_value(GatewayError {
        code,
        message: message.to_owned(),
        details: vec![ErrorDetail::new(error_code)],
    })
    .expect("serialisable")
}

/// The personas of `fixtures/users.toml`.
pub fn fixture_personas() -> anyhow::Result<Vec<Persona>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/users.toml");
    Ok(load_personas(&path)?)
}

pub fn persona(name: &str) -> anyhow::Result<Persona> {
    fixture_personas()?
        .into_iter()
        .find(|persona| persona.name == name)
        .context("no such fixture persona")
}

pub fn config(environment_url: &Url, auto_login: Option<&str>) -> anyhow::Result<Config> {
    Ok(Config {
        listen: "127.0.0.1:0".parse()?,
        public_url: None,
        allowed_hosts: Vec::new(),
        environment_url: environment_url.clone(),
        client_id: CLIENT_ID.to_owned(),
        client_secret: Secret::new(CLIENT_SECRET),
        connection_id: CONNECTION_ID.to_owned(),
        auto_login: auto_login.map(str::to_owned),
        behaviour: your_app::Behaviour::Correct,
        personas: fixture_personas()?,
        ca_cert_pem: None,
    })
}

/// A running Your App and a client that neither follows redirects nor keeps cookies (tests handle
/// cookies themselves to check their attributes).
pub struct TestApp {
    pub base_url: Url,
    pub http: reqwest::Client,
}

impl TestApp {
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let app = App::from_listener(listener, config)?;
        let base_url = app.base_url().clone();
        tokio::spawn(app.serve());
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { base_url, http })
    }

    /// `GET /login` with these query pairs (form-encoded by reqwest, as a browser would).
    pub async fn get_login(
        &self,
        query: &[(&str, &str)],
        cookie: Option<&str>,
    ) -> anyhow::Result<reqwest::Response> {
        let mut request = self.http.get(self.base_url.join("login")?).query(query);
        if let Some(cookie) = cookie {
            request = request.header(reqwest::header::COOKIE, cookie);
        }
        Ok(request.send().await?)
    }

    /// `POST /login` with these form fields.
    pub async fn post_login(&self, form: &[(&str, &str)]) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .http
            .post(self.base_url.join("login")?)
            .form(form)
            .send()
            .await?)
    }
}

/// Starts a fake Scalekit (tokens valid for an hour) and Your App against it.
pub async fn start_stack(auto_login: Option<&str>) -> anyhow::Result<(FakeScalekit, TestApp)> {
    let fake = FakeScalekit::start(3600).await?;
    let app = TestApp::start(config(&fake.url, auto_login)?).await?;
    Ok((fake, app))
}

/// The `partner:callback` URL Your App must redirect to, built independently of Your App.
pub fn expected_callback(fake: &FakeScalekit, state: &str) -> anyhow::Result<Url> {
    let mut url = fake.url.join(&format!(
        "/sso/v1/connections/{CONNECTION_ID}/partner:callback"
    ))?;
    url.query_pairs_mut().append_pair("state", state);
    Ok(url)
}

/// Asserts the status and returns the body.
pub async fn expect_status(response: reqwest::Response, status: u16) -> anyhow::Result<String> {
    let actual = response.status().as_u16();
    let body = response.text().await?;
    assert_eq!(actual, status, "unexpected status; body:\n{body}");
    Ok(body)
}

/// Asserts a 302 and returns its `Location`.
pub fn expect_redirect(response: &reqwest::Response) -> anyhow::Result<Url> {
    assert_eq!(response.status().as_u16(), 302, "expected a redirect");
    let location = response
        .headers()
        .get(LOCATION)
        .context("a redirect without Location")?
        .to_str()?;
    Ok(Url::parse(location)?)
}

/// The `name=value` pair of the session cookie the response sets, and the whole header.
pub fn session_cookie(response: &reqwest::Response) -> Option<(String, String)> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with(&format!("{}=", your_app::SESSION_COOKIE)))
        .map(|header| {
            let pair = header.split(';').next().unwrap_or_default().to_owned();
            (pair, header.to_owned())
        })
}
