//! Checking somebody's own login integration (`testbed conformance --app-login-url
//! --app-profile`): the reference Your App, started on its own and told to make one mistake,
//! plays "their app"; Chromium signs in through its form; the check must name the mistake. A
//! small hand-written app plays the app that redirects whatever Scalekit answered, which the
//! reference Your App never does; and the reference Your App trusting the development CA plays an
//! app checked under `--tls`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, ensure};
use conformance::app_check::{AppCheck, AppCheckOptions, AppProfile, ExpectedUser};
use conformance::{CheckStatus, Report};
use mcp_driver::browser::{Chromium, LoginForm};
use scalekit_wire::UserClaims;
use testbed_stack::{AppBehaviour, DevCa, Fixtures};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::Url;
use your_app::{LoginRequestId, LoginState, ScalekitClient, ScalekitSettings};

use crate::harness::{browser_installed, free_port};

/// The sign-ins' titles: each says in one line what the sign-in proves.
const FIRST_PROVES: &str = "Proves the hand-off: your app posts the user, then sends the browser to partner:callback with the state unchanged";
const SECOND_PROVES: &str = "Proves a new sign-in uses a fresh login request and state: failing only here means your app reuses something from the first sign-in";

/// "Their app": the reference Your App on a free port, pointed at an emulator address that is
/// free now and where the check will start its emulator. With `trust`, the app calls `https://…`
/// and trusts that development CA, as an app started with the settings `--tls` prints does; with
/// `auto_login`, its login page signs that persona in at once and redirects, with no form (Your
/// App's headless mode).
async fn their_app(
    fixtures: &Fixtures,
    behaviour: AppBehaviour,
    trust: Option<&DevCa>,
    auto_login: Option<&str>,
) -> anyhow::Result<(Url, SocketAddr)> {
    let environment_listen = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
    let scheme = if trust.is_some() { "https" } else { "http" };
    let resource = fixtures
        .environment
        .resources
        .first()
        .context("a resource")?;
    let app = your_app::App::bind(your_app::Config {
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        public_url: None,
        allowed_hosts: Vec::new(),
        environment_url: Url::parse(&format!("{scheme}://{environment_listen}"))?,
        client_id: fixtures.environment.api_client.client_id.clone(),
        client_secret: fixtures.environment.api_client.client_secret.clone(),
        connection_id: resource.connection.clone(),
        auto_login: auto_login.map(str::to_owned),
        behaviour,
        personas: fixtures.personas.clone(),
        ca_cert_pem: trust.map(|trust| trust.setup().ca_cert_pem().to_owned()),
    })
    .await?;
    let login_url = app.login_url();
    tokio::spawn(app.serve());
    Ok((login_url, environment_listen))
}

fn profile(fixtures: &Fixtures, environment_listen: SocketAddr) -> anyhow::Result<AppProfile> {
    let ada = fixtures.persona("ada").context("the ada persona")?;
    Ok(AppProfile {
        login: LoginForm::reference_app("ada"),
        environment_listen: Some(environment_listen),
        environment_tls: false,
        expect: ExpectedUser {
            email: ada.claims.email.clone(),
        },
    })
}

/// Which app a case checks.
#[derive(Debug, Clone)]
enum TheirApp {
    /// The reference Your App, making this mistake.
    Reference(AppBehaviour),
    /// The hand-written app that redirects whatever Scalekit answered.
    RedirectsAnyway(Posting),
}

async fn check(chromium: &Arc<Chromium>, app: TheirApp) -> anyhow::Result<Report> {
    let fixtures = Fixtures::embedded()?;
    let (login_url, environment_listen) = match app {
        TheirApp::Reference(behaviour) => their_app(&fixtures, behaviour, None, None).await?,
        TheirApp::RedirectsAnyway(posting) => app_that_redirects_anyway(&fixtures, posting).await?,
    };
    let profile = profile(&fixtures, environment_listen)?;
    let check = AppCheck::start(AppCheckOptions {
        fixtures,
        login_url,
        profile,
        screenshots: None,
        chromium: Some(chromium.clone()),
        tls_dir: None,
    })
    .await?;
    Ok(check.run(|_| {}).await?)
}

