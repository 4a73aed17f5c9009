//! A persistent MCP client session over Streamable HTTP that authorizes on demand: every
//! JSON-RPC request that is answered 401 (or 403 `insufficient_scope`) starts an authorization
//! from that challenge and is retried with the new token, up to a bounded number of
//! authorizations (MCP 2025-11-25 "Authorization Flow Steps" and "Step-Up Authorization Flow").
//!
//! Unlike [`crate::run_flow`] it does not assume the server refuses `initialize`: a server may
//! protect only some methods, and a server may start refusing a token later (an authorization
//! server migration, MCP 2026-07-28). Up to protocol 2025-11-25 the session starts with
//! `initialize`; from 2026-07-28 every request is stateless, with the version in the
//! `MCP-Protocol-Version` header and in `_meta`.

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use serde_json::{Value, json};

use crate::challenge::BearerChallenge;
use crate::client_auth::may_authorize_again;
use crate::flow::{Driver, Exchange};
use crate::hop::{Hop, Phase};
use crate::{ClientOptions, DriverConfig, DriverError, TokenSet};

/// The first protocol version without `initialize` (stateless requests).
const STATELESS_SINCE: &str = "2026-07-28";

/// What a session did.
#[derive(Debug, Clone)]
pub struct SessionReport {
    /// Every HTTP exchange in order (secrets in URLs redacted).
    pub hops: Vec<Hop>,
    /// How many authorizations ran.
    pub authorizations: usize,
    /// The `client_id` of each authorization, in order.
    pub client_ids: Vec<String>,
    /// The scopes requested by the last authorization.
    pub requested_scopes: Vec<String>,
    /// The names `tools/list` returned.
    pub tools: Vec<String>,
    /// The `tools/call` result, when a tool was called.
    pub tool_result: Option<Value>,
    /// The tokens of the last authorization, when one ran (`Debug` never shows a token).
    pub tokens: Option<TokenSet>,
}

/// Opens an MCP session (authorizing whenever the server asks), lists the tools and, when
/// [`ClientOptions::call_first_tool`] is set, calls the first one.
pub async fn run_session(
    config: &DriverConfig,
    options: &ClientOptions,
) -> Result<SessionReport, DriverError> {
    let driver = Driver::with_options(config, options.clone())?;
    let mut session = Session {
        driver: &driver,
        config,
        stateless: options.protocol_version.as_str() >= STATELESS_SINCE,
        tokens: None,
        session_id: None,
        negotiated_version: None,
        next_id: 1,
        authorizations: 0,
        client_ids: Vec::new(),
        requested_scopes: Vec::new(),
    };
    if !session.stateless {
        let initialize = json!({
            "protocolVersion": options.protocol_version,
            "capabilities": {},
            "clientInfo": {"name": config.client_name, "version": env!("CARGO_PKG_VERSION")},
        });
        let result = session.request("initialize", initialize).await?;
        session.negotiated_version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .map(str::to_owned);
        session.notify("notifications/initialized").await?;
    }
    let listed = session.request("tools/list", json!({})).await?;
    let tools: Vec<String> = listed
        .get("tools")
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter_map(|tool| tool.get("name").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let mut tool_result = None;
    if options.call_first_tool
        && let Some(name) = tools.first()
    {
        let params = json!({"name": name, "arguments": {}});
        tool_result = Some(session.request("tools/call", params).await?);
    }
    Ok(SessionReport {
        hops: driver.hops(),
        authorizations: session.authorizations,
        client_ids: session.client_ids,
        requested_scopes: session.requested_scopes,
        tools,
        tool_result,
        tokens: session.tokens,
    })
}

struct Session<'a> {
    driver: &'a Driver<'a>,
    config: &'a DriverConfig,
    stateless: bool,
    tokens: Option<TokenSet>,
    session_id: Option<String>,
    negotiated_version: Option<String>,
    next_id: u64,
    authorizations: usize,
    client_ids: Vec<String>,
    requested_scopes: Vec<String>,
}

