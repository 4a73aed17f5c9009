//! `Config::mistake`: each mistake lets in exactly the requests it should, and the edge mistakes
//! (query token, metadata `resource`, challenges, 403 as 401) change exactly their answer.

use clap::ValueEnum;
use mcp_server::Mistake;
use serde_json::{Value, json};

use crate::helpers::{SigningKey, TestServer, initialize_request, now, unsigned_token};

/// One adversarial token, and the mistakes that let it in.
struct Probe {
    name: &'static str,
    token: String,
    let_in_by: &'static [Mistake],
}

/// The tokens a resource-server check mints, each aimed at one mistake, for `server`;
/// `stranger` is a key the environment does not publish.
fn probes(server: &TestServer, stranger: &SigningKey) -> anyhow::Result<Vec<Probe>> {
    let now = now();
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut claims = server.claims();
        edit(&mut claims);
        claims
    };
    Ok(vec![
        Probe {
            name: "valid",
            token: server.token(&server.claims())?,
            let_in_by: Mistake::value_variants(),
        },
        Probe {
            name: "another resource",
            token: server.token(&with(&|claims| claims["aud"] = json!(["res_999"])))?,
            let_in_by: &[Mistake::SkipAudience],
        },
        Probe {
            name: "management token",
            token: server.token(&json!({
                "iss": server.environment.issuer(),
                "aud": [server.environment.issuer()],
                "sub": "m2m_200",
                "client_id": "m2m_200",
                "iat": now,
                "nbf": now,
                "exp": now + 3600,
            }))?,
            let_in_by: &[Mistake::SkipAudience, Mistake::AcceptEnvironmentAudience],
        },
        Probe {
            name: "expired",
            token: server.token(&with(&|claims| {
                claims["iat"] = json!(now - 7200);
                claims["nbf"] = json!(now - 7200);
                claims["exp"] = json!(now - 3600);
            }))?,
            let_in_by: &[Mistake::SkipExpiry],
        },
        Probe {
            name: "not valid yet",
            token: server.token(&with(&|claims| claims["nbf"] = json!(now + 600)))?,
            let_in_by: &[Mistake::SkipNotBefore],
        },
        Probe {
            name: "issued in the future",
            token: server.token(&with(&|claims| claims["iat"] = json!(now + 600)))?,
            let_in_by: &[Mistake::SkipIssuedAt],
        },
        Probe {
            name: "another issuer",
            token: server.token(&with(&|claims| {
                claims["iss"] = json!("https://evil.example");
            }))?,
            let_in_by: &[Mistake::SkipIssuer],
        },
        Probe {
            name: "bad signature",
            token: stranger.sign_as(Some(&server.key.kid), &server.claims())?,
            let_in_by: &[Mistake::SkipSignature],
        },
        Probe {
            name: "alg none",
            token: unsigned_token(&server.claims()),
            let_in_by: &[Mistake::SkipSignature, Mistake::AcceptAlgNone],
        },
        Probe {
            name: "HS256 keyed by the public key PEM",
            token: server.key.sign_hs256_with_public_key(&server.claims())?,
            let_in_by: &[Mistake::SkipSignature, Mistake::AlgConfusion],
        },
        Probe {
            name: "real key, unknown kid",
            token: server.key.sign_as(Some("snk_forged"), &server.claims())?,
            let_in_by: &[Mistake::SkipSignature, Mistake::IgnoreKid],
        },
    ])
}

#[tokio::test]
async fn each_validation_mistake_lets_in_exactly_its_tokens() -> anyhow::Result<()> {
    // RSA key generation is what takes time here: one stranger serves every server.
    let stranger = SigningKey::generate("snk_stranger")?;
    for mistake in Mistake::value_variants() {
        let server = TestServer::spawn_making(*mistake).await?;
        for probe in probes(&server, &stranger)? {
            let status = server.initialize_status(&probe.token).await?;
            let accepted = status != 401;
            // The management token has no scope, so it gets in only as far as the 403.
            let expected_status = match (probe.let_in_by.contains(mistake), probe.name) {
                (true, "management token") => 403,
                (true, _) => 200,
                (false, _) => 401,
            };
            assert_eq!(
                status, expected_status,
                "{mistake}: the {} token",
                probe.name
            );
            assert_eq!(accepted, probe.let_in_by.contains(mistake));
        }
    }
    Ok(())
}

#[tokio::test]
async fn ignore_kid_refetches_the_keys_before_trying_every_key() -> anyhow::Result<()> {
    let server = TestServer::spawn_making(Mistake::IgnoreKid).await?;
    server.call_whoami(&server.token(&server.claims())?).await?;
    let forged = server.key.sign_as(Some("snk_forged"), &server.claims())?;
    let response = server.call_whoami(&forged).await?;
    assert_eq!(response["result"]["structuredContent"]["sub"], "usr_100");
    assert_eq!(server.environment.key_fetches(), 2);
    Ok(())
}

#[tokio::test]
async fn accept_query_token_reads_the_access_token_parameter() -> anyhow::Result<()> {
    let server = TestServer::spawn_making(Mistake::AcceptQueryToken).await?;
    let token = server.token(&server.claims())?;
    let mut url = server.local("/mcp")?;
    url.query_pairs_mut().append_pair("access_token", &token);
    let response = server
        .http
        .post(url.clone())
        .header("accept", crate::helpers::ACCEPT_MCP)
        .json(&initialize_request())
        .send()
        .await?;
    assert_eq!(response.status(), 200);

    // Only when there is no Authorization header at all.
    let response = server
        .http
        .post(url)
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
async fn wrong_metadata_resource_adds_a_trailing_slash_to_the_server_url() -> anyhow::Result<()> {
    let server = TestServer::spawn_making(Mistake::WrongMetadataResource).await?;
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let metadata: Value = server
            .http
            .get(server.local(path)?)
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(metadata["resource"], format!("{}/", server.mcp_url));
    }
    // Tokens are still judged as usual.
    server.call_whoami(&server.token(&server.claims())?).await?;
    Ok(())
}

#[tokio::test]
async fn challenge_without_resource_metadata_drops_it_from_the_401s_only() -> anyhow::Result<()> {
    let server = TestServer::spawn_making(Mistake::ChallengeWithoutResourceMetadata).await?;
    let response = server.post_mcp(None, None, &initialize_request()).await?;
    server
        .expect_refusal(
            response,
            401,
            "Bearer realm=\"OAuth\", scope=\"mcp:read\"",
            None,
        )
        .await?;

    let response = server
        .post_mcp(Some("not-a-jwt"), None, &initialize_request())
        .await?;
    let body = json!({"error": "invalid_token", "error_description": "the token is not a well-formed JWT"});
    server
        .expect_refusal(
            response,
            401,
            "Bearer realm=\"OAuth\", scope=\"mcp:read\", error=\"invalid_token\", \
             error_description=\"the token is not a well-formed JWT\"",
            Some(body),
        )
        .await?;

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
async fn insufficient_scope_as_401_answers_invalid_token() -> anyhow::Result<()> {
    let server = TestServer::spawn_making(Mistake::InsufficientScopeAs401).await?;
    let mut claims = server.claims();
    claims["scope"] = json!("openid");
    claims["scopes"] = json!(["openid"]);
    server
        .expect_invalid_token(
            &server.token(&claims)?,
            "this server requires the scopes mcp:read",
        )
        .await?;
    server.call_whoami(&server.token(&server.claims())?).await?;
    Ok(())
}
