//! The listener guard on the emulator's REST port: a request for a host the emulator does not
//! answer for (a web page's own name rebound to 127.0.0.1) is refused with 421 before routing,
//! in the gateway shape; loopback names and an allowed host pass; a request naming no host is a
//! bad request. The gRPC form of the same check is in `grpc.rs`.

use anyhow::{Context as _, Result};
use reqwest::StatusCode;
use reqwest::header::HOST;
use scalekit_emulator::{App, Config};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use url::Url;

use crate::helpers::{ERROR_INFO, FIXTURE, TestEnv, json as json_body};

fn port(env: &TestEnv) -> Result<u16> {
    Url::parse(&env.base)?.port().context("a port")
}

async fn get_as(env: &TestEnv, host: &str, path: &str) -> Result<reqwest::Response> {
    Ok(env
        .http
        .get(env.url(path))
        .header(HOST, host)
        .send()
        .await?)
}

#[tokio::test]
async fn a_request_for_a_foreign_host_is_misdirected_before_routing_in_the_gateway_shape()
-> Result<()> {
    let env = TestEnv::spawn().await?;
    env.start_login().await?;
    let port = port(&env)?;
    // The request log and the pending sign-ins are what DNS rebinding would read.
    for path in ["/_emulator/requests", "/_emulator/login-requests", "/keys"] {
        let response = get_as(&env, &format!("evil.example:{port}"), path).await?;
        assert_eq!(
            json_body(response, StatusCode::MISDIRECTED_REQUEST).await?,
            json!({
                "code": 9,
                "message": format!(
                    "this server does not answer for the host evil.example:{port} (only for \
                     localhost, 127.0.0.1, [::1], its own URL's host and the allowed hosts); if \
                     you reach it by this name on purpose (a container, a proxy), start it with \
                     --allowed-host evil.example"
                ),
                "details": [{"@type": ERROR_INFO, "error_code": "FAILED_PRECONDITION"}]
            }),
            "{path}"
        );
    }
    // Refused before the request log saw it.
    let (_, log) = env
        .control(reqwest::Method::GET, "/_emulator/requests", None)
        .await?;
    let logged: Vec<&Value> = log["requests"]
        .as_array()
        .context("requests")?
        .iter()
        .filter(|record| record["path"] == "/keys")
        .collect();
    assert!(logged.is_empty(), "{logged:?}");
    Ok(())
}

#[tokio::test]
async fn a_state_changing_call_for_a_foreign_host_changes_nothing() -> Result<()> {
    let env = TestEnv::spawn().await?;
    env.start_login().await?;
    let response = env
        .http
        .post(env.url("/_emulator/reset"))
        .header(HOST, "evil.example")
        .header("content-type", "application/json")
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST);
    let (_, pending) = env
        .control(reqwest::Method::GET, "/_emulator/login-requests", None)
        .await?;
    assert_eq!(pending["login_requests"].as_array().map(Vec::len), Some(1));
    Ok(())
}

#[tokio::test]
async fn loopback_names_and_an_allowed_host_are_served() -> Result<()> {
    let env = TestEnv::spawn_with(|config| {
        config.allowed_hosts = vec!["emulator.internal".parse().expect("a host")];
    })
    .await?;
    let port = port(&env)?;
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("LocalHost:{port}"),
        format!("[::1]:{port}"),
        "localhost".to_owned(),
        format!("emulator.internal:{port}"),
        "emulator.internal".to_owned(),
    ] {
        let response = get_as(&env, &host, "/keys").await?;
        assert_eq!(response.status(), StatusCode::OK, "{host}");
    }
    let other = get_as(&env, "other.internal", "/keys").await?;
    assert_eq!(other.status(), StatusCode::MISDIRECTED_REQUEST);
    Ok(())
}

#[tokio::test]
async fn the_public_url_s_host_is_served_on_any_port() -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let mut config = Config::from_toml_str(FIXTURE)?;
    config.public_url = Some(Url::parse("https://emulator.example")?);
    let app = App::from_listener(listener, config)?;
    tokio::spawn(app.serve());
    let http = reqwest::Client::new();
    for (host, status) in [
        ("emulator.example", StatusCode::OK),
        ("EMULATOR.example:8443", StatusCode::OK),
        ("api.emulator.example", StatusCode::MISDIRECTED_REQUEST),
    ] {
        let response = http
            .get(format!("http://{address}/keys"))
            .header(HOST, host)
            .send()
            .await?;
        assert_eq!(response.status(), status, "{host}");
    }
    Ok(())
}

#[tokio::test]
async fn a_request_naming_no_host_is_a_bad_request() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let address = Url::parse(&env.base)?;
    let mut stream = tokio::net::TcpStream::connect((
        address.host_str().context("a host")?,
        address.port().context("a port")?,
    ))
    .await?;
    // HTTP/1.0 allows a request without Host; the emulator does not answer one.
    stream
        .write_all(b"GET /keys HTTP/1.0\r\nConnection: close\r\n\r\n")
        .await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    assert!(answer.starts_with("HTTP/1.0 400 "), "{answer}");
    assert!(
        answer
            .contains("the request names no host: it has neither a Host header nor an :authority"),
        "{answer}"
    );
    Ok(())
}
