//! `testbed`: start the whole stack, run the conformance suite, or run the emulator alone.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use scalekit_wire::Secret;
use testbed_stack::{
    AllowedHost, ConsentMode, DevCa, Fixtures, Ports, Stack, StackConfig, settings,
};

/// Exit code when a scenario failed.
const EXIT_FAILED: u8 = 1;
/// Exit code when the run could not start (bad arguments, bad scenario or fixture files).
const EXIT_UNUSABLE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "testbed",
    version,
    about = "A local test bed for bring-your-own-auth MCP servers on Scalekit"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the emulator, Your App and the MCP server on the fixtures' ports, and print where they are.
    Up {
        /// A folder with environment.toml and users.toml (default: the fixtures built in).
        #[arg(long)]
        fixtures: Option<PathBuf>,
        /// Sign this persona in without showing the login form (headless MCP clients).
        #[arg(long)]
        auto_login: Option<String>,
        /// Override every resource's consent mode.
        #[arg(long, value_enum)]
        consent: Option<ConsentArg>,
        /// Where the emulator keeps its signing key, clients, users, consents and refresh tokens
        /// across restarts.
        #[arg(long, default_value = ".testbed")]
        state_dir: PathBuf,
        /// Keep everything in memory instead.
        #[arg(long, conflicts_with = "state_dir")]
        in_memory: bool,
        /// Serve the emulator over HTTPS, and gRPC over TLS on the same port, with a certificate
        /// from a local development CA (what Scalekit's Python SDK needs: its gRPC always uses
        /// TLS). Your App and the MCP server trust the CA; the banner says how yours can.
        #[arg(long)]
        tls: bool,
        /// Where the development CA is made on first run and kept (`ca.pem`, `ca-key.pem`).
        #[arg(long, default_value = ".testbed/tls", requires = "tls")]
        tls_dir: PathBuf,
        /// Write what a login service or MCP server needs (SCALEKIT_ENVIRONMENT_URL,
        /// SCALEKIT_CLIENT_ID, SCALEKIT_CLIENT_SECRET, the connection and resource ids, the MCP
        /// server URL, and with --tls the CA variables) to this dotenv file once the stack is up.
        #[arg(long, value_name = "PATH")]
        env_file: Option<PathBuf>,
        #[command(flatten)]
        guard: GuardArgs,
    },
    /// Run the conformance scenarios (against the embedded stack unless --target says otherwise).
    Conformance(Box<ConformanceRun>),
    /// Replay recorded scenarios (`testbed conformance --record DIR`) against the emulator and
    /// name every answer that differs, with the docs/fidelity.md rows it touches.
    Parity(Box<ParityRun>),
    /// Run the emulator alone.
    Emulator {
        /// The environment file (default: the fixtures' environment.toml, built in).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen here instead of the file's `listen` (port 0 picks a free port).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Keep state (signing keys, clients, users, consents, refresh tokens) across restarts
        /// in this folder (default: memory only, but the signing key: see --signing-key).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        #[command(flatten)]
        key: SigningKeyArgs,
        /// Serve no control API under /_emulator/ (clock, reset, request log, faults, key
        /// rotation, minted tokens, the flow inspector).
        #[arg(long)]
        no_control: bool,
        #[command(flatten)]
        guard: GuardArgs,
    },
}

/// Where `testbed emulator` keeps its signing key when there is no --state-dir.
#[derive(Debug, clap::Args)]
struct SigningKeyArgs {
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
    /// Make a new signing key for this run only, kept nowhere (MCP servers that cached /keys
    /// then refuse the new tokens until they restart).
    #[arg(long, conflicts_with_all = ["signing_key", "state_dir"])]
    fresh_signing_key: bool,
}

impl SigningKeyArgs {
    /// The key file, unless a fresh key was asked for.
    fn file(self) -> Option<PathBuf> {
        (!self.fresh_signing_key).then_some(self.signing_key)
    }
}

