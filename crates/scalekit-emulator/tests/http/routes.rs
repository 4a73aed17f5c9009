//! Every route the router serves, from its route table, answers each error in its edge shape
//! (ARCHITECTURE: every error leaves through an edge type, never as a framework rejection): every
//! method it does not serve (405 with `Allow`), a path segment that does not decode and a body
//! that does not parse.

use std::collections::BTreeSet;

use anyhow::{Context as _, Result, ensure};
use reqwest::header::{ALLOW, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use scalekit_emulator::Config;
use scalekit_emulator::http::{BodyKind, Edge, RouteSpec};
use scalekit_wire::{GatewayError, OAuthErrorBody, OAuthErrorCode};

use crate::helpers::{FIXTURE, TestEnv};

/// Every method a client may send; `CONNECT` is left out (it names a host, not a path).
const METHODS: [Method; 8] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
    Method::TRACE,
];

/// A path segment that is not UTF-8 once percent-decoded.
const MALFORMED_SEGMENT: &str = "%FF";

#[tokio::test]
async fn every_route_answers_wrong_methods_malformed_segments_and_bodies_in_its_edge_shape()
-> Result<()> {
    let env = TestEnv::spawn().await?;
    let management = env.management_token().await?;
    let routes = scalekit_emulator::http::routes(&Config::from_toml_str(FIXTURE)?);
    ensure!(
        routes.iter().any(|route| route.path == "/oauth/token")
            && routes
                .iter()
                .any(|route| route.path.starts_with("/_emulator/")),
        "the table lists the OAuth and the control routes"
    );
    for route in &routes {
        let served = served_methods(route);
        let path = with_segments(route.path, "x");
        for method in METHODS.iter().filter(|method| !served.contains(*method)) {
            let what = format!("{method} {}", route.path);
            let response = env
                .http
                .request(method.clone(), env.url(&path))
                .bearer_auth(&management)
                .send()
                .await?;
            ensure!(
                response.status() == StatusCode::METHOD_NOT_ALLOWED,
                "{what}: {}",
                response.status()
            );
            let allow: BTreeSet<String> = response
                .headers()
                .get(ALLOW)
                .with_context(|| format!("{what}: no Allow"))?
                .to_str()?
                .split(',')
                .map(|method| method.trim().to_owned())
                .collect();
            let expected: BTreeSet<String> =
                served.iter().map(|method| method.to_string()).collect();
            ensure!(allow == expected, "{what}: Allow {allow:?}");
            // A HEAD answer has no body to check.
            if *method != Method::HEAD {
                assert_edge_shaped(route, &what, response).await?;
            }
        }
        let first_method = route.methods.first().context("a route serves a method")?;
        if route.path.contains('{') {
            let what = format!("{first_method} {} with a malformed segment", route.path);
            let response = env
                .http
                .request(
                    first_method.clone(),
                    env.url(&with_segments(route.path, MALFORMED_SEGMENT)),
                )
                .bearer_auth(&management)
                .send()
                .await?;
            assert_edge_shaped(route, &what, response).await?;
        }
        if let Some(kind) = route.body {
            let what = format!("POST {} with a malformed {kind:?} body", route.path);
            // A form route gets JSON, a JSON route JSON that does not parse.
            let (content_type, body) = match kind {
                BodyKind::Json => ("application/json", "{\"unterminated"),
                BodyKind::Form => ("application/json", "{}"),
            };
            let response = env
                .http
                .post(env.url(&path))
                .bearer_auth(&management)
                .header(CONTENT_TYPE, content_type)
                .body(body)
                .send()
                .await?;
            assert_edge_shaped(route, &what, response).await?;
        }
    }
    Ok(())
}

/// The methods a route answers: its own, and `HEAD` where it serves `GET`.
fn served_methods(route: &RouteSpec) -> BTreeSet<Method> {
    let mut served: BTreeSet<Method> = route.methods.iter().cloned().collect();
    if served.contains(&Method::GET) {
        served.insert(Method::HEAD);
    }
    served
}

/// The path with every `{parameter}` replaced by `segment`.
fn with_segments(pattern: &str, segment: &str) -> String {
    pattern
        .split('/')
        .map(|part| {
            if part.starts_with('{') && part.ends_with('}') {
                segment
            } else {
                part
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// An error status and a body in the route's edge shape: OAuth JSON with a known code, the
/// gateway body with its `ErrorInfo`, or the hosted error page.
async fn assert_edge_shaped(
    route: &RouteSpec,
    what: &str,
    response: reqwest::Response,
) -> Result<()> {
    let status = response.status();
    ensure!(
        status.is_client_error() || status.is_server_error(),
        "{what}: {status}"
    );
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.text().await?;
    match route.edge {
        Edge::OAuth => {
            let error: OAuthErrorBody = serde_json::from_str(&body)
                .with_context(|| format!("{what}: not OAuth JSON: {body}"))?;
            ensure!(
                OAuthErrorCode::parse(&error.error).is_some(),
                "{what}: unknown code in {body}"
            );
        }
        Edge::Gateway => {
            let error: GatewayError = serde_json::from_str(&body)
                .with_context(|| format!("{what}: not the gateway body: {body}"))?;
            ensure!(
                error.details.len() == 1 && !error.details[0].error_code.is_empty(),
                "{what}: no ErrorInfo in {body}"
            );
        }
        Edge::Page => {
            ensure!(
                content_type.starts_with("text/html")
                    && body.contains("<title>Sign-in error: ")
                    && body.contains("id=\"error\""),
                "{what}: not the hosted error page: {content_type} {body}"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_body_larger_than_two_mebibytes_is_refused_before_routing_in_the_gateway_shape()
-> Result<()> {
    let env = TestEnv::spawn().await?;
    let response = env
        .http
        .post(env.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![b'a'; 2 * 1024 * 1024 + 1])
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        response
            .headers()
            .get("connection")
            .and_then(|value| value.to_str().ok()),
        Some("close")
    );
    let body: serde_json::Value = response.json().await?;
    assert_eq!(body["code"], 3);
    assert!(
        body["message"].as_str().is_some_and(|message| message
            .starts_with("the request body could not be read (at most 2097152 bytes)")),
        "{body}"
    );
    Ok(())
}

/// `GET /api/v1/oauth/consent/details`, what Scalekit's consent UI reads, is not emulated (how
/// the UI names the pending consent is unknown): like any path no route serves, it is a gateway
/// NOT_FOUND.
#[tokio::test]
async fn the_consent_details_call_of_scalekits_consent_ui_is_not_found() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let management = env.management_token().await?;
    let response = env
        .http
        .get(env.url("/api/v1/oauth/consent/details"))
        .bearer_auth(&management)
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let error: GatewayError = response.json().await?;
    assert_eq!((error.code, error.message.as_str()), (5, "Not Found"));
    assert_eq!(error.details[0].error_code, "NOT_FOUND");
    Ok(())
}
