//! The requests of one measured unit of work: a full BYOA flow (the generator plays the MCP client,
//! the browser and "Your App" with a cached management token), one `client_credentials` request,
//! one refresh with rotation.

use std::net::SocketAddr;

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use scalekit_emulator::Config;
use serde::Deserialize;
use url::Url;
use url::form_urlencoded::{Serializer, byte_serialize};

use crate::BenchError;
use crate::client::Connection;

/// How many distinct users the flows sign in: real test suites reuse a few personas, so the
/// user table stays small while grants and refresh tokens grow with every flow.
pub const USERS: u64 = 16;

/// What every worker needs to know about the emulator under test.
#[derive(Debug, Clone)]
pub struct Target {
    /// The emulator's address.
    pub address: SocketAddr,
    /// The environment API client (for `client_credentials`).
    pub api_client_id: String,
    /// Its secret.
    pub api_client_secret: String,
    /// The BYOA connection (`conn_…`).
    pub connection_id: String,
    /// The resource (`res_…`).
    pub resource_id: String,
    /// The resource's Server URL, sent as `resource`.
    pub server_url: String,
    /// The resource's scopes without `openid`, with `offline_access`: one signature per flow.
    pub scope: String,
}

impl Target {
    /// The first resource of `config` and its connection, served at `address`.
    pub fn from_config(config: &Config, address: SocketAddr) -> Result<Target, BenchError> {
        let resource = config.resources.first().ok_or(BenchError::Protocol {
            step: "configuration",
            message: "the environment has no resource".to_owned(),
        })?;
        let mut scopes: Vec<&str> = resource
            .scopes
            .iter()
            .map(String::as_str)
            .filter(|scope| *scope != "openid")
            .collect();
        if !scopes.contains(&"offline_access") {
            scopes.push("offline_access");
        }
        Ok(Target {
            address,
            api_client_id: config.api_client.client_id.clone(),
            api_client_secret: config.api_client.client_secret.expose().to_owned(),
            connection_id: resource.connection.clone(),
            resource_id: resource.id.clone(),
            server_url: resource.resource_indicator().to_owned(),
            scope: scopes.join(" "),
        })
    }

    /// The per-resource RFC 8414 document MCP clients fetch first.
    pub fn metadata_path(&self) -> String {
        format!(
            "/.well-known/oauth-authorization-server/resources/{}",
            self.resource_id
        )
    }
}

/// A DCR client and the cached management token: what the flows share.
#[derive(Debug, Clone)]
pub struct Session {
    /// The emulator and its configuration.
    pub target: Target,
    /// The `m2m_…` client registered once.
    pub client_id: String,
    /// Its redirect URI (never followed: the generator reads the code from `Location`).
    pub redirect_uri: String,
    /// `Bearer <management token>`, fetched once and reused by every user POST.
    pub bearer: HeaderValue,
}

#[derive(Deserialize)]
struct Registered {
    client_id: String,
}

#[derive(Deserialize)]
struct Tokens {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
}

impl Session {
    /// Registers one public client (DCR) and fetches the management token.
    pub async fn establish(target: Target) -> Result<Session, BenchError> {
        let mut connection = Connection::open(target.address).await?;
        let redirect_uri = "http://127.0.0.1:9/callback".to_owned();
        let registration = serde_json::json!({
            "client_name": "testbed-bench",
            "redirect_uris": [redirect_uri],
            "scope": target.scope,
        });
        let answer = connection
            .post_json(
                &format!("/api/v1/resources/{}/clients:register", target.resource_id),
                None,
                Bytes::from(serde_json::to_vec(&registration)?),
            )
            .await?
            .expect("client registration", StatusCode::CREATED)?;
        let registered: Registered = serde_json::from_slice(&answer.body)?;
        let management = client_credentials(&mut connection, &target).await?;
        let bearer = HeaderValue::from_str(&format!("Bearer {management}")).map_err(|_| {
            BenchError::Protocol {
                step: "client credentials",
                message: "the management token is not a header value".to_owned(),
            }
        })?;
        Ok(Session {
            target,
            client_id: registered.client_id,
            redirect_uri,
            bearer,
        })
    }
}

