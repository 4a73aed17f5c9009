//! Client ID Metadata Documents: a URL `client_id` is fetched from a document server on
//! `127.0.0.1:0` (the environment's loopback allowance on), validated, cached and used as the
//! client through the whole flow.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};
use axum::Router;
use axum::extract::State;
use axum::http::header::CACHE_CONTROL;
use axum::response::IntoResponse;
use axum::routing::get;
use reqwest::StatusCode;
use serde_json::{Value, json};
use url::Url;

use crate::helpers::{
    REDIRECT_URI, SERVER_URL, TestEnv, VERIFIER, ada, json, location, query_param, text, token_json,
};

/// A document server: each path serves one kind of document; `/client.json` counts its hits.
struct DocumentServer {
    base: String,
    hits: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct ServerState {
    base: String,
    hits: Arc<AtomicUsize>,
}

impl DocumentServer {
    async fn spawn() -> Result<DocumentServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let hits = Arc::new(AtomicUsize::new(0));
        let state = ServerState {
            base: base.clone(),
            hits: hits.clone(),
        };
        let app = Router::new()
            .route("/client.json", get(good))
            .route("/mismatch.json", get(mismatch))
            .route("/no-redirect-uris.json", get(no_redirect_uris))
            .route("/large.json", get(large))
            .route("/slow.json", get(slow))
            .route("/page.html", get(|| async { "<html>not json</html>" }))
            .route(
                "/moved.json",
                get(|| async { axum::response::Redirect::temporary("/client.json") }),
            )
            .with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(DocumentServer { base, hits })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn document(client_id: &str) -> Value {
    json!({
        "client_id": client_id,
        "client_name": "Document Client",
        "client_uri": "https://client.example",
        "redirect_uris": [REDIRECT_URI],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none"
    })
}

async fn good(State(state): State<ServerState>) -> impl IntoResponse {
    state.hits.fetch_add(1, Ordering::SeqCst);
    let body = document(&format!("{}/client.json", state.base));
    ([(CACHE_CONTROL, "public, max-age=60")], axum::Json(body))
}

async fn mismatch(State(state): State<ServerState>) -> impl IntoResponse {
    axum::Json(document(&format!("{}/client.json", state.base)))
}

async fn no_redirect_uris(State(state): State<ServerState>) -> impl IntoResponse {
    let mut body = document(&format!("{}/no-redirect-uris.json", state.base));
    body.as_object_mut().map(|map| map.remove("redirect_uris"));
    axum::Json(body)
}

async fn large(State(state): State<ServerState>) -> impl IntoResponse {
    let mut body = document(&format!("{}/large.json", state.base));
    body["padding"] = Value::String("x".repeat(6 * 1024));
    axum::Json(body)
}

async fn slow(State(state): State<ServerState>) -> impl IntoResponse {
    tokio::time::sleep(Duration::from_secs(10)).await;
    axum::Json(document(&format!("{}/slow.json", state.base)))
}

async fn spawn_with_loopback_documents() -> Result<TestEnv> {
    TestEnv::spawn_with(|config| config.cimd_allow_insecure_loopback = true).await
}

/// `GET /oauth/authorize` with `client_id` = `client_id`, PKCE (the RFC 7636 Appendix B
/// challenge) and the MCP server as `resource`; the response unchecked.
async fn authorize(env: &TestEnv, client_id: &str) -> Result<reqwest::Response> {
    let response = env
        .http
        .get(env.url("/oauth/authorize"))
        .query(&[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", REDIRECT_URI),
            (
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGlSWLSm-cQ",
            ),
            ("code_challenge_method", "S256"),
            ("resource", SERVER_URL),
        ])
        .send()
        .await?;
    Ok(response)
}

/// Asserts the `invalid_client_metadata_url` page with exactly `description`.
async fn assert_metadata_error(response: reqwest::Response, description: &str) -> Result<()> {
    let page = text(response, StatusCode::BAD_REQUEST).await?;
    assert!(
        page.contains("<code id=\"error\">invalid_client_metadata_url</code>"),
        "{page}"
    );
    assert!(
        page.contains(&format!("<p id=\"error_description\">{description}</p>")),
        "expected {description:?} in {page}"
    );
    Ok(())
}

#[tokio::test]
async fn a_document_url_client_signs_in_and_its_token_names_the_url() -> Result<()> {
    let documents = DocumentServer::spawn().await?;
    let env = spawn_with_loopback_documents().await?;
    let client_id = documents.url("/client.json");

    let login = env.authorize(&[("client_id", client_id.as_str())]).await?;
    let lri = query_param(&login, "login_request_id")?;
    let state = query_param(&login, "state")?;
    let management = env.management_token().await?;
    json(
        env.post_user(&lri, Some(&management), &ada()).await?,
        StatusCode::OK,
    )
    .await?;
    let redirect = location(env.callback(&state).await?, StatusCode::FOUND)?;
    assert!(redirect.as_str().starts_with(REDIRECT_URI), "{redirect}");
    let code = query_param(&redirect, "code")?;

    let tokens = env
        .token(
            &[
                ("grant_type", "authorization_code"),
                ("client_id", client_id.as_str()),
                ("code", code.as_str()),
                ("code_verifier", VERIFIER),
                ("redirect_uri", REDIRECT_URI),
                ("resource", SERVER_URL),
            ],
            StatusCode::OK,
        )
        .await?;
    let access_token = tokens["access_token"].as_str().context("access_token")?;
    let claims: Value = env.verify(access_token, "res_81920374650192839").await?;
    assert_eq!(claims["client_id"], client_id.as_str());

    // The refresh token is bound to the URL too, and a public client cannot revoke.
    let refresh_token = tokens["refresh_token"].as_str().context("refresh_token")?;
    env.token(
        &[
            ("grant_type", "refresh_token"),
            ("client_id", client_id.as_str()),
            ("refresh_token", refresh_token),
        ],
        StatusCode::OK,
    )
    .await?;
    let revoke = env
        .http
        .post(env.url("/oauth/revoke"))
        .form(&[("client_id", client_id.as_str()), ("token", refresh_token)])
        .send()
        .await?;
    let body = token_json(revoke, StatusCode::UNAUTHORIZED).await?;
    assert_eq!(
        body,
        json!({
            "error": "invalid_client",
            "error_description": "public clients cannot revoke tokens: client authentication is required"
        })
    );
    Ok(())
}

#[tokio::test]
async fn the_consent_page_names_the_document_client() -> Result<()> {
    let documents = DocumentServer::spawn().await?;
    let env = TestEnv::spawn_with(|config| {
        config.cimd_allow_insecure_loopback = true;
        config.resources[0].consent = scalekit_emulator::ConsentMode::Prompt;
    })
    .await?;
    let client_id = documents.url("/client.json");
    let login = env.authorize(&[("client_id", client_id.as_str())]).await?;
    let management = env.management_token().await?;
    env.post_user(
        &query_param(&login, "login_request_id")?,
        Some(&management),
        &ada(),
    )
    .await?;
    let page = text(
        env.callback(&query_param(&login, "state")?).await?,
        StatusCode::OK,
    )
    .await?;
    assert!(
        page.contains("<span id=\"client_name\">Document Client</span>"),
        "{page}"
    );
    assert!(page.contains(">127.0.0.1<"), "{page}");
    Ok(())
}

#[tokio::test]
async fn a_document_is_fetched_once_within_its_max_age() -> Result<()> {
    let documents = DocumentServer::spawn().await?;
    let env = spawn_with_loopback_documents().await?;
    let client_id = documents.url("/client.json");
    env.authorize(&[("client_id", client_id.as_str())]).await?;
    env.authorize(&[("client_id", client_id.as_str())]).await?;
    assert_eq!(documents.hits(), 1);
    env.clock.advance(61);
    env.authorize(&[("client_id", client_id.as_str())]).await?;
    assert_eq!(documents.hits(), 2);
    Ok(())
}

#[tokio::test]
async fn a_document_whose_client_id_is_not_its_url_is_refused() -> Result<()> {
    let documents = DocumentServer::spawn().await?;
    let env = spawn_with_loopback_documents().await?;
    let client_id = documents.url("/mismatch.json");
    let response = authorize(&env, &client_id).await?;
    assert_metadata_error(
        response,
        &format!(
            "the client metadata document has client_id {}, which is not its URL {client_id}",
            documents.url("/client.json")
        ),
    )
    .await
}

#[tokio::test]
async fn a_document_without_redirect_uris_is_refused() -> Result<()> {
    let documents = DocumentServer::spawn().await?;
    let env = spawn_with_loopback_documents().await?;
    let response = authorize(&env, &documents.url("/no-redirect-uris.json")).await?;
    assert_metadata_error(
        response,
        "the client metadata document has no redirect_uris",
    )
    .await
}

#[tokio::test]
async fn a_redirect_uri_the_document_does_not_list_is_refused_without_a_redirect() -> Result<()> {
    let documents = DocumentServer::spawn().await?;
    let env = spawn_with_loopback_documents().await?;
    let client_id = documents.url("/client.json");
    let response = env
        .http
        .get(env.url("/oauth/authorize"))
        .query(&[
            ("response_type", "code"),
            ("client_id", client_id.as_str()),
            ("redirect_uri", "https://evil.example/cb"),
            ("resource", SERVER_URL),
        ])
        .send()
        .await?;
    let page = text(response, StatusCode::BAD_REQUEST).await?;
    assert!(
        page.contains("<code id=\"error\">invalid_request</code>"),
        "{page}"
    );
    assert!(
        page.contains(&format!(
            "redirect_uri https://evil.example/cb is not registered for client {client_id}"
        )),
        "{page}"
    );
    Ok(())
}

#[tokio::test]
async fn a_document_larger_than_five_kib_is_refused() -> Result<()> {
    let documents = DocumentServer::spawn().await?;
    let env = spawn_with_loopback_documents().await?;
    let response = authorize(&env, &documents.url("/large.json")).await?;
    assert_metadata_error(
        response,
        "the client metadata document is larger than 5120 bytes",
    )
    .await
}

#[tokio::test]
async fn a_document_server_slower_than_three_seconds_is_refused() -> Result<()> {
    let documents = DocumentServer::spawn().await?;
    let env = spawn_with_loopback_documents().await?;
    let client_id = documents.url("/slow.json");
    let response = authorize(&env, &client_id).await?;
    assert_metadata_error(
        response,
        &format!("fetching {client_id} took longer than 3 seconds"),
    )
    .await
}

#[tokio::test]
async fn a_document_that_is_not_json_is_refused() -> Result<()> {
    let documents = DocumentServer::spawn().await?;
    let env = spawn_with_loopback_documents().await?;
    let response = authorize(&env, &documents.url("/page.html")).await?;
    assert_metadata_error(response, "the client metadata document is not JSON").await
}

#[tokio::test]
async fn a_document_url_answering_404_is_refused() -> Result<()> {
    let documents = DocumentServer::spawn().await?;
    let env = spawn_with_loopback_documents().await?;
    let client_id = documents.url("/missing.json");
    let response = authorize(&env, &client_id).await?;
    assert_metadata_error(
        response,
        &format!("client_id {client_id} answered HTTP 404"),
    )
    .await
}

#[tokio::test]
async fn a_redirect_from_the_document_url_is_not_followed() -> Result<()> {
    let documents = DocumentServer::spawn().await?;
    let env = spawn_with_loopback_documents().await?;
    let client_id = documents.url("/moved.json");
    let response = authorize(&env, &client_id).await?;
    assert_metadata_error(
        response,
        &format!("client_id {client_id} answered HTTP 307; redirects are not followed"),
    )
    .await?;
    assert_eq!(documents.hits(), 0);
    Ok(())
}

#[tokio::test]
async fn a_document_url_on_a_loopback_address_is_refused_without_the_allowance() -> Result<()> {
    let documents = DocumentServer::spawn().await?;
    let env = TestEnv::spawn().await?;
    let https = Url::parse(&documents.url("/client.json"))?;
    let client_id = format!(
        "https://127.0.0.1:{}/client.json",
        https.port().context("port")?
    );
    let response = authorize(&env, &client_id).await?;
    assert_metadata_error(
        response,
        &format!(
            "client_id {client_id} resolves to 127.0.0.1, a private, loopback, link-local, multicast or unspecified address"
        ),
    )
    .await?;
    // Plain http is refused before any fetch.
    let response = authorize(&env, &documents.url("/client.json")).await?;
    assert_metadata_error(
        response,
        &format!(
            "client_id {} must be an https URL",
            documents.url("/client.json")
        ),
    )
    .await?;
    assert_eq!(documents.hits(), 0);
    Ok(())
}

#[tokio::test]
async fn a_resource_that_does_not_accept_documents_refuses_url_clients() -> Result<()> {
    let documents = DocumentServer::spawn().await?;
    let env = TestEnv::spawn_with(|config| {
        config.cimd_allow_insecure_loopback = true;
        config.resources[0].client_id_metadata_documents = false;
    })
    .await?;
    let response = authorize(&env, &documents.url("/client.json")).await?;
    assert_metadata_error(
        response,
        "client ID metadata documents are not accepted in this environment",
    )
    .await?;
    assert_eq!(documents.hits(), 0);
    let metadata = json(
        env.get("/.well-known/oauth-authorization-server/resources/res_81920374650192839")
            .await?,
        StatusCode::OK,
    )
    .await?;
    assert_eq!(metadata["client_id_metadata_document_supported"], false);
    Ok(())
}
