//! The README's "Use it from your stack" snippets, run as written against `testbed up --tls
//! --env-file`: Scalekit's official Python and Node SDKs post the user of a sign-in over gRPC with
//! TLS and check the access token the flow then issues, and an MCP client lists the tools. Each
//! snippet runs with the env file loaded the way the README says (`set -a && . ./.env && set +a`),
//! and the README shows each file byte for byte.
//!
//! The Python snippets run in `target/sdk-venv` (`.ci/run` makes it from
//! `tests/interop/python-sdk/requirements.txt`); the Node ones need `npm ci` in
//! `tests/interop/node-sdk`. Without them a test says why and passes outside CI; under `CI=true`
//! it fails instead.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use scalekit_emulator::types::{PkceVerifier, pkce_s256};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use url::Url;

use crate::env_files::{copy_fixtures_on_ephemeral_ports, parse_env_file};
use crate::node;

/// Every file the README shows under a `<!-- snippet: PATH -->` marker, relative to the
/// workspace root.
const SNIPPETS: &[&str] = &[
    PYTHON_LOGIN_SERVICE,
    PYTHON_CHECK_TOKEN,
    NODE_LOGIN_SERVICE,
    NODE_CHECK_TOKEN,
    MCP_CLIENT,
];
const PYTHON_LOGIN_SERVICE: &str = "tests/interop/python-sdk/login_service.py";
const PYTHON_CHECK_TOKEN: &str = "tests/interop/python-sdk/check_token.py";
const NODE_LOGIN_SERVICE: &str = "tests/interop/node-sdk/login-service.mjs";
const NODE_CHECK_TOKEN: &str = "tests/interop/node-sdk/check-token.mjs";
const MCP_CLIENT: &str = "tests/interop/snippets/mcp-client.sh";

/// `.ci/run` makes this virtual environment; `cargo xtask ci` treats it as the Python side's
/// prerequisite.
const SDK_VENV_PYTHON: &str = "target/sdk-venv/bin/python";

/// What `testbed up --env-file` writes, and the snippets read.
const ENV_FILE_KEYS: &[&str] = &[
    "SCALEKIT_ENVIRONMENT_URL",
    "SCALEKIT_CLIENT_ID",
    "SCALEKIT_CLIENT_SECRET",
    "SCALEKIT_CONNECTION_ID",
    "SCALEKIT_RESOURCE_ID",
    "MCP_SERVER_URL",
    "TESTBED_CA_CERT",
    "NODE_EXTRA_CA_CERTS",
    "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
    "REQUESTS_CA_BUNDLE",
    "SSL_CERT_FILE",
];

/// The user both login-service snippets post.
const POSTED_SUB: &str = "user-1042";
const POSTED_EMAIL: &str = "ada@example.com";

const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CLIENT_STATE: &str = "snippets-client-state";

/// How long one snippet may run.
const SNIPPET_DEADLINE: Duration = Duration::from_secs(600);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `Some(reason)` when `target/sdk-venv` has no Python. Under `CI=true` or
/// `TESTBED_REQUIRE_SETUP=1` (`cargo xtask ci`) that is a failure instead.
fn missing_python_sdk() -> Option<String> {
    let python = workspace_root().join(SDK_VENV_PYTHON);
    if python.exists() {
        return None;
    }
    let reason = format!(
        "{} is missing: run `python3 -m venv target/sdk-venv && target/sdk-venv/bin/pip install -r tests/interop/python-sdk/requirements.txt`",
        python.display()
    );
    let required = std::env::var("CI").as_deref() == Ok("true")
        || std::env::var("TESTBED_REQUIRE_SETUP").as_deref() == Ok("1");
    assert!(
        !required,
        "required under CI=true or TESTBED_REQUIRE_SETUP=1: {reason}"
    );
    Some(reason)
}