/// What the hand-written app posts before it redirects to `partner:callback` anyway.
#[derive(Debug, Clone, Copy)]
enum Posting {
    /// A phone number that is not E.164 (refused).
    PhoneNotE164,
    /// The resource's `res_…` id in the connection slot (refused).
    ResourceIdAsConnection,
    /// The bad phone number (refused), then the user as it should be (accepted).
    PhoneNotE164ThenFixed,
}

/// An app written from the BYOA docs that redirects whatever Scalekit answered: its login page
/// is a form with the reference Your App's selectors; submitting it posts the user for the login
/// request, then answers 302 to `partner:callback` with the state unchanged. A few lines of
/// HTTP/1.1 over a socket, one request per connection, so that it needs no web framework.
async fn app_that_redirects_anyway(
    fixtures: &Fixtures,
    posting: Posting,
) -> anyhow::Result<(Url, SocketAddr)> {
    let environment_listen = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
    let resource = fixtures
        .environment
        .resources
        .first()
        .context("a resource")?
        .clone();
    let claims = fixtures
        .persona("ada")
        .context("the ada persona")?
        .claims
        .clone();
    let scalekit = Arc::new(ScalekitClient::new(ScalekitSettings {
        environment_url: Url::parse(&format!("http://{environment_listen}"))?,
        client_id: fixtures.environment.api_client.client_id.clone(),
        client_secret: fixtures.environment.api_client.client_secret.clone(),
        connection_id: resource.connection.clone(),
        ca_cert_pem: None,
    })?);
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let login_url = Url::parse(&format!("http://{}/login", listener.local_addr()?))?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let scalekit = scalekit.clone();
            let claims = claims.clone();
            let resource_id = resource.id.clone();
            tokio::spawn(async move {
                let _ = answer_login(stream, &scalekit, &claims, &resource_id, posting).await;
            });
        }
    });
    Ok((login_url, environment_listen))
}

/// One request to the hand-written app: `GET /login?login_request_id=…&state=…` shows the form,
/// `POST /login` posts the user and redirects; anything else is 404.
async fn answer_login(
    mut stream: tokio::net::TcpStream,
    scalekit: &ScalekitClient,
    claims: &UserClaims,
    resource_id: &str,
    posting: Posting,
) -> anyhow::Result<()> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = received.windows(4).position(|window| window == b"\r\n\r\n") {
            break at + 4;
        }
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            return Ok(());
        }
        received.extend_from_slice(&buffer[..read]);
    };
    let head = String::from_utf8_lossy(&received[..head_end]).into_owned();
    let content_length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    while received.len() < head_end + content_length {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        received.extend_from_slice(&buffer[..read]);
    }
    let mut request_line = head.split(' ');
    let method = request_line.next().unwrap_or("");
    let url = Url::parse("http://app.invalid")?.join(request_line.next().unwrap_or("/"))?;
    let fields: Vec<(String, String)> = match method {
        "POST" => url::form_urlencoded::parse(&received[head_end..])
            .into_owned()
            .collect(),
        _ => url.query_pairs().into_owned().collect(),
    };
    let value = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let login = value("login_request_id")
        .as_deref()
        .and_then(LoginRequestId::parse)
        .zip(value("state").as_deref().and_then(LoginState::parse));
    let answer = match (method, url.path(), login) {
        ("GET", "/login", Some((login_request_id, state))) => {
            let hidden = |name: &str, value: &str| {
                format!(
                    "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
                    value.replace('&', "&amp;").replace('"', "&quot;")
                )
            };
            let page = format!(
                "<!doctype html><title>Sign in</title><form method=\"post\" action=\"/login\">{}{}\
                 <input id=\"username\" name=\"username\"><input id=\"password\" name=\"password\" type=\"password\">\
                 <button id=\"sign_in\" type=\"submit\">Sign in</button></form>",
                hidden("login_request_id", login_request_id.as_str()),
                hidden("state", state.as_str()),
            );
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            )
        }
        ("POST", "/login", Some((login_request_id, state))) => {
            let bad_phone = UserClaims {
                phone_number: Some("(415) 555-0101".to_owned()),
                ..claims.clone()
            };
            // The answers are ignored on purpose: this app redirects whatever they say.
            match posting {
                Posting::PhoneNotE164 => {
                    let _ = scalekit.submit_user(&login_request_id, &bad_phone).await;
                }
                Posting::ResourceIdAsConnection => {
                    let url = scalekit.user_details_url_for(resource_id, &login_request_id);
                    let _ = scalekit.submit_user_once(&url, None, claims).await;
                }
                Posting::PhoneNotE164ThenFixed => {
                    let _ = scalekit.submit_user(&login_request_id, &bad_phone).await;
                    let _ = scalekit.submit_user(&login_request_id, claims).await;
                }
            }
            format!(
                "HTTP/1.1 302 Found\r\nLocation: {}\r\nCache-Control: no-store\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                scalekit.partner_callback_url(&state)
            )
        }
        _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(),
    };
    stream.write_all(answer.as_bytes()).await?;
    stream.shutdown().await?;
    Ok(())
}

