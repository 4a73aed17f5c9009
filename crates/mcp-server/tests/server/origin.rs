//! The `Origin` check on `/mcp` (MCP Streamable HTTP 2025-11-25, "Security Warning"): a foreign
//! origin gets 403 before its token is looked at; no origin, the server's own, loopback and
//! configured origins pass; the metadata stays readable from anywhere.

use mcp_server::Mistake;
use serde_json::{Value, json};

use crate::helpers::TestServer;

/// Asserts the TypeScript SDK's 403 for a foreign origin.
async fn expect_forbidden_origin(response: reqwest::Response, origin: &str) -> anyhow::Result<()> {
    assert_eq!(response.status(), 403, "{origin}");
    assert_eq!(
        response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .map(|value| value.to_str().map(str::to_owned))
            .transpose()?
            .as_deref(),
        Some("application/json")
    );
    assert!(
        response
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .is_none()
    );
    let body: Value = response.json().await?;
    assert_eq!(
        body,
        json!({
            "jsonrpc": "2.0",
            "error": {"code": -32000, "message": format!("Forbidden: Origin {origin} is not allowed")},
            "id": null,
        })
    );
    Ok(())
}

#[tokio::test]
async fn a_foreign_origin_gets_403_before_its_token_is_looked_at() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    let token = server.token(&server.claims())?;
    let response = server
        .initialize_from("https://evil.example", Some(&token))
        .await?;
    expect_forbidden_origin(response, "https://evil.example").await?;
    assert_eq!(server.environment.key_fetches(), 0);

    // Without a token too: the 403 comes before the 401.
    let response = server.initialize_from("https://evil.example", None).await?;
    expect_forbidden_origin(response, "https://evil.example").await
}

#[tokio::test]
async fn no_origin_the_own_origin_and_loopback_origins_are_accepted() -> anyhow::Result<()> {
    let public_url = url::Url::parse("https://mcp.example.com/")?;
    let server = TestServer::spawn_with(|config| config.public_url = Some(public_url)).await?;
    let mut claims = server.claims();
    claims["aud"] = json!(["https://mcp.example.com/mcp", crate::helpers::RESOURCE_ID]);
    let token = server.token(&claims)?;
    assert_eq!(server.initialize_status(&token).await?, 200);
    for origin in [
        "https://mcp.example.com",
        "https://MCP.example.com:443",
        "http://localhost:6274",
        "http://localhost",
        "https://localhost:8443",
        "http://127.0.0.1:9999",
        "http://[::1]:6274",
    ] {
        let response = server.initialize_from(origin, Some(&token)).await?;
        assert_eq!(response.status(), 200, "{origin}");
    }
    Ok(())
}

#[tokio::test]
async fn null_and_malformed_origins_are_refused() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    let token = server.token(&server.claims())?;
    for origin in [
        "null",
        "http://localhost:6274/",
        "http://localhost:6274/mcp",
        "localhost:6274",
        "http://user@localhost:6274",
        "http://localhost:",
        "http://localhost:99999",
        "http://localhost.evil.example",
        "http://127.0.0.2:6274",
        "file://localhost",
        "http://evil.example:80",
        "",
    ] {
        let response = server.initialize_from(origin, Some(&token)).await?;
        expect_forbidden_origin(response, origin).await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_configured_origin_is_accepted_exactly() -> anyhow::Result<()> {
    let server = TestServer::spawn_with(|config| {
        config.allowed_origins = vec!["https://app.example.com".to_owned()];
    })
    .await?;
    let token = server.token(&server.claims())?;
    let response = server
        .initialize_from("https://app.example.com", Some(&token))
        .await?;
    assert_eq!(response.status(), 200);
    for origin in [
        "http://app.example.com",
        "https://app.example.com:8443",
        "https://www.app.example.com",
    ] {
        let response = server.initialize_from(origin, Some(&token)).await?;
        expect_forbidden_origin(response, origin).await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_malformed_configured_origin_stops_the_start() -> anyhow::Result<()> {
    let error = TestServer::spawn_with(|config| {
        config.allowed_origins = vec!["https://app.example.com/".to_owned()];
    })
    .await
    .err()
    .expect("a trailing slash is not an origin");
    assert_eq!(
        error.to_string(),
        "the allowed origin \"https://app.example.com/\" is not scheme://host[:port]"
    );
    Ok(())
}

#[tokio::test]
async fn the_metadata_is_readable_from_any_origin() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    let response = server
        .http
        .get(server.local("/.well-known/oauth-protected-resource/mcp")?)
        .header(reqwest::header::ORIGIN, "https://evil.example")
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    Ok(())
}

#[tokio::test]
async fn skip_origin_lets_a_foreign_origin_in() -> anyhow::Result<()> {
    let server = TestServer::spawn_making(Mistake::SkipOrigin).await?;
    let token = server.token(&server.claims())?;
    for origin in ["https://evil.example", "null"] {
        let response = server.initialize_from(origin, Some(&token)).await?;
        assert_eq!(response.status(), 200, "{origin}");
    }
    Ok(())
}
