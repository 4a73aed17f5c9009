//! Starts the whole stack (emulator, reference "Your App", reference MCP server) wired together.
//!
//! Three listeners are bound first, so every piece knows the others' real addresses before it is
//! built: the emulator's connection points at Your App's login endpoint, its resource's Server URL
//! is the MCP server's `/mcp`, and both other pieces know the emulator's environment URL. Each
//! piece is then served on its own task; they talk to each other only over HTTP.

mod dev_ca;
mod fixtures;
pub mod settings;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::Router;
use flow_inspector::{Actor, Inspector, RecordLayer};
use scalekit_emulator::{Deps, ManualClock};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use url::Url;

pub use dev_ca::{DevCa, DevCaError, TrustVariable};
pub use fixtures::{FixtureError, Fixtures};
pub use scalekit_emulator::{ConsentMode, ResourceConfig};
pub use testbed_web::AllowedHost;
pub use your_app::Behaviour as AppBehaviour;

/// The scopes the reference MCP server requires for its tools.
pub const DEFAULT_REQUIRED_SCOPES: &[&str] = &["mcp:read"];

/// Where the pieces listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ports {
    /// `127.0.0.1:0` for every piece: tests and the embedded conformance target.
    Ephemeral,
    /// The addresses in the fixtures (`cargo xtask up`).
    FromFixtures,
}

/// Everything that shapes one stack.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// The environment and the personas.
    pub fixtures: Fixtures,
    /// Where the pieces listen.
    pub ports: Ports,
    /// A persona Your App signs in without a form, for headless runs.
    pub auto_login: Option<String>,
    /// How Your App hands logins back: correctly, or with one deliberate mistake.
    pub app_behaviour: your_app::Behaviour,
    /// Overrides the consent mode of every resource.
    pub consent: Option<ConsentMode>,
    /// The scopes the MCP server requires for its tools.
    pub required_scopes: Vec<String>,
    /// Drive the emulator's clock by hand instead of the system clock.
    pub manual_clock: bool,
    /// Where the emulator runs.
    pub emulator: EmulatorPlacement,
    /// Where an in-process emulator keeps its state across restarts (`None`: memory only).
    pub state_dir: Option<std::path::PathBuf>,
    /// Whose login page the connection points at.
    pub app: AppPlacement,
    /// Where an in-process emulator listens instead of where [`Ports`] says (an external app is
    /// configured with a fixed environment URL).
    pub environment_listen: Option<SocketAddr>,
    /// The emulator's signing key (PKCS#8 PEM); `None`: the state directory's, or a fresh one.
    pub signing_key_pem: Option<scalekit_wire::Secret>,
    /// Whose MCP server the first resource's Server URL is.
    pub mcp: McpPlacement,
    /// Host names every piece the stack starts answers for besides loopback and its own URL's
    /// host (added to the environment's `allowed_hosts`), for containers and proxies.
    pub allowed_hosts: Vec<AllowedHost>,
    /// Serve the in-process emulator over TLS (HTTPS and gRPC over TLS on one port) with a
    /// certificate from this development CA; the environment URL is then `https://…`, and Your
    /// App and the MCP server trust the CA.
    pub tls: Option<scalekit_emulator::TlsSetup>,
}

/// Whose MCP server the first resource's Server URL points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McpPlacement {
    /// The reference MCP server, started by the stack for the first resource.
    Reference,
    /// Somebody's own MCP server at this URL, started by them and configured with the stack's
    /// environment URL and resource id. The stack then starts the reference MCP server for the
    /// second resource instead (the fixtures must have one), whose tokens are another audience's.
    External(Url),
}

/// Whose login page the stack's connection sends the browser to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppPlacement {
    /// The reference Your App, started by the stack.
    Reference,
    /// Somebody's own app at this login endpoint, started by them and configured with the
    /// stack's environment URL, API client and connection id; the stack does not start Your App.
    External(Url),
}

