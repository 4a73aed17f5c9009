//! Discovery documents, the JWKS and path tolerance.

use anyhow::Result;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{API_CLIENT_ID, API_CLIENT_SECRET, RESOURCE, TestEnv, json, token_json};

#[tokio::test]
async fn per_resource_metadata_is_identical_at_both_urls_and_names_the_resource_issuer()
-> Result<()> {
    let env = TestEnv::spawn().await?;
    let inserted = json(
        env.get(&format!(
            "/.well-known/oauth-authorization-server/resources/{RESOURCE}"
        ))
        .await?,
        StatusCode::OK,
    )
    .await?;
    let appended = json(
        env.get(&format!(
            "/resources/{RESOURCE}/.well-known/oauth-authorization-server"
        ))
        .await?,
        StatusCode::OK,
    )
    .await?;
    assert_eq!(inserted, appended);
    let base = &env.base;
    assert_eq!(inserted["issuer"], format!("{base}/resources/{RESOURCE}"));
    assert_eq!(
        inserted["authorization_endpoint"],
        format!("{base}/oauth/authorize")
    );
    assert_eq!(inserted["token_endpoint"], format!("{base}/oauth/token"));
    assert_eq!(
        inserted["registration_endpoint"],
        format!("{base}/api/v1/resources/{RESOURCE}/clients:register")
    );
    assert_eq!(inserted["jwks_uri"], format!("{base}/keys"));
    assert_eq!(
        inserted["revocation_endpoint"],
        format!("{base}/oauth/revoke")
    );
    assert_eq!(
        inserted["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(
        inserted["response_types_supported"],
        serde_json::json!(["code"])
    );
    // The fixtures' resource has cross-app access on (`cross_app_access`): `jwt-bearer` and the
    // ID-JAG grant profile are advertised.
    assert_eq!(
        inserted["grant_types_supported"],
        serde_json::json!([
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:jwt-bearer"
        ])
    );
    assert_eq!(
        inserted["authorization_grant_profiles_supported"],
        serde_json::json!(["urn:ietf:params:oauth:grant-profile:id-jag"])
    );
    assert_eq!(
        inserted["scopes_supported"],
        serde_json::json!([
            "openid",
            "profile",
            "email",
            "offline_access",
            "mcp:read",
            "mcp:write"
        ])
    );
    assert_eq!(
        inserted["authorization_response_iss_parameter_supported"],
        true
    );
    assert_eq!(inserted["client_id_metadata_document_supported"], true);
    Ok(())
}

#[tokio::test]
async fn environment_documents_name_the_environment_and_offer_no_registration() -> Result<()> {
    let env = TestEnv::spawn().await?;
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let document = json(env.get(path).await?, StatusCode::OK).await?;
        assert_eq!(document["issuer"], env.base.as_str(), "{path}");
        assert_eq!(document["jwks_uri"], format!("{}/keys", env.base), "{path}");
        assert!(document.get("registration_endpoint").is_none(), "{path}");
    }
    let oidc = json(
        env.get("/.well-known/openid-configuration").await?,
        StatusCode::OK,
    )
    .await?;
    assert_eq!(
        oidc["id_token_signing_alg_values_supported"],
        serde_json::json!(["RS256"])
    );
    Ok(())
}

#[tokio::test]
async fn resource_openid_configuration_and_resource_keys_are_not_found() -> Result<()> {
    let env = TestEnv::spawn().await?;
    for path in [
        format!("/resources/{RESOURCE}/.well-known/openid-configuration"),
        format!("/resources/{RESOURCE}/keys"),
        "/.well-known/oauth-authorization-server/resources/res_404".to_owned(),
    ] {
        let response = env.get(&path).await?;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    Ok(())
}

#[tokio::test]
async fn the_jwks_has_one_rs256_signing_key_with_an_snk_kid() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let jwks = json(env.get("/keys").await?, StatusCode::OK).await?;
    let keys = jwks["keys"].as_array().cloned().unwrap_or_default();
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["alg"], "RS256");
    assert_eq!(key["e"], "AQAB");
    assert!(
        key["kid"]
            .as_str()
            .is_some_and(|kid| kid.starts_with("snk_")),
        "{key}"
    );
    assert!(key["n"].as_str().is_some_and(|n| n.len() > 300), "{key}");
    Ok(())
}

#[tokio::test]
async fn a_double_slash_before_oauth_token_is_tolerated() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let response = env
        .http
        .post(format!("{}//oauth/token", env.base))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", API_CLIENT_ID),
            ("client_secret", API_CLIENT_SECRET),
        ])
        .send()
        .await?;
    let body: Value = token_json(response, StatusCode::OK).await?;
    assert_eq!(body["token_type"], "Bearer");
    Ok(())
}