/// A folder under the system's temporary directory, removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(label: &str) -> ScratchDir {
        let unique = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!(
            "testbed-snippets-{label}-{}-{unique}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("the scratch folder is created");
        ScratchDir(dir)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `testbed up --tls --env-file` as a child process, on ephemeral ports, killed on drop.
struct TestbedUp {
    // Declared first so that it is killed before its folder goes.
    _process: Child,
    env_file: PathBuf,
    env: BTreeMap<String, String>,
    ca_cert_pem: Vec<u8>,
    _dir: ScratchDir,
}

impl TestbedUp {
    /// Starts it from a copy of the repository's fixtures whose three ports are 0, and waits for
    /// the env file, which it writes once the stack listens.
    async fn start(label: &str, extra_args: &[&str]) -> TestbedUp {
        let dir = ScratchDir::new(label);
        let fixtures = dir.0.join("fixtures");
        copy_fixtures_on_ephemeral_ports(&fixtures);
        let env_file = dir.0.join(".env");
        let log_path = dir.0.join("testbed-up.log");
        let log = std::fs::File::create(&log_path).expect("the log file is created");
        // In the scratch folder, so that anything it keeps on disk (the dev CA) lands there.
        let mut process = Command::new(env!("CARGO_BIN_EXE_testbed"))
            .args(["up", "--tls", "--env-file"])
            .arg(&env_file)
            .arg("--fixtures")
            .arg(&fixtures)
            .arg("--in-memory")
            .args(extra_args)
            .current_dir(&dir.0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log file is shared"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("testbed up starts");
        let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(60);
        let env = loop {
            if let Ok(text) = std::fs::read_to_string(&env_file) {
                let env = parse_env_file(&text);
                if ENV_FILE_KEYS.iter().all(|key| env.contains_key(*key)) {
                    break env;
                }
            }
            if let Ok(Some(status)) = process.try_wait() {
                panic!(
                    "testbed up exited with {status} before writing the env file:\n{}",
                    log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "testbed up wrote no complete env file in 60 s:\n{}",
                log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let ca_cert_pem =
            std::fs::read(&env["TESTBED_CA_CERT"]).expect("TESTBED_CA_CERT is a file");
        TestbedUp {
            _process: process,
            env_file,
            env,
            ca_cert_pem,
            _dir: dir,
        }
    }

    fn var(&self, key: &str) -> &str {
        &self.env[key]
    }

    /// Runs `program args…` in `dir` with the env file loaded as the README says; the variables
    /// it sets replace any the test runner has (this machine points the CA variables at the
    /// system's bundle).
    /// Runs `program ARGS` in `dir` with the env file loaded as the README says; at most
    /// [`SNIPPET_DEADLINE`] (the MCP client's `cargo run` may build the driver first).
    async fn run_with_env(&self, dir: &Path, program: &Path, args: &[&str]) -> Output {
        let run = Command::new("bash")
            .arg("-c")
            .arg(r#"set -a && . "$0" && set +a && exec "$@""#)
            .arg(&self.env_file)
            .arg(program)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        tokio::time::timeout(SNIPPET_DEADLINE, run)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} did not finish within {SNIPPET_DEADLINE:?}",
                    program.display()
                )
            })
            .expect("bash runs")
    }

    /// The MCP client and the browser in one: it trusts the dev CA and keeps the sign-in's
    /// cookie from the authorize redirect for the callback, as a browser does.
    fn browser(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(&self.ca_cert_pem).expect("the CA is PEM");
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_store(true)
            .tls_certs_merge([ca])
            .build()
            .expect("a client")
    }

    /// An MCP client registers and opens a sign-in; the browser is not sent on to Your App, so
    /// the login request stays pending for a login-service snippet.
    async fn open_sign_in(&self) -> SignIn {
        let browser = self.browser();
        let env_url = self.var("SCALEKIT_ENVIRONMENT_URL");
        let registration: Value = browser
            .post(format!(
                "{env_url}/api/v1/resources/{}/clients:register",
                self.var("SCALEKIT_RESOURCE_ID")
            ))
            .json(&json!({"client_name": "snippets interop", "redirect_uris": [REDIRECT_URI]}))
            .send()
            .await
            .expect("DCR answers")
            .json()
            .await
            .expect("DCR JSON");
        let client_id = registration["client_id"]
            .as_str()
            .expect("a client_id")
            .to_owned();
        let verifier = PkceVerifier::parse(VERIFIER).expect("a verifier");
        let challenge = pkce_s256(&verifier);
        let authorize = browser
            .get(format!("{env_url}/oauth/authorize"))
            .query(&[
                ("response_type", "code"),
                ("client_id", client_id.as_str()),
                ("redirect_uri", REDIRECT_URI),
                ("scope", "openid email mcp:read"),
                ("state", CLIENT_STATE),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
                ("resource", self.var("MCP_SERVER_URL")),
            ])
            .send()
            .await
            .expect("authorize answers");
        let login = redirect(&authorize);
        SignIn {
            login_request_id: query_param(&login, "login_request_id"),
            state: query_param(&login, "state"),
            browser,
            client_id,
        }
    }

    /// The browser follows the callback a login-service snippet returned (consent is automatic)
    /// and the MCP client exchanges the code; returns the access token.
    async fn finish_sign_in(&self, sign_in: &SignIn, callback: &str) -> String {
        let env_url = self.var("SCALEKIT_ENVIRONMENT_URL");
        let expected = format!(
            "{env_url}/sso/v1/connections/{}/partner:callback?",
            self.var("SCALEKIT_CONNECTION_ID")
        );
        assert!(callback.starts_with(&expected), "{callback}");
        let callback = Url::parse(callback).expect("the callback is a URL");
        assert_eq!(query_param(&callback, "state"), sign_in.state);
        let answer = sign_in
            .browser
            .get(callback)
            .send()
            .await
            .expect("partner:callback answers");
        let back = redirect(&answer);
        assert!(
            back.as_str().starts_with(&format!("{REDIRECT_URI}?")),
            "{back}"
        );
        assert_eq!(query_param(&back, "state"), CLIENT_STATE);
        let code = query_param(&back, "code");
        let tokens: Value = sign_in
            .browser
            .post(format!("{env_url}/oauth/token"))
            .form(&[
                ("grant_type", "authorization_code"),
                ("client_id", sign_in.client_id.as_str()),
                ("code", code.as_str()),
                ("code_verifier", VERIFIER),
                ("redirect_uri", REDIRECT_URI),
                ("resource", self.var("MCP_SERVER_URL")),
            ])
            .send()
            .await
            .expect("the token endpoint answers")
            .json()
            .await
            .expect("token JSON");
        tokens["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access token: {tokens}"))
            .to_owned()
    }
}

struct SignIn {
    browser: reqwest::Client,
    client_id: String,
    login_request_id: String,
    state: String,
}

/// The `Location` of a 302.
fn redirect(response: &reqwest::Response) -> Url {
    assert_eq!(response.status(), StatusCode::FOUND, "{response:?}");
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|value| value.to_str().ok())
        .expect("a Location");
    Url::parse(location).expect("an absolute Location")
}

