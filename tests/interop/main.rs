//! Interop: the official TypeScript MCP SDK client (`@modelcontextprotocol/sdk`) completes the
//! whole flow against the stack, driven headlessly by `ts-sdk/driver.mjs`.
//!
//! Needs Node.js and `npm ci` in `tests/interop/ts-sdk` (`.ci/run` and `cargo xtask ci` do it).
//! Without them the test says why and passes outside CI; under `CI=true` it fails instead.

#[path = "../support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use tokio::process::Command;

fn ts_sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/ts-sdk")
}

/// `Some(reason)` when the Node side is not installed; a failure under CI.
fn missing_node_setup() -> Option<String> {
    let installed = ts_sdk_dir().join("node_modules/@modelcontextprotocol/sdk/package.json");
    let reason = if !installed.exists() {
        format!(
            "{} is missing: run `npm ci` in tests/interop/ts-sdk",
            installed.display()
        )
    } else if std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_err()
    {
        "node is not on PATH".to_owned()
    } else {
        return None;
    };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "required under CI=true: {reason}"
    );
    Some(reason)
}

#[tokio::test]
async fn the_typescript_sdk_client_completes_the_flow_and_calls_whoami() {
    if let Some(reason) = missing_node_setup() {
        eprintln!("skipping the TypeScript SDK interop test: {reason}");
        return;
    }
    let stack = support::spawn_stack("ada").await;

    let output = Command::new("node")
        .arg("driver.mjs")
        .arg(stack.mcp_url.as_str())
        .current_dir(ts_sdk_dir())
        .kill_on_drop(true)
        .output()
        .await
        .expect("node runs");

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last_line = stdout.lines().last().unwrap_or_default();
    let result: Value = serde_json::from_str(last_line)
        .unwrap_or_else(|error| panic!("driver output is not JSON ({error}):\n{stdout}\n{stderr}"));
    assert_eq!(result["ok"], Value::Bool(true), "{result}\n{stderr}");
    let ada = stack.fixtures.persona("ada").unwrap();
    assert_eq!(
        result["whoami"]["email"].as_str(),
        ada.claims.email.as_deref()
    );
    assert_eq!(result["whoami"]["xuid"].as_str(), ada.claims.sub.as_deref());
    // The SDK asks for the challenged scope only, so no offline_access and no refresh token.
    assert_eq!(result["scope"].as_str(), Some("mcp:read"));
    assert_eq!(result["hasRefreshToken"], Value::Bool(false));
}
