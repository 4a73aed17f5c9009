//! Flows, `client_credentials` and refreshes through the generator's own client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bench::BenchError;
use bench::client::Connection;
use bench::load::{Budget, closed_loop};
use bench::scenario::{Session, Target, client_credentials, refresh, run_flow};
use scalekit_emulator::{App, Config};

async fn emulator() -> anyhow::Result<(SocketAddr, Config)> {
    let config = Config::from_toml_str(include_str!("../../../../fixtures/environment.toml"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let app = App::from_listener(listener, config.clone())?;
    let address = app.local_addr();
    tokio::spawn(app.serve());
    Ok((address, config))
}

#[tokio::test]
async fn flows_client_credentials_and_refreshes_complete_against_the_emulator() -> anyhow::Result<()>
{
    let (address, config) = emulator().await?;
    let session = Arc::new(Session::establish(Target::from_config(&config, address)?).await?);
    assert!(session.client_id.starts_with("m2m_"));

    let mut workers = Vec::new();
    for id in 0..3u64 {
        workers.push((
            Connection::open(address).await?,
            Arc::clone(&session),
            id,
            0u64,
        ));
    }
    let budget = Budget {
        duration: Duration::from_secs(30),
        max_operations: Some(12),
    };
    let (_, measurement) = closed_loop(
        workers,
        budget,
        |(mut connection, session, id, sequence)| async move {
            run_flow(&mut connection, &session, id, sequence).await?;
            Ok((connection, session, id, sequence + 1))
        },
    )
    .await?;
    assert_eq!(measurement.operations, 12);
    assert!(measurement.percentile_ms(0.99) >= measurement.percentile_ms(0.5));

    let mut connection = Connection::open(address).await?;
    let tokens = run_flow(&mut connection, &session, 99, 0).await?;
    assert_eq!(tokens.access_token.split('.').count(), 3);
    let rotated = refresh(&mut connection, &session, &tokens.refresh_token).await?;
    assert_ne!(rotated, tokens.refresh_token);
    refresh(&mut connection, &session, &rotated).await?;
    let management = client_credentials(&mut connection, &session.target).await?;
    assert_eq!(management.split('.').count(), 3);
    Ok(())
}

#[tokio::test]
async fn a_refused_request_fails_with_the_emulators_status_and_body() -> anyhow::Result<()> {
    let (address, config) = emulator().await?;
    let mut target = Target::from_config(&config, address)?;
    target.api_client_secret = "not-the-secret".to_owned();
    let mut connection = Connection::open(address).await?;
    let error = client_credentials(&mut connection, &target)
        .await
        .expect_err("a wrong secret is refused");
    let BenchError::Unexpected {
        step,
        expected,
        status,
        body,
    } = error
    else {
        panic!("not an unexpected answer: {error}");
    };
    assert_eq!((step, expected, status), ("client credentials", 200, 401));
    let body: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(
        body,
        serde_json::json!({
            "error": "invalid_client",
            "error_description": "client authentication failed"
        })
    );

    let session = Session::establish(Target::from_config(&config, address)?).await?;
    let error = refresh(&mut connection, &session, "no-such-token")
        .await
        .expect_err("an unknown refresh token is refused");
    assert_eq!(
        error.to_string(),
        "refresh: expected 200, got 400: {\"error\":\"invalid_grant\",\"error_description\":\"the refresh token is invalid, expired or revoked\"}"
    );
    Ok(())
}

/// `testbed-bench flows` against an emulator served elsewhere (here on a thread of its own):
/// the budget of flows completes.
#[test]
fn flows_against_a_running_emulator_complete_the_budget() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let (address, config) = runtime.block_on(emulator())?;
    let budget = Budget {
        duration: Duration::from_secs(30),
        max_operations: Some(10),
    };
    let measurement = bench::run::flows_against(&config, address, 2, budget, false)?;
    assert_eq!(measurement.operations, 10);
    assert_eq!(measurement.concurrency, 2);
    let refreshes = bench::run::flows_against(&config, address, 2, budget, true)?;
    assert_eq!(refreshes.operations, 10);
    drop(runtime);
    Ok(())
}
