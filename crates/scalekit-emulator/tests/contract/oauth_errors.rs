//! Every error of the OAuth endpoints: token-endpoint JSON bodies, errors redirected to the
//! client, and the hosted error pages (HTML) for what cannot be redirected to the client, shown
//! where the error happened or after a redirect to `{env}/error` (the partner callback's
//! `invalid_state`).

use anyhow::{Context as _, Result};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::stack::{
    AGENT, AGENT_SECRET, API_CLIENT_ID, API_CLIENT_SECRET, CLIENT, CONNECTION, RESOURCE, Stack,
    VERIFIER, persona,
};

async fn code(stack: &Stack) -> Result<String> {
    Ok(stack.sign_in(&[], &persona("ada")?).await?.code)
}

// --- /oauth/token ------------------------------------------------------------------------------

#[tokio::test]
async fn a_reused_code_is_invalid_grant() -> Result<()> {
    let stack = Stack::spawn().await?;
    let code = code(&stack).await?;
    stack
        .exchange(&code, &[])
        .await?
        .token_json(StatusCode::OK)?;
    let answer = stack.exchange(&code, &[]).await?;
    insta::assert_json_snapshot!(answer.token_json(StatusCode::BAD_REQUEST)?);
    Ok(())
}

#[tokio::test]
async fn a_wrong_verifier_is_invalid_grant() -> Result<()> {
    let stack = Stack::spawn().await?;
    let code = code(&stack).await?;
    let answer = stack
        .exchange(&code, &[("code_verifier", &"x".repeat(43))])
        .await?;
    insta::assert_json_snapshot!(answer.token_json(StatusCode::BAD_REQUEST)?);
    Ok(())
}

#[tokio::test]
async fn a_malformed_or_missing_verifier_is_invalid_grant() -> Result<()> {
    let stack = Stack::spawn().await?;
    let code = code(&stack).await?;
    let malformed = stack.exchange(&code, &[("code_verifier", "short")]).await?;
    let missing = stack.exchange(&code, &[("code_verifier", "")]).await?;
    insta::assert_json_snapshot!(json!({
        "malformed": malformed.token_json(StatusCode::BAD_REQUEST)?,
        "missing": missing.token_json(StatusCode::BAD_REQUEST)?,
    }));
    Ok(())
}

#[tokio::test]
async fn an_expired_code_is_invalid_grant() -> Result<()> {
    let stack = Stack::spawn().await?;
    let code = code(&stack).await?;
    stack.clock.advance(600);
    let answer = stack.exchange(&code, &[]).await?;
    insta::assert_json_snapshot!(answer.token_json(StatusCode::BAD_REQUEST)?);
    Ok(())
}

#[tokio::test]
async fn an_unknown_code_is_invalid_grant() -> Result<()> {
    let stack = Stack::spawn().await?;
    let answer = stack.exchange("no-such-code", &[]).await?;
    insta::assert_json_snapshot!(answer.token_json(StatusCode::BAD_REQUEST)?);
    Ok(())
}

#[tokio::test]
async fn a_different_redirect_uri_is_invalid_grant_and_a_missing_one_invalid_request() -> Result<()>
{
    let stack = Stack::spawn().await?;
    let code = code(&stack).await?;
    let different = stack
        .exchange(&code, &[("redirect_uri", "http://127.0.0.1:10/callback")])
        .await?;
    let missing = stack.exchange(&code, &[("redirect_uri", "")]).await?;
    insta::assert_json_snapshot!(json!({
        "different": different.token_json(StatusCode::BAD_REQUEST)?,
        "missing": missing.token_json(StatusCode::BAD_REQUEST)?,
    }));
    Ok(())
}

#[tokio::test]
async fn an_unknown_client_is_invalid_client() -> Result<()> {
    let stack = Stack::spawn().await?;
    let code = code(&stack).await?;
    let answer = stack
        .exchange(&code, &[("client_id", "who-is-this")])
        .await?;
    insta::assert_json_snapshot!(answer.token_json(StatusCode::UNAUTHORIZED)?);
    Ok(())
}

#[tokio::test]
async fn a_missing_client_id_is_invalid_client() -> Result<()> {
    let stack = Stack::spawn().await?;
    let code = code(&stack).await?;
    let answer = stack.exchange(&code, &[("client_id", "")]).await?;
    insta::assert_json_snapshot!(answer.token_json(StatusCode::UNAUTHORIZED)?);
    Ok(())
}

#[tokio::test]
async fn another_resource_at_the_token_endpoint_is_invalid_target() -> Result<()> {
    let stack = Stack::spawn().await?;
    let code = code(&stack).await?;
    let answer = stack
        .exchange(&code, &[("resource", "http://127.0.0.1:9999/other")])
        .await?;
    insta::assert_json_snapshot!(answer.token_json(StatusCode::BAD_REQUEST)?);
    Ok(())
}

