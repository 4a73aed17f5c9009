//! Every discovery document and the JWKS.

use anyhow::Result;
use reqwest::StatusCode;

use crate::stack::{RESOURCE, Stack};

#[tokio::test]
async fn the_openid_configuration() -> Result<()> {
    let stack = Stack::spawn().await?;
    let answer = stack.get("/.well-known/openid-configuration").await?;
    insta::assert_json_snapshot!(answer.json(StatusCode::OK)?);
    Ok(())
}

#[tokio::test]
async fn the_environment_authorization_server_metadata() -> Result<()> {
    let stack = Stack::spawn().await?;
    let answer = stack.get("/.well-known/oauth-authorization-server").await?;
    insta::assert_json_snapshot!(answer.json(StatusCode::OK)?);
    Ok(())
}

#[tokio::test]
async fn the_resource_metadata_is_the_same_at_both_well_known_urls() -> Result<()> {
    let stack = Stack::spawn().await?;
    let inserted = stack
        .get(&format!(
            "/.well-known/oauth-authorization-server/resources/{RESOURCE}"
        ))
        .await?
        .json(StatusCode::OK)?;
    let appended = stack
        .get(&format!(
            "/resources/{RESOURCE}/.well-known/oauth-authorization-server"
        ))
        .await?
        .json(StatusCode::OK)?;
    assert_eq!(inserted, appended);
    insta::assert_json_snapshot!(inserted);
    Ok(())
}

#[tokio::test]
async fn the_resource_metadata_without_dcr_has_no_registration_endpoint() -> Result<()> {
    let stack = Stack::spawn_with(|config| {
        for resource in &mut config.resources {
            resource.dynamic_client_registration = false;
        }
    })
    .await?;
    let document = stack
        .get(&format!(
            "/.well-known/oauth-authorization-server/resources/{RESOURCE}"
        ))
        .await?
        .json(StatusCode::OK)?;
    assert_eq!(document.get("registration_endpoint"), None);
    Ok(())
}

#[tokio::test]
async fn the_metadata_of_an_unknown_resource_is_not_found() -> Result<()> {
    let stack = Stack::spawn().await?;
    let answer = stack
        .get("/.well-known/oauth-authorization-server/resources/res_404")
        .await?;
    insta::assert_json_snapshot!(answer.json(StatusCode::NOT_FOUND)?);
    Ok(())
}

#[tokio::test]
async fn the_jwks() -> Result<()> {
    let stack = Stack::spawn().await?;
    let answer = stack.get("/keys").await?;
    insta::assert_json_snapshot!(answer.json(StatusCode::OK)?);
    Ok(())
}
