//! The requests the check sends to the server under test, and what it keeps of each as evidence:
//! the request as sent (the token shown by what it is, never by value) and an excerpt of the
//! answer. MCP messages go over Streamable HTTP as a real client sends them; answers may be JSON
//! or an SSE stream.

use std::time::Duration;

use mcp_driver::{BearerChallenge, excerpt, jsonrpc_messages};
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, WWW_AUTHENTICATE,
};
use scalekit_wire::Secret;
use serde_json::{Map, Value, json};
use url::Url;

/// The protocol version of the session checks (`initialize`, then requests in the session).
pub(crate) const SESSION_PROTOCOL: &str = "2025-11-25";
/// The first protocol version without `initialize`: every request is stateless.
pub(crate) const STATELESS_PROTOCOL: &str = "2026-07-28";

/// A token the check presents, with what it is for the report.
#[derive(Clone)]
pub(crate) struct TestToken {
    /// The token itself (not printed).
    pub value: Secret,
    /// What it is, e.g. `a token issued for another MCP server`.
    pub label: String,
    /// The decoded JWT header, or `null`.
    pub header: Value,
    /// The decoded JWT payload, or `null`.
    pub claims: Value,
}

impl std::fmt::Debug for TestToken {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TestToken")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl TestToken {
    /// A token whose header and payload are read from the JWT itself (without verification).
    pub(crate) fn from_jwt(value: Secret, label: impl Into<String>) -> TestToken {
        let mut parts = value.expose().split('.');
        let mut decode = || {
            parts
                .next()
                .and_then(|part| {
                    base64::Engine::decode(
                        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                        part.trim_end_matches('='),
                    )
                    .ok()
                })
                .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
                .unwrap_or(Value::Null)
        };
        let header = decode();
        let claims = decode();
        TestToken {
            value,
            label: label.into(),
            header,
            claims,
        }
    }

    /// What the report shows of it: the label, the header and the claims.
    pub(crate) fn evidence(&self) -> Value {
        json!({ "what": self.label, "header": self.header, "claims": self.claims })
    }
}

/// Where a request carries its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Carrier {
    /// `Authorization: Bearer …` (RFC 6750 §2.1).
    Header,
    /// `?access_token=…` (RFC 6750 §2.3, which OAuth 2.1 and MCP forbid).
    Query,
}

/// One MCP request to the server under test.
#[derive(Debug, Clone)]
pub(crate) struct McpRequest<'a> {
    pub token: Option<&'a TestToken>,
    pub carrier: Carrier,
    pub origin: Option<&'a str>,
    pub session: Option<&'a str>,
    /// The `MCP-Protocol-Version` header.
    pub protocol: Option<&'a str>,
    pub message: Value,
}

impl<'a> McpRequest<'a> {
    /// `initialize` at [`SESSION_PROTOCOL`] with `token` in the header.
    pub(crate) fn initialize(token: Option<&'a TestToken>) -> McpRequest<'a> {
        McpRequest {
            token,
            carrier: Carrier::Header,
            origin: None,
            session: None,
            protocol: None,
            message: json!({
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": SESSION_PROTOCOL,
                    "capabilities": {},
                    "clientInfo": {"name": "testbed mcp-server check", "version": env!("CARGO_PKG_VERSION")},
                },
            }),
        }
    }

    /// A request or notification inside a session opened with `initialize`.
    pub(crate) fn in_session(
        token: &'a TestToken,
        session: Option<&'a str>,
        message: Value,
    ) -> McpRequest<'a> {
        McpRequest {
            token: Some(token),
            carrier: Carrier::Header,
            origin: None,
            session,
            protocol: Some(SESSION_PROTOCOL),
            message,
        }
    }

    /// `tools/list` as a stateless [`STATELESS_PROTOCOL`] request: the version in the header and
    /// in `_meta`, no session.
    pub(crate) fn stateless_tools_list(token: &'a TestToken) -> McpRequest<'a> {
        McpRequest {
            token: Some(token),
            carrier: Carrier::Header,
            origin: None,
            session: None,
            protocol: Some(STATELESS_PROTOCOL),
            message: json!({
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/list",
                "params": {"_meta": {
                    "io.modelcontextprotocol/protocolVersion": STATELESS_PROTOCOL,
                    "io.modelcontextprotocol/clientCapabilities": {},
                }},
            }),
        }
    }
}