/// What a completed flow hands back.
#[derive(Debug)]
pub struct FlowTokens {
    /// The MCP access token.
    pub access_token: String,
    /// The refresh token (`offline_access` is always asked for).
    pub refresh_token: String,
}

/// One full flow: authorize → user POST → `partner:callback` (consent auto) → code exchange.
/// `worker` and `sequence` make the client `state` and PKCE verifier unique.
pub async fn run_flow(
    connection: &mut Connection,
    session: &Session,
    worker: u64,
    sequence: u64,
) -> Result<FlowTokens, BenchError> {
    let target = &session.target;
    let client_state = format!("bench-{worker}-{sequence}");
    // RFC 7636 §4.1: 43–128 unreserved characters; unique per flow is all the server can check.
    let verifier = format!("bench-verifier-{worker:08}-{sequence:020}-0123456789abcdef");
    let challenge = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()));

    // 1. The MCP client sends the browser to /oauth/authorize.
    let query = Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", &session.client_id)
        .append_pair("redirect_uri", &session.redirect_uri)
        .append_pair("scope", &target.scope)
        .append_pair("state", &client_state)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("resource", &target.server_url)
        .finish();
    let answer = connection
        .get(&format!("/oauth/authorize?{query}"))
        .await?
        .expect("authorize", StatusCode::FOUND)?;
    let login = location_query(&answer.location, "authorize")?;
    let login_request_id = find(&login, "login_request_id", "authorize")?;
    let login_state = find(&login, "state", "authorize")?;
    // The sign-in's cookie (Decisions §9), which the browser brings back on the callback.
    let sign_in_cookie = answer.cookie;

    // 2. "Your App" signs the user in and posts the claims with its cached management token.
    let user = worker % USERS;
    let claims = format!(
        r#"{{"sub":"bench-user-{user}","email":"bench-user-{user}@example.test","email_verified":true,"name":"Bench User {user}"}}"#
    );
    connection
        .post_json(
            &format!(
                "/api/v1/connections/{}/auth-requests/{login_request_id}/user",
                target.connection_id
            ),
            Some(&session.bearer),
            Bytes::from(claims),
        )
        .await?
        .expect("user POST", StatusCode::OK)?;

    // 3. The browser comes back on partner:callback; consent is auto, so a code redirect follows.
    let state: String = byte_serialize(login_state.as_bytes()).collect();
    let answer = connection
        .get_with_cookie(
            &format!(
                "/sso/v1/connections/{}/partner:callback?state={state}",
                target.connection_id
            ),
            sign_in_cookie.as_deref(),
        )
        .await?
        .expect("partner:callback", StatusCode::FOUND)?;
    let back = location_query(&answer.location, "partner:callback")?;
    refused_by_the_error_page(&back, "partner:callback")?;
    if find(&back, "state", "partner:callback")? != client_state {
        return Err(BenchError::Protocol {
            step: "partner:callback",
            message: "the client's state did not come back unchanged".to_owned(),
        });
    }
    let code = find(&back, "code", "partner:callback")?;

    // 4. The MCP client exchanges the code.
    let form = Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("client_id", &session.client_id)
        .append_pair("code", &code)
        .append_pair("code_verifier", &verifier)
        .append_pair("redirect_uri", &session.redirect_uri)
        .append_pair("resource", &target.server_url)
        .finish();
    let answer = connection
        .post_form("/oauth/token", form)
        .await?
        .expect("code exchange", StatusCode::OK)?;
    let tokens: Tokens = serde_json::from_slice(&answer.body)?;
    let refresh_token = tokens.refresh_token.ok_or(BenchError::Protocol {
        step: "code exchange",
        message: "no refresh token although offline_access was granted".to_owned(),
    })?;
    Ok(FlowTokens {
        access_token: tokens.access_token,
        refresh_token,
    })
}

/// One `client_credentials` request; returns the management token.
pub async fn client_credentials(
    connection: &mut Connection,
    target: &Target,
) -> Result<String, BenchError> {
    let form = Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("client_id", &target.api_client_id)
        .append_pair("client_secret", &target.api_client_secret)
        .finish();
    let answer = connection
        .post_form("/oauth/token", form)
        .await?
        .expect("client credentials", StatusCode::OK)?;
    let tokens: Tokens = serde_json::from_slice(&answer.body)?;
    Ok(tokens.access_token)
}

