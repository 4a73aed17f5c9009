//! Scopes within the user's permissions (`intersect_scopes_user_permission`): the roles "Your
//! App" posts grant permissions, and a requested scope is granted only with the permission of its
//! name; the OpenID and OAuth scopes always are. The narrowing is silent, over the whole flow.

use anyhow::Result;
use reqwest::StatusCode;
use scalekit_emulator::{Config, ConsentMode};
use serde_json::{Value, json};

use crate::helpers::{SERVER_URL, TestEnv, VERIFIER, jwt_claims, location, query_param, text};

/// The fixtures' roles (`member`: `mcp:read`; `admin`: also `mcp:write`) with the resource's
/// intersection on.
fn intersecting(config: &mut Config) {
    assert_eq!(
        config
            .roles
            .iter()
            .map(|role| (role.name.as_str(), role.permissions.clone()))
            .collect::<Vec<_>>(),
        [
            ("member", vec!["mcp:read".to_owned()]),
            ("admin", vec!["mcp:read".to_owned(), "mcp:write".to_owned()]),
        ]
    );
    config.resources[0].intersect_scopes_user_permission = true;
}

/// A user "Your App" posts with these roles.
fn user_with(roles: &[&str]) -> Value {
    json!({"sub": "grace-1", "email": "grace@example.com", "roles": roles})
}

/// Signs `user` in asking for `scope` and answers the callback: the response.
async fn callback(env: &TestEnv, scope: &str, user: &Value) -> Result<reqwest::Response> {
    let management = env.management_token().await?;
    let login = env
        .authorize(&[("scope", scope), ("resource", SERVER_URL)])
        .await?;
    let response = env
        .post_user(
            &query_param(&login, "login_request_id")?,
            Some(&management),
            user,
        )
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    env.callback(&query_param(&login, "state")?).await
}

/// Signs `user` in asking for `scope` and exchanges the code: the token response.
async fn tokens(env: &TestEnv, scope: &str, user: &Value) -> Result<Value> {
    let redirect = location(callback(env, scope, user).await?, StatusCode::FOUND)?;
    env.exchange(&query_param(&redirect, "code")?, VERIFIER, StatusCode::OK)
        .await
}

#[tokio::test]
async fn a_requested_scope_the_users_roles_do_not_grant_is_left_out_of_the_tokens() -> Result<()> {
    let env = TestEnv::spawn_with(intersecting).await?;
    let member = tokens(&env, "openid mcp:read mcp:write", &user_with(&["member"])).await?;
    assert_eq!(member["scope"], "openid mcp:read");
    let access = jwt_claims(member["access_token"].as_str().unwrap_or_default())?;
    assert_eq!(access["scope"], "openid mcp:read");
    assert_eq!(access["scopes"], json!(["openid", "mcp:read"]));
    assert_eq!(access["roles"], json!(["member"]));
    assert!(member["id_token"].is_string(), "openid is no permission");
    Ok(())
}

#[tokio::test]
async fn a_user_whose_role_grants_the_permission_gets_the_scope() -> Result<()> {
    let env = TestEnv::spawn_with(intersecting).await?;
    let admin = tokens(&env, "openid mcp:read mcp:write", &user_with(&["admin"])).await?;
    assert_eq!(admin["scope"], "openid mcp:read mcp:write");
    let access = jwt_claims(admin["access_token"].as_str().unwrap_or_default())?;
    assert_eq!(access["scopes"], json!(["openid", "mcp:read", "mcp:write"]));
    Ok(())
}

#[tokio::test]
async fn undeclared_or_no_roles_leave_only_the_openid_and_oauth_scopes() -> Result<()> {
    let env = TestEnv::spawn_with(intersecting).await?;
    let asked = "openid profile email offline_access mcp:read mcp:write";
    for user in [user_with(&["owner"]), user_with(&[])] {
        let answer = tokens(&env, asked, &user).await?;
        assert_eq!(answer["scope"], "openid profile email offline_access");
        assert!(answer["refresh_token"].is_string());
    }
    // Nothing left at all: a token with no scope, not an error.
    let nothing = tokens(&env, "mcp:write", &user_with(&["member"])).await?;
    assert_eq!(nothing["scope"], "");
    let access = jwt_claims(nothing["access_token"].as_str().unwrap_or_default())?;
    assert_eq!(access["scope"], "");
    assert_eq!(access["scopes"], json!([]));
    Ok(())
}

#[tokio::test]
async fn with_the_switch_off_the_roles_do_not_narrow_anything() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let answer = tokens(&env, "openid mcp:read mcp:write", &user_with(&[])).await?;
    assert_eq!(answer["scope"], "openid mcp:read mcp:write");
    Ok(())
}

#[tokio::test]
async fn the_consent_page_lists_only_the_scopes_that_will_be_granted() -> Result<()> {
    let env = TestEnv::spawn_with(|config| {
        intersecting(config);
        config.resources[0].consent = ConsentMode::Prompt;
    })
    .await?;
    let page = text(
        callback(&env, "openid mcp:read mcp:write", &user_with(&["member"])).await?,
        StatusCode::OK,
    )
    .await?;
    assert!(page.contains("<code>openid</code>"), "{page}");
    assert!(page.contains("<code>mcp:read</code>"), "{page}");
    assert!(!page.contains("mcp:write"), "{page}");
    Ok(())
}

#[tokio::test]
async fn a_cross_app_access_token_is_not_narrowed_by_roles_the_assertion_does_not_carry()
-> Result<()> {
    let env = TestEnv::spawn_with(intersecting).await?;
    let (status, answer) = env
        .control(
            reqwest::Method::POST,
            "/_emulator/idps/acme-idp/id-jag",
            Some(&json!({"scope": "mcp:read"}).to_string()),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let tokens = env
        .token(
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", answer["id_jag"].as_str().unwrap_or_default()),
                ("client_id", "m2m_81920374650192842"),
                (
                    "client_secret",
                    "test_agent_secret_testbed_dev_not_for_production",
                ),
            ],
            StatusCode::OK,
        )
        .await?;
    assert_eq!(tokens["scope"], "mcp:read");
    Ok(())
}
