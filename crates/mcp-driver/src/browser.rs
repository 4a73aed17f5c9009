//! The real-browser user agent: Chromium over WebDriver, where a person's part is played for real.
//!
//! [`Chromium`] is one chromedriver child on a free loopback port; [`Chromium::session`] opens a
//! fresh headless Chromium session on it (its own profile folder, so no cookie of an earlier
//! sign-in leaks in) with the capabilities known to work on these machines (headless, no sandbox
//! as root, nothing reaching out to the network). With [`crate::UserAgent::Browser`] the driver
//! opens the authorization URL in such a session (once, from a script: chromedriver's Navigate
//! loads a URL again when the load ends in an error, as a sign-in that ends at the unserved
//! redirect URI does) and, until the browser's address is the redirect URI, fills and submits the
//! login form once ([`LoginForm`]), clicks Allow or Deny on the emulator's consent page
//! ([`ConsentChoice`]), and stops with the page's visible text when it lands on an error page or
//! stops moving. Each document the browser settles on is recorded as a hop; the session is closed
//! whatever happened.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use scalekit_wire::Secret;
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use crate::callback::is_redirect_uri;
use crate::hop::{Hop, HopLog, Phase, redact_url};
use crate::{DriverError, excerpt};

/// Where Debian's `chromium-driver` package puts chromedriver (`$CHROMEDRIVER` overrides it).
pub const DEFAULT_CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Where Debian's `chromium` package puts the browser (`$CHROMIUM` overrides it).
pub const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

/// How many ports chromedriver is started on before giving up (see [`Chromium::start`]).
const START_ATTEMPTS: usize = 3;

/// How long chromedriver may take to answer `/status` after it starts.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// How often the browser's address and page are looked at.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How long a page with nothing to do on it may stay before the browser counts as stuck.
/// Generous: after a click, Your App checks a password hash and calls Scalekit twice before the
/// next page shows, on machines that may be busy.
const STALL_AFTER: Duration = Duration::from_secs(10);

/// The emulator's consent form: its decision buttons (`crates/scalekit-emulator/src/http/html.rs`).
const CONSENT_BUTTONS: &str = "form[action$=\"/oauth/consent\"] button[name=\"decision\"]";

/// The emulator's hosted error page: `error=<code id="error">` and `<p id="error_description">`.
const ERROR_PAGE_MARKERS: [&str; 2] = ["#error", "#error_description"];

/// chromedriver, from `$CHROMEDRIVER` or [`DEFAULT_CHROMEDRIVER`].
pub fn chromedriver_path() -> PathBuf {
    std::env::var_os("CHROMEDRIVER").map_or_else(|| PathBuf::from(DEFAULT_CHROMEDRIVER), Into::into)
}

/// Chromium, from `$CHROMIUM` or [`DEFAULT_CHROMIUM`].
pub fn chromium_path() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from(DEFAULT_CHROMIUM), Into::into)
}

/// Why the browser could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    /// chromedriver or Chromium is not installed where expected.
    #[error(
        "{program} not found at {}: install Debian's chromium and chromium-driver, or set ${variable}",
        path.display()
    )]
    NotInstalled {
        /// `chromedriver` or `chromium`.
        program: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// The environment variable that points elsewhere.
        variable: &'static str,
    },
    /// A local resource (port, profile folder, child process, screenshot file) failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// chromedriver did not become ready.
    #[error("chromedriver did not start: {0}")]
    NotReady(String),
    /// chromedriver exited before it was ready.
    #[error("chromedriver exited before it was ready ({0})")]
    Exited(std::process::ExitStatus),
    /// chromedriver refused to open a session (Chromium did not start).
    #[error("opening a chromedriver session failed: {0}")]
    Session(String),
    /// A WebDriver command failed.
    #[error("webdriver {action} failed: {message}")]
    WebDriver {
        /// The command, e.g. `goto` or `click`.
        action: &'static str,
        /// What chromedriver said.
        message: String,
    },
}

impl BrowserError {
    fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BrowserError {
        let context = context.into();
        move |source| BrowserError::Io { context, source }
    }

    fn webdriver(action: &'static str) -> impl FnOnce(fantoccini::error::CmdError) -> BrowserError {
        move |error| BrowserError::WebDriver {
            action,
            message: error.to_string(),
        }
    }
}