fn query_param(url: &Url, name: &str) -> String {
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
        .unwrap_or_else(|| panic!("{name} missing from {url}"))
}

/// The last line of a successful run's standard output.
fn last_stdout_line(what: &str, output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("{what} printed nothing:\n{stderr}"))
        .to_owned()
}

/// The same token with `xuid` rewritten and the signature kept: what an attacker would send.
fn tampered(access_token: &str) -> String {
    let mut parts = access_token.split('.');
    let (Some(header), Some(payload), Some(signature)) = (parts.next(), parts.next(), parts.next())
    else {
        panic!("not a JWS: {access_token}");
    };
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url payload"))
            .expect("JSON claims");
    claims["xuid"] = json!("someone-else");
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.{signature}")
}

/// One SDK's pair of snippets.
struct SdkSnippets {
    /// The interpreter: `node`, or the virtual environment's Python.
    program: PathBuf,
    login_service: &'static str,
    check_token: &'static str,
    /// The last line the check writes on standard error for a tampered token.
    tampered_refusal: &'static str,
}

/// The login-service snippet posts the user of a fresh sign-in over gRPC with TLS and returns
/// the callback; the flow completes; the token-check snippet accepts the issued token and
/// refuses it tampered with.
async fn run_sdk_snippets(label: &str, sdk: &SdkSnippets) {
    let up = TestbedUp::start(label, &[]).await;
    let root = workspace_root();
    let sign_in = up.open_sign_in().await;

    let login_service = root.join(sdk.login_service);
    let posted = up
        .run_with_env(
            login_service.parent().expect("a folder"),
            &sdk.program,
            &[
                sdk.login_service.rsplit('/').next().expect("a file name"),
                &sign_in.login_request_id,
                &sign_in.state,
            ],
        )
        .await;
    let callback = last_stdout_line(sdk.login_service, &posted);
    let access_token = up.finish_sign_in(&sign_in, &callback).await;

    let check_token = root.join(sdk.check_token);
    let check_dir = check_token.parent().expect("a folder");
    let check_file = sdk.check_token.rsplit('/').next().expect("a file name");
    let checked = up
        .run_with_env(check_dir, &sdk.program, &[check_file, &access_token])
        .await;
    let claims: Value = serde_json::from_str(&last_stdout_line(sdk.check_token, &checked))
        .expect("the check prints the claims as JSON");
    assert_eq!(
        claims["iss"],
        up.var("SCALEKIT_ENVIRONMENT_URL"),
        "{claims}"
    );
    assert_eq!(
        claims["aud"],
        json!([up.var("MCP_SERVER_URL"), up.var("SCALEKIT_RESOURCE_ID")]),
        "{claims}"
    );
    assert_eq!(claims["xuid"], POSTED_SUB, "{claims}");
    assert_eq!(claims["email"], POSTED_EMAIL, "{claims}");
    assert_eq!(claims["client_id"], sign_in.client_id.as_str(), "{claims}");
    assert_eq!(claims["scopes"], json!(["openid", "email", "mcp:read"]));

    let refused = up
        .run_with_env(
            check_dir,
            &sdk.program,
            &[check_file, &tampered(&access_token)],
        )
        .await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "a tampered token was accepted");
    assert!(
        stderr.lines().any(|line| line == sdk.tampered_refusal),
        "expected {:?} on stderr:\n{stderr}",
        sdk.tampered_refusal
    );
}

