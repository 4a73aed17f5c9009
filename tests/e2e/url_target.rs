//! The url target leans on no in-process shortcut: the emulator runs as a separate process
//! (`testbed emulator`), and the suite reaches it only over HTTP.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use conformance::{RunOptions, RunTarget, ScenarioStatus};
use testbed_stack::Fixtures;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use url::Url;

fn repository() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// A free loopback port: bound, read and released (the emulator's config must name Your App's and
/// the MCP server's ports before they start).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A fixtures folder whose login endpoint and Server URL point at free ports.
fn fixtures_folder() -> PathBuf {
    let folder = std::env::temp_dir().join(format!(
        "testbed-url-target-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&folder).unwrap();
    let environment = std::fs::read_to_string(repository().join("fixtures/environment.toml"))
        .unwrap()
        .replace(
            "http://127.0.0.1:8401/login",
            &format!("http://127.0.0.1:{}/login", free_port()),
        )
        .replace(
            "http://127.0.0.1:8402/mcp",
            &format!("http://127.0.0.1:{}/mcp", free_port()),
        );
    std::fs::write(folder.join("environment.toml"), environment).unwrap();
    std::fs::copy(
        repository().join("fixtures/users.toml"),
        folder.join("users.toml"),
    )
    .unwrap();
    folder
}

/// Starts `testbed emulator` and reads the environment URL it prints.
pub async fn start_emulator(config: &Path) -> (Child, Url) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_testbed"))
        // A key for this run only: no key file left in the crate folder the test runs in.
        .args(["emulator", "--listen", "127.0.0.1:0", "--fresh-signing-key"])
        .arg("--config")
        .arg(config)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("testbed emulator starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = lines
        .next_line()
        .await
        .unwrap()
        .expect("the emulator prints its URL");
    let url = line.rsplit(' ').next().unwrap();
    (child, Url::parse(url).unwrap())
}

#[tokio::test]
async fn the_suite_passes_in_url_mode_against_an_emulator_in_another_process() {
    let folder = fixtures_folder();
    let (mut emulator, environment_url) = start_emulator(&folder.join("environment.toml")).await;
    let scenarios = conformance::load_dir(&repository().join("scenarios")).unwrap();
    let url_scenarios = scenarios
        .iter()
        .filter(|scenario| scenario.targets.contains(&conformance::Target::Url))
        .count();
    let options = RunOptions {
        fixtures: Fixtures::from_dir(&folder).unwrap(),
        filter: None,
        concurrency: 4,
        target: RunTarget::Url(environment_url),
        browser: false,
        record: false,
        probe: false,
    };

    let report = conformance::run(scenarios, &options).await;

    emulator.kill().await.unwrap();
    std::fs::remove_dir_all(&folder).unwrap();
    assert!(report.succeeded(), "{}", conformance::render_table(&report));
    // Every scenario ran or says why it could not: it does not list the url target, or it needs a
    // consent mode, scope intersection or persona the shared environment does not have.
    let skipped: Vec<&str> = report
        .scenarios
        .iter()
        .filter(|result| result.status == ScenarioStatus::Skipped)
        .flat_map(|result| {
            result
                .checks
                .iter()
                .filter_map(|check| check.error_message.as_deref())
        })
        .collect();
    assert_eq!(skipped.len(), report.skipped);
    for reason in &skipped {
        assert!(
            reason.starts_with("the scenario does not list the url target")
                || reason.starts_with("needs the resource's consent mode to be Prompt")
                || reason.starts_with(
                    "needs the resource's intersect_scopes_user_permission to be true"
                )
                || reason.starts_with("needs Your App to sign in "),
            "{reason}"
        );
    }
    let not_url = report.scenarios.len() - url_scenarios;
    assert!(
        report.passed >= 60,
        "{}",
        conformance::render_table(&report)
    );
    assert_eq!(report.passed + report.skipped, report.scenarios.len());
    assert!(report.skipped >= not_url);
}
