//! `POST /_emulator/tokens`: access tokens in a real flow's shape, each defect over HTTP, the
//! emulator's clock, and every validation error.

use std::collections::BTreeSet;

use anyhow::{Context as _, Result};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::header::CACHE_CONTROL;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use url::Url;

use crate::helpers::{
    PUBLIC_CLIENT, RESOURCE, SERVER_URL, TestEnv, VERIFIER, invalid_argument, jwt_claims,
    jwt_header,
};

const SCOPES: [&str; 6] = [
    "openid",
    "profile",
    "email",
    "offline_access",
    "mcp:read",
    "mcp:write",
];

async fn mint(env: &TestEnv, body: &Value) -> Result<Value> {
    let response = env
        .http
        .post(env.url("/_emulator/tokens"))
        .json(body)
        .send()
        .await?;
    let status = response.status();
    let cache = response
        .headers()
        .get(CACHE_CONTROL)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let answer: Value = response.json().await?;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(cache.as_deref(), Some("no-store"));
    // What the answer says the token carries is what it carries.
    let token = answer["access_token"].as_str().context("access_token")?;
    assert_eq!(jwt_header(token)?, answer["header"]);
    assert_eq!(jwt_claims(token)?, answer["claims"]);
    Ok(answer)
}

fn keys_of(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .map(|object| object.keys().cloned().collect())
        .unwrap_or_default()
}

/// Whether the RS256 signature verifies with the key the JWKS publishes first.
async fn signature_verifies(env: &TestEnv, token: &str) -> Result<bool> {
    let jwks: jsonwebtoken::jwk::JwkSet = env.get("/keys").await?.json().await?;
    let key = DecodingKey::from_jwk(jwks.keys.first().context("a key")?)?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let header = jwt_header(token)?;
    if header["alg"] != "RS256" {
        return Ok(false);
    }
    // jsonwebtoken checks the signature over the parts as sent.
    Ok(jsonwebtoken::decode::<Value>(token, &key, &validation).is_ok())
}

#[tokio::test]
async fn a_minted_token_has_the_shape_of_a_real_flow_token_and_verifies() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let code = env.code().await?;
    let real = env.exchange(&code, VERIFIER, StatusCode::OK).await?;
    let real = real["access_token"].as_str().context("access_token")?;
    let real_claims = jwt_claims(real)?;

    let now = env.clock.seconds();
    let minted = mint(
        &env,
        &json!({
            "scopes": ["openid", "email", "offline_access", "mcp:read"],
            "email": "ada@example.com",
            "client_id": PUBLIC_CLIENT,
            "claims": {
                "custom_claims": {"plan": "pro"},
                "roles": ["admin"],
                "oid": real_claims["oid"],
            },
        }),
    )
    .await?;
    let token = minted["access_token"].as_str().context("access_token")?;
    assert_eq!(jwt_header(token)?, jwt_header(real)?);
    assert_eq!(keys_of(&minted["claims"]), keys_of(&real_claims));
    let claims = &minted["claims"];
    for same in [
        "iss",
        "aud",
        "scope",
        "scopes",
        "client_id",
        "email",
        "custom_claims",
        "roles",
    ] {
        assert_eq!(claims[same], real_claims[same], "{same}");
    }
    let sub = claims["sub"].as_str().context("sub")?;
    assert!(sub.starts_with("usr_"), "{sub}");
    assert_eq!(claims["xuid"], sub);
    assert!(claims["jti"].as_str().context("jti")?.starts_with("tkn_"));
    assert!(claims["sid"].as_str().context("sid")?.starts_with("ses_"));
    assert_eq!(claims["iat"], now);
    assert_eq!(claims["nbf"], now);
    assert_eq!(claims["exp"], now + 3600);
    assert_eq!(minted["token_type"], "Bearer");
    assert_eq!(minted["expires_in"], 3600);
    assert_eq!(minted["scope"], "openid email offline_access mcp:read");
    env.verify::<Value>(token, RESOURCE).await?;
    env.verify::<Value>(token, SERVER_URL).await?;
    Ok(())
}

