//! Exact error bodies of the failure cases.

use anyhow::{Context as _, Result};
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, LOCATION};
use serde_json::{Value, json};

use crate::helpers::{
    CONNECTION, PUBLIC_CLIENT, REDIRECT_URI, RESOURCE, TestEnv, VERIFIER, ada, error_page_redirect,
    json as json_body, location, query_param, text,
};

#[tokio::test]
async fn a_missing_bearer_on_the_user_post_is_unauthenticated_token_empty() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let (lri, _) = env.start_login().await?;
    let body = json_body(
        env.post_user(&lri, None, &ada()).await?,
        StatusCode::UNAUTHORIZED,
    )
    .await?;
    assert_eq!(
        body,
        json!({
            "code": 16,
            "message": "Token empty",
            "details": [{"@type": "type.googleapis.com/scalekit.v1.errdetails.ErrorInfo", "error_code": "UNAUTHENTICATED"}]
        })
    );
    Ok(())
}

#[tokio::test]
async fn an_access_token_is_not_a_management_token() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let tokens = env
        .exchange(&env.code().await?, VERIFIER, StatusCode::OK)
        .await?;
    let (lri, _) = env.start_login().await?;
    let response = env
        .post_user(&lri, tokens["access_token"].as_str(), &ada())
        .await?;
    let body = json_body(response, StatusCode::UNAUTHORIZED).await?;
    assert_eq!(body["code"], 16);
    assert_eq!(body["message"], "invalid token");
    Ok(())
}

#[tokio::test]
async fn an_expired_management_token_is_unauthenticated() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let management = env.management_token().await?;
    let (lri, _) = env.start_login().await?;
    env.clock.advance(3600);
    let body = json_body(
        env.post_user(&lri, Some(&management), &ada()).await?,
        StatusCode::UNAUTHORIZED,
    )
    .await?;
    assert_eq!(body["message"], "invalid token");
    Ok(())
}

#[tokio::test]
async fn a_missing_email_is_invalid_argument_with_a_field_violation() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let management = env.management_token().await?;
    let (lri, _) = env.start_login().await?;
    let response = env
        .post_user(&lri, Some(&management), &json!({"sub": "ada-1"}))
        .await?;
    let body = json_body(response, StatusCode::BAD_REQUEST).await?;
    assert_eq!(
        body,
        json!({
            "code": 3,
            "message": "invalid user: email",
            "details": [{
                "@type": "type.googleapis.com/scalekit.v1.errdetails.ErrorInfo",
                "error_code": "INVALID_ARGUMENT",
                "validation_error_info": {"field_violations": [
                    {"field": "email", "description": "email is required unless login_failed is true", "constraint": "required"}
                ]}
            }]
        })
    );
    Ok(())
}

#[tokio::test]
async fn each_field_violation_names_the_rule_it_broke_as_its_constraint() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let management = env.management_token().await?;
    let (lri, _) = env.start_login().await?;
    let user = json!({
        "given_name": "Nobody",
        "phone_number": "0123",
        "organization_external_name": "n".repeat(201),
    });
    let response = env.post_user(&lri, Some(&management), &user).await?;
    let body = json_body(response, StatusCode::BAD_REQUEST).await?;
    assert_eq!(
        body["message"],
        "invalid user: sub, email, phone_number, organization_external_name"
    );
    assert_eq!(
        body["details"][0]["validation_error_info"]["field_violations"],
        json!([
            {"field": "sub", "description": "sub is required unless login_failed is true", "constraint": "required"},
            {"field": "email", "description": "email is required unless login_failed is true", "constraint": "required"},
            {"field": "phone_number", "description": "phone_number must be in E.164 format, e.g. +14155550123", "constraint": "string.pattern"},
            {"field": "organization_external_name", "description": "organization_external_name must be at most 200 characters", "constraint": "string.max_len"}
        ])
    );
    Ok(())
}

#[tokio::test]
async fn a_resource_id_in_the_connection_slot_is_not_found_naming_the_mix_up() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let management = env.management_token().await?;
    let (lri, _) = env.start_login().await?;
    let response = env
        .http
        .post(env.url(&format!(
            "/api/v1/connections/{RESOURCE}/auth-requests/{lri}/user"
        )))
        .bearer_auth(&management)
        .json(&ada())
        .send()
        .await?;
    let body = json_body(response, StatusCode::NOT_FOUND).await?;
    assert_eq!(body["code"], 5);
    assert_eq!(body["details"][0]["error_code"], "NOT_FOUND");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|message| message.contains("resource")),
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn a_second_post_with_another_sub_is_already_exists() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let management = env.management_token().await?;
    let (lri, _) = env.start_login().await?;
    let first: Value = json_body(
        env.post_user(&lri, Some(&management), &ada()).await?,
        StatusCode::OK,
    )
    .await?;
    let again: Value = json_body(
        env.post_user(&lri, Some(&management), &ada()).await?,
        StatusCode::OK,
    )
    .await?;
    assert_eq!(first, again, "the same user again is idempotent");
    let other = json!({"sub": "grace-1", "email": "grace@example.com"});
    let body = json_body(
        env.post_user(&lri, Some(&management), &other).await?,
        StatusCode::CONFLICT,
    )
    .await?;
    assert_eq!(body["code"], 6);
    assert_eq!(body["details"][0]["error_code"], "ALREADY_EXISTS");
    Ok(())
}

