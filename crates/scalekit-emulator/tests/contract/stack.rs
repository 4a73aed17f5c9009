//! The deterministic emulator every contract test runs against, and the requests they make.

use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow, ensure};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use scalekit_emulator::types::{PkceVerifier, pkce_s256};
use scalekit_emulator::{App, ClientConfig, Config, Deps, ManualClock, SequentialIds, Signer};
use scalekit_wire::{Secret, UserClaims};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use url::Url;

pub const FIXTURE: &str = include_str!("../../../../fixtures/environment.toml");
const USERS: &str = include_str!("../../../../fixtures/users.toml");
/// TEST ONLY: a fixed RSA-2048 key so that `kid`, JWKS and signatures are stable.
const SIGNING_KEY_PEM: &str = include_str!("signing_key.pem");

pub const ENVIRONMENT_URL: &str = "http://emulator.test";
pub const START: u64 = 1_800_000_000;
pub const API_CLIENT_ID: &str = "skc_81920374650192837";
pub const API_CLIENT_SECRET: &str = "test_sk_testbed_dev_secret_not_for_production";
pub const CONNECTION: &str = "conn_81920374650192838";
pub const RESOURCE: &str = "res_81920374650192839";
pub const SERVER_URL: &str = "http://127.0.0.1:8402/mcp";
pub const AGENT: &str = "m2m_81920374650192842";
pub const AGENT_SECRET: &str = "test_agent_secret_testbed_dev_not_for_production";
pub const CLIENT: &str = "contract-client";
pub const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const SCOPE: &str = "openid profile email offline_access mcp:read";

/// `fixtures/users.toml`, read without depending on `your-app`.
#[derive(Debug, Deserialize)]
struct Users {
    personas: Vec<Persona>,
}

#[derive(Debug, Deserialize)]
struct Persona {
    name: String,
    claims: UserClaims,
}

/// The claims "Your App" posts for persona `name`.
pub fn persona(name: &str) -> Result<UserClaims> {
    let users: Users = toml::from_str(USERS)?;
    users
        .personas
        .into_iter()
        .find(|persona| persona.name == name)
        .map(|persona| persona.claims)
        .ok_or_else(|| anyhow!("no persona {name}"))
}

/// A running emulator on `127.0.0.1:0`, answering as `http://emulator.test`.
pub struct Stack {
    address: String,
    pub http: reqwest::Client,
    pub clock: ManualClock,
}

/// A response reduced to what the contract is about.
pub struct Answer {
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    pub location: Option<String>,
    pub body: String,
}

impl Answer {
    async fn read(response: reqwest::Response) -> Result<Answer> {
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|value: &reqwest::header::HeaderValue| value.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header(CONTENT_TYPE);
        let cache_control = header(CACHE_CONTROL);
        let location = header(LOCATION);
        Ok(Answer {
            status: response.status(),
            content_type,
            cache_control,
            location,
            body: response.text().await?,
        })
    }

    /// Asserts the status and a JSON body, and returns the body.
    pub fn json(&self, status: StatusCode) -> Result<Value> {
        ensure!(
            self.status == status,
            "expected {status}, got {}: {}",
            self.status,
            self.body
        );
        ensure!(
            self.content_type.as_deref() == Some("application/json"),
            "content type {:?}",
            self.content_type
        );
        Ok(serde_json::from_str(&self.body)?)
    }

    /// Like [`Answer::json`], for token-endpoint answers, which must not be cached.
    pub fn token_json(&self, status: StatusCode) -> Result<Value> {
        ensure!(
            self.cache_control.as_deref() == Some("no-store"),
            "Cache-Control {:?}",
            self.cache_control
        );
        self.json(status)
    }

    /// The HTML body with the inline stylesheet cut out: snapshots are about what a page says,
    /// and the browser suite's screenshots show how it looks.
    pub fn html(&self) -> String {
        match (self.body.find("<style>"), self.body.find("</style>")) {
            (Some(start), Some(end)) if start < end => format!(
                "{}<style>[stylesheet]{}",
                &self.body[..start],
                &self.body[end..]
            ),
            _ => self.body.clone(),
        }
    }

