//! The consent page (resource mode `prompt`).

use anyhow::{Context as _, Result};
use reqwest::StatusCode;

use crate::helpers::{REDIRECT_URI, TestEnv, VERIFIER, ada, location, query_param, text};
use scalekit_emulator::ConsentMode;

/// Signs Ada in on a prompt-mode resource and returns the consent page's `consent_id`.
async fn consent_page(env: &TestEnv) -> Result<(String, String)> {
    let management = env.management_token().await?;
    let (lri, state) = env.start_login().await?;
    env.post_user(&lri, Some(&management), &ada()).await?;
    let response = env.callback(&state).await?;
    let frame_options = response.headers().get("x-frame-options").cloned();
    assert_eq!(
        frame_options.as_ref().map(|value| value.as_bytes()),
        Some(&b"DENY"[..])
    );
    let page = text(response, StatusCode::OK).await?;
    let marker = "name=\"consent_id\" value=\"";
    let start = page.find(marker).context("consent_id field")? + marker.len();
    let end = page[start..].find('"').context("consent_id end")? + start;
    Ok((page[start..end].to_owned(), page))
}

#[tokio::test]
async fn the_consent_page_shows_resource_client_scopes_and_host_and_approve_issues_a_code()
-> Result<()> {
    let env =
        TestEnv::spawn_with(|config| config.resources[0].consent = ConsentMode::Prompt).await?;
    let (consent_id, page) = consent_page(&env).await?;
    assert!(page.contains("<title>"), "{page}");
    assert!(page.contains("Testbed MCP server"), "{page}");
    assert!(
        page.contains("Test &lt;MCP&gt; Client"),
        "the client name is escaped: {page}"
    );
    assert!(page.contains("<code>mcp:read</code>"), "{page}");
    assert!(page.contains(">127.0.0.1<"), "{page}");
    assert!(page.contains("action=\"/oauth/consent\""), "{page}");

    let response = env
        .http
        .post(env.url("/oauth/consent"))
        .form(&[("consent_id", consent_id.as_str()), ("decision", "approve")])
        .send()
        .await?;
    let redirect = location(response, StatusCode::FOUND)?;
    assert!(redirect.as_str().starts_with(REDIRECT_URI), "{redirect}");
    assert_eq!(query_param(&redirect, "state")?, "client-state-1");
    env.exchange(&query_param(&redirect, "code")?, VERIFIER, StatusCode::OK)
        .await?;

    // A second sign-in for the same client and scopes skips the page (remembered consent).
    let again = env.sign_in().await?;
    assert!(query_param(&again, "code").is_ok(), "{again}");
    Ok(())
}

/// Scalekit's consent screen "displays the MCP server name, the environment domain (or a custom
/// domain) and the scopes".
#[tokio::test]
async fn the_consent_page_names_the_mcp_server_the_environment_domain_and_the_scopes() -> Result<()>
{
    let env =
        TestEnv::spawn_with(|config| config.resources[0].consent = ConsentMode::Prompt).await?;
    let (_, page) = consent_page(&env).await?;
    let domain = env
        .base
        .strip_prefix("http://")
        .context("an http environment")?;
    assert!(
        page.contains("<span id=\"resource_name\">Testbed MCP server</span>"),
        "{page}"
    );
    assert!(
        page.contains(&format!(
            "<strong id=\"environment_domain\">{domain}</strong>"
        )),
        "{page}"
    );
    assert!(page.contains("<ul id=\"scopes\""), "{page}");
    assert!(page.contains("<code>mcp:read</code>"), "{page}");
    Ok(())
}

#[tokio::test]
async fn denying_consent_redirects_with_access_denied() -> Result<()> {
    let env =
        TestEnv::spawn_with(|config| config.resources[0].consent = ConsentMode::Prompt).await?;
    let (consent_id, _) = consent_page(&env).await?;
    let response = env
        .http
        .post(env.url("/oauth/consent"))
        .form(&[("consent_id", consent_id.as_str()), ("decision", "deny")])
        .send()
        .await?;
    let redirect = location(response, StatusCode::FOUND)?;
    assert_eq!(query_param(&redirect, "error")?, "access_denied");
    assert_eq!(query_param(&redirect, "state")?, "client-state-1");
    assert_eq!(
        query_param(&redirect, "iss")?,
        format!("{}/resources/res_81920374650192839", env.base)
    );
    assert!(query_param(&redirect, "code").is_err());

    // The consent was decided: posting it again is the error page.
    let replay = env
        .http
        .post(env.url("/oauth/consent"))
        .form(&[("consent_id", consent_id.as_str()), ("decision", "approve")])
        .send()
        .await?;
    let page = text(replay, StatusCode::BAD_REQUEST).await?;
    assert!(page.contains("invalid_request"), "{page}");
    Ok(())
}
