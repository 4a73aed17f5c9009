//! `testbed emulator` from a folder of one's own: without `--state-dir` it keeps its signing key
//! in `.testbed/signing-key.pem` and says so, so a restart publishes the same key (Scalekit's Node
//! and Python SDKs fetch `/keys` once per process); `--fresh-signing-key` makes another.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// An empty folder of the test's own, outside the repository.
fn folder(name: &str) -> PathBuf {
    let folder =
        std::env::temp_dir().join(format!("testbed-emulator-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir_all(&folder).expect("a scratch folder");
    folder
}

/// A running `testbed emulator`: its environment URL and the banner's line about the key.
struct Running {
    child: Child,
    base: String,
    key_line: String,
}

impl Running {
    async fn start(folder: &Path, extra_args: &[&str]) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_testbed"))
            .current_dir(folder)
            .args(["emulator", "--listen", "127.0.0.1:0"])
            .args(extra_args)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("testbed emulator starts");
        let stdout = child.stdout.take().expect("its stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut next_line = async || {
            tokio::time::timeout(Duration::from_secs(60), lines.next_line())
                .await
                .expect("a banner line within 60 s")
                .expect("stdout readable")
                .expect("a banner line")
        };
        let listening = next_line().await;
        let base = listening
            .strip_prefix("Scalekit emulator listening on ")
            .unwrap_or_else(|| panic!("unexpected banner {listening:?}"))
            .trim_end_matches('/')
            .to_owned();
        let key_line = next_line().await;
        Running {
            child,
            base,
            key_line,
        }
    }

    /// The `kid` `/keys` publishes first.
    async fn kid(&self) -> String {
        let jwks: Value = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("a client")
            .get(format!("{}/keys", self.base))
            .send()
            .await
            .expect("an answer")
            .json()
            .await
            .expect("a JWKS");
        jwks["keys"][0]["kid"]
            .as_str()
            .unwrap_or_else(|| panic!("no kid in {jwks}"))
            .to_owned()
    }

    async fn stop(mut self) {
        self.child.start_kill().expect("stopped");
        self.child.wait().await.expect("reaped");
    }
}

#[tokio::test]
async fn the_emulator_keeps_its_signing_key_in_the_folder_it_runs_in_and_says_so() {
    let folder = folder("signing-key");
    let first = Running::start(&folder, &[]).await;
    let kid = first.kid().await;
    assert_eq!(first.key_line, kept_in_the_default_file(&kid));
    first.stop().await;
    let key_file = folder.join(".testbed/signing-key.pem");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file)
            .expect("the key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }

    let again = Running::start(&folder, &[]).await;
    assert_eq!(again.kid().await, kid);
    assert_eq!(again.key_line, kept_in_the_default_file(&kid));
    again.stop().await;

    let fresh = Running::start(&folder, &["--fresh-signing-key"]).await;
    let fresh_kid = fresh.kid().await;
    assert_ne!(fresh_kid, kid);
    assert_eq!(
        fresh.key_line,
        format!("signing key {fresh_kid} made for this run only (--fresh-signing-key)")
    );
    fresh.stop().await;

    let elsewhere = Running::start(&folder, &["--signing-key", "keys/other.pem"]).await;
    let other_kid = elsewhere.kid().await;
    assert_ne!(other_kid, kid);
    assert!(
        elsewhere
            .key_line
            .starts_with(&format!("signing key {other_kid} kept in keys/other.pem ")),
        "{}",
        elsewhere.key_line
    );
    elsewhere.stop().await;
    assert!(folder.join("keys/other.pem").exists());
    let _ = std::fs::remove_dir_all(&folder);
}

/// The banner's line for a key kept in the default file.
fn kept_in_the_default_file(kid: &str) -> String {
    format!(
        "signing key {kid} kept in .testbed/signing-key.pem (the same across restarts; \
         --fresh-signing-key for a new one each start)"
    )
}
