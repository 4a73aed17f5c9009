//! An MCP server resource without a Server URL: its tokens' `aud` is its `res_…` id alone, and
//! clients name it by that id (Decisions §2, §4; scalekit.md §4, "With no Server URL, `aud` is only
//! `res_…`").

use anyhow::{Context as _, Result};
use reqwest::{Method, StatusCode};
use scalekit_emulator::config::AgentConfig;
use scalekit_emulator::types::{PkceVerifier, pkce_s256};
use scalekit_emulator::{ClientConfig, Config};
use scalekit_wire::Secret;
use serde_json::{Value, json};
use url::Url;

use crate::helpers::{
    CONNECTION, RESOURCE, SERVER_URL, TestEnv, VERIFIER, ada, jwt_claims, location, query_param,
};

const BARE: &str = "res_81920374650192850";
const BARE_CLIENT: &str = "bare-client";
const BARE_AGENT: &str = "m2m_81920374650192851";
const BARE_AGENT_SECRET: &str = "bare-agent-secret";
const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";

/// The fixtures plus a second resource without a Server URL, with a public client and an agent.
fn with_a_bare_resource(config: &mut Config) {
    let mut bare = config.resources[0].clone();
    bare.id = BARE.to_owned();
    bare.name = "No Server URL".to_owned();
    bare.server_url = None;
    bare.agents = vec![AgentConfig {
        client_id: BARE_AGENT.to_owned(),
        client_secret: Secret::new(BARE_AGENT_SECRET),
        scopes: vec!["mcp:read".to_owned()],
        token_lifetime_secs: 3600,
        name: None,
    }];
    config.resources.push(bare);
    config.clients.push(ClientConfig {
        client_id: BARE_CLIENT.to_owned(),
        redirect_uris: vec!["http://127.0.0.1/callback".to_owned()],
        resource: BARE.to_owned(),
        client_secret: None,
        client_name: None,
    });
}

