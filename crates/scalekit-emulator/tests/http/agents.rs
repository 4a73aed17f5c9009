//! Agents: the M2M clients of an MCP server. `client_credentials` with an agent's secret gives an
//! access token for its server; the control API creates, lists and deletes agents. Every refusal
//! is checked byte for byte.

use anyhow::{Context as _, Result};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    API_CLIENT_ID, API_CLIENT_SECRET, RESOURCE, SERVER_URL, TestEnv, jwt_claims, token_json,
};

pub const AGENT: &str = "m2m_81920374650192842";
pub const AGENT_SECRET: &str = "test_agent_secret_testbed_dev_not_for_production";

fn agent_form<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_id", AGENT),
        ("client_secret", AGENT_SECRET),
    ];
    form.extend_from_slice(extra);
    form
}

#[tokio::test]
async fn an_agent_gets_an_m2m_token_bound_to_its_mcp_server() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let body = env.token(&agent_form(&[]), StatusCode::OK).await?;
    let token = body["access_token"].as_str().context("access_token")?;
    assert_eq!(
        body,
        json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 3600,
            "scope": "mcp:read"
        })
    );
    let claims: Value = env.verify(token, RESOURCE).await?;
    let jti = claims["jti"].as_str().context("jti")?;
    assert!(jti.starts_with("tkn_"), "{jti}");
    let iat = claims["iat"].as_u64().context("iat")?;
    assert_eq!(
        claims,
        json!({
            "iss": env.base,
            "aud": [SERVER_URL, RESOURCE],
            "sub": AGENT,
            "client_id": AGENT,
            "scopes": ["mcp:read"],
            "jti": jti,
            "iat": iat,
            "nbf": iat,
            "exp": iat + 3600
        })
    );
    Ok(())
}

#[tokio::test]
async fn an_agents_token_names_the_resource_issuer_when_tokens_are_issuer_bound() -> Result<()> {
    let env = TestEnv::spawn_with(|config| config.resources[0].issuer_bound_tokens = true).await?;
    let body = env.token(&agent_form(&[]), StatusCode::OK).await?;
    let claims = jwt_claims(body["access_token"].as_str().context("access_token")?)?;
    assert_eq!(claims["iss"], format!("{}/resources/{RESOURCE}", env.base));
    Ok(())
}

#[tokio::test]
async fn http_basic_a_scope_within_the_set_and_its_own_resource_are_accepted() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let basic = STANDARD.encode(format!("{AGENT}:{AGENT_SECRET}"));
    let response = env
        .http
        .post(env.url("/oauth/token"))
        .header("authorization", format!("Basic {basic}"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "mcp:read"),
            ("resource", SERVER_URL),
            ("audience", RESOURCE),
        ])
        .send()
        .await?;
    let body = token_json(response, StatusCode::OK).await?;
    assert_eq!(body["scope"], "mcp:read");
    Ok(())
}