/// The names of the failed checks of each sign-in, by sign-in id.
type Failures = Vec<(String, Vec<String>)>;

/// The failed checks of each sign-in, by name.
fn failures(report: &Report) -> Failures {
    report
        .scenarios
        .iter()
        .map(|sign_in| {
            let failed = sign_in
                .checks
                .iter()
                .filter(|check| check.status == CheckStatus::Failure)
                .map(|check| check.name.clone())
                .collect();
            (sign_in.id.clone(), failed)
        })
        .collect()
}

fn expected(first: &[&str], second: &[&str]) -> Failures {
    let names = |names: &[&str]| names.iter().map(|name| (*name).to_owned()).collect();
    vec![
        ("app-check/first-sign-in".to_owned(), names(first)),
        ("app-check/second-sign-in".to_owned(), names(second)),
    ]
}

#[tokio::test]
async fn each_mistake_of_an_app_is_named_and_a_correct_app_passes() -> anyhow::Result<()> {
    if !browser_installed() {
        return Ok(());
    }
    let chromium = Arc::new(Chromium::start().await?);
    let reference = TheirApp::Reference;
    let cases: Vec<(TheirApp, Failures)> = vec![
        (
            TheirApp::RedirectsAnyway(Posting::PhoneNotE164ThenFixed),
            expected(&[], &[]),
        ),
        (reference(AppBehaviour::Correct), expected(&[], &[])),
        (
            reference(AppBehaviour::AlterState),
            expected(
                &["state-altered", "flow-completes"],
                &["state-altered", "flow-completes"],
            ),
        ),
        (
            reference(AppBehaviour::DropState),
            expected(
                &["state-dropped", "flow-completes"],
                &["state-dropped", "flow-completes"],
            ),
        ),
        (
            reference(AppBehaviour::RedirectBeforePost),
            expected(
                &["redirect-before-post", "flow-completes"],
                &["redirect-before-post", "flow-completes"],
            ),
        ),
        (
            reference(AppBehaviour::OmitEmail),
            expected(
                &["required-claims-missing", "flow-completes"],
                &["required-claims-missing", "flow-completes"],
            ),
        ),
        (
            reference(AppBehaviour::PhoneNotE164),
            expected(
                &["phone-not-e164", "flow-completes"],
                &["phone-not-e164", "flow-completes"],
            ),
        ),
        (
            reference(AppBehaviour::BadBearer),
            expected(
                &["bad-bearer", "flow-completes"],
                &["bad-bearer", "flow-completes"],
            ),
        ),
        (
            reference(AppBehaviour::WrongConnection(
                Fixtures::embedded()?
                    .environment
                    .resources
                    .first()
                    .context("a resource")?
                    .id
                    .clone(),
            )),
            expected(
                &["resource-id-as-connection", "flow-completes"],
                &["resource-id-as-connection", "flow-completes"],
            ),
        ),
        (
            reference(AppBehaviour::ReuseLoginRequest),
            expected(&[], &["login-request-reused", "flow-completes"]),
        ),
        // The app fetches partner:callback itself: without the browser's sign-in cookie the
        // emulator refuses it (Decisions §9), and the browser never reaches the client.
        (
            reference(AppBehaviour::CallbackServerSide),
            expected(
                &["callback-without-browser-session", "flow-completes"],
                &["callback-without-browser-session", "flow-completes"],
            ),
        ),
        // An app that redirects although Scalekit refused the user: the refusal's own mistake,
        // then the redirect after it, never "before posting" (the log shows the POST).
        (
            TheirApp::RedirectsAnyway(Posting::PhoneNotE164),
            expected(
                &[
                    "phone-not-e164",
                    "redirect-after-refused-post",
                    "flow-completes",
                ],
                &[
                    "phone-not-e164",
                    "redirect-after-refused-post",
                    "flow-completes",
                ],
            ),
        ),
        (
            TheirApp::RedirectsAnyway(Posting::ResourceIdAsConnection),
            expected(
                &[
                    "resource-id-as-connection",
                    "redirect-after-refused-post",
                    "flow-completes",
                ],
                &[
                    "resource-id-as-connection",
                    "redirect-after-refused-post",
                    "flow-completes",
                ],
            ),
        ),
        // Refused, retried until accepted, then the redirect: nothing wrong with that.
        (
            TheirApp::RedirectsAnyway(Posting::PhoneNotE164ThenFixed),
            expected(&[], &[]),
        ),
    ];
    let mut mismatches = Vec::new();
    for (app, want) in cases {
        let report = check(&chromium, app.clone()).await?;
        let got = failures(&report);
        if got != want {
            mismatches.push(format!(
                "{app:?}: got {got:?}, want {want:?}\n{}",
                conformance::render_table(&report)
            ));
        } else if want.iter().all(|(_, failed)| failed.is_empty()) {
            ensure!(report.succeeded(), "{app:?}: the report does not succeed");
        }
    }
    ensure!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
    Ok(())
}

