//! Recording and parity without the cloud: `testbed conformance --target url=… --record` against
//! emulators in other processes, each configured unlike the fixtures in one way, then `testbed
//! parity` against the embedded emulator must name exactly the differences each change makes,
//! and nothing for an emulator configured as the fixtures are. A real Scalekit environment is
//! played by an emulator too (`--target scalekit` reads its URL and credentials from the
//! variables the Scalekit SDKs read), for the probes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use tokio::process::Command;

use crate::url_target::{free_port, start_emulator};

fn repository() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn scratch(name: &str) -> PathBuf {
    let folder = std::env::temp_dir().join(format!(
        "testbed-parity-{name}-{}-{}",
        std::process::id(),
        free_port()
    ));
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir_all(&folder).unwrap();
    folder
}

/// A fixtures folder: the repository's, on free ports, with `change` applied to
/// `environment.toml` (each replacement must match exactly once).
fn fixtures_folder(name: &str, change: &[(&str, &str)]) -> PathBuf {
    let folder = scratch(name);
    let mut environment = std::fs::read_to_string(repository().join("fixtures/environment.toml"))
        .unwrap()
        .replace(
            "http://127.0.0.1:8401/login",
            &format!("http://127.0.0.1:{}/login", free_port()),
        )
        .replace(
            "http://127.0.0.1:8402/mcp",
            &format!("http://127.0.0.1:{}/mcp", free_port()),
        );
    for (from, to) in change {
        assert_eq!(environment.matches(from).count(), 1, "{from}");
        environment = environment.replace(from, to);
    }
    std::fs::write(folder.join("environment.toml"), environment).unwrap();
    std::fs::copy(
        repository().join("fixtures/users.toml"),
        folder.join("users.toml"),
    )
    .unwrap();
    folder
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `testbed conformance --target url=… --record recordings` against an emulator of its own,
/// configured as the fixtures with `change`, on the scenarios `filter` keeps.
async fn record(name: &str, change: &[(&str, &str)], filter: Option<&str>, recordings: &Path) {
    let folder = fixtures_folder(name, change);
    let (mut emulator, url) = start_emulator(&folder.join("environment.toml")).await;
    let mut command = Command::new(env!("CARGO_BIN_EXE_testbed"));
    command
        .arg("conformance")
        .arg(format!("--target=url={url}"))
        .arg("--fixtures")
        .arg(&folder)
        .arg("--record")
        .arg(recordings)
        .arg("--report-dir")
        .arg(folder.join("reports"));
    if let Some(filter) = filter {
        command.args(["--filter", filter]);
    }
    let output = command.output().await.expect("testbed runs");
    emulator.kill().await.unwrap();
    // A changed environment fails some scenarios (that is the point); the run must still end
    // with its table, not refuse to start.
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "{name}: {}",
        text(&output)
    );
    let host = url.host_str().unwrap();
    let port = url.port().unwrap();
    for entry in std::fs::read_dir(recordings).unwrap() {
        let written = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(
            !written.contains(&format!("{host}:{port}")),
            "{name}: the environment's host in a recording"
        );
        assert!(
            !written.contains("test_sk_testbed_dev_secret"),
            "{name}: a secret in a recording"
        );
    }
    std::fs::remove_dir_all(&folder).unwrap();
}

/// `testbed parity recordings` against the embedded emulator: its exit code and parity.json.
async fn parity(recordings: &Path, reports: &Path) -> (Option<i32>, Value, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .arg("parity")
        .arg(recordings)
        .arg("--report-dir")
        .arg(reports)
        .output()
        .await
        .expect("testbed runs");
    let report = std::fs::read_to_string(reports.join("parity.json"))
        .unwrap_or_else(|error| panic!("parity.json: {error}\n{}", text(&output)));
    (
        output.status.code(),
        serde_json::from_str(&report).unwrap(),
        text(&output),
    )
}