#[tokio::test]
async fn a_missing_grant_type_is_invalid_request_and_an_unknown_one_unsupported() -> Result<()> {
    let stack = Stack::spawn().await?;
    let missing = stack
        .post_form("/oauth/token", &[("client_id", CLIENT)])
        .await?;
    let unknown = stack
        .post_form(
            "/oauth/token",
            &[("grant_type", "password"), ("client_id", CLIENT)],
        )
        .await?;
    insta::assert_json_snapshot!(json!({
        "missing": missing.token_json(StatusCode::BAD_REQUEST)?,
        "unknown": unknown.token_json(StatusCode::BAD_REQUEST)?,
    }));
    Ok(())
}

#[tokio::test]
async fn a_token_request_that_is_not_a_form_is_invalid_request() -> Result<()> {
    let stack = Stack::spawn().await?;
    let response = stack
        .http
        .post(stack.url("/oauth/token"))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    insta::assert_json_snapshot!(body);
    Ok(())
}

#[tokio::test]
async fn refresh_errors_reuse_scope_and_target() -> Result<()> {
    let stack = Stack::spawn().await?;
    let code = code(&stack).await?;
    let tokens = stack
        .exchange(&code, &[])
        .await?
        .token_json(StatusCode::OK)?;
    let first = tokens["refresh_token"].as_str().context("refresh_token")?;
    let beyond = stack.refresh(first, &[("scope", "mcp:write")]).await?;
    let target = stack
        .refresh(first, &[("resource", "http://127.0.0.1:9999/other")])
        .await?;
    let rotated = stack
        .refresh(first, &[])
        .await?
        .token_json(StatusCode::OK)?;
    let second = rotated["refresh_token"].as_str().context("refresh_token")?;
    let reused = stack.refresh(first, &[]).await?;
    let revoked = stack.refresh(second, &[]).await?;
    let unknown = stack.refresh("no-such-token", &[]).await?;
    insta::assert_json_snapshot!(json!({
        "scope_beyond_the_grant": beyond.token_json(StatusCode::BAD_REQUEST)?,
        "another_resource": target.token_json(StatusCode::BAD_REQUEST)?,
        "reused": reused.token_json(StatusCode::BAD_REQUEST)?,
        "after_reuse_the_newer_token": revoked.token_json(StatusCode::BAD_REQUEST)?,
        "unknown": unknown.token_json(StatusCode::BAD_REQUEST)?,
    }));
    Ok(())
}

#[tokio::test]
async fn agent_refusals_secret_scope_and_target() -> Result<()> {
    let stack = Stack::spawn().await?;
    let agent = |extra: &[(&'static str, &'static str)]| {
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", AGENT),
            ("client_secret", AGENT_SECRET),
        ];
        for (name, value) in extra {
            form.retain(|(existing, _)| existing != name);
            form.push((name, value));
        }
        form
    };
    let wrong_secret = stack
        .post_form("/oauth/token", &agent(&[("client_secret", "wrong")]))
        .await?;
    let beyond = stack
        .post_form("/oauth/token", &agent(&[("scope", "mcp:write")]))
        .await?;
    let target = stack
        .post_form(
            "/oauth/token",
            &agent(&[("resource", "http://127.0.0.1:9999/other")]),
        )
        .await?;
    let api_client_at_a_resource = stack
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", API_CLIENT_ID),
                ("client_secret", API_CLIENT_SECRET),
                ("resource", RESOURCE),
            ],
        )
        .await?;
    insta::assert_json_snapshot!(json!({
        "wrong_secret": wrong_secret.token_json(StatusCode::UNAUTHORIZED)?,
        "scope_beyond_the_agents": beyond.token_json(StatusCode::BAD_REQUEST)?,
        "another_resource": target.token_json(StatusCode::BAD_REQUEST)?,
        "api_client_at_a_resource": api_client_at_a_resource.token_json(StatusCode::BAD_REQUEST)?,
    }));
    Ok(())
}

#[tokio::test]
async fn a_public_client_cannot_revoke() -> Result<()> {
    let stack = Stack::spawn().await?;
    let answer = stack
        .post_form(
            "/oauth/revoke",
            &[("token", "anything"), ("client_id", CLIENT)],
        )
        .await?;
    insta::assert_json_snapshot!(answer.token_json(StatusCode::UNAUTHORIZED)?);
    Ok(())
}

// --- /oauth/authorize: redirected errors -------------------------------------------------------

#[tokio::test]
async fn an_unknown_resource_is_redirected_as_invalid_target() -> Result<()> {
    let stack = Stack::spawn().await?;
    let answer = stack
        .authorize(&[("resource", "http://127.0.0.1:9999/other")])
        .await?;
    insta::assert_json_snapshot!(answer.redirect()?);
    Ok(())
}

