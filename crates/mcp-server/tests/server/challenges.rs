//! Refusals: no token (401 without `error`), invalid tokens (401 `invalid_token`) and missing
//! scopes (403 `insufficient_scope`), each with the exact `WWW-Authenticate` and body.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::helpers::{RESOURCE_ID, SigningKey, TestServer, initialize_request, now};

#[tokio::test]
async fn a_request_without_a_token_gets_401_naming_the_metadata_and_the_scope() -> anyhow::Result<()>
{
    let server = TestServer::spawn().await?;
    let response = server.post_mcp(None, None, &initialize_request()).await?;
    let header = format!(
        "Bearer realm=\"OAuth\", resource_metadata=\"{}\", scope=\"mcp:read\"",
        server.metadata_url
    );
    server.expect_refusal(response, 401, &header, None).await
}

#[tokio::test]
async fn a_get_without_a_token_is_refused_too() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    let response = server
        .http
        .get(server.local("/mcp")?)
        .header("accept", "text/event-stream")
        .send()
        .await?;
    let header = format!(
        "Bearer realm=\"OAuth\", resource_metadata=\"{}\", scope=\"mcp:read\"",
        server.metadata_url
    );
    server.expect_refusal(response, 401, &header, None).await
}

#[tokio::test]
async fn basic_credentials_count_as_no_token() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    let response = server
        .http
        .post(server.local("/mcp")?)
        .header("accept", crate::helpers::ACCEPT_MCP)
        .basic_auth("user", Some("password"))
        .json(&initialize_request())
        .send()
        .await?;
    let header = format!(
        "Bearer realm=\"OAuth\", resource_metadata=\"{}\", scope=\"mcp:read\"",
        server.metadata_url
    );
    server.expect_refusal(response, 401, &header, None).await
}

#[tokio::test]
async fn a_token_in_the_query_is_ignored() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    let token = server.token(&server.claims())?;
    let mut url = server.local("/mcp")?;
    url.query_pairs_mut().append_pair("access_token", &token);
    let response = server
        .http
        .post(url)
        .header("accept", crate::helpers::ACCEPT_MCP)
        .json(&initialize_request())
        .send()
        .await?;
    let header = format!(
        "Bearer realm=\"OAuth\", resource_metadata=\"{}\", scope=\"mcp:read\"",
        server.metadata_url
    );
    server.expect_refusal(response, 401, &header, None).await
}

#[tokio::test]
async fn garbage_is_rejected_with_invalid_token() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    server
        .expect_invalid_token("not-a-jwt", "the token is not a well-formed JWT")
        .await
}

#[tokio::test]
async fn an_expired_token_is_rejected_with_invalid_token() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    let mut claims = server.claims();
    claims["iat"] = json!(now() - 7200);
    claims["nbf"] = json!(now() - 7200);
    claims["exp"] = json!(now() - 60);
    server
        .expect_invalid_token(&server.token(&claims)?, "the token has expired")
        .await
}

#[tokio::test]
async fn a_token_without_exp_is_rejected_with_invalid_token() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    let mut claims = server.claims();
    claims.as_object_mut().expect("an object").remove("exp");
    server
        .expect_invalid_token(&server.token(&claims)?, "the token has no valid exp claim")
        .await
}

#[tokio::test]
async fn a_token_not_valid_yet_is_rejected_with_invalid_token() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    let mut claims = server.claims();
    claims["nbf"] = json!(now() + 600);
    server
        .expect_invalid_token(&server.token(&claims)?, "the token is not valid yet")
        .await
}

#[tokio::test]
async fn a_token_issued_in_the_future_is_rejected_with_invalid_token() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    let mut claims = server.claims();
    claims["iat"] = json!(now() + 600);
    server
        .expect_invalid_token(
            &server.token(&claims)?,
            "the token was issued in the future",
        )
        .await
}

#[tokio::test]
async fn an_unsigned_token_is_rejected_with_invalid_token() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    server
        .expect_invalid_token(
            &crate::helpers::unsigned_token(&server.claims()),
            "the token is signed with none; only RS256 is accepted",
        )
        .await
}

#[tokio::test]
async fn the_leeway_tolerates_a_token_just_expired() -> anyhow::Result<()> {
    let server = TestServer::spawn_with(|config| config.leeway_secs = 30).await?;
    let mut claims = server.claims();
    claims["exp"] = json!(now() - 5);
    let response = server.call_whoami(&server.token(&claims)?).await?;
    assert_eq!(response["result"]["structuredContent"]["sub"], "usr_100");
    Ok(())
}

#[tokio::test]
async fn a_token_from_another_issuer_is_rejected_with_invalid_token() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    let mut claims = server.claims();
    claims["iss"] = json!("https://other.scalekit.dev");
    server
        .expect_invalid_token(
            &server.token(&claims)?,
            "the token was issued by an untrusted issuer",
        )
        .await
}

