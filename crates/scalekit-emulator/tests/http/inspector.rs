//! The flow inspector over HTTP: a whole flow as one timeline with its checks and no secret,
//! a failed exchange naming its check, the page and its live event stream, reset, and its
//! absence with the control API off.

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    API_CLIENT_SECRET, CONNECTION, ERROR_INFO, PUBLIC_CLIENT, REDIRECT_URI, SERVER_URL, TestEnv,
    VERIFIER, ada, json as json_body, location, query_param,
};

async fn get_json(env: &TestEnv, path: &str) -> Result<Value> {
    json_body(env.get(path).await?, StatusCode::OK).await
}

/// `(from, to, summary, status, matched_by)` of every hop.
fn lines(flow: &Value) -> Vec<(String, String, String, u64, String)> {
    flow["hop_list"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|hop| {
            (
                hop["from"].as_str().unwrap_or_default().to_owned(),
                hop["to"].as_str().unwrap_or_default().to_owned(),
                hop["summary"].as_str().unwrap_or_default().to_owned(),
                hop["status"].as_u64().unwrap_or_default(),
                hop["matched_by"].as_str().unwrap_or("none").to_owned(),
            )
        })
        .collect()
}

fn line(
    from: &str,
    to: &str,
    summary: &str,
    status: u64,
    matched_by: &str,
) -> (String, String, String, u64, String) {
    (
        from.to_owned(),
        to.to_owned(),
        summary.to_owned(),
        status,
        matched_by.to_owned(),
    )
}