/// Who may reach the pieces: the listener guard's extra hosts and the control token.
#[derive(Debug, clap::Args)]
struct GuardArgs {
    /// A host name (or `host:port`) every piece answers for besides `localhost`, `127.0.0.1`,
    /// `[::1]` and its own URL's host, e.g. a container or proxy name (repeatable). Requests for
    /// any other host get 421 before routing (DNS rebinding).
    #[arg(long = "allowed-host", value_name = "HOST")]
    allowed_hosts: Vec<AllowedHost>,
    /// Requires `Authorization: Bearer <TOKEN>` on every request to the emulator's control API and
    /// flow inspector (a browser opens `/_emulator/ui?token=<TOKEN>` once).
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

impl GuardArgs {
    /// Adds the hosts to the emulator's configuration and sets its token.
    fn apply(&self, environment: &mut scalekit_emulator::Config) {
        for host in &self.allowed_hosts {
            if !environment.allowed_hosts.contains(host) {
                environment.allowed_hosts.push(host.clone());
            }
        }
        if let Some(token) = &self.control_token {
            environment.control_token = Some(token.clone());
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ConsentArg {
    Auto,
    Prompt,
}

impl From<ConsentArg> for ConsentMode {
    fn from(consent: ConsentArg) -> Self {
        match consent {
            ConsentArg::Auto => ConsentMode::Auto,
            ConsentArg::Prompt => ConsentMode::Prompt,
        }
    }
}

fn main() -> ExitCode {
    testbed_web::logging::init("warn,testbed=info");
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_UNUSABLE);
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_UNUSABLE)
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Up {
            fixtures,
            auto_login,
            consent,
            state_dir,
            in_memory,
            tls,
            tls_dir,
            env_file,
            guard,
        } => {
            let options = UpOptions {
                fixtures,
                auto_login,
                consent,
                state_dir: (!in_memory).then_some(state_dir),
                tls_dir: tls.then_some(tls_dir),
                env_file,
            };
            up(options, guard).await
        }
        Command::Conformance(run) => conformance(*run).await,
        Command::Parity(run) => parity(*run).await,
        Command::Emulator {
            config,
            listen,
            state_dir,
            key,
            no_control,
            guard,
        } => {
            let options = EmulatorOptions {
                config,
                listen,
                state_dir,
                signing_key_file: key.file(),
                no_control,
            };
            emulator(options, guard).await
        }
    }
}

fn load_fixtures(directory: Option<PathBuf>) -> anyhow::Result<Fixtures> {
    Ok(match directory {
        Some(directory) => Fixtures::from_dir(&directory)?,
        None => Fixtures::embedded()?,
    })
}

/// What `testbed up` was asked for.
struct UpOptions {
    fixtures: Option<PathBuf>,
    auto_login: Option<String>,
    consent: Option<ConsentArg>,
    state_dir: Option<PathBuf>,
    /// `--tls`: where the development CA is kept.
    tls_dir: Option<PathBuf>,
    env_file: Option<PathBuf>,
}

async fn up(options: UpOptions, guard: GuardArgs) -> anyhow::Result<ExitCode> {
    let (fixtures_source, users_source) = match &options.fixtures {
        Some(directory) => (
            directory.join("environment.toml").display().to_string(),
            directory.join("users.toml").display().to_string(),
        ),
        None => (
            "the built-in fixtures (fixtures/environment.toml of the repository)".to_owned(),
            "the built-in fixtures/users.toml".to_owned(),
        ),
    };
    let mut fixtures = load_fixtures(options.fixtures)?;
    guard.apply(&mut fixtures.environment);
    let auto_login = options.auto_login;
    if let Some(name) = &auto_login
        && fixtures.persona(name).is_none()
    {
        anyhow::bail!("--auto-login {name}: no such persona in users.toml");
    }
    if options.tls_dir.is_some() {
        anyhow::ensure!(
            fixtures
                .environment
                .public_url
                .as_ref()
                .is_none_or(|url| url.scheme() == "https"),
            "--tls: the environment's public_url must be https://…"
        );
    }
    let trust = match &options.tls_dir {
        Some(directory) => Some(DevCa::load_or_create(directory)?),
        None => None,
    };
    let mut config = StackConfig::ephemeral(fixtures, auto_login.as_deref());
    config.ports = Ports::FromFixtures;
    config.consent = options.consent.map(ConsentMode::from);
    config.state_dir = options.state_dir.clone();
    config.allowed_hosts = guard.allowed_hosts;
    config.tls = trust.as_ref().map(DevCa::setup);
    let stack = Stack::spawn(config).await.context("starting the stack")?;
    let secret_source = match &options.env_file {
        Some(path) => format!("{fixtures_source}; also in {}", path.display()),
        None => fixtures_source,
    };
    let sources = Sources {
        secret: &secret_source,
        users: &users_source,
    };
    println!(
        "{}",
        describe_stack(&stack, auto_login.as_deref(), &sources)
    );
    if let Some(trust) = &trust {
        println!(
            "\n{}{}",
            trust.describe(),
            match &options.env_file {
                Some(path) => format!("\n(--env-file {} has these too.)", path.display()),
                None => String::new(),
            }
        );
    }
    match &options.state_dir {
        Some(directory) => println!(
            "\nState (signing key, clients, users, consents, refresh tokens): {}",
            directory.display()
        ),
        None => println!("\nState is kept in memory only (--in-memory)."),
    }
    let env_file = match &options.env_file {
        Some(path) => Some(EnvFile::write(path, &stack, trust.as_ref())?),
        None => None,
    };
    println!("\nPress Ctrl-C to stop.");
    let outcome = tokio::select! {
        result = stack.wait() => result.context("the stack stopped").map(|()| ExitCode::SUCCESS),
        () = stop_signal() => Ok(ExitCode::SUCCESS),
    };
    drop(env_file);
    outcome
}

/// Ctrl-C, or on Unix a SIGTERM (`kill`, a container or service manager stopping it).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// `--env-file`: written once the stack listens, removed when `testbed up` stops (it names
/// addresses that then answer nothing, and holds the API client's secret).
struct EnvFile(PathBuf);

impl EnvFile {
    fn write(path: &Path, stack: &Stack, trust: Option<&DevCa>) -> anyhow::Result<EnvFile> {
        let text = settings::render_env_file(&settings::settings(stack, trust));
        settings::write_atomically(path, &text, true)
            .with_context(|| format!("writing --env-file {}", path.display()))?;
        println!(
            "Settings for your login service or MCP server: {}",
            path.display()
        );
        Ok(EnvFile(path.to_owned()))
    }
}

impl Drop for EnvFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Where the banner says the API client's secret and the personas' passwords are.
struct Sources<'a> {
    secret: &'a str,
    users: &'a str,
}

