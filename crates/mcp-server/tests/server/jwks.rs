//! The JWKS cache: fetched lazily, refetched on an unknown `kid` at most once per 10 s.

use serde_json::json;

use crate::helpers::{SigningKey, TestServer, initialize_request};

#[tokio::test]
async fn keys_are_fetched_once_and_cached() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    let token = server.token(&server.claims())?;
    server.call_whoami(&token).await?;
    server.call_whoami(&token).await?;
    assert_eq!(server.environment.key_fetches(), 1);
    Ok(())
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_by_one_refetch() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    server.call_whoami(&server.token(&server.claims())?).await?;
    assert_eq!(server.environment.key_fetches(), 1);

    let rotated = SigningKey::generate("snk_2")?;
    server
        .environment
        .set_keys(vec![server.key.jwk.clone(), rotated.jwk.clone()]);
    // The first fetch was moments ago, so this waits out the refetch interval first.
    tokio::time::sleep(mcp_server::auth::JWKS_REFETCH_INTERVAL).await;
    let response = server.call_whoami(&rotated.sign(&server.claims())?).await?;
    assert_eq!(response["result"]["structuredContent"]["sub"], "usr_100");
    assert_eq!(server.environment.key_fetches(), 2);
    Ok(())
}

#[tokio::test]
async fn unknown_kids_refetch_the_keys_at_most_once_per_interval() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    for kid in ["snk_unknown_1", "snk_unknown_2", "snk_unknown_3"] {
        let stranger = SigningKey::generate(kid)?;
        server
            .expect_invalid_token(
                &stranger.sign(&server.claims())?,
                "the token is signed with an unknown key",
            )
            .await?;
    }
    // The first token found the cache empty and fetched; the others were inside the interval.
    assert_eq!(server.environment.key_fetches(), 1);
    Ok(())
}

#[tokio::test]
async fn an_unreachable_environment_gives_503() -> anyhow::Result<()> {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let environment_url = url::Url::parse(&format!("http://{}", closed.local_addr()?))?;
    drop(closed);
    let server = TestServer::spawn_with(|config| config.environment_url = environment_url).await?;
    let response = server
        .post_mcp(
            Some(&server.token(&server.claims())?),
            None,
            &initialize_request(),
        )
        .await?;
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await?;
    assert_eq!(
        body,
        json!({"error": "temporarily_unavailable", "error_description": "the signing keys are unavailable"})
    );
    Ok(())
}
