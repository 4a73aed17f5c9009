//! The protected-resource metadata document (RFC 9728).

use serde_json::{Value, json};

use crate::helpers::{RESOURCE_ID, TestServer, initialize_request};

const METADATA_PATH: &str = "/.well-known/oauth-protected-resource/mcp";

fn expected_metadata(server: &TestServer) -> Value {
    json!({
        "resource": format!("http://{}/mcp", server.mcp_url.authority()),
        "authorization_servers": [format!("{}/resources/{RESOURCE_ID}", server.environment.issuer())],
        "bearer_methods_supported": ["header"],
        "scopes_supported": ["openid", "mcp:read", "mcp:write"],
        "resource_name": "Testbed MCP server",
    })
}

#[tokio::test]
async fn metadata_is_published_at_the_path_suffixed_well_known_url() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    let response = server.http.get(server.local(METADATA_PATH)?).send().await?;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await?, expected_metadata(&server));
    Ok(())
}

#[tokio::test]
async fn metadata_is_also_published_at_the_root_well_known_url() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    let url = server.local("/.well-known/oauth-protected-resource")?;
    let response = server.http.get(url).send().await?;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await?, expected_metadata(&server));
    Ok(())
}

#[tokio::test]
async fn the_resource_is_the_public_url_when_one_is_configured() -> anyhow::Result<()> {
    let public_url = url::Url::parse("https://mcp.example.com/")?;
    let server = TestServer::spawn_with(|config| config.public_url = Some(public_url)).await?;
    let response = server.http.get(server.local(METADATA_PATH)?).send().await?;
    let metadata = response.json::<Value>().await?;
    assert_eq!(metadata["resource"], "https://mcp.example.com/mcp");
    assert_eq!(server.base_url.as_str(), "https://mcp.example.com/");
    assert_eq!(server.mcp_url.as_str(), "https://mcp.example.com/mcp");

    let response = server.post_mcp(None, None, &initialize_request()).await?;
    let header = "Bearer realm=\"OAuth\", resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\", \
                  scope=\"mcp:read\"";
    server.expect_refusal(response, 401, header, None).await?;

    let mut claims = server.claims();
    claims["aud"] = serde_json::json!(["https://mcp.example.com/mcp", RESOURCE_ID]);
    let response = server.call_whoami(&server.token(&claims)?).await?;
    assert_eq!(response["result"]["structuredContent"], claims);
    Ok(())
}

#[tokio::test]
async fn metadata_needs_no_token_and_does_not_fetch_keys() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    server
        .http
        .get(server.local(METADATA_PATH)?)
        .send()
        .await?
        .error_for_status()?;
    assert_eq!(server.environment.key_fetches(), 0);
    Ok(())
}
