//! `testbed up` as a newcomer runs it, from a folder of their own: `--tls` serves the emulator
//! over HTTPS and every piece trusts the development CA, `--env-file` writes what a login service
//! or MCP server needs, the state lands where it runs; and `testbed conformance` runs the built-in
//! suite outside the repository.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use scalekit_emulator::types::{PkceVerifier, pkce_s256};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use url::Url;

use crate::env_files::{copy_fixtures_on_ephemeral_ports, parse_env_file};

const CLIENT_ID: &str = "testbed-e2e-client";
const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

/// An empty folder of the test's own, outside the repository.
fn folder(name: &str) -> PathBuf {
    let folder = std::env::temp_dir().join(format!("testbed-up-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir_all(&folder).expect("a scratch folder");
    folder
}

/// The repository's fixtures on ephemeral ports, with one pre-registered public client.
fn fixtures_in(folder: &Path) -> PathBuf {
    let fixtures = folder.join("fixtures");
    copy_fixtures_on_ephemeral_ports(&fixtures);
    let client = format!(
        "\n[[clients]]\nclient_id = \"{CLIENT_ID}\"\nredirect_uris = [\"{REDIRECT_URI}\"]\nresource = \"res_81920374650192839\"\n"
    );
    let mut environment = std::fs::OpenOptions::new()
        .append(true)
        .open(fixtures.join("environment.toml"))
        .expect("environment.toml opened");
    std::io::Write::write_all(&mut environment, client.as_bytes()).expect("the client appended");
    fixtures
}

/// Waits for `path` to appear (the stack writes it once it listens) and parses its `KEY=value`
/// lines.
async fn read_env_file(path: &Path, up: &mut Child) -> BTreeMap<String, String> {
    let started = Instant::now();
    while !path.exists() {
        if let Some(status) = up.try_wait().expect("the child's status") {
            panic!(
                "testbed up exited ({status}) before writing {}",
                path.display()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no {} after 60 s",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    parse_env_file(&std::fs::read_to_string(path).expect("the env file"))
}

/// A client that gives up instead of hanging a test.
fn client() -> reqwest::ClientBuilder {
    reqwest::Client::builder().timeout(Duration::from_secs(30))
}

#[tokio::test]
async fn up_with_tls_runs_the_flow_over_https_and_writes_the_env_file() {
    let folder = folder("tls");
    let fixtures = fixtures_in(&folder);
    // Output to files, not pipes nobody reads while the flow runs: a verbose RUST_LOG must not
    // fill a pipe and stall the child.
    let banner_path = folder.join("up.out");
    let log_path = folder.join("up.log");
    let mut up = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .current_dir(&folder)
        .args(["up", "--tls", "--env-file", ".env", "--auto-login", "ada"])
        .arg("--fixtures")
        .arg(&fixtures)
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stdout(std::fs::File::create(&banner_path).expect("a banner file"))
        .stderr(std::fs::File::create(&log_path).expect("a log file"))
        .kill_on_drop(true)
        .spawn()
        .expect("testbed up starts");
    let env = read_env_file(&folder.join(".env"), &mut up).await;

    let names: Vec<&str> = env.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "AUTHORIZATION_SERVER",
            "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
            "JWKS_URL",
            "MCP_SERVER_URL",
            "NODE_EXTRA_CA_CERTS",
            "REQUESTS_CA_BUNDLE",
            "SCALEKIT_CLIENT_ID",
            "SCALEKIT_CLIENT_SECRET",
            "SCALEKIT_CONNECTION_ID",
            "SCALEKIT_ENVIRONMENT_URL",
            "SCALEKIT_RESOURCE_ID",
            "SSL_CERT_FILE",
            "TESTBED_CA_CERT",
        ]
    );
    // Variables that add to a client's roots name the CA; those that replace them name a bundle
    // of the system's roots and the CA, so the package registries stay reachable.
    let ca_path = folder.join(".testbed/tls/ca.pem");
    let bundle_path = folder.join(".testbed/tls/trust-bundle.pem");
    for name in ["TESTBED_CA_CERT", "NODE_EXTRA_CA_CERTS"] {
        assert_eq!(Path::new(&env[name]), ca_path, "{name}");
    }
    for name in [
        "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
        "REQUESTS_CA_BUNDLE",
        "SSL_CERT_FILE",
    ] {
        assert_eq!(Path::new(&env[name]), bundle_path, "{name}");
    }
    let ca_pem = std::fs::read_to_string(&ca_path).expect("the CA");
    let bundle = std::fs::read_to_string(&bundle_path).expect("the bundle");
    assert!(bundle.ends_with(&ca_pem), "the bundle ends with the CA");
    if let Some(system) = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ]
    .iter()
    .find(|path| Path::new(path).is_file())
    .filter(|_| std::env::var_os("SSL_CERT_FILE").is_none())
    {
        let system = std::fs::read_to_string(system).expect("the system bundle");
        assert!(
            bundle.starts_with(&system),
            "the bundle starts with the system's roots"
        );
    }
    assert!(
        folder.join(".testbed/emulator.sqlite3").exists(),
        "the state is kept where testbed runs"
    );
    let environment_url = Url::parse(&env["SCALEKIT_ENVIRONMENT_URL"]).expect("a URL");
    assert_eq!(environment_url.scheme(), "https");
    assert_eq!(env["SCALEKIT_CLIENT_ID"], "skc_81920374650192837");
    assert_eq!(
        env["SCALEKIT_CLIENT_SECRET"],
        "test_sk_testbed_dev_secret_not_for_production"
    );
    assert_eq!(env["SCALEKIT_CONNECTION_ID"], "conn_81920374650192838");
    assert_eq!(env["SCALEKIT_RESOURCE_ID"], "res_81920374650192839");
    assert_eq!(
        env["AUTHORIZATION_SERVER"],
        format!(
            "{}/resources/res_81920374650192839",
            env["SCALEKIT_ENVIRONMENT_URL"]
        )
    );

    // Nothing but the CA: the emulator's certificate chains to it alone.
    let ca = std::fs::read(&ca_path).expect("the CA");
    let certificate = reqwest::Certificate::from_pem(&ca).expect("a PEM certificate");
    let browser = client()
        .tls_certs_only([certificate.clone()])
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            if attempt.url().port() == Some(9) {
                attempt.stop()
            } else {
                attempt.follow()
            }
        }))
        .build()
        .expect("a browser-like client");
    let mut authorize = environment_url.join("oauth/authorize").expect("a URL");
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", REDIRECT_URI)
        .append_pair("scope", "openid mcp:read")
        .append_pair("state", "e2e-tls")
        .append_pair(
            "code_challenge",
            pkce_s256(&PkceVerifier::parse(VERIFIER).expect("a verifier")).as_str(),
        )
        .append_pair("code_challenge_method", "S256")
        .append_pair("resource", &env["MCP_SERVER_URL"]);
    // The emulator sends the browser to Your App, which signs ada in, posts her over HTTPS with a
    // management token fetched over HTTPS, and sends the browser back to the callback.
    let answer = browser.get(authorize).send().await.expect("the sign-in");
    assert_eq!(answer.status(), StatusCode::FOUND);
    let location = Url::parse(
        answer
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .expect("a Location"),
    )
    .expect("an absolute Location");
    let code = location
        .query_pairs()
        .find(|(name, _)| name == "code")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_else(|| panic!("no code in {location}"));

    let api = client()
        .tls_certs_only([certificate])
        .build()
        .expect("an API client");
    let tokens: Value = api
        .post(environment_url.join("oauth/token").expect("a URL"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT_URI),
            ("client_id", CLIENT_ID),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .expect("the token request")
        .json()
        .await
        .expect("a JSON answer");
    let access_token = tokens["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access token: {tokens}"));
    // The MCP server fetches the keys over HTTPS to check the token.
    let initialize = api
        .post(&env["MCP_SERVER_URL"])
        .bearer_auth(access_token)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "e2e", "version": "1"}}
        }))
        .send()
        .await
        .expect("initialize");
    assert_eq!(initialize.status(), StatusCode::OK, "{initialize:?}");

    // Plain HTTP on the emulator's port gets no answer of the emulator's.
    let mut plain = environment_url.clone();
    plain.set_scheme("http").expect("http");
    let over_http = api
        .get(
            plain
                .join(".well-known/oauth-authorization-server")
                .expect("a URL"),
        )
        .send()
        .await;
    assert!(
        over_http.is_err() || !over_http.expect("an answer").status().is_success(),
        "the emulator answered plain HTTP under --tls"
    );

    // Stopped as a service manager stops it, it removes the env file (it names addresses that
    // then answer nothing, and holds the secret).
    let pid = up.id().expect("running").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill runs");
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), up.wait())
        .await
        .expect("stopped within 30 s")
        .expect("reaped");
    assert_eq!(status.code(), Some(0), "testbed up ends cleanly on SIGTERM");
    assert!(
        !folder.join(".env").exists(),
        "the env file outlived the stack"
    );
    let banner = std::fs::read_to_string(&banner_path).expect("the banner");
    for expected in [
        "API client skc_81920374650192837 (secret in ".to_owned(),
        "fixtures/environment.toml; also in .env)".to_owned(),
        format!(
            "    {CLIENT_ID} (public, for res_81920374650192839), redirect URIs: {REDIRECT_URI}"
        ),
        format!("  export NODE_EXTRA_CA_CERTS={}", ca_path.display()),
        format!("  export SSL_CERT_FILE={}", bundle_path.display()),
        "Settings for your login service or MCP server: .env".to_owned(),
    ] {
        assert!(
            banner.contains(&expected),
            "{expected:?} missing from:\n{banner}"
        );
    }
    let log = std::fs::read_to_string(&log_path).expect("the log");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escapes in a log that is not a terminal:\n{log}"
    );
    let _ = std::fs::remove_dir_all(&folder);
}