#[tokio::test]
async fn the_cli_prints_the_app_settings_and_names_the_mistake_with_exit_code_1()
-> anyhow::Result<()> {
    if !browser_installed() {
        return Ok(());
    }
    let fixtures = Fixtures::embedded()?;
    let (login_url, environment_listen) =
        their_app(&fixtures, AppBehaviour::RedirectBeforePost, None, None).await?;
    let folder = scratch("cli")?;
    let profile = folder.join("profile.toml");
    std::fs::write(
        &profile,
        format!(
            "[login]\nusername = \"ada\"\npassword_env = \"APP_CHECK_PASSWORD\"\nusername_selector = \"#username\"\n\n[environment]\nlisten = \"{environment_listen}\"\n"
        ),
    )?;

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_testbed"))
        .arg("conformance")
        .arg("--app-login-url")
        .arg(login_url.as_str())
        .arg("--app-profile")
        .arg(&profile)
        .arg("--report-dir")
        .arg(folder.join("reports"))
        .env("APP_CHECK_PASSWORD", "ada-password")
        .output()
        .await?;

    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.code() == Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let connection = &fixtures
        .environment
        .resources
        .first()
        .context("a resource")?
        .connection;
    for expected in [
        format!("SCALEKIT_ENVIRONMENT_URL=http://{environment_listen}\n"),
        format!("SCALEKIT_CONNECTION_ID={connection}\n"),
        "app-check/first-sign-in/redirect-before-post".to_owned(),
        "redirect-before-post: your app redirected to partner:callback before posting the user"
            .to_owned(),
        "Fix: wait for the user-details POST to succeed (200)".to_owned(),
        "\n0 passed, 2 failed, 0 skipped\n".to_owned(),
        // What each sign-in proves, in its progress line and its table row.
        "[1/2] FAIL app-check/first-sign-in (".to_owned(),
        format!("s): {FIRST_PROVES}\n"),
        format!("s): {SECOND_PROVES}\n"),
        format!("ms  {FIRST_PROVES}\n"),
        format!("ms  {SECOND_PROVES}\n"),
    ] {
        ensure!(
            stdout.contains(&expected),
            "missing {expected:?} in\n{stdout}"
        );
    }
    ensure!(
        !stdout.contains("Only the second sign-in failed"),
        "both failed: {stdout}"
    );
    ensure!(folder.join("reports/checks.json").is_file());
    ensure!(
        std::fs::read_dir(folder.join("reports/app-check/first-sign-in"))?
            .next()
            .is_some(),
        "a screenshot of the first sign-in is saved"
    );
    Ok(())
}

