//! The control API under `/_emulator/`: clock, reset, pending login requests, the request log,
//! fault injection, the OpenAPI document, and its absence when turned off. Keys and minted
//! tokens have their own files (`keys.rs`, `mint.rs`).

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::{Context as _, Result, ensure};
use reqwest::{Method, StatusCode};
use scalekit_emulator::{App, Config, Deps, SystemClock};
use serde_json::{Value, json};

use crate::helpers::{
    CONNECTION, ERROR_INFO, FIXTURE, PUBLIC_CLIENT, REDIRECT_URI, RESOURCE, TestEnv, ada,
    error_page_redirect, invalid_argument, json as json_body, location, query_param, text,
};

#[tokio::test]
async fn advancing_the_clock_over_http_expires_a_login_request() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let start = env.clock.seconds();
    assert_eq!(
        env.control(Method::GET, "/_emulator/clock", None).await?,
        (StatusCode::OK, json!({"now": start}))
    );
    let management = env.management_token().await?;
    let (lri, state) = env.start_login().await?;
    json_body(
        env.post_user(&lri, Some(&management), &ada()).await?,
        StatusCode::OK,
    )
    .await?;

    let advanced = env
        .control(
            Method::POST,
            "/_emulator/clock/advance",
            Some(r#"{"seconds": 601}"#),
        )
        .await?;
    assert_eq!(advanced, (StatusCode::OK, json!({"now": start + 601})));
    assert_eq!(env.clock.seconds(), start + 601);

    let (error, description) = error_page_redirect(&env, env.callback(&state).await?)?;
    assert_eq!(
        (error.as_str(), description.as_str()),
        ("invalid_state", "the sign-in request expired")
    );
    Ok(())
}