/// `GET /oauth/authorize` for the bare resource's client, with `resource` when given.
async fn authorize(env: &TestEnv, resource: Option<&str>) -> Result<Url> {
    let challenge = pkce_s256(&PkceVerifier::parse(VERIFIER).context("verifier")?);
    let mut query = vec![
        ("response_type", "code"),
        ("client_id", BARE_CLIENT),
        ("redirect_uri", REDIRECT_URI),
        ("scope", "openid offline_access mcp:read"),
        ("state", "bare-state"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    if let Some(resource) = resource {
        query.push(("resource", resource));
    }
    let response = env
        .http
        .get(env.url("/oauth/authorize"))
        .query(&query)
        .send()
        .await?;
    location(response, StatusCode::FOUND)
}

/// Signs Ada in for the bare resource and exchanges the code, `resource` on both requests.
async fn tokens(env: &TestEnv, resource: Option<&str>) -> Result<Value> {
    let management = env.management_token().await?;
    let login = authorize(env, resource).await?;
    let lri = query_param(&login, "login_request_id")?;
    let response = env.post_user(&lri, Some(&management), &ada()).await?;
    assert_eq!(response.status(), StatusCode::OK);
    let callback = env.callback(&query_param(&login, "state")?).await?;
    let redirect = location(callback, StatusCode::FOUND)?;
    let code = query_param(&redirect, "code")?;
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("client_id", BARE_CLIENT),
        ("code", code.as_str()),
        ("code_verifier", VERIFIER),
        ("redirect_uri", REDIRECT_URI),
    ];
    if let Some(resource) = resource {
        form.push(("resource", resource));
    }
    env.token(&form, StatusCode::OK).await
}

fn access_claims(answer: &Value) -> Result<Value> {
    jwt_claims(answer["access_token"].as_str().context("access_token")?)
}

#[tokio::test]
async fn a_users_token_for_a_resource_without_a_server_url_has_only_its_id_as_audience()
-> Result<()> {
    let env = TestEnv::spawn_with(with_a_bare_resource).await?;
    for resource in [Some(BARE), None] {
        let answer = tokens(&env, resource).await?;
        let access = access_claims(&answer)?;
        assert_eq!(access["aud"], json!([BARE]), "resource {resource:?}");
        assert_eq!(access["iss"], env.base.as_str());

        let refreshed = env
            .token(
                &[
                    ("grant_type", "refresh_token"),
                    ("client_id", BARE_CLIENT),
                    (
                        "refresh_token",
                        answer["refresh_token"].as_str().context("refresh_token")?,
                    ),
                    ("resource", BARE),
                ],
                StatusCode::OK,
            )
            .await?;
        assert_eq!(access_claims(&refreshed)?["aud"], json!([BARE]));
    }
    // The resource with a Server URL keeps both, URL first.
    let code = env.code().await?;
    let first = env.exchange(&code, VERIFIER, StatusCode::OK).await?;
    assert_eq!(access_claims(&first)?["aud"], json!([SERVER_URL, RESOURCE]));
    Ok(())
}

#[tokio::test]
async fn a_url_never_names_a_resource_without_a_server_url() -> Result<()> {
    let env = TestEnv::spawn_with(with_a_bare_resource).await?;
    for url in ["http://127.0.0.1:8402/other", "http://127.0.0.1:9/mcp"] {
        let redirect = authorize(&env, Some(url)).await?;
        assert!(redirect.as_str().starts_with(REDIRECT_URI), "{redirect}");
        assert_eq!(query_param(&redirect, "error")?, "invalid_target");
        assert_eq!(query_param(&redirect, "state")?, "bare-state");
    }
    let login = authorize(&env, Some(BARE)).await?;
    assert!(
        login.as_str().starts_with("http://127.0.0.1:8401/login?"),
        "{login}"
    );
    Ok(())
}

#[tokio::test]
async fn an_agents_token_for_a_resource_without_a_server_url_has_only_its_id_as_audience()
-> Result<()> {
    let env = TestEnv::spawn_with(with_a_bare_resource).await?;
    let credentials = [
        ("grant_type", "client_credentials"),
        ("client_id", BARE_AGENT),
        ("client_secret", BARE_AGENT_SECRET),
    ];
    for extra in [None, Some(("resource", BARE)), Some(("audience", BARE))] {
        let mut form = credentials.to_vec();
        form.extend(extra);
        let answer = env.token(&form, StatusCode::OK).await?;
        let access = access_claims(&answer)?;
        assert_eq!(access["aud"], json!([BARE]), "{extra:?}");
        assert_eq!(access["sub"], BARE_AGENT);
    }
    let mut form = credentials.to_vec();
    form.push(("resource", "http://127.0.0.1:8402/other"));
    let refused = env.token(&form, StatusCode::BAD_REQUEST).await?;
    assert_eq!(refused["error"], "invalid_target");
    Ok(())
}

#[tokio::test]
async fn a_minted_token_for_a_resource_without_a_server_url_has_only_its_id_as_audience()
-> Result<()> {
    let env = TestEnv::spawn_with(with_a_bare_resource).await?;
    let (status, minted) = env
        .control(
            Method::POST,
            "/_emulator/tokens",
            Some(&json!({"resource": BARE}).to_string()),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{minted}");
    assert_eq!(minted["claims"]["aud"], json!([BARE]));
    let (status, refused) = env
        .control(
            Method::POST,
            "/_emulator/tokens",
            Some(&json!({"resource": "http://127.0.0.1:8402/other"}).to_string()),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    Ok(())
}

#[tokio::test]
async fn its_metadata_and_its_sign_in_need_no_server_url() -> Result<()> {
    let env = TestEnv::spawn_with(with_a_bare_resource).await?;
    let response = env
        .get(&format!(
            "/.well-known/oauth-authorization-server/resources/{BARE}"
        ))
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    let metadata: Value = response.json().await?;
    assert_eq!(
        metadata["issuer"],
        format!("{}/resources/{BARE}", env.base).as_str()
    );
    // The sign-in goes through the resource's connection as any other.
    let login = authorize(&env, Some(BARE)).await?;
    let management = env.management_token().await?;
    let response = env
        .post_user(
            &query_param(&login, "login_request_id")?,
            Some(&management),
            &ada(),
        )
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    let callback = env
        .http
        .get(env.url(&format!(
            "/sso/v1/connections/{CONNECTION}/partner:callback"
        )))
        .query(&[("state", query_param(&login, "state")?)])
        .send()
        .await?;
    let redirect = location(callback, StatusCode::FOUND)?;
    assert_eq!(
        query_param(&redirect, "iss")?,
        format!("{}/resources/{BARE}", env.base)
    );
    Ok(())
}