/// Where the stack's emulator runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmulatorPlacement {
    /// Started in this process, on the port [`Ports`] says.
    InProcess,
    /// Already running at this environment URL (another process, or real Scalekit), reached only
    /// over HTTP. Your App and the MCP server listen where the fixtures' login endpoint and Server
    /// URL say, since that is what the running environment redirects to and names in tokens.
    Remote(Url),
}

impl StackConfig {
    /// A stack on ephemeral ports from the given fixtures, signing in `auto_login` headlessly.
    pub fn ephemeral(fixtures: Fixtures, auto_login: Option<&str>) -> Self {
        Self {
            fixtures,
            ports: Ports::Ephemeral,
            auto_login: auto_login.map(str::to_owned),
            app_behaviour: your_app::Behaviour::Correct,
            consent: None,
            required_scopes: DEFAULT_REQUIRED_SCOPES
                .iter()
                .map(|scope| (*scope).to_owned())
                .collect(),
            manual_clock: false,
            emulator: EmulatorPlacement::InProcess,
            state_dir: None,
            app: AppPlacement::Reference,
            environment_listen: None,
            signing_key_pem: None,
            mcp: McpPlacement::Reference,
            allowed_hosts: Vec::new(),
            tls: None,
        }
    }
}

/// One piece of the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// The emulated Scalekit environment.
    Emulator,
    /// The reference Your App.
    YourApp,
    /// The reference MCP server.
    McpServer,
}

impl std::fmt::Display for Piece {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Piece::Emulator => "emulator",
            Piece::YourApp => "your-app",
            Piece::McpServer => "mcp-server",
        })
    }
}