/// A running chromedriver on a free loopback port, and the folder holding its sessions' browser
/// profiles. [`Chromium::trusting_public_key_pin`] makes another handle on the same chromedriver
/// whose sessions accept one more certificate. Dropping the last handle ends every session still
/// open (so that chromedriver quits those Chromiums, which killing chromedriver alone would leave
/// running), kills chromedriver and removes the profiles.
pub struct Chromium {
    driver: Arc<Chromedriver>,
    /// The public-key pins this handle's sessions accept, none for [`Chromium::start`]'s.
    trusted_public_key_pins: Vec<String>,
}

/// The chromedriver child and its sessions, shared by a [`Chromium`]'s handles.
struct Chromedriver {
    process: Mutex<Child>,
    port: u16,
    chromium: PathBuf,
    profiles: PathBuf,
    next_profile: AtomicUsize,
    /// Sessions opened and not known to be closed.
    sessions: Mutex<Vec<(String, PathBuf)>>,
}

impl std::fmt::Debug for Chromium {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Chromium")
            .field("webdriver", &self.webdriver_url())
            .field("chromium", &self.driver.chromium)
            .field("trusted_public_key_pins", &self.trusted_public_key_pins)
            .finish_non_exhaustive()
    }
}

impl Chromium {
    /// Starts chromedriver ([`chromedriver_path`]) on a free loopback port and waits until it is
    /// ready; sessions will run [`chromium_path`].
    pub async fn start() -> Result<Chromium, BrowserError> {
        let chromedriver = chromedriver_path();
        let chromium = chromium_path();
        for (program, path, variable) in [
            ("chromedriver", &chromedriver, "CHROMEDRIVER"),
            ("chromium", &chromium, "CHROMIUM"),
        ] {
            if !path.exists() {
                return Err(BrowserError::NotInstalled {
                    program,
                    path: path.clone(),
                    variable,
                });
            }
        }
        // The free port is released before chromedriver binds it, so another process may take
        // it in between: chromedriver then exits at once, and another port is tried.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match Self::start_on_a_free_port(&chromedriver, &chromium).await {
                Err(BrowserError::Exited(status)) if attempts < START_ATTEMPTS => {
                    tracing::debug!(%status, "chromedriver exited at start; trying another port");
                }
                outcome => return outcome,
            }
        }
    }

    async fn start_on_a_free_port(
        chromedriver: &std::path::Path,
        chromium: &std::path::Path,
    ) -> Result<Chromium, BrowserError> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .map_err(BrowserError::io("finding a free port for chromedriver"))?
            .port();
        let profiles =
            std::env::temp_dir().join(format!("testbed-chromium-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&profiles).map_err(BrowserError::io(format!(
            "creating the profile folder {}",
            profiles.display()
        )))?;
        let process = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| {
                let _ = std::fs::remove_dir_all(&profiles);
                BrowserError::io(format!("starting {}", chromedriver.display()))(error)
            })?;
        // From here on, `Drop` stops chromedriver and removes the profiles, also on failure.
        let started = Chromium {
            driver: Arc::new(Chromedriver {
                process: Mutex::new(process),
                port,
                chromium: chromium.to_owned(),
                profiles,
                next_profile: AtomicUsize::new(0),
                sessions: Mutex::new(Vec::new()),
            }),
            trusted_public_key_pins: Vec::new(),
        };
        started.wait_until_ready().await?;
        Ok(started)
    }

    /// Another handle on the same chromedriver whose sessions also accept a server's certificate
    /// when the chain the server sends holds a certificate with this public key: `pin` is the
    /// base64 SHA-256 of its SubjectPublicKeyInfo, e.g. of the development CA the emulator sends
    /// in its chain under `--tls`, which Chromium has no switch to trust. Sessions of this handle
    /// only: `self`'s, and every other handle's, stay as they were.
    ///
    /// Chromium's `--ignore-certificate-errors-spki-list`, honoured with `--user-data-dir`, which
    /// every session has. Narrower than WebDriver's `acceptInsecureCerts`, yet no trust anchor:
    /// any server, on any host, that merely includes that certificate in the chain it serves is
    /// accepted, whether or not the certificate signed its own. For test runs only.
    pub fn trusting_public_key_pin(&self, pin: &str) -> Chromium {
        let mut trusted_public_key_pins = self.trusted_public_key_pins.clone();
        if !trusted_public_key_pins.iter().any(|each| each == pin) {
            trusted_public_key_pins.push(pin.to_owned());
        }
        Chromium {
            driver: self.driver.clone(),
            trusted_public_key_pins,
        }
    }

    /// chromedriver's base URL.
    pub fn webdriver_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.driver.port)
    }

    /// Polls `GET /status` until chromedriver says it is ready.
    async fn wait_until_ready(&self) -> Result<(), BrowserError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|error| BrowserError::NotReady(error.to_string()))?;
        let status_url = format!("{}/status", self.webdriver_url());
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let exited = self
                .driver
                .process
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .try_wait()
                .map_err(BrowserError::io("watching chromedriver"))?;
            if let Some(status) = exited {
                return Err(BrowserError::Exited(status));
            }
            if let Ok(response) = http.get(&status_url).send().await
                && let Ok(status) = response.json::<Value>().await
                && status["value"]["ready"] == json!(true)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(BrowserError::NotReady(format!(
                    "{status_url} did not say ready within {STARTUP_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Opens a fresh headless session: its own profile folder, no sandbox (these machines run as
    /// root), nothing reaching out to the network, a window tall enough for a whole page in a
    /// screenshot; it accepts this handle's public-key pins
    /// ([`Chromium::trusting_public_key_pin`]). The caller closes it (`Client::close`); a session
    /// left open ends when the last handle on this chromedriver is dropped.
    pub async fn session(&self) -> Result<Client, BrowserError> {
        let number = self.driver.next_profile.fetch_add(1, Ordering::Relaxed);
        let profile = self.driver.profiles.join(format!("session-{number}"));
        std::fs::create_dir_all(&profile).map_err(BrowserError::io(format!(
            "creating the profile folder {}",
            profile.display()
        )))?;
        let mut arguments = vec![
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
            "--window-size=1024,1100".to_owned(),
            format!("--user-data-dir={}", profile.display()),
        ];
        if !self.trusted_public_key_pins.is_empty() {
            arguments.push(format!(
                "--ignore-certificate-errors-spki-list={}",
                self.trusted_public_key_pins.join(",")
            ));
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".to_owned(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({"binary": self.driver.chromium, "args": arguments}),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.webdriver_url())
            .await
            .map_err(|error| BrowserError::Session(error.to_string()))?;
        let session_id = client
            .session_id()
            .await
            .map_err(BrowserError::webdriver("session id"))?;
        if let Some(session_id) = session_id {
            self.driver
                .sessions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((session_id, profile));
        }
        client
            .set_window_size(1024, 1100)
            .await
            .map_err(BrowserError::webdriver("set window size"))?;
        Ok(client)
    }

    /// Forgets a session that was closed properly, so that `Drop` does not end it again, and
    /// removes its profile folder (a run opens one session per flow; each profile holds
    /// megabytes).
    fn closed(&self, session_id: &str) {
        let mut sessions = self
            .driver
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(index) = sessions.iter().position(|(open, _)| open == session_id) {
            let (_, profile) = sessions.swap_remove(index);
            let _ = std::fs::remove_dir_all(profile);
        }
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let sessions = std::mem::take(
            self.sessions
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner),
        );
        // A backstop for sessions still open (a panic, a dropped future): blocking calls on
        // whatever thread drops this, at most one short loopback request per open session.
        for (session_id, _) in sessions {
            delete_session(self.port, &session_id);
        }
        let process = self
            .process
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        let _ = process.kill();
        let _ = process.wait();
        let _ = std::fs::remove_dir_all(&self.profiles);
    }
}

/// `DELETE /session/{id}` over a plain blocking socket: `Drop` cannot await. A session that was
/// closed meanwhile is answered 404, which is fine.
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

/// How to sign in on the app's login page: what to type where, and which button submits. `Debug`
/// shows the password as `[redacted]`.
#[derive(Debug, Clone)]
pub struct LoginForm {
    /// Typed into the username field.
    pub username: String,
    /// Typed into the password field.
    pub password: Secret,
    /// CSS selector of the username field.
    pub username_selector: String,
    /// CSS selector of the password field.
    pub password_selector: String,
    /// CSS selector of the button that submits the form.
    pub submit_selector: String,
}

impl LoginForm {
    /// The reference Your App's form (`#username`, `#password`, `#sign_in`) for one of the
    /// fixture personas, whose password is `<persona>-password` (`fixtures/users.toml`).
    pub fn reference_app(persona: &str) -> LoginForm {
        LoginForm {
            username: persona.to_owned(),
            password: Secret::new(format!("{persona}-password")),
            username_selector: "#username".to_owned(),
            password_selector: "#password".to_owned(),
            submit_selector: "#sign_in".to_owned(),
        }
    }
}

/// What the person decides on the consent page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentChoice {
    /// Click Allow.
    Approve,
    /// Click Deny.
    Deny,
}

impl ConsentChoice {
    /// The consent form's `decision` value of the button to click.
    pub fn decision(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Deny => "deny",
        }
    }
}

