//! The `your-app` binary: runs the reference login service, or hashes a password for the users file.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use scalekit_wire::Secret;
use url::Url;
use your_app::{App, Config, hash_password, load_personas};

/// The reference "Your App": the customer's login page in Scalekit's bring-your-own-auth flow.
#[derive(Parser)]
#[command(
    version,
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Reads a password from the first line of stdin and prints its Argon2id PHC string.
    HashPassword,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// The users file (e.g. fixtures/users.toml).
    #[arg(long, required = true)]
    users: Option<PathBuf>,
    /// The Scalekit environment URL.
    #[arg(long, env = "SCALEKIT_ENVIRONMENT_URL", required = true)]
    environment_url: Option<Url>,
    /// The environment API client id (`skc_…`).
    #[arg(long, env = "SCALEKIT_CLIENT_ID", required = true)]
    client_id: Option<String>,
    /// The environment API client secret.
    #[arg(
        long,
        env = "SCALEKIT_CLIENT_SECRET",
        hide_env_values = true,
        required = true
    )]
    client_secret: Option<String>,
    /// The BYOA connection id (`conn_…`).
    #[arg(long, env = "SCALEKIT_CONNECTION_ID", required = true)]
    connection_id: Option<String>,
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8401")]
    listen: SocketAddr,
    /// The public base URL, when it differs from `http://{listen}`.
    #[arg(long)]
    public_url: Option<Url>,
    /// A host name (or `host:port`) to answer for besides `localhost`, `127.0.0.1`, `[::1]` and
    /// the public URL's host, e.g. a container or proxy name (repeatable). Requests for any
    /// other host get 421 before routing (DNS rebinding).
    #[arg(long = "allowed-host", value_name = "HOST")]
    allowed_hosts: Vec<testbed_web::AllowedHost>,
    /// Sign this persona in without a form (headless runs).
    #[arg(long)]
    auto_login: Option<String>,
    /// Hand logins back correctly, or with one deliberate mistake: alter-state, drop-state,
    /// redirect-before-post, omit-email, phone-not-e164, login-failed, bad-bearer,
    /// reuse-login-request, wrong-connection=<id>.
    #[arg(long, default_value = "correct")]
    behaviour: your_app::Behaviour,
    /// A CA certificate (PEM file) to trust besides the system's when calling the environment,
    /// e.g. the emulator's development CA under `--tls` (`.testbed/tls/ca.pem`).
    #[arg(long, env = "TESTBED_CA_CERT", value_name = "FILE")]
    ca_cert: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::HashPassword) => hash_password_from_stdin(),
        None => serve(cli.serve).await,
    }
}

fn hash_password_from_stdin() -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    let hash = hash_password(password)?;
    writeln!(std::io::stdout(), "{hash}").context("cannot write the hash")?;
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    testbed_web::logging::init("info");
    // clap enforces these without a subcommand; the `Option`s exist only for `hash-password`.
    let (
        Some(users),
        Some(environment_url),
        Some(client_id),
        Some(client_secret),
        Some(connection_id),
    ) = (
        args.users,
        args.environment_url,
        args.client_id,
        args.client_secret,
        args.connection_id,
    )
    else {
        anyhow::bail!(
            "--users, --environment-url, --client-id, --client-secret and --connection-id are required"
        );
    };
    let personas = load_personas(&users)?;
    let ca_cert_pem = match &args.ca_cert {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --ca-cert {}", path.display()))?,
        ),
        None => None,
    };
    let config = Config {
        listen: args.listen,
        public_url: args.public_url,
        allowed_hosts: args.allowed_hosts,
        environment_url,
        client_id,
        client_secret: Secret::new(client_secret),
        connection_id,
        auto_login: args.auto_login,
        behaviour: args.behaviour,
        personas,
        ca_cert_pem,
    };
    let app = App::bind(config).await?;
    tracing::info!(
        address = %app.local_addr(),
        login_endpoint = %app.login_url(),
        "your-app listening"
    );
    app.serve().await.context("server failed")
}
