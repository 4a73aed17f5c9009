//! The whole stack with the resource intersecting scopes with the user's permissions
//! (`intersect_scopes_user_permission`): Your App posts the persona's `roles`, the emulator
//! leaves out a requested scope no role grants, and the reference MCP server then refuses the
//! token with 403 `insufficient_scope` for its tools, which need `mcp:read`.

use reqwest::StatusCode;
use reqwest::header::{LOCATION, WWW_AUTHENTICATE};
use serde_json::{Value, json};
use url::Url;

use super::*;
use scalekit_emulator::ClientConfig;

const CLIENT: &str = "scope-test-client";
const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";
/// RFC 7636 Appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// A stack whose resource intersects scopes with permissions, Your App signing in `persona`.
async fn intersecting_stack(persona: &str) -> Stack {
    let mut fixtures = Fixtures::embedded().expect("the repository's fixtures");
    let environment = &mut fixtures.environment;
    environment.resources[0].intersect_scopes_user_permission = true;
    environment.clients.push(ClientConfig {
        client_id: CLIENT.to_owned(),
        redirect_uris: vec![REDIRECT_URI.to_owned()],
        resource: environment.resources[0].id.clone(),
        client_secret: None,
        client_name: None,
    });
    Stack::spawn(StackConfig::ephemeral(fixtures, Some(persona)))
        .await
        .expect("the stack starts")
}

fn location(response: &reqwest::Response) -> Url {
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|value| value.to_str().ok())
        .expect("a Location");
    Url::parse(location).expect("an absolute Location")
}

fn query(url: &Url, name: &str) -> String {
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
        .unwrap_or_else(|| panic!("{name} missing from {url}"))
}

/// Authorize asking for `scope`, Your App's headless sign-in, the callback and the code
/// exchange: the token response.
async fn tokens(stack: &Stack, scope: &str) -> Value {
    // A browser: it keeps the sign-in cookie from `/oauth/authorize` for the callback.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .expect("a client");
    let mut authorize = stack
        .environment_url
        .join("oauth/authorize")
        .expect("a URL");
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT)
        .append_pair("redirect_uri", REDIRECT_URI)
        .append_pair("scope", scope)
        .append_pair("state", "client-state")
        .append_pair("code_challenge", CHALLENGE)
        .append_pair("code_challenge_method", "S256")
        .append_pair("resource", stack.mcp_url.as_str());
    let mut next = authorize;
    // Scalekit → Your App's login endpoint → partner:callback → the client's redirect URI.
    for _ in 0..3 {
        let response = browser.get(next.clone()).send().await.expect("an answer");
        assert_eq!(response.status(), StatusCode::FOUND, "{next}");
        next = location(&response);
        if next.as_str().starts_with(REDIRECT_URI) {
            break;
        }
    }
    assert!(next.as_str().starts_with(REDIRECT_URI), "{next}");
    let token = stack.environment_url.join("oauth/token").expect("a URL");
    let response = browser
        .post(token)
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT),
            ("code", &query(&next, "code")),
            ("code_verifier", VERIFIER),
            ("redirect_uri", REDIRECT_URI),
            ("resource", stack.mcp_url.as_str()),
        ])
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("JSON")
}

/// `initialize` at the reference MCP server with `access_token`.
async fn initialize(stack: &Stack, access_token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(stack.mcp_url.clone())
        .bearer_auth(access_token)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "scope-test", "version": "1"}
            }
        }))
        .send()
        .await
        .expect("an answer")
}

#[tokio::test]
async fn a_user_without_the_permission_gets_a_token_without_the_scope_and_the_server_refuses_it() {
    // Linus is posted without roles: no permission at all.
    let stack = intersecting_stack("linus").await;
    let answer = tokens(&stack, "openid mcp:read").await;
    assert_eq!(answer["scope"], "openid");
    let response = initialize(&stack, answer["access_token"].as_str().expect("a token")).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let challenge = response
        .headers()
        .get(WWW_AUTHENTICATE)
        .and_then(|value| value.to_str().ok())
        .expect("a challenge");
    assert!(
        challenge.contains("error=\"insufficient_scope\", scope=\"mcp:read\""),
        "{challenge}"
    );
}

#[tokio::test]
async fn a_user_whose_role_grants_the_permission_gets_the_scope_and_the_server_serves_them() {
    // Grace is posted with the role `member`, which grants `mcp:read` and not `mcp:write`.
    let stack = intersecting_stack("grace").await;
    let answer = tokens(&stack, "openid mcp:read mcp:write").await;
    assert_eq!(answer["scope"], "openid mcp:read");
    let response = initialize(&stack, answer["access_token"].as_str().expect("a token")).await;
    assert_eq!(response.status(), StatusCode::OK);
}