    /// Asserts a 400 hosted error page and returns the HTML (without its stylesheet).
    pub fn error_page(&self) -> Result<String> {
        ensure!(
            self.status == StatusCode::BAD_REQUEST,
            "expected 400, got {}: {}",
            self.status,
            self.body
        );
        ensure!(
            self.content_type
                .as_deref()
                .is_some_and(|value| value.starts_with("text/html")),
            "content type {:?}",
            self.content_type
        );
        Ok(self.html())
    }

    /// Asserts a 302 and returns the `Location` split into its base and query pairs (in order).
    pub fn redirect(&self) -> Result<Value> {
        ensure!(
            self.status == StatusCode::FOUND,
            "expected 302, got {}: {}",
            self.status,
            self.body
        );
        let location = Url::parse(self.location.as_deref().context("no Location")?)?;
        let mut base = location.clone();
        base.set_query(None);
        let query: Vec<Value> = location
            .query_pairs()
            .map(|(name, value)| json!([name, value]))
            .collect();
        Ok(json!({ "location": base.as_str(), "query": query }))
    }

    /// The value of a query parameter of the `Location`.
    pub fn location_param(&self, name: &str) -> Result<String> {
        let location = Url::parse(self.location.as_deref().context("no Location")?)?;
        location
            .query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
            .ok_or_else(|| anyhow!("{name} missing from {location}"))
    }
}

/// What a finished sign-in hands the client.
pub struct SignedIn {
    pub code: String,
}

impl Stack {
    pub async fn spawn() -> Result<Stack> {
        Self::spawn_with(|_| {}).await
    }

