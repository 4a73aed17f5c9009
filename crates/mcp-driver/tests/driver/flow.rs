//! Whole runs of the driver: the happy path, refresh, and one broken step at a time.

use std::time::Duration;

use mcp_driver::{DriverConfig, DriverError, Phase, refresh, run_flow, run_flow_recorded};
use serde_json::json;

use crate::fake::{self, Knobs};

fn config(fake: &fake::Fake) -> DriverConfig {
    let mut config = DriverConfig::new(fake.mcp_url());
    config.timeout = Duration::from_secs(5);
    config
}

#[tokio::test]
async fn flow_completes_and_whoami_returns_the_structured_content() -> anyhow::Result<()> {
    let fake = fake::start(Knobs::default()).await?;
    let report = run_flow(&config(&fake)).await?;

    assert_eq!(
        report.whoami,
        json!({"sub": "usr_1", "email": "ada@example.com"})
    );
    assert_eq!(report.client_id, "m2m_1");
    assert_eq!(report.authorization_server.as_str(), fake.issuer());
    assert_eq!(report.resource, fake.mcp_url().as_str());
    assert_eq!(report.requested_scopes, vec!["mcp:read"]);
    assert_eq!(report.granted_scopes, vec!["mcp:read"]);
    assert_eq!(
        report.access_token_claims,
        json!({"sub": "usr_1", "aud": ["res_1"]})
    );
    assert_eq!(report.id_token_claims, None);
    assert_eq!(
        report.tokens.refresh_token.as_ref().map(|t| t.expose()),
        Some("rt_1")
    );
    assert!(!format!("{:?}", report.tokens).contains("rt_1"));

    let phases: Vec<Phase> = report.hops.iter().map(|hop| hop.phase).collect();
    assert_eq!(
        phases,
        vec![
            Phase::Challenge,
            Phase::ProtectedResourceMetadata,
            Phase::AuthorizationServerMetadata,
            Phase::Registration,
            Phase::Authorization,
            Phase::Authorization,
            Phase::Token,
            Phase::Mcp,
            Phase::Mcp,
            Phase::Mcp,
        ]
    );
    let mcp_exchanges: Vec<(u16, Option<&str>)> = report.hops[7..]
        .iter()
        .map(|hop| (hop.status, hop.detail.as_deref()))
        .collect();
    assert_eq!(
        mcp_exchanges,
        vec![
            (200, Some("initialize")),
            (202, Some("notifications/initialized")),
            (200, Some("tools/call")),
        ]
    );
    assert_eq!(report.hops[0].status, 401);
    assert_eq!(report.hops[6].cache_control.as_deref(), Some("no-store"));
    let login_hop = &report.hops[5];
    let location = login_hop.location.as_deref().expect("callback location");
    // The test bed's one redaction rule: `code_1` shows three characters and `…`.
    assert!(location.contains("code=cod…"), "{location}");
    assert!(!location.contains("code_1"), "{location}");

    let authorize = fake.seen(|seen| seen.authorize_query.clone());
    assert_eq!(authorize["response_type"], "code");
    assert_eq!(authorize["code_challenge_method"], "S256");
    assert_eq!(authorize["resource"], fake.mcp_url().as_str());
    assert_eq!(authorize["scope"], "mcp:read");
    assert!(!authorize.contains_key("nonce"));
    let token_form = fake.seen(|seen| seen.token_forms[0].clone());
    assert_eq!(token_form["grant_type"], "authorization_code");
    assert_eq!(token_form["client_id"], "m2m_1");
    assert_eq!(token_form["resource"], fake.mcp_url().as_str());
    assert_eq!(
        token_form["redirect_uri"],
        "http://127.0.0.1:33418/callback"
    );
    let registration = fake
        .seen(|seen| seen.registration.clone())
        .expect("registered");
    assert_eq!(
        registration,
        json!({
            "client_name": "testbed mcp-driver",
            "redirect_uris": ["http://127.0.0.1:33418/callback"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "application_type": "native",
            "scope": "mcp:read",
        })
    );
    let bearer = fake.seen(|seen| seen.mcp_authorization.clone());
    assert!(
        bearer.iter().all(|value| value.starts_with("Bearer eyJ")),
        "{bearer:?}"
    );
    Ok(())
}

#[tokio::test]
async fn refresh_sends_the_refresh_token_and_resource() -> anyhow::Result<()> {
    let fake = fake::start(Knobs::default()).await?;
    let config = config(&fake);
    let report = run_flow(&config).await?;
    let tokens = refresh(&config, &report).await?;
    assert_eq!(tokens.access_token.expose(), "at_2");
    assert_eq!(
        tokens.refresh_token.as_ref().map(|t| t.expose()),
        Some("rt_2")
    );
    let form = fake.seen(|seen| seen.token_forms[1].clone());
    assert_eq!(form["grant_type"], "refresh_token");
    assert_eq!(form["refresh_token"], "rt_1");
    assert_eq!(form["resource"], fake.mcp_url().as_str());
    assert_eq!(form["client_id"], "m2m_1");
    Ok(())
}

#[tokio::test]
async fn openid_extra_scope_yields_a_verified_id_token() -> anyhow::Result<()> {
    let fake = fake::start(Knobs::default()).await?;
    let mut config = config(&fake);
    config.extra_scopes = vec![
        "openid".to_owned(),
        "offline_access".to_owned(),
        "unlisted".to_owned(),
    ];
    let report = run_flow(&config).await?;
    assert_eq!(
        report.requested_scopes,
        vec!["mcp:read", "openid", "offline_access"]
    );
    let claims = report.id_token_claims.expect("id token claims");
    assert_eq!(claims["iss"], fake.environment());
    assert_eq!(claims["sub"], "usr_1");
    assert_eq!(claims["aud"], json!(["m2m_1"]));
    let authorize = fake.seen(|seen| seen.authorize_query.clone());
    assert_eq!(claims["nonce"], authorize["nonce"]);
    assert!(claims["at_hash"].is_string());
    assert!(report.hops.iter().any(|hop| hop.phase == Phase::Jwks));
    Ok(())
}

#[tokio::test]
async fn id_token_with_a_wrong_at_hash_is_rejected() -> anyhow::Result<()> {
    let fake = fake::start(Knobs {
        id_token_wrong_at_hash: true,
        ..Knobs::default()
    })
    .await?;
    let mut config = config(&fake);
    config.extra_scopes = vec!["openid".to_owned()];
    match run_flow(&config).await {
        Err(DriverError::IdToken(reason)) => {
            assert_eq!(reason, "at_hash does not match the access token");
        }
        other => panic!("expected an id token error, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn id_token_from_a_foreign_issuer_is_rejected() -> anyhow::Result<()> {
    let fake = fake::start(Knobs {
        id_token_issuer: Some("http://127.0.0.1:1".to_owned()),
        ..Knobs::default()
    })
    .await?;
    let mut config = config(&fake);
    config.extra_scopes = vec!["openid".to_owned()];
    match run_flow(&config).await {
        Err(DriverError::IdToken(reason)) => {
            assert!(reason.contains("http://127.0.0.1:1"), "{reason}")
        }
        other => panic!("expected an id token error, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn wrong_iss_on_the_callback_is_rejected_with_iss_mismatch() -> anyhow::Result<()> {
    let fake = fake::start(Knobs {
        callback_iss: Some(Some("http://evil.example".to_owned())),
        ..Knobs::default()
    })
    .await?;
    match run_flow(&config(&fake)).await {
        Err(DriverError::IssMismatch { expected, found }) => {
            assert_eq!(expected, fake.issuer());
            assert_eq!(found, "http://evil.example");
        }
        other => panic!("expected IssMismatch, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn missing_iss_on_the_callback_is_rejected_when_advertised() -> anyhow::Result<()> {
    let fake = fake::start(Knobs {
        callback_iss: Some(None),
        ..Knobs::default()
    })
    .await?;
    assert!(matches!(
        run_flow(&config(&fake)).await,
        Err(DriverError::MissingIss)
    ));
    Ok(())
}

#[tokio::test]
async fn metadata_issuer_with_a_trailing_slash_is_an_issuer_mismatch() -> anyhow::Result<()> {
    let fake = fake::start(Knobs {
        metadata_issuer_suffix: Some("/".to_owned()),
        ..Knobs::default()
    })
    .await?;
    match run_flow(&config(&fake)).await {
        Err(DriverError::IssuerMismatch { expected, found }) => {
            assert_eq!(expected, fake.issuer());
            assert_eq!(found, format!("{}/", fake.issuer()));
        }
        other => panic!("expected IssuerMismatch, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn foreign_resource_in_prm_is_a_resource_mismatch() -> anyhow::Result<()> {
    let fake = fake::start(Knobs {
        resource: Some("http://127.0.0.1:1/mcp".to_owned()),
        ..Knobs::default()
    })
    .await?;
    match run_flow(&config(&fake)).await {
        Err(DriverError::ResourceMismatch {
            published,
            expected,
        }) => {
            assert_eq!(published, "http://127.0.0.1:1/mcp");
            assert_eq!(expected, fake.mcp_url());
        }
        other => panic!("expected ResourceMismatch, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn an_error_page_at_its_own_url_breaks_the_redirect_chain_with_status_and_excerpt()
-> anyhow::Result<()> {
    let fake = fake::start(Knobs {
        login_page_fails: true,
        ..Knobs::default()
    })
    .await?;
    let (hops, result) = run_flow_recorded(&config(&fake)).await;
    match result {
        Err(DriverError::AuthorizationRedirect { reason }) => {
            assert!(reason.starts_with("400 Bad Request at "), "{reason}");
            assert!(
                reason
                    .ends_with("instead of a redirect: Sign-in failed The login request expired."),
                "{reason}"
            );
        }
        other => panic!("expected AuthorizationRedirect, got {other:?}"),
    }
    let last = hops.last().expect("hops");
    assert_eq!((last.phase, last.status), (Phase::Authorization, 400));
    Ok(())
}

#[tokio::test]
async fn a_redirect_to_the_hosted_invalid_state_page_is_reported_with_its_error_and_description()
-> anyhow::Result<()> {
    let fake = fake::start(Knobs {
        ends_on_invalid_state_page: true,
        ..Knobs::default()
    })
    .await?;
    let (hops, result) = run_flow_recorded(&config(&fake)).await;
    match result {
        Err(DriverError::HostedErrorPage {
            error,
            error_description,
            status,
            url,
        }) => {
            assert_eq!(error, "invalid_state");
            assert_eq!(
                error_description.as_deref(),
                Some("the sign-in request expired")
            );
            assert_eq!(status, 400);
            assert!(url.contains("/error?"), "{url}");
        }
        other => panic!("expected HostedErrorPage, got {other:?}"),
    }
    let last = hops.last().expect("hops");
    assert_eq!((last.phase, last.status), (Phase::Authorization, 400));
    Ok(())
}

#[tokio::test]
async fn token_endpoint_error_is_reported_with_status_and_body() -> anyhow::Result<()> {
    let fake = fake::start(Knobs {
        token_fails: true,
        ..Knobs::default()
    })
    .await?;
    match run_flow(&config(&fake)).await {
        Err(DriverError::TokenEndpoint {
            status,
            error,
            error_description,
        }) => {
            assert_eq!(status, 400);
            assert_eq!(error, "invalid_grant");
            assert_eq!(
                error_description.as_deref(),
                Some("authorization code already used")
            );
        }
        other => panic!("expected TokenEndpoint, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn a_server_that_does_not_challenge_gives_no_challenge() -> anyhow::Result<()> {
    let fake = fake::start(Knobs::default()).await?;
    let mut config = config(&fake);
    config.mcp_url = fake.base().join("oauth/token")?;
    let (hops, result) = run_flow_recorded(&config).await;
    assert!(
        matches!(result, Err(DriverError::NoChallenge)),
        "{result:?}"
    );
    assert_eq!(hops.len(), 1);
    Ok(())
}

#[tokio::test]
async fn discovery_falls_back_to_root_prm_and_the_third_as_metadata_url() -> anyhow::Result<()> {
    let fake = fake::start(Knobs {
        challenge_without_resource_metadata: true,
        prm_only_at_root: true,
        as_metadata_only_appended_openid: true,
        ..Knobs::default()
    })
    .await?;
    let report = run_flow(&config(&fake)).await?;
    let discovery: Vec<(Phase, String, u16)> = report
        .hops
        .iter()
        .filter(|hop| {
            matches!(
                hop.phase,
                Phase::ProtectedResourceMetadata | Phase::AuthorizationServerMetadata
            )
        })
        .map(|hop| {
            (
                hop.phase,
                hop.url.replace(fake.base().as_str(), "/"),
                hop.status,
            )
        })
        .collect();
    let expected: Vec<(Phase, String, u16)> = [
        (
            Phase::ProtectedResourceMetadata,
            "/.well-known/oauth-protected-resource/mcp",
            404,
        ),
        (
            Phase::ProtectedResourceMetadata,
            "/.well-known/oauth-protected-resource",
            200,
        ),
        (
            Phase::AuthorizationServerMetadata,
            "/.well-known/oauth-authorization-server/resources/res_1",
            404,
        ),
        (
            Phase::AuthorizationServerMetadata,
            "/.well-known/openid-configuration/resources/res_1",
            404,
        ),
        (
            Phase::AuthorizationServerMetadata,
            "/resources/res_1/.well-known/openid-configuration",
            200,
        ),
    ]
    .into_iter()
    .map(|(phase, path, status)| (phase, path.to_owned(), status))
    .collect();
    assert_eq!(discovery, expected);
    // Without a challenge scope, PRM scopes_supported are requested.
    assert_eq!(report.requested_scopes, vec!["mcp:read"]);
    Ok(())
}

#[tokio::test]
async fn no_as_metadata_anywhere_lists_every_url_tried() -> anyhow::Result<()> {
    let fake = fake::start(Knobs {
        no_as_metadata: true,
        ..Knobs::default()
    })
    .await?;
    match run_flow(&config(&fake)).await {
        Err(DriverError::AuthorizationServerMetadata { issuer, tried }) => {
            assert_eq!(issuer, fake.issuer());
            let tried: Vec<String> = tried
                .iter()
                .map(|url| url.as_str().replace(fake.base().as_str(), "/"))
                .collect();
            assert_eq!(
                tried,
                vec![
                    "/.well-known/oauth-authorization-server/resources/res_1",
                    "/.well-known/openid-configuration/resources/res_1",
                    "/resources/res_1/.well-known/openid-configuration",
                ]
            );
        }
        other => panic!("expected AuthorizationServerMetadata, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn refused_registration_reports_status_and_body() -> anyhow::Result<()> {
    let fake = fake::start(Knobs {
        registration_refused: true,
        ..Knobs::default()
    })
    .await?;
    match run_flow(&config(&fake)).await {
        Err(DriverError::Registration { status, body }) => {
            assert_eq!(status, 403);
            let body: serde_json::Value = serde_json::from_str(&body)?;
            assert_eq!(
                body,
                json!({"error": "access_denied", "error_description": "dynamic client registration is disabled"})
            );
        }
        other => panic!("expected Registration, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn redirect_loop_stops_after_twenty_hops() -> anyhow::Result<()> {
    let fake = fake::start(Knobs {
        authorize_loops: true,
        ..Knobs::default()
    })
    .await?;
    let (hops, result) = run_flow_recorded(&config(&fake)).await;
    match result {
        Err(DriverError::AuthorizationRedirect { reason }) => {
            assert!(reason.starts_with("more than 20 redirects"), "{reason}");
        }
        other => panic!("expected AuthorizationRedirect, got {other:?}"),
    }
    let authorization_hops = hops
        .iter()
        .filter(|hop| hop.phase == Phase::Authorization)
        .count();
    assert_eq!(authorization_hops, 20);
    Ok(())
}
