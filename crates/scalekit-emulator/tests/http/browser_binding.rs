//! Browser binding (Decisions §9): `/oauth/authorize` sets a cookie naming the sign-in, and
//! `partner:callback` and the consent form require it; the consent form also refuses a foreign
//! `Origin`. `env.http` is the browser that starts each sign-in (it keeps cookies); another
//! client plays a server-side fetch (no cookies) or another browser (its own cookies).

use anyhow::{Context as _, Result, ensure};
use reqwest::StatusCode;
use reqwest::header::{ORIGIN, SET_COOKIE};
use serde_json::Value;
use url::Url;

use crate::helpers::{CONNECTION, FIXTURE, TestEnv, ada, json, location, query_param, text};
use scalekit_emulator::{App, Config, ConsentMode};

/// A user agent with no cookies at all: a server completing the sign-in with its own client.
fn server_side() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// Another browser: cookies of its own.
fn other_browser() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()?)
}

fn callback_url(env: &TestEnv) -> String {
    env.url(&format!(
        "/sso/v1/connections/{CONNECTION}/partner:callback"
    ))
}

/// Authorize in `env.http` and post Ada: `(login_request_id, state)`, waiting for the callback.
async fn signed_in_at_your_app(env: &TestEnv) -> Result<(String, String)> {
    let management = env.management_token().await?;
    let (lri, state) = env.start_login().await?;
    let response = env.post_user(&lri, Some(&management), &ada()).await?;
    ensure!(response.status() == StatusCode::OK, "user post");
    Ok((lri, state))
}

/// Asserts the hosted error page with `status` naming `error`, and returns it.
async fn error_page(
    response: reqwest::Response,
    status: StatusCode,
    error: &str,
) -> Result<String> {
    let page = text(response, status).await?;
    ensure!(
        page.contains(&format!("error=<code id=\"error\">{error}</code>")),
        "{page}"
    );
    Ok(page)
}