#[test]
fn the_readme_shows_each_snippet_as_the_tests_run_it() {
    let root = workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md is read");
    let mut shown = BTreeMap::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(path) = line
            .strip_prefix("<!-- snippet: ")
            .and_then(|rest| rest.strip_suffix(" -->"))
        else {
            continue;
        };
        let fence = lines.next().unwrap_or_default();
        assert!(
            fence.starts_with("```"),
            "the snippet marker for {path} must be followed by a fenced block, not {fence:?}"
        );
        let mut block = String::new();
        for line in lines.by_ref() {
            if line == "```" {
                break;
            }
            block.push_str(line);
            block.push('\n');
        }
        assert!(
            shown.insert(path.to_owned(), block).is_none(),
            "the README shows {path} twice"
        );
    }
    let paths: Vec<&str> = shown.keys().map(String::as_str).collect();
    let mut expected = SNIPPETS.to_vec();
    expected.sort_unstable();
    assert_eq!(paths, expected, "the README's snippet markers");
    for (path, block) in &shown {
        let file = std::fs::read_to_string(root.join(path))
            .unwrap_or_else(|error| panic!("{path}: {error}"));
        assert!(
            *block == file,
            "README.md's block for {path} differs from the file: copy the file into the README\n--- README\n{block}--- {path}\n{file}"
        );
    }
}

#[tokio::test]
async fn the_python_sdk_snippets_post_the_user_over_grpc_with_tls_and_check_the_issued_token() {
    if let Some(reason) = missing_python_sdk() {
        eprintln!("skipping the Python SDK snippets: {reason}");
        return;
    }
    let sdk = SdkSnippets {
        program: workspace_root().join(SDK_VENV_PYTHON),
        login_service: PYTHON_LOGIN_SERVICE,
        check_token: PYTHON_CHECK_TOKEN,
        tampered_refusal: "jwt.exceptions.InvalidSignatureError: Signature verification failed",
    };
    run_sdk_snippets("python", &sdk).await;
}

#[tokio::test]
async fn the_node_sdk_snippets_post_the_user_over_grpc_with_tls_and_check_the_issued_token() {
    if let Some(reason) = node::missing_setup("node-sdk", "@scalekit-sdk/node") {
        eprintln!("skipping the Node SDK snippets: {reason}");
        return;
    }
    let sdk = SdkSnippets {
        program: PathBuf::from("node"),
        login_service: NODE_LOGIN_SERVICE,
        check_token: NODE_CHECK_TOKEN,
        tampered_refusal: "ScalekitValidateTokenFailureException: signature verification failed",
    };
    run_sdk_snippets("node", &sdk).await;
}

#[tokio::test]
async fn the_mcp_client_snippet_signs_in_and_lists_the_tools_of_testbed_up() {
    let up = TestbedUp::start("mcp-client", &["--auto-login", "ada"]).await;
    let root = workspace_root();
    let output = up
        .run_with_env(&root, Path::new("bash"), &[MCP_CLIENT])
        .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{MCP_CLIENT} failed:\n{stderr}");
    // The driver reports on standard error, in its closing log line.
    let done = stderr
        .lines()
        .find(|line| line.contains(" done "))
        .unwrap_or_else(|| panic!("no closing line from the driver:\n{stderr}"));
    assert!(done.contains("authorizations=1"), "{done}");
    assert!(done.contains(r#""whoami""#), "{done}");
    assert!(done.contains("called=true"), "{done}");
}
