//! The sample login services built on Scalekit's official SDKs, run through the app check's
//! command line as a user would run their own: `tests/interop/app-service-node/server.mjs`
//! (`@scalekit-sdk/node`, gRPC over h2c and over TLS) and
//! `tests/browser/app-services/python/server.py` (`scalekit-sdk-python`, gRPC over TLS). Each runs
//! correct, then told to make a classic mistake (`SAMPLE_MISTAKE`); the check must pass the
//! correct one and name exactly the mistakes of the others.
//!
//! The Node service needs `npm ci` in `tests/interop/app-service-node` and the Python one the
//! virtual environment `target/sdk-venv` (`.ci/run` and `cargo xtask ci` make both); without them
//! a test says why and passes, except under `CI=true`, where it fails.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::Value;
use testbed_stack::{DevCa, Fixtures};
use tokio::process::{Child, Command};

use crate::harness::{browser_installed, free_port, target_dir};

/// The interop suite's check that a Node package is installed, shared rather than copied.
#[path = "../interop/node.rs"]
mod node;

/// The password the services accept for ada@example.com (`DEMO_PASSWORD`), which the check types.
const PASSWORD: &str = "sample-service-password";

/// One of the two sample services.
#[derive(Debug, Clone, Copy)]
enum Sdk {
    Node,
    Python,
}

impl Sdk {
    /// `Some(reason)` when its runtime or SDK is not installed; a failure under `CI=true` or
    /// `TESTBED_REQUIRE_SETUP=1` (`cargo xtask ci`).
    fn missing_setup(self) -> Option<String> {
        let reason = match self {
            Sdk::Node => node::missing_setup(NODE_PACKAGE, "@scalekit-sdk/node")?,
            Sdk::Python => {
                let python = venv_python();
                let imports = std::process::Command::new(&python)
                    .args(["-c", "import scalekit"])
                    .output()
                    .is_ok_and(|output| output.status.success());
                if imports {
                    return None;
                }
                format!(
                    "`{} -c \"import scalekit\"` failed: run `python3 -m venv target/sdk-venv && target/sdk-venv/bin/pip install -r tests/interop/python-sdk/requirements.txt`",
                    python.display()
                )
            }
        };
        let required = std::env::var("CI").as_deref() == Ok("true")
            || std::env::var("TESTBED_REQUIRE_SETUP").as_deref() == Ok("1");
        assert!(
            !required,
            "required under CI=true or TESTBED_REQUIRE_SETUP=1: {reason}"
        );
        eprintln!("skipping the {self:?} sample login service: {reason}");
        Some(reason)
    }