fn describe_stack(stack: &Stack, auto_login: Option<&str>, sources: &Sources<'_>) -> String {
    let environment = &stack.fixtures.environment;
    let mut out = String::new();
    out.push_str("The test bed is up.\n\n");
    out.push_str(&format!(
        "  MCP server (point your MCP client here): {}\n",
        stack.mcp_url
    ));
    out.push_str(&format!(
        "  Scalekit environment (emulator):        {}\n",
        trim(&stack.environment_url)
    ));
    if environment.control {
        // The token itself is never printed: the person who set it knows it.
        let token = match environment.control_token {
            Some(_) => "?token=<your control token>",
            None => "",
        };
        out.push_str(&format!(
            "  Flow inspector:                         {}/_emulator/ui{token}\n",
            trim(&stack.environment_url)
        ));
    }
    out.push_str(&format!(
        "  Your App (login endpoint):              {}login\n",
        stack.app_url
    ));
    for resource in &environment.resources {
        out.push_str(&format!(
            "  Resource {} ({}), authorization server {}/resources/{}\n",
            resource.id,
            resource.name,
            trim(&stack.environment_url),
            resource.id
        ));
    }
    for connection in &environment.connections {
        out.push_str(&format!("  Connection {}\n", connection.id));
    }
    out.push_str(&format!(
        "  API client {} (secret in {})\n",
        environment.api_client.client_id, sources.secret
    ));
    if environment.clients.is_empty() {
        out.push_str(
            "  Pre-registered MCP clients: none (MCP clients register themselves, or use a client id metadata document)\n",
        );
    } else {
        out.push_str("  Pre-registered MCP clients:\n");
        for client in &environment.clients {
            let kind = match client.client_secret {
                Some(_) => "confidential",
                None => "public",
            };
            out.push_str(&format!(
                "    {} ({kind}, for {}), redirect URIs: {}\n",
                client.client_id,
                client.resource,
                client.redirect_uris.join(" ")
            ));
        }
    }
    out.push_str(&format!(
        "\nPersonas (passwords are in the comment at the top of {}):\n",
        sources.users
    ));
    for persona in &stack.fixtures.personas {
        let marker = if Some(persona.name.as_str()) == auto_login {
            "  [signed in automatically]"
        } else {
            ""
        };
        out.push_str(&format!(
            "  {:<8} {:<28} {}{marker}\n",
            persona.name,
            persona.claims.email.as_deref().unwrap_or("-"),
            persona.description
        ));
    }
    out.trim_end().to_owned()
}

