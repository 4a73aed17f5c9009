//! The whole BYOA flow over HTTP, and refresh rotation.

use anyhow::{Context as _, Result};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    CONNECTION, PUBLIC_CLIENT, REDIRECT_URI, RESOURCE, SERVER_URL, TestEnv, VERIFIER, ada,
    query_param,
};

#[tokio::test]
async fn the_full_byoa_flow_issues_tokens_that_verify_against_the_jwks() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let management = env.management_token().await?;

    let login = env.authorize(&[]).await?;
    assert_eq!(login.path(), "/login");
    let lri = query_param(&login, "login_request_id")?;
    let state = query_param(&login, "state")?;
    assert!(lri.starts_with("lri_"), "{lri}");
    assert_ne!(state, "client-state-1", "the login state is Scalekit's own");

    let response = env.post_user(&lri, Some(&management), &ada()).await?;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await?;
    assert!(
        body["auth_request_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("req_")),
        "{body}"
    );

    let redirect = crate::helpers::location(env.callback(&state).await?, StatusCode::FOUND)?;
    assert!(
        redirect.as_str().starts_with(&format!("{REDIRECT_URI}?")),
        "{redirect}"
    );
    assert_eq!(query_param(&redirect, "state")?, "client-state-1");
    assert_eq!(
        query_param(&redirect, "iss")?,
        format!("{}/resources/{RESOURCE}", env.base)
    );
    let code = query_param(&redirect, "code")?;

    let tokens = env.exchange(&code, VERIFIER, StatusCode::OK).await?;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 3600);
    assert_eq!(tokens["scope"], "openid email offline_access mcp:read");
    assert!(tokens["refresh_token"].is_string());

    let access: Value = env
        .verify(
            tokens["access_token"].as_str().unwrap_or_default(),
            RESOURCE,
        )
        .await?;
    assert_eq!(access["iss"], env.base.as_str());
    assert_eq!(access["aud"], json!([SERVER_URL, RESOURCE]));
    assert!(
        access["sub"]
            .as_str()
            .is_some_and(|sub| sub.starts_with("usr_")),
        "{access}"
    );
    assert_eq!(access["xuid"], "ada-1");
    assert_eq!(access["scope"], "openid email offline_access mcp:read");
    assert_eq!(
        access["scopes"],
        json!(["openid", "email", "offline_access", "mcp:read"])
    );
    assert_eq!(access["client_id"], PUBLIC_CLIENT);
    assert!(
        access["jti"]
            .as_str()
            .is_some_and(|jti| jti.starts_with("tkn_"))
    );
    assert!(
        access["sid"]
            .as_str()
            .is_some_and(|sid| sid.starts_with("ses_"))
    );
    assert_eq!(access["iat"].as_u64(), Some(env.clock.seconds()));
    assert_eq!(access["nbf"], access["iat"]);
    assert_eq!(access["exp"].as_u64(), Some(env.clock.seconds() + 3600));
    assert_eq!(access["email"], "ada@example.com");
    assert_eq!(access["custom_claims"], json!({"plan": "pro"}));
    assert_eq!(access["roles"], json!(["admin"]));
    assert!(
        access["oid"]
            .as_str()
            .is_some_and(|oid| oid.starts_with("org_")),
        "{access}"
    );

    let id: Value = env
        .verify(
            tokens["id_token"].as_str().unwrap_or_default(),
            PUBLIC_CLIENT,
        )
        .await?;
    assert_eq!(id["sub"], access["sub"]);
    assert_eq!(id["azp"], PUBLIC_CLIENT);
    assert_eq!(id["amr"], json!([CONNECTION]));
    assert_eq!(id["nonce"], "nonce-1");
    assert_eq!(id["sid"], access["sid"]);
    assert_eq!(id["email_verified"], true);
    assert_eq!(id["name"], "Ada Lovelace");
    assert_eq!(
        id["at_hash"],
        scalekit_emulator::tokens::at_hash(tokens["access_token"].as_str().unwrap_or_default())
    );
    Ok(())
}