/// Why the stack did not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// A listener could not be bound.
    #[error("cannot listen on {address}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The fixtures do not describe a stack this crate can wire.
    #[error("fixtures: {0}")]
    Fixtures(String),
    /// The emulator refused its configuration, key or state directory.
    #[error("the emulator did not start")]
    Emulator(#[source] scalekit_emulator::AppError),
    /// Your App refused its configuration.
    #[error("your-app did not start")]
    YourApp(#[source] your_app::AppError),
    /// The MCP server refused its configuration.
    #[error("mcp-server did not start")]
    McpServer(#[source] mcp_server::StartError),
    /// A piece stopped serving without an error.
    #[error("{piece} stopped serving")]
    Stopped { piece: Piece },
    /// A piece stopped serving on an IO error.
    #[error("{piece} failed while serving")]
    Served {
        piece: Piece,
        #[source]
        source: std::io::Error,
    },
    /// A signing key could not be generated.
    #[error("cannot generate a signing key")]
    SigningKey(#[source] scalekit_emulator::keys::KeyError),
    /// A piece's task panicked or was cancelled.
    #[error("a piece's task ended abnormally")]
    Task(#[source] tokio::task::JoinError),
}

/// A running stack. Dropping it stops every piece.
pub struct Stack {
    /// The emulated Scalekit environment URL.
    pub environment_url: Url,
    /// Your App's base URL; its login endpoint is `{app_url}/login` (with an external app, the
    /// origin of its login endpoint).
    pub app_url: Url,
    /// The first resource's Server URL (`…/mcp`): the reference MCP server's, or somebody's own.
    pub mcp_url: Url,
    /// Where the stack's reference MCP server serves: the first resource's Server URL, or with
    /// [`McpPlacement::External`] the second resource's.
    pub reference_mcp_url: Url,
    /// The emulator's clock when `manual_clock` was asked for.
    pub clock: Option<ManualClock>,
    /// The fixtures the stack runs with, URLs rewritten to the bound addresses.
    pub fixtures: Fixtures,
    tasks: JoinSet<(Piece, std::io::Result<()>)>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Stack")
            .field("environment_url", &self.environment_url.as_str())
            .field("app_url", &self.app_url.as_str())
            .field("mcp_url", &self.mcp_url.as_str())
            .finish_non_exhaustive()
    }
}

impl Stack {
    /// Binds the three listeners, wires the pieces to each other's real addresses and serves them.
    pub async fn spawn(config: StackConfig) -> Result<Stack, StackError> {
        let StackConfig {
            mut fixtures,
            ports,
            auto_login,
            app_behaviour,
            consent,
            required_scopes,
            manual_clock,
            emulator: placement,
            state_dir,
            app: app_placement,
            environment_listen,
            signing_key_pem,
            mcp: mcp_placement,
            allowed_hosts,
            tls,
        } = config;
        // The resource the reference MCP server serves: the first, or with an external MCP
        // server the second.
        let served_index = match &mcp_placement {
            McpPlacement::Reference => 0,
            McpPlacement::External(_) => 1,
        };
        let resource = fixtures
            .environment
            .resources
            .get(served_index)
            .cloned()
            .ok_or_else(|| {
                StackError::Fixtures(match served_index {
                    0 => "the environment has no resource".to_owned(),
                    _ => "an external MCP server needs a second resource in the environment, for the reference MCP server".to_owned(),
                })
            })?;

        let remote = match &placement {
            EmulatorPlacement::InProcess => None,
            EmulatorPlacement::Remote(url) => Some(url.clone()),
        };
        let own_settings = consent.is_some()
            || manual_clock
            || state_dir.is_some()
            || environment_listen.is_some()
            || signing_key_pem.is_some()
            || app_placement != AppPlacement::Reference
            || mcp_placement != McpPlacement::Reference
            || tls.is_some();
        if remote.is_some() && own_settings {
            return Err(StackError::Fixtures(
                "a remote emulator's consent mode, clock, state, address, key, TLS and login endpoint are its own: they cannot be set here"
                    .to_owned(),
            ));
        }
        let Listeners {
            environment_url,
            emulator_listener,
            app_listener,
            app_url,
            mcp_listener,
            mcp_base_url,
        } = Listeners::bind(
            &fixtures,
            ports,
            remote,
            environment_listen,
            &app_placement,
            tls.is_some(),
        )
        .await?;
        let ca_cert_pem = tls.as_ref().map(|setup| setup.ca_cert_pem().to_owned());
        let reference_mcp_url = join(&mcp_base_url, "mcp");
        let mcp_url = match &mcp_placement {
            McpPlacement::Reference => reference_mcp_url.clone(),
            McpPlacement::External(url) => url.clone(),
        };

        let mut tasks = JoinSet::new();
        let mut clock = None;
        // The in-process emulator's flow inspector, which then records Your App's and the MCP
        // server's traffic too (off with the control API).
        let mut inspector: Option<Inspector> = None;
        if let Some(emulator_listener) = emulator_listener {
            let login_endpoint = match &app_placement {
                AppPlacement::Reference => join(&app_url, "login"),
                AppPlacement::External(login_url) => login_url.clone(),
            };
            wire_environment(
                &mut fixtures.environment,
                &Wiring {
                    environment_url: &environment_url,
                    login_endpoint: &login_endpoint,
                    mcp_url: &mcp_url,
                    served_index,
                    reference_mcp_url: &reference_mcp_url,
                    consent,
                },
            );
            for host in &allowed_hosts {
                if !fixtures.environment.allowed_hosts.contains(host) {
                    fixtures.environment.allowed_hosts.push(host.clone());
                }
            }
            let (emulator, manual) = start_emulator(
                emulator_listener,
                &fixtures.environment,
                manual_clock,
                Deps {
                    state_dir,
                    signing_key_pem,
                    ..Deps::default()
                },
            )?;
            clock = manual;
            if emulator.state().config.control {
                inspector = Some(emulator.state().inspector.clone());
            }
            let serving: std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>> =
                match tls {
                    Some(setup) => Box::pin(emulator.serve_tls(setup)),
                    None => Box::pin(emulator.serve()),
                };
            tasks.spawn(async move { (Piece::Emulator, serving.await) });
        }

        if let Some(app_listener) = app_listener {
            let app = start_your_app(
                app_listener,
                &fixtures,
                &resource,
                AppAddresses {
                    app_url: &app_url,
                    environment_url: &environment_url,
                    ca_cert_pem: ca_cert_pem.as_deref(),
                },
                auto_login,
                app_behaviour,
                allowed_hosts.clone(),
            )?;
            let wrap = recording(inspector.as_ref(), Actor::YourApp, &app_url);
            tasks.spawn(async move { (Piece::YourApp, app.serve_with(wrap).await) });
        }

        let mcp = start_mcp_server(
            mcp_listener,
            &resource,
            &mcp_base_url,
            &environment_url,
            required_scopes,
            allowed_hosts,
            ca_cert_pem,
        )?;
        let wrap = recording(
            inspector.as_ref(),
            Actor::McpServer,
            &join(&reference_mcp_url, "/"),
        );
        tasks.spawn(async move { (Piece::McpServer, mcp.serve_with(wrap).await) });
        tracing::debug!(%environment_url, %app_url, %mcp_url, "stack started");

        Ok(Stack {
            environment_url,
            app_url,
            mcp_url,
            reference_mcp_url,
            clock,
            fixtures,
            tasks,
        })
    }

    /// Serves until one piece stops (which it does only on an IO error) and says which.
    pub async fn wait(mut self) -> Result<(), StackError> {
        match self.tasks.join_next().await {
            Some(Ok((piece, Ok(())))) => Err(StackError::Stopped { piece }),
            Some(Ok((piece, Err(source)))) => Err(StackError::Served { piece, source }),
            Some(Err(join_error)) => Err(StackError::Task(join_error)),
            None => Ok(()),
        }
    }
}

/// The stack's listeners, bound before any piece is built so that each knows the others' real
/// addresses.
struct Listeners {
    /// The environment URL: the remote emulator's, or the in-process one's.
    environment_url: Url,
    /// `None` with a remote emulator.
    emulator_listener: Option<TcpListener>,
    /// `None` with somebody else's app.
    app_listener: Option<TcpListener>,
    /// Your App's base URL (with an external app, the origin of its login endpoint).
    app_url: Url,
    mcp_listener: TcpListener,
    mcp_base_url: Url,
}

impl Listeners {
    /// Binds what the placements need: ephemeral loopback ports, or the fixtures' addresses (a
    /// remote emulator redirects to the fixtures' login endpoint and names the fixtures' Server
    /// URL, so Your App and the MCP server must listen there).
    async fn bind(
        fixtures: &Fixtures,
        ports: Ports,
        remote: Option<Url>,
        environment_listen: Option<SocketAddr>,
        app_placement: &AppPlacement,
        tls: bool,
    ) -> Result<Listeners, StackError> {
        let loopback = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        let (app_address, mcp_address) = match (ports, &remote) {
            (Ports::Ephemeral, None) => (loopback, loopback),
            _ => (fixtures.app_listen, fixtures.mcp_listen),
        };
        let (environment_url, emulator_listener) = match remote {
            Some(url) => (url, None),
            None => {
                let address = match (environment_listen, ports) {
                    (Some(address), _) => address,
                    (None, Ports::Ephemeral) => loopback,
                    (None, Ports::FromFixtures) => fixtures.environment.listen,
                };
                let listener = bind(address).await?;
                let url = match (&fixtures.environment.public_url, ports) {
                    (Some(public_url), Ports::FromFixtures) => public_url.clone(),
                    _ if tls => https_base_url(&listener)?,
                    _ => base_url(&listener)?,
                };
                (url, Some(listener))
            }
        };
        let (app_listener, app_url) = match app_placement {
            AppPlacement::Reference => {
                let listener = bind(app_address).await?;
                let url = base_url(&listener)?;
                (Some(listener), url)
            }
            AppPlacement::External(login_url) => (None, join(login_url, "/")),
        };
        let mcp_listener = bind(mcp_address).await?;
        let mcp_base_url = base_url(&mcp_listener)?;
        Ok(Listeners {
            environment_url,
            emulator_listener,
            app_listener,
            app_url,
            mcp_listener,
            mcp_base_url,
        })
    }
}

/// Where the pieces of an in-process stack are, for rewriting the environment's configuration.
struct Wiring<'a> {
    environment_url: &'a Url,
    login_endpoint: &'a Url,
    /// The first resource's Server URL.
    mcp_url: &'a Url,
    /// The resource the reference MCP server serves, and where.
    served_index: usize,
    reference_mcp_url: &'a Url,
    consent: Option<ConsentMode>,
}

/// Points the environment at the addresses actually bound: its own URL, every connection's login
/// endpoint, the first resource's Server URL and the reference MCP server's resource; and
/// overrides the consent mode when asked.
fn wire_environment(environment: &mut scalekit_emulator::Config, wiring: &Wiring<'_>) {
    environment.public_url = Some(wiring.environment_url.clone());
    for connection in &mut environment.connections {
        connection.login_endpoint = wiring.login_endpoint.clone();
    }
    if let Some(first) = environment.resources.first_mut() {
        first.server_url = Some(wiring.mcp_url.clone());
    }
    if let Some(served) = environment.resources.get_mut(wiring.served_index) {
        served.server_url = Some(wiring.reference_mcp_url.clone());
    }
    if let Some(mode) = wiring.consent {
        for each in &mut environment.resources {
            each.consent = mode;
        }
    }
}

/// The emulator on a listener the stack bound, with `deps` (a manual clock instead of theirs
/// when asked for; the clock comes back to be moved by hand).
fn start_emulator(
    listener: TcpListener,
    environment: &scalekit_emulator::Config,
    manual_clock: bool,
    mut deps: Deps,
) -> Result<(scalekit_emulator::App, Option<ManualClock>), StackError> {
    let clock = manual_clock.then(ManualClock::now);
    if let Some(clock) = &clock {
        deps.clock = std::sync::Arc::new(clock.clone());
    }
    let emulator = scalekit_emulator::App::from_listener_with(listener, environment.clone(), deps)
        .map_err(StackError::Emulator)?;
    Ok((emulator, clock))
}

/// Where Your App is, the environment it talks to, and the CA it trusts there (under TLS).
struct AppAddresses<'a> {
    app_url: &'a Url,
    environment_url: &'a Url,
    ca_cert_pem: Option<&'a str>,
}

/// The reference Your App on a listener the stack bound, configured with the environment's API
/// client and the connection of `resource`.
fn start_your_app(
    listener: TcpListener,
    fixtures: &Fixtures,
    resource: &ResourceConfig,
    addresses: AppAddresses<'_>,
    auto_login: Option<String>,
    behaviour: your_app::Behaviour,
    allowed_hosts: Vec<AllowedHost>,
) -> Result<your_app::App, StackError> {
    let listen = local_address(&listener)?;
    let config = your_app::Config {
        listen,
        public_url: Some(addresses.app_url.clone()),
        allowed_hosts,
        environment_url: addresses.environment_url.clone(),
        client_id: fixtures.environment.api_client.client_id.clone(),
        client_secret: fixtures.environment.api_client.client_secret.clone(),
        connection_id: resource.connection.clone(),
        auto_login,
        behaviour,
        personas: fixtures.personas.clone(),
        ca_cert_pem: addresses.ca_cert_pem.map(str::to_owned),
    };
    your_app::App::from_listener(listener, config).map_err(StackError::YourApp)
}

/// The reference MCP server for `resource` on a listener the stack bound, served at `base_url`.
fn start_mcp_server(
    listener: TcpListener,
    resource: &ResourceConfig,
    base_url: &Url,
    environment_url: &Url,
    required_scopes: Vec<String>,
    allowed_hosts: Vec<AllowedHost>,
    ca_cert_pem: Option<String>,
) -> Result<mcp_server::App, StackError> {
    let listen = local_address(&listener)?;
    let config = mcp_server::Config {
        listen,
        public_url: Some(base_url.clone()),
        allowed_hosts,
        environment_url: environment_url.clone(),
        resource_id: resource.id.clone(),
        resource_name: resource.name.clone(),
        scopes_supported: resource.scopes.clone(),
        required_scopes,
        leeway_secs: 0,
        allowed_origins: Vec::new(),
        jwks_refetch_cooldown: mcp_server::DEFAULT_JWKS_REFETCH_COOLDOWN,
        mistake: mcp_server::Mistake::Correct,
        ca_cert_pem,
    };
    mcp_server::App::from_listener(listener, config).map_err(StackError::McpServer)
}

fn local_address(listener: &TcpListener) -> Result<SocketAddr, StackError> {
    listener.local_addr().map_err(|source| StackError::Bind {
        address: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        source,
    })
}

/// What a piece's router goes through: the emulator's recording layer for `actor` at `base_url`
/// when there is an inspector, else nothing.
fn recording(
    inspector: Option<&Inspector>,
    actor: Actor,
    base_url: &Url,
) -> impl FnOnce(Router) -> Router + Send + 'static {
    let layer =
        inspector.map(|inspector| RecordLayer::new(inspector.clone(), actor, base_url.as_str()));
    move |router: Router| match layer {
        Some(layer) => router.layer(layer),
        None => router,
    }
}

