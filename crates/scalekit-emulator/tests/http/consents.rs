//! The consent API: `GET /api/v1/user_consents` and
//! `DELETE /api/v1/clients/{client_id}/consents/{consent_id}` over remembered consents.

use anyhow::{Context as _, Result};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PUBLIC_CLIENT, TestEnv, VERIFIER, ada, json, location, query_param, text};
use scalekit_emulator::ConsentMode;

/// Signs Ada in on a prompt-mode resource up to the consent page and approves it.
async fn approve_consent(env: &TestEnv) -> Result<Value> {
    let management = env.management_token().await?;
    let (lri, state) = env.start_login().await?;
    env.post_user(&lri, Some(&management), &ada()).await?;
    let page = text(env.callback(&state).await?, StatusCode::OK).await?;
    let marker = "name=\"consent_id\" value=\"";
    let start = page.find(marker).context("consent_id field")? + marker.len();
    let end = page[start..].find('"').context("consent_id end")? + start;
    let response = env
        .http
        .post(env.url("/oauth/consent"))
        .form(&[("consent_id", &page[start..end]), ("decision", "approve")])
        .send()
        .await?;
    let redirect = location(response, StatusCode::FOUND)?;
    env.exchange(&query_param(&redirect, "code")?, VERIFIER, StatusCode::OK)
        .await
}

async fn list(env: &TestEnv, token: &str, query: &[(&str, &str)]) -> Result<Value> {
    let response = env
        .http
        .get(env.url("/api/v1/user_consents"))
        .query(query)
        .bearer_auth(token)
        .send()
        .await?;
    json(response, StatusCode::OK).await
}

async fn revoke(env: &TestEnv, token: Option<&str>, path: &str) -> Result<reqwest::Response> {
    let mut request = env.http.delete(env.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    Ok(request.send().await?)
}

#[tokio::test]
async fn a_revoked_consent_is_asked_again_and_issued_tokens_keep_working() -> Result<()> {
    let env =
        TestEnv::spawn_with(|config| config.resources[0].consent = ConsentMode::Prompt).await?;
    let tokens = approve_consent(&env).await?;
    let management = env.management_token().await?;

    let listed = list(&env, &management, &[]).await?;
    let consent = &listed["consents"][0];
    let consent_id = consent["id"].as_str().context("id")?.to_owned();
    assert!(consent_id.starts_with("usrcnst_"), "{listed}");
    assert!(
        consent["user_id"]
            .as_str()
            .is_some_and(|user| user.starts_with("usr_")),
        "{listed}"
    );
    assert_eq!(consent["client_id"], PUBLIC_CLIENT);
    assert_eq!(consent["resource_id"], "res_81920374650192839");
    assert_eq!(
        consent["scopes"],
        json!(["openid", "email", "offline_access", "mcp:read"])
    );
    assert!(
        consent["create_time"]
            .as_str()
            .is_some_and(|time| time.ends_with('Z') && time.contains('T')),
        "{listed}"
    );
    assert_eq!(listed["consents"].as_array().map(Vec::len), Some(1));

    // Filters.
    let user_id = consent["user_id"].as_str().context("user_id")?;
    assert_eq!(
        list(&env, &management, &[("user_id", user_id)]).await?,
        listed
    );
    assert_eq!(
        list(&env, &management, &[("client_id", "m2m_0")]).await?,
        json!({"consents": []})
    );

    // Remembered: the next sign-in skips the page.
    let again = env.sign_in().await?;
    assert!(query_param(&again, "code").is_ok(), "{again}");

    let response = revoke(
        &env,
        Some(&management),
        &format!("/api/v1/clients/{PUBLIC_CLIENT}/consents/{consent_id}"),
    )
    .await?;
    assert_eq!(json(response, StatusCode::OK).await?, json!({}));
    assert_eq!(list(&env, &management, &[]).await?, json!({"consents": []}));

    // Asked again.
    let (lri, state) = env.start_login().await?;
    env.post_user(&lri, Some(&management), &ada()).await?;
    let page = text(env.callback(&state).await?, StatusCode::OK).await?;
    assert!(page.contains("action=\"/oauth/consent\""), "{page}");

    // Tokens issued before the revocation still refresh.
    let refresh_token = tokens["refresh_token"].as_str().context("refresh_token")?;
    env.token(
        &[
            ("grant_type", "refresh_token"),
            ("client_id", PUBLIC_CLIENT),
            ("refresh_token", refresh_token),
        ],
        StatusCode::OK,
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn revoking_an_unknown_consent_is_not_found() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let management = env.management_token().await?;
    let response = revoke(
        &env,
        Some(&management),
        &format!("/api/v1/clients/{PUBLIC_CLIENT}/consents/usrcnst_1"),
    )
    .await?;
    assert_eq!(
        json(response, StatusCode::NOT_FOUND).await?,
        json!({
            "code": 5,
            "message": "consent usrcnst_1 not found for client mcp-test-client",
            "details": [{"@type": "type.googleapis.com/scalekit.v1.errdetails.ErrorInfo", "error_code": "NOT_FOUND"}]
        })
    );
    Ok(())
}

#[tokio::test]
async fn a_client_id_without_the_m2m_prefix_is_an_invalid_argument() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let management = env.management_token().await?;
    let response = revoke(
        &env,
        Some(&management),
        "/api/v1/clients/skc_1/consents/usrcnst_1",
    )
    .await?;
    assert_eq!(
        json(response, StatusCode::BAD_REQUEST).await?,
        json!({
            "code": 3,
            "message": "invalid client_id",
            "details": [{
                "@type": "type.googleapis.com/scalekit.v1.errdetails.ErrorInfo",
                "error_code": "INVALID_ARGUMENT",
                "validation_error_info": {"field_violations": [
                    {"field": "client_id", "description": "client_id must start with m2m_", "constraint": "string.prefix"}
                ]}
            }]
        })
    );
    Ok(())
}

#[tokio::test]
async fn the_consent_api_needs_a_management_token() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let unauthenticated = json!({
        "code": 16,
        "message": "Token empty",
        "details": [{"@type": "type.googleapis.com/scalekit.v1.errdetails.ErrorInfo", "error_code": "UNAUTHENTICATED"}]
    });
    let response = env.get("/api/v1/user_consents").await?;
    assert_eq!(
        json(response, StatusCode::UNAUTHORIZED).await?,
        unauthenticated
    );
    let response = revoke(&env, None, "/api/v1/clients/m2m_1/consents/usrcnst_1").await?;
    assert_eq!(
        json(response, StatusCode::UNAUTHORIZED).await?,
        unauthenticated
    );
    Ok(())
}
