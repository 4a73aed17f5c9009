//! Checking somebody's own MCP server (`testbed conformance --mcp-server-url`): the reference MCP
//! server, started on its own and told to make one mistake, plays "their server"; the check must
//! name exactly that mistake, and find none in the correct server.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::ValueEnum;
use conformance::CheckStatus;
use conformance::server_check::{
    Progress, ScopeCheck, ServerCheck, ServerCheckError, ServerCheckOptions, ServerCheckOutcome,
    ServerProfile,
};
use mcp_server::Mistake;
use testbed_stack::{Fixtures, StackError};
use tokio::task::JoinSet;
use url::Url;

use crate::url_target::free_port;

/// "Their server": the reference MCP server on a free port, making `mistake`, configured with
/// the environment URL `http://{environment_listen}`, where the check will start its emulator.
pub(crate) async fn reference_server(environment_listen: SocketAddr, mistake: Mistake) -> Url {
    let fixtures = Fixtures::embedded().expect("the repository's fixtures are valid");
    let resource = &fixtures.environment.resources[0];
    let server = mcp_server::App::bind(mcp_server::Config {
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        public_url: None,
        allowed_hosts: Vec::new(),
        environment_url: Url::parse(&format!("http://{environment_listen}")).unwrap(),
        resource_id: resource.id.clone(),
        scopes_supported: resource.scopes.clone(),
        required_scopes: vec!["mcp:read".to_owned()],
        resource_name: resource.name.clone(),
        leeway_secs: 0,
        allowed_origins: Vec::new(),
        jwks_refetch_cooldown: mcp_server::DEFAULT_JWKS_REFETCH_COOLDOWN,
        mistake,
        ca_cert_pem: None,
    })
    .await
    .expect("the reference MCP server starts");
    let url = server.mcp_url();
    tokio::spawn(server.serve());
    url
}

/// The profile the tests run with: the scope check on `whoami`, and a short refetch wait (the
/// reference server picks a rotated key up at once; only `never-refetch-jwks` waits it out).
fn profile(environment_listen: SocketAddr) -> ServerProfile {
    ServerProfile {
        environment_listen: Some(environment_listen),
        scope: Some(ScopeCheck {
            tool: "whoami".to_owned(),
            scope: "mcp:read".to_owned(),
            arguments: serde_json::Map::new(),
        }),
        refetch_wait: Duration::from_secs(3),
    }
}

async fn check(mistake: Mistake) -> ServerCheckOutcome {
    // The emulator's port is picked free and released before the check binds it; another test
    // may take it in between, so a bind failure is retried on another port.
    for _ in 0..3 {
        let environment_listen = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let server_url = reference_server(environment_listen, mistake).await;
        let started = ServerCheck::start(ServerCheckOptions {
            fixtures: Fixtures::embedded().expect("the repository's fixtures are valid"),
            server_url,
            profile: profile(environment_listen),
        })
        .await;
        let check = match started {
            Err(ServerCheckError::Stack(StackError::Bind { .. })) => continue,
            started => started.expect("the check starts"),
        };
        return check
            .run(|_: Progress<'_>| {})
            .await
            .expect("the server answers");
    }
    panic!("no free port for the emulator after three tries");
}

/// Every check that failed or warned, as `group/name: message`.
fn findings(outcome: &ServerCheckOutcome) -> Vec<String> {
    outcome
        .report
        .scenarios
        .iter()
        .flat_map(|group| &group.checks)
        .filter(|check| matches!(check.status, CheckStatus::Failure | CheckStatus::Warning))
        .map(|check| {
            format!(
                "{}: {}",
                check.id,
                check.error_message.as_deref().unwrap_or_default()
            )
        })
        .collect()
}

#[tokio::test]
async fn each_mistake_of_a_server_is_named_exactly_and_a_correct_server_passes_every_check() {
    let mut cases = JoinSet::new();
    for mistake in Mistake::value_variants().iter().copied() {
        cases.spawn(async move { (mistake, check(mistake).await) });
    }
    let mut wrong = Vec::new();
    while let Some(joined) = cases.join_next().await {
        let (mistake, outcome) = joined.expect("a check task");
        let expected: BTreeSet<&str> = mistake.diagnostic().into_iter().collect();
        let named: BTreeSet<&str> = outcome.mistakes.iter().map(|found| found.id()).collect();
        if named != expected {
            wrong.push(format!(
                "{mistake:?}: expected {expected:?}, the check named {named:?}\n  {}",
                findings(&outcome).join("\n  ")
            ));
        }
        if mistake == Mistake::Correct {
            let not_passed: Vec<String> = outcome
                .report
                .scenarios
                .iter()
                .flat_map(|group| &group.checks)
                .filter(|check| check.status != CheckStatus::Success)
                .map(|check| format!("{} {:?}", check.id, check.status))
                .collect();
            // rmcp speaks both the 2025-11-25 session protocol and the stateless 2026-07-28 one.
            assert!(
                not_passed.is_empty(),
                "the correct server passes every check: {not_passed:?}"
            );
        }
    }
    wrong.sort();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn a_finding_carries_the_request_the_answer_the_token_and_the_fix() {
    let outcome = check(Mistake::SkipAudience).await;
    let refused = outcome
        .report
        .scenarios
        .iter()
        .find(|group| group.id == "server-check/refused")
        .expect("the refused group");
    let wrong_audience = refused
        .checks
        .iter()
        .find(|check| check.name == "wrong-audience")
        .expect("the wrong-audience check");
    assert_eq!(wrong_audience.status, CheckStatus::Failure);
    let details = wrong_audience.details.as_ref().expect("details");
    assert_eq!(details["diagnostic"], "audience-not-checked");
    assert!(
        details["fix"]
            .as_str()
            .is_some_and(|fix| fix.starts_with("require aud to contain your res_… id")),
        "{details}"
    );
    let evidence = &details["evidence"][0];
    assert_eq!(evidence["request"]["method"], "POST");
    assert_eq!(
        evidence["request"]["headers"]["authorization"],
        "Bearer <a real access token issued for another MCP server of the environment>"
    );
    assert_eq!(evidence["answer"]["status"], 200);
    let audience = details["token"]["claims"]["aud"]
        .as_array()
        .expect("the token's aud");
    assert_eq!(audience.len(), 2);
    assert!(
        audience[1]
            .as_str()
            .is_some_and(|id| id.starts_with("res_") && id != "res_81920374650192839"),
        "{audience:?}"
    );
    // The management token and the ID token got in for the same reason, and say so.
    let management = refused
        .checks
        .iter()
        .find(|check| check.name == "management-token")
        .expect("the management-token check");
    assert_eq!(
        management
            .details
            .as_ref()
            .map(|details| &details["explained_by"]),
        Some(&serde_json::json!("audience-not-checked"))
    );
    // No token value is in the report.
    let report = serde_json::to_string(&outcome.report).expect("a report");
    assert!(!report.contains("eyJ"), "a token leaked into the report");
}
