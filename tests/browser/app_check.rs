//! Checking somebody's own login integration (`testbed conformance --app-login-url
//! --app-profile`): the reference Your App, started on its own and told to make one mistake,
//! plays "their app"; Chromium signs in through its form; the check must name the mistake.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::{Context, ensure};
use conformance::app_check::{AppCheck, AppCheckOptions, AppProfile, ExpectedUser};
use conformance::{CheckStatus, Report};
use mcp_driver::browser::{Chromium, LoginForm};
use testbed_stack::{AppBehaviour, Fixtures};
use url::Url;

use crate::harness::{browser_installed, free_port};

/// "Their app": the reference Your App on a free port, pointed at an emulator address that is
/// free now and where the check will start its emulator.
async fn their_app(
    fixtures: &Fixtures,
    behaviour: AppBehaviour,
) -> anyhow::Result<(Url, SocketAddr)> {
    let environment_listen = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
    let resource = fixtures
        .environment
        .resources
        .first()
        .context("a resource")?;
    let app = your_app::App::bind(your_app::Config {
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        public_url: None,
        allowed_hosts: Vec::new(),
        environment_url: Url::parse(&format!("http://{environment_listen}"))?,
        client_id: fixtures.environment.api_client.client_id.clone(),
        client_secret: fixtures.environment.api_client.client_secret.clone(),
        connection_id: resource.connection.clone(),
        auto_login: None,
        behaviour,
        personas: fixtures.personas.clone(),
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
        expect: ExpectedUser {
            email: ada.claims.email.clone(),
        },
    })
}

async fn check(chromium: &Arc<Chromium>, behaviour: AppBehaviour) -> anyhow::Result<Report> {
    let fixtures = Fixtures::embedded()?;
    let (login_url, environment_listen) = their_app(&fixtures, behaviour).await?;
    let profile = profile(&fixtures, environment_listen)?;
    let check = AppCheck::start(AppCheckOptions {
        fixtures,
        login_url,
        profile,
        screenshots: None,
        chromium: Some(chromium.clone()),
    })
    .await?;
    Ok(check.run(|_| {}).await?)
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
    let cases: Vec<(AppBehaviour, Failures)> = vec![
        (AppBehaviour::Correct, expected(&[], &[])),
        (
            AppBehaviour::AlterState,
            expected(
                &["state-altered", "flow-completes"],
                &["state-altered", "flow-completes"],
            ),
        ),
        (
            AppBehaviour::DropState,
            expected(
                &["state-dropped", "flow-completes"],
                &["state-dropped", "flow-completes"],
            ),
        ),
        (
            AppBehaviour::RedirectBeforePost,
            expected(
                &["redirect-before-post", "flow-completes"],
                &["redirect-before-post", "flow-completes"],
            ),
        ),
        (
            AppBehaviour::OmitEmail,
            expected(
                &["required-claims-missing", "flow-completes"],
                &["required-claims-missing", "flow-completes"],
            ),
        ),
        (
            AppBehaviour::PhoneNotE164,
            expected(
                &["phone-not-e164", "flow-completes"],
                &["phone-not-e164", "flow-completes"],
            ),
        ),
        (
            AppBehaviour::BadBearer,
            expected(
                &["bad-bearer", "flow-completes"],
                &["bad-bearer", "flow-completes"],
            ),
        ),
        (
            AppBehaviour::WrongConnection(
                Fixtures::embedded()?
                    .environment
                    .resources
                    .first()
                    .context("a resource")?
                    .id
                    .clone(),
            ),
            expected(
                &["resource-id-as-connection", "flow-completes"],
                &["resource-id-as-connection", "flow-completes"],
            ),
        ),
        (
            AppBehaviour::ReuseLoginRequest,
            expected(&[], &["login-request-reused", "flow-completes"]),
        ),
        // The app fetches partner:callback itself: without the browser's sign-in cookie the
        // emulator refuses it (Decisions §9), and the browser never reaches the client.
        (
            AppBehaviour::CallbackServerSide,
            expected(
                &["callback-without-browser-session", "flow-completes"],
                &["callback-without-browser-session", "flow-completes"],
            ),
        ),
    ];
    let mut mismatches = Vec::new();
    for (behaviour, want) in cases {
        let report = check(&chromium, behaviour.clone()).await?;
        let got = failures(&report);
        if got != want {
            mismatches.push(format!(
                "{behaviour:?}: got {got:?}, want {want:?}\n{}",
                conformance::render_table(&report)
            ));
        } else if want.iter().all(|(_, failed)| failed.is_empty()) {
            ensure!(
                report.succeeded(),
                "{behaviour:?}: the report does not succeed"
            );
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
        their_app(&fixtures, AppBehaviour::RedirectBeforePost).await?;
    let folder = std::env::temp_dir().join(format!("testbed-app-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir_all(&folder)?;
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
    ] {
        ensure!(
            stdout.contains(&expected),
            "missing {expected:?} in\n{stdout}"
        );
    }
    ensure!(folder.join("reports/checks.json").is_file());
    ensure!(
        std::fs::read_dir(folder.join("reports/app-check/first-sign-in"))?
            .next()
            .is_some(),
        "a screenshot of the first sign-in is saved"
    );
    Ok(())
}