/// The request as sent, for evidence.
#[derive(Debug, Clone)]
pub(crate) struct SentRequest {
    pub method: String,
    /// The URL, with an `access_token` query value replaced by what the token is.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

/// An answer, read to the end or as far as the check waits.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// Why the body stopped before its end (too long, or it stalled), if it did.
    pub cut: Option<String>,
}

/// A request and what came back (or why nothing did).
#[derive(Debug, Clone)]
pub(crate) struct Observation {
    pub request: SentRequest,
    pub answer: Result<Answer, String>,
}

impl Observation {
    /// The status, if an answer came.
    pub(crate) fn status(&self) -> Option<u16> {
        self.answer.as_ref().ok().map(|answer| answer.status)
    }

    /// Whether the server served the request: a 2xx that carries no JSON-RPC error (a server
    /// may refuse inside a 200).
    pub(crate) fn accepted(&self) -> bool {
        self.status()
            .is_some_and(|status| (200..300).contains(&status))
            && self.jsonrpc_error().is_none()
    }

    /// The first JSON-RPC error in the body, if any.
    pub(crate) fn jsonrpc_error(&self) -> Option<Value> {
        let answer = self.answer.as_ref().ok()?;
        let content_type = answer
            .headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok());
        jsonrpc_messages(content_type, &answer.body)
            .into_iter()
            .find_map(|message| message.get("error").cloned())
    }

    /// A response header, if an answer came with it.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.answer
            .as_ref()
            .ok()?
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
    }

    /// Every `WWW-Authenticate` value, joined with `, `.
    pub(crate) fn www_authenticate(&self) -> Option<String> {
        let answer = self.answer.as_ref().ok()?;
        let values: Vec<&str> = answer
            .headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    }

    /// The first Bearer challenge of the answer.
    pub(crate) fn challenge(&self) -> Option<BearerChallenge> {
        let answer = self.answer.as_ref().ok()?;
        BearerChallenge::from_header_values(
            answer
                .headers
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|value| value.to_str().ok()),
        )
    }

    /// The JSON-RPC message answering request `id`, from a JSON or SSE body.
    pub(crate) fn reply(&self, id: u64) -> Option<Value> {
        let answer = self.answer.as_ref().ok()?;
        let content_type = answer
            .headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok());
        jsonrpc_messages(content_type, &answer.body)
            .into_iter()
            .find(|message| message.get("id").and_then(Value::as_u64) == Some(id))
    }

    /// The body as JSON, if it is.
    pub(crate) fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.answer.as_ref().ok()?.body).ok()
    }

    /// `METHOD url → status` (with the challenge's error, if any), or why nothing came back.
    pub(crate) fn describe(&self) -> String {
        let request = format!("{} {}", self.request.method, self.request.url);
        match &self.answer {
            Err(error) => format!("{request} → no answer ({error})"),
            Ok(answer) => {
                let mut text = format!("{request} → {}", answer.status);
                if let Some(error) = self.challenge().and_then(|challenge| challenge.error) {
                    text.push_str(&format!(" error=\"{error}\""));
                }
                if (200..300).contains(&answer.status) && self.jsonrpc_error().is_some() {
                    text.push_str(" with a JSON-RPC error");
                }
                text
            }
        }
    }

    /// The request and an excerpt of the answer, for a check's details.
    pub(crate) fn evidence(&self) -> Value {
        let mut headers = Map::new();
        for (name, value) in &self.request.headers {
            headers.insert(name.clone(), Value::String(value.clone()));
        }
        let mut request = json!({
            "method": self.request.method,
            "url": self.request.url,
            "headers": headers,
        });
        if let Some(body) = &self.request.body {
            request["body"] = Value::String(body.clone());
        }
        let answer = match &self.answer {
            Err(error) => json!({ "error": error }),
            Ok(answer) => {
                let mut kept = Map::new();
                for name in [
                    "www-authenticate",
                    "content-type",
                    "mcp-session-id",
                    "cache-control",
                ] {
                    let values: Vec<&str> = answer
                        .headers
                        .get_all(name)
                        .iter()
                        .filter_map(|value| value.to_str().ok())
                        .collect();
                    if !values.is_empty() {
                        kept.insert(name.to_owned(), Value::String(values.join(", ")));
                    }
                }
                let mut kept_answer = json!({
                    "status": answer.status,
                    "headers": kept,
                    "body": excerpt(&answer.body),
                });
                if let Some(cut) = &answer.cut {
                    kept_answer["body_cut"] = Value::String(cut.clone());
                }
                kept_answer
            }
        };
        json!({ "request": request, "answer": answer })
    }
}

