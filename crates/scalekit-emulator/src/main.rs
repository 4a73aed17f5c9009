//! `scalekit-emulator --config fixtures/environment.toml [--listen ADDR] [--public-url URL]
//! [--tls [--tls-dir DIR]] [--state-dir DIR | --signing-key PATH | --fresh-signing-key]
//! [--no-control] [--allowed-host HOST]… [--control-token TOKEN]`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use scalekit_emulator::{App, Config, Deps, TlsOptions, TlsSetup};
use scalekit_wire::Secret;
use testbed_web::AllowedHost;
use url::Url;

/// An emulator of Scalekit's MCP authorization server with BYOA connections.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Arguments {
    /// The environment file.
    #[arg(long, default_value = "fixtures/environment.toml")]
    config: PathBuf,
    /// Overrides `listen`.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Overrides `public_url` (the environment URL).
    #[arg(long)]
    public_url: Option<Url>,
    /// Serves HTTPS (and gRPC over TLS, ALPN h2) with a certificate from a local development CA;
    /// the environment URL becomes `https://{listen}`.
    #[arg(long)]
    tls: bool,
    /// Where the development CA is made on first run and kept (`ca.pem`, `ca-key.pem`).
    #[arg(long, default_value = ".testbed/tls")]
    tls_dir: PathBuf,
    /// Keeps the signing keys, registered clients, users, consents, grants and refresh tokens in
    /// `DIR/emulator.sqlite3` across restarts; without it, everything is in memory but the
    /// signing key (see --signing-key; with --fresh-signing-key that too).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Without --state-dir: the file that keeps the signing key, read at start, or made (an
    /// RSA-2048 PKCS#8 PEM, owner-only) when missing. The key and its `kid` then stay the same
    /// across restarts, which MCP servers need: Scalekit's Node and Python SDKs fetch /keys once
    /// per process. A rotation through the control API lasts until the emulator stops; the next
    /// start signs with this file's key again.
    #[arg(
        long,
        value_name = "PATH",
        default_value = ".testbed/signing-key.pem",
        conflicts_with = "state_dir"
    )]
    signing_key: PathBuf,
    /// Makes a new signing key for this run only, kept nowhere (MCP servers that cached /keys
    /// then refuse the new tokens until they restart).
    #[arg(long, conflicts_with_all = ["signing_key", "state_dir"])]
    fresh_signing_key: bool,
    /// Turns off the control API under `/_emulator/` (clock, reset, pending login requests,
    /// request log, fault injection, signing-key rotation, minting access tokens, the flow
    /// inspector); its paths then answer 404.
    #[arg(long)]
    no_control: bool,
    /// A host name (or `host:port`) to answer for besides `localhost`, `127.0.0.1`, `[::1]` and
    /// the environment URL's host, e.g. a container or proxy name (repeatable; added to
    /// `allowed_hosts`). Requests for any other host get 421 before routing (DNS rebinding).
    #[arg(long = "allowed-host", value_name = "HOST")]
    allowed_hosts: Vec<AllowedHost>,
    /// Requires `Authorization: Bearer <TOKEN>` on every control API and inspector request
    /// (overrides `control_token`; a browser opens `/_emulator/ui?token=<TOKEN>` once).
    #[arg(
        long,
        env = "TESTBED_CONTROL_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        value_parser = secret
    )]
    control_token: Option<Secret>,
}

/// A secret argument, kept out of `Debug`.
fn secret(text: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret::new(text))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    testbed_web::logging::init("info");
    let arguments = Arguments::parse();
    let mut config = Config::from_file(&arguments.config)?;
    if let Some(listen) = arguments.listen {
        config.listen = listen;
    }
    if let Some(public_url) = arguments.public_url {
        config.public_url = Some(public_url);
    }
    if arguments.no_control {
        config.control = false;
    }
    for host in arguments.allowed_hosts {
        if !config.allowed_hosts.contains(&host) {
            config.allowed_hosts.push(host);
        }
    }
    if let Some(token) = arguments.control_token {
        config.control_token = Some(token);
    }
    let tls = if arguments.tls {
        if config.public_url.is_none() {
            anyhow::ensure!(
                config.listen.port() != 0,
                "--tls needs a fixed port in --listen, or a --public-url"
            );
            config.public_url = Some(Url::parse(&format!("https://{}", config.listen))?);
        }
        let options = TlsOptions {
            dir: arguments.tls_dir.clone(),
        };
        let setup = TlsSetup::load_or_create(&options).context("cannot set up TLS")?;
        let ca = setup.ca_cert_path().display().to_string();
        tracing::info!(
            ca,
            "TLS: trust this CA with NODE_EXTRA_CA_CERTS, GRPC_DEFAULT_SSL_ROOTS_FILE_PATH or REQUESTS_CA_BUNDLE"
        );
        Some(setup)
    } else {
        None
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let deps = Deps {
        state_dir: arguments.state_dir.clone(),
        signing_key_file: (!arguments.fresh_signing_key).then_some(arguments.signing_key),
        ..Deps::default()
    };
    let app =
        App::from_listener_with(listener, config, deps).context("cannot start the emulator")?;
    if let Some(state_dir) = &arguments.state_dir {
        tracing::info!(state_dir = %state_dir.display(), "state kept across restarts");
    }
    let kid = app.state().keys.signing().kid().to_owned();
    tracing::info!("{}", app.key_origin().banner(&kid));
    tracing::info!(
        environment_url = app.state().environment_url(),
        "scalekit emulator listening"
    );
    match tls {
        Some(setup) => app.serve_tls(setup).await,
        None => app.serve().await,
    }
    .context("the emulator stopped")
}
