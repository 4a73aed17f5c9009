//! Cross-app access (ID-JAG) over HTTP: what the scenarios under `scenarios/cross-app-access/`
//! cannot express with the shipped fixtures (no resource with cross-app access, a second MCP
//! server with it off or on, claims the control API removes), the identity provider's surface,
//! and what a restart keeps (the redeemed assertions and the identity provider's key).

use std::sync::Arc;

use anyhow::{Context as _, Result, ensure};
use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use scalekit_emulator::config::AgentConfig;
use scalekit_emulator::{App, Config, Deps, ManualClock, ResourceConfig};

use crate::helpers::{
    FIXTURE, RESOURCE, SERVER_URL, TestEnv, json as json_body, jwt_claims, token_json,
};

const IDP: &str = "acme-idp";
const AGENT: &str = "m2m_81920374650192842";
const AGENT_SECRET: &str = "test_agent_secret_testbed_dev_not_for_production";
const IDP_CLIENT: &str = "acme-mcp-agent";
const IDP_SECRET: &str = "acme_idp_secret_testbed_dev_not_for_production";
const ADA: &str = "00u-ada-0001";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// A second MCP server (`res_2`) with an agent of its own, cross-app access as `on` says.
fn second_resource(config: &mut Config, cross_app_access: bool) {
    let mut second: ResourceConfig = config.resources[0].clone();
    second.id = "res_20000000000000002".to_owned();
    second.server_url = Some("http://127.0.0.1:9/other-mcp".parse().expect("a URL"));
    second.cross_app_access = cross_app_access;
    second.agents = vec![AgentConfig {
        client_id: "m2m_20000000000000003".to_owned(),
        client_secret: scalekit_wire::Secret::new("second-agent-secret"),
        scopes: vec!["mcp:read".to_owned()],
        token_lifetime_secs: 3600,
        name: None,
    }];
    config.resources.push(second);
}

/// `POST /_emulator/idps/acme-idp/id-jag` with `body`; the ID-JAG.
async fn id_jag(env: &TestEnv, body: Value) -> Result<String> {
    let (status, answer) = env
        .control(
            Method::POST,
            &format!("/_emulator/idps/{IDP}/id-jag"),
            Some(&body.to_string()),
        )
        .await?;
    ensure!(status == StatusCode::OK, "{status}: {answer}");
    Ok(answer["id_jag"].as_str().context("id_jag")?.to_owned())
}

/// `jwt-bearer` at `/oauth/token` as `client` (HTTP Basic; no secret: `client_id` alone).
async fn jwt_bearer_as(
    env: &TestEnv,
    client: (&str, Option<&str>),
    assertion: &str,
    extra: &[(&str, &str)],
    status: StatusCode,
) -> Result<Value> {
    let mut form = vec![("grant_type", JWT_BEARER), ("assertion", assertion)];
    form.extend_from_slice(extra);
    let mut request = env.http.post(env.url("/oauth/token"));
    match client {
        (id, Some(secret)) => {
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
            request = request.header("authorization", format!("Basic {basic}"));
        }
        (id, None) => form.push(("client_id", id)),
    }
    token_json(request.form(&form).send().await?, status).await
}

async fn jwt_bearer(
    env: &TestEnv,
    assertion: &str,
    extra: &[(&str, &str)],
    status: StatusCode,
) -> Result<Value> {
    jwt_bearer_as(env, (AGENT, Some(AGENT_SECRET)), assertion, extra, status).await
}

fn assert_refused(body: &Value, error: &str, description: &str) {
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_description"], description, "{body}");
}