/// Sends the check's requests.
#[derive(Debug, Clone)]
pub(crate) struct Prober {
    http: reqwest::Client,
    /// The MCP endpoint under test.
    pub url: Url,
}

/// How long the check waits for one answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

impl Prober {
    /// A prober for the MCP endpoint at `url`: no redirects, no cookies, 10 s per request.
    pub(crate) fn new(url: Url) -> Result<Prober, reqwest::Error> {
        Prober::with_timeout(url, REQUEST_TIMEOUT)
    }

    fn with_timeout(url: Url, timeout: Duration) -> Result<Prober, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .build()?;
        Ok(Prober { http, url })
    }

    /// POSTs one MCP message.
    pub(crate) async fn send(&self, request: McpRequest<'_>) -> Observation {
        let mut url = self.url.clone();
        let mut shown_url = self.url.to_string();
        let mut headers: Vec<(String, String)> = vec![
            (
                "accept".to_owned(),
                "application/json, text/event-stream".to_owned(),
            ),
            ("content-type".to_owned(), "application/json".to_owned()),
        ];
        let mut authorization = None;
        if let Some(token) = request.token {
            match request.carrier {
                Carrier::Header => {
                    headers.push((
                        "authorization".to_owned(),
                        format!("Bearer <{}>", token.label),
                    ));
                    authorization = Some(format!("Bearer {}", token.value.expose()));
                }
                Carrier::Query => {
                    url.query_pairs_mut()
                        .append_pair("access_token", token.value.expose());
                    let mut shown = self.url.clone();
                    shown
                        .query_pairs_mut()
                        .append_pair("access_token", &format!("<{}>", token.label));
                    shown_url = shown.to_string();
                }
            }
        }
        if let Some(origin) = request.origin {
            headers.push(("origin".to_owned(), origin.to_owned()));
        }
        if let Some(protocol) = request.protocol {
            headers.push(("mcp-protocol-version".to_owned(), protocol.to_owned()));
            // From 2026-07-28 every request names its method in a header too (SEP-2243), so
            // that intermediaries can route without reading the body.
            if protocol >= STATELESS_PROTOCOL
                && let Some(method) = request.message.get("method").and_then(Value::as_str)
            {
                headers.push(("mcp-method".to_owned(), method.to_owned()));
            }
        }
        if let Some(session) = request.session {
            headers.push(("mcp-session-id".to_owned(), session.to_owned()));
        }
        let body = request.message.to_string();
        let mut builder = self.http.post(url).body(body.clone());
        for (name, value) in &headers {
            if name != "authorization" {
                builder = builder.header(name.as_str(), value.as_str());
            }
        }
        if let Some(authorization) = authorization {
            builder = builder.header(AUTHORIZATION, authorization);
        }
        let sent = SentRequest {
            method: "POST".to_owned(),
            url: shown_url,
            headers,
            body: Some(body),
        };
        let mut observation = self.finish(sent, builder).await;
        if let Some(token) = request.token {
            scrub(&mut observation, token);
        }
        observation
    }

    /// GETs a JSON document (protected-resource metadata).
    pub(crate) async fn get(&self, url: &Url) -> Observation {
        let sent = SentRequest {
            method: "GET".to_owned(),
            url: url.to_string(),
            headers: vec![("accept".to_owned(), "application/json".to_owned())],
            body: None,
        };
        let builder = self
            .http
            .get(url.clone())
            .header(ACCEPT, "application/json");
        self.finish(sent, builder).await
    }

    async fn finish(&self, request: SentRequest, builder: reqwest::RequestBuilder) -> Observation {
        let answer = match builder.send().await {
            // The URL may carry a token in its query: the error never names it.
            Err(error) => Err(error_chain(&error.without_url())),
            Ok(response) => {
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                let (body, cut) = read_body(response).await;
                Ok(Answer {
                    status,
                    headers,
                    body,
                    cut,
                })
            }
        };
        Observation { request, answer }
    }
}