#[tokio::test]
async fn a_reused_code_is_rejected_with_invalid_grant() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let code = env.code().await?;
    let tokens = env.exchange(&code, VERIFIER, StatusCode::OK).await?;
    let body = env
        .exchange(&code, VERIFIER, StatusCode::BAD_REQUEST)
        .await?;
    assert_eq!(
        body,
        json!({"error": "invalid_grant", "error_description": "the authorization code was already used"})
    );
    // The reuse revoked the refresh token issued from the code.
    let refresh = tokens["refresh_token"].as_str().unwrap_or_default();
    let body = env
        .token(
            &[
                ("grant_type", "refresh_token"),
                ("client_id", PUBLIC_CLIENT),
                ("refresh_token", refresh),
            ],
            StatusCode::BAD_REQUEST,
        )
        .await?;
    assert_eq!(
        body,
        json!({"error": "invalid_grant", "error_description": "the refresh token is invalid, expired or revoked"})
    );
    Ok(())
}

#[tokio::test]
async fn a_wrong_pkce_verifier_is_rejected_with_invalid_grant() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let code = env.code().await?;
    let wrong = "x".repeat(43);
    let body = env.exchange(&code, &wrong, StatusCode::BAD_REQUEST).await?;
    assert_eq!(
        body,
        json!({"error": "invalid_grant", "error_description": "code_verifier does not match the code_challenge"})
    );
    let body = env
        .exchange(&code, "short", StatusCode::BAD_REQUEST)
        .await?;
    assert_eq!(
        body,
        json!({"error": "invalid_grant", "error_description": "code_verifier is malformed"})
    );
    Ok(())
}

#[tokio::test]
async fn an_expired_code_is_rejected_with_invalid_grant() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let code = env.code().await?;
    env.clock.advance(600);
    let body = env
        .exchange(&code, VERIFIER, StatusCode::BAD_REQUEST)
        .await?;
    assert_eq!(
        body,
        json!({"error": "invalid_grant", "error_description": "the authorization code expired"})
    );
    Ok(())
}

#[tokio::test]
async fn an_expired_login_request_redirects_to_the_invalid_state_page() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let management = env.management_token().await?;
    let (lri, state) = env.start_login().await?;
    json_body(
        env.post_user(&lri, Some(&management), &ada()).await?,
        StatusCode::OK,
    )
    .await?;
    env.clock.advance(600);
    let response = env.callback(&state).await?;
    let shown_at = response
        .headers()
        .get(LOCATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let (error, description) = error_page_redirect(&env, response)?;
    assert_eq!(
        (error.as_str(), description.as_str()),
        ("invalid_state", "the sign-in request expired")
    );
    // The page the browser lands on shows what the redirect said.
    let shown_at = shown_at.context("a Location")?;
    let page = env.http.get(&shown_at).send().await?;
    let cache_control = page.headers().get(CACHE_CONTROL).cloned();
    let page = text(page, StatusCode::BAD_REQUEST).await?;
    assert_eq!(
        cache_control.as_ref().map(|value| value.as_bytes()),
        Some(&b"no-store"[..])
    );
    assert!(
        page.contains("<title>Sign-in error: invalid_state (the sign-in request expired)</title>"),
        "{page}"
    );
    assert!(
        page.contains("error=<code id=\"error\">invalid_state</code>"),
        "{page}"
    );
    assert!(
        page.contains("restart sign-in from your MCP client"),
        "{page}"
    );
    Ok(())
}

#[tokio::test]
async fn a_callback_before_any_user_was_posted_redirects_to_the_invalid_state_page() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let (_, state) = env.start_login().await?;
    let (error, description) = error_page_redirect(&env, env.callback(&state).await?)?;
    assert_eq!(error, "invalid_state");
    assert_eq!(
        description,
        "no user was submitted for this sign-in request"
    );
    Ok(())
}

#[tokio::test]
async fn a_reused_state_redirects_to_the_invalid_state_page() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let management = env.management_token().await?;
    let (lri, state) = env.start_login().await?;
    env.post_user(&lri, Some(&management), &ada()).await?;
    location(env.callback(&state).await?, StatusCode::FOUND)?;
    let (error, _) = error_page_redirect(&env, env.callback(&state).await?)?;
    assert_eq!(error, "invalid_state");
    Ok(())
}

#[tokio::test]
async fn a_callback_without_state_redirects_to_the_invalid_state_page() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let response = env
        .get(&format!(
            "/sso/v1/connections/{CONNECTION}/partner:callback"
        ))
        .await?;
    let (error, description) = error_page_redirect(&env, response)?;
    assert_eq!(
        (error.as_str(), description.as_str()),
        ("invalid_state", "state is required")
    );
    Ok(())
}