/// A fresh folder under the system's temporary folder, for one test.
fn scratch(name: &str) -> anyhow::Result<PathBuf> {
    let folder =
        std::env::temp_dir().join(format!("testbed-app-check-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir_all(&folder)?;
    Ok(folder)
}

#[tokio::test]
async fn under_tls_an_app_trusting_the_development_ca_passes_both_sign_ins() -> anyhow::Result<()> {
    if !browser_installed() {
        return Ok(());
    }
    let fixtures = Fixtures::embedded()?;
    let tls_dir = scratch("tls")?.join("tls");
    // As a person would: the CA made first (`testbed up --tls` or an earlier check), their app
    // started trusting it, then the check with the same folder.
    let trust = DevCa::load_or_create(&tls_dir)?;
    let (login_url, environment_listen) =
        their_app(&fixtures, AppBehaviour::Correct, Some(&trust), None).await?;
    let profile = profile(&fixtures, environment_listen)?;
    let chromium = Arc::new(Chromium::start().await?);
    let check = AppCheck::start(AppCheckOptions {
        fixtures,
        login_url,
        profile,
        screenshots: None,
        chromium: Some(chromium.clone()),
        tls_dir: Some(tls_dir.clone()),
    })
    .await?;

    let settings = check.app_settings();
    ensure!(
        settings.starts_with(&format!(
            "SCALEKIT_ENVIRONMENT_URL=https://{environment_listen}\n"
        )),
        "{settings}"
    );
    let ca = tls_dir.join("ca.pem");
    let bundle = tls_dir.join("trust-bundle.pem");
    for (name, path) in [
        ("TESTBED_CA_CERT", &ca),
        ("NODE_EXTRA_CA_CERTS", &ca),
        ("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", &bundle),
        ("REQUESTS_CA_BUNDLE", &bundle),
        ("SSL_CERT_FILE", &bundle),
    ] {
        let line = format!("\n{name}={}", path.display());
        ensure!(settings.contains(&line), "missing {line:?} in\n{settings}");
    }
    let described = check.tls_description().context("a TLS description")?;
    ensure!(
        described.contains(&format!("development CA\n  {}\n", ca.display())),
        "{described}"
    );

    let report = check.run(|_| {}).await?;
    let table = conformance::render_table(&report);
    ensure!(failures(&report) == expected(&[], &[]), "{table}");
    ensure!(report.succeeded(), "{table}");
    let titles: Vec<&str> = report
        .scenarios
        .iter()
        .map(|sign_in| sign_in.title.as_str())
        .collect();
    ensure!(titles == [FIRST_PROVES, SECOND_PROVES], "{titles:?}");
    ensure!(conformance::app_check::reading(&report).is_none());
    Ok(())
}

#[tokio::test]
async fn the_cli_with_a_tls_profile_prints_the_trust_settings_and_reads_a_second_only_failure_as_reuse()
-> anyhow::Result<()> {
    if !browser_installed() {
        return Ok(());
    }
    let fixtures = Fixtures::embedded()?;
    let folder = scratch("cli-tls")?;
    let tls_dir = folder.join("tls");
    let trust = DevCa::load_or_create(&tls_dir)?;
    let (login_url, environment_listen) = their_app(
        &fixtures,
        AppBehaviour::ReuseLoginRequest,
        Some(&trust),
        None,
    )
    .await?;
    let profile = folder.join("profile.toml");
    // `[environment] tls = true` instead of `--tls`; `--tls-dir` names the folder.
    std::fs::write(
        &profile,
        format!(
            "[login]\nusername = \"ada\"\npassword = \"ada-password\"\nusername_selector = \"#username\"\n\n[environment]\nlisten = \"{environment_listen}\"\ntls = true\n"
        ),
    )?;

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_testbed"))
        .arg("conformance")
        .arg("--app-login-url")
        .arg(login_url.as_str())
        .arg("--app-profile")
        .arg(&profile)
        .arg("--tls-dir")
        .arg(&tls_dir)
        .arg("--report-dir")
        .arg(folder.join("reports"))
        .output()
        .await?;

    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.code() == Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        format!("SCALEKIT_ENVIRONMENT_URL=https://{environment_listen}\n"),
        format!("\nTESTBED_CA_CERT={}\n", tls_dir.join("ca.pem").display()),
        format!(
            "\nGRPC_DEFAULT_SSL_ROOTS_FILE_PATH={}\n",
            tls_dir.join("trust-bundle.pem").display()
        ),
        "TLS: the emulator serves HTTPS and gRPC over TLS".to_owned(),
        "app-check/second-sign-in/login-request-reused".to_owned(),
        "Only the second sign-in failed: the hand-off works, but your app reuses something from the first sign-in".to_owned(),
        "\n1 passed, 1 failed, 0 skipped\n".to_owned(),
    ] {
        ensure!(
            stdout.contains(&expected),
            "missing {expected:?} in\n{stdout}"
        );
    }
    Ok(())
}

/// How many `GET /oauth/authorize` the emulator listening at `environment` has logged so far
/// (`GET /_emulator/requests`). Blocking, for `AppCheck::run`'s callback, which is not async:
/// the test runs on the multi-thread runtime so that the emulator serves meanwhile.
fn authorize_requests_logged(environment: SocketAddr) -> anyhow::Result<usize> {
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(async {
            let log: serde_json::Value = reqwest::get(format!(
                "http://{environment}/_emulator/requests?limit=1000"
            ))
            .await?
            .error_for_status()?
            .json()
            .await?;
            let requests = log["requests"]
                .as_array()
                .context("the request log's requests")?;
            Ok(requests
                .iter()
                .filter(|record| record["method"] == "GET" && record["path"] == "/oauth/authorize")
                .count())
        })
    })
}

