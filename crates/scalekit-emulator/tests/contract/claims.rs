//! The access- and ID-token claim sets for each persona and each claim-shaping option, and the
//! token responses around them.

use anyhow::{Context as _, Result};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::stack::{AGENT, AGENT_SECRET, RESOURCE, Stack, claims, persona};

/// Signs `name` in, redeems the code, and returns the token response with both claim sets.
async fn tokens_for(stack: &Stack, name: &str) -> Result<Value> {
    let signed_in = stack.sign_in(&[], &persona(name)?).await?;
    let answer = stack.exchange(&signed_in.code, &[]).await?;
    let body = answer.token_json(StatusCode::OK)?;
    let access = claims(body["access_token"].as_str().context("access_token")?)?;
    let id = claims(body["id_token"].as_str().context("id_token")?)?;
    Ok(json!({ "response": redact_jwts(body), "access_token": access, "id_token": id }))
}

/// The JWTs themselves are not the contract (their claims are); everything else is kept.
fn redact_jwts(mut body: Value) -> Value {
    for field in ["access_token", "id_token"] {
        if body.get(field).is_some() {
            body[field] = json!("[jwt]");
        }
    }
    body
}

#[tokio::test]
async fn ada_tokens_carry_every_claim() -> Result<()> {
    let stack = Stack::spawn().await?;
    insta::assert_json_snapshot!(tokens_for(&stack, "ada").await?);
    Ok(())
}

#[tokio::test]
async fn grace_tokens_carry_her_organization_and_custom_attributes() -> Result<()> {
    let stack = Stack::spawn().await?;
    insta::assert_json_snapshot!(tokens_for(&stack, "grace").await?);
    Ok(())
}

#[tokio::test]
async fn linus_tokens_carry_the_minimal_claims() -> Result<()> {
    let stack = Stack::spawn().await?;
    insta::assert_json_snapshot!(tokens_for(&stack, "linus").await?);
    Ok(())
}

#[tokio::test]
async fn issuer_bound_tokens_carry_the_resource_issuer() -> Result<()> {
    let stack = Stack::spawn_with(|config| {
        for resource in &mut config.resources {
            resource.issuer_bound_tokens = true;
        }
    })
    .await?;
    let tokens = tokens_for(&stack, "ada").await?;
    let expected = format!("http://emulator.test/resources/{RESOURCE}");
    assert_eq!(tokens["access_token"]["iss"], json!(expected));
    // ID tokens name the environment whatever the switch (scalekit.md §4: ID token `iss` = env).
    assert_eq!(tokens["id_token"]["iss"], json!("http://emulator.test"));
    insta::assert_json_snapshot!(tokens);
    Ok(())
}

#[tokio::test]
async fn without_openid_there_is_no_id_token_and_without_offline_access_no_refresh_token()
-> Result<()> {
    let stack = Stack::spawn().await?;
    let signed_in = stack
        .sign_in(&[("scope", "mcp:read"), ("nonce", "")], &persona("linus")?)
        .await?;
    let answer = stack.exchange(&signed_in.code, &[]).await?;
    let body = answer.token_json(StatusCode::OK)?;
    let access = claims(body["access_token"].as_str().context("access_token")?)?;
    insta::assert_json_snapshot!(json!({ "response": redact_jwts(body), "access_token": access }));
    Ok(())
}

#[tokio::test]
async fn a_refresh_rotates_the_token_and_narrows_the_scopes() -> Result<()> {
    let stack = Stack::spawn().await?;
    let signed_in = stack.sign_in(&[], &persona("grace")?).await?;
    let first = stack
        .exchange(&signed_in.code, &[])
        .await?
        .token_json(StatusCode::OK)?;
    let refresh_token = first["refresh_token"].as_str().context("refresh_token")?;
    stack.clock.advance(60);
    let answer = stack
        .refresh(refresh_token, &[("scope", "openid mcp:read")])
        .await?;
    let body = answer.token_json(StatusCode::OK)?;
    assert_ne!(body["refresh_token"], first["refresh_token"]);
    let access = claims(body["access_token"].as_str().context("access_token")?)?;
    let id = claims(body["id_token"].as_str().context("id_token")?)?;
    insta::assert_json_snapshot!(
        json!({ "response": redact_jwts(body), "access_token": access, "id_token": id })
    );
    Ok(())
}

#[tokio::test]
async fn the_management_token_carries_the_api_client() -> Result<()> {
    let stack = Stack::spawn().await?;
    let token = stack.management_token().await?;
    insta::assert_json_snapshot!(claims(&token)?);
    Ok(())
}

#[tokio::test]
async fn an_agents_token_carries_the_m2m_claims_bound_to_its_server() -> Result<()> {
    let stack = Stack::spawn().await?;
    let answer = stack
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", AGENT),
                ("client_secret", AGENT_SECRET),
            ],
        )
        .await?;
    let body = answer.token_json(StatusCode::OK)?;
    let access = claims(body["access_token"].as_str().context("access_token")?)?;
    insta::assert_json_snapshot!(json!({ "response": redact_jwts(body), "access_token": access }));
    Ok(())
}
