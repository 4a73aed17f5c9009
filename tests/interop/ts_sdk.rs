//! The official TypeScript MCP SDK client completes the flow and calls `whoami`.

use serde_json::Value;
use tokio::process::Command;

use crate::{node, support};

#[tokio::test]
async fn the_typescript_sdk_client_completes_the_flow_and_calls_whoami() {
    if let Some(reason) = node::missing_setup("ts-sdk", "@modelcontextprotocol/sdk") {
        eprintln!("skipping the TypeScript SDK interop test: {reason}");
        return;
    }
    let stack = support::spawn_stack("ada").await;

    let output = Command::new("node")
        .arg("driver.mjs")
        .arg(stack.mcp_url.as_str())
        .current_dir(node::package_dir("ts-sdk"))
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