/// The browser user agent: where it runs and how the person behaves.
#[derive(Debug, Clone)]
pub struct BrowserAgent {
    /// The chromedriver the sessions are opened on (one session per authorization).
    pub chromium: Arc<Chromium>,
    /// How to sign in when the login page shows; `None` stops there with an error.
    pub login: Option<LoginForm>,
    /// What to click on the consent page.
    pub consent: ConsentChoice,
    /// How long the browser may take from the authorization URL to the redirect URI.
    pub timeout: Duration,
    /// Save `<dir>/<n>-<host>-<port>.png` of every page the browser settles on.
    pub screenshots: Option<PathBuf>,
}

impl BrowserAgent {
    /// A person who approves, has no login form to fill, and gets 30 seconds; no screenshots.
    pub fn new(chromium: Arc<Chromium>) -> BrowserAgent {
        BrowserAgent {
            chromium,
            login: None,
            consent: ConsentChoice::Approve,
            timeout: Duration::from_secs(30),
            screenshots: None,
        }
    }
}

/// What one look at a loaded page found (one script round trip).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct PageFacts {
    /// `document.readyState == "complete"`.
    pub(crate) loaded: bool,
    /// The first look at this document (a marker set on `window` was absent).
    pub(crate) fresh: bool,
    /// The navigation's response status (Navigation Timing `responseStatus`); 0 when unknown.
    pub(crate) status: u16,
    /// The login form's three selectors all match.
    pub(crate) login_form: bool,
    /// The page has a password field (a login page, whether or not the selectors match).
    pub(crate) password_field: bool,
    /// The document's own address (`location.href`).
    pub(crate) href: String,
    /// The emulator's consent buttons are there.
    pub(crate) consent_page: bool,
    /// The emulator's hosted error page's markers are there.
    pub(crate) error_page: bool,
}

