//! Dynamic Client Registration (Decisions §7).

use anyhow::Result;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{RESOURCE, TestEnv, json as json_body};

async fn register(env: &TestEnv, body: &Value) -> Result<reqwest::Response> {
    Ok(env
        .http
        .post(env.url(&format!("/api/v1/resources/{RESOURCE}/clients:register")))
        .json(body)
        .send()
        .await?)
}

#[tokio::test]
async fn registration_returns_201_with_a_public_m2m_client() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let response = register(
        &env,
        &json!({
            "client_name": "Claude",
            "redirect_uris": ["http://127.0.0.1:33418/callback", "http://localhost/cb"],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
            "application_type": "native",
            "software_id": "claude-code",
            "software_version": "1.2.3",
            "scope": "",
            "something_unknown": true
        }),
    )
    .await?;
    let body = json_body(response, StatusCode::CREATED).await?;
    assert!(
        body["client_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("m2m_")),
        "{body}"
    );
    assert_eq!(
        body["client_id_issued_at"].as_u64(),
        Some(env.clock.seconds())
    );
    assert_eq!(body["token_endpoint_auth_method"], "none");
    assert_eq!(body["client_name"], "Claude");
    assert_eq!(
        body["redirect_uris"],
        json!(["http://127.0.0.1:33418/callback", "http://localhost/cb"])
    );
    assert_eq!(
        body["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(body["response_types"], json!(["code"]));
    assert_eq!(body["application_type"], "native");
    assert_eq!(body["software_id"], "claude-code");
    assert_eq!(body["scope"], "");
    assert!(body.get("client_secret").is_none());

    // The new client can start a flow (any loopback port).
    let client_id = body["client_id"].as_str().unwrap_or_default();
    let login = env
        .authorize(&[
            ("client_id", client_id),
            ("redirect_uri", "http://127.0.0.1:40000/callback"),
        ])
        .await?;
    assert_eq!(login.path(), "/login");
    Ok(())
}

#[tokio::test]
async fn registration_without_redirect_uris_is_invalid_redirect_uri() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let body = json_body(
        register(&env, &json!({"client_name": "x"})).await?,
        StatusCode::BAD_REQUEST,
    )
    .await?;
    assert_eq!(
        body,
        json!({"error": "invalid_redirect_uri", "error_description": "redirect_uris is required"})
    );
    Ok(())
}

#[tokio::test]
async fn registration_with_a_fragment_is_invalid_redirect_uri() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let response = register(
        &env,
        &json!({"redirect_uris": ["https://app.example/cb#x"]}),
    )
    .await?;
    let body = json_body(response, StatusCode::BAD_REQUEST).await?;
    assert_eq!(
        body,
        json!({
            "error": "invalid_redirect_uri",
            "error_description": "redirect URI https://app.example/cb#x must not contain a fragment"
        })
    );
    Ok(())
}

#[tokio::test]
async fn registration_with_an_unknown_scope_is_invalid_client_metadata() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let response = register(
        &env,
        &json!({"redirect_uris": ["http://127.0.0.1/cb"], "scope": "admin"}),
    )
    .await?;
    let body = json_body(response, StatusCode::BAD_REQUEST).await?;
    assert_eq!(
        body,
        json!({"error": "invalid_client_metadata", "error_description": "scope admin is not offered by this resource"})
    );
    Ok(())
}

#[tokio::test]
async fn a_client_name_of_128_characters_is_registered_and_of_129_refused() -> Result<()> {
    let env = TestEnv::spawn().await?;
    // Characters, not bytes: 128 crabs are 512 bytes of UTF-8.
    let longest = "\u{1f980}".repeat(128);
    let response = register(
        &env,
        &json!({"redirect_uris": ["http://127.0.0.1/cb"], "client_name": longest}),
    )
    .await?;
    let body = json_body(response, StatusCode::CREATED).await?;
    assert_eq!(body["client_name"], longest.as_str());

    let too_long = format!("{longest}a");
    let response = register(
        &env,
        &json!({"redirect_uris": ["http://127.0.0.1/cb"], "client_name": too_long}),
    )
    .await?;
    let body = json_body(response, StatusCode::BAD_REQUEST).await?;
    assert_eq!(
        body,
        json!({
            "error": "invalid_client_metadata",
            "error_description": "client_name must be at most 128 characters, not 129"
        })
    );
    Ok(())
}

#[tokio::test]
async fn registration_is_refused_with_access_denied_when_disabled() -> Result<()> {
    let env = TestEnv::spawn_with(|config| config.resources[0].dynamic_client_registration = false)
        .await?;
    let response = register(&env, &json!({"redirect_uris": ["http://127.0.0.1/cb"]})).await?;
    let body = json_body(response, StatusCode::FORBIDDEN).await?;
    assert_eq!(
        body,
        json!({
            "error": "access_denied",
            "error_description": format!("dynamic client registration is disabled for resource {RESOURCE}")
        })
    );
    let metadata = json_body(
        env.get(&format!(
            "/.well-known/oauth-authorization-server/resources/{RESOURCE}"
        ))
        .await?,
        StatusCode::OK,
    )
    .await?;
    assert!(metadata.get("registration_endpoint").is_none());
    Ok(())
}
