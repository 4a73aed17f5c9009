//! The emulator binary as a child process (killed and reaped on drop, so a failing test leaves no
//! process behind), its resident memory from `/proc`, a seeded random source, and the fixtures'
//! ids.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The fixtures' environment, as the binary reads it.
pub const FIXTURE_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../fixtures/environment.toml"
);
pub const FIXTURE: &str = include_str!("../../../../fixtures/environment.toml");
pub const API_CLIENT_ID: &str = "skc_81920374650192837";
pub const API_CLIENT_SECRET: &str = "test_sk_testbed_dev_secret_not_for_production";
pub const CONNECTION: &str = "conn_81920374650192838";
pub const RESOURCE: &str = "res_81920374650192839";
pub const SERVER_URL: &str = "http://127.0.0.1:8402/mcp";
/// The connection's login endpoint: where `/oauth/authorize` sends a known client's browser.
pub const LOGIN_ENDPOINT: &str = "http://127.0.0.1:8401/login";
/// Any loopback port is accepted for a registered loopback redirect URI; nothing listens here.
pub const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";
/// The resource's scopes the flows ask for (no `openid`: one signature per token answer).
pub const SCOPE: &str = "offline_access mcp:read";

/// The binary under test: this crate's debug build, or `RESILIENCE_EMULATOR` (to watch a test fail
/// against a scratch build with a defence removed, without touching this tree).
pub fn emulator_binary() -> PathBuf {
    std::env::var_os("RESILIENCE_EMULATOR")
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_scalekit-emulator")))
}

/// Held by the tests that keep both cores busy (the crash test's traffic, the sign-in flood), so
/// that they run one after the other: on a 2-core machine shared with other work, two of them at
/// once would measure the machine, not the emulator. The connection flood is mostly idle and runs
/// beside them.
pub async fn busy_cores() -> tokio::sync::MutexGuard<'static, ()> {
    static BUSY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    BUSY.lock().await
}

/// A unique directory under the system's temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default();
        let path = std::env::temp_dir().join(format!(
            "scalekit-emulator-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).with_context(|| format!("cannot create {path:?}"))?;
        Ok(TempDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `scalekit-emulator` on a port the kernel chose (`--listen 127.0.0.1:0`; the address
/// is read from its "listening" log line, so there is no race for a port). Dropping it sends
/// SIGKILL and reaps it.
pub struct Emulator {
    child: Child,
    /// The environment URL, without a trailing slash.
    pub base: String,
}

impl Emulator {
    /// Starts the binary with `config` and, when given, `--state-dir`; returns once it listens.
    pub async fn start(config: &Path, state_dir: Option<&Path>) -> Result<Emulator> {
        let binary = emulator_binary();
        let mut command = Command::new(&binary);
        command
            .arg("--config")
            .arg(config)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match state_dir {
            Some(state_dir) => command.arg("--state-dir").arg(state_dir),
            // Without one, a key for this run only: no key file is left in the crate folder the
            // test runs in.
            None => command.arg("--fresh-signing-key"),
        };
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stdout = child.stdout.take().context("the child's stdout")?;
        let stderr = child.stderr.take().context("the child's stderr")?;
        // Both pipes are drained until the child exits, so its output never blocks it. The log
        // (standard error) says where it listens, and is kept for the error message.
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut chunk = [0u8; 4096];
            while let Ok(1..) = reader.read(&mut chunk) {}
        });
        let errors = Arc::new(Mutex::new(String::new()));
        let errors_writer = Arc::clone(&errors);
        let (address_sender, address_receiver) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut address_sender = Some(address_sender);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut errors) = errors_writer.lock()
                    && errors.len() < 16 * 1024
                {
                    errors.push_str(&line);
                    errors.push('\n');
                }
                if let Some(base) = environment_url(&line)
                    && let Some(sender) = address_sender.take()
                {
                    let _ = sender.send(base);
                }
            }
        });
        let mut emulator = Emulator {
            child,
            base: String::new(),
        };
        match tokio::time::timeout(Duration::from_secs(30), address_receiver).await {
            Ok(Ok(base)) => {
                emulator.base = base;
                Ok(emulator)
            }
            outcome => {
                let status = emulator.child.try_wait().ok().flatten();
                let errors = errors.lock().map(|text| text.clone()).unwrap_or_default();
                let why = if outcome.is_err() {
                    "did not say where it listens within 30 s"
                } else {
                    "exited before listening"
                };
                bail!("the emulator {why} (status {status:?}); stderr: {errors}")
            }
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory in KiB (`VmRSS` from `/proc/PID/status`).
    pub fn rss_kib(&self) -> Result<u64> {
        let path = format!("/proc/{}/status", self.pid());
        let status =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| anyhow!("no VmRSS in {path}"))
    }

    /// Fails if the process has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!("the emulator exited: {status}"),
        }
    }

    /// SIGKILL (what `Child::kill` sends on Unix), then reap.
    pub fn kill(mut self) -> Result<()> {
        self.child.kill().context("SIGKILL")?;
        self.child.wait().context("reaping the killed emulator")?;
        Ok(())
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // Only this child, by its own handle; a child already reaped makes both calls fail.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The environment URL from the "scalekit emulator listening" line, e.g.
/// `… environment_url="http://127.0.0.1:40123"`.
fn environment_url(line: &str) -> Option<String> {
    let after = &line[line.find("environment_url")?..];
    let start = after.find("http://")?;
    let url: String = after[start..]
        .chars()
        .take_while(|character| {
            character.is_ascii_alphanumeric() || matches!(character, ':' | '/' | '.' | '[' | ']')
        })
        .collect();
    Some(url.trim_end_matches('/').to_owned())
}

/// SplitMix64: a small seeded generator, so a run's random moments can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// Seeded from the environment variable `name` when set, from the clock otherwise; returns the
    /// seed too, to be printed.
    pub fn from_env_or_clock(name: &str) -> (Rng, u64) {
        let seed = std::env::var(name)
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|elapsed| elapsed.as_nanos() as u64)
                    .unwrap_or(1)
            });
        (Rng(seed), seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = self.0;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^ (mixed >> 31)
    }

    /// A duration in `[low, high)` milliseconds.
    pub fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.next_u64() % (high - low))
    }
}

/// RFC 7636 §4.2: `BASE64URL(SHA256(verifier))`.
pub fn pkce_s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()))
}

/// A client that does not follow redirects and gives up on an answer after 20 s (a lost answer
/// must not hang the test). It keeps cookies, as the browser of a sign-in does (Decisions §9).
pub fn http_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .timeout(Duration::from_secs(20))
        .build()?)
}

/// How long `future` took, with its output.
pub async fn timed<T>(future: impl Future<Output = T>) -> (Duration, T) {
    let begin = Instant::now();
    let output = future.await;
    (begin.elapsed(), output)
}

#[test]
fn the_listening_line_gives_the_environment_url() {
    let line = "2026-12-07T01:08:23Z  INFO scalekit_emulator: scalekit emulator listening \
                environment_url=\"http://127.0.0.1:37723\"";
    assert_eq!(
        environment_url(line).as_deref(),
        Some("http://127.0.0.1:37723")
    );
    let colored = "\u{1b}[3menvironment_url\u{1b}[0m\u{1b}[2m=\u{1b}[0m\"http://127.0.0.1:1/\"";
    assert_eq!(
        environment_url(colored).as_deref(),
        Some("http://127.0.0.1:1")
    );
    assert_eq!(environment_url("state kept across restarts"), None);
}