#[tokio::test]
async fn without_a_body_the_token_is_for_the_first_resource_with_every_scope() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let response = env
        .http
        .post(env.url("/_emulator/tokens"))
        .header("content-type", "application/json")
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    let minted: Value = response.json().await?;
    let claims = &minted["claims"];
    assert_eq!(claims["aud"], json!([SERVER_URL, RESOURCE]));
    assert_eq!(claims["iss"], env.base);
    assert_eq!(claims["scopes"], json!(SCOPES));
    assert_eq!(minted["scope"], SCOPES.join(" "));
    assert!(
        claims["client_id"]
            .as_str()
            .context("client_id")?
            .starts_with("m2m_")
    );
    assert_eq!(
        keys_of(claims),
        [
            "iss",
            "aud",
            "sub",
            "xuid",
            "scope",
            "scopes",
            "client_id",
            "jti",
            "sid",
            "iat",
            "nbf",
            "exp"
        ]
        .into_iter()
        .map(str::to_owned)
        .collect()
    );
    Ok(())
}

#[tokio::test]
async fn every_field_of_the_request_is_honoured() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let now = env.clock.seconds();
    let minted = mint(
        &env,
        &json!({
            "resource": SERVER_URL,
            "sub": "usr_42",
            "xuid": "ada-1",
            "email": "ada@example.com",
            "client_id": "m2m_7",
            "scopes": ["mcp:read"],
            "lifetime_secs": 60,
            "issuer": "resource",
            "claims": {"roles": ["admin"], "oid": "org_9", "scope": "overridden", "extra": true},
        }),
    )
    .await?;
    assert_eq!(
        minted["claims"],
        json!({
            "iss": format!("{}/resources/{RESOURCE}", env.base),
            "aud": [SERVER_URL, RESOURCE],
            "sub": "usr_42",
            "xuid": "ada-1",
            "scope": "overridden",
            "scopes": ["mcp:read"],
            "client_id": "m2m_7",
            "jti": minted["claims"]["jti"],
            "sid": minted["claims"]["sid"],
            "iat": now,
            "nbf": now,
            "exp": now + 60,
            "email": "ada@example.com",
            "roles": ["admin"],
            "oid": "org_9",
            "extra": true,
        })
    );
    assert_eq!(minted["expires_in"], 60);
    assert_eq!(minted["scope"], "mcp:read");

    // By `res_…` id, and the environment issuer chosen over an issuer-bound resource.
    let env = TestEnv::spawn_with(|config| config.resources[0].issuer_bound_tokens = true).await?;
    let bound = mint(&env, &json!({"resource": RESOURCE})).await?;
    assert_eq!(
        bound["claims"]["iss"],
        format!("{}/resources/{RESOURCE}", env.base)
    );
    let environment = mint(&env, &json!({"issuer": "environment"})).await?;
    assert_eq!(environment["claims"]["iss"], env.base);
    Ok(())
}

