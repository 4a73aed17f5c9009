//! Two real MCP servers on the official TypeScript MCP SDK's server-side auth (`requireBearerAuth`,
//! `mcpAuthMetadataRouter`, `createMcpExpressApp`), each validating tokens with Scalekit's Node SDK
//! the way Scalekit's documentation shows (`ts-server/server.mjs` names the lines it follows), put
//! through `testbed conformance --mcp-server-url`'s check. They are not written to pass: what the
//! check names is what these libraries do when used as documented, and `docs/mcp-server-check.md`
//! states it. The server is configured only from the settings the check prints.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::Stdio;
use std::time::Duration;

use conformance::CheckStatus;
use conformance::server_check::{
    Progress, ScopeCheck, ServerCheck, ServerCheckOptions, ServerCheckOutcome, ServerProfile,
};
use testbed_stack::Fixtures;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use url::Url;

use crate::node;

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free port");
    listener.local_addr().expect("an address").port()
}

/// `NAME=value` lines, as the check prints them.
fn settings(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

/// Starts `server.mjs <mode>` with the check's settings and waits for its `listening on` line.
async fn start_server(mode: &str, settings: &BTreeMap<String, String>) -> Child {
    let mut child = Command::new("node")
        .arg("server.mjs")
        .arg(mode)
        .envs(settings)
        .current_dir(node::package_dir("ts-server"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let stdout = child.stdout.take().expect("a stdout pipe");
    let mut lines = BufReader::new(stdout).lines();
    let expected = format!("listening on {}", settings["MCP_SERVER_URL"]);
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line == expected {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        ready,
        Ok(true),
        "server.mjs {mode} did not print {expected:?}"
    );
    child
}

async fn check(mode: &str) -> ServerCheckOutcome {
    let fixtures = Fixtures::embedded().expect("the repository's fixtures are valid");
    let server_url = Url::parse(&format!("http://127.0.0.1:{}/mcp", free_port())).expect("a URL");
    let environment_listen = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let check = ServerCheck::start(ServerCheckOptions {
        fixtures,
        server_url,
        profile: ServerProfile {
            environment_listen: Some(environment_listen),
            scope: Some(ScopeCheck {
                tool: "whoami".to_owned(),
                scope: "mcp:read".to_owned(),
                arguments: serde_json::Map::new(),
            }),
            // Scalekit's Node SDK fetches the keys once per process and never again (its
            // lib/core.js), so waiting longer would only make the test slower.
            refetch_wait: Duration::from_secs(3),
        },
    })
    .await
    .expect("the check starts");
    let _server = start_server(mode, &settings(&check.server_settings())).await;
    check
        .run(|_: Progress<'_>| {})
        .await
        .expect("the server answers")
}

/// The status of one check, by its id under `server-check/`.
fn status_of(outcome: &ServerCheckOutcome, id: &str) -> Option<CheckStatus> {
    outcome
        .report
        .scenarios
        .iter()
        .flat_map(|group| &group.checks)
        .find(|check| check.id == format!("server-check/{id}"))
        .map(|check| check.status)
}

/// The named mistakes, by id, and every finding for the failure message.
fn named(outcome: &ServerCheckOutcome) -> (BTreeSet<&'static str>, String) {
    let ids = outcome
        .mistakes
        .iter()
        .map(|mistake| mistake.id())
        .collect();
    let findings = outcome
        .report
        .scenarios
        .iter()
        .flat_map(|group| &group.checks)
        .filter(|check| check.status != CheckStatus::Success)
        .map(|check| {
            format!(
                "{} {:?}: {}",
                check.id,
                check.status,
                check.error_message.as_deref().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n  ");
    (ids, findings)
}

#[tokio::test]
async fn the_typescript_sdk_server_validating_as_scalekit_documents_misses_rotation_origin_and_iat()
{
    if let Some(reason) = node::missing_setup("ts-server", "@modelcontextprotocol/sdk") {
        eprintln!("skipping the TypeScript SDK server check: {reason}");
        return;
    }
    let outcome = check("sdk-with-options").await;
    let (ids, findings) = named(&outcome);
    assert_eq!(
        ids,
        BTreeSet::from([
            // `validateToken` takes one issuer string, the environment URL the docs pass.
            "resource-issuer-refused",
            // jose checks iat only with maxTokenAge.
            "iat-not-checked",
            // The SDK's transport leaves DNS-rebinding protection off; createMcpExpressApp
            // checks Host only.
            "origin-not-checked",
            // The Node SDK caches /keys forever.
            "jwks-not-refetched",
        ]),
        "\n  {findings}"
    );
    // The SDK 1.32.2 transport speaks the 2025-11-25 session protocol only.
    assert_eq!(
        status_of(&outcome, "accepted/stateless-protocol"),
        Some(CheckStatus::Skipped)
    );
}

#[tokio::test]
async fn the_typescript_sdk_server_validating_without_options_checks_neither_audience_nor_issuer() {
    if let Some(reason) = node::missing_setup("ts-server", "@modelcontextprotocol/sdk") {
        eprintln!("skipping the TypeScript SDK server check: {reason}");
        return;
    }
    let outcome = check("sdk-no-options").await;
    let (ids, findings) = named(&outcome);
    assert_eq!(
        ids,
        BTreeSet::from([
            "audience-not-checked",
            "issuer-not-checked",
            "iat-not-checked",
            "origin-not-checked",
            "jwks-not-refetched",
        ]),
        "\n  {findings}"
    );
    // The management token passes validation and is stopped only by the scope check.
    let management = outcome
        .report
        .scenarios
        .iter()
        .flat_map(|group| &group.checks)
        .find(|check| check.id == "server-check/refused/management-token")
        .and_then(|check| check.details.clone())
        .expect("the management-token check");
    assert_eq!(management["evidence"][0]["answer"]["status"], 403);
    assert_eq!(management["explained_by"], "audience-not-checked");
    assert_eq!(
        status_of(&outcome, "accepted/stateless-protocol"),
        Some(CheckStatus::Skipped)
    );
}