#[tokio::test]
async fn the_same_user_keeps_the_same_usr_id_across_sign_ins() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let first = env
        .exchange(&env.code().await?, VERIFIER, StatusCode::OK)
        .await?;
    let second = env
        .exchange(&env.code().await?, VERIFIER, StatusCode::OK)
        .await?;
    let first: Value = env
        .verify(first["access_token"].as_str().unwrap_or_default(), RESOURCE)
        .await?;
    let second: Value = env
        .verify(
            second["access_token"].as_str().unwrap_or_default(),
            RESOURCE,
        )
        .await?;
    assert_eq!(first["sub"], second["sub"]);
    assert_eq!(first["oid"], second["oid"]);
    assert_ne!(first["sid"], second["sid"]);
    Ok(())
}

#[tokio::test]
async fn refresh_rotates_and_the_old_refresh_token_is_then_invalid_grant() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let tokens = env
        .exchange(&env.code().await?, VERIFIER, StatusCode::OK)
        .await?;
    let first = tokens["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    env.clock.advance(60);
    let refreshed = env
        .token(
            &[
                ("grant_type", "refresh_token"),
                ("client_id", PUBLIC_CLIENT),
                ("refresh_token", &first),
            ],
            StatusCode::OK,
        )
        .await?;
    let second = refreshed["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!second.is_empty());
    assert_ne!(first, second);
    let access: Value = env
        .verify(
            refreshed["access_token"].as_str().unwrap_or_default(),
            RESOURCE,
        )
        .await?;
    assert_eq!(access["iat"].as_u64(), Some(env.clock.seconds()));

    let reused = env
        .token(
            &[
                ("grant_type", "refresh_token"),
                ("client_id", PUBLIC_CLIENT),
                ("refresh_token", &first),
            ],
            StatusCode::BAD_REQUEST,
        )
        .await?;
    assert_eq!(
        reused,
        json!({"error": "invalid_grant", "error_description": "the refresh token was already used; the grant is revoked"})
    );
    // Reuse revoked the whole grant, so the newest token is dead too.
    let revoked = env
        .token(
            &[
                ("grant_type", "refresh_token"),
                ("client_id", PUBLIC_CLIENT),
                ("refresh_token", &second),
            ],
            StatusCode::BAD_REQUEST,
        )
        .await?;
    assert_eq!(revoked["error"], "invalid_grant");
    Ok(())
}

#[tokio::test]
async fn no_refresh_token_is_issued_without_offline_access() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let management = env.management_token().await?;
    let login = env.authorize(&[("scope", "mcp:read")]).await?;
    let lri = query_param(&login, "login_request_id")?;
    let state = query_param(&login, "state")?;
    env.post_user(&lri, Some(&management), &ada()).await?;
    let redirect = crate::helpers::location(env.callback(&state).await?, StatusCode::FOUND)?;
    let tokens = env
        .exchange(&query_param(&redirect, "code")?, VERIFIER, StatusCode::OK)
        .await?;
    assert!(tokens.get("refresh_token").is_none(), "{tokens}");
    assert!(tokens.get("id_token").is_none(), "{tokens}");
    assert_eq!(tokens["scope"], "mcp:read");
    Ok(())
}

#[tokio::test]
async fn issuer_bound_tokens_carry_the_resource_issuer_and_the_id_token_the_environment()
-> Result<()> {
    let env = TestEnv::spawn_with(|config| config.resources[0].issuer_bound_tokens = true).await?;
    let tokens = env
        .exchange(&env.code().await?, VERIFIER, StatusCode::OK)
        .await?;
    let token = tokens["access_token"].as_str().unwrap_or_default();
    let payload = token.split('.').nth(1).unwrap_or_default();
    let decoded =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)?;
    let claims: Value = serde_json::from_slice(&decoded)?;
    assert_eq!(claims["iss"], format!("{}/resources/{RESOURCE}", env.base));
    // Scalekit's ID tokens name the environment; `verify` checks `iss` = the environment URL.
    let id: Value = env
        .verify(
            tokens["id_token"].as_str().context("id_token")?,
            PUBLIC_CLIENT,
        )
        .await?;
    assert_eq!(id["iss"], env.base.as_str());
    Ok(())
}