#[tokio::test]
async fn an_id_jag_is_exchanged_for_a_users_access_token_without_consent_or_refresh() -> Result<()>
{
    let env = TestEnv::spawn().await?;
    let assertion = id_jag(&env, json!({ "scope": "mcp:read mcp:write" })).await?;
    let tokens = jwt_bearer(
        &env,
        &assertion,
        &[("scope", "mcp:read offline_access")],
        StatusCode::OK,
    )
    .await?;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(
        tokens["scope"], "mcp:read",
        "the request narrowed to the assertion, offline_access dropped"
    );
    assert_eq!(tokens["expires_in"], 3600);
    assert!(
        tokens.get("refresh_token").is_none() && tokens.get("id_token").is_none(),
        "{tokens}"
    );
    let access_token = tokens["access_token"].as_str().context("access_token")?;
    let claims: Value = env.verify(access_token, RESOURCE).await?;
    assert_eq!(claims["aud"], json!([SERVER_URL, RESOURCE]));
    assert_eq!(claims["xuid"], ADA);
    assert_eq!(claims["email"], "ada@analytical-engines.example");
    assert_eq!(claims["client_id"], AGENT);
    assert_eq!(claims["scopes"], json!(["mcp:read"]));
    assert!(
        claims["sub"]
            .as_str()
            .is_some_and(|sub| sub.starts_with("usr_")),
        "{claims}"
    );
    assert!(
        claims["sid"]
            .as_str()
            .is_some_and(|sid| sid.starts_with("ses_")),
        "{claims}"
    );

    // The same person again: the same user; the same assertion again: refused.
    let again = id_jag(&env, json!({})).await?;
    let second = jwt_bearer(&env, &again, &[], StatusCode::OK).await?;
    let second_claims = jwt_claims(second["access_token"].as_str().context("access_token")?)?;
    assert_eq!(second_claims["sub"], claims["sub"]);
    assert_eq!(
        second["scope"], "mcp:read",
        "neither the request nor the assertion names scopes: the resource's, without \
         offline_access nor the ID token's scopes (none is issued), within the agent's own"
    );
    let replayed = jwt_bearer(&env, &assertion, &[], StatusCode::BAD_REQUEST).await?;
    assert_refused(&replayed, "invalid_grant", "the assertion was already used");
    Ok(())
}

#[tokio::test]
async fn the_identity_providers_token_exchange_issues_an_id_jag_the_token_endpoint_takes()
-> Result<()> {
    let env = TestEnv::spawn().await?;
    let metadata = json_body(
        env.get(&format!(
            "/.well-known/oauth-authorization-server/_idp/{IDP}"
        ))
        .await?,
        StatusCode::OK,
    )
    .await?;
    let issuer = format!("{}/_idp/{IDP}", env.base);
    assert_eq!(metadata["issuer"], issuer);
    assert_eq!(
        metadata,
        json_body(
            env.get(&format!("/_idp/{IDP}/.well-known/openid-configuration"))
                .await?,
            StatusCode::OK
        )
        .await?
    );
    assert_eq!(
        metadata["identity_chaining_requested_token_types_supported"],
        json!(["urn:ietf:params:oauth:token-type:id-jag"])
    );
    let idp_keys = json_body(env.get(&format!("/_idp/{IDP}/keys")).await?, StatusCode::OK).await?;
    let idp_kid = idp_keys["keys"][0]["kid"]
        .as_str()
        .context("kid")?
        .to_owned();
    assert!(
        !env.published_kids().await?.contains(&idp_kid),
        "the environment never publishes the identity provider's key"
    );

    let (status, signed_in) = env
        .control(
            Method::POST,
            &format!("/_emulator/idps/{IDP}/id-token"),
            Some(&json!({ "user": ADA }).to_string()),
        )
        .await?;
    ensure!(status == StatusCode::OK, "{status}: {signed_in}");
    let id_token = signed_in["id_token"].as_str().context("id_token")?;
    assert_eq!(signed_in["claims"]["aud"], IDP_CLIENT);

    let audience = format!("{}/resources/{RESOURCE}", env.base);
    let exchanged = token_json(
        env.http
            .post(env.url(&format!("/_idp/{IDP}/oauth/token")))
            .basic_auth(IDP_CLIENT, Some(IDP_SECRET))
            .form(&[
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                (
                    "requested_token_type",
                    "urn:ietf:params:oauth:token-type:id-jag",
                ),
                ("subject_token", id_token),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:id_token",
                ),
                ("audience", audience.as_str()),
                ("resource", SERVER_URL),
                ("scope", "mcp:read"),
            ])
            .send()
            .await?,
        StatusCode::OK,
    )
    .await?;
    assert_eq!(
        exchanged["issued_token_type"],
        "urn:ietf:params:oauth:token-type:id-jag"
    );
    assert_eq!(exchanged["token_type"], "N_A");
    assert_eq!(exchanged["scope"], "mcp:read");
    let assertion = exchanged["access_token"].as_str().context("access_token")?;
    let header = crate::helpers::jwt_header(assertion)?;
    assert_eq!(header["typ"], "oauth-id-jag+jwt");
    assert_eq!(header["kid"], idp_kid.as_str());
    let claims = jwt_claims(assertion)?;
    assert_eq!(claims["iss"], issuer);
    assert_eq!(claims["aud"], audience);
    assert_eq!(claims["client_id"], AGENT);
    assert_eq!(claims["resource"], SERVER_URL);
    assert_eq!(
        claims["exp"]
            .as_u64()
            .zip(claims["iat"].as_u64())
            .map(|(exp, iat)| exp - iat),
        Some(300)
    );

    let tokens = jwt_bearer(&env, assertion, &[("resource", SERVER_URL)], StatusCode::OK).await?;
    assert_eq!(tokens["scope"], "mcp:read");
    Ok(())
}

