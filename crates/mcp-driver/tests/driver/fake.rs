//! A tiny fake authorization server plus MCP resource server on one loopback port, with knobs
//! to break one thing at a time. Only what the driver touches is implemented.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::extract::{Form, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use openidconnect::core::{
    CoreIdToken, CoreIdTokenClaims, CoreJwsSigningAlgorithm, CoreRsaPrivateSigningKey,
};
use openidconnect::{AccessToken, JsonWebKeyId, PrivateSigningKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use url::Url;

const SIGNING_KEY_PEM: &str = include_str!("test_signing_key.pem");

/// A JWT-shaped (unsigned) access token whose payload is `{"sub":"usr_1","aud":["res_1"]}`.
const ACCESS_TOKEN: &str = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1c3JfMSIsImF1ZCI6WyJyZXNfMSJdfQ.sig";

/// What the fake gets wrong on purpose.
#[derive(Debug, Clone, Default)]
pub struct Knobs {
    /// `iss` on the callback: `None` = the right issuer; `Some(None)` = leave it out;
    /// `Some(Some(x))` = send `x`.
    pub callback_iss: Option<Option<String>>,
    /// Appended to the metadata `issuer`, making it differ from the one PRM lists.
    pub metadata_issuer_suffix: Option<String>,
    /// The login page answers 400 with an error page, at its own URL, instead of redirecting.
    pub login_page_fails: bool,
    /// The login page redirects to the hosted `invalid_state` page (`/error?error=…`), as the
    /// partner callback does when the state does not match.
    pub ends_on_invalid_state_page: bool,
    /// The token endpoint answers 400 `invalid_grant`.
    pub token_fails: bool,
    /// The PRM `resource` published (default: the MCP URL).
    pub resource: Option<String>,
    /// The ID token's `iss` (default: the environment URL, as Scalekit does).
    pub id_token_issuer: Option<String>,
    /// The 401 challenge has no `resource_metadata`, so the driver must probe well-known URLs.
    pub challenge_without_resource_metadata: bool,
    /// PRM is served only at the root well-known URL (the path-suffixed one is a 404).
    pub prm_only_at_root: bool,
    /// AS metadata is served only at `{issuer}/.well-known/openid-configuration`, the third
    /// URL of the spec's order.
    pub as_metadata_only_appended_openid: bool,
    /// No AS metadata anywhere.
    pub no_as_metadata: bool,
    /// The ID token's `at_hash` is computed over another access token.
    pub id_token_wrong_at_hash: bool,
    /// Registration answers 403 `access_denied`.
    pub registration_refused: bool,
    /// The authorize endpoint redirects to itself forever.
    pub authorize_loops: bool,
    /// `tools/call` answers 403 `insufficient_scope` with this scope until an authorization
    /// asked for it.
    pub tool_call_needs_scope: Option<String>,
    /// `tools/list` always answers 403 `insufficient_scope` (a scope upgrade that never works).
    pub always_insufficient_scope: bool,
    /// `token_endpoint_auth_methods_supported` in the AS metadata.
    pub token_endpoint_auth_methods: Option<Vec<String>>,
}

/// What the fake saw, for assertions.
#[derive(Debug, Default)]
pub struct Seen {
    pub authorize_query: HashMap<String, String>,
    pub authorize_count: usize,
    pub token_authorization: Vec<Option<String>>,
    pub token_forms: Vec<HashMap<String, String>>,
    pub registration: Option<Value>,
    pub mcp_authorization: Vec<String>,
}

struct Inner {
    base: Url,
    knobs: Knobs,
    seen: Mutex<Seen>,
    signing_key: CoreRsaPrivateSigningKey,
}

#[derive(Clone)]
pub struct Fake(Arc<Inner>);

impl Fake {
    pub fn base(&self) -> &Url {
        &self.0.base
    }

    pub fn mcp_url(&self) -> Url {
        self.0.base.join("mcp").expect("mcp url")
    }

    pub fn issuer(&self) -> String {
        format!("{}resources/res_1", self.0.base)
    }

    pub fn environment(&self) -> String {
        self.0.base.as_str().trim_end_matches('/').to_owned()
    }

    pub fn seen<T>(&self, read: impl FnOnce(&Seen) -> T) -> T {
        read(&self.0.seen.lock().expect("seen lock"))
    }

    fn record(&self, write: impl FnOnce(&mut Seen)) {
        write(&mut self.0.seen.lock().expect("seen lock"));
    }
}

/// Starts the fake on `127.0.0.1:0` and returns its handle.
pub async fn start(knobs: Knobs) -> anyhow::Result<Fake> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = Url::parse(&format!("http://{}/", listener.local_addr()?))?;
    let signing_key = CoreRsaPrivateSigningKey::from_pem(
        SIGNING_KEY_PEM,
        Some(JsonWebKeyId::new("snk_1".to_owned())),
    )
    .map_err(anyhow::Error::msg)
    .context("test signing key")?;
    let fake = Fake(Arc::new(Inner {
        base,
        knobs,
        seen: Mutex::default(),
        signing_key,
    }));
    let router = Router::new()
        .route(
            "/mcp",
            post(mcp).get(method_not_allowed).delete(method_not_allowed),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(suffixed_protected_resource),
        )
        .route(
            "/.well-known/oauth-protected-resource",
            get(root_protected_resource),
        )
        .route(
            "/.well-known/oauth-authorization-server/resources/res_1",
            get(inserted_authorization_server),
        )
        .route(
            "/resources/res_1/.well-known/openid-configuration",
            get(appended_openid_configuration),
        )
        .route("/keys", get(keys))
        .route("/register", post(register))
        .route("/oauth/authorize", get(authorize))
        .route("/login", get(login))
        .route("/error", get(error_page))
        .route("/oauth/token", post(token))
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(fake)
}

