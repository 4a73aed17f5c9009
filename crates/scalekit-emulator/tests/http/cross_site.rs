//! The control API and the inspector against web pages: a state-changing call must be JSON (a
//! page cannot send that cross-site without a preflight), a foreign `Origin` is refused, no
//! answer carries a CORS header, and with a control token every request needs it (the inspector
//! page takes it once in its link and keeps it in a cookie).

use anyhow::{Context as _, Result, ensure};
use reqwest::header::{
    AUTHORIZATION, CONTENT_TYPE, COOKIE, HOST, LOCATION, ORIGIN, SET_COOKIE, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode};
use scalekit_wire::Secret;
use serde_json::{Value, json};
use url::Url;

use crate::helpers::{ERROR_INFO, TestEnv, json as json_body};

const TOKEN: &str = "ctl-0123456789abcdef";

/// How many sign-ins are pending: what a reset would drop.
async fn pending(env: &TestEnv, bearer: Option<&str>) -> Result<usize> {
    let mut request = env.http.get(env.url("/_emulator/login-requests"));
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let body = json_body(request.send().await?, StatusCode::OK).await?;
    body["login_requests"]
        .as_array()
        .map(Vec::len)
        .context("login_requests")
}

fn port(env: &TestEnv) -> Result<u16> {
    Url::parse(&env.base)?.port().context("a port")
}

#[tokio::test]
async fn a_reset_that_is_not_json_is_refused_with_415_and_resets_nothing() -> Result<()> {
    let env = TestEnv::spawn().await?;
    env.start_login().await?;
    // What a cross-site form or `fetch` without a preflight can send, and `curl -d`'s default.
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let mut request = env.http.post(env.url("/_emulator/reset"));
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type).body("{}");
        }
        let sent = content_type.unwrap_or("none");
        assert_eq!(
            json_body(request.send().await?, StatusCode::UNSUPPORTED_MEDIA_TYPE).await?,
            json!({
                "code": 3,
                "message": "the control API takes state-changing calls as JSON only: send \
                            Content-Type: application/json (curl: -H 'content-type: application/json')",
                "details": [{
                    "@type": ERROR_INFO,
                    "error_code": "INVALID_ARGUMENT",
                    "validation_error_info": {"field_violations": [{
                        "field": "content-type",
                        "description": format!("must be application/json, not {sent}")
                    }]}
                }]
            }),
            "{sent}"
        );
    }
    assert_eq!(pending(&env, None).await?, 1, "nothing was reset");
    Ok(())
}