/// A fresh RSA-2048 signing key (PKCS#8 PEM) for [`StackConfig::signing_key_pem`], so that many
/// stacks can share one instead of each generating its own (~0.1 s each).
pub fn generate_signing_key() -> Result<scalekit_wire::Secret, StackError> {
    scalekit_emulator::Signer::generate()
        .map(|signer| signer.private_key_pem().clone())
        .map_err(StackError::SigningKey)
}

async fn bind(address: SocketAddr) -> Result<TcpListener, StackError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| StackError::Bind { address, source })
}

fn base_url(listener: &TcpListener) -> Result<Url, StackError> {
    let address = listener.local_addr().map_err(|source| StackError::Bind {
        address: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        source,
    })?;
    Url::parse(&format!("http://{address}")).map_err(|error| {
        StackError::Fixtures(format!("bound address {address} is not a URL: {error}"))
    })
}

/// `https://{bound address}`: the in-process emulator's URL under TLS.
fn https_base_url(listener: &TcpListener) -> Result<Url, StackError> {
    let mut url = base_url(listener)?;
    url.set_scheme("https")
        .map_err(|()| StackError::Fixtures(format!("{url} cannot take the https scheme")))?;
    Ok(url)
}

/// `base` + `/path`, keeping no trailing slash (issuers and Server URLs are compared byte for byte).
fn join(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    url.set_path(path);
    url
}