#[tokio::test]
async fn without_a_resource_with_cross_app_access_the_grant_is_unsupported() -> Result<()> {
    let env = TestEnv::spawn_with(|config| config.resources[0].cross_app_access = false).await?;
    let assertion = id_jag(&env, json!({})).await?;
    let refused = jwt_bearer(&env, &assertion, &[], StatusCode::BAD_REQUEST).await?;
    assert_refused(
        &refused,
        "unsupported_grant_type",
        "grant_type urn:ietf:params:oauth:grant-type:jwt-bearer is not supported",
    );
    let metadata = json_body(
        env.get(&format!(
            "/.well-known/oauth-authorization-server/resources/{RESOURCE}"
        ))
        .await?,
        StatusCode::OK,
    )
    .await?;
    assert!(
        !metadata["grant_types_supported"]
            .as_array()
            .context("grant types")?
            .contains(&json!(JWT_BEARER))
    );
    assert!(
        metadata
            .get("authorization_grant_profiles_supported")
            .is_none(),
        "{metadata}"
    );
    Ok(())
}

#[tokio::test]
async fn an_mcp_server_with_cross_app_access_off_is_unauthorized_client() -> Result<()> {
    let env = TestEnv::spawn_with(|config| second_resource(config, false)).await?;
    let assertion = id_jag(
        &env,
        json!({
            "client_id": "m2m_20000000000000003",
            "audience": format!("{}/resources/res_20000000000000002", env.base),
            "resource": "http://127.0.0.1:9/other-mcp",
        }),
    )
    .await?;
    let refused = jwt_bearer_as(
        &env,
        ("m2m_20000000000000003", Some("second-agent-secret")),
        &assertion,
        &[],
        StatusCode::BAD_REQUEST,
    )
    .await?;
    assert_refused(
        &refused,
        "unauthorized_client",
        "cross-app access is not enabled for resource res_20000000000000002",
    );
    let metadata = json_body(
        env.get("/.well-known/oauth-authorization-server/resources/res_20000000000000002")
            .await?,
        StatusCode::OK,
    )
    .await?;
    assert!(
        metadata
            .get("authorization_grant_profiles_supported")
            .is_none(),
        "{metadata}"
    );
    Ok(())
}

#[tokio::test]
async fn the_assertions_resource_its_audience_and_the_client_must_name_one_mcp_server() -> Result<()>
{
    let env = TestEnv::spawn_with(|config| second_resource(config, true)).await?;
    let second_audience = format!("{}/resources/res_20000000000000002", env.base);

    let crossed = id_jag(&env, json!({ "resource": "http://127.0.0.1:9/other-mcp" })).await?;
    let refused = jwt_bearer(&env, &crossed, &[], StatusCode::BAD_REQUEST).await?;
    assert_refused(
        &refused,
        "invalid_grant",
        "the assertion's audience and resource name different MCP servers",
    );

    let for_the_second = id_jag(
        &env,
        json!({ "audience": second_audience, "resource": "http://127.0.0.1:9/other-mcp" }),
    )
    .await?;
    let refused = jwt_bearer(&env, &for_the_second, &[], StatusCode::BAD_REQUEST).await?;
    assert_refused(
        &refused,
        "invalid_target",
        &format!("client {AGENT} is not registered for resource res_20000000000000002"),
    );

    // The environment as audience: the resource claim says which server.
    let by_resource = id_jag(&env, json!({ "audience": env.base, "resource": "res_20000000000000002", "client_id": "m2m_20000000000000003" })).await?;
    let tokens = jwt_bearer_as(
        &env,
        ("m2m_20000000000000003", Some("second-agent-secret")),
        &by_resource,
        &[],
        StatusCode::OK,
    )
    .await?;
    let claims = jwt_claims(tokens["access_token"].as_str().context("access_token")?)?;
    assert_eq!(
        claims["aud"],
        json!(["http://127.0.0.1:9/other-mcp", "res_20000000000000002"])
    );
    Ok(())
}

