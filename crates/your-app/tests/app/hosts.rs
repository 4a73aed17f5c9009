//! The listener guard: a request for a host Your App does not answer for (a web page's own name
//! rebound to 127.0.0.1) gets 421 before routing, so a page cannot read the login page or make
//! Your App hand a sign-in off; loopback names, the public URL's host and an allowed host pass.

use reqwest::header::HOST;
use url::Url;

use crate::support::{FakeScalekit, TestApp, config, expect_status};

const LOGIN: [(&str, &str); 2] = [("login_request_id", "lri_1"), ("state", "st_1")];

async fn get_login_as(app: &TestApp, host: &str) -> anyhow::Result<reqwest::Response> {
    Ok(app
        .http
        .get(app.base_url.join("login")?)
        .query(&LOGIN)
        .header(HOST, host)
        .send()
        .await?)
}

#[tokio::test]
async fn a_request_for_a_foreign_host_is_misdirected_and_hands_nothing_off() -> anyhow::Result<()> {
    let fake = FakeScalekit::start(3600).await?;
    // With auto_login, a GET that reached the handler would post Ada to Scalekit.
    let app = TestApp::start(config(&fake.url, Some("ada"))?).await?;
    let response = get_login_as(&app, "evil.example:8401").await?;
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    let body = expect_status(response, 421).await?;
    assert_eq!(
        body,
        "this server does not answer for the host evil.example:8401 (only for localhost, \
         127.0.0.1, [::1], its own URL's host and the allowed hosts); if you reach it by this \
         name on purpose (a container, a proxy), start it with --allowed-host evil.example\n"
    );
    assert!(fake.token_requests().is_empty());
    assert!(fake.user_posts().is_empty());
    Ok(())
}

#[tokio::test]
async fn loopback_the_public_host_and_an_allowed_host_reach_the_login_page() -> anyhow::Result<()> {
    let fake = FakeScalekit::start(3600).await?;
    let mut config = config(&fake.url, None)?;
    config.public_url = Some(Url::parse("https://app.example/")?);
    config.allowed_hosts = vec!["app.internal".parse()?];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let app = your_app::App::from_listener(listener, config)?;
    tokio::spawn(app.serve());
    let app = TestApp {
        base_url: Url::parse(&format!("http://{address}/"))?,
        http: reqwest::Client::new(),
    };
    let port = address.port();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        "app.example".to_owned(),
        format!("app.internal:{port}"),
    ] {
        let response = get_login_as(&app, &host).await?;
        assert_eq!(response.status(), 200, "{host}");
    }
    let other = get_login_as(&app, "other.internal").await?;
    assert_eq!(other.status(), 421);
    Ok(())
}
