//! The environment API client's management token.

use anyhow::Result;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{API_CLIENT_ID, API_CLIENT_SECRET, TestEnv, token_json};

#[tokio::test]
async fn client_credentials_issue_a_signed_management_token() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let body = env
        .token(
            &[
                ("grant_type", "client_credentials"),
                ("client_id", API_CLIENT_ID),
                ("client_secret", API_CLIENT_SECRET),
            ],
            StatusCode::OK,
        )
        .await?;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(body.get("refresh_token").is_none());
    let token = body["access_token"].as_str().unwrap_or_default();
    let claims: Value = env.verify(token, &env.base).await?;
    assert_eq!(claims["sub"], API_CLIENT_ID);
    assert_eq!(claims["client_id"], API_CLIENT_ID);
    assert_eq!(claims["aud"], json!([env.base]));
    assert!(
        claims["jti"]
            .as_str()
            .is_some_and(|jti| jti.starts_with("tkn_"))
    );
    assert_eq!(
        claims["exp"].as_u64(),
        claims["iat"].as_u64().map(|iat| iat + 3600)
    );
    Ok(())
}

#[tokio::test]
async fn client_credentials_over_http_basic_are_accepted() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let basic = STANDARD.encode(format!("{API_CLIENT_ID}:{API_CLIENT_SECRET}"));
    let response = env
        .http
        .post(env.url("/oauth/token"))
        .header("authorization", format!("Basic {basic}"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await?;
    let body = token_json(response, StatusCode::OK).await?;
    assert_eq!(body["token_type"], "Bearer");
    Ok(())
}

#[tokio::test]
async fn a_bad_client_secret_is_rejected_with_invalid_client() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let body = env
        .token(
            &[
                ("grant_type", "client_credentials"),
                ("client_id", API_CLIENT_ID),
                ("client_secret", "wrong"),
            ],
            StatusCode::UNAUTHORIZED,
        )
        .await?;
    assert_eq!(
        body,
        json!({"error": "invalid_client", "error_description": "client authentication failed"})
    );
    Ok(())
}

#[tokio::test]
async fn an_unknown_grant_type_is_unsupported_grant_type() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let body = env
        .token(&[("grant_type", "password")], StatusCode::BAD_REQUEST)
        .await?;
    assert_eq!(
        body,
        json!({"error": "unsupported_grant_type", "error_description": "grant_type password is not supported"})
    );
    Ok(())
}

#[tokio::test]
async fn a_json_token_request_is_invalid_request_not_a_plain_text_rejection() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let response = env
        .http
        .post(env.url("/oauth/token"))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await?;
    let body = token_json(response, StatusCode::BAD_REQUEST).await?;
    assert_eq!(
        body,
        json!({
            "error": "invalid_request",
            "error_description": "the token request must be a form (application/x-www-form-urlencoded)"
        })
    );
    Ok(())
}

#[tokio::test]
async fn a_public_client_cannot_revoke_tokens() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let response = env
        .http
        .post(env.url("/oauth/revoke"))
        .form(&[
            ("token", "anything"),
            ("client_id", crate::helpers::PUBLIC_CLIENT),
        ])
        .send()
        .await?;
    let body = token_json(response, StatusCode::UNAUTHORIZED).await?;
    assert_eq!(
        body,
        json!({
            "error": "invalid_client",
            "error_description": "public clients cannot revoke tokens: client authentication is required"
        })
    );
    Ok(())
}
