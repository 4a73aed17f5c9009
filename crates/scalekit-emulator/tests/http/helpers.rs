//! Spawns an emulator per test and drives the BYOA flow over HTTP.

use std::sync::{Arc, OnceLock};

use anyhow::{Context as _, Result, anyhow, ensure};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, LOCATION};
use scalekit_emulator::types::{PkceVerifier, pkce_s256};
use scalekit_emulator::{App, ClientConfig, Config, Deps, ManualClock, SequentialIds, Signer};
use scalekit_wire::Secret;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use url::Url;

pub const FIXTURE: &str = include_str!("../../../../fixtures/environment.toml");
pub const API_CLIENT_ID: &str = "skc_81920374650192837";
pub const API_CLIENT_SECRET: &str = "test_sk_testbed_dev_secret_not_for_production";
pub const CONNECTION: &str = "conn_81920374650192838";
pub const RESOURCE: &str = "res_81920374650192839";
pub const SERVER_URL: &str = "http://127.0.0.1:8402/mcp";
pub const PUBLIC_CLIENT: &str = "mcp-test-client";
pub const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

/// One signing key for the whole test binary: RSA generation is the slowest part of a spawn.
fn signing_key_pem() -> Secret {
    static PEM: OnceLock<Secret> = OnceLock::new();
    PEM.get_or_init(|| {
        Signer::generate()
            .expect("an RSA key")
            .private_key_pem()
            .clone()
    })
    .clone()
}

/// A running emulator with a manual clock and a client that does not follow redirects.
pub struct TestEnv {
    /// The environment URL without a trailing slash.
    pub base: String,
    pub http: reqwest::Client,
    pub clock: ManualClock,
}

impl TestEnv {
    pub async fn spawn() -> Result<TestEnv> {
        Self::spawn_with(|_| {}).await
    }

    /// Spawns with the fixture plus one pre-registered public client, edited by `edit`.
    pub async fn spawn_with(edit: impl FnOnce(&mut Config)) -> Result<TestEnv> {
        let mut config = Config::from_toml_str(FIXTURE)?;
        config.clients.push(ClientConfig {
            client_id: PUBLIC_CLIENT.to_owned(),
            redirect_uris: vec!["http://127.0.0.1/callback".to_owned()],
            resource: RESOURCE.to_owned(),
            client_secret: None,
            client_name: Some("Test <MCP> Client".to_owned()),
        });
        edit(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let clock = ManualClock::now();
        let deps = Deps {
            clock: Arc::new(clock.clone()),
            ids: Arc::new(SequentialIds::new()),
            signing_key_pem: Some(signing_key_pem()),
            ..Deps::default()
        };
        let app = App::from_listener_with(listener, config, deps)?;
        let base = app.base_url().as_str().trim_end_matches('/').to_owned();
        tokio::spawn(app.serve());
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_store(true)
            .build()?;
        Ok(TestEnv { base, http, clock })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> Result<reqwest::Response> {
        Ok(self.http.get(self.url(path)).send().await?)
    }

    /// Sends a control request with an optional raw JSON body; returns the status and the JSON
    /// body (`Value::Null` when empty). Every state-changing call says it is JSON, body or not, as
    /// the control API requires.
    pub async fn control(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&str>,
    ) -> Result<(StatusCode, Value)> {
        let mut request = self.http.request(method.clone(), self.url(path));
        if method != reqwest::Method::GET && method != reqwest::Method::HEAD {
            request = request.header("content-type", "application/json");
        }
        if let Some(body) = body {
            request = request.body(body.to_owned());
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).with_context(|| format!("not JSON: {text}"))?
        };
        Ok((status, body))
    }

    /// The `kid`s `/keys` publishes, in order.
    pub async fn published_kids(&self) -> Result<Vec<String>> {
        let jwks: Value = json(self.get("/keys").await?, StatusCode::OK).await?;
        jwks["keys"]
            .as_array()
            .context("keys")?
            .iter()
            .map(|key| Ok(key["kid"].as_str().context("kid")?.to_owned()))
            .collect()
    }

    /// POSTs a form to `/oauth/token`; asserts the status and `Cache-Control: no-store`.
    pub async fn token(&self, form: &[(&str, &str)], status: StatusCode) -> Result<Value> {
        let response = self
            .http
            .post(self.url("/oauth/token"))
            .form(form)
            .send()
            .await?;
        token_json(response, status).await
    }

    pub async fn management_token(&self) -> Result<String> {
        let body = self
            .token(
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", API_CLIENT_ID),
                    ("client_secret", API_CLIENT_SECRET),
                ],
                StatusCode::OK,
            )
            .await?;
        Ok(body["access_token"]
            .as_str()
            .context("access_token")?
            .to_owned())
    }