/// `(name, passed)` of a hop's checks.
fn checks(hop: &Value) -> Vec<(String, bool)> {
    hop["checks"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|check| {
            (
                check["name"].as_str().unwrap_or_default().to_owned(),
                check["passed"].as_bool().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_whole_flow_shows_as_one_timeline_with_its_checks_and_no_secret() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let management = env.management_token().await?;
    let (lri, login_state) = env.start_login().await?;
    let response = env.post_user(&lri, Some(&management), &ada()).await?;
    ensure!(response.status() == StatusCode::OK, "user post");
    let redirect = location(env.callback(&login_state).await?, StatusCode::FOUND)?;
    let code = query_param(&redirect, "code")?;
    let tokens = env.exchange(&code, VERIFIER, StatusCode::OK).await?;

    let listed = get_json(&env, "/_emulator/flows").await?;
    let summary = &listed["flows"][0];
    assert_eq!(listed["flows"].as_array().map(Vec::len), Some(1));
    assert_eq!(summary["id"], lri.as_str());
    assert_eq!(summary["client_id"], PUBLIC_CLIENT);
    assert_eq!(summary["tokens_issued"], true);
    assert_eq!(summary["failed_checks"], 0);
    assert_eq!(summary["hops"], 4);
    // The management token came before any flow: Your App's, but tied to none.
    assert_eq!(
        listed["other_requests"][0]["summary"],
        "POST /oauth/token (client_credentials)"
    );
    assert_eq!(listed["other_requests"][0]["from"], "your_app");

    let flow = get_json(&env, &format!("/_emulator/flows/{lri}")).await?;
    assert_eq!(
        lines(&flow),
        [
            line("browser", "emulator", "GET /oauth/authorize", 302, "key"),
            line(
                "your_app",
                "emulator",
                &format!("POST /api/v1/connections/{CONNECTION}/auth-requests/{lri}/user"),
                200,
                "key"
            ),
            line(
                "browser",
                "emulator",
                &format!("GET /sso/v1/connections/{CONNECTION}/partner:callback"),
                302,
                "key"
            ),
            line(
                "mcp_client",
                "emulator",
                "POST /oauth/token (authorization_code)",
                200,
                "key"
            ),
        ]
    );
    let hops = flow["hop_list"].as_array().context("hop_list")?;
    assert_eq!(
        checks(&hops[0]),
        [
            ("client known".to_owned(), true),
            ("redirect_uri registered".to_owned(), true),
            ("PKCE S256 challenge present".to_owned(), true),
            ("resource matches".to_owned(), true),
        ]
    );
    assert_eq!(
        checks(&hops[3]),
        [
            ("code single-use and unexpired".to_owned(), true),
            ("client matches".to_owned(), true),
            ("redirect_uri matches".to_owned(), true),
            ("resource matches".to_owned(), true),
            ("PKCE S256 verifier matches".to_owned(), true),
        ]
    );
    let to_login = hops[0]["response"]["location"]
        .as_str()
        .context("the authorize hop's Location")?;
    assert!(
        to_login.starts_with(&format!(
            "http://127.0.0.1:8401/login?login_request_id={lri}&state="
        )),
        "{to_login}"
    );
    assert!(to_login.ends_with('…'), "the state is cut: {to_login}");
    let authorization = hops[1]["request_headers"]
        .as_array()
        .context("headers")?
        .iter()
        .find(|header| header["name"] == "authorization")
        .context("the user post's bearer")?;
    assert!(
        authorization["value"]
            .as_str()
            .is_some_and(|value| value.starts_with("Bearer ") && value.ends_with('…')),
        "{authorization}"
    );
    let encoded =
        |text: &str| -> String { url::form_urlencoded::byte_serialize(text.as_bytes()).collect() };
    let curl = hops[3]["curl"].as_str().context("curl")?;
    assert!(
        curl.starts_with(&format!(
            "curl -i '{}/oauth/token' \\\n  -X 'POST'",
            env.base
        )),
        "{curl}"
    );
    assert!(
        curl.ends_with(&format!(
            "--data-raw 'grant_type=authorization_code&client_id={PUBLIC_CLIENT}&code=<redacted>\
             &code_verifier=<redacted>&redirect_uri={}&resource={}'",
            encoded(REDIRECT_URI),
            encoded(SERVER_URL)
        )),
        "{curl}"
    );
    assert_eq!(
        hops[3]["response"]["content_type"], "application/json",
        "{}",
        hops[3]
    );

    let everything = format!("{listed}{flow}");
    let mut secrets = vec![
        code.clone(),
        VERIFIER.to_owned(),
        management,
        API_CLIENT_SECRET.to_owned(),
        login_state,
    ];
    for name in ["access_token", "refresh_token", "id_token"] {
        if let Some(token) = tokens[name].as_str() {
            secrets.push(token.to_owned());
            // A JWT's payload alone would be a leak too.
            secrets.extend(token.split('.').skip(1).map(str::to_owned));
        }
    }
    for secret in &secrets {
        assert!(
            !everything.contains(secret.as_str()),
            "a secret ({}…) is in the inspector's answers",
            &secret[..4]
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_failing_token_exchange_shows_the_check_it_failed() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let management = env.management_token().await?;
    let (lri, login_state) = env.start_login().await?;
    env.post_user(&lri, Some(&management), &ada()).await?;
    let redirect = location(env.callback(&login_state).await?, StatusCode::FOUND)?;
    let code = query_param(&redirect, "code")?;
    let wrong_verifier = "x".repeat(43);
    let error = env
        .exchange(&code, &wrong_verifier, StatusCode::BAD_REQUEST)
        .await?;
    assert_eq!(error["error"], "invalid_grant");

    let flow = get_json(&env, &format!("/_emulator/flows/{lri}")).await?;
    assert_eq!(flow["failed_checks"], 1);
    assert_eq!(flow["tokens_issued"], false);
    let last = flow["hop_list"]
        .as_array()
        .and_then(|hops| hops.last())
        .context("a hop")?;
    assert_eq!(last["status"], 400);
    assert_eq!(last["response"]["error"], "invalid_grant");
    assert_eq!(
        last["checks"],
        json!([
            {"name": "code single-use and unexpired", "passed": true},
            {"name": "client matches", "passed": true},
            {"name": "redirect_uri matches", "passed": true},
            {"name": "resource matches", "passed": true},
            {
                "name": "PKCE S256 verifier matches",
                "passed": false,
                "detail": "invalid_grant: code_verifier does not match the code_challenge"
            }
        ])
    );
    Ok(())
}

#[tokio::test]
async fn the_page_is_served_and_its_event_stream_announces_a_flow_as_it_starts() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let page = env.get("/_emulator/ui").await?;
    assert_eq!(page.status(), StatusCode::OK);
    let policy = page
        .headers()
        .get("content-security-policy")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(policy.contains("connect-src 'self'"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    let html = page.text().await?;
    assert!(html.contains("<title>Flow inspector"), "{html}");
    assert!(html.contains("new EventSource(\"ui/events\")"));

    let mut events = env.get("/_emulator/ui/events").await?;
    assert_eq!(events.status(), StatusCode::OK);
    assert_eq!(
        events
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok()),
        Some("text/event-stream")
    );
    let (lri, _) = env.start_login().await?;
    let wanted = format!("event: update\ndata: {{\"flow\":\"{lri}\"}}");
    let mut received = String::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !received.contains(&wanted) {
            let chunk = events.chunk().await?.context("the stream ended")?;
            received.push_str(&String::from_utf8_lossy(&chunk));
        }
        anyhow::Ok(())
    })
    .await
    .with_context(|| format!("no update for {lri}; received {received:?}"))??;
    Ok(())
}

#[tokio::test]
async fn reset_forgets_every_flow_and_an_unknown_flow_is_not_found() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let (lri, _) = env.start_login().await?;
    let listed = get_json(&env, "/_emulator/flows").await?;
    assert_eq!(listed["flows"][0]["id"], lri.as_str());

    let reset = env
        .http
        .post(env.url("/_emulator/reset"))
        .header("content-type", "application/json")
        .send()
        .await?;
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        get_json(&env, "/_emulator/flows").await?,
        json!({"flows": [], "other_requests": []})
    );
    let missing = env.get(&format!("/_emulator/flows/{lri}")).await?;
    assert_eq!(
        json_body(missing, StatusCode::NOT_FOUND).await?,
        json!({
            "code": 5,
            "message": format!("flow {lri} not found: it is unknown or was dropped for newer ones"),
            "details": [{"@type": ERROR_INFO, "error_code": "NOT_FOUND"}]
        })
    );
    Ok(())
}

#[tokio::test]
async fn with_control_off_there_is_no_inspector() -> Result<()> {
    let env = TestEnv::spawn_with(|config| config.control = false).await?;
    env.start_login().await?;
    for path in ["/_emulator/ui", "/_emulator/flows", "/_emulator/ui/events"] {
        let response = env.get(path).await?;
        assert_eq!(
            json_body(response, StatusCode::NOT_FOUND).await?,
            json!({
                "code": 5,
                "message": "Not Found",
                "details": [{"@type": ERROR_INFO, "error_code": "NOT_FOUND"}]
            }),
            "{path}"
        );
    }
    Ok(())
}