impl Session<'_> {
    /// The version sent in `MCP-Protocol-Version` and `_meta`.
    fn protocol_version(&self) -> &str {
        self.negotiated_version
            .as_deref()
            .unwrap_or(&self.driver.options().protocol_version)
    }

    /// A request; its result, or the JSON-RPC error as [`DriverError::Mcp`].
    async fn request(&mut self, method: &str, params: Value) -> Result<Value, DriverError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut params = params;
        if self.stateless {
            // MCP 2026-07-28: each request says which version and capabilities it speaks.
            params["_meta"] = json!({
                "io.modelcontextprotocol/protocolVersion": self.protocol_version(),
                "io.modelcontextprotocol/clientCapabilities": {},
            });
        }
        let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let response = self.send_authorized(method, &message).await?;
        let reply = find_reply(&response, id).ok_or_else(|| {
            DriverError::Mcp(format!(
                "{method}: no JSON-RPC response with id {id} in: {}",
                response.excerpt()
            ))
        })?;
        if let Some(error) = reply.get("error") {
            return Err(DriverError::Mcp(format!("{method} failed: {error}")));
        }
        reply
            .get("result")
            .cloned()
            .ok_or_else(|| DriverError::Mcp(format!("{method}: the response has no result")))
    }

    /// A notification (no `id`, answered 202).
    async fn notify(&mut self, method: &str) -> Result<(), DriverError> {
        let message = json!({"jsonrpc": "2.0", "method": method});
        self.send_authorized(method, &message).await.map(|_| ())
    }

    /// POSTs a message; on 401, or 403 with `error="insufficient_scope"`, authorizes from the
    /// challenge and sends it again, within [`ClientOptions::max_authorizations`].
    async fn send_authorized(
        &mut self,
        method: &str,
        message: &Value,
    ) -> Result<Exchange, DriverError> {
        loop {
            let response = self.post(message).await?;
            let challenge = BearerChallenge::from_header_values(
                response
                    .headers
                    .get_all(WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|value| value.to_str().ok()),
            )
            .unwrap_or_default();
            let must_authorize = response.status == StatusCode::UNAUTHORIZED
                || (response.status == StatusCode::FORBIDDEN
                    && challenge.error.as_deref() == Some("insufficient_scope"));
            if response.status.is_success() {
                if let Some(session_id) = response
                    .headers
                    .get("mcp-session-id")
                    .and_then(|value| value.to_str().ok())
                {
                    self.session_id = Some(session_id.to_owned());
                }
                return Ok(response);
            }
            if !must_authorize {
                return Err(DriverError::Mcp(format!(
                    "{method} answered {}: {}",
                    response.status,
                    response.excerpt()
                )));
            }
            let limit = self.driver.options().max_authorizations;
            if !may_authorize_again(self.authorizations, limit) {
                return Err(DriverError::Mcp(format!(
                    "{method} answered {} after {} authorizations, giving up (at most {limit}): {}",
                    response.status,
                    self.authorizations,
                    response.excerpt()
                )));
            }
            self.authorizations += 1;
            tracing::info!(
                method,
                status = %response.status,
                attempt = self.authorizations,
                "authorizing"
            );
            let authorization = self
                .driver
                .authorize(&challenge, &self.requested_scopes)
                .await?;
            self.client_ids.push(authorization.client.client_id.clone());
            self.requested_scopes = authorization.requested_scopes;
            self.tokens = Some(authorization.tokens);
        }
    }

    async fn post(&self, message: &Value) -> Result<Exchange, DriverError> {
        let api = self.driver.api();
        let mut request = api
            .post(self.config.mcp_url.clone())
            .header(ACCEPT, "application/json, text/event-stream")
            .header(CONTENT_TYPE, "application/json")
            .body(message.to_string());
        // Up to 2025-11-25 the header follows version negotiation; stateless requests always
        // carry it.
        if self.stateless || self.negotiated_version.is_some() {
            request = request.header("MCP-Protocol-Version", self.protocol_version());
        }
        // From 2026-07-28 a request names its method (and, for `tools/call`, the tool) in
        // headers as well as in the body (SEP-2243), so that intermediaries can route on them;
        // servers refuse a request without them (rmcp answers -32020).
        if self.protocol_version() >= STATELESS_SINCE {
            for (name, value) in routing_headers(message) {
                request = request.header(name, value);
            }
        }
        if let Some(session_id) = &self.session_id {
            request = request.header("Mcp-Session-Id", session_id.as_str());
        }
        if let Some(tokens) = &self.tokens {
            request = request.header(
                AUTHORIZATION,
                format!("Bearer {}", tokens.access_token.expose()),
            );
        }
        let request = request.build()?;
        self.driver.exchange(api, Phase::Mcp, request).await
    }
}