/// `curl -d '{"seconds":600}'` sends a form content type: it used to be read as JSON anyway.
#[tokio::test]
async fn a_clock_step_sent_as_a_form_is_refused_and_the_clock_stays() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let start = env.clock.seconds();
    let response = env
        .http
        .post(env.url("/_emulator/clock/advance"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(r#"{"seconds":600}"#)
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(env.clock.seconds(), start);
    let response = env
        .http
        .post(env.url("/_emulator/clock/advance"))
        .header(CONTENT_TYPE, "application/json; charset=utf-8")
        .body(r#"{"seconds":600}"#)
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(env.clock.seconds(), start + 600);
    Ok(())
}

#[tokio::test]
async fn a_reset_from_a_foreign_origin_is_refused_with_403_and_resets_nothing() -> Result<()> {
    let env = TestEnv::spawn().await?;
    env.start_login().await?;
    let port = port(&env)?;
    for origin in [
        "http://evil.example".to_owned(),
        // Another site on this machine is still another site.
        "http://localhost:3000".to_owned(),
        format!("http://127.0.0.1:{}", port.wrapping_add(1)),
        format!("https://127.0.0.1:{port}/"),
        "null".to_owned(),
    ] {
        let response = env
            .http
            .post(env.url("/_emulator/reset"))
            .header(ORIGIN, &origin)
            .header(CONTENT_TYPE, "application/json")
            .send()
            .await?;
        assert_eq!(
            json_body(response, StatusCode::FORBIDDEN).await?,
            json!({
                "code": 7,
                "message": format!(
                    "the control API refuses requests from web pages of another origin \
                     (Origin: {origin}); call it from a program, which sends no Origin"
                ),
                "details": [{"@type": ERROR_INFO, "error_code": "PERMISSION_DENIED"}]
            }),
            "{origin}"
        );
    }
    // Reads too: a page may not even look.
    let read = env
        .http
        .get(env.url("/_emulator/requests"))
        .header(ORIGIN, "http://evil.example")
        .send()
        .await?;
    assert_eq!(read.status(), StatusCode::FORBIDDEN);
    let twice = env
        .http
        .get(env.url("/_emulator/clock"))
        .header(ORIGIN, env.base.as_str())
        .header(ORIGIN, "http://evil.example")
        .send()
        .await?;
    assert_eq!(twice.status(), StatusCode::FORBIDDEN);
    assert_eq!(pending(&env, None).await?, 1, "nothing was reset");
    Ok(())
}

#[tokio::test]
async fn the_emulator_s_own_origin_may_call_the_control_api() -> Result<()> {
    let env = TestEnv::spawn().await?;
    env.start_login().await?;
    let port = port(&env)?;
    // The environment URL's origin, and the origin of the very host the request was sent to.
    let own = env
        .http
        .get(env.url("/_emulator/clock"))
        .header(ORIGIN, env.base.as_str())
        .send()
        .await?;
    assert_eq!(own.status(), StatusCode::OK);
    let by_name = env
        .http
        .get(env.url("/_emulator/clock"))
        .header(HOST, format!("localhost:{port}"))
        .header(ORIGIN, format!("http://localhost:{port}"))
        .send()
        .await?;
    assert_eq!(by_name.status(), StatusCode::OK);
    let reset = env
        .http
        .post(env.url("/_emulator/reset"))
        .header(ORIGIN, env.base.as_str())
        .header(CONTENT_TYPE, "application/json")
        .send()
        .await?;
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    assert_eq!(pending(&env, None).await?, 0);
    Ok(())
}

/// No answer of the control API or the inspector carries an `Access-Control-*` header: a page
/// of another origin can neither read an answer nor get a preflight granted.
#[tokio::test]
async fn no_control_answer_carries_a_cors_header() -> Result<()> {
    let env = TestEnv::spawn_with(|config| config.control_token = Some(Secret::new(TOKEN))).await?;
    let open = TestEnv::spawn().await?;
    let preflight = |env: &TestEnv, origin: Option<&str>| {
        let mut request = env
            .http
            .request(Method::OPTIONS, env.url("/_emulator/reset"))
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type");
        if let Some(origin) = origin {
            request = request.header(ORIGIN, origin);
        }
        request
    };
    let requests = [
        preflight(&open, Some("http://evil.example")),
        preflight(&open, None),
        open.http.get(open.url("/_emulator/clock")),
        open.http
            .get(open.url("/_emulator/clock"))
            .header(ORIGIN, "http://evil.example"),
        open.http.get(open.url("/_emulator/ui")),
        open.http.get(open.url("/_emulator/flows")),
        open.http.post(open.url("/_emulator/reset")),
        open.http
            .post(open.url("/_emulator/reset"))
            .header(CONTENT_TYPE, "application/json"),
        open.http
            .post(open.url("/_emulator/faults"))
            .header(CONTENT_TYPE, "application/json")
            .body("{}"),
        preflight(&env, Some("http://evil.example")),
        env.http.get(env.url("/_emulator/clock")),
        env.http.get(env.url("/_emulator/ui?token=wrong")),
        env.http
            .get(env.url(&format!("/_emulator/ui?token={TOKEN}"))),
        env.http.get(env.url("/_emulator/clock")).bearer_auth(TOKEN),
    ];
    for request in requests {
        let request = request.build()?;
        let what = format!("{} {}", request.method(), request.url());
        let response = env.http.execute(request).await?;
        let cors: Vec<String> = response
            .headers()
            .keys()
            .map(|name| name.as_str().to_owned())
            .filter(|name| name.starts_with("access-control-"))
            .collect();
        ensure!(cors.is_empty(), "{what} ({}): {cors:?}", response.status());
        ensure!(
            response.status() != StatusCode::OK || !what.starts_with("OPTIONS"),
            "{what}: a preflight was answered 200"
        );
    }
    Ok(())
}

#[tokio::test]
async fn with_a_control_token_every_control_request_needs_it() -> Result<()> {
    let env = TestEnv::spawn_with(|config| config.control_token = Some(Secret::new(TOKEN))).await?;
    env.start_login().await?;
    let unauthenticated = |message: &str| {
        json!({
            "code": 16,
            "message": message,
            "details": [{"@type": ERROR_INFO, "error_code": "UNAUTHENTICATED"}]
        })
    };
    let missing = unauthenticated(
        "the control API needs the control token: send Authorization: Bearer <token> (in a \
         browser, open /_emulator/ui?token=<token> once)",
    );
    let wrong = unauthenticated(
        "the control token does not match (in a browser, open /_emulator/ui?token=<token> again)",
    );
    for (authorization, expected) in [
        (None, &missing),
        (Some("Bearer not-the-token"), &wrong),
        (Some(&format!("Basic {TOKEN}") as &str), &wrong),
        (Some("Bearer "), &wrong),
    ] {
        for path in ["/_emulator/clock", "/_emulator/ui", "/_emulator/flows"] {
            let mut request = env.http.get(env.url(path));
            if let Some(authorization) = authorization {
                request = request.header(AUTHORIZATION, authorization);
            }
            let response = request.send().await?;
            assert_eq!(
                response
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|value| value.to_str().ok()),
                Some("Bearer realm=\"emulator control API\""),
                "{path}"
            );
            assert_eq!(
                &json_body(response, StatusCode::UNAUTHORIZED).await?,
                expected,
                "{path} {authorization:?}"
            );
        }
        let mut reset = env
            .http
            .post(env.url("/_emulator/reset"))
            .header(CONTENT_TYPE, "application/json");
        if let Some(authorization) = authorization {
            reset = reset.header(AUTHORIZATION, authorization);
        }
        assert_eq!(reset.send().await?.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(pending(&env, Some(TOKEN)).await?, 1, "nothing was reset");

    let reset = env
        .http
        .post(env.url("/_emulator/reset"))
        .bearer_auth(TOKEN)
        .header(CONTENT_TYPE, "application/json")
        .send()
        .await?;
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    assert_eq!(pending(&env, Some(TOKEN)).await?, 0);
    // The rest of the emulator is not the control API: it needs no control token.
    assert_eq!(env.get("/keys").await?.status(), StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn the_inspector_link_with_the_token_sets_a_read_only_cookie_and_drops_the_token()
-> Result<()> {
    let env = TestEnv::spawn_with(|config| config.control_token = Some(Secret::new(TOKEN))).await?;
    env.start_login().await?;
    let port = port(&env)?;
    // Cookies are set by hand below, as a browser would send them: no cookie store.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let wrong = http
        .get(env.url("/_emulator/ui?token=not-the-token"))
        .send()
        .await?;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(SET_COOKIE).is_none());

    let link = http
        .get(env.url(&format!("/_emulator/ui?token={TOKEN}")))
        .send()
        .await?;
    assert_eq!(link.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        link.headers()
            .get(LOCATION)
            .and_then(|value| value.to_str().ok()),
        Some("ui")
    );
    let cookie_name = format!("emulator_control_{port}");
    assert_eq!(
        link.headers()
            .get(SET_COOKIE)
            .and_then(|value| value.to_str().ok()),
        Some(
            format!("{cookie_name}={TOKEN}; Path=/_emulator/; HttpOnly; SameSite=Strict").as_str()
        )
    );
    assert_eq!(
        link.headers()
            .get("referrer-policy")
            .and_then(|value| value.to_str().ok()),
        Some("no-referrer")
    );

    // The page, its reads and its event stream with the cookie, as a browser sends it.
    let cookie = format!("other=1; {cookie_name}={TOKEN}");
    let page = http
        .get(env.url("/_emulator/ui"))
        .header(COOKIE, &cookie)
        .send()
        .await?;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await?.contains("<!doctype html>"));
    let flows: Value = json_body(
        http.get(env.url("/_emulator/flows"))
            .header(COOKIE, &cookie)
            .send()
            .await?,
        StatusCode::OK,
    )
    .await?;
    assert_eq!(flows["flows"].as_array().map(Vec::len), Some(1));
    let events = http
        .get(env.url("/_emulator/ui/events"))
        .header(COOKIE, &cookie)
        .send()
        .await?;
    assert_eq!(events.status(), StatusCode::OK);
    assert_eq!(
        events
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok()),
        Some("text/event-stream")
    );
    drop(events);

    // The cookie reads; it never writes (cookies ride along with other local sites' requests).
    let reset = http
        .post(env.url("/_emulator/reset"))
        .header(COOKIE, &cookie)
        .header(CONTENT_TYPE, "application/json")
        .send()
        .await?;
    assert_eq!(reset.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(pending(&env, Some(TOKEN)).await?, 1);
    // A stale cookie (another token) is refused.
    let stale = http
        .get(env.url("/_emulator/flows"))
        .header(COOKIE, format!("{cookie_name}=an-older-token"))
        .send()
        .await?;
    assert_eq!(stale.status(), StatusCode::UNAUTHORIZED);
    Ok(())
}