fn trim(url: &url::Url) -> &str {
    url.as_str().trim_end_matches('/')
}

/// The arguments of `testbed conformance`.
#[derive(Debug, clap::Args)]
struct ConformanceRun {
    /// A scenario folder, searched recursively for *.toml (default: the scenarios built in).
    #[arg(long)]
    scenarios: Option<PathBuf>,
    /// A folder with environment.toml and users.toml (default: the fixtures built in).
    #[arg(long)]
    fixtures: Option<PathBuf>,
    /// Only scenarios whose id contains this; commas separate alternatives
    /// (`--filter expired-code,dynamic-registration`).
    #[arg(long)]
    filter: Option<String>,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
    /// How many scenarios run at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Where report.json, checks.json, junit.xml and report.html go.
    #[arg(long, default_value = "target/conformance")]
    report_dir: PathBuf,
    /// An expected-failures baseline: listed failures do not fail the run, listed passes do.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// `embedded` (a fresh in-process stack per scenario), `url=<environment URL>` (an emulator
    /// already running; --fixtures must be its configuration), or `scalekit` (a real environment
    /// from SCALEKIT_ENVIRONMENT_URL, SCALEKIT_CLIENT_ID, SCALEKIT_CLIENT_SECRET,
    /// SCALEKIT_CONNECTION_ID and SCALEKIT_RESOURCE_ID).
    #[arg(long, default_value = "embedded", value_parser = parse_target)]
    target: TargetArg,
    /// Run every flow scenario through Chromium (chromedriver from $CHROMEDRIVER or
    /// /usr/bin/chromedriver): Your App shows its login form, which the browser fills in as the
    /// scenario's persona, and consent pages are clicked as the scenario says. Step scenarios
    /// are unchanged; at most 2 browser sessions are open at once.
    #[arg(long)]
    browser: bool,
    /// Write each scenario's exchanges, normalized, to `DIR/<scenario id>.json`: ids, codes,
    /// tokens, times and hosts become placeholders, JWTs their claim types plus iss, aud, alg, typ
    /// and the kid prefix, requests only their parameter names; no secret and not the
    /// environment's URL or host is written. `testbed parity DIR` replays and compares them.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["app_login_url", "mcp_server_url"])]
    record: Option<PathBuf>,
    /// With --target scalekit only (anywhere else it is an error): run the probe scenarios
    /// (`probe = true`: they check what the emulator decided or inferred) and report a failed one
    /// as a fidelity finding (INFO), which never fails the run. Without it probes are skipped on
    /// scalekit; on the emulator they are ordinary scenarios.
    #[arg(long)]
    probe: bool,
    /// Check your own login integration instead of running the scenarios: the emulator sends the
    /// browser to this login endpoint of your app (already running, configured with the settings
    /// printed first), and a real Chromium signs in with --app-profile's credentials.
    #[arg(long, requires = "app_profile")]
    app_login_url: Option<url::Url>,
    /// The profile for --app-login-url (TOML): `[login]` username, password or password_env,
    /// optional CSS selectors; `[environment]` listen and tls; `[expect]` email.
    #[arg(long, requires = "app_login_url")]
    app_profile: Option<PathBuf>,
    /// With --app-login-url: the emulator serves HTTPS, and gRPC over TLS on the same port, with a
    /// certificate from the development CA in --tls-dir (what an app on Scalekit's Python SDK
    /// needs: its gRPC always uses TLS); the settings printed first then include the CA and the
    /// variables that make Node, Python and gRPC trust it. Also `[environment] tls = true` in
    /// the profile. Not for --mcp-server-url.
    #[arg(long, requires = "app_login_url", conflicts_with = "mcp_server_url")]
    tls: bool,
    /// Where the development CA for --tls is made on first run and kept (`ca.pem`, `ca-key.pem`,
    /// `trust-bundle.pem`); start your app trusting this folder's CA.
    #[arg(
        long,
        value_name = "DIR",
        default_value = conformance::app_check::DEFAULT_TLS_DIR,
        requires = "app_login_url",
        conflicts_with = "mcp_server_url"
    )]
    tls_dir: PathBuf,
    /// Check your own MCP server instead of running the scenarios: the embedded emulator makes
    /// this URL the resource's Server URL and sends your server (already running, configured with
    /// the settings printed first) tokens only an emulator can mint, then names each mistake of
    /// its token validation.
    #[arg(long, conflicts_with = "app_login_url")]
    mcp_server_url: Option<url::Url>,
    /// The profile for --mcp-server-url (TOML, optional): `[environment]` listen; `[scope]` tool,
    /// scope and arguments for the insufficient-scope check; `[keys]` refetch_wait_secs.
    #[arg(long, requires = "mcp_server_url")]
    mcp_server_profile: Option<PathBuf>,
}