/// OIDC Core §3.3.2.11, computed here on its own: base64url of the left half of the SHA-256 of
/// the code's ASCII.
fn expected_c_hash(code: &str) -> String {
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, code.as_bytes());
    base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        &hash.as_ref()[..16],
    )
}

#[tokio::test]
async fn the_code_exchanges_id_token_carries_c_hash_and_a_refreshs_does_not() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let code = env.code().await?;
    let tokens = env.exchange(&code, VERIFIER, StatusCode::OK).await?;
    let id: Value = env
        .verify(
            tokens["id_token"].as_str().context("id_token")?,
            PUBLIC_CLIENT,
        )
        .await?;
    assert_eq!(id["c_hash"], expected_c_hash(&code).as_str());
    assert_eq!(expected_c_hash(&code).len(), 22);
    assert_eq!(
        expected_c_hash("Qcb0Orv1zh30vL1MPRsbm-diHiMwcLyZvn1arpZv-Jxf_11jnpEX3Tgfvk"),
        "LDktKdoQak3Pk0cnXxCltA",
        "the example of OIDC Core §A.4"
    );

    let refreshed = env
        .token(
            &[
                ("grant_type", "refresh_token"),
                ("client_id", PUBLIC_CLIENT),
                (
                    "refresh_token",
                    tokens["refresh_token"].as_str().context("refresh_token")?,
                ),
            ],
            StatusCode::OK,
        )
        .await?;
    let id: Value = env
        .verify(
            refreshed["id_token"].as_str().context("id_token")?,
            PUBLIC_CLIENT,
        )
        .await?;
    assert!(id.get("c_hash").is_none(), "{id}");
    assert_eq!(
        id["at_hash"],
        scalekit_emulator::tokens::at_hash(refreshed["access_token"].as_str().unwrap_or_default())
    );
    Ok(())
}

#[tokio::test]
async fn the_resource_scoped_authorize_and_token_aliases_work() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let management = env.management_token().await?;
    let challenge = scalekit_emulator::types::pkce_s256(
        &scalekit_emulator::types::PkceVerifier::parse(VERIFIER).context("verifier")?,
    );
    let response = env
        .http
        .get(env.url(&format!("/resources/{RESOURCE}/oauth/authorize")))
        .query(&[
            ("response_type", "code"),
            ("client_id", PUBLIC_CLIENT),
            ("redirect_uri", REDIRECT_URI),
            ("scope", "mcp:read"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await?;
    let login = crate::helpers::location(response, StatusCode::FOUND)?;
    let lri = query_param(&login, "login_request_id")?;
    let state = query_param(&login, "state")?;
    env.post_user(&lri, Some(&management), &ada()).await?;
    let redirect = crate::helpers::location(env.callback(&state).await?, StatusCode::FOUND)?;
    assert!(
        query_param(&redirect, "state").is_err(),
        "no client state was sent: {redirect}"
    );
    let response = env
        .http
        .post(env.url(&format!("/resources/{RESOURCE}/oauth/token")))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", PUBLIC_CLIENT),
            ("code", &query_param(&redirect, "code")?),
            ("code_verifier", VERIFIER),
            ("redirect_uri", REDIRECT_URI),
        ])
        .send()
        .await?;
    let tokens = crate::helpers::token_json(response, StatusCode::OK).await?;
    assert_eq!(tokens["scope"], "mcp:read");
    Ok(())
}