/// The error code the request log recorded for the latest request to `path`.
async fn logged_error(env: &TestEnv, path: &str) -> Result<String> {
    let log: Value = json(env.get("/_emulator/requests").await?, StatusCode::OK).await?;
    let entry = log["requests"]
        .as_array()
        .context("requests")?
        .iter()
        .find(|entry| entry["path"] == path)
        .with_context(|| format!("no {path} in {log}"))?;
    Ok(entry["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// The failed check the flow inspector shows on the flow's hop to `path`.
async fn failed_check(env: &TestEnv, lri: &str, path: &str) -> Result<Option<String>> {
    let flow: Value = json(
        env.get(&format!("/_emulator/flows/{lri}")).await?,
        StatusCode::OK,
    )
    .await?;
    let hop = flow["hop_list"]
        .as_array()
        .context("hop_list")?
        .iter()
        .rev()
        .find(|hop| {
            hop["summary"]
                .as_str()
                .is_some_and(|summary| summary.ends_with(path))
        })
        .with_context(|| format!("no hop to {path} in {flow}"))?;
    Ok(hop["checks"]
        .as_array()
        .context("checks")?
        .iter()
        .find(|check| check["passed"] == false)
        .and_then(|check| check["name"].as_str())
        .map(str::to_owned))
}

#[tokio::test]
async fn the_sign_in_cookie_is_http_only_lax_for_the_whole_site_and_not_secure_on_http()
-> Result<()> {
    let env = TestEnv::spawn().await?;
    let response = env
        .http
        .get(env.url("/oauth/authorize"))
        .query(&[
            ("response_type", "code"),
            ("client_id", crate::helpers::PUBLIC_CLIENT),
            ("redirect_uri", crate::helpers::REDIRECT_URI),
            (
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            ),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await?;
    let cookies: Vec<String> = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .map(str::to_owned)
        .collect();
    let lri = query_param(&location(response, StatusCode::FOUND)?, "login_request_id")?;
    assert_eq!(
        cookies,
        [format!(
            "sk_signin_{lri}=browser{:036}; Path=/; Max-Age=1200; HttpOnly; SameSite=Lax",
            1
        )]
    );

    // Served over https (here: behind a proxy that terminates TLS), the cookie is `Secure`.
    let mut config = Config::from_toml_str(FIXTURE)?;
    config.public_url = Url::parse("https://emulator.example").ok();
    config.clients.push(scalekit_emulator::ClientConfig {
        client_id: "https-client".to_owned(),
        redirect_uris: vec!["http://127.0.0.1/callback".to_owned()],
        resource: crate::helpers::RESOURCE.to_owned(),
        client_secret: None,
        client_name: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let app = App::from_listener(listener, config)?;
    let address = app.local_addr();
    tokio::spawn(app.serve());
    let response = server_side()?
        .get(format!("http://{address}/oauth/authorize"))
        .query(&[
            ("response_type", "code"),
            ("client_id", "https-client"),
            ("redirect_uri", crate::helpers::REDIRECT_URI),
            (
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            ),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await?;
    let cookie = response
        .headers()
        .get(SET_COOKIE)
        .and_then(|value| value.to_str().ok())
        .context("a sign-in cookie")?;
    ensure!(
        cookie.ends_with("; Path=/; Max-Age=1200; HttpOnly; SameSite=Lax; Secure"),
        "{cookie}"
    );
    Ok(())
}

#[tokio::test]
async fn the_sign_in_cookie_is_cleared_when_the_sign_in_ends() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let (lri, state) = signed_in_at_your_app(&env).await?;
    let response = env.callback(&state).await?;
    let cleared = response
        .headers()
        .get(SET_COOKIE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    location(response, StatusCode::FOUND)?;
    assert_eq!(
        cleared,
        Some(format!(
            "sk_signin_{lri}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"
        ))
    );
    Ok(())
}

#[tokio::test]
async fn a_callback_without_the_sign_in_cookie_ends_on_browser_session_missing() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let (lri, state) = signed_in_at_your_app(&env).await?;

    let response = server_side()?
        .get(callback_url(&env))
        .query(&[("state", &state)])
        .send()
        .await?;
    ensure!(response.headers().get("location").is_none(), "no redirect");
    let page = error_page(response, StatusCode::BAD_REQUEST, "browser_session_missing").await?;
    assert!(page.contains("carries no sign-in cookie"), "{page}");
    let path = format!("/sso/v1/connections/{CONNECTION}/partner:callback");
    assert_eq!(logged_error(&env, &path).await?, "browser_session_missing");
    assert_eq!(
        failed_check(&env, &lri, "partner:callback")
            .await?
            .as_deref(),
        Some("browser that started the sign-in")
    );

    // The sign-in is still there for the browser that started it.
    let redirect = location(env.callback(&state).await?, StatusCode::FOUND)?;
    assert!(query_param(&redirect, "code").is_ok(), "{redirect}");
    Ok(())
}

#[tokio::test]
async fn a_callback_from_another_browser_ends_on_browser_session_mismatch() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let (_, first_state) = signed_in_at_your_app(&env).await?;

    // Another browser with a sign-in of its own.
    let other = other_browser()?;
    let (_, _) = {
        let location = location(
            other
                .get(env.url("/oauth/authorize"))
                .query(&[
                    ("response_type", "code"),
                    ("client_id", crate::helpers::PUBLIC_CLIENT),
                    ("redirect_uri", crate::helpers::REDIRECT_URI),
                    (
                        "code_challenge",
                        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                    ),
                    ("code_challenge_method", "S256"),
                ])
                .send()
                .await?,
            StatusCode::FOUND,
        )?;
        (
            query_param(&location, "login_request_id")?,
            query_param(&location, "state")?,
        )
    };
    let response = other
        .get(callback_url(&env))
        .query(&[("state", &first_state)])
        .send()
        .await?;
    error_page(
        response,
        StatusCode::BAD_REQUEST,
        "browser_session_mismatch",
    )
    .await?;

    let redirect = location(env.callback(&first_state).await?, StatusCode::FOUND)?;
    assert!(query_param(&redirect, "code").is_ok(), "{redirect}");
    Ok(())
}

#[tokio::test]
async fn two_sign_ins_in_one_browser_each_keep_their_cookie() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let (_, first) = signed_in_at_your_app(&env).await?;
    let (_, second) = signed_in_at_your_app(&env).await?;
    for state in [second, first] {
        let redirect = location(env.callback(&state).await?, StatusCode::FOUND)?;
        assert!(query_param(&redirect, "code").is_ok(), "{redirect}");
    }
    Ok(())
}

/// Signs Ada in on a prompt-mode resource in `env.http`: `(login_request_id, consent_id)`.
async fn consent_page(env: &TestEnv) -> Result<(String, String)> {
    let (lri, state) = signed_in_at_your_app(env).await?;
    let page = text(env.callback(&state).await?, StatusCode::OK).await?;
    let marker = "name=\"consent_id\" value=\"";
    let start = page.find(marker).context("consent_id field")? + marker.len();
    let end = page[start..].find('"').context("consent_id end")? + start;
    Ok((lri, page[start..end].to_owned()))
}

#[tokio::test]
async fn a_consent_post_without_the_sign_in_cookie_ends_on_browser_session_missing() -> Result<()> {
    let env =
        TestEnv::spawn_with(|config| config.resources[0].consent = ConsentMode::Prompt).await?;
    let (lri, consent_id) = consent_page(&env).await?;
    let form = [("consent_id", consent_id.as_str()), ("decision", "approve")];

    let response = server_side()?
        .post(env.url("/oauth/consent"))
        .form(&form)
        .send()
        .await?;
    ensure!(response.headers().get("location").is_none(), "no redirect");
    error_page(response, StatusCode::BAD_REQUEST, "browser_session_missing").await?;
    assert_eq!(
        logged_error(&env, "/oauth/consent").await?,
        "browser_session_missing"
    );
    assert_eq!(
        failed_check(&env, &lri, "/oauth/consent").await?.as_deref(),
        Some("browser that started the sign-in")
    );

    let redirect = location(
        env.http
            .post(env.url("/oauth/consent"))
            .form(&form)
            .send()
            .await?,
        StatusCode::FOUND,
    )?;
    assert!(query_param(&redirect, "code").is_ok(), "{redirect}");
    Ok(())
}

#[tokio::test]
async fn a_consent_post_from_a_foreign_origin_is_refused_with_403_foreign_origin() -> Result<()> {
    let env =
        TestEnv::spawn_with(|config| config.resources[0].consent = ConsentMode::Prompt).await?;
    let (lri, consent_id) = consent_page(&env).await?;
    let form = [("consent_id", consent_id.as_str()), ("decision", "approve")];

    // The browser that started the sign-in, its cookie included, but from another origin: a
    // page on another port of the same host gets the Lax cookie sent along.
    for origin in ["http://evil.example", "null", "http://127.0.0.1:1"] {
        let response = env
            .http
            .post(env.url("/oauth/consent"))
            .header(ORIGIN, origin)
            .form(&form)
            .send()
            .await?;
        ensure!(response.headers().get("location").is_none(), "no redirect");
        let page = error_page(response, StatusCode::FORBIDDEN, "foreign_origin").await?;
        assert!(page.contains("posted from"), "{page}");
    }
    assert_eq!(
        logged_error(&env, "/oauth/consent").await?,
        "foreign_origin"
    );
    assert_eq!(
        failed_check(&env, &lri, "/oauth/consent").await?.as_deref(),
        Some("posted from the environment's own origin")
    );

    // From the environment's own origin the same form goes through.
    let own = Url::parse(&env.base)?.origin().ascii_serialization();
    let redirect = location(
        env.http
            .post(env.url("/oauth/consent"))
            .header(ORIGIN, own)
            .form(&form)
            .send()
            .await?,
        StatusCode::FOUND,
    )?;
    assert!(query_param(&redirect, "code").is_ok(), "{redirect}");
    Ok(())
}

#[tokio::test]
async fn without_browser_binding_a_sign_in_sets_no_cookie_and_needs_none() -> Result<()> {
    let env = TestEnv::spawn_with(|config| {
        config.resources[0].browser_binding = false;
        config.resources[0].consent = ConsentMode::Prompt;
    })
    .await?;
    let management = env.management_token().await?;
    let response = server_side()?
        .get(env.url("/oauth/authorize"))
        .query(&[
            ("response_type", "code"),
            ("client_id", crate::helpers::PUBLIC_CLIENT),
            ("redirect_uri", crate::helpers::REDIRECT_URI),
            (
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            ),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await?;
    ensure!(response.headers().get(SET_COOKIE).is_none(), "no cookie");
    let login = location(response, StatusCode::FOUND)?;
    let lri = query_param(&login, "login_request_id")?;
    let state = query_param(&login, "state")?;
    let posted = env.post_user(&lri, Some(&management), &ada()).await?;
    ensure!(posted.status() == StatusCode::OK, "user post");

    let page = text(
        server_side()?
            .get(callback_url(&env))
            .query(&[("state", &state)])
            .send()
            .await?,
        StatusCode::OK,
    )
    .await?;
    let marker = "name=\"consent_id\" value=\"";
    let start = page.find(marker).context("consent_id field")? + marker.len();
    let end = page[start..].find('"').context("consent_id end")? + start;
    let response = server_side()?
        .post(env.url("/oauth/consent"))
        .form(&[("consent_id", &page[start..end]), ("decision", "approve")])
        .send()
        .await?;
    ensure!(
        response.headers().get(SET_COOKIE).is_none(),
        "no cookie to clear"
    );
    let redirect = location(response, StatusCode::FOUND)?;
    assert!(query_param(&redirect, "code").is_ok(), "{redirect}");
    Ok(())
}
