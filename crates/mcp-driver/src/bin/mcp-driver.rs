//! `mcp-driver [--scope S] <mcp server url>`: the driver as a command, in the shape the official
//! MCP conformance suite runs a client (`conformance client --command`): the URL comes last, the
//! scenario in `MCP_CONFORMANCE_SCENARIO`, pre-registered credentials in
//! `MCP_CONFORMANCE_CONTEXT` (JSON) and the protocol version in
//! `MCP_CONFORMANCE_PROTOCOL_VERSION`. Exit 0 on success, else 1 with one line on stderr.
//!
//! `--browser` takes the authorization request through Chromium instead of the HTTP user agent:
//! `--login-user` (and `--login-password`, default `<user>-password` as in the reference Your
//! App's fixtures) fills in the login form, `--deny-consent` clicks Deny on the consent page, and
//! `--screenshots DIR` saves each page the browser shows.
//!
//! `--client-credentials` authorizes as an agent instead of a user: no registration and no
//! browser, `grant_type=client_credentials` at the token endpoint with the agent's client id and
//! secret (`--client-id`/`--client-secret`, or `MCP_DRIVER_CLIENT_ID`/`MCP_DRIVER_CLIENT_SECRET`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use mcp_driver::browser::{BrowserAgent, Chromium, ConsentChoice, LoginForm};
use mcp_driver::{
    AgentCredentials, ClientOptions, DriverConfig, PreRegisteredClient, UserAgent, run_session,
};
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
    /// Take the authorization request through Chromium (chromedriver from $CHROMEDRIVER or
    /// /usr/bin/chromedriver, Chromium from $CHROMIUM or /usr/bin/chromium) instead of the HTTP
    /// user agent.
    #[arg(long)]
    browser: bool,
    /// With --browser: sign in as this user on the login page (the reference Your App's form:
    /// #username, #password, #sign_in).
    #[arg(long, requires = "browser")]
    login_user: Option<String>,
    /// With --login-user: the password (default `<user>-password`, the fixtures' convention);
    /// ignored without --login-user. (No `requires`: clap counts a value from the environment as
    /// given, so an exported variable would break every run without --login-user.)
    #[arg(long, env = "MCP_DRIVER_LOGIN_PASSWORD", hide_env_values = true)]
    login_password: Option<String>,
    /// With --browser: click Deny instead of Allow on the consent page.
    #[arg(long, requires = "browser")]
    deny_consent: bool,
    /// With --browser: save a PNG of every page the browser shows in this folder.
    #[arg(long, requires = "browser")]
    screenshots: Option<PathBuf>,
    /// With --browser: how many seconds the browser may take to reach the redirect URI.
    #[arg(long, default_value_t = 30, requires = "browser")]
    browser_timeout: u64,
    /// Authorize as an agent (an M2M client of the MCP server) with `client_credentials` and
    /// the agent's secret, instead of a user's authorization-code flow.
    #[arg(long, conflicts_with = "browser", requires_all = ["client_id", "client_secret"])]
    client_credentials: bool,
    /// With --client-credentials: the agent's client id.
    #[arg(long, env = "MCP_DRIVER_CLIENT_ID")]
    client_id: Option<String>,
    /// With --client-credentials: the agent's client secret (better from the environment, which
    /// keeps it out of the process list).
    #[arg(long, env = "MCP_DRIVER_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
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
    testbed_web::logging::init("info");
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
    // The agent keeps chromedriver alive until `config` goes at the end of the run; dropping
    // the last reference ends its sessions and stops it.
    if args.browser {
        let chromium = Arc::new(Chromium::start().await?);
        let login = args.login_user.map(|user| {
            let mut form = LoginForm::reference_app(&user);
            if let Some(password) = args.login_password {
                form.password = Secret::new(password);
            }
            form
        });
        config.user_agent = UserAgent::Browser(BrowserAgent {
            chromium,
            login,
            consent: if args.deny_consent {
                ConsentChoice::Deny
            } else {
                ConsentChoice::Approve
            },
            timeout: Duration::from_secs(args.browser_timeout),
            screenshots: args.screenshots,
        });
    }
    if args.client_credentials {
        let (Some(client_id), Some(client_secret)) = (args.client_id, args.client_secret) else {
            anyhow::bail!("--client-credentials needs --client-id and --client-secret");
        };
        options.client_credentials = Some(AgentCredentials {
            client_id,
            client_secret: Secret::new(client_secret),
        });
    } else {
        // Ask for a refresh token wherever the authorization server offers one (MCP 2026-07-28:
        // only when its `scopes_supported` lists `offline_access`). An agent gets none.
        config.extra_scopes = vec!["offline_access".to_owned()];
    }
    let report = run_session(&config, &options).await?;
    tracing::info!(
        authorizations = report.authorizations,
        tools = ?report.tools,
        called = report.tool_result.is_some(),
        "done"
    );
    Ok(())
}