impl PageFacts {
    /// What kind of page this is, for a hop's detail.
    pub(crate) fn kind(&self) -> &'static str {
        if self.error_page || self.status >= 400 {
            "error page"
        } else if self.consent_page {
            "consent page"
        } else if self.login_form || self.password_field {
            "login page"
        } else {
            "page"
        }
    }
}

/// What the person did so far.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Progress {
    pub(crate) signed_in: bool,
    pub(crate) decided: bool,
}

/// What to do about the page the browser shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Move {
    /// Fill and submit the login form.
    SignIn,
    /// Click the consent decision.
    Decide,
    /// Wait for the page to move on by itself.
    Wait,
    /// Stop: the flow cannot go on from here; the reason is the start of the error.
    Stop(&'static str),
}

/// The pure decision: what a person does on a page, given what they did before.
pub(crate) fn next_move(facts: &PageFacts, progress: Progress, can_sign_in: bool) -> Move {
    if facts.error_page {
        return Move::Stop("the browser landed on an error page");
    }
    if facts.status >= 400 {
        return Move::Stop("the browser landed on an error page");
    }
    if facts.consent_page {
        return if progress.decided {
            Move::Stop("the consent page came back after the decision")
        } else {
            Move::Decide
        };
    }
    if facts.login_form || facts.password_field {
        return match (can_sign_in, progress.signed_in, facts.login_form) {
            (false, _, _) => Move::Stop("the login page asks for a person and no login was given"),
            (true, true, _) => Move::Stop("the login page came back after signing in"),
            (true, false, true) => Move::SignIn,
            (true, false, false) => Move::Stop(
                "the page asks for a password but the login form's selectors do not match",
            ),
        };
    }
    Move::Wait
}

/// The name of the `n`th page's screenshot: `<n>-<host>-<port>.png` (hosts are all 127.0.0.1 on
/// loopback, so the port tells the pieces apart).
pub(crate) fn screenshot_name(number: usize, url: &Url) -> String {
    let host = url.host_str().unwrap_or("page").replace(':', "_");
    match url.port_or_known_default() {
        Some(port) => format!("{number:02}-{host}-{port}.png"),
        None => format!("{number:02}-{host}.png"),
    }
}

