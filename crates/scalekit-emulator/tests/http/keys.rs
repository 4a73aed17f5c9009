//! Signing-key rotation and retirement through the control API (Decisions §10): the JWKS order,
//! the `kid` of new tokens, management tokens of kept and retired keys, and every error.

use anyhow::{Context as _, Result};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    ERROR_INFO, RESOURCE, TestEnv, VERIFIER, ada, invalid_argument, jwt_header, query_param,
};

/// `POST /_emulator/keys/rotate`: the new `kid`, after checking the answer's shape.
async fn rotate(env: &TestEnv) -> Result<String> {
    let before = env.published_kids().await?;
    let (status, body) = env
        .control(Method::POST, "/_emulator/keys/rotate", None)
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let kid = body["kid"].as_str().context("kid")?.to_owned();
    assert!(kid.starts_with("snk_"), "{kid}");
    let mut expected = vec![kid.clone()];
    expected.extend(before);
    assert_eq!(body, json!({"kid": kid, "keys": expected}));
    Ok(kid)
}

async fn user_post_status(env: &TestEnv, management: &str) -> Result<(StatusCode, Value)> {
    let (lri, _) = env.start_login().await?;
    let response = env.post_user(&lri, Some(management), &ada()).await?;
    let status = response.status();
    Ok((status, response.json().await?))
}

fn gateway_error(code: i64, error_code: &str, message: &str) -> Value {
    json!({
        "code": code,
        "message": message,
        "details": [{"@type": ERROR_INFO, "error_code": error_code}]
    })
}

#[tokio::test]
async fn a_rotation_publishes_the_new_key_first_and_new_tokens_carry_its_kid() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let old = env.published_kids().await?;
    assert_eq!(old.len(), 1);
    let before_rotation = env.management_token().await?;

    let new = rotate(&env).await?;
    assert_ne!(new, old[0]);
    assert_eq!(
        env.published_kids().await?,
        vec![new.clone(), old[0].clone()]
    );
    assert_eq!(
        env.control(Method::GET, "/_emulator/keys", None).await?,
        (
            StatusCode::OK,
            json!({"keys": [
                {"kid": new, "signing": true},
                {"kid": old[0], "signing": false}
            ]})
        )
    );

    // A management token, an access token from a real flow and a minted one: the new kid, and
    // each verifies against the JWKS.
    let management = env.management_token().await?;
    assert_eq!(jwt_header(&management)?["kid"], new.as_str());
    let code = env.code().await?;
    let tokens = env.exchange(&code, VERIFIER, StatusCode::OK).await?;
    let access = tokens["access_token"].as_str().context("access_token")?;
    assert_eq!(jwt_header(access)?["kid"], new.as_str());
    env.verify::<Value>(access, RESOURCE).await?;
    let id_token = tokens["id_token"].as_str().context("id_token")?;
    assert_eq!(jwt_header(id_token)?["kid"], new.as_str());
    let (status, minted) = env.control(Method::POST, "/_emulator/tokens", None).await?;
    assert_eq!(status, StatusCode::OK, "{minted}");
    assert_eq!(minted["header"]["kid"], new.as_str());
    let minted = minted["access_token"].as_str().context("access_token")?;
    env.verify::<Value>(minted, RESOURCE).await?;

    // The management token the old key signed still works: the old key is still published.
    assert_eq!(jwt_header(&before_rotation)?["kid"], old[0].as_str());
    let (status, body) = user_post_status(&env, &before_rotation).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    Ok(())
}

#[tokio::test]
async fn a_management_token_of_a_retired_key_is_refused() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let old = env.published_kids().await?;
    let before_rotation = env.management_token().await?;
    // Verified once while its key is published, so that the retirement must beat the cache.
    let (status, body) = user_post_status(&env, &before_rotation).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let new = rotate(&env).await?;

    assert_eq!(
        env.control(Method::POST, "/_emulator/keys/retire", None)
            .await?,
        (StatusCode::OK, json!({"retired": [old[0]], "keys": [new]}))
    );
    assert_eq!(env.published_kids().await?, vec![new.clone()]);

    let (status, body) = user_post_status(&env, &before_rotation).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, gateway_error(16, "UNAUTHENTICATED", "invalid token"));
    // A fresh token of the signing key works.
    let (status, body) = user_post_status(&env, &env.management_token().await?).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    Ok(())
}

