//! An agent (an M2M client of the MCP server) gets a token with `client_credentials` and calls the
//! reference MCP server: the driver discovers the server from its 401, authenticates with the
//! fixtures' agent at the token endpoint and calls `whoami`.

use std::time::Duration;

use mcp_driver::{AgentCredentials, DriverConfig, DriverError, Phase};
use scalekit_wire::Secret;
use serde_json::json;

use crate::support::spawn_stack;

fn driver_config(stack: &testbed_stack::Stack) -> DriverConfig {
    let mut config = DriverConfig::new(stack.mcp_url.clone());
    config.client_name = "e2e agent".to_owned();
    config.timeout = Duration::from_secs(10);
    config
}

#[tokio::test]
async fn an_agent_gets_a_token_and_calls_the_reference_mcp_server() {
    let stack = spawn_stack("ada").await;
    let resource = &stack.fixtures.environment.resources[0];
    let agent = &resource.agents[0];
    let credentials = AgentCredentials {
        client_id: agent.client_id.clone(),
        client_secret: agent.client_secret.clone(),
    };

    let (hops, outcome) =
        mcp_driver::run_client_credentials(&driver_config(&stack), credentials).await;
    let report = outcome.expect("the agent reaches whoami");

    // The MCP server saw the agent, not a user.
    assert_eq!(
        report.whoami["sub"],
        json!(agent.client_id),
        "{}",
        report.whoami
    );
    assert_eq!(report.whoami["client_id"], json!(agent.client_id));
    assert_eq!(report.whoami["scopes"], json!(["mcp:read"]));
    assert!(report.whoami.get("email").is_none(), "{}", report.whoami);
    assert!(report.whoami.get("scope").is_none(), "{}", report.whoami);
    assert_eq!(
        report.access_token_claims["aud"],
        json!(resource.audience())
    );
    assert_eq!(
        report.access_token_claims["iss"].as_str(),
        Some(stack.environment_url.as_str().trim_end_matches('/'))
    );
    assert_eq!(report.granted_scopes, ["mcp:read"]);
    assert!(report.tokens.refresh_token.is_none());
    assert!(report.tokens.id_token.is_none());
    let phases: Vec<Phase> = hops.iter().map(|hop| hop.phase).collect();
    assert!(!phases.contains(&Phase::Registration), "{phases:?}");
    assert!(!phases.contains(&Phase::Authorization), "{phases:?}");
    assert_eq!(
        phases
            .iter()
            .filter(|phase| **phase == Phase::Token)
            .count(),
        1
    );
}

#[tokio::test]
async fn an_agent_with_a_wrong_secret_is_refused_at_the_token_endpoint() {
    let stack = spawn_stack("ada").await;
    let agent = &stack.fixtures.environment.resources[0].agents[0];
    let credentials = AgentCredentials {
        client_id: agent.client_id.clone(),
        client_secret: Secret::new("wrong"),
    };
    let (_, outcome) =
        mcp_driver::run_client_credentials(&driver_config(&stack), credentials).await;
    match outcome {
        Err(DriverError::TokenEndpoint { status, error, .. }) => {
            assert_eq!((status, error.as_str()), (401, "invalid_client"));
        }
        other => panic!("expected invalid_client, got {other:?}"),
    }
}