/// A status for a message: `502 Bad Gateway`, or `status unknown`.
pub(crate) fn describe_status(status: u16) -> String {
    match http::StatusCode::from_u16(status) {
        Ok(code) if status != 0 => code.to_string(),
        _ => "status unknown".to_owned(),
    }
}

/// Whether a WebDriver error only says the page could not be reached: expected when a navigation
/// ends at the redirect URI, where nothing listens (Chromium shows its own error page there).
fn unreachable_page(error: &fantoccini::error::CmdError) -> bool {
    error.to_string().contains("net::ERR_")
}

/// The script behind [`PageFacts`]; its arguments are the login form's three selectors (empty
/// when there is no login form), the consent buttons, the error page's markers and the address
/// WebDriver reports.
const LOOK_SCRIPT: &str = r#"
const [user, pass, submit, consent, errorMarkers, address] = arguments;
const has = (selector) => selector !== "" && document.querySelector(selector) !== null;
// A document that is not at the address WebDriver reports (Chromium's own error page while the
// address still shows the page before it) is not looked at yet.
const loaded = document.readyState === "complete" && location.href === address;
let fresh = false;
if (loaded) {
  fresh = window.__testbedBrowserSeen !== true;
  window.__testbedBrowserSeen = true;
}
const navigation = performance.getEntriesByType("navigation")[0];
return {
  loaded,
  fresh,
  status: navigation && navigation.responseStatus ? navigation.responseStatus : 0,
  login_form: has(user) && has(pass) && has(submit),
  password_field: has("input[type=password]"),
  href: location.href,
  consent_page: has(consent),
  error_page: errorMarkers.every(has),
};
"#;

/// The script that sends the browser to its argument, the authorization URL (see `Journey::run`
/// for why not WebDriver's Navigate).
const OPEN_SCRIPT: &str = "window.location.assign(arguments[0]);";

/// The script that reads the submit button's form: `[action, method]`, or `null`.
const FORM_SCRIPT: &str = r#"
const button = document.querySelector(arguments[0]);
return button && button.form ? [button.form.action, button.form.method.toUpperCase()] : null;
"#;

/// One authorization in the browser: the session, the hop log and what happened so far.
struct Journey<'a> {
    agent: &'a BrowserAgent,
    client: Client,
    redirect_uri: &'a Url,
    /// Where the sign-in started: the authorization server's pages are on its host.
    authorize_url: &'a Url,
    hops: &'a HopLog,
    progress: Progress,
    /// Documents seen, for screenshot numbers.
    pages: usize,
    /// The address last seen, for the timeout's message.
    last_url: Option<Url>,
    /// The form submitted last (`action`, method): the next document at that address was its
    /// answer.
    submitted: Option<(Url, String)>,
    /// What the person did on the previous page, for the next hop's detail.
    did: Option<String>,
    /// Why the last look at the page failed, for the timeout's message.
    last_problem: Option<String>,
}

/// Opens `authorize_url` in a fresh session and plays the person until the browser's address is
/// the redirect URI, which is returned. The session is closed before returning.
pub(crate) async fn authorize_in_browser(
    agent: &BrowserAgent,
    authorize_url: Url,
    redirect_uri: &Url,
    hops: &HopLog,
) -> Result<Url, DriverError> {
    let client = agent.chromium.session().await?;
    let session_id = client.session_id().await.ok().flatten();
    let mut journey = Journey {
        agent,
        client: client.clone(),
        redirect_uri,
        authorize_url: &authorize_url,
        hops,
        progress: Progress::default(),
        pages: 0,
        last_url: None,
        submitted: None,
        did: None,
        last_problem: None,
    };
    let outcome = tokio::time::timeout(agent.timeout, journey.run(&authorize_url)).await;
    let result = match outcome {
        Ok(result) => result,
        Err(_elapsed) => {
            let at = journey
                .last_url
                .as_ref()
                .map_or_else(|| redact_url(&authorize_url), redact_url);
            let problem = journey
                .last_problem
                .as_ref()
                .map_or_else(String::new, |problem| format!(" ({problem})"));
            Err(DriverError::AuthorizationRedirect {
                reason: format!(
                    "the browser did not reach the redirect URI within {:?}; it was at {at}{problem}",
                    agent.timeout
                ),
            })
        }
    };
    if client.close().await.is_ok()
        && let Some(session_id) = session_id
    {
        agent.chromium.closed(&session_id);
    }
    result
}