/// Replaces the token's value wherever the answer repeats it (a body or a header that echoes
/// the bearer), so that no report shows a token.
fn scrub(observation: &mut Observation, token: &TestToken) {
    let value = token.value.expose();
    if value.is_empty() {
        return;
    }
    let label = format!("<{}>", token.label);
    if let Err(error) = &mut observation.answer
        && error.contains(value)
    {
        *error = error.replace(value, &label);
    }
    let Ok(answer) = &mut observation.answer else {
        return;
    };
    if answer
        .body
        .windows(value.len())
        .any(|window| window == value.as_bytes())
    {
        answer.body = String::from_utf8_lossy(&answer.body)
            .replace(value, &label)
            .into_bytes();
    }
    for header in answer.headers.values_mut() {
        if let Ok(text) = header.to_str()
            && text.contains(value)
            && let Ok(scrubbed) = HeaderValue::from_str(&text.replace(value, &label))
        {
            *header = scrubbed;
        }
    }
}

/// The most of a body the check reads: an SSE stream that never ends is cut here (and after the
/// request's timeout), and what arrived is kept.
const MAX_BODY: usize = 256 * 1024;

/// The body, and why it stopped before its end if it did: longer than [`MAX_BODY`], or a read
/// that failed (the timeout on a stalled stream). An SSE body stops at its first complete event
/// with a JSON-RPC result or error, since a server may keep the stream open after it.
async fn read_body(mut response: reqwest::Response) -> (Vec<u8>, Option<String>) {
    let mut body = Vec::new();
    let mut events = SseEvents::default();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                body.extend_from_slice(&chunk);
                if body.len() >= MAX_BODY {
                    body.truncate(MAX_BODY);
                    return (body, Some(format!("cut at {MAX_BODY} bytes")));
                }
                if events.reply_complete(&body) {
                    return (body, None);
                }
            }
            Ok(None) => return (body, None),
            Err(error) => {
                return (
                    body,
                    Some(format!(
                        "the body stopped: {}",
                        error_chain(&error.without_url())
                    )),
                );
            }
        }
    }
}

/// Where an SSE body was last looked at, so that each byte is parsed once.
#[derive(Debug, Default)]
struct SseEvents {
    /// The end of the last complete event already parsed.
    parsed_up_to: usize,
}

impl SseEvents {
    /// Whether the events completed since the last call hold a JSON-RPC result or error.
    fn reply_complete(&mut self, body: &[u8]) -> bool {
        let fresh = &body[self.parsed_up_to..];
        let Some(end) = last_event_end(fresh) else {
            return false;
        };
        let complete = &fresh[..end];
        self.parsed_up_to += end;
        jsonrpc_messages(Some("text/event-stream"), complete)
            .iter()
            .any(|message| message.get("result").is_some() || message.get("error").is_some())
    }
}

/// The position just after the last blank line (`\n\n` or `\r\n\r\n`) in `bytes`.
fn last_event_end(bytes: &[u8]) -> Option<usize> {
    let lf = bytes
        .windows(2)
        .rposition(|window| window == b"\n\n")
        .map(|position| position + 2);
    let crlf = bytes
        .windows(4)
        .rposition(|window| window == b"\r\n\r\n")
        .map(|position| position + 4);
    lf.max(crlf)
}

