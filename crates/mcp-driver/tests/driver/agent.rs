//! The driver as an agent: `client_credentials` instead of registration, the user agent and the
//! code exchange.

use std::time::Duration;

use mcp_driver::{AgentCredentials, DriverConfig, DriverError, Phase, run_client_credentials};
use scalekit_wire::Secret;
use serde_json::json;

use crate::fake::{self, Knobs};

fn config(fake: &fake::Fake) -> DriverConfig {
    let mut config = DriverConfig::new(fake.mcp_url());
    config.timeout = Duration::from_secs(5);
    config
}

fn agent(secret: &str) -> AgentCredentials {
    AgentCredentials {
        client_id: "agent_1".to_owned(),
        client_secret: Secret::new(secret),
    }
}

#[tokio::test]
async fn an_agent_gets_a_token_with_client_credentials_and_calls_the_tool() -> anyhow::Result<()> {
    let fake = fake::start(Knobs {
        token_endpoint_auth_methods: Some(vec![
            "client_secret_post".to_owned(),
            "client_secret_basic".to_owned(),
        ]),
        ..Knobs::default()
    })
    .await?;
    let (hops, outcome) = run_client_credentials(&config(&fake), agent("agent-secret")).await;
    let report = outcome?;
    assert_eq!(report.client_id, "agent_1");
    assert_eq!(report.requested_scopes, vec!["mcp:read"]);
    assert_eq!(report.granted_scopes, vec!["mcp:read"]);
    assert!(report.tokens.refresh_token.is_none());
    assert_eq!(report.id_token_claims, None);
    assert_eq!(
        report.whoami,
        json!({"sub": "usr_1", "email": "ada@example.com"})
    );
    let phases: Vec<Phase> = hops.iter().map(|hop| hop.phase).collect();
    assert_eq!(
        phases,
        vec![
            Phase::Challenge,
            Phase::ProtectedResourceMetadata,
            Phase::AuthorizationServerMetadata,
            Phase::Token,
            Phase::Mcp,
            Phase::Mcp,
            Phase::Mcp,
        ]
    );
    // HTTP Basic (RFC 6749 §2.3.1), the secret nowhere in the form.
    let (form, authorization) = fake.seen(|seen| {
        (
            seen.token_forms[0].clone(),
            seen.token_authorization[0].clone(),
        )
    });
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["scope"], "mcp:read");
    assert_eq!(form["resource"], fake.mcp_url().as_str());
    assert!(!form.contains_key("client_secret"), "{form:?}");
    assert!(
        authorization
            .as_deref()
            .is_some_and(|value| value.starts_with("Basic ")),
        "{authorization:?}"
    );
    assert!(fake.seen(|seen| seen.registration.is_none()));
    assert_eq!(fake.seen(|seen| seen.authorize_count), 0);
    Ok(())
}

#[tokio::test]
async fn an_agent_sends_form_fields_where_only_client_secret_post_is_listed() -> anyhow::Result<()>
{
    let fake = fake::start(Knobs {
        token_endpoint_auth_methods: Some(vec!["client_secret_post".to_owned()]),
        ..Knobs::default()
    })
    .await?;
    let (_, outcome) = run_client_credentials(&config(&fake), agent("agent-secret")).await;
    outcome?;
    let (form, authorization) = fake.seen(|seen| {
        (
            seen.token_forms[0].clone(),
            seen.token_authorization[0].clone(),
        )
    });
    assert_eq!(form["client_id"], "agent_1");
    assert_eq!(form["client_secret"], "agent-secret");
    assert_eq!(authorization, None);
    Ok(())
}

#[tokio::test]
async fn a_wrong_agent_secret_stops_at_the_token_endpoint() -> anyhow::Result<()> {
    let fake = fake::start(Knobs::default()).await?;
    let (hops, outcome) = run_client_credentials(&config(&fake), agent("wrong")).await;
    match outcome {
        Err(DriverError::TokenEndpoint { status, error, .. }) => {
            assert_eq!((status, error.as_str()), (401, "invalid_client"));
        }
        other => panic!("expected invalid_client, got {other:?}"),
    }
    assert_eq!(hops.last().map(|hop| hop.phase), Some(Phase::Token));
    Ok(())
}
