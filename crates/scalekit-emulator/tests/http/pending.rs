//! The cap on sign-ins in progress: past it, `/oauth/authorize` answers `temporarily_unavailable`
//! on the client's redirect URI instead of growing (RFC 6749 §4.1.2.1).

use anyhow::Result;
use reqwest::StatusCode;

use crate::helpers::{REDIRECT_URI, RESOURCE, TestEnv, location, query_param};

#[tokio::test]
async fn past_the_cap_authorize_redirects_with_temporarily_unavailable_state_and_iss() -> Result<()>
{
    let env = TestEnv::spawn_with(|config| config.max_pending_login_requests = 2).await?;
    env.start_login().await?;
    env.start_login().await?;

    let refused = env.authorize(&[]).await?;
    assert_eq!(
        refused.as_str(),
        format!(
            "{REDIRECT_URI}?error=temporarily_unavailable\
             &error_description=too+many+sign-ins+are+in+progress%3B+try+again+in+a+few+minutes\
             &state=client-state-1&iss={}",
            url::form_urlencoded::byte_serialize(
                format!("{}/resources/{RESOURCE}", env.base).as_bytes()
            )
            .collect::<String>()
        )
    );

    // Once the abandoned sign-ins expire, there is room again, sweep or not.
    env.clock.advance(600);
    let login = env.authorize(&[]).await?;
    assert_eq!(login.path(), "/login");
    assert!(query_param(&login, "login_request_id")?.starts_with("lri_"));
    Ok(())
}

#[tokio::test]
async fn past_the_cap_an_unknown_client_still_gets_the_error_page() -> Result<()> {
    let env = TestEnv::spawn_with(|config| config.max_pending_login_requests = 1).await?;
    env.start_login().await?;
    let response = env
        .http
        .get(env.url("/oauth/authorize"))
        .query(&[("client_id", "nobody"), ("redirect_uri", REDIRECT_URI)])
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        location(response, StatusCode::BAD_REQUEST).is_err(),
        "no redirect"
    );
    Ok(())
}
