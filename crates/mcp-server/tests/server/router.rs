//! The in-process entry shape: `router(AppState)` with an injected clock.

use std::sync::Arc;

use serde_json::json;
use url::Url;

use crate::helpers::{FakeEnvironment, SigningKey, base_config, initialize_request, now};

#[tokio::test]
async fn the_injected_clock_decides_whether_a_token_has_expired() -> anyhow::Result<()> {
    let key = SigningKey::generate("snk_1")?;
    let environment = FakeEnvironment::spawn(vec![key.jwk.clone()]).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = Url::parse(&format!("http://{}", listener.local_addr()?))?;
    // Two hours from now, a token that lives one hour is expired.
    let later = now() + 7200;
    let state = mcp_server::AppState::with_clock(
        &base_config(environment.url.clone()),
        &base_url,
        Arc::new(move || later),
    )?;
    tokio::spawn(async move { axum::serve(listener, mcp_server::router(state)).await });

    let now = now();
    let claims = json!({
        "iss": environment.issuer(),
        "aud": [crate::helpers::RESOURCE_ID],
        "sub": "usr_100",
        "scope": "mcp:read",
        "iat": now,
        "exp": now + 3600,
    });
    let response = reqwest::Client::new()
        .post(base_url.join("/mcp")?)
        .header("accept", crate::helpers::ACCEPT_MCP)
        .bearer_auth(key.sign(&claims)?)
        .json(&initialize_request())
        .send()
        .await?;
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await?;
    assert_eq!(
        body,
        json!({"error": "invalid_token", "error_description": "the token has expired"})
    );
    Ok(())
}