/// The hosted error page: what its URL says, 400.
async fn error_page(Query(query): Query<HashMap<String, String>>) -> Response {
    let error = query.get("error").cloned().unwrap_or_default();
    (
        StatusCode::BAD_REQUEST,
        [(CONTENT_TYPE, "text/html")],
        format!("<html><body><h1>Sign-in could not be completed</h1><p>{error}</p></body></html>"),
    )
        .into_response()
}

async fn method_not_allowed() -> StatusCode {
    StatusCode::METHOD_NOT_ALLOWED
}

async fn suffixed_protected_resource(State(fake): State<Fake>) -> Response {
    if fake.0.knobs.prm_only_at_root {
        return StatusCode::NOT_FOUND.into_response();
    }
    protected_resource(&fake).into_response()
}

async fn root_protected_resource(State(fake): State<Fake>) -> Response {
    if !fake.0.knobs.prm_only_at_root {
        return StatusCode::NOT_FOUND.into_response();
    }
    protected_resource(&fake).into_response()
}

async fn inserted_authorization_server(State(fake): State<Fake>) -> Response {
    if fake.0.knobs.as_metadata_only_appended_openid || fake.0.knobs.no_as_metadata {
        return StatusCode::NOT_FOUND.into_response();
    }
    authorization_server(&fake).into_response()
}

async fn appended_openid_configuration(State(fake): State<Fake>) -> Response {
    if !fake.0.knobs.as_metadata_only_appended_openid || fake.0.knobs.no_as_metadata {
        return StatusCode::NOT_FOUND.into_response();
    }
    authorization_server(&fake).into_response()
}

fn protected_resource(fake: &Fake) -> Json<Value> {
    let resource = fake
        .0
        .knobs
        .resource
        .clone()
        .unwrap_or_else(|| fake.mcp_url().to_string());
    Json(json!({
        "resource": resource,
        "authorization_servers": [fake.issuer()],
        "scopes_supported": ["mcp:read"],
        "bearer_methods_supported": ["header"],
    }))
}

fn authorization_server(fake: &Fake) -> Json<Value> {
    let base = fake.base();
    let suffix = fake
        .0
        .knobs
        .metadata_issuer_suffix
        .clone()
        .unwrap_or_default();
    let issuer = format!("{}{suffix}", fake.issuer());
    let mut metadata = json!({
        "issuer": issuer,
        "authorization_endpoint": base.join("oauth/authorize").unwrap(),
        "token_endpoint": base.join("oauth/token").unwrap(),
        "registration_endpoint": base.join("register").unwrap(),
        "jwks_uri": base.join("keys").unwrap(),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["mcp:read", "openid", "offline_access"],
        "authorization_response_iss_parameter_supported": true,
    });
    if let Some(methods) = &fake.0.knobs.token_endpoint_auth_methods {
        metadata["token_endpoint_auth_methods_supported"] = json!(methods);
    }
    Json(metadata)
}

async fn keys(State(fake): State<Fake>) -> Json<Value> {
    let key = fake.0.signing_key.as_verification_key();
    Json(json!({ "keys": [key] }))
}