#[tokio::test]
async fn minted_tokens_follow_the_emulator_clock() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let start = env.clock.seconds();
    let (status, _) = env
        .control(
            Method::POST,
            "/_emulator/clock/advance",
            Some(r#"{"seconds": 100}"#),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    let minted = mint(&env, &json!({})).await?;
    assert_eq!(minted["claims"]["iat"], start + 100);
    assert_eq!(minted["claims"]["exp"], start + 100 + 3600);
    // Overriding `exp` with the past gives `expires_in` 0.
    let past = mint(&env, &json!({"claims": {"exp": start}})).await?;
    assert_eq!(past["expires_in"], 0);
    Ok(())
}

#[tokio::test]
async fn each_defect_over_http_breaks_exactly_what_it_names() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let now = env.clock.seconds();
    let kids = env.published_kids().await?;
    let standard_header = json!({"typ": "JWT", "alg": "RS256", "kid": kids[0]});
    let base = json!({"sub": "usr_1", "client_id": "m2m_1", "scopes": ["mcp:read"]});
    let valid = mint(&env, &base).await?;
    let valid_claims = &valid["claims"];
    // Claims as the valid token has them but for `changes` (the ids are fresh per token).
    let expected = |minted: &Value, changes: Value| {
        let mut claims = valid_claims.clone();
        claims["jti"] = minted["claims"]["jti"].clone();
        claims["sid"] = minted["claims"]["sid"].clone();
        for (name, value) in changes.as_object().into_iter().flatten() {
            claims[name] = value.clone();
        }
        claims
    };
    let with_defect = |defect: &str| {
        let mut body = base.clone();
        body["defect"] = json!(defect);
        body
    };

    let minted = mint(&env, &with_defect("wrong_audience")).await?;
    assert_eq!(minted["header"], standard_header);
    assert_eq!(
        minted["claims"],
        expected(
            &minted,
            json!({"aud": ["https://another-mcp-server.example/mcp", "res_10000000000000001"]})
        )
    );
    assert!(signature_verifies(&env, minted["access_token"].as_str().context("token")?).await?);

    let minted = mint(&env, &with_defect("wrong_issuer")).await?;
    assert_eq!(minted["header"], standard_header);
    assert_eq!(
        minted["claims"],
        expected(
            &minted,
            json!({"iss": "https://another-environment.scalekit.dev"})
        )
    );
    assert!(signature_verifies(&env, minted["access_token"].as_str().context("token")?).await?);

    let minted = mint(&env, &with_defect("expired")).await?;
    assert_eq!(minted["header"], standard_header);
    let exp = now - 600;
    assert_eq!(
        minted["claims"],
        expected(
            &minted,
            json!({"exp": exp, "iat": exp - 3600, "nbf": exp - 3600})
        )
    );
    assert_eq!(minted["expires_in"], 0);
    assert!(signature_verifies(&env, minted["access_token"].as_str().context("token")?).await?);

    let minted = mint(&env, &with_defect("not_yet_valid")).await?;
    assert_eq!(minted["header"], standard_header);
    assert_eq!(
        minted["claims"],
        expected(
            &minted,
            json!({"iat": now, "nbf": now + 600, "exp": now + 600 + 3600})
        )
    );
    assert_eq!(minted["expires_in"], 600 + 3600);

    let minted = mint(&env, &with_defect("issued_in_future")).await?;
    assert_eq!(minted["header"], standard_header);
    assert_eq!(
        minted["claims"],
        expected(
            &minted,
            json!({"iat": now + 600, "nbf": now, "exp": now + 3600})
        )
    );

    let minted = mint(&env, &with_defect("alg_none")).await?;
    let token = minted["access_token"].as_str().context("token")?;
    assert_eq!(minted["header"], json!({"typ": "JWT", "alg": "none"}));
    assert!(token.ends_with('.'), "{token}");
    assert_eq!(minted["claims"], expected(&minted, json!({})));

    let minted = mint(&env, &with_defect("hs256_public_key")).await?;
    let token = minted["access_token"].as_str().context("token")?;
    assert_eq!(
        minted["header"],
        json!({"typ": "JWT", "alg": "HS256", "kid": kids[0]})
    );
    assert_eq!(minted["claims"], expected(&minted, json!({})));
    let signature = URL_SAFE_NO_PAD.decode(token.rsplit('.').next().context("signature")?)?;
    assert_eq!(signature.len(), 32, "an HMAC-SHA256");
    assert!(!signature_verifies(&env, token).await?);

    let minted = mint(&env, &with_defect("unknown_kid")).await?;
    let token = minted["access_token"].as_str().context("token")?;
    let kid = minted["header"]["kid"].as_str().context("kid")?;
    assert!(
        kid.starts_with("snk_") && !kids.iter().any(|known| known == kid),
        "{kid}"
    );
    assert_eq!(
        minted["header"],
        json!({"typ": "JWT", "alg": "RS256", "kid": kid})
    );
    assert_eq!(minted["claims"], expected(&minted, json!({})));
    assert!(signature_verifies(&env, token).await?, "a real signature");

    let minted = mint(&env, &with_defect("altered_payload")).await?;
    let token = minted["access_token"].as_str().context("token")?;
    let sub = minted["claims"]["sub"].as_str().context("sub")?;
    assert!(sub.starts_with("usr_") && sub != "usr_1", "{sub}");
    assert_eq!(minted["header"], standard_header);
    assert_eq!(minted["claims"], expected(&minted, json!({"sub": sub})));
    assert!(!signature_verifies(&env, token).await?);
    Ok(())
}