#[tokio::test]
async fn each_refusal_of_an_agent_has_its_exact_body() -> Result<()> {
    let env = TestEnv::spawn().await?;
    // Each case: the form pairs that replace the agent's defaults, the status, the exact body.
    type Case<'a> = (&'a [(&'a str, &'a str)], StatusCode, Value);
    let cases: [Case; 4] = [
        (
            &[("client_secret", "wrong")],
            StatusCode::UNAUTHORIZED,
            json!({"error": "invalid_client", "error_description": "client authentication failed"}),
        ),
        (
            &[("scope", "mcp:read mcp:write")],
            StatusCode::BAD_REQUEST,
            json!({
                "error": "invalid_scope",
                "error_description": format!("scope mcp:write is not allowed for agent {AGENT}")
            }),
        ),
        (
            &[("resource", "http://127.0.0.1:9/other")],
            StatusCode::BAD_REQUEST,
            json!({
                "error": "invalid_target",
                "error_description": format!(
                    "resource http://127.0.0.1:9/other is not the MCP server agent {AGENT} belongs to"
                )
            }),
        ),
        (
            &[("audience", "res_1")],
            StatusCode::BAD_REQUEST,
            json!({
                "error": "invalid_target",
                "error_description": format!("audience res_1 is not the MCP server agent {AGENT} belongs to")
            }),
        ),
    ];
    for (extra, status, expected) in cases {
        // A later pair replaces the default of the same name.
        let mut form = agent_form(&[]);
        for (name, value) in extra {
            form.retain(|(existing, _)| existing != name);
            form.push((name, value));
        }
        let body = env.token(&form, status).await?;
        assert_eq!(body, expected, "{extra:?}");
    }
    // A DCR client (public, no secret) is no agent.
    let response = env
        .http
        .post(env.url(&format!("/api/v1/resources/{RESOURCE}/clients:register")))
        .json(&json!({"redirect_uris": ["http://127.0.0.1/cb"]}))
        .send()
        .await?;
    let registered: Value = response.json().await?;
    let client_id = registered["client_id"].as_str().context("client_id")?;
    let body = env
        .token(
            &[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
            ],
            StatusCode::UNAUTHORIZED,
        )
        .await?;
    assert_eq!(body["error"], "invalid_client");
    Ok(())
}

#[tokio::test]
async fn the_api_client_is_refused_a_token_for_an_mcp_server() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let body = env
        .token(
            &[
                ("grant_type", "client_credentials"),
                ("client_id", API_CLIENT_ID),
                ("client_secret", API_CLIENT_SECRET),
                ("resource", SERVER_URL),
            ],
            StatusCode::BAD_REQUEST,
        )
        .await?;
    assert_eq!(
        body,
        json!({
            "error": "invalid_target",
            "error_description": format!(
                "resource {SERVER_URL} is not for the environment API client, whose tokens are for the management API"
            )
        })
    );
    Ok(())
}

#[tokio::test]
async fn an_agents_token_is_refused_by_the_management_api() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let body = env.token(&agent_form(&[]), StatusCode::OK).await?;
    let token = body["access_token"].as_str().context("access_token")?;
    let (login_request, _) = env.start_login().await?;
    let response = env
        .post_user(
            &login_request,
            Some(token),
            &json!({"sub": "ada-1", "email": "ada@example.com"}),
        )
        .await?;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await?;
    assert_eq!(body["code"], 16, "{body}");
    assert_eq!(body["message"], "invalid token", "{body}");
    Ok(())
}

