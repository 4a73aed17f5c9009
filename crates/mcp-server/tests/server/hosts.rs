//! The listener guard: a request for a host the server does not answer for (a web page's own name
//! rebound to 127.0.0.1) gets 421 before routing, on every path, the protected-resource metadata
//! included; loopback names, the base URL's host and an allowed host pass, on `/mcp` too (rmcp's
//! own Host check is kept in step with the guard).

use reqwest::header::HOST;
use serde_json::Value;

use crate::helpers::{ACCEPT_MCP, TestServer, initialize_request};

fn port(server: &TestServer) -> u16 {
    server.local_url.port().expect("a port")
}

#[tokio::test]
async fn a_request_for_a_foreign_host_is_misdirected_on_every_path() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    let token = server.token(&server.claims())?;
    let host = format!("evil.example:{}", port(&server));
    let refusal = "this server does not answer for the host evil.example:PORT (only for \
                   localhost, 127.0.0.1, [::1], its own URL's host and the allowed hosts); if you \
                   reach it by this name on purpose (a container, a proxy), start it with \
                   --allowed-host evil.example\n"
        .replace("PORT", &port(&server).to_string());
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
        "/nowhere",
    ] {
        let response = server
            .http
            .get(server.local(path)?)
            .header(HOST, &host)
            .send()
            .await?;
        assert_eq!(response.status(), 421, "{path}");
        assert_eq!(response.text().await?, refusal, "{path}");
    }
    let response = server
        .http
        .post(server.local("/mcp")?)
        .header(HOST, &host)
        .header(reqwest::header::ACCEPT, ACCEPT_MCP)
        .bearer_auth(&token)
        .json(&initialize_request())
        .send()
        .await?;
    assert_eq!(response.status(), 421);
    Ok(())
}

#[tokio::test]
async fn loopback_the_public_host_and_an_allowed_host_are_served_on_mcp_too() -> anyhow::Result<()>
{
    let public_url = url::Url::parse("https://mcp.example.com/")?;
    let server = TestServer::spawn_with(|config| {
        config.public_url = Some(public_url);
        config.allowed_hosts = vec!["mcp.internal".parse().expect("a host")];
    })
    .await?;
    let mut claims = server.claims();
    claims["aud"] = serde_json::json!(["https://mcp.example.com/mcp", crate::helpers::RESOURCE_ID]);
    let token = server.token(&claims)?;
    let port = port(&server);
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "mcp.example.com".to_owned(),
        format!("mcp.internal:{port}"),
    ] {
        let metadata = server
            .http
            .get(server.local("/.well-known/oauth-protected-resource/mcp")?)
            .header(HOST, &host)
            .send()
            .await?;
        assert_eq!(metadata.status(), 200, "{host}");
        let metadata: Value = metadata.json().await?;
        assert_eq!(metadata["resource"], "https://mcp.example.com/mcp");
        let initialize = server
            .http
            .post(server.local("/mcp")?)
            .header(HOST, &host)
            .header(reqwest::header::ACCEPT, ACCEPT_MCP)
            .bearer_auth(&token)
            .json(&initialize_request())
            .send()
            .await?;
        assert_eq!(initialize.status(), 200, "{host}");
    }
    let other = server
        .http
        .get(server.local("/.well-known/oauth-protected-resource/mcp")?)
        .header(HOST, "other.internal")
        .send()
        .await?;
    assert_eq!(other.status(), 421);
    Ok(())
}