/// `--target`, as given.
#[derive(Debug, Clone)]
enum TargetArg {
    Embedded,
    Url(url::Url),
    Scalekit,
}

fn parse_target(text: &str) -> Result<TargetArg, String> {
    match text {
        "embedded" => Ok(TargetArg::Embedded),
        "scalekit" => Ok(TargetArg::Scalekit),
        other => match other.strip_prefix("url=") {
            Some(url) => url::Url::parse(url)
                .map(TargetArg::Url)
                .map_err(|error| format!("url={url}: {error}")),
            None => Err("expected embedded, url=<environment URL> or scalekit".to_owned()),
        },
    }
}

/// The real environment's ids and credentials, from the variables the Scalekit SDKs read, written
/// over the fixtures (whose login endpoint and Server URL must match the dashboard's).
fn scalekit_target(fixtures: &mut Fixtures) -> anyhow::Result<url::Url> {
    let variable = |name: &str| {
        std::env::var(name)
            .with_context(|| format!("--target scalekit needs the environment variable {name}"))
    };
    let environment_url = url::Url::parse(&variable("SCALEKIT_ENVIRONMENT_URL")?)
        .context("SCALEKIT_ENVIRONMENT_URL is not a URL")?;
    let environment = &mut fixtures.environment;
    environment.api_client.client_id = variable("SCALEKIT_CLIENT_ID")?;
    environment.api_client.client_secret = Secret::new(variable("SCALEKIT_CLIENT_SECRET")?);
    let connection_id = variable("SCALEKIT_CONNECTION_ID")?;
    let resource_id = variable("SCALEKIT_RESOURCE_ID")?;
    let connection = environment
        .connections
        .first_mut()
        .context("the fixtures have no connection")?;
    connection.id = connection_id.clone();
    let resource = environment
        .resources
        .first_mut()
        .context("the fixtures have no resource")?;
    resource.id = resource_id;
    resource.connection = connection_id;
    Ok(environment_url)
}