#[tokio::test]
async fn advancing_the_clock_without_seconds_is_invalid_argument() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let missing = env
        .control(Method::POST, "/_emulator/clock/advance", Some("{}"))
        .await?;
    assert_eq!(
        missing,
        (
            StatusCode::BAD_REQUEST,
            invalid_argument(json!([{
                "field": "seconds",
                "description": "missing field `seconds` at line 1 column 2"
            }]))
        )
    );
    let not_json = env
        .control(Method::POST, "/_emulator/clock/advance", Some("sixty"))
        .await?;
    assert_eq!(
        not_json,
        (
            StatusCode::BAD_REQUEST,
            invalid_argument(json!([{
                "field": "body",
                "description": "expected value at line 1 column 1"
            }]))
        )
    );
    let overflow = env
        .control(
            Method::POST,
            "/_emulator/clock/advance",
            Some(&format!(r#"{{"seconds": {}}}"#, u64::MAX)),
        )
        .await?;
    assert_eq!(
        overflow,
        (
            StatusCode::BAD_REQUEST,
            invalid_argument(json!([{
                "field": "seconds",
                "description": format!("advancing by {} seconds would overflow the clock", u64::MAX)
            }]))
        )
    );
    Ok(())
}

#[tokio::test]
async fn a_control_route_answers_another_method_with_405_in_the_gateway_shape() -> Result<()> {
    let env = TestEnv::spawn().await?;
    assert_eq!(
        env.control(Method::PUT, "/_emulator/clock", None).await?,
        (
            StatusCode::METHOD_NOT_ALLOWED,
            json!({
                "code": 12,
                "message": "Method Not Allowed",
                "details": [{"@type": ERROR_INFO, "error_code": "UNIMPLEMENTED"}]
            })
        )
    );
    Ok(())
}

/// The emulator's default clock (the binary's) is the system time plus an offset.
#[tokio::test]
async fn the_default_clock_runs_ahead_by_what_was_advanced() -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let app = App::from_listener(listener, Config::from_toml_str(FIXTURE)?)?;
    let base = app.base_url().as_str().trim_end_matches('/').to_owned();
    tokio::spawn(app.serve());
    let http = reqwest::Client::new();
    let before: Value = http
        .get(format!("{base}/_emulator/clock"))
        .send()
        .await?
        .json()
        .await?;
    let before = before["now"].as_u64().context("now")?;
    let after: Value = http
        .post(format!("{base}/_emulator/clock/advance"))
        .header("content-type", "application/json")
        .body(r#"{"seconds": 86400}"#)
        .send()
        .await?
        .json()
        .await?;
    let after = after["now"].as_u64().context("now")?;
    ensure!(
        (before + 86_400..=before + 86_400 + 5).contains(&after),
        "{before} then {after}"
    );
    Ok(())
}

/// The binary's clock goes behind the system time and back.
#[tokio::test]
async fn the_default_clock_rewinds_behind_the_system_time_and_advances_back() -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let app = App::from_listener(listener, Config::from_toml_str(FIXTURE)?)?;
    let base = app.base_url().as_str().trim_end_matches('/').to_owned();
    tokio::spawn(app.serve());
    let http = reqwest::Client::new();
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let rewound: Value = http
        .post(format!("{base}/_emulator/clock/rewind"))
        .header("content-type", "application/json")
        .body(r#"{"seconds": 7200}"#)
        .send()
        .await?
        .json()
        .await?;
    let rewound = rewound["now"].as_u64().context("now")?;
    ensure!(
        (wall - 7_200..=wall - 7_200 + 5).contains(&rewound),
        "{wall} then {rewound}"
    );
    let back: Value = http
        .post(format!("{base}/_emulator/clock/advance"))
        .header("content-type", "application/json")
        .body(r#"{"seconds": 7200}"#)
        .send()
        .await?
        .json()
        .await?;
    let back = back["now"].as_u64().context("now")?;
    ensure!((wall..=wall + 5).contains(&back), "{wall} then {back}");
    Ok(())
}

#[tokio::test]
async fn rewinding_then_advancing_returns_to_the_same_time() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let start = env.clock.seconds();
    assert_eq!(
        env.control(
            Method::POST,
            "/_emulator/clock/rewind",
            Some(r#"{"seconds": 3601}"#)
        )
        .await?,
        (StatusCode::OK, json!({"now": start - 3601}))
    );
    assert_eq!(env.clock.seconds(), start - 3601);
    assert_eq!(
        env.control(
            Method::POST,
            "/_emulator/clock/advance",
            Some(r#"{"seconds": 3601}"#)
        )
        .await?,
        (StatusCode::OK, json!({"now": start}))
    );
    assert_eq!(env.clock.seconds(), start);
    Ok(())
}

/// What the harness does with rewind: a token a real flow issued, whose lifetime has passed by
/// the wall clock.
#[tokio::test]
async fn a_token_issued_after_a_rewind_is_already_expired_by_the_wall_clock() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let wall = env.clock.seconds();
    env.control(
        Method::POST,
        "/_emulator/clock/rewind",
        Some(r#"{"seconds": 3700}"#),
    )
    .await?;
    let code = env.code().await?;
    let tokens = env
        .exchange(&code, crate::helpers::VERIFIER, StatusCode::OK)
        .await?;
    let claims = crate::helpers::jwt_claims(tokens["access_token"].as_str().context("token")?)?;
    let exp = claims["exp"].as_u64().context("exp")?;
    assert_eq!(exp, wall - 3700 + 3600);
    assert!(exp < wall);
    Ok(())
}

#[tokio::test]
async fn rewinding_the_clock_checks_its_step() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let start = env.clock.seconds();
    let missing = env
        .control(Method::POST, "/_emulator/clock/rewind", Some("{}"))
        .await?;
    assert_eq!(
        missing,
        (
            StatusCode::BAD_REQUEST,
            invalid_argument(json!([{
                "field": "seconds",
                "description": "missing field `seconds` at line 1 column 2"
            }]))
        )
    );
    let past_the_epoch = start + 1;
    let before_1970 = env
        .control(
            Method::POST,
            "/_emulator/clock/rewind",
            Some(&format!(r#"{{"seconds": {past_the_epoch}}}"#)),
        )
        .await?;
    assert_eq!(
        before_1970,
        (
            StatusCode::BAD_REQUEST,
            invalid_argument(json!([{
                "field": "seconds",
                "description": format!("rewinding by {past_the_epoch} seconds would move the clock before 1970")
            }]))
        )
    );
    assert_eq!(env.clock.seconds(), start);
    Ok(())
}

#[tokio::test]
async fn the_system_clock_cannot_be_advanced_or_rewound() -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let deps = Deps {
        clock: Arc::new(SystemClock),
        ..Deps::default()
    };
    let app = App::from_listener_with(listener, Config::from_toml_str(FIXTURE)?, deps)?;
    let base = app.base_url().as_str().trim_end_matches('/').to_owned();
    tokio::spawn(app.serve());
    let response = reqwest::Client::new()
        .post(format!("{base}/_emulator/clock/advance"))
        .header("content-type", "application/json")
        .body(r#"{"seconds": 1}"#)
        .send()
        .await?;
    assert_eq!(
        json_body(response, StatusCode::BAD_REQUEST).await?,
        json!({
            "code": 9,
            "message": "this clock follows the system time and cannot be moved",
            "details": [{"@type": ERROR_INFO, "error_code": "FAILED_PRECONDITION"}]
        })
    );
    let response = reqwest::Client::new()
        .post(format!("{base}/_emulator/clock/rewind"))
        .header("content-type", "application/json")
        .body(r#"{"seconds": 1}"#)
        .send()
        .await?;
    assert_eq!(
        json_body(response, StatusCode::BAD_REQUEST).await?,
        json!({
            "code": 9,
            "message": "this clock follows the system time and cannot be moved",
            "details": [{"@type": ERROR_INFO, "error_code": "FAILED_PRECONDITION"}]
        })
    );
    Ok(())
}

#[tokio::test]
async fn reset_drops_a_dcr_client_and_keeps_the_configured_ones() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let registered = json_body(
        env.http
            .post(env.url(&format!("/api/v1/resources/{RESOURCE}/clients:register")))
            .json(&json!({"client_name": "Claude", "redirect_uris": ["http://127.0.0.1/cb"]}))
            .send()
            .await?,
        StatusCode::CREATED,
    )
    .await?;
    let client_id = registered["client_id"].as_str().context("client_id")?;
    let login = env
        .authorize(&[
            ("client_id", client_id),
            ("redirect_uri", "http://127.0.0.1:40000/cb"),
        ])
        .await?;
    assert_eq!(login.path(), "/login");
    let (_, pending) = env
        .control(Method::GET, "/_emulator/login-requests", None)
        .await?;
    assert_eq!(pending["login_requests"].as_array().map(Vec::len), Some(1));

    assert_eq!(
        env.control(Method::POST, "/_emulator/reset", None).await?,
        (StatusCode::NO_CONTENT, Value::Null)
    );

    assert_eq!(
        env.control(Method::GET, "/_emulator/login-requests", None)
            .await?,
        (StatusCode::OK, json!({"login_requests": []}))
    );
    let page = text(
        env.http
            .get(env.url("/oauth/authorize"))
            .query(&[
                ("response_type", "code"),
                ("client_id", client_id),
                ("redirect_uri", "http://127.0.0.1:40000/cb"),
                (
                    "code_challenge",
                    "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                ),
                ("code_challenge_method", "S256"),
            ])
            .send()
            .await?,
        StatusCode::BAD_REQUEST,
    )
    .await?;
    assert!(
        page.contains("error=<code id=\"error\">invalid_client_metadata_url</code>"),
        "{page}"
    );
    assert!(
        page.contains(&format!(
            "client {client_id} was not issued by this environment"
        )),
        "{page}"
    );
    // The configured client still signs in, end to end.
    let redirect = env.sign_in().await?;
    assert!(query_param(&redirect, "code").is_ok(), "{redirect}");
    Ok(())
}

/// Starts an emulator on `state_dir` and returns its base URL and serving task.
async fn spawn_on(
    state_dir: &std::path::Path,
) -> Result<(String, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let deps = Deps {
        state_dir: Some(state_dir.to_owned()),
        ..Deps::default()
    };
    let app = App::from_listener_with(listener, Config::from_toml_str(FIXTURE)?, deps)?;
    let base = app.base_url().as_str().trim_end_matches('/').to_owned();
    Ok((base, tokio::spawn(app.serve())))
}

#[tokio::test]
async fn reset_also_empties_the_state_directory() -> Result<()> {
    let state_dir = std::env::temp_dir().join(format!(
        "scalekit-emulator-control-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos()
    ));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let (base, first) = spawn_on(&state_dir).await?;
    let registered = json_body(
        http.post(format!(
            "{base}/api/v1/resources/{RESOURCE}/clients:register"
        ))
        .json(&json!({"client_name": "Claude", "redirect_uris": ["http://127.0.0.1/cb"]}))
        .send()
        .await?,
        StatusCode::CREATED,
    )
    .await?;
    let client_id = registered["client_id"]
        .as_str()
        .context("client_id")?
        .to_owned();
    let reset = http
        .post(format!("{base}/_emulator/reset"))
        .header("content-type", "application/json")
        .send()
        .await?;
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    first.abort();
    let _ = first.await;

    // A new emulator on the same directory does not know the client either.
    let (base, second) = spawn_on(&state_dir).await?;
    let page = text(
        http.get(format!("{base}/oauth/authorize"))
            .query(&[
                ("response_type", "code"),
                ("client_id", client_id.as_str()),
                ("redirect_uri", "http://127.0.0.1:40000/cb"),
                (
                    "code_challenge",
                    "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                ),
                ("code_challenge_method", "S256"),
            ])
            .send()
            .await?,
        StatusCode::BAD_REQUEST,
    )
    .await;
    second.abort();
    let _ = std::fs::remove_dir_all(&state_dir);
    let page = page?;
    assert!(
        page.contains(&format!(
            "client {client_id} was not issued by this environment"
        )),
        "{page}"
    );
    Ok(())
}

#[tokio::test]
async fn login_requests_lists_a_pending_one_whose_state_completes_the_sign_in() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let (lri, state) = env.start_login().await?;
    let expected = |submitted: bool| {
        json!({"login_requests": [{
            "login_request_id": lri,
            "connection_id": CONNECTION,
            "client_id": PUBLIC_CLIENT,
            "resource_id": RESOURCE,
            "state": state,
            "expires_at": env.clock.seconds() + 600,
            "user_submitted": submitted
        }]})
    };
    assert_eq!(
        env.control(Method::GET, "/_emulator/login-requests", None)
            .await?,
        (StatusCode::OK, expected(false))
    );
    assert_eq!(
        env.control(
            Method::GET,
            "/_emulator/login-requests?state=not-a-state",
            None
        )
        .await?,
        (StatusCode::OK, json!({"login_requests": []}))
    );

    // An API-only test knows only the login request id; the listing gives it the state.
    let (_, listed) = env
        .control(
            Method::GET,
            &format!("/_emulator/login-requests?state={state}"),
            None,
        )
        .await?;
    assert_eq!(listed, expected(false));
    let listed_state = listed["login_requests"][0]["state"]
        .as_str()
        .context("state")?
        .to_owned();
    let management = env.management_token().await?;
    json_body(
        env.post_user(&lri, Some(&management), &ada()).await?,
        StatusCode::OK,
    )
    .await?;
    assert_eq!(
        env.control(Method::GET, "/_emulator/login-requests", None)
            .await?,
        (StatusCode::OK, expected(true))
    );
    let redirect = location(env.callback(&listed_state).await?, StatusCode::FOUND)?;
    assert!(
        redirect
            .as_str()
            .starts_with(&format!("{REDIRECT_URI}?code=")),
        "{redirect}"
    );
    assert_eq!(
        env.control(Method::GET, "/_emulator/login-requests", None)
            .await?,
        (StatusCode::OK, json!({"login_requests": []}))
    );
    Ok(())
}

#[tokio::test]
async fn the_request_log_lists_the_last_requests_newest_first_with_credentials_cut() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let code = env.code().await?;
    // A client that puts the code in the query (wrongly) must not see it in the log.
    let misplaced = env
        .http
        .post(env.url("/oauth/token"))
        .query(&[("code", code.as_str()), ("client_id", PUBLIC_CLIENT)])
        .send()
        .await?;
    assert_eq!(misplaced.status(), StatusCode::BAD_REQUEST);
    // Control requests are not logged.
    env.control(Method::GET, "/_emulator/clock", None).await?;

    let (status, mut body) = env
        .control(Method::GET, "/_emulator/requests?limit=2", None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    let requests = body["requests"].as_array_mut().context("requests")?;
    for request in requests.iter_mut() {
        let object = request.as_object_mut().context("object")?;
        ensure!(object.remove("duration_ms").is_some_and(|ms| ms.is_u64()));
        ensure!(
            object
                .remove("at")
                .is_some_and(|at| at.as_u64() > Some(1_700_000_000_000))
        );
    }
    assert_eq!(
        body,
        json!({"requests": [
            {
                "method": "POST",
                "path": "/oauth/token",
                "query": format!("code={}…&client_id={PUBLIC_CLIENT}", &code[..6]),
                "status": 400,
                "error": {
                    "code": "invalid_request",
                    "message": "the token request must be a form (application/x-www-form-urlencoded)"
                }
            },
            {
                "method": "GET",
                "path": format!("/sso/v1/connections/{CONNECTION}/partner:callback"),
                "query": "state=secret…",
                "status": 302
            }
        ]})
    );
    assert!(!body.to_string().contains(&code), "{body}");

    let (_, all) = env
        .control(Method::GET, "/_emulator/requests", None)
        .await?;
    let paths: Vec<&str> = all["requests"]
        .as_array()
        .context("requests")?
        .iter()
        .filter_map(|request| request["path"].as_str())
        .collect();
    let user_post = format!("/api/v1/connections/{CONNECTION}/auth-requests/");
    let callback = format!("/sso/v1/connections/{CONNECTION}/partner:callback");
    assert!(
        matches!(
            paths.as_slice(),
            ["/oauth/token", second, third, "/oauth/authorize", "/oauth/token"]
                if *second == callback && third.starts_with(&user_post)
        ),
        "{paths:?}"
    );
    assert_eq!(
        all["requests"][3]["query"]
            .as_str()
            .map(|query| query.contains("&state=client…&")),
        Some(true),
        "{all}"
    );

    assert_eq!(
        env.control(Method::GET, "/_emulator/requests?limit=1001", None)
            .await?,
        (
            StatusCode::BAD_REQUEST,
            invalid_argument(json!([{
                "field": "limit",
                "description": "must be an integer from 1 to 1000"
            }]))
        )
    );
    Ok(())
}

#[tokio::test]
async fn a_fault_on_the_token_endpoint_answers_once_then_the_real_answer_comes_back() -> Result<()>
{
    let env = TestEnv::spawn().await?;
    let (status, created) = env
        .control(
            Method::POST,
            "/_emulator/faults",
            Some(
                r#"{"method": "post", "path": "/oauth/token", "status": 503,
                "body": {"error": "temporarily_unavailable"}, "times": 1}"#,
            ),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED);
    let id = created["id"].as_str().context("id")?.to_owned();
    assert!(id.starts_with("flt_"), "{created}");
    assert_eq!(created, json!({"id": id}));
    assert_eq!(
        env.control(Method::GET, "/_emulator/faults", None).await?,
        (
            StatusCode::OK,
            json!({"faults": [{
                "id": id,
                "method": "POST",
                "path": "/oauth/token",
                "status": 503,
                "body": {"error": "temporarily_unavailable"},
                "headers": {},
                "delay_ms": 0,
                "remaining": 1
            }]})
        )
    );

    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", crate::helpers::API_CLIENT_ID),
        ("client_secret", crate::helpers::API_CLIENT_SECRET),
    ];
    let faulted = env
        .http
        .post(env.url("/oauth/token"))
        .form(&form)
        .send()
        .await?;
    assert_eq!(
        faulted
            .headers()
            .get("x-emulator-fault")
            .and_then(|value| value.to_str().ok()),
        Some(id.as_str())
    );
    assert_eq!(
        json_body(faulted, StatusCode::SERVICE_UNAVAILABLE).await?,
        json!({"error": "temporarily_unavailable"})
    );
    let real = env.management_token().await?;
    assert!(!real.is_empty());
    assert_eq!(
        env.control(Method::GET, "/_emulator/faults", None).await?,
        (StatusCode::OK, json!({"faults": []}))
    );
    Ok(())
}

#[tokio::test]
async fn a_fault_without_a_status_only_delays_the_real_answer() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let (status, _) = env
        .control(
            Method::POST,
            "/_emulator/faults",
            Some(r#"{"path": "/keys", "delay_ms": 50}"#),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED);
    let started = std::time::Instant::now();
    let response = env.get("/keys").await?;
    assert!(response.headers().contains_key("x-emulator-fault"));
    let keys = json_body(response, StatusCode::OK).await?;
    assert!(keys["keys"].is_array(), "{keys}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(50));
    Ok(())
}

#[tokio::test]
async fn faults_are_cleared_and_a_bad_fault_names_its_fields() -> Result<()> {
    let env = TestEnv::spawn().await?;
    assert_eq!(
        env.control(
            Method::POST,
            "/_emulator/faults",
            Some(r#"{"method": "GET", "path": "/_emulator/clock", "status": 99, "times": 0}"#),
        )
        .await?,
        (
            StatusCode::BAD_REQUEST,
            invalid_argument(json!([
                {"field": "path", "description": "the control API cannot be faulted"},
                {"field": "status", "description": "must be from 200 to 599"},
                {"field": "times", "description": "must be from 1 to 1000"}
            ]))
        )
    );
    assert_eq!(
        env.control(
            Method::POST,
            "/_emulator/faults",
            Some(r#"{"path": "/keys", "colour": "red"}"#),
        )
        .await?,
        (
            StatusCode::BAD_REQUEST,
            invalid_argument(json!([{
                "field": "colour",
                "description": "unknown field `colour`, expected one of `method`, `path`, `status`, `body`, `headers`, `delay_ms`, `times` at line 1 column 26"
            }]))
        )
    );
    let (status, _) = env
        .control(
            Method::POST,
            "/_emulator/faults",
            Some(r#"{"path": "/keys", "status": 500}"#),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        env.control(Method::DELETE, "/_emulator/faults", None)
            .await?,
        (StatusCode::NO_CONTENT, Value::Null)
    );
    json_body(env.get("/keys").await?, StatusCode::OK).await?;
    Ok(())
}

#[tokio::test]
async fn the_hundred_and_first_fault_is_resource_exhausted() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let fault = r#"{"path": "/nowhere", "status": 500}"#;
    for _ in 0..100 {
        let (status, _) = env
            .control(Method::POST, "/_emulator/faults", Some(fault))
            .await?;
        assert_eq!(status, StatusCode::CREATED);
    }
    assert_eq!(
        env.control(Method::POST, "/_emulator/faults", Some(fault))
            .await?,
        (
            StatusCode::TOO_MANY_REQUESTS,
            json!({
                "code": 8,
                "message": "at most 100 faults can be armed; DELETE /_emulator/faults clears them",
                "details": [{"@type": ERROR_INFO, "error_code": "RESOURCE_EXHAUSTED"}]
            })
        )
    );
    Ok(())
}

#[tokio::test]
async fn the_openapi_document_lists_every_control_route_and_each_one_answers() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let (status, document) = env
        .control(Method::GET, "/_emulator/openapi.json", None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(document["openapi"], "3.1.0");
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().context("paths")? {
        for method in item.as_object().context("path item")?.keys() {
            operations.insert((method.to_uppercase(), path.clone()));
        }
    }
    let expected: BTreeSet<(String, String)> = [
        ("GET", "/_emulator/openapi.json"),
        ("GET", "/_emulator/scalekit-openapi.json"),
        ("GET", "/_emulator/clock"),
        ("POST", "/_emulator/clock/advance"),
        ("POST", "/_emulator/clock/rewind"),
        ("GET", "/_emulator/keys"),
        ("POST", "/_emulator/keys/rotate"),
        ("POST", "/_emulator/keys/retire"),
        ("POST", "/_emulator/tokens"),
        ("GET", "/_emulator/agents"),
        ("POST", "/_emulator/agents"),
        ("DELETE", "/_emulator/agents/{client_id}"),
        ("GET", "/_emulator/idps"),
        ("POST", "/_emulator/idps/{idp}/id-token"),
        ("POST", "/_emulator/idps/{idp}/id-jag"),
        ("POST", "/_emulator/reset"),
        ("GET", "/_emulator/login-requests"),
        ("GET", "/_emulator/requests"),
        ("GET", "/_emulator/faults"),
        ("POST", "/_emulator/faults"),
        ("DELETE", "/_emulator/faults"),
        ("GET", "/_emulator/ui"),
        ("GET", "/_emulator/ui/events"),
        ("GET", "/_emulator/flows"),
        ("GET", "/_emulator/flows/{id}"),
    ]
    .into_iter()
    .map(|(method, path)| (method.to_owned(), path.to_owned()))
    .collect();
    assert_eq!(operations, expected);
    for (method, path) in &operations {
        // A templated path names no flow, the inspector's page is HTML and its event stream
        // never ends: tests/http/inspector.rs calls them.
        if path.contains('{') || path.starts_with("/_emulator/ui") {
            continue;
        }
        let method = Method::from_bytes(method.as_bytes())?;
        let (status, body) = env.control(method.clone(), path, Some("{}")).await?;
        assert!(
            status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {status} {body}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn with_control_off_the_control_routes_are_not_found() -> Result<()> {
    let env = TestEnv::spawn_with(|config| config.control = false).await?;
    let not_found = json!({
        "code": 5,
        "message": "Not Found",
        "details": [{"@type": ERROR_INFO, "error_code": "NOT_FOUND"}]
    });
    for (method, path) in [
        (Method::GET, "/_emulator/clock"),
        (Method::POST, "/_emulator/reset"),
        (Method::GET, "/_emulator/openapi.json"),
        (Method::GET, "/_emulator/scalekit-openapi.json"),
        (Method::POST, "/_emulator/tokens"),
        (Method::POST, "/_emulator/keys/rotate"),
        (Method::GET, "/_emulator/keys"),
    ] {
        assert_eq!(
            env.control(method, path, None).await?,
            (StatusCode::NOT_FOUND, not_found.clone())
        );
    }
    // And nothing is faulted or logged: the flow works as usual.
    env.management_token().await?;
    Ok(())
}
