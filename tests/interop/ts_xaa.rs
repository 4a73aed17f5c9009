//! Cross-app access (enterprise-managed authorization, ID-JAG) with the official TypeScript MCP
//! SDK v2 client (`@modelcontextprotocol/client` 2.4.0, whose `CrossAppAccessProvider` the v1
//! `@modelcontextprotocol/sdk` does not have): the emulator's identity provider signs Ada in
//! (the control API's ID token), the provider gets an ID-JAG there by RFC 8693 token exchange and
//! an access token at `/oauth/token` with `jwt-bearer`, without a browser or a consent page, and
//! calls `whoami`. The same ID-JAG presented again is refused, and neither the request log nor the
//! flow inspector shows it.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::process::Command;

use crate::{node, support};

const IDP: &str = "acme-idp";

#[tokio::test]
async fn the_typescript_sdk_cross_app_access_provider_gets_a_token_without_consent_and_calls_whoami()
 {
    if let Some(reason) = node::missing_setup("ts-client-v2", "@modelcontextprotocol/client") {
        eprintln!("skipping the TypeScript SDK v2 cross-app access interop test: {reason}");
        return;
    }
    let stack = support::spawn_stack("ada").await;
    let environment = stack
        .environment_url
        .as_str()
        .trim_end_matches('/')
        .to_owned();
    let config = &stack.fixtures.environment;
    let resource = &config.resources[0];
    let idp = &config.trusted_idps[0];
    let idp_client = &idp.clients[0];
    let agent = resource
        .agents
        .iter()
        .find(|agent| agent.client_id == idp_client.resource_client_id)
        .expect("the identity provider's client is the resource's agent");
    let ada = &idp.users[0];
    let http = reqwest::Client::new();

    // The single sign-on at the identity provider: Ada's ID token for its client.
    let signed_in: Value = http
        .post(format!("{environment}/_emulator/idps/{IDP}/id-token"))
        .json(&json!({ "user": ada.sub }))
        .send()
        .await
        .expect("the control API answers")
        .json()
        .await
        .expect("JSON");
    let id_token = signed_in["id_token"].as_str().expect("an ID token");

    let xaa_config = json!({
        "mcpUrl": stack.mcp_url.as_str(),
        "idpUrl": format!("{environment}/_idp/{IDP}"),
        "idToken": id_token,
        "idpClientId": idp_client.client_id,
        "idpClientSecret": idp_client.client_secret.expose(),
        "clientId": agent.client_id,
        "clientSecret": agent.client_secret.expose(),
        "expectedIssuer": format!("{environment}/resources/{}", resource.id),
        "tokenEndpoint": format!("{environment}/oauth/token"),
    });
    let output = Command::new("node")
        .arg("xaa-driver.mjs")
        .env("XAA_CONFIG", xaa_config.to_string())
        .current_dir(node::package_dir("ts-client-v2"))
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
    assert_eq!(result["whoami"]["email"].as_str(), Some(ada.email.as_str()));
    assert_eq!(result["whoami"]["xuid"].as_str(), Some(ada.sub.as_str()));
    // The provider asks for the challenged scope only; the grant issues no refresh token.
    assert_eq!(result["scope"].as_str(), Some("mcp:read"));
    assert_eq!(result["hasRefreshToken"], Value::Bool(false));
    assert_eq!(
        result["replay"].as_str(),
        Some("JWT grant exchange failed: invalid_grant - the assertion was already used")
    );

    // The request log: discovery of the identity provider, its token exchange and the
    // jwt-bearer grant, and no authorization request (no browser, no consent).
    let log: Value = http
        .get(format!("{environment}/_emulator/requests?limit=200"))
        .send()
        .await
        .expect("the request log")
        .json()
        .await
        .expect("JSON");
    let requests = log["requests"].as_array().expect("requests");
    let served = |method: &str, path: &str, status: u64| {
        requests.iter().any(|request| {
            request["method"] == method && request["path"] == path && request["status"] == status
        })
    };
    assert!(
        served(
            "GET",
            &format!("/.well-known/oauth-authorization-server/_idp/{IDP}"),
            200
        ),
        "{log}"
    );
    assert!(
        served("POST", &format!("/_idp/{IDP}/oauth/token"), 200),
        "{log}"
    );
    assert!(served("POST", "/oauth/token", 200), "{log}");
    assert!(served("POST", "/oauth/token", 400), "the replay: {log}");
    assert!(
        !requests
            .iter()
            .any(|request| request["path"] == "/oauth/authorize"),
        "{log}"
    );

    // The flow inspector shows the exchange as a flow of its own, its hops labelled by grant,
    // and never the ID token or an assertion.
    let list: Value = http
        .get(format!("{environment}/_emulator/flows"))
        .send()
        .await
        .expect("the flows")
        .json()
        .await
        .expect("JSON");
    let id = list["flows"]
        .as_array()
        .and_then(|flows| {
            flows
                .iter()
                .filter_map(|flow| flow["id"].as_str())
                .find(|id| id.starts_with("xaa tkn_"))
        })
        .unwrap_or_else(|| panic!("no cross-app access flow: {list}"));
    let flow = http
        .get(format!(
            "{environment}/_emulator/flows/{}",
            id.replace(' ', "%20")
        ))
        .send()
        .await
        .expect("the flow");
    assert_eq!(flow.status(), StatusCode::OK);
    let flow = flow.text().await.expect("the flow");
    assert!(flow.contains("POST /oauth/token (jwt-bearer)"), "{flow}");
    assert!(
        flow.contains(&format!("POST /_idp/{IDP}/oauth/token (token-exchange)")),
        "the token exchange joins the flow its ID-JAG opened: {flow}"
    );
    let id_token_tail = &id_token[id_token.len() - 40..];
    for record in [&flow, &log.to_string()] {
        assert!(!record.contains(id_token_tail), "{record}");
        assert!(
            !record.contains("eyJhbGciOiJSUzI1NiIsImtpZCI6"),
            "a JWT shown whole: {record}"
        );
    }
}