/// One refresh; returns the rotated refresh token.
pub async fn refresh(
    connection: &mut Connection,
    session: &Session,
    refresh_token: &str,
) -> Result<String, BenchError> {
    let form = Serializer::new(String::new())
        .append_pair("grant_type", "refresh_token")
        .append_pair("client_id", &session.client_id)
        .append_pair("refresh_token", refresh_token)
        .finish();
    let answer = connection
        .post_form("/oauth/token", form)
        .await?
        .expect("refresh", StatusCode::OK)?;
    let tokens: Tokens = serde_json::from_slice(&answer.body)?;
    tokens.refresh_token.ok_or(BenchError::Protocol {
        step: "refresh",
        message: "no rotated refresh token".to_owned(),
    })
}

/// The query pairs of a `Location` header.
fn location_query(
    location: &Option<String>,
    step: &'static str,
) -> Result<Vec<(String, String)>, BenchError> {
    let location = location.as_deref().ok_or(BenchError::Protocol {
        step,
        message: "no Location header".to_owned(),
    })?;
    let url = Url::parse(location).map_err(|error| BenchError::Protocol {
        step,
        message: format!("Location {location} is not a URL: {error}"),
    })?;
    Ok(url.query_pairs().into_owned().collect())
}

/// The hosted error page's redirect (`invalid_state`, Decision 25) names its error: say it, rather
/// than that the redirect lacks a code.
fn refused_by_the_error_page(
    pairs: &[(String, String)],
    step: &'static str,
) -> Result<(), BenchError> {
    match pairs.iter().find(|(key, _)| key == "error") {
        Some((_, error)) => {
            let description = pairs
                .iter()
                .find(|(key, _)| key == "error_description")
                .map_or("", |(_, value)| value.as_str());
            Err(BenchError::Protocol {
                step,
                message: format!("redirected with error {error}: {description}"),
            })
        }
        None => Ok(()),
    }
}

fn find(pairs: &[(String, String)], name: &str, step: &'static str) -> Result<String, BenchError> {
    pairs
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.clone())
        .ok_or_else(|| BenchError::Protocol {
            step,
            message: format!("no {name} in the redirect"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flow_scope_drops_openid_and_keeps_offline_access() {
        let text = include_str!("../../../fixtures/environment.toml");
        let config = Config::from_toml_str(text).unwrap();
        let target = Target::from_config(&config, "127.0.0.1:1".parse().unwrap()).unwrap();
        let scopes: Vec<&str> = target.scope.split(' ').collect();
        assert!(!scopes.contains(&"openid"));
        assert!(scopes.contains(&"offline_access"));
        assert!(target.connection_id.starts_with("conn_"));
        assert!(target.metadata_path().ends_with(&target.resource_id));
    }

    #[test]
    fn a_redirect_without_the_parameter_is_a_protocol_error() {
        let pairs = location_query(
            &Some("http://127.0.0.1:9/callback?state=a&iss=b".to_owned()),
            "partner:callback",
        )
        .unwrap();
        assert_eq!(find(&pairs, "state", "partner:callback").unwrap(), "a");
        assert!(refused_by_the_error_page(&pairs, "partner:callback").is_ok());
        let error_page = location_query(
            &Some(
                "http://127.0.0.1:8400/error?error=invalid_state&error_description=the+sign-in+request+expired"
                    .to_owned(),
            ),
            "partner:callback",
        )
        .unwrap();
        assert_eq!(
            refused_by_the_error_page(&error_page, "partner:callback")
                .unwrap_err()
                .to_string(),
            "partner:callback: redirected with error invalid_state: the sign-in request expired"
        );
        let error = find(&pairs, "code", "partner:callback").unwrap_err();
        assert_eq!(
            error.to_string(),
            "partner:callback: no code in the redirect"
        );
        let error = location_query(&None, "authorize").unwrap_err();
        assert_eq!(error.to_string(), "authorize: no Location header");
    }
}