impl Journey<'_> {
    async fn run(&mut self, authorize_url: &Url) -> Result<Url, DriverError> {
        self.hops.push(Hop {
            phase: Phase::Authorization,
            method: "GET".to_owned(),
            url: redact_url(authorize_url),
            status: 0,
            location: None,
            cache_control: None,
            detail: Some("browser: opened the authorization URL".to_owned()),
        });
        // The session's blank start page, which the browser leaves for the authorization URL.
        let start = self
            .client
            .current_url()
            .await
            .map_err(BrowserError::webdriver("current url"))?;
        // Not WebDriver's Navigate (`goto`): chromedriver runs a command that failed again, up to
        // three times in all, while the page is still loading, and a navigation that ends at the
        // redirect URI (where nothing listens) fails with `net::ERR_CONNECTION_REFUSED` while
        // Chromium's error page loads. When the app's login endpoint redirects at once, that one
        // navigation is the whole sign-in, so each retry loaded the authorization URL again and
        // made the emulator issue another login request. A script's navigation is one load, as a
        // person's click is.
        let opened = self
            .client
            .execute(OPEN_SCRIPT, vec![json!(authorize_url.as_str())])
            .await;
        match opened {
            Ok(_) => {}
            Err(error) if unreachable_page(&error) => {}
            Err(error) => {
                return Err(BrowserError::webdriver("open the authorization URL")(error).into());
            }
        }
        let mut last_progress = Instant::now();
        // Set once the person acted on the current document: until the next one shows, the old
        // page may still answer, and must not be taken for the same page coming back.
        let mut acted = false;
        let mut left_start = false;
        loop {
            let url = self
                .client
                .current_url()
                .await
                .map_err(BrowserError::webdriver("current url"))?;
            // The script returns before the navigation it started may show: the start page is
            // no page of the sign-in.
            if !left_start && url == start {
                tokio::time::sleep(POLL_INTERVAL).await;
                continue;
            }
            left_start = true;
            if is_redirect_uri(&url, self.redirect_uri) {
                self.record(&url, 0, "redirect URI");
                return Ok(url);
            }
            self.last_url = Some(url.clone());
            let facts = self.look(&url).await;
            if !facts.loaded {
                // Chromium's own error page stays where it is: a page it could not load.
                if facts.href.starts_with("chrome-error:") && last_progress.elapsed() > STALL_AFTER
                {
                    return Err(DriverError::AuthorizationRedirect {
                        reason: format!("the browser could not load {}", redact_url(&url)),
                    });
                }
                tokio::time::sleep(POLL_INTERVAL).await;
                continue;
            }
            if facts.fresh {
                acted = false;
                last_progress = Instant::now();
                self.pages += 1;
                self.record(&url, facts.status, facts.kind());
                self.screenshot(&url).await?;
            }
            let can_sign_in = self.agent.login.is_some();
            let next = if acted {
                Move::Wait
            } else {
                next_move(&facts, self.progress, can_sign_in)
            };
            match next {
                Move::SignIn => {
                    self.sign_in().await?;
                    acted = true;
                    last_progress = Instant::now();
                }
                Move::Decide => {
                    self.decide().await?;
                    acted = true;
                    last_progress = Instant::now();
                }
                Move::Stop(why) => return Err(self.stopped(why, &url, facts.status).await),
                Move::Wait if last_progress.elapsed() > STALL_AFTER => {
                    return Err(self
                        .stopped("the browser stopped moving", &url, facts.status)
                        .await);
                }
                Move::Wait => tokio::time::sleep(POLL_INTERVAL).await,
            }
        }
    }

    /// One script round trip: is the page at `address` loaded, is it new, what is on it. A
    /// script that fails (the document went away under it mid-navigation) counts as a page not
    /// loaded yet; the reason is kept for the timeout's message.
    async fn look(&mut self, address: &Url) -> PageFacts {
        let (user, pass, submit) = match &self.agent.login {
            Some(login) => (
                login.username_selector.as_str(),
                login.password_selector.as_str(),
                login.submit_selector.as_str(),
            ),
            None => ("", "", ""),
        };
        let arguments = vec![
            json!(user),
            json!(pass),
            json!(submit),
            json!(CONSENT_BUTTONS),
            json!(ERROR_PAGE_MARKERS),
            json!(address.as_str()),
        ];
        let looked = match self.client.execute(LOOK_SCRIPT, arguments).await {
            Ok(looked) => serde_json::from_value(looked)
                .map_err(|error| format!("unexpected answer of the page script: {error}")),
            Err(error) => Err(format!("looking at the page failed: {error}")),
        };
        match looked {
            Ok(facts) => {
                self.last_problem = None;
                facts
            }
            Err(problem) => {
                self.last_problem = Some(problem);
                PageFacts::default()
            }
        }
    }

    /// Records a document the browser settled on, with what kind of page it is and what the
    /// person did to get there.
    fn record(&mut self, url: &Url, status: u16, kind: &str) {
        let method = match self.submitted.take() {
            Some((action, method)) if same_document(&action, url) => method,
            _ => "GET".to_owned(),
        };
        let detail = match self.did.take() {
            Some(did) => format!("browser: {kind}, after {did}"),
            None => format!("browser: {kind}"),
        };
        self.hops.push(Hop {
            phase: Phase::Authorization,
            method,
            url: redact_url(url),
            status,
            location: None,
            cache_control: None,
            detail: Some(detail),
        });
    }

    async fn screenshot(&self, url: &Url) -> Result<(), DriverError> {
        let Some(directory) = &self.agent.screenshots else {
            return Ok(());
        };
        std::fs::create_dir_all(directory).map_err(BrowserError::io(format!(
            "creating {}",
            directory.display()
        )))?;
        let png = self
            .client
            .screenshot()
            .await
            .map_err(BrowserError::webdriver("screenshot"))?;
        let path = directory.join(screenshot_name(self.pages, url));
        std::fs::write(&path, png)
            .map_err(BrowserError::io(format!("writing {}", path.display())))?;
        Ok(())
    }

    /// Types the username and password and presses the submit button.
    async fn sign_in(&mut self) -> Result<(), DriverError> {
        let Some(login) = &self.agent.login else {
            return Ok(());
        };
        let username = self
            .client
            .find(Locator::Css(&login.username_selector))
            .await
            .map_err(BrowserError::webdriver("find the username field"))?;
        username
            .clear()
            .await
            .map_err(BrowserError::webdriver("clear the username field"))?;
        username
            .send_keys(&login.username)
            .await
            .map_err(BrowserError::webdriver("type the username"))?;
        self.client
            .find(Locator::Css(&login.password_selector))
            .await
            .map_err(BrowserError::webdriver("find the password field"))?
            .send_keys(login.password.expose())
            .await
            .map_err(BrowserError::webdriver("type the password"))?;
        self.remember_form(&login.submit_selector).await;
        let clicked = self
            .client
            .find(Locator::Css(&login.submit_selector))
            .await
            .map_err(BrowserError::webdriver("find the submit button"))?
            .click()
            .await;
        match clicked {
            Err(error) if !unreachable_page(&error) => {
                return Err(BrowserError::webdriver("click the submit button")(error).into());
            }
            _ => {}
        }
        self.progress.signed_in = true;
        self.did = Some(format!("signing in as {}", login.username));
        Ok(())
    }

    /// Clicks Allow or Deny on the consent page.
    async fn decide(&mut self) -> Result<(), DriverError> {
        let decision = self.agent.consent.decision();
        let selector = format!("{CONSENT_BUTTONS}[value=\"{decision}\"]");
        self.remember_form(&selector).await;
        let clicked = self
            .client
            .find(Locator::Css(&selector))
            .await
            .map_err(BrowserError::webdriver("find the consent button"))?
            .click()
            .await;
        match clicked {
            Err(error) if !unreachable_page(&error) => {
                return Err(BrowserError::webdriver("click the consent button")(error).into());
            }
            _ => {}
        }
        self.progress.decided = true;
        self.did = Some(format!("clicking {decision}"));
        Ok(())
    }

    /// Notes the form a button submits, so the next document's hop gets its method when it is
    /// the form's own answer.
    async fn remember_form(&mut self, button_selector: &str) {
        let form = self
            .client
            .execute(FORM_SCRIPT, vec![json!(button_selector)])
            .await
            .ok()
            .and_then(|value| serde_json::from_value::<Option<(String, String)>>(value).ok())
            .flatten();
        self.submitted =
            form.and_then(|(action, method)| Some((Url::parse(&action).ok()?, method)));
    }

    /// The error for a page the flow cannot go on from: the hosted error page if its URL names
    /// an error; else what, where, the status and the page's visible text.
    async fn stopped(&self, why: &str, url: &Url, status: u16) -> DriverError {
        if let Some(error) = DriverError::hosted_error_page(url, status, self.authorize_url) {
            return error;
        }
        let text = match self.client.source().await {
            Ok(source) => excerpt(source.as_bytes()),
            Err(error) => format!("(the page source could not be read: {error})"),
        };
        DriverError::AuthorizationRedirect {
            reason: format!(
                "{why}: {} at {}: {text}",
                describe_status(status),
                redact_url(url)
            ),
        }
    }
}

