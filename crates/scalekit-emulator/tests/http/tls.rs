//! `--tls`: HTTPS and gRPC over TLS (ALPN `h2`) from a certificate signed by the local
//! development CA, on one port.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use reqwest::StatusCode;
use scalekit_emulator::grpc::proto::scalekit::v1::auth::auth_service_client::AuthServiceClient;
use scalekit_emulator::grpc::proto::scalekit::v1::auth::{UpdateLoginUserDetailsRequest, User};
use scalekit_emulator::{App, Config, Deps, ManualClock, TlsOptions, TlsSetup};
use serde_json::Value;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use url::Url;

use crate::helpers::{CONNECTION, FIXTURE, TestEnv, VERIFIER, location, query_param};

/// Removes the CA directory when the test ends, even on panic.
struct TemporaryDir(PathBuf);

impl Drop for TemporaryDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An emulator serving TLS at `https://127.0.0.1:{port}`, and a `TestEnv` whose client trusts
/// its CA.
async fn spawn_tls(name: &str) -> Result<(TestEnv, TlsSetup, TemporaryDir)> {
    let dir = TemporaryDir(std::env::temp_dir().join(format!(
        "scalekit-emulator-tls-test-{name}-{}",
        std::process::id()
    )));
    let setup = TlsSetup::load_or_create(&TlsOptions { dir: dir.0.clone() })?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mut config = Config::from_toml_str(FIXTURE)?;
    config.clients.push(scalekit_emulator::ClientConfig {
        client_id: crate::helpers::PUBLIC_CLIENT.to_owned(),
        redirect_uris: vec!["http://127.0.0.1/callback".to_owned()],
        resource: crate::helpers::RESOURCE.to_owned(),
        client_secret: None,
        client_name: None,
    });
    config.public_url = Some(Url::parse(&format!("https://{}", listener.local_addr()?))?);
    let clock = ManualClock::now();
    let deps = Deps {
        clock: Arc::new(clock.clone()),
        ..Deps::default()
    };
    let app = App::from_listener_with(listener, config, deps)?;
    let base = app.base_url().as_str().trim_end_matches('/').to_owned();
    tokio::spawn(app.serve_tls(setup.clone()));
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(
            setup.ca_cert_pem().as_bytes(),
        )?)
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()?;
    Ok((TestEnv { base, http, clock }, setup, dir))
}

#[tokio::test]
async fn keys_are_served_over_https_with_alpn_h2_and_over_http_1_1() -> Result<()> {
    let (env, setup, _dir) = spawn_tls("keys").await?;
    assert!(env.base.starts_with("https://127.0.0.1:"), "{}", env.base);

    let response = env.get("/keys").await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let keys: Value = response.json().await?;
    assert!(keys["keys"][0]["kid"].is_string(), "{keys}");

    let http1 = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(
            setup.ca_cert_pem().as_bytes(),
        )?)
        .http1_only()
        .build()?;
    let response = http1.get(env.url("/keys")).send().await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), reqwest::Version::HTTP_11);

    let discovery: Value = env
        .get("/.well-known/openid-configuration")
        .await?
        .json()
        .await?;
    assert_eq!(discovery["issuer"], env.base.as_str());
    assert_eq!(discovery["jwks_uri"], format!("{}/keys", env.base));
    Ok(())
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_ca_is_refused() -> Result<()> {
    let (env, _setup, _dir) = spawn_tls("untrusted").await?;
    let untrusted = reqwest::Client::new();
    let result = untrusted.get(env.url("/keys")).send().await;
    assert!(result.is_err(), "{result:?}");
    Ok(())
}

#[tokio::test]
async fn a_user_posted_over_grpc_on_tls_completes_the_flow() -> Result<()> {
    let (env, setup, _dir) = spawn_tls("grpc").await?;
    let management = env.management_token().await?;
    let (lri, state) = env.start_login().await?;

    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(setup.ca_cert_pem()));
    let channel = Channel::from_shared(env.base.clone())?
        .tls_config(tls)?
        .connect()
        .await?;
    let mut request = tonic::Request::new(UpdateLoginUserDetailsRequest {
        connection_id: CONNECTION.to_owned(),
        login_request_id: lri,
        user: Some(User {
            sub: "ada-tls".to_owned(),
            email: "ada@example.com".to_owned(),
            ..User::default()
        }),
    });
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {management}").parse()?);
    let response = AuthServiceClient::new(channel)
        .update_login_user_details(request)
        .await?
        .into_inner();
    assert!(
        response.auth_request_id.starts_with("req_"),
        "{}",
        response.auth_request_id
    );

    let redirect = location(env.callback(&state).await?, StatusCode::FOUND)?;
    let code = query_param(&redirect, "code")?;
    assert_eq!(
        query_param(&redirect, "iss")?,
        format!("{}/resources/{}", env.base, crate::helpers::RESOURCE)
    );
    let tokens = env.exchange(&code, VERIFIER, StatusCode::OK).await?;
    let access: Value = env
        .verify(
            tokens["access_token"].as_str().context("access_token")?,
            crate::helpers::RESOURCE,
        )
        .await?;
    assert_eq!(access["iss"], env.base.as_str());
    assert_eq!(access["xuid"], "ada-tls");
    Ok(())
}