#[tokio::test]
async fn the_control_api_creates_lists_and_deletes_agents() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let (status, created) = env
        .control(
            Method::POST,
            "/_emulator/agents",
            Some(&format!(
                r#"{{"resource_id": "{RESOURCE}", "name": "nightly", "scopes": ["mcp:read", "mcp:write"], "token_lifetime_secs": 60}}"#
            )),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let client_id = created["client_id"].as_str().context("client_id")?;
    let secret = created["client_secret"].as_str().context("client_secret")?;
    assert!(client_id.starts_with("m2m_"), "{client_id}");
    let created_at = created["created_at"].as_u64().context("created_at")?;
    assert_eq!(
        created,
        json!({
            "client_id": client_id,
            "client_secret": secret,
            "resource_id": RESOURCE,
            "name": "nightly",
            "scopes": ["mcp:read", "mcp:write"],
            "token_lifetime_secs": 60,
            "source": "control",
            "created_at": created_at
        })
    );

    let (status, listed) = env
        .control(
            Method::GET,
            &format!("/_emulator/agents?resource_id={RESOURCE}"),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        listed,
        json!({"agents": [
            {
                "client_id": AGENT,
                "resource_id": RESOURCE,
                "name": "Testbed agent",
                "scopes": ["mcp:read"],
                "token_lifetime_secs": 3600,
                "source": "fixtures",
                "created_at": null
            },
            {
                "client_id": client_id,
                "resource_id": RESOURCE,
                "name": "nightly",
                "scopes": ["mcp:read", "mcp:write"],
                "token_lifetime_secs": 60,
                "source": "control",
                "created_at": created_at
            }
        ]})
    );
    assert!(!listed.to_string().contains(secret));

    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        ("client_secret", secret),
        ("scope", "mcp:write"),
    ];
    let body = env.token(&form, StatusCode::OK).await?;
    assert_eq!(body["expires_in"], 60);
    assert_eq!(body["scope"], "mcp:write");
    let token = body["access_token"]
        .as_str()
        .context("access_token")?
        .to_owned();

    let (status, deleted) = env
        .control(
            Method::DELETE,
            &format!("/_emulator/agents/{client_id}"),
            None,
        )
        .await?;
    assert_eq!((status, deleted), (StatusCode::NO_CONTENT, Value::Null));
    env.token(&form, StatusCode::UNAUTHORIZED).await?;
    // Its token stays valid until it expires: it is a self-contained JWT.
    let claims: Value = env.verify(&token, RESOURCE).await?;
    assert_eq!(claims["sub"], client_id);

    let (status, again) = env
        .control(
            Method::DELETE,
            &format!("/_emulator/agents/{client_id}"),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(again["message"], format!("agent {client_id} not found"));
    let (status, fixture) = env
        .control(Method::DELETE, &format!("/_emulator/agents/{AGENT}"), None)
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(fixture["code"], 7);
    assert_eq!(
        fixture["message"],
        format!("agent {AGENT} comes from the fixtures; remove it there")
    );
    Ok(())
}

#[tokio::test]
async fn the_control_api_refuses_agents_it_cannot_create() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let cases = [
        (
            r#"{"resource_id": "res_1"}"#.to_owned(),
            StatusCode::NOT_FOUND,
            json!({"code": 5, "message": "resource res_1 is not configured"}),
        ),
        (
            format!(r#"{{"resource_id": "{RESOURCE}", "scopes": ["admin"]}}"#),
            StatusCode::NOT_FOUND,
            json!({"code": 5, "message": format!("scope admin is not offered by resource {RESOURCE}")}),
        ),
        (
            format!(r#"{{"resource_id": "{RESOURCE}", "token_lifetime_secs": 0}}"#),
            StatusCode::BAD_REQUEST,
            json!({"code": 3, "field": "token_lifetime_secs", "description": "must be from 1 to 31536000"}),
        ),
        (
            format!(
                r#"{{"resource_id": "{RESOURCE}", "name": "{}"}}"#,
                "x".repeat(201)
            ),
            StatusCode::BAD_REQUEST,
            json!({"code": 3, "field": "name", "description": "must be at most 200 characters"}),
        ),
    ];
    for (body, status, expected) in cases {
        let (actual, answer) = env
            .control(Method::POST, "/_emulator/agents", Some(&body))
            .await?;
        assert_eq!(actual, status, "{body}: {answer}");
        assert_eq!(answer["code"], expected["code"], "{answer}");
        match expected.get("message") {
            Some(message) => assert_eq!(&answer["message"], message, "{answer}"),
            None => assert_eq!(
                answer["details"][0]["validation_error_info"]["field_violations"][0],
                json!({"field": expected["field"], "description": expected["description"]}),
                "{answer}"
            ),
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_reset_deletes_the_created_agents_and_keeps_the_fixtures() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let (status, _) = env
        .control(
            Method::POST,
            "/_emulator/agents",
            Some(&format!(r#"{{"resource_id": "{RESOURCE}"}}"#)),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = env.control(Method::POST, "/_emulator/reset", None).await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, listed) = env.control(Method::GET, "/_emulator/agents", None).await?;
    let ids: Vec<&str> = listed["agents"]
        .as_array()
        .context("agents")?
        .iter()
        .filter_map(|agent| agent["client_id"].as_str())
        .collect();
    assert_eq!(ids, [AGENT]);
    Ok(())
}