#[tokio::test]
async fn an_unknown_scope_is_redirected_as_invalid_scope() -> Result<()> {
    let stack = Stack::spawn().await?;
    let answer = stack.authorize(&[("scope", "openid admin")]).await?;
    insta::assert_json_snapshot!(answer.redirect()?);
    Ok(())
}

#[tokio::test]
async fn plain_pkce_is_redirected_as_invalid_request() -> Result<()> {
    let stack = Stack::spawn().await?;
    let answer = stack
        .authorize(&[
            ("code_challenge_method", "plain"),
            ("code_challenge", VERIFIER),
        ])
        .await?;
    insta::assert_json_snapshot!(answer.redirect()?);
    Ok(())
}

#[tokio::test]
async fn a_missing_code_challenge_is_redirected_as_invalid_request() -> Result<()> {
    let stack = Stack::spawn().await?;
    let answer = stack.authorize(&[("code_challenge", "")]).await?;
    insta::assert_json_snapshot!(answer.redirect()?);
    Ok(())
}

#[tokio::test]
async fn another_response_type_is_redirected_as_unsupported_response_type() -> Result<()> {
    let stack = Stack::spawn().await?;
    let answer = stack
        .authorize(&[("response_type", "token"), ("state", "")])
        .await?;
    insta::assert_json_snapshot!(answer.redirect()?);
    Ok(())
}

#[tokio::test]
async fn a_failed_login_is_redirected_as_access_denied() -> Result<()> {
    let stack = Stack::spawn().await?;
    let token = stack.management_token().await?;
    let (lri, state) = stack.start_login().await?;
    stack
        .post_user(&lri, Some(&token), &json!({"login_failed": true}))
        .await?
        .json(StatusCode::OK)?;
    let answer = stack.callback(&state).await?;
    insta::assert_json_snapshot!(answer.redirect()?);
    Ok(())
}

#[tokio::test]
async fn the_login_redirect_carries_the_login_request_and_a_fresh_state() -> Result<()> {
    let stack = Stack::spawn().await?;
    let answer = stack.authorize(&[]).await?;
    insta::assert_json_snapshot!(answer.redirect()?);
    Ok(())
}

#[tokio::test]
async fn the_code_redirect_carries_code_state_and_iss() -> Result<()> {
    let stack = Stack::spawn().await?;
    let token = stack.management_token().await?;
    let (lri, state) = stack.start_login().await?;
    stack
        .post_user(&lri, Some(&token), &serde_json::to_value(persona("ada")?)?)
        .await?
        .json(StatusCode::OK)?;
    let answer = stack.callback(&state).await?;
    insta::assert_json_snapshot!(answer.redirect()?);
    Ok(())
}

// --- Hosted error pages ------------------------------------------------------------------------

#[tokio::test]
async fn an_unregistered_redirect_uri_gets_the_hosted_error_page() -> Result<()> {
    let stack = Stack::spawn().await?;
    let answer = stack
        .authorize(&[("redirect_uri", "https://evil.example/callback")])
        .await?;
    insta::assert_snapshot!(answer.error_page()?);
    Ok(())
}

#[tokio::test]
async fn an_unknown_client_gets_the_hosted_error_page() -> Result<()> {
    let stack = Stack::spawn().await?;
    let answer = stack.authorize(&[("client_id", "who-is-this")]).await?;
    insta::assert_snapshot!(answer.error_page()?);
    Ok(())
}

#[tokio::test]
async fn a_missing_client_id_gets_the_hosted_error_page() -> Result<()> {
    let stack = Stack::spawn().await?;
    let answer = stack.authorize(&[("client_id", "")]).await?;
    insta::assert_snapshot!(answer.error_page()?);
    Ok(())
}

#[tokio::test]
async fn a_missing_redirect_uri_gets_the_hosted_error_page() -> Result<()> {
    let stack = Stack::spawn().await?;
    let answer = stack.authorize(&[("redirect_uri", "")]).await?;
    insta::assert_snapshot!(answer.error_page()?);
    Ok(())
}

#[tokio::test]
async fn an_unknown_state_on_the_partner_callback_is_redirected_to_the_hosted_error_page()
-> Result<()> {
    let stack = Stack::spawn().await?;
    let answer = stack.callback("no-such-state").await?;
    insta::assert_json_snapshot!(answer.redirect()?);
    Ok(())
}

#[tokio::test]
async fn the_hosted_error_page_shows_the_error_it_was_redirected_with() -> Result<()> {
    let stack = Stack::spawn().await?;
    let redirect = stack.callback("no-such-state").await?;
    let error = redirect.location_param("error")?;
    let description = redirect.location_param("error_description")?;
    let answer = stack
        .get_query(
            "/error",
            &[("error", &error), ("error_description", &description)],
        )
        .await?;
    insta::assert_snapshot!(answer.error_page()?);
    Ok(())
}

