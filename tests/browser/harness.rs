//! Chromedriver and one Chromium session per test: started on a free port, always closed.
//!
//! [`run`] starts chromedriver through the driver's launcher ([`mcp_driver::browser::Chromium`]:
//! a free port, the capabilities known to work on these machines, a fresh profile per session),
//! runs the test on its own task so that a panic comes back as a value, saves a screenshot and
//! the page source if the test failed, closes the session and only then returns or re-raises the
//! panic. `Chromium`'s `Drop` is the backstop: it ends a session still open, kills chromedriver
//! and removes the profiles, whatever happened before.

use std::future::Future;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fantoccini::Client;
use mcp_driver::browser::{Chromium, chromedriver_path, installed};
use url::Url;

/// `false` (and a message) when there is no chromedriver or Chromium; a failure instead under
/// `CI=true` or `TESTBED_REQUIRE_SETUP=1` (`cargo xtask ci`).
pub fn browser_installed() -> bool {
    if installed() {
        return true;
    }
    let reason = format!(
        "{} or {} is missing: install Debian's `chromium` and `chromium-driver` packages",
        chromedriver_path().display(),
        mcp_driver::browser::chromium_path().display()
    );
    let required = std::env::var("CI").as_deref() == Ok("true")
        || std::env::var("TESTBED_REQUIRE_SETUP").as_deref() == Ok("1");
    assert!(
        !required,
        "the browser tests are required under CI=true or TESTBED_REQUIRE_SETUP=1: {reason}"
    );
    eprintln!("browser test skipped: {reason}");
    false
}

/// The workspace's `target/` (or `CARGO_TARGET_DIR`), where screenshots go.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(directory) => PathBuf::from(directory),
        None => {
            let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
            target.canonicalize().unwrap_or(target)
        }
    }
}

/// Saves a PNG of what the browser shows as `target/browser/{name}.png`, for people to look at.
pub async fn save_screenshot(browser: &Client, name: &str) -> anyhow::Result<PathBuf> {
    let directory = target_dir().join("browser");
    std::fs::create_dir_all(&directory)
        .with_context(|| format!("creating {}", directory.display()))?;
    let path = directory.join(format!("{name}.png"));
    let png = browser.screenshot().await.context("taking a screenshot")?;
    std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// A port nothing listens on right now (bound, read, released).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Runs `test` with a fresh browser session; see the module documentation. `name` names the
/// failure artefacts (`target/browser/failures/{name}.png` and `.html`).
pub async fn run<Test, Body>(name: &str, test: Test) -> anyhow::Result<()>
where
    Test: FnOnce(Client) -> Body,
    Body: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    if !browser_installed() {
        return Ok(());
    }
    let chromium = Chromium::start().await?;
    let browser = chromium.session().await?;

    // On its own task, a panic in the test comes back here as a `JoinError` while the session
    // is still open, so the failure can be recorded and the session closed first.
    let outcome = tokio::spawn(test(browser.clone())).await;

    if !matches!(outcome, Ok(Ok(()))) {
        match save_failure(&browser, name).await {
            Ok(saved) => eprintln!("browser test {name} failed: saved {saved}"),
            Err(error) => eprintln!("browser test {name} failed; nothing saved: {error:#}"),
        }
    }
    let closed = browser.close().await;
    drop(chromium);

    match outcome {
        Ok(result) => {
            result?;
            closed.context("closing the browser session")
        }
        Err(join_error) if join_error.is_panic() => {
            std::panic::resume_unwind(join_error.into_panic())
        }
        Err(join_error) => Err(join_error.into()),
    }
}

/// A screenshot and the page source of a failed test, under `target/browser/failures/`.
async fn save_failure(browser: &Client, name: &str) -> anyhow::Result<String> {
    let directory = target_dir().join("browser").join("failures");
    std::fs::create_dir_all(&directory)?;
    let url = browser
        .current_url()
        .await
        .map(|url| url.to_string())
        .unwrap_or_default();
    let source = browser.source().await.unwrap_or_default();
    let page = directory.join(format!("{name}.html"));
    std::fs::write(&page, format!("<!-- {url} -->\n{source}"))?;
    let screenshot = directory.join(format!("{name}.png"));
    std::fs::write(&screenshot, browser.screenshot().await?)?;
    Ok(format!("{} and {}", screenshot.display(), page.display()))
}

/// Waits until the browser's URL starts with `prefix` (a redirect nothing serves still changes
/// the URL: Chromium shows its own error page at the address it could not reach).
pub async fn wait_for_url(browser: &Client, prefix: &str) -> anyhow::Result<Url> {
    wait_for_url_where(browser, prefix, |url| url.as_str().starts_with(prefix)).await
}

/// Waits until the browser's URL satisfies `wanted`; `description` names it in the error.
pub async fn wait_for_url_where(
    browser: &Client,
    description: &str,
    wanted: impl Fn(&Url) -> bool,
) -> anyhow::Result<Url> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let url = browser.current_url().await?;
        if wanted(&url) {
            return Ok(url);
        }
        if Instant::now() > deadline {
            bail!("the browser stayed at {url}, never reaching {description}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