#[tokio::test]
async fn each_missing_claim_is_named() -> Result<()> {
    let env = TestEnv::spawn().await?;
    for claim in ["iss", "sub", "aud", "client_id", "jti", "exp", "iat"] {
        let assertion = id_jag(&env, json!({ "claims": { claim: null } })).await?;
        let refused = jwt_bearer(&env, &assertion, &[], StatusCode::BAD_REQUEST).await?;
        assert_refused(
            &refused,
            "invalid_grant",
            &format!("the assertion lacks the {claim} claim"),
        );
    }
    let assertion = id_jag(&env, json!({ "claims": { "exp": "soon" } })).await?;
    let refused = jwt_bearer(&env, &assertion, &[], StatusCode::BAD_REQUEST).await?;
    assert_refused(
        &refused,
        "invalid_grant",
        "the assertion's exp claim is malformed",
    );
    let assertion = id_jag(
        &env,
        json!({ "claims": { "resource": [SERVER_URL, RESOURCE] } }),
    )
    .await?;
    let refused = jwt_bearer(&env, &assertion, &[], StatusCode::BAD_REQUEST).await?;
    assert_refused(
        &refused,
        "invalid_grant",
        "the assertion's resource must name exactly one MCP server",
    );
    Ok(())
}

#[tokio::test]
async fn a_public_client_presents_an_assertion_by_its_id_and_a_metadata_document_client_cannot_yet()
-> Result<()> {
    let env = TestEnv::spawn().await?;
    let assertion = id_jag(&env, json!({ "client_id": crate::helpers::PUBLIC_CLIENT })).await?;
    let tokens = jwt_bearer_as(
        &env,
        (crate::helpers::PUBLIC_CLIENT, None),
        &assertion,
        &[],
        StatusCode::OK,
    )
    .await?;
    assert_eq!(
        jwt_claims(tokens["access_token"].as_str().context("access_token")?)?["client_id"],
        crate::helpers::PUBLIC_CLIENT
    );
    let document = "https://client.example/metadata.json";
    let assertion = id_jag(&env, json!({ "client_id": document })).await?;
    let refused = jwt_bearer_as(
        &env,
        (document, None),
        &assertion,
        &[],
        StatusCode::UNAUTHORIZED,
    )
    .await?;
    assert_refused(
        &refused,
        "invalid_client",
        "cross-app access for Client ID Metadata Document clients is not emulated yet",
    );
    Ok(())
}

#[tokio::test]
async fn a_redeemed_assertion_is_forgotten_once_it_expired() -> Result<()> {
    // Room for one remembered assertion: a second redemption succeeds only if the first one
    // was forgotten (with it still remembered, the second is 503).
    let env = TestEnv::spawn_with(|config| config.max_redeemed_assertions = 1).await?;
    let assertion = id_jag(&env, json!({ "lifetime_secs": 60 })).await?;
    jwt_bearer(&env, &assertion, &[], StatusCode::OK).await?;
    env.clock.advance(60);
    let refused = jwt_bearer(&env, &assertion, &[], StatusCode::BAD_REQUEST).await?;
    assert_refused(&refused, "invalid_grant", "the assertion expired");
    let next = id_jag(&env, json!({})).await?;
    jwt_bearer(&env, &next, &[], StatusCode::OK).await?;
    Ok(())
}

#[tokio::test]
async fn past_the_cap_on_remembered_assertions_the_grant_is_temporarily_unavailable() -> Result<()>
{
    let env = TestEnv::spawn_with(|config| config.max_redeemed_assertions = 1).await?;
    let first = id_jag(&env, json!({ "lifetime_secs": 60 })).await?;
    jwt_bearer(&env, &first, &[], StatusCode::OK).await?;
    let second = id_jag(&env, json!({ "lifetime_secs": 300 })).await?;
    let refused = jwt_bearer(&env, &second, &[], StatusCode::SERVICE_UNAVAILABLE).await?;
    assert_refused(
        &refused,
        "temporarily_unavailable",
        "too many identity assertions are remembered as redeemed; try again later",
    );
    // The refusal did not consume it: once the first expired, it is redeemed.
    env.clock.advance(60);
    jwt_bearer(&env, &second, &[], StatusCode::OK).await?;
    Ok(())
}

