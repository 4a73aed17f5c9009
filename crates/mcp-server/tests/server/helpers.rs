//! Spawns the server on `127.0.0.1:0` next to a fake Scalekit environment, mints tokens, and
//! speaks just enough MCP over Streamable HTTP to call a tool.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail, ensure};
use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use url::Url;

pub const RESOURCE_ID: &str = "res_81920374650192839";
pub const ACCEPT_MCP: &str = "application/json, text/event-stream";

/// An RSA signing key, its public JWK, and its public key as PEM (SubjectPublicKeyInfo, as
/// aws-lc-rs exports it): the secret of an algorithm-confusion token.
pub struct SigningKey {
    pub kid: String,
    pub encoding: EncodingKey,
    pub jwk: Value,
    pub public_key_pem: String,
}

impl SigningKey {
    pub fn generate(kid: &str) -> anyhow::Result<SigningKey> {
        let pair = KeyPair::generate(KeySize::Rsa2048).context("generating an RSA key")?;
        let pkcs8 = pair.as_der().context("exporting the key as PKCS#8")?;
        let body = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line)?);
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        let spki: PublicKeyX509Der<'static> = pair
            .public_key()
            .as_der()
            .context("exporting the public key as SPKI")?;
        let body = base64::engine::general_purpose::STANDARD.encode(spki.as_ref());
        let mut public_key_pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in body.as_bytes().chunks(64) {
            public_key_pem.push_str(std::str::from_utf8(line)?);
            public_key_pem.push('\n');
        }
        public_key_pem.push_str("-----END PUBLIC KEY-----\n");
        let encoding = EncodingKey::from_rsa_pem(pem.as_bytes())?;
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::RS256)?;
        jwk.common.key_id = Some(kid.to_owned());
        let mut jwk = serde_json::to_value(jwk)?;
        jwk["use"] = json!("sig");
        Ok(SigningKey {
            kid: kid.to_owned(),
            encoding,
            jwk,
            public_key_pem,
        })
    }

    /// An RS256 token with this key's `kid`.
    pub fn sign(&self, claims: &Value) -> anyhow::Result<String> {
        self.sign_as(Some(&self.kid), claims)
    }

    /// An RS256 token signed with this key, with `kid` (or none) in the header.
    pub fn sign_as(&self, kid: Option<&str>, claims: &Value) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = kid.map(str::to_owned);
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }

    /// An HS256 token with this key's `kid`, keyed by its public key PEM (algorithm confusion).
    pub fn sign_hs256_with_public_key(&self, claims: &Value) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        let secret = EncodingKey::from_secret(self.public_key_pem.as_bytes());
        Ok(jsonwebtoken::encode(&header, claims, &secret)?)
    }
}

/// An unsigned token: header `{"alg":"none","typ":"JWT"}` and an empty signature.
pub fn unsigned_token(claims: &Value) -> String {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = json!({"alg": "none", "typ": "JWT"});
    format!(
        "{}.{}.",
        engine.encode(header.to_string()),
        engine.encode(claims.to_string())
    )
}

/// A fake environment that serves only `GET /keys`, and counts the fetches.
#[derive(Clone)]
pub struct FakeEnvironment {
    pub url: Url,
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
}

#[derive(Clone)]
struct EnvironmentState {
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
}

async fn serve_keys(State(state): State<EnvironmentState>) -> Response {
    state.fetches.fetch_add(1, Ordering::SeqCst);
    if state.failing.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let keys = state.keys.lock().expect("the key list lock").clone();
    Json(json!({ "keys": keys })).into_response()
}

impl FakeEnvironment {
    pub async fn spawn(keys: Vec<Value>) -> anyhow::Result<FakeEnvironment> {
        let keys = Arc::new(Mutex::new(keys));
        let fetches = Arc::new(AtomicUsize::new(0));
        let failing = Arc::new(AtomicBool::new(false));
        let state = EnvironmentState {
            keys: Arc::clone(&keys),
            fetches: Arc::clone(&fetches),
            failing: Arc::clone(&failing),
        };
        let router = axum::Router::new()
            .route("/keys", get(serve_keys))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        // Scalekit environment URLs have no trailing slash; `Url` adds one to a bare origin.
        let url = Url::parse(&format!("http://{}", listener.local_addr()?))?;
        tokio::spawn(async move { axum::serve(listener, router).await });
        Ok(FakeEnvironment {
            url,
            keys,
            fetches,
            failing,
        })
    }

    /// `{env}` as Scalekit writes it in `iss`: no trailing slash.
    pub fn issuer(&self) -> String {
        self.url.as_str().trim_end_matches('/').to_owned()
    }

