//! Chromedriver and one Chromium session per test: started on a free port, always closed.
//!
//! [`run`] starts `/usr/bin/chromedriver`, opens a session with the capabilities known to work on
//! these machines (shared/reference/dependencies.md: headless, no sandbox as root, a fresh
//! profile), runs the test on its own task so that a panic comes back as a value, saves a
//! screenshot and the page source if the test failed, closes the session and only then returns
//! or re-raises the panic. [`Chromedriver`]'s `Drop` is the backstop: it ends a session still
//! open, kills chromedriver and removes the profile, whatever happened before.

use std::future::Future;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use url::Url;

/// Where Debian's `chromium-driver` package puts the driver.
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long chromedriver may take to answer `/status` after it starts.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// `false` (and a message) when there is no chromedriver; a failure instead under `CI=true`.
fn browser_installed() -> bool {
    if Path::new(CHROMEDRIVER).exists() {
        return true;
    }
    let reason = format!(
        "{CHROMEDRIVER} is missing: install Debian's `chromium` and `chromium-driver` packages"
    );
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the browser tests are required under CI=true: {reason}"
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

/// A running chromedriver, its session (once opened) and the browser profile folder.
struct Chromedriver {
    process: Child,
    port: u16,
    profile: PathBuf,
    /// The session to end on drop; `None` once it was closed properly.
    session_id: Option<String>,
}

impl Chromedriver {
    async fn start() -> anyhow::Result<Chromedriver> {
        let port = free_port()?;
        let profile =
            std::env::temp_dir().join(format!("testbed-browser-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&profile)
            .with_context(|| format!("creating the profile folder {}", profile.display()))?;
        let process = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {CHROMEDRIVER}"))?;
        let mut driver = Chromedriver {
            process,
            port,
            profile,
            session_id: None,
        };
        driver.wait_until_ready().await?;
        Ok(driver)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Polls `GET /status` until chromedriver says it is ready.
    async fn wait_until_ready(&mut self) -> anyhow::Result<()> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let status_url = format!("{}/status", self.url());
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(exit) = self.process.try_wait()? {
                bail!("chromedriver exited before it was ready: {exit}");
            }
            if let Ok(response) = http.get(&status_url).send().await
                && let Ok(status) = response.json::<Value>().await
                && status["value"]["ready"] == json!(true)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("chromedriver did not answer {status_url} within {STARTUP_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Opens a session: headless Chromium as root (no sandbox), nothing reaching out to the
    /// network, a fresh profile.
    async fn connect(&mut self) -> anyhow::Result<Client> {
        let arguments = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--window-size=1024,860".to_owned(),
            format!("--user-data-dir={}", self.profile.display()),
        ];
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".to_owned(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({"binary": "/usr/bin/chromium", "args": arguments}),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url())
            .await
            .context("opening a chromedriver session")?;
        self.session_id = client
            .session_id()
            .await
            .context("reading the session id")?;
        // Tall enough that a screenshot shows a whole page, persona picker included.
        client
            .set_window_size(1024, 1100)
            .await
            .context("sizing the window")?;
        Ok(client)
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // A session still open means the test's own `close` did not happen: end it so that
        // chromedriver quits Chromium, which killing chromedriver alone would leave running.
        if let Some(session_id) = self.session_id.take() {
            delete_session(self.port, &session_id);
        }
        let _ = self.process.kill();
        let _ = self.process.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// `DELETE /session/{id}` over a plain blocking socket: `Drop` cannot await.
fn delete_session(port: u16, session_id: &str) {
    let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!(
        "DELETE /session/{session_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Connection: close\r\nContent-Length: 0\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_ok() {
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
    }
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
    let mut driver = Chromedriver::start().await?;
    let browser = driver.connect().await?;

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
    if closed.is_ok() {
        driver.session_id = None;
    }
    drop(driver);

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