#[tokio::test]
async fn a_callback_before_the_user_was_posted_is_redirected_to_the_hosted_error_page() -> Result<()>
{
    let stack = Stack::spawn().await?;
    let (_, state) = stack.start_login().await?;
    let answer = stack.callback(&state).await?;
    insta::assert_json_snapshot!(answer.redirect()?);
    Ok(())
}

#[tokio::test]
async fn an_expired_login_request_is_redirected_to_the_hosted_error_page() -> Result<()> {
    let stack = Stack::spawn().await?;
    let token = stack.management_token().await?;
    let (lri, state) = stack.start_login().await?;
    stack
        .post_user(&lri, Some(&token), &serde_json::to_value(persona("ada")?)?)
        .await?
        .json(StatusCode::OK)?;
    stack.clock.advance(600);
    let answer = stack.callback(&state).await?;
    insta::assert_json_snapshot!(answer.redirect()?);
    Ok(())
}

#[tokio::test]
async fn an_unknown_consent_gets_the_hosted_error_page() -> Result<()> {
    let stack = Stack::spawn().await?;
    let answer = stack
        .post_form(
            "/oauth/consent",
            &[("consent_id", "no-such-consent"), ("decision", "approve")],
        )
        .await?;
    insta::assert_snapshot!(answer.error_page()?);
    Ok(())
}

#[tokio::test]
async fn the_consent_page_shows_client_resource_user_scopes_and_host() -> Result<()> {
    let stack = Stack::spawn_with(|config| {
        for resource in &mut config.resources {
            resource.consent = scalekit_emulator::ConsentMode::Prompt;
        }
    })
    .await?;
    let token = stack.management_token().await?;
    let (lri, state) = stack.start_login().await?;
    stack
        .post_user(&lri, Some(&token), &serde_json::to_value(persona("ada")?)?)
        .await?
        .json(StatusCode::OK)?;
    let answer = stack.callback(&state).await?;
    assert_eq!(answer.status, StatusCode::OK);
    insta::assert_snapshot!(answer.html());
    Ok(())
}

#[tokio::test]
async fn a_callback_without_state_is_redirected_to_the_hosted_error_page() -> Result<()> {
    let stack = Stack::spawn().await?;
    let answer = stack
        .get(&format!(
            "/sso/v1/connections/{CONNECTION}/partner:callback"
        ))
        .await?;
    insta::assert_json_snapshot!(answer.redirect()?);
    Ok(())
}

#[tokio::test]
async fn a_state_brought_back_on_another_connection_is_redirected_to_the_hosted_error_page()
-> Result<()> {
    let stack = Stack::spawn().await?;
    let token = stack.management_token().await?;
    let (lri, state) = stack.start_login().await?;
    stack
        .post_user(&lri, Some(&token), &serde_json::to_value(persona("ada")?)?)
        .await?
        .json(StatusCode::OK)?;
    let answer = stack
        .get_query(
            "/sso/v1/connections/conn_404/partner:callback",
            &[("state", &state)],
        )
        .await?;
    insta::assert_json_snapshot!(answer.redirect()?);
    // The refused attempt did not consume the sign-in: the right connection still completes it.
    let back = stack.callback(&state).await?;
    assert_eq!(back.status, StatusCode::FOUND);
    Ok(())
}

#[tokio::test]
async fn a_consent_form_without_a_decision_gets_the_hosted_error_page() -> Result<()> {
    let stack = Stack::spawn().await?;
    let answer = stack
        .post_form("/oauth/consent", &[("consent_id", "anything")])
        .await?;
    insta::assert_snapshot!(answer.error_page()?);
    Ok(())
}

#[tokio::test]
async fn malformed_basic_credentials_are_invalid_client() -> Result<()> {
    let stack = Stack::spawn().await?;
    let response = stack
        .http
        .post(stack.url("/oauth/token"))
        .header("authorization", "Basic not-base64!")
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    insta::assert_json_snapshot!(body);
    Ok(())
}

#[tokio::test]
async fn a_confidential_client_with_a_wrong_secret_is_invalid_client() -> Result<()> {
    let stack = Stack::spawn_with(|config| {
        for client in &mut config.clients {
            client.client_secret = Some(scalekit_wire::Secret::new("right-secret"));
        }
    })
    .await?;
    let code = code(&stack).await?;
    let answer = stack
        .exchange(&code, &[("client_secret", "wrong-secret")])
        .await?;
    insta::assert_json_snapshot!(answer.token_json(StatusCode::UNAUTHORIZED)?);
    let right = stack
        .exchange(&code, &[("client_secret", "right-secret")])
        .await?;
    right.token_json(StatusCode::OK)?;
    Ok(())
}