/// The SEP-2243 routing headers of a message: `Mcp-Method`, and `Mcp-Name` for the methods
/// that name what they act on (`tools/call`, `prompts/get`: `params.name`; resource reads and
/// subscriptions: `params.uri`). Names that are not plain visible ASCII are left out.
fn routing_headers(message: &Value) -> Vec<(&'static str, String)> {
    let Some(method) = message.get("method").and_then(Value::as_str) else {
        return Vec::new();
    };
    let mut headers = vec![("Mcp-Method", method.to_owned())];
    let name_key = match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => Some("uri"),
        _ => None,
    };
    let name = name_key
        .and_then(|key| message.pointer(&format!("/params/{key}")))
        .and_then(Value::as_str)
        .filter(|name| name.bytes().all(|byte| (0x21..0x7f).contains(&byte)));
    if let Some(name) = name {
        headers.push(("Mcp-Name", name.to_owned()));
    }
    headers
}

/// The JSON-RPC message with `id` in a response body.
fn find_reply(response: &Exchange, id: u64) -> Option<Value> {
    let content_type = response
        .headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    jsonrpc_messages(content_type, &response.body)
        .into_iter()
        .find(|message| message.get("id").and_then(Value::as_u64) == Some(id))
}

/// The JSON-RPC messages of a Streamable HTTP response body: a JSON object or batch, or the
/// `data` of the events of an SSE stream (`content_type` starting with `text/event-stream`).
/// What does not parse is left out.
pub fn jsonrpc_messages(content_type: Option<&str>, body: &[u8]) -> Vec<Value> {
    let is_sse = content_type.is_some_and(|value| value.starts_with("text/event-stream"));
    let text = String::from_utf8_lossy(body);
    if is_sse {
        sse_data(&text)
            .iter()
            .filter_map(|data| serde_json::from_str::<Value>(data).ok())
            .collect()
    } else {
        serde_json::from_str::<Value>(&text)
            .map(|value| match value {
                Value::Array(batch) => batch,
                single => vec![single],
            })
            .unwrap_or_default()
    }
}

/// The `data` of each event of an SSE body (WHATWG HTML "server-sent events": `data:` lines are
/// joined with newlines, an empty line ends the event).
fn sse_data(body: &str) -> Vec<String> {
    let mut events = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for line in body.lines() {
        if line.is_empty() {
            if !current.is_empty() {
                events.push(current.join("\n"));
                current.clear();
            }
            continue;
        }
        if let Some(data) = line.strip_prefix("data:") {
            current.push(data.strip_prefix(' ').unwrap_or(data));
        }
    }
    if !current.is_empty() {
        events.push(current.join("\n"));
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_name_their_method_and_tool_in_routing_headers() {
        let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "whoami"}});
        assert_eq!(
            routing_headers(&call),
            vec![
                ("Mcp-Method", "tools/call".to_owned()),
                ("Mcp-Name", "whoami".to_owned())
            ]
        );
        let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
        assert_eq!(
            routing_headers(&list),
            vec![("Mcp-Method", "tools/list".to_owned())]
        );
        let spaced = json!({"method": "tools/call", "params": {"name": "two words"}});
        assert_eq!(
            routing_headers(&spaced),
            vec![("Mcp-Method", "tools/call".to_owned())]
        );
        assert!(routing_headers(&json!({"jsonrpc": "2.0", "id": 1, "result": {}})).is_empty());
    }

    #[test]
    fn sse_events_are_split_on_blank_lines_and_data_lines_joined() {
        let body = "event: message\ndata: {\"a\":1}\n\ndata: x\ndata:y\n\n: comment\ndata: last";
        assert_eq!(sse_data(body), vec!["{\"a\":1}", "x\ny", "last"]);
    }
}