#[tokio::test]
async fn a_token_for_another_resource_of_the_environment_is_rejected() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    let mut claims = server.claims();
    claims["iss"] = json!(format!("{}/resources/res_999", server.environment.issuer()));
    claims["aud"] = json!(["res_999"]);
    server
        .expect_invalid_token(
            &server.token(&claims)?,
            "the token was issued by an untrusted issuer",
        )
        .await
}

#[tokio::test]
async fn a_token_whose_audience_lacks_the_resource_id_is_rejected_with_invalid_token()
-> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    let mut claims = server.claims();
    // Only the Server URL: Scalekit validators require the `res_…` id itself.
    claims["aud"] = json!([server.mcp_url.as_str()]);
    server
        .expect_invalid_token(
            &server.token(&claims)?,
            "the token was not issued for this resource",
        )
        .await
}

#[tokio::test]
async fn a_single_string_audience_is_accepted() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    let mut claims = server.claims();
    claims["aud"] = json!(RESOURCE_ID);
    let response = server.call_whoami(&server.token(&claims)?).await?;
    assert_eq!(response["result"]["structuredContent"]["aud"], RESOURCE_ID);
    Ok(())
}

#[tokio::test]
async fn a_token_signed_by_another_key_with_a_known_kid_is_rejected_with_invalid_token()
-> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    let impostor = SigningKey::generate(&server.key.kid)?;
    let token = impostor.sign(&server.claims())?;
    server
        .expect_invalid_token(&token, "the token signature is invalid")
        .await
}

#[tokio::test]
async fn a_token_signed_by_an_unknown_key_is_rejected_with_invalid_token() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    let stranger = SigningKey::generate("snk_999")?;
    let token = stranger.sign(&server.claims())?;
    server
        .expect_invalid_token(&token, "the token is signed with an unknown key")
        .await
}

#[tokio::test]
async fn an_hs256_token_is_rejected_with_invalid_token() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(server.key.kid.clone());
    let token = jsonwebtoken::encode(
        &header,
        &server.claims(),
        &EncodingKey::from_secret(b"a shared secret"),
    )?;
    server
        .expect_invalid_token(
            &token,
            "the token is signed with HS256; only RS256 is accepted",
        )
        .await
}

#[tokio::test]
async fn a_token_without_kid_is_rejected_with_invalid_token() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &server.claims(),
        &server.key.encoding,
    )?;
    server
        .expect_invalid_token(&token, "the token header has no kid")
        .await
}

#[tokio::test]
async fn a_token_without_the_required_scope_gets_403_insufficient_scope() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    let mut claims = server.claims();
    claims["scope"] = json!("openid");
    claims["scopes"] = json!(["openid"]);
    let response = server
        .post_mcp(Some(&server.token(&claims)?), None, &initialize_request())
        .await?;
    let header = format!(
        "Bearer realm=\"OAuth\", error=\"insufficient_scope\", scope=\"mcp:read\", resource_metadata=\"{}\"",
        server.metadata_url
    );
    let body = json!({
        "error": "insufficient_scope",
        "error_description": "this server requires the scopes mcp:read",
    });
    server
        .expect_refusal(response, 403, &header, Some(body))
        .await
}

#[tokio::test]
async fn the_403_challenge_names_every_required_scope() -> anyhow::Result<()> {
    let server = TestServer::spawn_with(|config| {
        config.required_scopes = vec![
            "mcp:read".to_owned(),
            "mcp:write".to_owned(),
            "offline_access".to_owned(),
        ];
    })
    .await?;
    let response = server
        .post_mcp(
            Some(&server.token(&server.claims())?),
            None,
            &initialize_request(),
        )
        .await?;
    let header = format!(
        "Bearer realm=\"OAuth\", error=\"insufficient_scope\", scope=\"mcp:read mcp:write\", resource_metadata=\"{}\"",
        server.metadata_url
    );
    let body = json!({
        "error": "insufficient_scope",
        "error_description": "this server requires the scopes mcp:read mcp:write",
    });
    server
        .expect_refusal(response, 403, &header, Some(body))
        .await
}

#[tokio::test]
async fn the_scope_string_alone_is_enough() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    let mut claims = server.claims();
    claims.as_object_mut().expect("an object").remove("scopes");
    let response = server.call_whoami(&server.token(&claims)?).await?;
    assert_eq!(
        response["result"]["structuredContent"]["scope"],
        "openid mcp:read"
    );
    Ok(())
}

#[tokio::test]
async fn the_scopes_array_alone_is_enough() -> anyhow::Result<()> {
    let server = TestServer::spawn().await?;
    let mut claims = server.claims();
    claims.as_object_mut().expect("an object").remove("scope");
    let response = server.call_whoami(&server.token(&claims)?).await?;
    assert_eq!(
        response["result"]["structuredContent"]["scopes"],
        json!(["openid", "mcp:read"])
    );
    Ok(())
}
