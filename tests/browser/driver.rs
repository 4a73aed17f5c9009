//! The `mcp-driver` binary with `--browser`: a person in Chromium signs in through Your App's form
//! and decides on the consent page, and every page is saved under `target/browser/driver-*/`.
//!
//! The driver binary belongs to another package, so `CARGO_BIN_EXE_mcp-driver` is not visible
//! here; the test builds it with the cargo that runs the test (`CARGO`), as the interop suite
//! does, and takes it from the target directory.

use std::path::{Path, PathBuf};
use std::process::Output;

use anyhow::{Context, ensure};
use testbed_stack::{ConsentMode, Stack};
use tokio::process::Command;

use crate::harness::{browser_installed, target_dir};
use crate::support::spawn_stack_with;

/// Builds the driver binary (a no-op when it is up to date) and returns its path.
async fn driver_binary() -> anyhow::Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "mcp-driver",
            "--bin",
            "mcp-driver",
        ])
        .current_dir(&root)
        .kill_on_drop(true)
        .status()
        .await
        .context("running cargo build")?;
    ensure!(status.success(), "building mcp-driver failed: {status}");
    let binary = target_dir().join("debug").join("mcp-driver");
    ensure!(binary.exists(), "{} was not built", binary.display());
    Ok(binary)
}

/// The stack with Your App's login form showing and the consent page asked for.
async fn stack_with_a_person_in_the_loop() -> Stack {
    spawn_stack_with("ada", |config| {
        config.auto_login = None;
        config.consent = Some(ConsentMode::Prompt);
    })
    .await
}

/// Runs the driver with `--browser` and `arguments`, saving screenshots in a fresh folder.
async fn run_driver(
    stack: &Stack,
    screenshots: &Path,
    arguments: &[&str],
) -> anyhow::Result<Output> {
    let _ = std::fs::remove_dir_all(screenshots);
    Command::new(driver_binary().await?)
        .arg("--browser")
        .arg("--screenshots")
        .arg(screenshots)
        .args(arguments)
        .arg(stack.mcp_url.as_str())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output()
        .await
        .context("running mcp-driver")
}

/// The screenshots' file names, sorted.
fn saved(folder: &Path) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .with_context(|| format!("reading {}", folder.display()))?
        .map(|entry| entry.map(|entry| entry.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    names.sort();
    Ok(names)
}

fn port(url: &url::Url) -> u16 {
    url.port_or_known_default().unwrap_or_default()
}

#[tokio::test]
async fn the_driver_binary_with_the_browser_signs_in_through_the_form_and_approves()
-> anyhow::Result<()> {
    if !browser_installed() {
        return Ok(());
    }
    let stack = stack_with_a_person_in_the_loop().await;
    let screenshots = target_dir().join("browser").join("driver-approve");

    let output = run_driver(
        &stack,
        &screenshots,
        &["--login-user", "grace", "--call-tool"],
    )
    .await?;

    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(output.status.success(), "mcp-driver failed: {stderr}");
    let app = port(&stack.app_url);
    let environment = port(&stack.environment_url);
    assert_eq!(
        saved(&screenshots)?,
        [
            format!("01-127.0.0.1-{app}.png"),
            format!("02-127.0.0.1-{environment}.png"),
        ],
        "the login page (Your App) and the consent page (the emulator)"
    );
    Ok(())
}

#[tokio::test]
async fn the_driver_binary_with_the_browser_reports_access_denied_when_the_person_denies()
-> anyhow::Result<()> {
    if !browser_installed() {
        return Ok(());
    }
    let stack = stack_with_a_person_in_the_loop().await;
    let screenshots = target_dir().join("browser").join("driver-deny");

    let output = run_driver(
        &stack,
        &screenshots,
        &["--login-user", "ada", "--deny-consent"],
    )
    .await?;

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("mcp-driver: authorization error access_denied"),
        "{stderr}"
    );
    assert_eq!(saved(&screenshots)?.len(), 2);
    Ok(())
}

#[tokio::test]
async fn the_driver_binary_with_the_browser_stops_at_the_login_page_without_a_login_user()
-> anyhow::Result<()> {
    if !browser_installed() {
        return Ok(());
    }
    let stack = stack_with_a_person_in_the_loop().await;
    let screenshots = target_dir().join("browser").join("driver-no-login");

    let output = run_driver(&stack, &screenshots, &[]).await?;

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "authorization redirect chain broken: the login page asks for a person and no login was given: 200 OK at http://127.0.0.1:"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("Sign in to Your App"), "{stderr}");
    Ok(())
}
