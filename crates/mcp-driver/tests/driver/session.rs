//! `run_session`: authorization on demand, step-up with the union of scopes, the bound on
//! authorizations, and confidential pre-registered clients at the token endpoint.

use mcp_driver::{ClientOptions, DriverConfig, DriverError, PreRegisteredClient, run_session};
use scalekit_wire::Secret;

use crate::fake;

fn config(fake: &fake::Fake) -> DriverConfig {
    DriverConfig::new(fake.mcp_url())
}

#[tokio::test]
async fn a_session_authorizes_on_the_first_401_and_lists_the_tools() -> anyhow::Result<()> {
    let fake = fake::start(fake::Knobs::default()).await?;
    let report = run_session(&config(&fake), &ClientOptions::default()).await?;
    assert_eq!(report.authorizations, 1);
    assert_eq!(report.client_ids, vec!["m2m_1"]);
    assert_eq!(report.requested_scopes, vec!["mcp:read"]);
    assert_eq!(report.tools, vec!["whoami"]);
    assert!(report.tool_result.is_none());
    Ok(())
}

#[tokio::test]
async fn a_403_insufficient_scope_steps_up_with_the_union_of_scopes() -> anyhow::Result<()> {
    let fake = fake::start(fake::Knobs {
        tool_call_needs_scope: Some("mcp:write".to_owned()),
        ..fake::Knobs::default()
    })
    .await?;
    let options = ClientOptions {
        call_first_tool: true,
        ..ClientOptions::default()
    };
    let report = run_session(&config(&fake), &options).await?;
    assert_eq!(report.authorizations, 2);
    assert_eq!(report.requested_scopes, vec!["mcp:read", "mcp:write"]);
    assert_eq!(
        fake.seen(|seen| seen.authorize_query.get("scope").cloned()),
        Some("mcp:read mcp:write".to_owned())
    );
    // The identity registered at this issuer is reused for the step-up.
    assert_eq!(report.client_ids, vec!["m2m_1", "m2m_1"]);
    let result = report.tool_result.expect("the tool was called");
    assert_eq!(result["structuredContent"]["sub"], "usr_1");
    Ok(())
}

#[tokio::test]
async fn a_scope_upgrade_that_never_works_stops_after_three_authorizations() -> anyhow::Result<()> {
    let fake = fake::start(fake::Knobs {
        always_insufficient_scope: true,
        ..fake::Knobs::default()
    })
    .await?;
    let error = run_session(&config(&fake), &ClientOptions::default())
        .await
        .unwrap_err();
    match error {
        DriverError::Mcp(message) => assert!(
            message.starts_with(
                "tools/list answered 403 Forbidden after 3 authorizations, giving up (at most 3)"
            ),
            "{message}"
        ),
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(fake.seen(|seen| seen.authorize_count), 3);
    Ok(())
}

#[tokio::test]
async fn a_pre_registered_confidential_client_authenticates_with_form_encoded_basic()
-> anyhow::Result<()> {
    let fake = fake::start(fake::Knobs {
        token_endpoint_auth_methods: Some(vec!["client_secret_basic".to_owned()]),
        ..fake::Knobs::default()
    })
    .await?;
    let options = ClientOptions {
        pre_registered: Some(PreRegisteredClient {
            client_id: "my client".to_owned(),
            client_secret: Some(Secret::new("s:cret".to_owned())),
            issuer: None,
        }),
        ..ClientOptions::default()
    };
    let report = run_session(&config(&fake), &options).await?;
    assert_eq!(report.client_ids, vec!["my client"]);
    assert!(
        fake.seen(|seen| seen.registration.is_none()),
        "no registration"
    );
    // RFC 6749 §2.3.1: id and secret are form-urlencoded, then joined with ':' and Base64-encoded.
    let expected = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            "my+client:s%3Acret"
        )
    );
    assert_eq!(
        fake.seen(|seen| seen.token_authorization.clone()),
        vec![Some(expected)]
    );
    let form = fake.seen(|seen| seen.token_forms[0].clone());
    assert!(!form.contains_key("client_secret"), "{form:?}");
    Ok(())
}

#[tokio::test]
async fn pre_registered_credentials_for_another_issuer_are_not_used() -> anyhow::Result<()> {
    let fake = fake::start(fake::Knobs::default()).await?;
    let options = ClientOptions {
        pre_registered: Some(PreRegisteredClient {
            client_id: "elsewhere".to_owned(),
            client_secret: Some(Secret::new("s".to_owned())),
            issuer: Some("https://other.example".to_owned()),
        }),
        ..ClientOptions::default()
    };
    let report = run_session(&config(&fake), &options).await?;
    assert_eq!(report.client_ids, vec!["m2m_1"]);
    assert_eq!(
        fake.seen(|seen| seen.token_authorization.clone()),
        vec![None]
    );
    Ok(())
}