#[tokio::test]
async fn one_key_is_retired_by_kid_and_the_others_keep_their_order() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let first = env.published_kids().await?.remove(0);
    let second = rotate(&env).await?;
    let third = rotate(&env).await?;
    assert_eq!(
        env.published_kids().await?,
        vec![third.clone(), second.clone(), first.clone()]
    );
    let body = format!(r#"{{"kid": "{second}"}}"#);
    assert_eq!(
        env.control(Method::POST, "/_emulator/keys/retire", Some(&body))
            .await?,
        (
            StatusCode::OK,
            json!({"retired": [second], "keys": [third, first]})
        )
    );
    assert_eq!(env.published_kids().await?, vec![third, first]);
    Ok(())
}

#[tokio::test]
async fn each_retirement_error_has_its_status_code_and_message() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let signing = env.published_kids().await?.remove(0);

    assert_eq!(
        env.control(Method::POST, "/_emulator/keys/retire", Some("{}"))
            .await?,
        (
            StatusCode::BAD_REQUEST,
            gateway_error(
                9,
                "FAILED_PRECONDITION",
                &format!(
                    "nothing to retire: {signing} is the only key and it signs; rotate first (POST /_emulator/keys/rotate)"
                )
            )
        )
    );

    let older = signing;
    let signing = rotate(&env).await?;
    let body = format!(r#"{{"kid": "{signing}"}}"#);
    assert_eq!(
        env.control(Method::POST, "/_emulator/keys/retire", Some(&body))
            .await?,
        (
            StatusCode::BAD_REQUEST,
            gateway_error(
                9,
                "FAILED_PRECONDITION",
                &format!(
                    "{signing} is the signing key and cannot be retired; rotate first (POST /_emulator/keys/rotate)"
                )
            )
        )
    );
    assert_eq!(
        env.control(
            Method::POST,
            "/_emulator/keys/retire",
            Some(r#"{"kid": "snk_123"}"#)
        )
        .await?,
        (
            StatusCode::NOT_FOUND,
            gateway_error(5, "NOT_FOUND", "no published key has the kid snk_123")
        )
    );
    for (body, field, description) in [
        (
            r#"{"kid": 7}"#,
            "body",
            "invalid type: integer `7`, expected a string at line 1 column 9",
        ),
        (
            r#"{"key": "snk_1"}"#,
            "key",
            "unknown field `key`, expected `kid` at line 1 column 6",
        ),
        ("retire", "body", "expected value at line 1 column 1"),
    ] {
        assert_eq!(
            env.control(Method::POST, "/_emulator/keys/retire", Some(body))
                .await?,
            (
                StatusCode::BAD_REQUEST,
                invalid_argument(json!([{"field": field, "description": description}]))
            ),
            "{body}"
        );
    }
    let (status, body) = env
        .control(
            Method::POST,
            "/_emulator/keys/rotate",
            Some(r#"{"size": 4096}"#),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["details"][0]["validation_error_info"]["field_violations"][0]["field"],
        "size"
    );
    // Nothing changed through the errors.
    assert_eq!(env.published_kids().await?, vec![signing, older]);
    Ok(())
}

#[tokio::test]
async fn a_rotation_with_an_empty_json_body_is_accepted_and_reset_keeps_the_keys() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let (status, body) = env
        .control(Method::POST, "/_emulator/keys/rotate", Some("{}"))
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let kids = env.published_kids().await?;
    assert_eq!(kids.len(), 2);
    let (status, _) = env.control(Method::POST, "/_emulator/reset", None).await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(env.published_kids().await?, kids);
    // The sign-in after the reset is signed by the rotated key.
    let redirect = env.sign_in().await?;
    let code = query_param(&redirect, "code")?;
    let tokens = env.exchange(&code, VERIFIER, StatusCode::OK).await?;
    let access = tokens["access_token"].as_str().context("access_token")?;
    assert_eq!(jwt_header(access)?["kid"], kids[0].as_str());
    Ok(())
}