#[tokio::test]
async fn the_built_binary_runs_the_built_in_suite_from_any_folder() {
    let folder = folder("anywhere");
    let output = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .current_dir(&folder)
        .args(["conformance", "--filter", "happy-path"])
        .output()
        .await
        .expect("testbed runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("\n1 passed, 0 failed, 0 skipped\n"),
        "{stdout}"
    );
    let report: Value = serde_json::from_slice(
        &std::fs::read(folder.join("target/conformance/report.json")).expect("the report"),
    )
    .expect("JSON");
    assert_eq!(report["scenarios"][0]["id"], "happy-path", "{report}");
    assert_eq!(
        report["scenarios"][0]["path"], "scenarios/happy-path.toml",
        "{report}"
    );
    let _ = std::fs::remove_dir_all(&folder);
}

#[tokio::test]
async fn logs_that_go_to_a_file_are_plain_lines() {
    let folder = folder("logs");
    let log_path = folder.join("emulator.log");
    let log = std::fs::File::create(&log_path).expect("a log file");
    let mut emulator = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .current_dir(&folder)
        .args(["emulator", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("testbed emulator starts");
    let stdout = emulator.stdout.take().expect("its stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let banner = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("a banner within 60 s")
        .expect("stdout readable")
        .expect("a banner line");
    let base = banner
        .strip_prefix("Scalekit emulator listening on ")
        .unwrap_or_else(|| panic!("unexpected banner {banner:?}"))
        .trim_end_matches('/')
        .to_owned();
    // An answer the emulator logs: a refused management call.
    let refused = client()
        .build()
        .expect("a client")
        .post(format!(
            "{base}/api/v1/connections/conn_81920374650192838/auth-requests/lri_1/user"
        ))
        .json(&json!({"sub": "1", "email": "a@b.c"}))
        .send()
        .await
        .expect("an answer");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    emulator.start_kill().expect("stopped");
    emulator.wait().await.expect("reaped");

    let text = std::fs::read_to_string(&log_path).expect("the log");
    assert!(!text.is_empty(), "nothing logged");
    assert!(
        !text.contains('\u{1b}'),
        "ANSI escapes in the log file:\n{text}"
    );
    for line in text.lines() {
        let timestamp = line.split(' ').next().unwrap_or_default();
        assert!(
            timestamp.len() >= 20 && timestamp.starts_with("20") && timestamp.ends_with('Z'),
            "a line that does not start an event: {line:?}\n{text}"
        );
    }
    let _ = std::fs::remove_dir_all(&folder);
}