    /// `GET /oauth/authorize` for the public client with PKCE S256; returns the `Location`.
    pub async fn authorize(&self, extra: &[(&str, &str)]) -> Result<Url> {
        let challenge = pkce_s256(&PkceVerifier::parse(VERIFIER).context("verifier")?);
        let mut query: Vec<(&str, &str)> = vec![
            ("response_type", "code"),
            ("client_id", PUBLIC_CLIENT),
            ("redirect_uri", REDIRECT_URI),
            ("scope", "openid email offline_access mcp:read"),
            ("state", "client-state-1"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("nonce", "nonce-1"),
            ("resource", SERVER_URL),
        ];
        for (name, value) in extra {
            query.retain(|(existing, _)| existing != name);
            query.push((name, value));
        }
        let response = self
            .http
            .get(self.url("/oauth/authorize"))
            .query(&query)
            .send()
            .await?;
        location(response, StatusCode::FOUND)
    }

    /// Authorize and return `(login_request_id, state)` from the login endpoint redirect.
    pub async fn start_login(&self) -> Result<(String, String)> {
        let location = self.authorize(&[]).await?;
        ensure!(
            location
                .as_str()
                .starts_with("http://127.0.0.1:8401/login?"),
            "{location}"
        );
        Ok((
            query_param(&location, "login_request_id")?,
            query_param(&location, "state")?,
        ))
    }

    /// `POST …/auth-requests/{lri}/user` with a bearer token.
    pub async fn post_user(
        &self,
        lri: &str,
        token: Option<&str>,
        user: &Value,
    ) -> Result<reqwest::Response> {
        let url = self.url(&format!(
            "/api/v1/connections/{CONNECTION}/auth-requests/{lri}/user"
        ));
        let mut request = self.http.post(url).json(user);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Ok(request.send().await?)
    }

    pub async fn callback(&self, state: &str) -> Result<reqwest::Response> {
        let url = self.url(&format!(
            "/sso/v1/connections/{CONNECTION}/partner:callback"
        ));
        Ok(self.http.get(url).query(&[("state", state)]).send().await?)
    }

    /// Authorize, post Ada, come back: the redirect to the client.
    pub async fn sign_in(&self) -> Result<Url> {
        let token = self.management_token().await?;
        let (lri, state) = self.start_login().await?;
        let response = self.post_user(&lri, Some(&token), &ada()).await?;
        ensure!(
            response.status() == StatusCode::OK,
            "user post: {}",
            response.status()
        );
        location(self.callback(&state).await?, StatusCode::FOUND)
    }

    /// The code from a finished sign-in.
    pub async fn code(&self) -> Result<String> {
        let redirect = self.sign_in().await?;
        query_param(&redirect, "code")
    }

    pub async fn exchange(&self, code: &str, verifier: &str, status: StatusCode) -> Result<Value> {
        self.token(
            &[
                ("grant_type", "authorization_code"),
                ("client_id", PUBLIC_CLIENT),
                ("code", code),
                ("code_verifier", verifier),
                ("redirect_uri", REDIRECT_URI),
                ("resource", SERVER_URL),
            ],
            status,
        )
        .await
    }

    /// Decodes and verifies a JWT with the emulator's JWKS.
    pub async fn verify<T: DeserializeOwned>(&self, token: &str, audience: &str) -> Result<T> {
        let jwks: JwkSet = self.get("/keys").await?.json().await?;
        let header = jsonwebtoken::decode_header(token)?;
        let kid = header.kid.context("kid")?;
        let jwk = jwks
            .find(&kid)
            .ok_or_else(|| anyhow!("kid {kid} not in the JWKS"))?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[audience]);
        validation.set_issuer(&[&self.base]);
        Ok(jsonwebtoken::decode::<T>(token, &DecodingKey::from_jwk(jwk)?, &validation)?.claims)
    }
}