#[tokio::test]
async fn the_identity_provider_exists_only_with_the_control_api() -> Result<()> {
    let env = TestEnv::spawn_with(|config| config.control = false).await?;
    for path in [
        format!("/_idp/{IDP}/keys"),
        format!("/.well-known/oauth-authorization-server/_idp/{IDP}"),
    ] {
        assert_eq!(
            env.get(&path).await?.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let response = env
        .http
        .post(env.url(&format!("/_idp/{IDP}/oauth/token")))
        .form(&[("grant_type", "x")])
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    // Nor is the grant advertised or taken: no identity provider could sign anything.
    for path in [
        "/.well-known/oauth-authorization-server".to_owned(),
        format!("/.well-known/oauth-authorization-server/resources/{RESOURCE}"),
    ] {
        let metadata = json_body(env.get(&path).await?, StatusCode::OK).await?;
        assert!(
            !metadata["grant_types_supported"]
                .as_array()
                .context("grant types")?
                .contains(&json!(JWT_BEARER)),
            "{path}: {metadata}"
        );
        assert!(
            metadata
                .get("authorization_grant_profiles_supported")
                .is_none(),
            "{path}: {metadata}"
        );
    }
    let refused = jwt_bearer(&env, "a.b.c", &[], StatusCode::BAD_REQUEST).await?;
    assert_refused(
        &refused,
        "unsupported_grant_type",
        "grant_type urn:ietf:params:oauth:grant-type:jwt-bearer is not supported",
    );
    Ok(())
}

/// An emulator on a state directory whose environment URL stays the same across restarts (the
/// identity provider's issuer is derived from it), served on a fresh port each time.
async fn start_on_state_dir(
    state_dir: &std::path::Path,
    clock: &ManualClock,
) -> Result<(TestEnv, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let mut config = Config::from_toml_str(FIXTURE)?;
    config.public_url = Some("http://127.0.0.1:8400".parse()?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let local = listener.local_addr()?;
    let deps = Deps {
        clock: Arc::new(clock.clone()),
        state_dir: Some(state_dir.to_owned()),
        ..Deps::default()
    };
    let app = App::from_listener_with(listener, config, deps)?;
    let task = tokio::spawn(app.serve());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    Ok((
        TestEnv {
            base: format!("http://{local}"),
            http,
            clock: clock.clone(),
        },
        task,
    ))
}

#[tokio::test]
async fn a_restart_keeps_the_identity_providers_key_and_refuses_a_redeemed_assertion() -> Result<()>
{
    let state_dir = std::env::temp_dir().join(format!(
        "scalekit-emulator-xaa-{}-{}",
        std::process::id(),
        ADA
    ));
    let _ = std::fs::remove_dir_all(&state_dir);
    let clock = ManualClock::now();
    let (first, task) = start_on_state_dir(&state_dir, &clock).await?;
    let idp_keys = json_body(
        first.get(&format!("/_idp/{IDP}/keys")).await?,
        StatusCode::OK,
    )
    .await?;
    // The environment URL is the public one (8400), which the audience names.
    let assertion = id_jag(
        &first,
        json!({ "audience": format!("http://127.0.0.1:8400/resources/{RESOURCE}") }),
    )
    .await?;
    let tokens = jwt_bearer(&first, &assertion, &[], StatusCode::OK).await?;
    let subject =
        jwt_claims(tokens["access_token"].as_str().context("access_token")?)?["sub"].clone();
    task.abort();
    let _ = task.await;

    let (second, task) = start_on_state_dir(&state_dir, &clock).await?;
    assert_eq!(
        json_body(
            second.get(&format!("/_idp/{IDP}/keys")).await?,
            StatusCode::OK
        )
        .await?,
        idp_keys
    );
    let refused = jwt_bearer(&second, &assertion, &[], StatusCode::BAD_REQUEST).await?;
    assert_refused(&refused, "invalid_grant", "the assertion was already used");
    let again = id_jag(
        &second,
        json!({ "audience": format!("http://127.0.0.1:8400/resources/{RESOURCE}") }),
    )
    .await?;
    let tokens = jwt_bearer(&second, &again, &[], StatusCode::OK).await?;
    assert_eq!(
        jwt_claims(tokens["access_token"].as_str().context("access_token")?)?["sub"],
        subject,
        "the same usr_ after a restart"
    );
    task.abort();
    let _ = task.await;
    let _ = std::fs::remove_dir_all(&state_dir);
    Ok(())
}
