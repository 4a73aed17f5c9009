//! `mcp-driver [--scope S] <mcp server url>`: the driver as a command, in the shape the official
//! MCP conformance suite runs a client (`conformance client --command`): the URL comes last, the
//! scenario in `MCP_CONFORMANCE_SCENARIO`, pre-registered credentials in
//! `MCP_CONFORMANCE_CONTEXT` (JSON) and the protocol version in
//! `MCP_CONFORMANCE_PROTOCOL_VERSION`. Exit 0 on success, else 1 with one line on stderr.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use mcp_driver::{ClientOptions, DriverConfig, PreRegisteredClient, run_session};
use scalekit_wire::Secret;
use serde::Deserialize;
use url::Url;

/// Scenarios whose mock server only asks for authorization (or more of it) on `tools/call`.
const SCENARIOS_THAT_CALL_A_TOOL: &[&str] = &[
    "auth/scope-step-up",
    "auth/scope-retry-limit",
    "auth/authorization-server-migration",
];

#[derive(Debug, Parser)]
#[command(about = "An MCP client: authorizes on demand, lists the tools, optionally calls one")]
struct Args {
    /// Request these scopes (space-separated) instead of selecting them from the challenge or
    /// the protected-resource metadata.
    #[arg(long)]
    scope: Option<String>,
    /// An https URL to use as client_id when the authorization server supports Client ID
    /// Metadata Documents (the document must be served there).
    #[arg(long)]
    client_id_metadata_url: Option<Url>,
    /// Call the first listed tool (also on for the conformance scenarios that need it).
    #[arg(long)]
    call_tool: bool,
    /// The MCP server's Streamable HTTP endpoint.
    mcp_url: Url,
}

/// The part of `MCP_CONFORMANCE_CONTEXT` the driver uses.
#[derive(Deserialize)]
struct ConformanceContext {
    client_id: Option<String>,
    client_secret: Option<String>,
    issuer: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mcp-driver: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let scenario = std::env::var("MCP_CONFORMANCE_SCENARIO").unwrap_or_default();
    let mut options = ClientOptions {
        client_id_metadata_document_url: args.client_id_metadata_url,
        scope_override: args
            .scope
            .map(|scope| scope.split_whitespace().map(str::to_owned).collect()),
        call_first_tool: args.call_tool || SCENARIOS_THAT_CALL_A_TOOL.contains(&scenario.as_str()),
        ..ClientOptions::default()
    };
    if let Ok(version) = std::env::var("MCP_CONFORMANCE_PROTOCOL_VERSION") {
        options.protocol_version = version;
    }
    if let Ok(context) = std::env::var("MCP_CONFORMANCE_CONTEXT") {
        let context: ConformanceContext =
            serde_json::from_str(&context).context("MCP_CONFORMANCE_CONTEXT is not valid JSON")?;
        if let Some(client_id) = context.client_id {
            options.pre_registered = Some(PreRegisteredClient {
                client_id,
                client_secret: context.client_secret.map(Secret::new),
                issuer: context.issuer,
            });
        }
    }
    let mut config = DriverConfig::new(args.mcp_url);
    // Ask for a refresh token wherever the authorization server offers one (MCP 2026-07-28:
    // only when its `scopes_supported` lists `offline_access`).
    config.extra_scopes = vec!["offline_access".to_owned()];
    let report = run_session(&config, &options).await?;
    tracing::info!(
        authorizations = report.authorizations,
        tools = ?report.tools,
        called = report.tool_result.is_some(),
        "done"
    );
    Ok(())
}