async fn conformance(run: ConformanceRun) -> anyhow::Result<ExitCode> {
    let mut fixtures = load_fixtures(run.fixtures)?;
    if let (Some(login_url), Some(profile)) = (run.app_login_url, run.app_profile) {
        let profile = conformance::app_check::load_profile(&profile)?;
        let tls_dir = (run.tls || profile.environment_tls).then_some(run.tls_dir);
        return app_check(fixtures, login_url, profile, tls_dir, &run.report_dir).await;
    }
    if let Some(server_url) = run.mcp_server_url {
        let profile = match &run.mcp_server_profile {
            Some(path) => conformance::server_check::load_profile(path)?,
            None => conformance::server_check::ServerProfile::default(),
        };
        return server_check(fixtures, server_url, profile, &run.report_dir).await;
    }
    anyhow::ensure!(
        !run.probe || matches!(run.target, TargetArg::Scalekit),
        "--probe needs --target scalekit: it makes a probe's failure against a real environment a \
         fidelity finding; on the emulator a probe is an ordinary scenario"
    );
    let target = match run.target {
        TargetArg::Embedded => conformance::RunTarget::Embedded,
        TargetArg::Url(url) => conformance::RunTarget::Url(url),
        TargetArg::Scalekit => conformance::RunTarget::Scalekit(scalekit_target(&mut fixtures)?),
    };
    let scenarios = match &run.scenarios {
        Some(directory) => conformance::load_dir(directory)?,
        None => conformance::load_embedded()?,
    };
    let baseline = match &run.baseline {
        Some(path) => Some(conformance::Baseline::load(path)?),
        None => None,
    };
    if run.list {
        for scenario in &scenarios {
            println!("{:<48} {}", scenario.id, scenario.title);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let options = conformance::RunOptions {
        fixtures,
        filter: run.filter,
        concurrency: run.concurrency,
        target,
        browser: run.browser,
        record: run.record.is_some(),
        probe: run.probe,
    };
    let mut report = conformance::run(scenarios, &options).await;
    if report.scenarios.is_empty() {
        eprintln!("error: no scenario matched");
        return Ok(ExitCode::from(EXIT_UNUSABLE));
    }
    if let Some(baseline) = &baseline {
        report.apply_baseline(baseline);
    }
    print!("\n{}", conformance::render_table(&report));
    let mut more = String::new();
    if let Some(directory) = &run.record {
        let written = conformance::record::write_all(directory, &report.recordings)
            .with_context(|| format!("writing the recordings to {}", directory.display()))?;
        more = format!(
            "; {} recordings in {} (read them before you share them)",
            written.len(),
            directory.display()
        );
    }
    write_reports(&report, &run.report_dir, &more)
}

/// The arguments of `testbed parity`.
#[derive(Debug, clap::Args)]
struct ParityRun {
    /// The recordings: the `<scenario id>.json` files `testbed conformance --record DIR` wrote.
    directory: PathBuf,
    /// Where the replay runs: `embedded` (a fresh in-process stack per scenario) or
    /// `url=<environment URL>` (an emulator already running; --fixtures must be its
    /// configuration). Parity compares recordings with the emulator, so not `scalekit`.
    #[arg(long, default_value = "embedded", value_parser = parse_target)]
    target: TargetArg,
    /// A folder with environment.toml and users.toml (default: the fixtures built in).
    #[arg(long)]
    fixtures: Option<PathBuf>,
    /// A scenario folder to find the recorded ids in (default: the scenarios built in).
    #[arg(long)]
    scenarios: Option<PathBuf>,
    /// Accepted differences (`[[expected_difference]]` entries with `scenario`, `step` or `hop`,
    /// `field` and `reason`); default: DIR/baseline.toml when it exists. An entry that matches
    /// no difference is reported as stale without failing the run.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Where parity.json (every difference, with the fidelity rows it touches) goes.
    #[arg(long, visible_alias = "report", default_value = "target/conformance")]
    report_dir: PathBuf,
    /// How many scenarios replay at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
}

/// `testbed parity DIR`: exit 0 when every answer is the same (or the baseline accepts the
/// difference), 1 when one differs, 2 when the folder or a recording cannot be used.
async fn parity(run: ParityRun) -> anyhow::Result<ExitCode> {
    let fixtures = load_fixtures(run.fixtures)?;
    let target = match run.target {
        TargetArg::Embedded => conformance::RunTarget::Embedded,
        TargetArg::Url(url) => conformance::RunTarget::Url(url),
        TargetArg::Scalekit => anyhow::bail!(
            "testbed parity replays against the emulator: --target embedded or url=<environment URL>"
        ),
    };
    let scenarios = match &run.scenarios {
        Some(directory) => conformance::load_dir(directory)?,
        None => conformance::load_embedded()?,
    };
    let recordings = conformance::record::load_dir(&run.directory)
        .with_context(|| format!("reading the recordings in {}", run.directory.display()))?;
    anyhow::ensure!(
        !recordings.is_empty(),
        "{} holds no recording (*.json)",
        run.directory.display()
    );
    let default_baseline = run.directory.join("baseline.toml");
    let baseline = match &run.baseline {
        Some(path) => conformance::parity::ParityBaseline::load(path)?,
        None if default_baseline.is_file() => {
            conformance::parity::ParityBaseline::load(&default_baseline)?
        }
        None => conformance::parity::ParityBaseline::default(),
    };
    let options = conformance::RunOptions {
        fixtures,
        filter: None,
        concurrency: run.concurrency,
        target,
        browser: false,
        record: true,
        probe: false,
    };
    eprintln!(
        "Replaying {} recordings from {}",
        recordings.len(),
        run.directory.display()
    );
    let report = conformance::parity::replay(recordings, scenarios, &options, &baseline).await?;
    print!("\n{}", conformance::parity::render(&report));
    let path = report
        .write_file(&run.report_dir)
        .with_context(|| format!("writing parity.json to {}", run.report_dir.display()))?;
    println!("Report: {}", path.display());
    Ok(if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}

/// `--app-login-url`: somebody's own app in front of the embedded emulator, through Chromium;
/// with `tls_dir` the emulator serves TLS from the development CA kept there.
async fn app_check(
    fixtures: Fixtures,
    login_url: url::Url,
    profile: conformance::app_check::AppProfile,
    tls_dir: Option<PathBuf>,
    report_dir: &Path,
) -> anyhow::Result<ExitCode> {
    let options = conformance::app_check::AppCheckOptions {
        fixtures,
        login_url: login_url.clone(),
        profile,
        screenshots: Some(report_dir.join("app-check")),
        chromium: None,
        tls_dir,
    };
    let check = conformance::app_check::AppCheck::start(options).await?;
    println!(
        "Checking the login integration at {login_url}.\nYour app must run with these settings (the emulator listens there now):\n{}\n",
        check.app_settings()
    );
    if let Some(tls) = check.tls_description() {
        println!("{tls}\n");
    }
    let total = conformance::app_check::SIGN_IN_COUNT;
    let mut done = 0;
    let report = check
        .run(|result| {
            done += 1;
            println!(
                "[{done}/{total}] {} {} ({:.1}s): {}",
                result.status.label(),
                result.id,
                result.duration_ms as f64 / 1000.0,
                result.title
            );
        })
        .await?;
    print!("\n{}", conformance::render_table(&report));
    if let Some(reading) = conformance::app_check::reading(&report) {
        println!("{reading}\n");
    }
    let screenshots = format!("; screenshots in {}/app-check/", report_dir.display());
    write_reports(&report, report_dir, &screenshots)
}

/// `--mcp-server-url`: somebody's own MCP server in front of the embedded emulator.
async fn server_check(
    fixtures: Fixtures,
    server_url: url::Url,
    profile: conformance::server_check::ServerProfile,
    report_dir: &Path,
) -> anyhow::Result<ExitCode> {
    use conformance::server_check::{GROUP_COUNT, Progress, ServerCheck, ServerCheckOptions};
    let check = ServerCheck::start(ServerCheckOptions {
        fixtures,
        server_url: server_url.clone(),
        profile,
    })
    .await?;
    println!(
        "Checking the MCP server at {server_url}.\nRun your server with these settings (the emulator listens there now):\n\n{}\n\nAccess tokens carry iss = SCALEKIT_ENVIRONMENT_URL (or AUTHORIZATION_SERVER, the resource issuer Scalekit\nis moving to), aud = [MCP_SERVER_URL, SCALEKIT_RESOURCE_ID], and are signed by a key in JWKS_URL;\nthe check rotates that key.\n",
        check.server_settings()
    );
    let mut done = 0;
    let outcome = check
        .run(|progress| match progress {
            Progress::Group(result) => {
                done += 1;
                println!(
                    "[{done}/{GROUP_COUNT}] {} {} ({:.1}s)",
                    result.status.label(),
                    result.id,
                    result.duration_ms as f64 / 1000.0
                );
            }
            Progress::Note(note) => println!("      {note}"),
        })
        .await?;
    let report = outcome.report;
    print!("\n{}", conformance::render_table(&report));
    if !outcome.mistakes.is_empty() {
        println!("Mistakes found (each with its evidence in the reports):");
        for mistake in &outcome.mistakes {
            let entry = mistake.entry();
            let warning = match entry.severity {
                conformance::server_check::Severity::Warning => " (warning)",
                conformance::server_check::Severity::Failure => "",
            };
            println!(
                "  {}{warning}: {}\n    fix: {}",
                entry.id, entry.summary, entry.fix
            );
        }
        println!();
    }
    write_reports(&report, report_dir, "")
}

/// Writes the four reports, says where they are (and `more`), and gives the run's exit code.
fn write_reports(
    report: &conformance::Report,
    report_dir: &Path,
    more: &str,
) -> anyhow::Result<ExitCode> {
    report
        .write_files(report_dir)
        .with_context(|| format!("writing the reports to {}", report_dir.display()))?;
    let directory = report_dir.display();
    println!(
        "Reports: {directory}/report.json, {directory}/checks.json, {directory}/junit.xml, {directory}/report.html{more}"
    );
    Ok(if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}

/// `testbed emulator`'s arguments but the guard's.
struct EmulatorOptions {
    config: Option<PathBuf>,
    listen: Option<std::net::SocketAddr>,
    state_dir: Option<PathBuf>,
    /// `None` under --fresh-signing-key.
    signing_key_file: Option<PathBuf>,
    no_control: bool,
}

/// Runs the emulator alone. The first line printed names the environment URL (scripts and tests
/// read it); the second says where the signing key is kept.
async fn emulator(options: EmulatorOptions, guard: GuardArgs) -> anyhow::Result<ExitCode> {
    let mut config = match &options.config {
        Some(path) => scalekit_emulator::Config::from_file(path)?,
        None => Fixtures::embedded()?.environment,
    };
    if let Some(listen) = options.listen {
        config.listen = listen;
    }
    if options.no_control {
        config.control = false;
    }
    guard.apply(&mut config);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let deps = scalekit_emulator::Deps {
        state_dir: options.state_dir,
        signing_key_file: options.signing_key_file,
        ..scalekit_emulator::Deps::default()
    };
    let app = scalekit_emulator::App::from_listener_with(listener, config, deps)?;
    let kid = app.state().keys.signing().kid().to_owned();
    // Both lines in one write, and a closed stdout is no reason to stop serving: a script that
    // reads the first line and closes the pipe (`| head -1`) would otherwise make the second
    // `println!` panic.
    let banner = format!(
        "Scalekit emulator listening on {}\n{}\n",
        app.base_url(),
        app.key_origin().banner(&kid)
    );
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(banner.as_bytes())
        .and_then(|()| stdout.flush());
    drop(stdout);
    app.serve().await?;
    Ok(ExitCode::SUCCESS)
}
