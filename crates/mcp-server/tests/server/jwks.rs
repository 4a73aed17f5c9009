//! The JWKS cache: fetched lazily; an unknown `kid` refetches at once unless a refetch in the
//! last cooldown failed or did not bring in its key; a refetch replaces the key set. And the two
//! refetch mistakes, `NeverRefetchJwks` and `KeepRetiredKeys`.

use std::time::Duration;

use mcp_server::Mistake;
use serde_json::json;

use crate::helpers::{SigningKey, TestServer, initialize_request};

const UNKNOWN_KEY: &str = "the token is signed with an unknown key";

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
async fn a_rotated_key_is_picked_up_at_once_after_a_successful_fetch() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    server.call_whoami(&server.token(&server.claims())?).await?;
    assert_eq!(server.environment.key_fetches(), 1);

    // The first fetch was moments ago, but it found its key, so it started no cooldown.
    let rotated = SigningKey::generate("snk_2")?;
    server
        .environment
        .set_keys(vec![server.key.jwk.clone(), rotated.jwk.clone()]);
    let response = server.call_whoami(&rotated.sign(&server.claims())?).await?;
    assert_eq!(response["result"]["structuredContent"]["sub"], "usr_100");
    assert_eq!(server.environment.key_fetches(), 2);

    // Nor did that refetch: the next rotation is picked up at once too.
    let rotated_again = SigningKey::generate("snk_3")?;
    server
        .environment
        .set_keys(vec![rotated.jwk.clone(), rotated_again.jwk.clone()]);
    let response = server
        .call_whoami(&rotated_again.sign(&server.claims())?)
        .await?;
    assert_eq!(response["result"]["structuredContent"]["sub"], "usr_100");
    assert_eq!(server.environment.key_fetches(), 3);
    Ok(())
}

#[tokio::test]
async fn a_forged_kid_starts_a_cooldown_during_which_no_unknown_kid_is_fetched()
-> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    server.call_whoami(&server.token(&server.claims())?).await?;
    let forger = SigningKey::generate("snk_forged")?;
    server
        .expect_invalid_token(&forger.sign(&server.claims())?, UNKNOWN_KEY)
        .await?;
    assert_eq!(server.environment.key_fetches(), 2);

    // A genuine rotation inside the cooldown waits for it to end.
    let rotated = SigningKey::generate("snk_2")?;
    server
        .environment
        .set_keys(vec![server.key.jwk.clone(), rotated.jwk.clone()]);
    server
        .expect_invalid_token(&rotated.sign(&server.claims())?, UNKNOWN_KEY)
        .await?;
    assert_eq!(server.environment.key_fetches(), 2);
    // Known keys are not affected.
    server.call_whoami(&server.token(&server.claims())?).await?;
    assert_eq!(server.environment.key_fetches(), 2);
    Ok(())
}

#[tokio::test]
async fn after_the_cooldown_an_unknown_kid_refetches_again() -> anyhow::Result<()> {
    let cooldown = Duration::from_millis(200);
    let server = TestServer::spawn_with(|config| config.jwks_refetch_cooldown = cooldown).await?;
    let forger = SigningKey::generate("snk_forged")?;
    server
        .expect_invalid_token(&forger.sign(&server.claims())?, UNKNOWN_KEY)
        .await?;
    assert_eq!(server.environment.key_fetches(), 1);

    tokio::time::sleep(cooldown + Duration::from_millis(50)).await;
    let rotated = SigningKey::generate("snk_2")?;
    server
        .environment
        .set_keys(vec![server.key.jwk.clone(), rotated.jwk.clone()]);
    let response = server.call_whoami(&rotated.sign(&server.claims())?).await?;
    assert_eq!(response["result"]["structuredContent"]["sub"], "usr_100");
    assert_eq!(server.environment.key_fetches(), 2);
    Ok(())
}