#[cfg(test)]
mod scope_intersection_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_piece_that_refuses_its_configuration_keeps_the_cause_as_its_source() {
        let mut fixtures = Fixtures::embedded().expect("the repository's fixtures");
        fixtures.environment.resources[0].connection = "conn_missing".to_owned();
        let error = Stack::spawn(StackConfig::ephemeral(fixtures, None))
            .await
            .expect_err("the emulator refuses a resource of an unknown connection");
        assert!(matches!(error, StackError::Emulator(_)), "{error:?}");
        assert_eq!(error.to_string(), "the emulator did not start");
        let cause = std::error::Error::source(&error)
            .expect("the emulator's error")
            .to_string();
        assert!(cause.starts_with("invalid configuration: "), "{cause}");
    }

    #[tokio::test]
    async fn an_external_mcp_server_needs_a_second_resource() {
        let fixtures = Fixtures::embedded().expect("the repository's fixtures");
        let mut config = StackConfig::ephemeral(fixtures, None);
        config.mcp = McpPlacement::External(Url::parse("http://127.0.0.1:9/mcp").expect("a URL"));
        let error = Stack::spawn(config).await.expect_err("one resource only");
        assert_eq!(
            error.to_string(),
            "fixtures: an external MCP server needs a second resource in the environment, for the reference MCP server"
        );
    }
}
