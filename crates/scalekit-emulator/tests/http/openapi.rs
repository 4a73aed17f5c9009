//! The emulator's two OpenAPI documents against its route table: the control API's
//! (`/_emulator/openapi.json`) documents exactly the `/_emulator/` routes, the emulated Scalekit
//! surface's (`/_emulator/scalekit-openapi.json`) exactly the others, and every error answer a
//! surface operation documents is in its route's edge shape. Then what Schemathesis
//! (`cargo xtask schemathesis`) found the emulator answering outside its documents, each kept as
//! a regression test.

use std::collections::BTreeSet;

use anyhow::{Context as _, Result, ensure};
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};
use scalekit_emulator::Config;
use scalekit_emulator::http::{Edge, RouteSpec, control::PREFIX};
use serde_json::{Value, json};

use crate::helpers::{CONNECTION, FIXTURE, RESOURCE, TestEnv, invalid_argument};

/// Every `(METHOD, path)` a document describes.
fn operations(document: &Value) -> Result<BTreeSet<(String, String)>> {
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().context("paths")? {
        for method in item.as_object().context("path item")?.keys() {
            operations.insert((method.to_uppercase(), path.clone()));
        }
    }
    Ok(operations)
}

/// Every `(METHOD, path)` of the route table (`HEAD` is implied by `GET`, not documented).
fn routed(routes: &[&RouteSpec]) -> BTreeSet<(String, String)> {
    routes
        .iter()
        .flat_map(|route| {
            route
                .methods
                .iter()
                .map(|method| (method.to_string(), route.path.to_owned()))
        })
        .collect()
}

async fn document(env: &TestEnv, path: &str) -> Result<Value> {
    let response = env.get(path).await?;
    ensure!(
        response.status() == StatusCode::OK,
        "{path}: {}",
        response.status()
    );
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    ensure!(content_type == "application/json", "{path}: {content_type}");
    let document: Value = response.json().await?;
    ensure!(document["openapi"] == "3.1.0", "{path}: not OpenAPI 3.1");
    Ok(document)
}

#[tokio::test]
async fn the_two_openapi_documents_describe_every_route_of_the_table_and_nothing_else() -> Result<()>
{
    let env = TestEnv::spawn().await?;
    let table = scalekit_emulator::http::routes(&Config::from_toml_str(FIXTURE)?);
    let (control, surface): (Vec<&RouteSpec>, Vec<&RouteSpec>) = table
        .iter()
        .partition(|route| route.path.starts_with(PREFIX));

    let control_document = document(&env, "/_emulator/openapi.json").await?;
    assert_eq!(operations(&control_document)?, routed(&control));
    let description = control_document["info"]["description"]
        .as_str()
        .context("the control API's description")?;
    assert!(
        description.contains("/_emulator/scalekit-openapi.json"),
        "the control API's document links the surface's: {description}"
    );

    let surface_document = document(&env, "/_emulator/scalekit-openapi.json").await?;
    assert_eq!(operations(&surface_document)?, routed(&surface));
    Ok(())
}

/// Each documented error of a surface operation (4xx and 5xx; 408 and 413 are answered before
/// routing, in the gateway shape) has its route's edge shape: the OAuth body, the gateway body,
/// or the hosted error page.
#[tokio::test]
async fn every_documented_error_of_the_surface_is_in_its_routes_edge_shape() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let document = document(&env, "/_emulator/scalekit-openapi.json").await?;
    let table = scalekit_emulator::http::routes(&Config::from_toml_str(FIXTURE)?);
    let mut checked = 0;
    for route in table.iter().filter(|route| !route.path.starts_with(PREFIX)) {
        for method in &route.methods {
            let operation = &document["paths"][route.path][method.as_str().to_lowercase()];
            let responses = operation["responses"]
                .as_object()
                .with_context(|| format!("{method} {}: responses", route.path))?;
            for (status, answer) in responses {
                let what = format!("{method} {} {status}", route.path);
                if !(status.starts_with('4') || status.starts_with('5'))
                    || status == "408"
                    || status == "413"
                {
                    continue;
                }
                let content = &answer["content"];
                let shape = match route.edge {
                    Edge::OAuth => {
                        content["application/json"]["schema"]["allOf"][0]["$ref"]
                            == "#/components/schemas/OAuthError"
                    }
                    Edge::Gateway => {
                        content["application/json"]["schema"]["allOf"][0]["$ref"]
                            == "#/components/schemas/GatewayError"
                    }
                    Edge::Page => {
                        content["text/html"].is_object()
                            && content.as_object().is_some_and(|types| types.len() == 1)
                    }
                };
                ensure!(shape, "{what}: not in the {:?} shape: {answer}", route.edge);
                checked += 1;
            }
        }
    }
    ensure!(checked > 20, "only {checked} error answers documented");
    Ok(())
}

