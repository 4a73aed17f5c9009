//! MCP over Streamable HTTP with a valid token: `initialize`, then `tools/call whoami`.

use serde_json::{Value, json};

use crate::helpers::{RESOURCE_ID, TestServer};

#[tokio::test]
async fn a_valid_token_can_initialize_and_call_whoami() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    let claims = server.claims();
    let response = server.call_whoami(&server.token(&claims)?).await?;
    let result = &response["result"];
    assert_eq!(response["id"], 2);
    assert_eq!(result["isError"], false);
    assert_eq!(result["structuredContent"], claims);
    let text = result["content"][0]["text"]
        .as_str()
        .expect("a text content");
    assert_eq!(serde_json::from_str::<Value>(text)?, claims);
    Ok(())
}

#[tokio::test]
async fn the_resource_scoped_issuer_is_accepted() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    let mut claims = server.claims();
    claims["iss"] = json!(format!(
        "{}/resources/{RESOURCE_ID}",
        server.environment.issuer()
    ));
    let response = server.call_whoami(&server.token(&claims)?).await?;
    assert_eq!(
        response["result"]["structuredContent"]["iss"],
        claims["iss"]
    );
    Ok(())
}

#[tokio::test]
async fn the_tools_list_offers_whoami() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    let token = server.token(&server.claims())?;
    let (session, _) = server.initialize(&token).await?;
    let list = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {}});
    let response = server
        .post_mcp(Some(&token), session.as_deref(), &list)
        .await?;
    assert_eq!(response.status(), 200);
    let response = crate::helpers::read_jsonrpc_response(response).await?;
    let names: Vec<&str> = response["result"]["tools"]
        .as_array()
        .expect("a tool list")
        .iter()
        .filter_map(|tool| tool["name"].as_str())
        .collect();
    assert_eq!(names, vec!["whoami"]);
    Ok(())
}

#[tokio::test]
async fn every_request_of_a_session_is_authenticated() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    let token = server.token(&server.claims())?;
    let (session, _) = server.initialize(&token).await?;
    let call = json!({
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "whoami", "arguments": {}},
    });
    let response = server.post_mcp(None, session.as_deref(), &call).await?;
    let header = format!(
        "Bearer realm=\"OAuth\", resource_metadata=\"{}\", scope=\"mcp:read\"",
        server.metadata_url
    );
    server.expect_refusal(response, 401, &header, None).await
}

#[tokio::test]
async fn whoami_answers_with_the_token_of_the_request_not_of_the_session() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    let first = server.token(&server.claims())?;
    let (session, _) = server.initialize(&first).await?;
    let mut refreshed_claims = server.claims();
    refreshed_claims["jti"] = json!("tkn_refreshed");
    let refreshed = server.token(&refreshed_claims)?;
    let response = server
        .call_whoami_in(&refreshed, session.as_deref())
        .await?;
    assert_eq!(
        response["result"]["structuredContent"]["jti"],
        "tkn_refreshed"
    );
    Ok(())
}

#[tokio::test]
async fn another_users_token_cannot_use_a_session() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    let first = server.token(&server.claims())?;
    let (session, _) = server.initialize(&first).await?;
    assert!(
        session.is_some(),
        "the server keeps sessions for 2025-11-25 clients"
    );
    let mut other_claims = server.claims();
    other_claims["sub"] = json!("usr_other");
    let call = json!({
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "whoami", "arguments": {}},
    });
    let response = server
        .post_mcp(
            Some(&server.token(&other_claims)?),
            session.as_deref(),
            &call,
        )
        .await?;
    assert_eq!(response.status(), 404);
    assert_eq!(response.text().await?, "Not Found: Session not found");
    Ok(())
}

#[tokio::test]
async fn a_2026_07_28_client_calls_whoami_without_a_session() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    let claims = server.claims();
    let call = json!({
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {
            "name": "whoami",
            "arguments": {},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientInfo": {"name": "mcp-server-tests", "version": "0.0.0"},
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    });
    let response = server
        .http
        .post(server.local("/mcp")?)
        .header("accept", crate::helpers::ACCEPT_MCP)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "whoami")
        .bearer_auth(server.token(&claims)?)
        .json(&call)
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("mcp-session-id").is_none());
    let response = crate::helpers::read_jsonrpc_response(response).await?;
    assert_eq!(response["id"], 7);
    assert_eq!(response["result"]["structuredContent"], claims);
    Ok(())
}
