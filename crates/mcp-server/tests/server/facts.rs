//! The facts every answer carries as response extensions (`HopFacts`, and `ErrorSummary` for an
//! OAuth error), read the way the flow inspector's recording layer reads them: by a layer around
//! the router.

use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::Request;
use axum::middleware::Next;
use scalekit_wire::{Check, Endpoint, ErrorSummary, HopFacts};
use serde_json::json;
use url::Url;

use crate::helpers::{
    ACCEPT_MCP, FakeEnvironment, SigningKey, base_config, initialize_request, now,
};

type Seen = Arc<Mutex<Vec<(Option<HopFacts>, Option<ErrorSummary>)>>>;

/// The reference server behind a layer that keeps the facts of each answer.
async fn spawn() -> anyhow::Result<(Url, SigningKey, FakeEnvironment, Seen)> {
    let key = SigningKey::generate("snk_1")?;
    let environment = FakeEnvironment::spawn(vec![key.jwk.clone()]).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = Url::parse(&format!("http://{}", listener.local_addr()?))?;
    let state = mcp_server::AppState::new(&base_config(environment.url.clone()), &base_url)?;
    let seen = Seen::default();
    let kept = Arc::clone(&seen);
    let router = mcp_server::router(state).layer(axum::middleware::from_fn(
        move |request: Request, next: Next| {
            let kept = Arc::clone(&kept);
            async move {
                let response = next.run(request).await;
                kept.lock().unwrap_or_else(PoisonError::into_inner).push((
                    response.extensions().get::<HopFacts>().copied(),
                    response.extensions().get::<ErrorSummary>().cloned(),
                ));
                response
            }
        },
    ));
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok((base_url, key, environment, seen))
}

fn last(seen: &Seen) -> (Option<HopFacts>, Option<ErrorSummary>) {
    seen.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .last()
        .cloned()
        .unwrap_or_default()
}

fn facts(endpoint: Endpoint, failed: Option<Check>) -> Option<HopFacts> {
    Some(HopFacts { endpoint, failed })
}

fn summary(code: &str, message: &str) -> Option<ErrorSummary> {
    Some(ErrorSummary {
        code: code.to_owned(),
        message: message.to_owned(),
        fields: Vec::new(),
    })
}

#[tokio::test]
async fn each_answer_names_its_endpoint_and_the_check_that_failed() -> anyhow::Result<()> {
    let (base_url, key, environment, seen) = spawn().await?;
    let http = reqwest::Client::new();
    let mcp = base_url.join("/mcp")?;
    let post = |token: Option<String>| {
        let mut request = http
            .post(mcp.clone())
            .header("accept", ACCEPT_MCP)
            .json(&initialize_request());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let now = now();
    let claims = |scope: &str, exp: u64| {
        json!({
            "iss": environment.issuer(),
            "aud": [crate::helpers::RESOURCE_ID],
            "sub": "usr_100",
            "scope": scope,
            "iat": now,
            "exp": exp,
        })
    };

    http.get(base_url.join("/.well-known/oauth-protected-resource/mcp")?)
        .send()
        .await?;
    assert_eq!(last(&seen), (facts(Endpoint::Other, None), None));

    assert_eq!(post(None).await?.status(), 401);
    assert_eq!(
        last(&seen),
        (
            facts(Endpoint::Mcp, Some(Check::ChallengedWithoutBearer)),
            None
        ),
        "the bare 401 is the challenge, not a failure"
    );

    let expired = key.sign(&claims("mcp:read", now - 60))?;
    assert_eq!(post(Some(expired)).await?.status(), 401);
    assert_eq!(
        last(&seen),
        (
            facts(Endpoint::Mcp, Some(Check::TokenValid)),
            summary("invalid_token", "the token has expired")
        )
    );

    let without_scope = key.sign(&claims("openid", now + 3600))?;
    assert_eq!(post(Some(without_scope)).await?.status(), 403);
    assert_eq!(
        last(&seen),
        (
            facts(Endpoint::Mcp, Some(Check::ScopesSufficient)),
            summary(
                "insufficient_scope",
                "this server requires the scopes mcp:read"
            )
        )
    );

    let valid = key.sign(&claims("mcp:read", now + 3600))?;
    assert_eq!(post(Some(valid)).await?.status(), 200);
    assert_eq!(last(&seen), (facts(Endpoint::Mcp, None), None));

    let foreign = http
        .post(mcp.clone())
        .header("accept", ACCEPT_MCP)
        .header("origin", "https://evil.example")
        .json(&initialize_request())
        .send()
        .await?;
    assert_eq!(foreign.status(), 403);
    assert_eq!(
        last(&seen),
        (facts(Endpoint::Mcp, Some(Check::RequestValid)), None)
    );
    Ok(())
}