#[tokio::test]
async fn wrong_audience_names_another_configured_resource_when_there_is_one() -> Result<()> {
    let env = TestEnv::spawn_with(|config| {
        let mut second = config.resources[0].clone();
        second.agents.clear();
        second.id = "res_81920374650192840".to_owned();
        second.server_url = Some(Url::parse("http://127.0.0.1:8502/mcp").expect("a URL"));
        config.resources.push(second);
    })
    .await?;
    let minted = mint(&env, &json!({"defect": "wrong_audience"})).await?;
    assert_eq!(
        minted["claims"]["aud"],
        json!(["http://127.0.0.1:8502/mcp", "res_81920374650192840"])
    );
    let other = mint(
        &env,
        &json!({"resource": "res_81920374650192840", "defect": "wrong_audience"}),
    )
    .await?;
    assert_eq!(other["claims"]["aud"], json!([SERVER_URL, RESOURCE]));
    Ok(())
}

#[tokio::test]
async fn mint_validation_errors_name_their_fields() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let cases = [
        (
            json!({"resource": "res_1"}),
            json!([{"field": "resource", "description": "no resource has the id or Server URL \"res_1\""}]),
        ),
        (
            json!({"scopes": ["mcp:read", "admin", "root"]}),
            json!([
                {"field": "scopes", "description": format!("\"admin\" is not a scope of {RESOURCE}")},
                {"field": "scopes", "description": format!("\"root\" is not a scope of {RESOURCE}")}
            ]),
        ),
        (
            json!({"lifetime_secs": 0}),
            json!([{"field": "lifetime_secs", "description": "must be an integer from 1 to 31536000"}]),
        ),
        (
            json!({"lifetime_secs": 31_536_001}),
            json!([{"field": "lifetime_secs", "description": "must be an integer from 1 to 31536000"}]),
        ),
        (
            json!({"lifetime_secs": "60"}),
            json!([{"field": "lifetime_secs", "description": "must be an integer from 1 to 31536000"}]),
        ),
        (
            json!({"issuer": "tenant"}),
            json!([{"field": "issuer", "description": "must be \"environment\" or \"resource\""}]),
        ),
        (
            json!({"defect": "expired_signature"}),
            json!([{"field": "defect", "description": "must be one of wrong_audience, wrong_issuer, expired, not_yet_valid, issued_in_future, alg_none, hs256_public_key, unknown_kid, altered_payload"}]),
        ),
        (
            json!({"claims": ["sub"]}),
            json!([{"field": "claims", "description": "must be a JSON object"}]),
        ),
        (
            json!({"resource": "https://nowhere.example/mcp", "lifetime_secs": 0, "defect": "x", "claims": 1}),
            json!([
                {"field": "resource", "description": "no resource has the id or Server URL \"https://nowhere.example/mcp\""},
                {"field": "lifetime_secs", "description": "must be an integer from 1 to 31536000"},
                {"field": "defect", "description": "must be one of wrong_audience, wrong_issuer, expired, not_yet_valid, issued_in_future, alg_none, hs256_public_key, unknown_kid, altered_payload"},
                {"field": "claims", "description": "must be a JSON object"}
            ]),
        ),
    ];
    for (body, violations) in cases {
        assert_eq!(
            env.control(Method::POST, "/_emulator/tokens", Some(&body.to_string()))
                .await?,
            (StatusCode::BAD_REQUEST, invalid_argument(violations)),
            "{body}"
        );
    }
    let (status, body) = env
        .control(
            Method::POST,
            "/_emulator/tokens",
            Some(r#"{"audience": "x"}"#),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["details"][0]["validation_error_info"]["field_violations"][0]["field"],
        "audience"
    );
    Ok(())
}
