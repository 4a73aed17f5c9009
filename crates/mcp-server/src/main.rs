//! `mcp-server`: runs the reference protected MCP server against a Scalekit environment.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use url::Url;

/// The reference MCP server protected by Scalekit MCP auth.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The Scalekit environment URL.
    #[arg(long, env = "SCALEKIT_ENVIRONMENT_URL")]
    environment_url: Url,
    /// The MCP server resource id (`res_…`).
    #[arg(long, env = "SCALEKIT_RESOURCE_ID")]
    resource_id: String,
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8402")]
    listen: SocketAddr,
    /// The base URL clients use, when it is not `http://{listen}`; the MCP endpoint is `{base}/mcp`.
    #[arg(long)]
    public_url: Option<Url>,
    /// A host name (or `host:port`) to answer for besides `localhost`, `127.0.0.1`, `[::1]` and
    /// the base URL's host, e.g. a container or proxy name (repeatable). Requests for any other
    /// host get 421 before routing (DNS rebinding).
    #[arg(long = "allowed-host", value_name = "HOST")]
    allowed_hosts: Vec<testbed_web::AllowedHost>,
    /// A scope a token needs to call tools (repeatable).
    #[arg(long = "required-scope", default_values = ["mcp:read"])]
    required_scopes: Vec<String>,
    /// A scope to publish in the protected-resource metadata (repeatable; defaults to the required
    /// scopes).
    #[arg(long = "scope-supported")]
    scopes_supported: Vec<String>,
    /// The resource name to publish in the protected-resource metadata.
    #[arg(long, default_value = "Testbed MCP server")]
    resource_name: String,
    /// Clock tolerance for `exp`, `nbf` and `iat`, in seconds.
    #[arg(long, default_value_t = 0)]
    leeway_secs: u64,
    /// An origin, `scheme://host[:port]`, whose browser pages may call `/mcp` besides the
    /// server's own and loopback ones (repeatable).
    #[arg(long = "allowed-origin")]
    allowed_origins: Vec<String>,
    /// After a JWKS refetch that failed or did not bring in the key its token named, how many
    /// seconds unknown `kid`s trigger no further refetch.
    #[arg(long, default_value_t = mcp_server::DEFAULT_JWKS_REFETCH_COOLDOWN.as_secs())]
    jwks_refetch_cooldown_secs: u64,
    /// Validate correctly, or make one classic resource-server mistake on purpose (for testing a
    /// conformance harness).
    #[arg(long, value_enum, default_value_t = mcp_server::Mistake::Correct)]
    mistake: mcp_server::Mistake,
    /// A CA certificate (PEM file) to trust besides the system's when fetching the JWKS, e.g.
    /// the emulator's development CA under `--tls` (`.testbed/tls/ca.pem`).
    #[arg(long, env = "TESTBED_CA_CERT", value_name = "FILE")]
    ca_cert: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    testbed_web::logging::init("info");
    let args = Args::parse();
    let scopes_supported = if args.scopes_supported.is_empty() {
        args.required_scopes.clone()
    } else {
        args.scopes_supported
    };
    let ca_cert_pem = match &args.ca_cert {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --ca-cert {}", path.display()))?,
        ),
        None => None,
    };
    let config = mcp_server::Config {
        listen: args.listen,
        public_url: args.public_url,
        allowed_hosts: args.allowed_hosts,
        environment_url: args.environment_url,
        resource_id: args.resource_id,
        scopes_supported,
        required_scopes: args.required_scopes,
        resource_name: args.resource_name,
        leeway_secs: args.leeway_secs,
        allowed_origins: args.allowed_origins,
        jwks_refetch_cooldown: std::time::Duration::from_secs(args.jwks_refetch_cooldown_secs),
        mistake: args.mistake,
        ca_cert_pem,
    };
    if args.mistake != mcp_server::Mistake::Correct {
        tracing::warn!(mistake = %args.mistake, "making a resource-server mistake on purpose");
    }
    let app = mcp_server::App::bind(config)
        .await
        .context("starting the MCP server")?;
    app.serve().await.context("serving the MCP server")
}