/// Whether `url` is the document `action` answers (same address but the fragment).
fn same_document(action: &Url, url: &Url) -> bool {
    let mut left = action.clone();
    let mut right = url.clone();
    left.set_fragment(None);
    right.set_fragment(None);
    left == right
}

/// Whether chromedriver and Chromium are where [`Chromium::start`] looks for them.
pub fn installed() -> bool {
    chromedriver_path().exists() && chromium_path().exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> PageFacts {
        PageFacts {
            loaded: true,
            fresh: true,
            status: 200,
            ..PageFacts::default()
        }
    }

    #[test]
    fn the_login_form_is_filled_once_and_its_return_stops_the_browser() {
        let login = PageFacts {
            login_form: true,
            ..facts()
        };
        assert_eq!(next_move(&login, Progress::default(), true), Move::SignIn);
        let signed_in = Progress {
            signed_in: true,
            decided: false,
        };
        assert_eq!(
            next_move(&login, signed_in, true),
            Move::Stop("the login page came back after signing in")
        );
        assert_eq!(
            next_move(&login, Progress::default(), false),
            Move::Stop("the login page asks for a person and no login was given")
        );
        let other_form = PageFacts {
            password_field: true,
            ..facts()
        };
        assert_eq!(
            next_move(&other_form, Progress::default(), true),
            Move::Stop("the page asks for a password but the login form's selectors do not match")
        );
        assert_eq!(
            next_move(&other_form, Progress::default(), false),
            Move::Stop("the login page asks for a person and no login was given")
        );
    }

    #[test]
    fn the_consent_page_is_decided_once() {
        let consent = PageFacts {
            consent_page: true,
            ..facts()
        };
        assert_eq!(next_move(&consent, Progress::default(), true), Move::Decide);
        let decided = Progress {
            signed_in: true,
            decided: true,
        };
        assert_eq!(
            next_move(&consent, decided, true),
            Move::Stop("the consent page came back after the decision")
        );
    }

    #[test]
    fn error_pages_and_error_statuses_stop_the_browser_and_other_pages_are_waited_on() {
        let hosted_error = PageFacts {
            error_page: true,
            ..facts()
        };
        let bad_gateway = PageFacts {
            status: 502,
            login_form: true,
            ..facts()
        };
        for page in [hosted_error, bad_gateway] {
            assert_eq!(
                next_move(&page, Progress::default(), true),
                Move::Stop("the browser landed on an error page")
            );
        }
        assert_eq!(next_move(&facts(), Progress::default(), true), Move::Wait);
        let unknown_status = PageFacts {
            status: 0,
            ..facts()
        };
        assert_eq!(
            next_move(&unknown_status, Progress::default(), true),
            Move::Wait
        );
    }

    #[test]
    fn screenshots_are_numbered_and_named_after_host_and_port() {
        let url = Url::parse("http://127.0.0.1:40123/login?state=x").unwrap();
        assert_eq!(screenshot_name(3, &url), "03-127.0.0.1-40123.png");
        let https = Url::parse("https://example.com/a").unwrap();
        assert_eq!(screenshot_name(12, &https), "12-example.com-443.png");
    }

    #[test]
    fn statuses_are_described_with_their_reason_or_as_unknown() {
        assert_eq!(describe_status(502), "502 Bad Gateway");
        assert_eq!(describe_status(400), "400 Bad Request");
        assert_eq!(describe_status(0), "status unknown");
    }

    #[test]
    fn the_login_form_debug_redacts_the_password() {
        let form = LoginForm::reference_app("ada");
        assert_eq!(form.password.expose(), "ada-password");
        let debug = format!("{form:?}");
        assert!(!debug.contains("ada-password"), "{debug}");
        assert!(debug.contains("[redacted]"), "{debug}");
        assert_eq!(form.submit_selector, "#sign_in");
    }

    #[test]
    fn a_form_answer_is_the_same_document_but_the_fragment() {
        let action = Url::parse("http://127.0.0.1:7/login").unwrap();
        assert!(same_document(
            &action,
            &Url::parse("http://127.0.0.1:7/login#top").unwrap()
        ));
        assert!(!same_document(
            &action,
            &Url::parse("http://127.0.0.1:8/sso/v1/x").unwrap()
        ));
    }
}
