//! Dynamic client registration: the answer and every refusal.

use anyhow::Result;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::stack::{RESOURCE, Stack};

async fn register(stack: &Stack, resource: &str, body: &Value) -> Result<crate::stack::Answer> {
    stack
        .post_json(
            &format!("/api/v1/resources/{resource}/clients:register"),
            None,
            body,
        )
        .await
}

#[tokio::test]
async fn a_registration_echoes_the_metadata_with_an_m2m_client_id() -> Result<()> {
    let stack = Stack::spawn().await?;
    let answer = register(
        &stack,
        RESOURCE,
        &json!({
            "client_name": "Claude",
            "redirect_uris": ["http://127.0.0.1:33418/callback", "https://claude.ai/api/mcp/auth_callback"],
            "scope": "openid mcp:read",
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
            "software_id": "claude-desktop",
            "software_version": "1.0.0",
            "client_uri": "https://claude.ai",
        }),
    )
    .await?;
    assert_eq!(answer.cache_control.as_deref(), Some("no-store"));
    insta::assert_json_snapshot!(answer.json(StatusCode::CREATED)?);
    Ok(())
}

#[tokio::test]
async fn a_registration_for_an_unknown_resource_is_not_found() -> Result<()> {
    let stack = Stack::spawn().await?;
    let answer = register(
        &stack,
        "res_404",
        &json!({"redirect_uris": ["http://127.0.0.1/cb"]}),
    )
    .await?;
    insta::assert_json_snapshot!(answer.json(StatusCode::NOT_FOUND)?);
    Ok(())
}

#[tokio::test]
async fn a_registration_where_dcr_is_off_is_access_denied() -> Result<()> {
    let stack = Stack::spawn_with(|config| {
        for resource in &mut config.resources {
            resource.dynamic_client_registration = false;
        }
    })
    .await?;
    let answer = register(
        &stack,
        RESOURCE,
        &json!({"redirect_uris": ["http://127.0.0.1/cb"]}),
    )
    .await?;
    insta::assert_json_snapshot!(answer.json(StatusCode::FORBIDDEN)?);
    Ok(())
}

#[tokio::test]
async fn registrations_with_bad_redirect_uris_are_invalid_redirect_uri() -> Result<()> {
    let stack = Stack::spawn().await?;
    let mut answers = Vec::new();
    for uris in [
        json!([]),
        json!(["http://app.example/cb"]),
        json!(["https://app.example/cb#fragment"]),
        json!(["not a uri"]),
    ] {
        let answer = register(&stack, RESOURCE, &json!({ "redirect_uris": uris })).await?;
        answers.push(
            json!({ "redirect_uris": uris, "answer": answer.json(StatusCode::BAD_REQUEST)? }),
        );
    }
    insta::assert_json_snapshot!(answers);
    Ok(())
}

#[tokio::test]
async fn a_registration_with_an_unknown_scope_is_invalid_client_metadata() -> Result<()> {
    let stack = Stack::spawn().await?;
    let answer = register(
        &stack,
        RESOURCE,
        &json!({"redirect_uris": ["http://127.0.0.1/cb"], "scope": "mcp:read admin"}),
    )
    .await?;
    insta::assert_json_snapshot!(answer.json(StatusCode::BAD_REQUEST)?);
    Ok(())
}

#[tokio::test]
async fn a_registration_that_is_not_json_is_invalid_client_metadata() -> Result<()> {
    let stack = Stack::spawn().await?;
    let response = stack
        .http
        .post(stack.url(&format!("/api/v1/resources/{RESOURCE}/clients:register")))
        .header("content-type", "application/json")
        .body("redirect_uris=http://127.0.0.1/cb")
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    insta::assert_json_snapshot!(body);
    Ok(())
}