#[tokio::test]
async fn the_error_page_shows_only_the_codes_the_environment_sends() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let page = text(env.get("/error").await?, StatusCode::BAD_REQUEST).await?;
    assert!(
        page.contains(
            "<title>Sign-in error: invalid_request (the error page needs an error parameter)</title>"
        ),
        "{page}"
    );
    let page = text(
        env.get("/error?error=you_have_been_hacked&error_description=call+this+number")
            .await?,
        StatusCode::BAD_REQUEST,
    )
    .await?;
    assert!(
        page.contains("error=<code id=\"error\">invalid_request</code>"),
        "{page}"
    );
    assert!(!page.contains("you_have_been_hacked"), "{page}");
    assert!(!page.contains("call this number"), "{page}");
    // A known code with a description the environment never sends: the code is shown, the
    // description is not, escaped or otherwise.
    let response = env
        .http
        .get(env.url("/error"))
        .query(&[
            ("error", "invalid_state"),
            (
                "error_description",
                "<b>your account is locked, call 555-0100</b>",
            ),
        ])
        .send()
        .await?;
    let page = text(response, StatusCode::BAD_REQUEST).await?;
    assert!(
        page.contains("error=<code id=\"error\">invalid_state</code>"),
        "{page}"
    );
    assert!(
        page.contains(
            "<p id=\"error_description\">the description given is not one this environment sends</p>"
        ),
        "{page}"
    );
    assert!(!page.contains("555-0100"), "{page}");
    // The environment's own descriptions are shown.
    let page = text(
        env.get("/error?error=invalid_state&error_description=the+sign-in+request+expired")
            .await?,
        StatusCode::BAD_REQUEST,
    )
    .await?;
    assert!(
        page.contains("<p id=\"error_description\">the sign-in request expired</p>"),
        "{page}"
    );
    let page = text(
        env.get("/error?error=invalid_state").await?,
        StatusCode::BAD_REQUEST,
    )
    .await?;
    assert!(page.contains("no description was given"), "{page}");
    Ok(())
}

#[tokio::test]
async fn login_failed_redirects_with_access_denied() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let management = env.management_token().await?;
    let (lri, state) = env.start_login().await?;
    json_body(
        env.post_user(&lri, Some(&management), &json!({"login_failed": true}))
            .await?,
        StatusCode::OK,
    )
    .await?;
    let redirect = location(env.callback(&state).await?, StatusCode::FOUND)?;
    assert!(redirect.as_str().starts_with(REDIRECT_URI), "{redirect}");
    assert_eq!(query_param(&redirect, "error")?, "access_denied");
    assert_eq!(query_param(&redirect, "state")?, "client-state-1");
    assert_eq!(
        query_param(&redirect, "iss")?,
        format!("{}/resources/{RESOURCE}", env.base)
    );
    Ok(())
}

#[tokio::test]
async fn an_unregistered_redirect_uri_shows_an_error_page_instead_of_redirecting() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let response = env
        .http
        .get(env.url("/oauth/authorize"))
        .query(&[
            ("response_type", "code"),
            ("client_id", PUBLIC_CLIENT),
            ("redirect_uri", "https://evil.example/cb"),
        ])
        .send()
        .await?;
    let page = text(response, StatusCode::BAD_REQUEST).await?;
    assert!(page.contains("invalid_request"), "{page}");
    Ok(())
}

#[tokio::test]
async fn plain_pkce_is_refused_on_the_redirect() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let redirect = env.authorize(&[("code_challenge_method", "plain")]).await?;
    assert_eq!(query_param(&redirect, "error")?, "invalid_request");
    assert_eq!(
        query_param(&redirect, "error_description")?,
        "code_challenge_method must be S256"
    );
    assert_eq!(query_param(&redirect, "state")?, "client-state-1");
    Ok(())
}

#[tokio::test]
async fn an_unknown_resource_is_invalid_target_and_a_foreign_scope_invalid_scope() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let redirect = env
        .authorize(&[("resource", "http://127.0.0.1:1/other")])
        .await?;
    assert_eq!(query_param(&redirect, "error")?, "invalid_target");
    let redirect = env.authorize(&[("scope", "mcp:read admin")]).await?;
    assert_eq!(query_param(&redirect, "error")?, "invalid_scope");
    Ok(())
}

#[tokio::test]
async fn a_user_body_that_is_not_json_is_invalid_argument_in_the_gateway_shape() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let management = env.management_token().await?;
    let (lri, _) = env.start_login().await?;
    let response = env
        .http
        .post(env.url(&format!(
            "/api/v1/connections/{CONNECTION}/auth-requests/{lri}/user"
        )))
        .bearer_auth(&management)
        .form(&[("sub", "ada-1")])
        .send()
        .await?;
    let body = json_body(response, StatusCode::BAD_REQUEST).await?;
    assert_eq!(body["code"], 3);
    assert_eq!(body["details"][0]["error_code"], "INVALID_ARGUMENT");
    Ok(())
}