/// `600.0` is JSON Schema's integer 600, which the document promises; serde read it only into a
/// float, and refused it.
#[tokio::test]
async fn control_numbers_may_be_written_with_a_zero_fraction() -> Result<()> {
    let env = TestEnv::spawn().await?;
    let (_, before) = env.control(Method::GET, "/_emulator/clock", None).await?;
    let (status, after) = env
        .control(
            Method::POST,
            "/_emulator/clock/advance",
            Some(r#"{"seconds": 600.0}"#),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{after}");
    assert_eq!(
        after["now"].as_u64(),
        before["now"].as_u64().map(|now| now + 600)
    );

    let (status, refused) = env
        .control(
            Method::POST,
            "/_emulator/clock/advance",
            Some(r#"{"seconds": 0.5}"#),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");

    let (status, armed) = env
        .control(
            Method::POST,
            "/_emulator/faults",
            Some(r#"{"path": "/keys", "status": 503.0, "delay_ms": 1.0, "times": 2.0}"#),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{armed}");
    let (_, listed) = env.control(Method::GET, "/_emulator/faults", None).await?;
    assert_eq!(listed["faults"][0]["status"], 503);
    assert_eq!(listed["faults"][0]["delay_ms"], 1);
    assert_eq!(listed["faults"][0]["remaining"], 2);

    let (status, minted) = env
        .control(
            Method::POST,
            "/_emulator/tokens",
            Some(r#"{"lifetime_secs": 60.0}"#),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{minted}");
    assert_eq!(minted["expires_in"], 60);
    Ok(())
}

/// serde's derived structs also read a JSON array, field by field in declaration order: `[60]`
/// moved the clock, `[]` rotated the key, and `["u1", "a@b.c"]` was a user. Every JSON body the
/// emulator takes is an object.
#[tokio::test]
async fn a_json_array_is_refused_where_an_object_is_documented() -> Result<()> {
    let env = TestEnv::spawn().await?;
    for (path, body) in [
        ("/_emulator/clock/advance", "[60]"),
        ("/_emulator/keys/rotate", "[]"),
        ("/_emulator/keys/retire", "[null]"),
        ("/_emulator/tokens", "[]"),
        ("/_emulator/agents", "[]"),
        ("/_emulator/faults", r#"[null, "/keys", 503]"#),
    ] {
        let (status, answer) = env.control(Method::POST, path, Some(body)).await?;
        assert_eq!(
            (status, answer["details"][0]["error_code"].clone()),
            (StatusCode::BAD_REQUEST, json!("INVALID_ARGUMENT")),
            "{path} {body}: {answer}"
        );
    }
    let (status, answer) = env
        .control(Method::POST, "/_emulator/clock/advance", Some("[60]"))
        .await?;
    assert_eq!(
        (status, answer),
        (
            StatusCode::BAD_REQUEST,
            invalid_argument(json!([{
                "field": "body",
                "description": "invalid type: sequence, expected a JSON object at line 1 column 0"
            }]))
        )
    );

    let registration = env
        .http
        .post(env.url(&format!("/api/v1/resources/{RESOURCE}/clients:register")))
        .json(&json!([["http://127.0.0.1:9/callback"]]))
        .send()
        .await?;
    assert_eq!(registration.status(), StatusCode::BAD_REQUEST);
    let body: Value = registration.json().await?;
    assert_eq!(body["error"], "invalid_client_metadata", "{body}");

    // The body is read before the login request is looked up: before, this array was a user
    // with `sub` and `email`, and the unknown login request answered 404.
    let token = env.management_token().await?;
    let user = env
        .http
        .post(env.url(&format!(
            "/api/v1/connections/{CONNECTION}/auth-requests/lri_1/user"
        )))
        .bearer_auth(&token)
        .json(&json!(["u1", "ada@example.com"]))
        .send()
        .await?;
    assert_eq!(user.status(), StatusCode::BAD_REQUEST);
    let body: Value = user.json().await?;
    assert_eq!(body["code"], 3, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|message| message.contains("expected a JSON object")),
        "{body}"
    );
    Ok(())
}

/// A fault armed with `Content-Length: 0` and a body made hyper drop the connection without an
/// answer (curl: "Empty reply from server"), where the fault promised its status and body. The
/// message's framing is the emulator's: arming such a header is refused.
#[tokio::test]
async fn a_fault_cannot_set_the_headers_that_frame_its_answer() -> Result<()> {
    let env = TestEnv::spawn().await?;
    for name in ["Content-Length", "transfer-encoding"] {
        let fault = json!({
            "path": "/keys",
            "status": 503,
            "body": {"error": "temporarily_unavailable"},
            "headers": {name: "0"}
        });
        let (status, answer) = env
            .control(Method::POST, "/_emulator/faults", Some(&fault.to_string()))
            .await?;
        assert_eq!(
            (status, answer),
            (
                StatusCode::BAD_REQUEST,
                invalid_argument(json!([{
                    "field": "headers",
                    "description": format!("{name:?} frames the answer: the emulator sets it")
                }]))
            )
        );
    }
    let (status, _) = env
        .control(
            Method::POST,
            "/_emulator/faults",
            Some(
                r#"{"path": "/keys", "status": 503, "body": {}, "headers": {"Retry-After": "5"}}"#,
            ),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED);
    let faulted = env.get("/keys").await?;
    assert_eq!(faulted.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(faulted.headers()["retry-after"], "5");
    assert_eq!(faulted.text().await?, "{}");
    Ok(())
}