/// The header of a JWT, decoded without any check.
pub fn jwt_header(token: &str) -> Result<Value> {
    jwt_part(token, 0)
}

/// The payload of a JWT, decoded without any check.
pub fn jwt_claims(token: &str) -> Result<Value> {
    jwt_part(token, 1)
}

fn jwt_part(token: &str, index: usize) -> Result<Value> {
    use base64::Engine as _;
    let part = token.split('.').nth(index).context("a JWT part")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part)?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// Ada, as "Your App" posts her.
pub fn ada() -> Value {
    json!({
        "sub": "ada-1",
        "email": "ada@example.com",
        "email_verified": true,
        "given_name": "Ada",
        "family_name": "Lovelace",
        "name": "Ada Lovelace",
        "custom_attributes": {"plan": "pro"},
        "roles": ["admin"],
        "organization_external_id": "analytical-engines"
    })
}

/// Asserts the status and `Cache-Control: no-store`, then parses the JSON body.
pub async fn token_json(response: reqwest::Response, status: StatusCode) -> Result<Value> {
    let actual = response.status();
    let cache = response
        .headers()
        .get(CACHE_CONTROL)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body: Value = response.json().await?;
    ensure!(actual == status, "expected {status}, got {actual}: {body}");
    ensure!(
        cache.as_deref() == Some("no-store"),
        "Cache-Control was {cache:?}"
    );
    Ok(body)
}

/// Asserts the status and parses the JSON body.
pub async fn json(response: reqwest::Response, status: StatusCode) -> Result<Value> {
    let actual = response.status();
    let body: Value = response.json().await?;
    ensure!(actual == status, "expected {status}, got {actual}: {body}");
    Ok(body)
}

/// Asserts the status and returns the body text.
pub async fn text(response: reqwest::Response, status: StatusCode) -> Result<String> {
    let actual = response.status();
    let body = response.text().await?;
    ensure!(actual == status, "expected {status}, got {actual}: {body}");
    Ok(body)
}

/// Asserts the status and returns the `Location`.
pub fn location(response: reqwest::Response, status: StatusCode) -> Result<Url> {
    ensure!(
        response.status() == status,
        "expected {status}, got {}",
        response.status()
    );
    let location = response
        .headers()
        .get(LOCATION)
        .context("no Location")?
        .to_str()?;
    Ok(Url::parse(location)?)
}

/// Asserts the redirect to the environment's hosted error page (302 to `{env}/error`, never
/// cached) and returns its `error` and `error_description`.
pub fn error_page_redirect(env: &TestEnv, response: reqwest::Response) -> Result<(String, String)> {
    let cache_control = response.headers().get(CACHE_CONTROL).cloned();
    let target = location(response, StatusCode::FOUND)?;
    ensure!(
        target.as_str().starts_with(&format!("{}/error?", env.base)),
        "not the environment's error page: {target}"
    );
    ensure!(
        cache_control.as_ref().and_then(|value| value.to_str().ok()) == Some("no-store"),
        "Cache-Control {cache_control:?}"
    );
    Ok((
        query_param(&target, "error")?,
        query_param(&target, "error_description")?,
    ))
}

pub fn query_param(url: &Url, name: &str) -> Result<String> {
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
        .ok_or_else(|| anyhow!("{name} missing from {url}"))
}

/// The `@type` of the gateway's `ErrorInfo` detail.
pub const ERROR_INFO: &str = "type.googleapis.com/scalekit.v1.errdetails.ErrorInfo";

/// The gateway body of an INVALID_ARGUMENT with these field violations and the control API's
/// message.
pub fn invalid_argument(violations: Value) -> Value {
    json!({
        "code": 3,
        "message": "invalid request",
        "details": [{
            "@type": ERROR_INFO,
            "error_code": "INVALID_ARGUMENT",
            "validation_error_info": {"field_violations": violations}
        }]
    })
}
