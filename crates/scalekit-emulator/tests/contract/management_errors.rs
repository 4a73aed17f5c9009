//! Every error body of the management API (`/api/v1`, Scalekit's gateway shape) and of the
//! client-credentials grant that precedes it.

use anyhow::Result;
use reqwest::StatusCode;
use serde_json::json;

use crate::stack::{API_CLIENT_ID, CONNECTION, RESOURCE, Stack, persona};

#[tokio::test]
async fn a_wrong_api_client_secret_is_invalid_client() -> Result<()> {
    let stack = Stack::spawn().await?;
    let answer = stack
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", API_CLIENT_ID),
                ("client_secret", "wrong"),
            ],
        )
        .await?;
    insta::assert_json_snapshot!(answer.token_json(StatusCode::UNAUTHORIZED)?);
    Ok(())
}

#[tokio::test]
async fn a_user_post_without_a_bearer_is_token_empty() -> Result<()> {
    let stack = Stack::spawn().await?;
    let (lri, _) = stack.start_login().await?;
    let answer = stack
        .post_user(&lri, None, &serde_json::to_value(persona("ada")?)?)
        .await?;
    insta::assert_json_snapshot!(answer.json(StatusCode::UNAUTHORIZED)?);
    Ok(())
}

#[tokio::test]
async fn a_user_post_with_a_bad_bearer_is_invalid_token() -> Result<()> {
    let stack = Stack::spawn().await?;
    let (lri, _) = stack.start_login().await?;
    let answer = stack
        .post_user(
            &lri,
            Some("not-a-token"),
            &serde_json::to_value(persona("ada")?)?,
        )
        .await?;
    insta::assert_json_snapshot!(answer.json(StatusCode::UNAUTHORIZED)?);
    Ok(())
}

#[tokio::test]
async fn an_expired_management_token_is_invalid_token() -> Result<()> {
    let stack = Stack::spawn().await?;
    let token = stack.management_token().await?;
    let (lri, _) = stack.start_login().await?;
    stack.clock.advance(3600);
    let answer = stack
        .post_user(&lri, Some(&token), &serde_json::to_value(persona("ada")?)?)
        .await?;
    insta::assert_json_snapshot!(answer.json(StatusCode::UNAUTHORIZED)?);
    Ok(())
}

#[tokio::test]
async fn a_user_without_sub_and_email_is_invalid_argument_with_field_violations() -> Result<()> {
    let stack = Stack::spawn().await?;
    let token = stack.management_token().await?;
    let (lri, _) = stack.start_login().await?;
    let answer = stack
        .post_user(&lri, Some(&token), &json!({"given_name": "Nobody"}))
        .await?;
    insta::assert_json_snapshot!(answer.json(StatusCode::BAD_REQUEST)?);
    Ok(())
}

#[tokio::test]
async fn a_user_without_email_is_invalid_argument() -> Result<()> {
    let stack = Stack::spawn().await?;
    let token = stack.management_token().await?;
    let (lri, _) = stack.start_login().await?;
    let answer = stack
        .post_user(&lri, Some(&token), &json!({"sub": "ext-usr-1"}))
        .await?;
    insta::assert_json_snapshot!(answer.json(StatusCode::BAD_REQUEST)?);
    Ok(())
}

#[tokio::test]
async fn a_malformed_phone_number_and_a_long_organization_name_are_field_violations() -> Result<()>
{
    let stack = Stack::spawn().await?;
    let token = stack.management_token().await?;
    let (lri, _) = stack.start_login().await?;
    let answer = stack
        .post_user(
            &lri,
            Some(&token),
            &json!({
                "sub": "ext-usr-1",
                "email": "user@example.com",
                "phone_number": "020 7123 4567",
                "organization_external_name": "x".repeat(201),
            }),
        )
        .await?;
    insta::assert_json_snapshot!(answer.json(StatusCode::BAD_REQUEST)?);
    Ok(())
}

#[tokio::test]
async fn a_user_body_that_is_not_a_user_object_is_invalid_argument() -> Result<()> {
    let stack = Stack::spawn().await?;
    let token = stack.management_token().await?;
    let (lri, _) = stack.start_login().await?;
    let answer = stack
        .post_user(&lri, Some(&token), &json!({"sub": 42, "email": ["a"]}))
        .await?;
    insta::assert_json_snapshot!(answer.json(StatusCode::BAD_REQUEST)?);
    Ok(())
}

#[tokio::test]
async fn a_resource_id_in_the_connection_slot_is_not_found() -> Result<()> {
    let stack = Stack::spawn().await?;
    let token = stack.management_token().await?;
    let (lri, _) = stack.start_login().await?;
    let answer = stack
        .post_json(
            &format!("/api/v1/connections/{RESOURCE}/auth-requests/{lri}/user"),
            Some(&token),
            &serde_json::to_value(persona("ada")?)?,
        )
        .await?;
    insta::assert_json_snapshot!(answer.json(StatusCode::NOT_FOUND)?);
    Ok(())
}

#[tokio::test]
async fn an_unknown_connection_is_not_found() -> Result<()> {
    let stack = Stack::spawn().await?;
    let token = stack.management_token().await?;
    let (lri, _) = stack.start_login().await?;
    let answer = stack
        .post_json(
            &format!("/api/v1/connections/conn_404/auth-requests/{lri}/user"),
            Some(&token),
            &serde_json::to_value(persona("ada")?)?,
        )
        .await?;
    insta::assert_json_snapshot!(answer.json(StatusCode::NOT_FOUND)?);
    Ok(())
}

#[tokio::test]
async fn an_unknown_login_request_is_not_found() -> Result<()> {
    let stack = Stack::spawn().await?;
    let token = stack.management_token().await?;
    let answer = stack
        .post_user(
            "lri_404",
            Some(&token),
            &serde_json::to_value(persona("ada")?)?,
        )
        .await?;
    insta::assert_json_snapshot!(answer.json(StatusCode::NOT_FOUND)?);
    Ok(())
}

#[tokio::test]
async fn a_different_user_for_the_same_login_request_is_already_exists() -> Result<()> {
    let stack = Stack::spawn().await?;
    let token = stack.management_token().await?;
    let (lri, _) = stack.start_login().await?;
    let first = stack
        .post_user(&lri, Some(&token), &serde_json::to_value(persona("ada")?)?)
        .await?;
    let first = first.json(StatusCode::OK)?;
    let again = stack
        .post_user(&lri, Some(&token), &serde_json::to_value(persona("ada")?)?)
        .await?;
    assert_eq!(
        again.json(StatusCode::OK)?,
        first,
        "the same user is idempotent"
    );
    let other = stack
        .post_user(
            &lri,
            Some(&token),
            &serde_json::to_value(persona("grace")?)?,
        )
        .await?;
    insta::assert_json_snapshot!(json!({
        "first": first,
        "conflict": other.json(StatusCode::CONFLICT)?,
    }));
    Ok(())
}

#[tokio::test]
async fn an_unknown_route_is_a_gateway_not_found() -> Result<()> {
    let stack = Stack::spawn().await?;
    let answer = stack
        .get(&format!("/api/v1/connections/{CONNECTION}/nothing-here"))
        .await?;
    insta::assert_json_snapshot!(answer.json(StatusCode::NOT_FOUND)?);
    Ok(())
}