pub(crate) use crate::error_chain;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jwt_is_shown_by_its_header_and_claims_and_never_printed() {
        // {"alg":"RS256","kid":"snk_1"} . {"sub":"usr_1"} . signature
        let token = TestToken::from_jwt(
            Secret::new("eyJhbGciOiJSUzI1NiIsImtpZCI6InNua18xIn0.eyJzdWIiOiJ1c3JfMSJ9.c2ln"),
            "a valid token",
        );
        assert_eq!(token.header, json!({"alg": "RS256", "kid": "snk_1"}));
        assert_eq!(token.claims, json!({"sub": "usr_1"}));
        assert!(!format!("{token:?}").contains("eyJ"));
        let garbage = TestToken::from_jwt(Secret::new("not-a-jwt"), "garbage");
        assert_eq!(garbage.header, Value::Null);
    }

    #[test]
    fn an_sse_reply_is_complete_once_its_event_has_ended() {
        let mut events = SseEvents::default();
        let mut body = b": ping\n\n".to_vec();
        assert!(!events.reply_complete(&body));
        body.extend_from_slice(
            b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}",
        );
        assert!(!events.reply_complete(&body));
        body.extend_from_slice(b"\n\n");
        assert!(events.reply_complete(&body));
        assert_eq!(events.parsed_up_to, body.len());
    }

    /// A one-shot HTTP server on loopback: answers the first request with `head` and `body`,
    /// then keeps the connection open without another byte (or, with `None`, never answers).
    async fn stalling_server(answer: Option<(&'static str, &'static [u8])>) -> Url {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a listener");
        let address = listener.local_addr().expect("an address");
        tokio::spawn(async move {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request).await;
            if let Some((head, body)) = answer {
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body).await;
            }
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        Url::parse(&format!("http://{address}/mcp")).expect("a URL")
    }

    fn secret_token() -> TestToken {
        TestToken::from_jwt(
            Secret::new("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c3JfMSJ9.c2VjcmV0LXNpZ25hdHVyZQ"),
            "a valid token",
        )
    }

    #[tokio::test]
    async fn a_stalled_body_keeps_the_status_and_says_where_it_stopped() {
        let url = stalling_server(Some((
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n",
            b": ping\n\n",
        )))
        .await;
        let prober = Prober::with_timeout(url, Duration::from_millis(300)).expect("a prober");
        let token = secret_token();
        let observation = prober.send(McpRequest::initialize(Some(&token))).await;
        let answer = observation.answer.as_ref().expect("an answer");
        assert_eq!(answer.status, 200);
        assert!(
            answer
                .cut
                .as_deref()
                .is_some_and(|cut| cut.starts_with("the body stopped: ")),
            "{answer:?}"
        );
        assert!(observation.accepted());
    }

    #[tokio::test]
    async fn a_query_token_never_reaches_an_error_or_the_evidence() {
        let url = stalling_server(None).await;
        let prober = Prober::with_timeout(url, Duration::from_millis(300)).expect("a prober");
        let token = secret_token();
        let mut request = McpRequest::initialize(Some(&token));
        request.carrier = Carrier::Query;
        let observation = prober.send(request).await;
        let error = observation.answer.as_ref().expect_err("a timeout");
        let printed = format!(
            "{error} {} {}",
            observation.describe(),
            observation.evidence()
        );
        assert!(!printed.contains("c2VjcmV0"), "{printed}");
        assert!(
            printed.contains("access_token=%3Ca+valid+token%3E"),
            "{printed}"
        );
    }

    #[tokio::test]
    async fn an_answer_that_echoes_the_token_is_scrubbed() {
        let url = stalling_server(Some((
            "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\nwww-authenticate: Bearer error=\"invalid_token\", error_description=\"bad eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c3JfMSJ9.c2VjcmV0LXNpZ25hdHVyZQ\"\r\ncontent-length: 84\r\n\r\n",
            b"{\"token\":\"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c3JfMSJ9.c2VjcmV0LXNpZ25hdHVyZQ\",\"x\":\"y\"}",
        )))
        .await;
        let prober = Prober::with_timeout(url, Duration::from_millis(2000)).expect("a prober");
        let token = secret_token();
        let observation = prober.send(McpRequest::initialize(Some(&token))).await;
        let evidence = observation.evidence().to_string();
        assert!(!evidence.contains("c2VjcmV0"), "{evidence}");
        assert!(evidence.contains("<a valid token>"), "{evidence}");
        assert_eq!(observation.status(), Some(401));
    }
}
