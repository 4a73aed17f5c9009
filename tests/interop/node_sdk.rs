//! The official Scalekit Node SDK (`@scalekit-sdk/node`) against the stack: it posts the user of
//! a pending login request with `auth.updateLoginUserDetails` over gRPC (h2c), authenticating by
//! client credentials after the emulator's UNAUTHENTICATED, and `validateToken` /
//! `validateAccessToken` accept the access token the flow then issues.

use reqwest::StatusCode;
use reqwest::header::LOCATION;
use scalekit_emulator::types::{PkceVerifier, pkce_s256};
use serde_json::{Value, json};
use tokio::process::Command;
use url::Url;

use crate::{node, support};

const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CLIENT_STATE: &str = "node-sdk-client-state";

/// Runs `sdk.mjs <command> <input>` and returns its JSON line, asserting `ok`.
async fn run_sdk(command: &str, input: &Value) -> Value {
    let output = Command::new("node")
        .arg("sdk.mjs")
        .arg(command)
        .arg(input.to_string())
        .current_dir(node::package_dir("node-sdk"))
        .kill_on_drop(true)
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last_line = stdout.lines().last().unwrap_or_default();
    let result: Value = serde_json::from_str(last_line).unwrap_or_else(|error| {
        panic!("sdk.mjs {command} output is not JSON ({error}):\n{stdout}\n{stderr}")
    });
    assert_eq!(result["ok"], Value::Bool(true), "{result}\n{stderr}");
    result
}

/// The `Location` of a 302.
fn redirect(response: &reqwest::Response) -> Url {
    assert_eq!(response.status(), StatusCode::FOUND, "{response:?}");
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|value| value.to_str().ok())
        .expect("a Location");
    Url::parse(location).expect("an absolute Location")
}

fn query_param(url: &Url, name: &str) -> String {
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
        .unwrap_or_else(|| panic!("{name} missing from {url}"))
}

#[tokio::test]
async fn the_node_sdk_posts_the_user_over_grpc_and_validates_the_issued_access_token() {
    if let Some(reason) = node::missing_setup("node-sdk", "@scalekit-sdk/node") {
        eprintln!("skipping the Scalekit Node SDK interop test: {reason}");
        return;
    }
    let stack = support::spawn_stack("ada").await;
    let environment = &stack.fixtures.environment;
    let resource = &environment.resources[0];
    let env_url = stack
        .environment_url
        .as_str()
        .trim_end_matches('/')
        .to_owned();
    // The MCP client and the browser in one: it keeps the sign-in's cookie from the authorize
    // redirect for the callback, as a browser does (Decisions §9).
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .expect("a client");

    // An MCP client registers and starts a flow; the browser is not sent to Your App, so the
    // login request stays pending for the SDK.
    let registration: Value = http
        .post(format!(
            "{env_url}/api/v1/resources/{}/clients:register",
            resource.id
        ))
        .json(&json!({"client_name": "node-sdk interop", "redirect_uris": [REDIRECT_URI]}))
        .send()
        .await
        .expect("DCR answers")
        .json()
        .await
        .expect("DCR JSON");
    let client_id = registration["client_id"]
        .as_str()
        .expect("a client_id")
        .to_owned();
    let verifier = PkceVerifier::parse(VERIFIER).expect("a verifier");
    let challenge = pkce_s256(&verifier);
    let authorize = http
        .get(format!("{env_url}/oauth/authorize"))
        .query(&[
            ("response_type", "code"),
            ("client_id", client_id.as_str()),
            ("redirect_uri", REDIRECT_URI),
            ("scope", "openid email mcp:read"),
            ("state", CLIENT_STATE),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("resource", stack.mcp_url.as_str()),
        ])
        .send()
        .await
        .expect("authorize answers");
    let login = redirect(&authorize);
    let login_request_id = query_param(&login, "login_request_id");
    let login_state = query_param(&login, "state");

    // The SDK posts the user over gRPC.
    let user = json!({
        "sub": "node-sdk-user-1",
        "email": "node.sdk@example.com",
        "emailVerified": true,
        "givenName": "Node",
        "familyName": "Sdk",
        "customAttributes": {"team": "interop", "seats": 3},
        "roles": ["member"],
    });
    let posted = run_sdk(
        "update-user",
        &json!({
            "envUrl": env_url,
            "clientId": environment.api_client.client_id,
            "clientSecret": environment.api_client.client_secret.expose(),
            "connectionId": resource.connection,
            "loginRequestId": login_request_id,
            "user": user,
        }),
    )
    .await;
    assert!(
        posted["authRequestId"]
            .as_str()
            .is_some_and(|id| id.starts_with("req_")),
        "{posted}"
    );
    // It had no token before the call and has one after: the emulator's UNAUTHENTICATED made it
    // authenticate by client credentials and retry.
    assert_eq!(posted["tokenBefore"], Value::Bool(false), "{posted}");
    assert_eq!(posted["tokenAfter"], Value::Bool(true), "{posted}");

    // The browser comes back; consent is automatic; the client exchanges the code.
    let callback = http
        .get(format!(
            "{env_url}/sso/v1/connections/{}/partner:callback",
            resource.connection
        ))
        .query(&[("state", login_state.as_str())])
        .send()
        .await
        .expect("partner:callback answers");
    let back = redirect(&callback);
    assert!(
        back.as_str().starts_with(&format!("{REDIRECT_URI}?")),
        "{back}"
    );
    assert_eq!(query_param(&back, "state"), CLIENT_STATE);
    let code = query_param(&back, "code");
    let tokens: Value = http
        .post(format!("{env_url}/oauth/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", client_id.as_str()),
            ("code", code.as_str()),
            ("code_verifier", VERIFIER),
            ("redirect_uri", REDIRECT_URI),
            ("resource", stack.mcp_url.as_str()),
        ])
        .send()
        .await
        .expect("the token endpoint answers")
        .json()
        .await
        .expect("token JSON");
    let access_token = tokens["access_token"].as_str().expect("an access token");

    // The SDK validates that token as an MCP server would.
    let validated = run_sdk(
        "validate-token",
        &json!({
            "envUrl": env_url,
            "clientId": environment.api_client.client_id,
            "clientSecret": environment.api_client.client_secret.expose(),
            "accessToken": access_token,
            "issuer": env_url,
            "audience": [resource.id],
            "requiredScopes": ["mcp:read"],
        }),
    )
    .await;
    let payload = &validated["payload"];
    assert_eq!(payload["iss"], env_url.as_str());
    assert_eq!(payload["aud"], json!([stack.mcp_url.as_str(), resource.id]));
    assert_eq!(payload["xuid"], "node-sdk-user-1", "{payload}");
    assert_eq!(payload["email"], "node.sdk@example.com");
    assert_eq!(
        payload["custom_claims"],
        json!({"team": "interop", "seats": 3})
    );
    assert_eq!(payload["roles"], json!(["member"]));
    assert_eq!(payload["client_id"], client_id.as_str());
    assert_eq!(payload["scopes"], json!(["openid", "email", "mcp:read"]));
    assert_eq!(validated["valid"], Value::Bool(true));
    assert_eq!(validated["wrongAudience"], Value::Bool(false));
    assert_eq!(validated["wrongIssuer"], Value::Bool(false));
    assert_eq!(validated["missingScope"], Value::Bool(false));
    assert_eq!(validated["tamperedRejected"], Value::Bool(true));
}
