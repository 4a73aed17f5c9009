//! The check's calls to the embedded emulator, all over HTTP: tokens minted by the control API
//! (`POST /_emulator/tokens`, with a deliberate defect or none), key rotation and retirement,
//! moving the clock, the environment's management token, and an agent's token (an agent created
//! through `POST /_emulator/agents`, then `client_credentials`).

use std::time::Duration;

use scalekit_wire::Secret;
use serde_json::{Value, json};
use url::Url;

use super::probe::TestToken;

/// Why a call to the emulator failed.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The request did not complete or the answer could not be read.
    #[error("{call} did not reach the emulator")]
    Send {
        call: &'static str,
        #[source]
        source: reqwest::Error,
    },
    /// The emulator refused.
    #[error("{call}: the emulator answered {status}: {body}")]
    Refused {
        call: &'static str,
        status: u16,
        body: String,
    },
    /// The answer is not what the control API documents.
    #[error("{call}: the emulator's answer lacks {what}")]
    Answer {
        call: &'static str,
        what: &'static str,
    },
}

/// The emulator's control API and token endpoint.
#[derive(Debug, Clone)]
pub(crate) struct Emulator {
    http: reqwest::Client,
    environment_url: Url,
}

impl Emulator {
    pub(crate) fn new(environment_url: Url) -> Result<Emulator, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Emulator {
            http,
            environment_url,
        })
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.environment_url.clone();
        url.set_path(path);
        url
    }

    /// Sends a request and returns the JSON answer of a 2xx.
    async fn call(
        &self,
        call: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<Value, EmulatorError> {
        let send = |source| EmulatorError::Send { call, source };
        let response = request.send().await.map_err(send)?;
        let status = response.status();
        let text = response.text().await.map_err(send)?;
        if !status.is_success() {
            return Err(EmulatorError::Refused {
                call,
                status: status.as_u16(),
                body: text,
            });
        }
        serde_json::from_str(&text).map_err(|_| EmulatorError::Answer {
            call,
            what: "a JSON body",
        })
    }

    async fn post(
        &self,
        call: &'static str,
        path: &str,
        body: &Value,
    ) -> Result<Value, EmulatorError> {
        self.call(call, self.http.post(self.url(path)).json(body))
            .await
    }

    /// A token from `POST /_emulator/tokens`: `request` is the route's JSON body (resource,
    /// scopes, defect, …).
    pub(crate) async fn mint(
        &self,
        request: Value,
        label: impl Into<String>,
    ) -> Result<TestToken, EmulatorError> {
        const CALL: &str = "POST /_emulator/tokens";
        let answer = self.post(CALL, "/_emulator/tokens", &request).await?;
        let token = text_field(&answer, CALL, "access_token")?;
        let mut minted = TestToken::from_jwt(Secret::new(token), label);
        // The route says what the token carries, also for an `alg: none` or altered token.
        if let Some(header) = answer.get("header") {
            minted.header = header.clone();
        }
        if let Some(claims) = answer.get("claims") {
            minted.claims = claims.clone();
        }
        Ok(minted)
    }

    /// `POST /_emulator/keys/rotate`: the new signing key's `kid`.
    pub(crate) async fn rotate_keys(&self) -> Result<String, EmulatorError> {
        const CALL: &str = "POST /_emulator/keys/rotate";
        let answer = self
            .post(CALL, "/_emulator/keys/rotate", &json!({}))
            .await?;
        text_field(&answer, CALL, "kid").map(str::to_owned)
    }

    /// `POST /_emulator/keys/retire`: drops every key but the signing one; the retired `kid`s.
    pub(crate) async fn retire_keys(&self) -> Result<Vec<String>, EmulatorError> {
        const CALL: &str = "POST /_emulator/keys/retire";
        let answer = self
            .post(CALL, "/_emulator/keys/retire", &json!({}))
            .await?;
        let retired =
            answer
                .get("retired")
                .and_then(Value::as_array)
                .ok_or(EmulatorError::Answer {
                    call: CALL,
                    what: "retired",
                })?;
        Ok(retired
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect())
    }

    /// Moves the emulator's clock back (`seconds` < 0) or forward.
    pub(crate) async fn move_clock(&self, seconds: i64) -> Result<(), EmulatorError> {
        let (call, path) = if seconds < 0 {
            ("POST /_emulator/clock/rewind", "/_emulator/clock/rewind")
        } else {
            ("POST /_emulator/clock/advance", "/_emulator/clock/advance")
        };
        self.post(call, path, &json!({ "seconds": seconds.unsigned_abs() }))
            .await
            .map(drop)
    }

    /// The environment API client's management token (`client_credentials`, form fields).
    pub(crate) async fn management_token(
        &self,
        client_id: &str,
        client_secret: &Secret,
    ) -> Result<TestToken, EmulatorError> {
        const CALL: &str = "POST /oauth/token (client_credentials)";
        let request = self.http.post(self.url("/oauth/token")).form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", client_secret.expose()),
        ]);
        let answer = self.call(CALL, request).await?;
        let token = text_field(&answer, CALL, "access_token")?;
        Ok(TestToken::from_jwt(
            Secret::new(token),
            "the environment's management token (client_credentials)",
        ))
    }

    /// A token of a new agent of `resource_id` allowed `scopes`: the agent is created through the
    /// control API, then gets its token with `client_credentials` (form fields, no `scope`: all
    /// of its scopes).
    pub(crate) async fn agent_token(
        &self,
        resource_id: &str,
        scopes: &[String],
    ) -> Result<TestToken, EmulatorError> {
        const CREATE: &str = "POST /_emulator/agents";
        let agent = self
            .post(
                CREATE,
                "/_emulator/agents",
                &json!({"resource_id": resource_id, "name": "mcp-server check", "scopes": scopes}),
            )
            .await?;
        let client_id = text_field(&agent, CREATE, "client_id")?;
        let client_secret = text_field(&agent, CREATE, "client_secret")?;
        const CALL: &str = "POST /oauth/token (client_credentials, an agent)";
        let request = self.http.post(self.url("/oauth/token")).form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", client_secret),
        ]);
        let answer = self.call(CALL, request).await?;
        let token = text_field(&answer, CALL, "access_token")?;
        Ok(TestToken::from_jwt(
            Secret::new(token),
            "an agent's access token (client_credentials: sub = client_id = the agent, a scopes array, no user)",
        ))
    }
}

/// A string member of a control API answer.
fn text_field<'a>(
    answer: &'a Value,
    call: &'static str,
    what: &'static str,
) -> Result<&'a str, EmulatorError> {
    answer
        .get(what)
        .and_then(Value::as_str)
        .ok_or(EmulatorError::Answer { call, what })
}