/// Every difference of a parity report as (scenario, step or hop, field).
fn triples(report: &Value) -> BTreeSet<(String, String, String)> {
    report["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|scenario| scenario["differences"].as_array().unwrap())
        .map(|difference| {
            let place = match (difference.get("step"), difference.get("hop")) {
                (Some(step), _) => format!("step {step}"),
                (_, Some(hop)) => format!("hop {hop}"),
                _ => panic!("a difference without a place: {difference}"),
            };
            (
                difference["scenario"].as_str().unwrap().to_owned(),
                place,
                difference["field"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn expected(list: &[(&str, &str, &str)]) -> BTreeSet<(String, String, String)> {
    list.iter()
        .map(|(scenario, place, field)| {
            (
                (*scenario).to_owned(),
                (*place).to_owned(),
                (*field).to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn parity_names_exactly_the_differences_four_configuration_changes_make() {
    let recordings = scratch("changed");
    let reports = scratch("changed-reports");
    // Each change on an emulator of its own, with a scenario it affects and one it does not: on
    // one environment a registration switched off would stop every scenario that registers
    // before the code lifetime or the consent page could show.
    tokio::join!(
        record(
            "code-lifetime",
            &[(
                "authorization_code_lifetime_secs = 600",
                "authorization_code_lifetime_secs = 1200",
            )],
            Some("expired-code-is-refused,jwks-publishes-the-signing-key"),
            &recordings,
        ),
        record(
            "issuer-bound",
            &[("issuer_bound_tokens = false", "issuer_bound_tokens = true")],
            Some("agent-token-issued,management-token-issued"),
            &recordings,
        ),
        record(
            "no-dcr",
            &[(
                "dynamic_client_registration = true",
                "dynamic_client_registration = false",
            )],
            Some("dynamic-registration-of-a-public-client,environment-openid-configuration"),
            &recordings,
        ),
        record(
            "consent-prompt",
            &[("consent = \"auto\"", "consent = \"prompt\"")],
            Some("code-exchange-succeeds,unknown-client-gets-an-error-page"),
            &recordings,
        ),
    );

    let (code, report, output) = parity(&recordings, &reports).await;

    std::fs::remove_dir_all(&recordings).unwrap();
    std::fs::remove_dir_all(&reports).unwrap();
    assert_eq!(code, Some(1), "{output}");
    assert_eq!(
        triples(&report),
        expected(&[
            // A code that lives 20 minutes is still good after 601 seconds: the recorded token
            // answer is a success where the fixtures' emulator refuses.
            ("expired-code-is-refused", "step 6", "/status"),
            ("expired-code-is-refused", "step 6", "/body/access_token"),
            ("expired-code-is-refused", "step 6", "/body/expires_in"),
            ("expired-code-is-refused", "step 6", "/body/refresh_token"),
            ("expired-code-is-refused", "step 6", "/body/scope"),
            ("expired-code-is-refused", "step 6", "/body/token_type"),
            ("expired-code-is-refused", "step 6", "/body/error"),
            (
                "expired-code-is-refused",
                "step 6",
                "/body/error_description"
            ),
            // An issuer-bound agent token names the resource's issuer; the management token
            // is not an MCP token and keeps the environment's.
            (
                "agent-token-issued",
                "step 1",
                "/body/access_token/jwt/values/iss",
            ),
            // Registration switched off: 403 access_denied instead of the client.
            (
                "dynamic-registration-of-a-public-client",
                "step 1",
                "/status"
            ),
            (
                "dynamic-registration-of-a-public-client",
                "step 1",
                "/body/application_type"
            ),
            (
                "dynamic-registration-of-a-public-client",
                "step 1",
                "/body/client_id"
            ),
            (
                "dynamic-registration-of-a-public-client",
                "step 1",
                "/body/client_id_issued_at"
            ),
            (
                "dynamic-registration-of-a-public-client",
                "step 1",
                "/body/client_name"
            ),
            (
                "dynamic-registration-of-a-public-client",
                "step 1",
                "/body/grant_types"
            ),
            (
                "dynamic-registration-of-a-public-client",
                "step 1",
                "/body/redirect_uris"
            ),
            (
                "dynamic-registration-of-a-public-client",
                "step 1",
                "/body/response_types"
            ),
            (
                "dynamic-registration-of-a-public-client",
                "step 1",
                "/body/scope"
            ),
            (
                "dynamic-registration-of-a-public-client",
                "step 1",
                "/body/token_endpoint_auth_method",
            ),
            (
                "dynamic-registration-of-a-public-client",
                "step 1",
                "/body/error"
            ),
            (
                "dynamic-registration-of-a-public-client",
                "step 1",
                "/body/error_description"
            ),
            // The consent page (`no-store`) where the fixtures' emulator goes straight back to
            // the client (a redirect without `Cache-Control`); the recorded run stops there, so
            // its token step is missing.
            ("code-exchange-succeeds", "step 4", "/status"),
            ("code-exchange-succeeds", "step 4", "/headers/location"),
            ("code-exchange-succeeds", "step 4", "/headers/cache-control"),
            ("code-exchange-succeeds", "step 4", "/body"),
            ("code-exchange-succeeds", "step 5", ""),
        ]),
        "{output}"
    );
    // Each difference names the fidelity rows of its scenario.
    let differences: Vec<&Value> = report["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|scenario| scenario["differences"].as_array().unwrap())
        .collect();
    assert!(
        differences
            .iter()
            .all(|difference| !difference["rows"].as_array().unwrap().is_empty()),
        "{output}"
    );
    assert!(
        output.contains("\n  agent-token-issued step 1 (client-credentials) /body/access_token/jwt/values/iss\n    recorded: \"{issuer}\"\n    replayed: \"{env}\"\n"),
        "{output}"
    );
}

#[tokio::test]
async fn a_recording_of_an_emulator_configured_as_the_fixtures_round_trips_without_a_difference() {
    let recordings = scratch("same");
    let reports = scratch("same-reports");
    record("same", &[], None, &recordings).await;
    let written = std::fs::read_dir(&recordings).unwrap().count();

    let (code, report, output) = parity(&recordings, &reports).await;

    std::fs::remove_dir_all(&recordings).unwrap();
    std::fs::remove_dir_all(&reports).unwrap();
    assert_eq!(code, Some(0), "{output}");
    assert!(written >= 60, "{written} recordings");
    assert_eq!(triples(&report), BTreeSet::new(), "{output}");
    let scenarios = report["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), written);
    assert!(
        scenarios
            .iter()
            .all(|scenario| scenario["status"] == "same" && scenario["source"] == "emulator"),
        "{output}"
    );
}

/// `--target scalekit` against an emulator that plays a real environment whose registration is
/// switched off: the two probes that register fail, and are findings (INFO), not failures.
#[tokio::test]
async fn a_failed_probe_on_the_scalekit_target_is_a_finding_and_the_run_passes() {
    let folder = fixtures_folder(
        "probe",
        &[(
            "dynamic_client_registration = true",
            "dynamic_client_registration = false",
        )],
    );
    let recordings = folder.join("recordings");
    let (mut emulator, url) = start_emulator(&folder.join("environment.toml")).await;
    let fixtures = testbed_stack::Fixtures::from_dir(&folder).unwrap();
    let environment = &fixtures.environment;
    let run = |probe: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_testbed"));
        command
            .args(["conformance", "--target", "scalekit", "--fixtures"])
            .arg(&folder)
            .args([
                "--filter",
                "dynamic-registration-of-a-public-client,registration-without-redirect-uris,jwks-publishes",
            ])
            .arg("--report-dir")
            .arg(folder.join("reports"))
            .env("SCALEKIT_ENVIRONMENT_URL", url.as_str())
            .env("SCALEKIT_CLIENT_ID", &environment.api_client.client_id)
            .env(
                "SCALEKIT_CLIENT_SECRET",
                environment.api_client.client_secret.expose(),
            )
            .env("SCALEKIT_CONNECTION_ID", &environment.connections[0].id)
            .env("SCALEKIT_RESOURCE_ID", &environment.resources[0].id);
        if probe {
            command.arg("--probe").arg("--record").arg(&recordings);
        }
        command.output()
    };

    let without = run(false).await.expect("testbed runs");
    let with = run(true).await.expect("testbed runs");

    emulator.kill().await.unwrap();
    let recording =
        std::fs::read_to_string(recordings.join("dynamic-registration-of-a-public-client.json"));
    std::fs::remove_dir_all(&folder).unwrap();
    assert_eq!(without.status.code(), Some(0), "{}", text(&without));
    assert!(
        text(&without).contains("\n1 passed, 0 failed, 2 skipped\n"),
        "{}",
        text(&without)
    );
    assert_eq!(with.status.code(), Some(0), "{}", text(&with));
    let output = text(&with);
    assert!(
        output.contains("INFO   dynamic-registration-of-a-public-client"),
        "{output}"
    );
    assert!(
        output.contains("INFO   registration-without-redirect-uris-is-refused"),
        "{output}"
    );
    assert!(
        output.contains("\nFidelity findings (probes whose answer differs from the emulator's; correct docs/fidelity.md):\n  dynamic-registration-of-a-public-client/step-01-register: "),
        "{output}"
    );
    assert!(
        output.contains(", 2 fidelity findings\n1 passed, 0 failed, 0 skipped\n"),
        "{output}"
    );
    let recording: Value =
        serde_json::from_str(&recording.expect("the real answer is recorded")).unwrap();
    assert_eq!(recording["source"], "scalekit");
    assert_eq!(recording["target"], "scalekit");
    assert_eq!(recording["steps"][0]["answer"]["status"], 403);
}

#[tokio::test]
async fn probe_without_the_scalekit_target_is_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(["conformance", "--probe", "--list"])
        .output()
        .await
        .expect("testbed runs");
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("error: --probe needs --target scalekit"),
        "{}",
        text(&output)
    );
}

#[tokio::test]
async fn a_recording_of_a_scenario_the_suite_lacks_is_refused_naming_its_file() {
    let recordings = scratch("unknown");
    let file = recordings.join("renamed.json");
    std::fs::write(
        &file,
        r#"{"format": 1, "scenario": "no-such-scenario", "recorded_at": "2026-12-07",
            "source": "emulator", "target": "embedded", "steps": [], "hops": []}"#,
    )
    .unwrap();

    let output = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .arg("parity")
        .arg(&recordings)
        .arg("--report-dir")
        .arg(recordings.join("reports"))
        .output()
        .await
        .expect("testbed runs");

    std::fs::remove_dir_all(&recordings).unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains(&format!(
            "error: {}: scenario \"no-such-scenario\" is not in the scenario set",
            file.display()
        )),
        "{}",
        text(&output)
    );
}