async fn register(State(fake): State<Fake>, Json(body): Json<Value>) -> Response {
    fake.record(|seen| seen.registration = Some(body.clone()));
    if fake.0.knobs.registration_refused {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"error": "access_denied", "error_description": "dynamic client registration is disabled"})),
        )
            .into_response();
    }
    let mut answer = body;
    answer["client_id"] = json!("m2m_1");
    (StatusCode::CREATED, Json(answer)).into_response()
}

async fn authorize(
    State(fake): State<Fake>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if fake.0.knobs.authorize_loops {
        return (StatusCode::FOUND, [(LOCATION, "/oauth/authorize?again=1")]).into_response();
    }
    fake.record(|seen| {
        seen.authorize_query = query;
        seen.authorize_count += 1;
    });
    // Like Scalekit: a cookie for the AS session, then off to the login page with our own state.
    (
        StatusCode::FOUND,
        [
            (
                LOCATION,
                "/login?login_request_id=lri_1&state=as_state".to_owned(),
            ),
            (SET_COOKIE, "sk_session=abc; Path=/; HttpOnly".to_owned()),
        ],
    )
        .into_response()
}

async fn login(State(fake): State<Fake>, headers: HeaderMap) -> Response {
    let has_cookie = headers
        .get("cookie")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.contains("sk_session=abc"));
    if fake.0.knobs.login_page_fails || !has_cookie {
        return (
            StatusCode::BAD_REQUEST,
            [(CONTENT_TYPE, "text/html")],
            "<html><body><h1>Sign-in failed</h1>\n<p>The login request expired.</p></body></html>",
        )
            .into_response();
    }
    if fake.0.knobs.ends_on_invalid_state_page {
        return (
            StatusCode::FOUND,
            [(
                LOCATION,
                "/error?error=invalid_state&error_description=the+sign-in+request+expired",
            )],
        )
            .into_response();
    }
    let query = fake.seen(|seen| seen.authorize_query.clone());
    let mut target = Url::parse(&query["redirect_uri"]).expect("redirect uri");
    {
        let mut pairs = target.query_pairs_mut();
        pairs
            .append_pair("code", "code_1")
            .append_pair("state", &query["state"]);
        match &fake.0.knobs.callback_iss {
            None => {
                pairs.append_pair("iss", &fake.issuer());
            }
            Some(Some(iss)) => {
                pairs.append_pair("iss", iss);
            }
            Some(None) => {}
        }
    }
    (StatusCode::FOUND, [(LOCATION, target.to_string())]).into_response()
}

fn oauth_error(error: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(CACHE_CONTROL, "no-store")],
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

async fn token(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let authorization = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    fake.record(|seen| {
        seen.token_forms.push(form.clone());
        seen.token_authorization.push(authorization);
    });
    if fake.0.knobs.token_fails {
        return oauth_error("invalid_grant", "authorization code already used");
    }
    let authorize = fake.seen(|seen| seen.authorize_query.clone());
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(Sha256::digest(verifier.as_bytes()));
            if form.get("code").map(String::as_str) != Some("code_1")
                || authorize.get("code_challenge") != Some(&challenge)
            {
                return oauth_error("invalid_grant", "bad code or verifier");
            }
            let scope = authorize.get("scope").cloned().unwrap_or_default();
            let mut body = json!({
                "access_token": ACCESS_TOKEN,
                "token_type": "Bearer",
                "expires_in": 3600,
                "scope": scope,
                "refresh_token": "rt_1",
            });
            if scope.split(' ').any(|s| s == "openid") {
                body["id_token"] = json!(fake.id_token(&form, &authorize));
            }
            ([(CACHE_CONTROL, "no-store")], Json(body)).into_response()
        }
        Some("refresh_token") if form.get("refresh_token").map(String::as_str) == Some("rt_1") => (
            [(CACHE_CONTROL, "no-store")],
            Json(json!({
                "access_token": "at_2",
                "token_type": "Bearer",
                "expires_in": 3600,
                "refresh_token": "rt_2",
            })),
        )
            .into_response(),
        Some("client_credentials") => {
            // The agent `agent_1` with `agent-secret`, from HTTP Basic or the form.
            let basic = base64::engine::general_purpose::STANDARD.encode("agent_1:agent-secret");
            let from_basic = headers
                .get("authorization")
                .and_then(|value| value.to_str().ok())
                == Some(format!("Basic {basic}").as_str());
            let from_form = form.get("client_id").map(String::as_str) == Some("agent_1")
                && form.get("client_secret").map(String::as_str) == Some("agent-secret");
            if !from_basic && !from_form {
                return (
                    StatusCode::UNAUTHORIZED,
                    [(CACHE_CONTROL, "no-store")],
                    Json(json!({"error": "invalid_client", "error_description": "client authentication failed"})),
                )
                    .into_response();
            }
            (
                [(CACHE_CONTROL, "no-store")],
                Json(json!({
                    "access_token": ACCESS_TOKEN,
                    "token_type": "Bearer",
                    "expires_in": 3600,
                    "scope": form.get("scope").cloned().unwrap_or_default(),
                })),
            )
                .into_response()
        }
        _ => oauth_error("unsupported_grant_type", "unexpected grant"),
    }
}

