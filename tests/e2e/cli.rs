//! `testbed conformance` as CI runs it: exit codes, the baseline and malformed scenario files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;

use tokio::process::Command;

use crate::url_target::free_port;

fn repository() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// A scratch folder with `scenarios/` holding the given files, and `reports/`.
fn scratch(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let folder = std::env::temp_dir().join(format!("testbed-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir_all(folder.join("scenarios")).unwrap();
    for (file, text) in files {
        std::fs::write(folder.join("scenarios").join(file), text).unwrap();
    }
    folder
}

async fn conformance(folder: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_testbed"))
        .arg("conformance")
        .arg("--scenarios")
        .arg(folder.join("scenarios"))
        .arg("--report-dir")
        .arg(folder.join("reports"))
        .args(extra)
        .output()
        .await
        .expect("testbed runs")
}

fn happy_path() -> String {
    std::fs::read_to_string(repository().join("scenarios/happy-path.toml")).unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn a_passing_run_exits_0_and_writes_every_report() {
    let folder = scratch("pass", &[("happy-path.toml", &happy_path())]);

    let output = conformance(&folder, &[]).await;

    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(
        stdout(&output).contains("\n1 passed, 0 failed, 0 skipped\n"),
        "{}",
        stdout(&output)
    );
    for report in ["report.json", "checks.json", "junit.xml", "report.html"] {
        assert!(
            folder.join("reports").join(report).is_file(),
            "{report} is written"
        );
    }
    std::fs::remove_dir_all(&folder).unwrap();
}

#[tokio::test]
async fn a_failing_scenario_exits_1() {
    let wrong = happy_path().replace("identity = \"ada\"", "identity = \"grace\"");
    let folder = scratch("fail", &[("happy-path.toml", &wrong)]);

    let output = conformance(&folder, &[]).await;

    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(
        stdout(&output).contains("  happy-path/identity: "),
        "{}",
        stdout(&output)
    );
    std::fs::remove_dir_all(&folder).unwrap();
}

#[tokio::test]
async fn a_baselined_failure_exits_0_and_a_stale_baseline_exits_1() {
    let wrong = happy_path().replace("identity = \"ada\"", "identity = \"grace\"");
    let baseline = "[[expected_failure]]\nid = \"happy-path\"\nreason = \"known\"\n";
    let failing = scratch("xfail", &[("happy-path.toml", &wrong)]);
    std::fs::write(failing.join("baseline.toml"), baseline).unwrap();
    let passing = scratch("stale", &[("happy-path.toml", &happy_path())]);
    std::fs::write(passing.join("baseline.toml"), baseline).unwrap();

    let expected = conformance(
        &failing,
        &[
            "--baseline",
            failing.join("baseline.toml").to_str().unwrap(),
        ],
    )
    .await;
    let stale = conformance(
        &passing,
        &[
            "--baseline",
            passing.join("baseline.toml").to_str().unwrap(),
        ],
    )
    .await;

    assert_eq!(expected.status.code(), Some(0), "{}", stdout(&expected));
    assert!(
        stdout(&expected).contains("XFAIL  happy-path"),
        "{}",
        stdout(&expected)
    );
    assert_eq!(stale.status.code(), Some(1), "{}", stdout(&stale));
    assert!(
        stdout(&stale).contains("  happy-path: passes now\n"),
        "{}",
        stdout(&stale)
    );
    std::fs::remove_dir_all(&failing).unwrap();
    std::fs::remove_dir_all(&passing).unwrap();
}

#[tokio::test]
async fn a_malformed_scenario_exits_2_naming_file_and_line() {
    let malformed = happy_path().replace("[expect]\n", "[expect]\nsurprise = true\n");
    let folder = scratch("malformed", &[("broken.toml", &malformed)]);

    let output = conformance(&folder, &[]).await;

    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = malformed
        .lines()
        .position(|line| line == "surprise = true")
        .unwrap()
        + 1;
    assert!(
        stderr.contains(&format!(
            "broken.toml: line {line}, column 1: unknown field `surprise`"
        )),
        "{stderr}"
    );
    std::fs::remove_dir_all(&folder).unwrap();
}

#[tokio::test]
async fn a_malformed_app_profile_exits_2_naming_file_and_line() {
    let folder = scratch("app-profile", &[]);
    let profile = folder.join("profile.toml");
    std::fs::write(
        &profile,
        "[login]\nusername = \"ada\"\npassword = \"ada-password\"\nsubmit = \"#go\"\n",
    )
    .unwrap();

    let output = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(["conformance", "--app-login-url", "http://127.0.0.1:9/login"])
        .arg("--app-profile")
        .arg(&profile)
        .output()
        .await
        .expect("testbed runs");

    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "error: app profile {}: line 4, column 1: unknown field `submit`",
            profile.display()
        )),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_app_login_url_without_a_profile_is_refused_by_the_arguments() {
    let output = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(["conformance", "--app-login-url", "http://127.0.0.1:9/login"])
        .output()
        .await
        .expect("testbed runs");

    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the following required arguments were not provided")
            && stderr.contains("--app-profile <APP_PROFILE>"),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_app_check_with_nothing_at_the_login_url_exits_2_before_any_browser() {
    let folder = scratch("app-unreachable", &[]);
    let profile = folder.join("profile.toml");
    let environment_port = free_port();
    std::fs::write(
        &profile,
        format!(
            "[login]\nusername = \"ada\"\npassword = \"ada-password\"\n\n[environment]\nlisten = \"127.0.0.1:{environment_port}\"\n"
        ),
    )
    .unwrap();
    let login_url = format!("http://127.0.0.1:{}/login", free_port());

    let output = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(["conformance", "--app-login-url", &login_url])
        .arg("--app-profile")
        .arg(&profile)
        .arg("--report-dir")
        .arg(folder.join("reports"))
        .output()
        .await
        .expect("testbed runs");

    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    assert!(
        stdout(&output).contains(&format!(
            "SCALEKIT_ENVIRONMENT_URL=http://127.0.0.1:{environment_port}\n"
        )),
        "{}",
        stdout(&output)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("error: nothing answers at {login_url} ("))
            && stderr.contains("Connection refused")
            && stderr.contains("start your app first, with the settings above"),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_app_check_under_tls_prints_the_https_url_and_the_trust_variables_first() {
    let folder = scratch("app-tls", &[]);
    let profile = folder.join("profile.toml");
    let environment_port = free_port();
    std::fs::write(
        &profile,
        format!(
            "[login]\nusername = \"ada\"\npassword = \"ada-password\"\n\n[environment]\nlisten = \"127.0.0.1:{environment_port}\"\n"
        ),
    )
    .unwrap();
    let login_url = format!("http://127.0.0.1:{}/login", free_port());
    let tls_dir = folder.join("tls");

    let output = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(["conformance", "--app-login-url", &login_url, "--tls"])
        .arg("--tls-dir")
        .arg(&tls_dir)
        .arg("--app-profile")
        .arg(&profile)
        .arg("--report-dir")
        .arg(folder.join("reports"))
        .output()
        .await
        .expect("testbed runs");

    // Nothing answers at the login URL: exit 2, after the settings.
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    let printed = stdout(&output);
    let ca = tls_dir.join("ca.pem");
    let bundle = tls_dir.join("trust-bundle.pem");
    assert!(
        ca.is_file() && bundle.is_file(),
        "the CA is made in --tls-dir"
    );
    let mut expected = vec![format!(
        "SCALEKIT_ENVIRONMENT_URL=https://127.0.0.1:{environment_port}\n"
    )];
    for (name, path) in [
        ("TESTBED_CA_CERT", &ca),
        ("NODE_EXTRA_CA_CERTS", &ca),
        ("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", &bundle),
        ("REQUESTS_CA_BUNDLE", &bundle),
        ("SSL_CERT_FILE", &bundle),
    ] {
        expected.push(format!("\n{name}={}\n", path.display()));
    }
    expected.push(format!(
        "TLS: the emulator serves HTTPS and gRPC over TLS with a certificate from the development CA\n  {}\n",
        ca.display()
    ));
    for line in expected {
        assert!(printed.contains(&line), "missing {line:?} in\n{printed}");
    }
}

#[tokio::test]
async fn tls_is_refused_with_the_mcp_server_check_and_without_an_app_login_url() {
    let with_server = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args([
            "conformance",
            "--mcp-server-url",
            "http://127.0.0.1:9/mcp",
            "--tls",
        ])
        .output()
        .await
        .expect("testbed runs");
    assert_eq!(with_server.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&with_server.stderr);
    assert!(
        stderr.contains(
            "error: the argument '--mcp-server-url <MCP_SERVER_URL>' cannot be used with '--tls'"
        ),
        "{stderr}"
    );

    let alone = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(["conformance", "--tls"])
        .output()
        .await
        .expect("testbed runs");
    assert_eq!(alone.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&alone.stderr);
    assert!(
        stderr.contains("the following required arguments were not provided")
            && stderr.contains("--app-login-url <APP_LOGIN_URL>"),
        "{stderr}"
    );
}

/// A profile for the MCP server check whose emulator listens on a free port.
fn server_profile(folder: &Path, environment_port: u16) -> PathBuf {
    let profile = folder.join("server-profile.toml");
    std::fs::write(
        &profile,
        format!(
            "[environment]\nlisten = \"127.0.0.1:{environment_port}\"\n\n[scope]\ntool = \"whoami\"\nscope = \"mcp:read\"\n\n[keys]\nrefetch_wait_secs = 3\n"
        ),
    )
    .unwrap();
    profile
}

async fn server_check(folder: &Path, server_url: &str, profile: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(["conformance", "--mcp-server-url", server_url])
        .arg("--mcp-server-profile")
        .arg(profile)
        .arg("--report-dir")
        .arg(folder.join("reports"))
        .output()
        .await
        .expect("testbed runs")
}

#[tokio::test]
async fn a_server_check_with_nothing_at_the_url_exits_2_after_printing_the_settings() {
    let folder = scratch("server-unreachable", &[]);
    let environment_port = free_port();
    let profile = server_profile(&folder, environment_port);
    let server_url = format!("http://127.0.0.1:{}/mcp", free_port());

    let output = server_check(&folder, &server_url, &profile).await;

    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    let printed = stdout(&output);
    for line in [
        format!("SCALEKIT_ENVIRONMENT_URL=http://127.0.0.1:{environment_port}\n"),
        "SCALEKIT_RESOURCE_ID=res_81920374650192839\n".to_owned(),
        format!("MCP_SERVER_URL={server_url}\n"),
        format!("JWKS_URL=http://127.0.0.1:{environment_port}/keys\n"),
        format!(
            "ACCEPTED_ISSUERS=http://127.0.0.1:{environment_port} http://127.0.0.1:{environment_port}/resources/res_81920374650192839\n"
        ),
        "EXPECTED_AUDIENCE=res_81920374650192839\n".to_owned(),
    ] {
        assert!(printed.contains(&line), "{line:?} missing from:\n{printed}");
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("error: nothing answers at {server_url} ("))
            && stderr.contains("start your server first, with the settings above"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_server_that_skips_the_audience_check_exits_1_naming_the_mistake_and_its_fix() {
    let folder = scratch("server-mistake", &[]);
    let environment_port = free_port();
    let profile = server_profile(&folder, environment_port);
    let server_url = crate::server_check::reference_server(
        SocketAddr::from(([127, 0, 0, 1], environment_port)),
        mcp_server::Mistake::SkipAudience,
    )
    .await
    .to_string();

    let output = server_check(&folder, &server_url, &profile).await;

    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let printed = stdout(&output);
    assert!(
        printed.contains("[4/7] FAIL server-check/refused")
            && printed.contains("\nMistakes found (each with its evidence in the reports):\n  audience-not-checked: a token issued for another MCP server was accepted (the confused deputy)\n    fix: require aud to contain your res_… id"),
        "{printed}"
    );
    assert!(
        printed.contains("server-check/refused/management-token: ")
            && printed.contains("explained by audience-not-checked"),
        "{printed}"
    );
    for report in ["report.json", "checks.json", "junit.xml", "report.html"] {
        assert!(folder.join("reports").join(report).is_file(), "{report}");
    }
}

#[tokio::test]
async fn a_malformed_server_profile_exits_2_naming_file_and_line() {
    let folder = scratch("server-profile", &[]);
    let profile = folder.join("server-profile.toml");
    std::fs::write(
        &profile,
        "[scope]\ntool = \"whoami\"\nscopes = \"mcp:read\"\n",
    )
    .unwrap();

    let output = server_check(&folder, "http://127.0.0.1:9/mcp", &profile).await;

    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "error: MCP server profile {}: line 3, column 1: unknown field `scopes`",
            profile.display()
        )),
        "{stderr}"
    );
}