/// An app whose login page signs the user in and redirects at once, with no form: the browser's
/// one navigation is the whole sign-in and ends at the redirect URI, where nothing listens.
/// chromedriver's Navigate used to load the authorization URL again after that failed load (up
/// to three times), each load a new login request, and the check then called the app's hand-off
/// of the first one an unknown login request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_that_signs_in_without_a_form_passes_with_one_authorization_request_per_sign_in()
-> anyhow::Result<()> {
    if !browser_installed() {
        return Ok(());
    }
    let fixtures = Fixtures::embedded()?;
    let (login_url, environment_listen) =
        their_app(&fixtures, AppBehaviour::Correct, None, Some("ada")).await?;
    let profile = profile(&fixtures, environment_listen)?;
    let chromium = Arc::new(Chromium::start().await?);
    let check = AppCheck::start(AppCheckOptions {
        fixtures,
        login_url,
        profile,
        screenshots: None,
        chromium: Some(chromium.clone()),
        tls_dir: None,
    })
    .await?;

    // The log so far after each sign-in (the emulator stops when the check ends).
    let mut logged_after_each = Vec::new();
    let report = check
        .run(|_| logged_after_each.push(authorize_requests_logged(environment_listen)))
        .await?;
    let logged_after_each = logged_after_each
        .into_iter()
        .collect::<anyhow::Result<Vec<usize>>>()?;
    let table = conformance::render_table(&report);
    let names: Vec<&str> = report
        .scenarios
        .iter()
        .flat_map(|sign_in| &sign_in.checks)
        .map(|check| check.name.as_str())
        .collect();
    ensure!(
        !names.contains(&"unknown-login-request"),
        "{names:?}\n{table}"
    );
    ensure!(failures(&report) == expected(&[], &[]), "{table}");
    ensure!(report.succeeded(), "{table}");
    ensure!(
        logged_after_each == [1, 2],
        "GET /oauth/authorize logged after each sign-in: {logged_after_each:?}, want one per sign-in\n{table}"
    );
    Ok(())
}