impl Fake {
    fn id_token(
        &self,
        form: &HashMap<String, String>,
        authorize: &HashMap<String, String>,
    ) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let issuer = self
            .0
            .knobs
            .id_token_issuer
            .clone()
            .unwrap_or_else(|| self.environment());
        let claims: CoreIdTokenClaims = serde_json::from_value(json!({
            "iss": issuer,
            "aud": [form.get("client_id").cloned().unwrap_or_default()],
            "sub": "usr_1",
            "email": "ada@example.com",
            "iat": now,
            "exp": now + 300,
            "nonce": authorize.get("nonce").cloned().unwrap_or_default(),
        }))
        .expect("id token claims");
        let token = CoreIdToken::new(
            claims,
            &self.0.signing_key,
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            Some(&AccessToken::new(if self.0.knobs.id_token_wrong_at_hash {
                "another token".to_owned()
            } else {
                ACCESS_TOKEN.to_owned()
            })),
            None,
        )
        .expect("signed id token");
        token.to_string()
    }
}

/// A JSON-RPC answer to one message.
fn rpc_result(id: &Value, result: Value) -> Response {
    Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}

async fn mcp(State(fake): State<Fake>, headers: HeaderMap, Json(message): Json<Value>) -> Response {
    let authorization = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let Some(authorization) = authorization else {
        let challenge = if fake.0.knobs.challenge_without_resource_metadata {
            r#"Bearer realm="OAuth""#.to_owned()
        } else {
            format!(
                r#"Bearer realm="OAuth", resource_metadata="{}", scope="mcp:read""#,
                fake.base()
                    .join(".well-known/oauth-protected-resource/mcp")
                    .unwrap()
            )
        };
        return (StatusCode::UNAUTHORIZED, [(WWW_AUTHENTICATE, challenge)]).into_response();
    };
    fake.record(|seen| seen.mcp_authorization.push(authorization));
    let id = message.get("id").cloned().unwrap_or(Value::Null);
    let method = message.get("method").and_then(Value::as_str);
    let granted = fake.seen(|seen| {
        seen.authorize_query
            .get("scope")
            .cloned()
            .unwrap_or_default()
    });
    let insufficient = |scope: &str| {
        let challenge = format!(
            r#"Bearer error="insufficient_scope", scope="{scope}", resource_metadata="{}""#,
            fake.base()
                .join(".well-known/oauth-protected-resource/mcp")
                .unwrap()
        );
        (StatusCode::FORBIDDEN, [(WWW_AUTHENTICATE, challenge)]).into_response()
    };
    if fake.0.knobs.always_insufficient_scope && method == Some("tools/list") {
        return insufficient("mcp:admin");
    }
    if let Some(needed) = &fake.0.knobs.tool_call_needs_scope
        && method == Some("tools/call")
        && !granted.split(' ').any(|scope| scope == needed)
    {
        return insufficient(needed);
    }
    match method {
        Some("initialize") => {
            let version = message["params"]["protocolVersion"].clone();
            rpc_result(
                &id,
                json!({
                    "protocolVersion": version,
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "fake", "version": "0"},
                }),
            )
        }
        Some("tools/list") => rpc_result(
            &id,
            json!({"tools": [{"name": "whoami", "inputSchema": {"type": "object"}}]}),
        ),
        Some("tools/call") if message["params"]["name"] == "whoami" => rpc_result(
            &id,
            json!({
                "content": [{"type": "text", "text": "{\"sub\":\"usr_1\"}"}],
                "structuredContent": {"sub": "usr_1", "email": "ada@example.com"},
                "isError": false,
            }),
        ),
        Some(method) if method.starts_with("notifications/") => {
            StatusCode::ACCEPTED.into_response()
        }
        _ => Json(json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "no"}}))
            .into_response(),
    }
}
