//! `scalekit-emulator --config fixtures/environment.toml [--listen ADDR] [--public-url URL]`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use scalekit_emulator::{App, Config};
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let arguments = Arguments::parse();
    let mut config = Config::from_file(&arguments.config)?;
    if let Some(listen) = arguments.listen {
        config.listen = listen;
    }
    if let Some(public_url) = arguments.public_url {
        config.public_url = Some(public_url);
    }
    let app = App::bind(config)
        .await
        .context("cannot start the emulator")?;
    tracing::info!(
        environment_url = app.state().environment_url(),
        "scalekit emulator listening"
    );
    app.serve().await.context("the emulator stopped")
}