    fn command(self) -> Command {
        match self {
            Sdk::Node => {
                let mut command = Command::new("node");
                command
                    .arg("server.mjs")
                    .current_dir(node::package_dir(NODE_PACKAGE));
                command
            }
            Sdk::Python => {
                let mut command = Command::new(venv_python());
                command.arg(workspace_root().join("tests/browser/app-services/python/server.py"));
                command
            }
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Node service's package, `tests/interop/app-service-node`.
const NODE_PACKAGE: &str = "app-service-node";

/// `.ci/run` makes it from `tests/interop/python-sdk/requirements.txt`.
fn venv_python() -> PathBuf {
    workspace_root().join("target/sdk-venv/bin/python")
}

/// One run of the check against one service.
struct Case {
    sdk: Sdk,
    tls: bool,
    mistake: Option<&'static str>,
    /// The failed checks of the first and the second sign-in, in order.
    first: &'static [&'static str],
    second: &'static [&'static str],
}

/// A sample service started for one case, killed on drop.
struct Service {
    _process: Child,
    log: PathBuf,
}

impl Service {
    /// Starts `sdk`'s service on `port`, configured as the app check will print, and waits until
    /// it accepts connections.
    async fn start(
        sdk: Sdk,
        port: u16,
        environment_url: &str,
        mistake: Option<&str>,
        trust: Option<&DevCa>,
        folder: &Path,
    ) -> anyhow::Result<Service> {
        let fixtures = Fixtures::embedded()?;
        let environment = &fixtures.environment;
        let connection = &environment
            .resources
            .first()
            .context("a resource")?
            .connection;
        let log = folder.join("service.log");
        let output = std::fs::File::create(&log)?;
        let mut command = sdk.command();
        command
            .env("SCALEKIT_ENVIRONMENT_URL", environment_url)
            .env(
                "SCALEKIT_CLIENT_ID",
                environment.api_client.client_id.as_str(),
            )
            .env(
                "SCALEKIT_CLIENT_SECRET",
                environment.api_client.client_secret.expose(),
            )
            .env("SCALEKIT_CONNECTION_ID", connection.as_str())
            .env("DEMO_PASSWORD", PASSWORD)
            .env("PORT", port.to_string())
            .env_remove("SAMPLE_MISTAKE")
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .kill_on_drop(true);
        if let Some(mistake) = mistake {
            command.env("SAMPLE_MISTAKE", mistake);
        }
        for variable in trust.map(DevCa::variables).unwrap_or_default() {
            command.env(variable.name, &variable.path);
        }
        let mut process = command
            .spawn()
            .with_context(|| format!("starting the {sdk:?} service"))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .is_err()
        {
            if let Some(status) = process.try_wait()? {
                bail!(
                    "the {sdk:?} service exited ({status}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            ensure!(
                Instant::now() < deadline,
                "the {sdk:?} service did not listen on {port} within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Service {
            _process: process,
            log,
        })
    }
}

/// The app check's process group (the `testbed` child leads it; its chromedriver and Chromiums
/// are in it), killed on drop: killing the child alone, on a timeout or a panic, would leave
/// them running.
struct ProcessGroup(Option<u32>);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Some(leader) = self.0 {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{leader}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The failed checks of each sign-in, by sign-in id.
type Failures = Vec<(String, Vec<String>)>;

/// The failed checks of each sign-in in `report.json`, by sign-in id.
fn failures(report: &Value) -> anyhow::Result<Failures> {
    let sign_ins = report["scenarios"]
        .as_array()
        .context("report.json has scenarios")?;
    sign_ins
        .iter()
        .map(|sign_in| {
            let id = sign_in["id"].as_str().context("a sign-in id")?;
            let checks = sign_in["checks"].as_array().context("a sign-in's checks")?;
            let failed = checks
                .iter()
                .filter(|check| check["status"] == "FAILURE")
                .filter_map(|check| check["name"].as_str().map(str::to_owned))
                .collect();
            Ok((id.to_owned(), failed))
        })
        .collect()
}

/// Runs one case: starts the service, then `testbed conformance --app-login-url`, and compares
/// what failed. `Err` with the check's output when anything differs.
async fn run(case: &Case) -> anyhow::Result<()> {
    let label = format!(
        "{:?}-{}-{}",
        case.sdk,
        if case.tls { "tls" } else { "h2c" },
        case.mistake.unwrap_or("correct")
    )
    .to_lowercase();
    let folder = target_dir().join("browser/app-services").join(&label);
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir_all(&folder)?;
    let trust = if case.tls {
        Some(DevCa::load_or_create(&folder.join("tls"))?)
    } else {
        None
    };
    let environment_listen = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
    let scheme = if case.tls { "https" } else { "http" };
    let environment_url = format!("{scheme}://{environment_listen}");
    let port = free_port()?;
    let service = Service::start(
        case.sdk,
        port,
        &environment_url,
        case.mistake,
        trust.as_ref(),
        &folder,
    )
    .await?;

    let profile = folder.join("profile.toml");
    std::fs::write(
        &profile,
        format!(
            "[login]\nusername = \"ada@example.com\"\npassword_env = \"SAMPLE_SERVICE_PASSWORD\"\n\n[environment]\nlisten = \"{environment_listen}\"\n\n[expect]\nemail = \"ada@example.com\"\n"
        ),
    )?;
    let mut check = Command::new(env!("CARGO_BIN_EXE_testbed"));
    check
        .arg("conformance")
        .arg("--app-login-url")
        .arg(format!("http://127.0.0.1:{port}/login"))
        .arg("--app-profile")
        .arg(&profile)
        .arg("--report-dir")
        .arg(folder.join("reports"))
        .env("SAMPLE_SERVICE_PASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if case.tls {
        check.arg("--tls").arg("--tls-dir").arg(folder.join("tls"));
    }
    let child = check.spawn().context("starting the app check")?;
    let _group = ProcessGroup(child.id());
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .context("the app check did not finish within 120 s")??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let context = || {
        format!(
            "{label}: exit {:?}\n{stdout}\n{}\nservice log ({}):\n{}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr),
            service.log.display(),
            std::fs::read_to_string(&service.log).unwrap_or_default()
        )
    };
    ensure!(
        stdout.contains(&format!("SCALEKIT_ENVIRONMENT_URL={environment_url}\n")),
        "the check printed another environment URL than the service runs with\n{}",
        context()
    );
    let report: Value = serde_json::from_slice(
        &std::fs::read(folder.join("reports/report.json")).with_context(context)?,
    )?;
    let names = |names: &[&str]| names.iter().map(|name| (*name).to_owned()).collect();
    let want: Failures = vec![
        ("app-check/first-sign-in".to_owned(), names(case.first)),
        ("app-check/second-sign-in".to_owned(), names(case.second)),
    ];
    let got = failures(&report)?;
    ensure!(got == want, "got {got:?}, want {want:?}\n{}", context());
    let want_exit = if case.first.is_empty() && case.second.is_empty() {
        0
    } else {
        1
    };
    ensure!(
        output.status.code() == Some(want_exit),
        "want exit code {want_exit}\n{}",
        context()
    );
    Ok(())
}

/// Runs the cases one after the other and reports every mismatch at once.
async fn run_all(cases: &[Case]) -> anyhow::Result<()> {
    let mut mismatches = Vec::new();
    for case in cases {
        if let Err(error) = run(case).await {
            mismatches.push(format!("{error:#}"));
        }
    }
    ensure!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
    Ok(())
}

/// A refused user-details call followed by the redirect: the emulator never got the user.
const PHONE_NOT_E164: &[&str] = &[
    "phone-not-e164",
    "redirect-after-refused-post",
    "flow-completes",
];
const STATE_DROPPED: &[&str] = &["state-dropped", "flow-completes"];

#[tokio::test]
async fn the_node_sdk_login_service_passes_over_h2c_and_tls_and_each_mistake_is_named()
-> anyhow::Result<()> {
    if !browser_installed() || Sdk::Node.missing_setup().is_some() {
        return Ok(());
    }
    run_all(&[
        Case {
            sdk: Sdk::Node,
            tls: false,
            mistake: None,
            first: &[],
            second: &[],
        },
        Case {
            sdk: Sdk::Node,
            tls: true,
            mistake: None,
            first: &[],
            second: &[],
        },
        Case {
            sdk: Sdk::Node,
            tls: false,
            mistake: Some("drop-state"),
            first: STATE_DROPPED,
            second: STATE_DROPPED,
        },
        Case {
            sdk: Sdk::Node,
            tls: true,
            mistake: Some("phone-not-e164"),
            first: PHONE_NOT_E164,
            second: PHONE_NOT_E164,
        },
    ])
    .await
}

#[tokio::test]
async fn the_python_sdk_login_service_passes_over_tls_and_each_mistake_is_named()
-> anyhow::Result<()> {
    if !browser_installed() || Sdk::Python.missing_setup().is_some() {
        return Ok(());
    }
    run_all(&[
        Case {
            sdk: Sdk::Python,
            tls: true,
            mistake: None,
            first: &[],
            second: &[],
        },
        Case {
            sdk: Sdk::Python,
            tls: true,
            mistake: Some("drop-state"),
            first: STATE_DROPPED,
            second: STATE_DROPPED,
        },
        Case {
            sdk: Sdk::Python,
            tls: true,
            mistake: Some("phone-not-e164"),
            first: PHONE_NOT_E164,
            second: PHONE_NOT_E164,
        },
    ])
    .await
}