    /// The fixture plus one public client, edited by `edit`.
    pub async fn spawn_with(edit: impl FnOnce(&mut Config)) -> Result<Stack> {
        let mut config = Config::from_toml_str(FIXTURE)?;
        config.public_url = Some(Url::parse(ENVIRONMENT_URL)?);
        config.clients.push(ClientConfig {
            client_id: CLIENT.to_owned(),
            redirect_uris: vec!["http://127.0.0.1/callback".to_owned()],
            resource: RESOURCE.to_owned(),
            client_secret: None,
            client_name: Some("Contract Client".to_owned()),
        });
        edit(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let clock = ManualClock::at(START);
        let deps = Deps {
            clock: Arc::new(clock.clone()),
            ids: Arc::new(SequentialIds::new()),
            signing_key_pem: Some(Secret::new(SIGNING_KEY_PEM)),
            ..Deps::default()
        };
        let app = App::from_listener_with(listener, config, deps)?;
        let address = format!("http://{}", app.local_addr());
        tokio::spawn(app.serve());
        // The browser of every sign-in: it keeps the sign-in's cookie (Decisions §9).
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_store(true)
            .build()?;
        Ok(Stack {
            address,
            http,
            clock,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> Result<Answer> {
        Answer::read(self.http.get(self.url(path)).send().await?).await
    }

    pub async fn get_query(&self, path: &str, query: &[(&str, &str)]) -> Result<Answer> {
        Answer::read(self.http.get(self.url(path)).query(query).send().await?).await
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Result<Answer> {
        Answer::read(self.http.post(self.url(path)).form(form).send().await?).await
    }

    pub async fn post_json(
        &self,
        path: &str,
        bearer: Option<&str>,
        body: &Value,
    ) -> Result<Answer> {
        let mut request = self.http.post(self.url(path)).json(body);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        Answer::read(request.send().await?).await
    }

    pub async fn management_token(&self) -> Result<String> {
        let answer = self
            .post_form(
                "/oauth/token",
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", API_CLIENT_ID),
                    ("client_secret", API_CLIENT_SECRET),
                ],
            )
            .await?;
        let body = answer.token_json(StatusCode::OK)?;
        Ok(body["access_token"]
            .as_str()
            .context("access_token")?
            .to_owned())
    }

    /// `GET /oauth/authorize` for the contract client, with `extra` replacing or adding
    /// parameters (an empty value removes one).
    pub async fn authorize(&self, extra: &[(&str, &str)]) -> Result<Answer> {
        let challenge = pkce_s256(&PkceVerifier::parse(VERIFIER).context("verifier")?);
        let mut query: Vec<(&str, &str)> = vec![
            ("response_type", "code"),
            ("client_id", CLIENT),
            ("redirect_uri", REDIRECT_URI),
            ("scope", SCOPE),
            ("state", "client-state-1"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("nonce", "nonce-1"),
            ("resource", SERVER_URL),
        ];
        for (name, value) in extra {
            query.retain(|(existing, _)| existing != name);
            if !value.is_empty() {
                query.push((name, value));
            }
        }
        self.get_query("/oauth/authorize", &query).await
    }

    /// Authorize; returns `(login_request_id, state)`.
    pub async fn start_login(&self) -> Result<(String, String)> {
        let answer = self.authorize(&[]).await?;
        ensure!(
            answer.status == StatusCode::FOUND,
            "authorize: {}",
            answer.body
        );
        Ok((
            answer.location_param("login_request_id")?,
            answer.location_param("state")?,
        ))
    }

    pub async fn post_user(&self, lri: &str, token: Option<&str>, user: &Value) -> Result<Answer> {
        let path = format!("/api/v1/connections/{CONNECTION}/auth-requests/{lri}/user");
        self.post_json(&path, token, user).await
    }

    pub async fn callback(&self, state: &str) -> Result<Answer> {
        let path = format!("/sso/v1/connections/{CONNECTION}/partner:callback");
        self.get_query(&path, &[("state", state)]).await
    }

    /// Authorize with `extra`, post `user`, come back: the code.
    pub async fn sign_in(&self, extra: &[(&str, &str)], user: &UserClaims) -> Result<SignedIn> {
        let token = self.management_token().await?;
        let answer = self.authorize(extra).await?;
        ensure!(
            answer.status == StatusCode::FOUND,
            "authorize: {}",
            answer.body
        );
        let lri = answer.location_param("login_request_id")?;
        let state = answer.location_param("state")?;
        let posted = self
            .post_user(&lri, Some(&token), &serde_json::to_value(user)?)
            .await?;
        posted.json(StatusCode::OK)?;
        let back = self.callback(&state).await?;
        ensure!(back.status == StatusCode::FOUND, "callback: {}", back.body);
        Ok(SignedIn {
            code: back.location_param("code")?,
        })
    }

    /// The authorization-code token request with `extra` replacing or adding fields.
    pub async fn exchange(&self, code: &str, extra: &[(&str, &str)]) -> Result<Answer> {
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT),
            ("code", code),
            ("code_verifier", VERIFIER),
            ("redirect_uri", REDIRECT_URI),
            ("resource", SERVER_URL),
        ];
        for (name, value) in extra {
            form.retain(|(existing, _)| existing != name);
            if !value.is_empty() {
                form.push((name, value));
            }
        }
        self.post_form("/oauth/token", &form).await
    }

    pub async fn refresh(&self, refresh_token: &str, extra: &[(&str, &str)]) -> Result<Answer> {
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT),
            ("refresh_token", refresh_token),
        ];
        form.extend_from_slice(extra);
        self.post_form("/oauth/token", &form).await
    }
}

/// The claims of a JWT signed by the test key, verified (signature only: `exp` is on the
/// emulator's manual clock, and the snapshot shows `iss`/`aud` anyway).
pub fn claims(token: &str) -> Result<Map<String, Value>> {
    let signer = Signer::from_pem(SIGNING_KEY_PEM)?;
    let header = jsonwebtoken::decode_header(token)?;
    ensure!(header.alg == Algorithm::RS256, "alg {:?}", header.alg);
    ensure!(
        header.kid.as_deref() == Some(signer.kid()),
        "kid {:?}",
        header.kid
    );
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let key: &DecodingKey = signer.decoding_key();
    Ok(jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation)?.claims)
}