    pub fn set_keys(&self, keys: Vec<Value>) {
        *self.keys.lock().expect("the key list lock") = keys;
    }

    /// Whether `/keys` answers 500 (the fetch is still counted).
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    pub fn key_fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// The server under test, with its environment and signing key.
pub struct TestServer {
    pub environment: FakeEnvironment,
    pub key: SigningKey,
    /// `config.public_url` or `http://{local_addr}`: what the server publishes.
    pub base_url: Url,
    /// The published Server URL, `{base}/mcp`.
    pub mcp_url: Url,
    /// `http://{local_addr}`: where the tests send requests, even when a public URL is set.
    pub local_url: Url,
    pub metadata_url: String,
    pub http: reqwest::Client,
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

pub fn base_config(environment_url: Url) -> mcp_server::Config {
    mcp_server::Config {
        listen: "127.0.0.1:0".parse().expect("a socket address"),
        public_url: None,
        allowed_hosts: Vec::new(),
        environment_url,
        resource_id: RESOURCE_ID.to_owned(),
        scopes_supported: ["openid", "offline_access", "mcp:read", "mcp:write"]
            .map(str::to_owned)
            .to_vec(),
        required_scopes: vec!["mcp:read".to_owned()],
        resource_name: "Testbed MCP server".to_owned(),
        leeway_secs: 0,
        allowed_origins: Vec::new(),
        jwks_refetch_cooldown: mcp_server::DEFAULT_JWKS_REFETCH_COOLDOWN,
        mistake: mcp_server::Mistake::Correct,
        ca_cert_pem: None,
    }
}

impl TestServer {
    pub async fn spawn() -> anyhow::Result<TestServer> {
        TestServer::spawn_with(|_| {}).await
    }

    /// A server that makes `mistake` on purpose.
    pub async fn spawn_making(mistake: mcp_server::Mistake) -> anyhow::Result<TestServer> {
        TestServer::spawn_with(|config| config.mistake = mistake).await
    }

    /// A server whose config `adjust` may change before it starts.
    pub async fn spawn_with(
        adjust: impl FnOnce(&mut mcp_server::Config),
    ) -> anyhow::Result<TestServer> {
        let key = SigningKey::generate("snk_1")?;
        let environment = FakeEnvironment::spawn(vec![key.jwk.clone()]).await?;
        let mut config = base_config(environment.url.clone());
        adjust(&mut config);
        let app = mcp_server::App::bind(config).await?;
        let base_url = app.base_url().clone();
        let mcp_url = app.mcp_url();
        let local_url = Url::parse(&format!("http://{}", app.local_addr()))?;
        tokio::spawn(app.serve());
        let metadata_url = format!(
            "{}/.well-known/oauth-protected-resource/mcp",
            base_url.as_str().trim_end_matches('/')
        );
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(TestServer {
            environment,
            key,
            base_url,
            mcp_url,
            local_url,
            metadata_url,
            http,
        })
    }

    /// Claims like the emulator mints for an authorization-code token, valid for an hour.
    pub fn claims(&self) -> Value {
        let now = now();
        json!({
            "iss": self.environment.issuer(),
            "aud": [self.mcp_url.as_str(), RESOURCE_ID],
            "sub": "usr_100",
            "xuid": "ada",
            "email": "ada@example.com",
            "client_id": "m2m_200",
            "scope": "openid mcp:read",
            "scopes": ["openid", "mcp:read"],
            "jti": "tkn_300",
            "sid": "ses_400",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
        })
    }

    pub fn token(&self, claims: &Value) -> anyhow::Result<String> {
        self.key.sign(claims)
    }

    /// `path` on the local address.
    pub fn local(&self, path: &str) -> anyhow::Result<Url> {
        Ok(self.local_url.join(path)?)
    }

    /// POSTs one JSON-RPC message to `/mcp`.
    pub async fn post_mcp(
        &self,
        token: Option<&str>,
        session: Option<&str>,
        message: &Value,
    ) -> anyhow::Result<reqwest::Response> {
        Ok(self.mcp_request(token, session, message)?.send().await?)
    }

    /// POSTs `initialize` to `/mcp` with `token` and an `Origin` header.
    pub async fn initialize_from(
        &self,
        origin: &str,
        token: Option<&str>,
    ) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .mcp_request(token, None, &initialize_request())?
            .header(reqwest::header::ORIGIN, origin)
            .send()
            .await?)
    }

