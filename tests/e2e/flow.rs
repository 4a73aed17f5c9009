//! The whole flow: discovery, DCR, authorize, Your App's hand-off, consent, tokens, the MCP tool.

use std::time::Duration;

use mcp_driver::{DriverConfig, DriverError, FlowReport};
use serde_json::Value;
use url::Url;

use crate::support::spawn_stack;

fn driver_config(mcp_url: &Url, extra_scopes: &[&str]) -> DriverConfig {
    DriverConfig {
        mcp_url: mcp_url.clone(),
        redirect_uri: Url::parse("http://127.0.0.1:33418/callback").unwrap(),
        client_name: "e2e".to_owned(),
        extra_scopes: extra_scopes
            .iter()
            .map(|scope| (*scope).to_owned())
            .collect(),
        timeout: Duration::from_secs(10),
        user_agent: mcp_driver::UserAgent::Http,
        ca_cert_pem: None,
    }
}

fn claim<'a>(claims: &'a Value, name: &str) -> &'a Value {
    claims.get(name).unwrap_or(&Value::Null)
}

#[tokio::test]
async fn a_persona_signs_in_through_your_app_and_whoami_shows_them() {
    let stack = spawn_stack("ada").await;
    let config = driver_config(&stack.mcp_url, &["openid", "offline_access"]);

    let report: FlowReport = mcp_driver::run_flow(&config)
        .await
        .expect("the flow completes");

    let ada = stack.fixtures.persona("ada").unwrap();
    let resource = &stack.fixtures.environment.resources[0];
    assert_eq!(
        claim(&report.whoami, "email").as_str(),
        ada.claims.email.as_deref()
    );
    assert_eq!(
        claim(&report.whoami, "xuid").as_str(),
        ada.claims.sub.as_deref()
    );
    assert!(
        claim(&report.whoami, "sub")
            .as_str()
            .unwrap()
            .starts_with("usr_"),
        "{}",
        report.whoami
    );
    assert_eq!(
        claim(&report.access_token_claims, "aud"),
        &serde_json::json!(resource.audience())
    );
    assert_eq!(
        claim(&report.access_token_claims, "iss").as_str(),
        Some(stack.environment_url.as_str().trim_end_matches('/'))
    );
    assert!(report.client_id.starts_with("m2m_"), "{}", report.client_id);
    let mut granted = report.granted_scopes.clone();
    granted.sort();
    assert_eq!(granted, ["mcp:read", "offline_access", "openid"]);
    assert!(
        report.tokens.refresh_token.is_some(),
        "offline_access was granted"
    );
    let id_token = report
        .id_token_claims
        .as_ref()
        .expect("openid was granted: a verified ID token");
    assert_eq!(
        claim(id_token, "aud"),
        &serde_json::json!([report.client_id])
    );
    assert_eq!(
        report.authorization_server.as_str(),
        format!("{}resources/{}", stack.environment_url, resource.id)
    );
}

#[tokio::test]
async fn without_offline_access_no_refresh_token_is_issued() {
    let stack = spawn_stack("linus").await;
    let config = driver_config(&stack.mcp_url, &[]);

    let report = mcp_driver::run_flow(&config)
        .await
        .expect("the flow completes");

    assert_eq!(report.granted_scopes, ["mcp:read"]);
    assert!(report.tokens.refresh_token.is_none());
    assert!(report.id_token_claims.is_none());
    let linus = stack.fixtures.persona("linus").unwrap();
    assert_eq!(
        claim(&report.whoami, "email").as_str(),
        linus.claims.email.as_deref()
    );
}

#[tokio::test]
async fn a_refresh_rotates_and_the_old_refresh_token_is_refused() {
    let stack = spawn_stack("grace").await;
    let config = driver_config(&stack.mcp_url, &["offline_access"]);
    let report = mcp_driver::run_flow(&config)
        .await
        .expect("the flow completes");

    let rotated = mcp_driver::refresh(&config, &report)
        .await
        .expect("the first refresh works");
    assert_ne!(
        rotated.refresh_token.as_ref().unwrap().expose(),
        report.tokens.refresh_token.as_ref().unwrap().expose()
    );

    let reuse = mcp_driver::refresh(&config, &report).await.unwrap_err();
    assert!(
        matches!(&reuse, DriverError::TokenEndpoint { status: 400, error, .. } if error == "invalid_grant"),
        "{reuse:?}"
    );
}