#[tokio::test]
async fn unknown_kids_refetch_the_keys_at_most_once_per_cooldown() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    for kid in ["snk_unknown_1", "snk_unknown_2", "snk_unknown_3"] {
        let stranger = SigningKey::generate(kid)?;
        server
            .expect_invalid_token(&stranger.sign(&server.claims())?, UNKNOWN_KEY)
            .await?;
    }
    // The first token found the cache empty and fetched, without its key; the others were
    // inside the cooldown that started.
    assert_eq!(server.environment.key_fetches(), 1);
    Ok(())
}

#[tokio::test]
async fn a_retired_key_is_refused_after_the_next_refetch() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    let retired = server.token(&server.claims())?;
    server.call_whoami(&retired).await?;

    let successor = SigningKey::generate("snk_2")?;
    server.environment.set_keys(vec![successor.jwk.clone()]);
    server
        .call_whoami(&successor.sign(&server.claims())?)
        .await?;
    assert_eq!(server.environment.key_fetches(), 2);
    server.expect_invalid_token(&retired, UNKNOWN_KEY).await
}

#[tokio::test]
async fn a_failed_fetch_starts_a_cooldown_answered_with_503() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    server.environment.set_failing(true);
    let token = server.token(&server.claims())?;
    for _ in 0..2 {
        let response = server
            .post_mcp(Some(&token), None, &initialize_request())
            .await?;
        assert_eq!(response.status(), 503);
        let body: serde_json::Value = response.json().await?;
        assert_eq!(
            body,
            json!({"error": "temporarily_unavailable", "error_description": "the signing keys are unavailable"})
        );
    }
    assert_eq!(server.environment.key_fetches(), 1);
    Ok(())
}

#[tokio::test]
async fn after_a_failed_fetch_and_its_cooldown_the_keys_are_fetched_again() -> anyhow::Result<()> {
    let cooldown = Duration::from_millis(200);
    let server = TestServer::spawn_with(|config| config.jwks_refetch_cooldown = cooldown).await?;
    server.environment.set_failing(true);
    let token = server.token(&server.claims())?;
    assert_eq!(server.initialize_status(&token).await?, 503);
    server.environment.set_failing(false);
    tokio::time::sleep(cooldown + Duration::from_millis(50)).await;
    server.call_whoami(&token).await?;
    assert_eq!(server.environment.key_fetches(), 2);
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

#[tokio::test]
async fn never_refetch_jwks_misses_a_rotated_key() -> anyhow::Result<()> {
    let server = TestServer::spawn_with(|config| {
        config.mistake = Mistake::NeverRefetchJwks;
        config.jwks_refetch_cooldown = Duration::ZERO;
    })
    .await?;
    server.call_whoami(&server.token(&server.claims())?).await?;
    let rotated = SigningKey::generate("snk_2")?;
    server
        .environment
        .set_keys(vec![server.key.jwk.clone(), rotated.jwk.clone()]);
    // No cooldown stands in the way, and still no refetch.
    for _ in 0..2 {
        server
            .expect_invalid_token(&rotated.sign(&server.claims())?, UNKNOWN_KEY)
            .await?;
    }
    assert_eq!(server.environment.key_fetches(), 1);
    server.call_whoami(&server.token(&server.claims())?).await?;
    Ok(())
}

#[tokio::test]
async fn keep_retired_keys_still_accepts_a_key_no_longer_published() -> anyhow::Result<()> {
    let server = TestServer::spawn_making(Mistake::KeepRetiredKeys).await?;
    let retired = server.token(&server.claims())?;
    server.call_whoami(&retired).await?;

    let successor = SigningKey::generate("snk_2")?;
    server.environment.set_keys(vec![successor.jwk.clone()]);
    server
        .call_whoami(&successor.sign(&server.claims())?)
        .await?;
    assert_eq!(server.environment.key_fetches(), 2);
    let response = server.call_whoami(&retired).await?;
    assert_eq!(response["result"]["structuredContent"]["sub"], "usr_100");
    assert_eq!(server.environment.key_fetches(), 2);
    Ok(())
}