    /// The status `initialize` with `token` gets (no `Origin`).
    pub async fn initialize_status(&self, token: &str) -> anyhow::Result<u16> {
        let response = self
            .post_mcp(Some(token), None, &initialize_request())
            .await?;
        Ok(response.status().as_u16())
    }

    fn mcp_request(
        &self,
        token: Option<&str>,
        session: Option<&str>,
        message: &Value,
    ) -> anyhow::Result<reqwest::RequestBuilder> {
        let mut request = self
            .http
            .post(self.local("/mcp")?)
            .header(reqwest::header::ACCEPT, ACCEPT_MCP)
            .json(message);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        Ok(request)
    }

    /// Asserts a refusal: its status, its exact `WWW-Authenticate` and its exact body.
    pub async fn expect_refusal(
        &self,
        response: reqwest::Response,
        status: u16,
        www_authenticate: &str,
        body: Option<Value>,
    ) -> anyhow::Result<()> {
        assert_eq!(response.status().as_u16(), status);
        let header = response
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .context("a WWW-Authenticate header")?
            .to_str()?
            .to_owned();
        assert_eq!(header, www_authenticate);
        let text = response.text().await?;
        match body {
            Some(expected) => assert_eq!(serde_json::from_str::<Value>(&text)?, expected),
            None => assert_eq!(text, ""),
        }
        Ok(())
    }

    /// Asserts that `claims`, signed with the test key, get 401 `invalid_token` with `description`.
    pub async fn expect_invalid_token(&self, token: &str, description: &str) -> anyhow::Result<()> {
        let response = self
            .post_mcp(Some(token), None, &initialize_request())
            .await?;
        let header = format!(
            "Bearer realm=\"OAuth\", resource_metadata=\"{}\", scope=\"mcp:read\", error=\"invalid_token\", \
             error_description=\"{description}\"",
            self.metadata_url
        );
        let body = json!({"error": "invalid_token", "error_description": description});
        self.expect_refusal(response, 401, &header, Some(body))
            .await
    }

    /// `initialize`, `notifications/initialized`, then `tools/call whoami`, all with `token`;
    /// returns the tool result.
    pub async fn call_whoami(&self, token: &str) -> anyhow::Result<Value> {
        let (session, initialized) = self.initialize(token).await?;
        ensure!(
            initialized["result"]["serverInfo"]["name"] == "testbed-mcp-server",
            "unexpected initialize result: {initialized}"
        );
        self.call_whoami_in(token, session.as_deref()).await
    }

    /// `initialize` and `notifications/initialized`; returns the session id (if the server keeps
    /// sessions) and the `initialize` response.
    pub async fn initialize(&self, token: &str) -> anyhow::Result<(Option<String>, Value)> {
        let response = self
            .post_mcp(Some(token), None, &initialize_request())
            .await?;
        ensure!(
            response.status() == 200,
            "initialize answered {}",
            response.status()
        );
        let session = response
            .headers()
            .get("mcp-session-id")
            .map(|value| value.to_str().map(str::to_owned))
            .transpose()?;
        let initialized = read_jsonrpc_response(response).await?;
        let notification = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let response = self
            .post_mcp(Some(token), session.as_deref(), &notification)
            .await?;
        ensure!(
            response.status() == 202,
            "notifications/initialized answered {}",
            response.status()
        );
        Ok((session, initialized))
    }

    /// `tools/call whoami` in an initialized session; returns the JSON-RPC response.
    pub async fn call_whoami_in(
        &self,
        token: &str,
        session: Option<&str>,
    ) -> anyhow::Result<Value> {
        let call = json!({
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "whoami", "arguments": {}},
        });
        let response = self.post_mcp(Some(token), session, &call).await?;
        ensure!(
            response.status() == 200,
            "tools/call answered {}",
            response.status()
        );
        read_jsonrpc_response(response).await
    }
}

pub fn initialize_request() -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "mcp-server-tests", "version": "0.0.0"},
        },
    })
}

/// The JSON-RPC response in a plain JSON body or in the SSE stream's `data:` lines.
pub async fn read_jsonrpc_response(response: reqwest::Response) -> anyhow::Result<Value> {
    let is_sse = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/event-stream"));
    let text = response.text().await?;
    if !is_sse {
        return Ok(serde_json::from_str(&text)?);
    }
    for line in text.lines() {
        let Some(data) = line.strip_prefix("data:") else {
            continue;
        };
        let Ok(message) = serde_json::from_str::<Value>(data.trim()) else {
            continue;
        };
        if message.get("id").is_some() {
            return Ok(message);
        }
    }
    bail!("no JSON-RPC response in the event stream: {text:?}")
}
