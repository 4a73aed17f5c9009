//! The MCP leg: an rmcp Streamable HTTP client session with the bearer token, calling `whoami`,
//! with every HTTP exchange of the transport recorded as a hop.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use rmcp::ServiceExt;
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, ClientJsonRpcMessage, Implementation,
};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpClientTransportConfig, StreamableHttpError,
    StreamableHttpPostResponse, StreamableHttpResponseLimits,
};
use serde_json::Value;
use sse_stream::Sse;
use url::Url;

use crate::DriverError;
use crate::hop::{Hop, HopLog, Phase, redact_url};

/// The reqwest client rmcp uses, wrapped so that each POST, GET and DELETE becomes a [`Hop`].
///
/// rmcp hides the HTTP response, so the recorded status is derived from what rmcp returns: 200
/// for a JSON or SSE answer, 202 for `Accepted`, the status rmcp reports for HTTP failures (401,
/// 403, 404, 405, 429, 5xx), and 0 when the exchange failed without one (connection, parsing).
#[derive(Clone)]
struct RecordingClient {
    inner: reqwest::Client,
    hops: HopLog,
}

impl RecordingClient {
    fn record<T>(
        &self,
        method: &str,
        uri: &str,
        detail: Option<String>,
        outcome: &Result<T, StreamableHttpError<reqwest::Error>>,
        success_status: impl Fn(&T) -> u16,
    ) {
        let status = match outcome {
            Ok(value) => success_status(value),
            Err(error) => error_status(error),
        };
        let url = Url::parse(uri)
            .map(|url| redact_url(&url))
            .unwrap_or_else(|_| uri.to_owned());
        self.hops.push(Hop {
            phase: Phase::Mcp,
            method: method.to_owned(),
            url,
            status,
            location: None,
            cache_control: None,
            detail,
        });
    }
}

/// The HTTP status behind an rmcp transport error, 0 when there was none.
fn error_status(error: &StreamableHttpError<reqwest::Error>) -> u16 {
    match error {
        StreamableHttpError::HttpStatus(status) => status.status,
        StreamableHttpError::AuthRequired(_) => 401,
        StreamableHttpError::InsufficientScope(_) => 403,
        StreamableHttpError::SessionExpired => 404,
        StreamableHttpError::ServerDoesNotSupportSse
        | StreamableHttpError::ServerDoesNotSupportDeleteSession => 405,
        StreamableHttpError::Client(error) => error.status().map_or(0, |status| status.as_u16()),
        _ => 0,
    }
}

/// The JSON-RPC method (or `response`) of an outgoing message, for the hop's detail.
fn rpc_method(message: &ClientJsonRpcMessage) -> Option<String> {
    let value = serde_json::to_value(message).ok()?;
    match value.get("method").and_then(Value::as_str) {
        Some(method) => Some(method.to_owned()),
        None => Some("response".to_owned()),
    }
}

fn post_status(response: &StreamableHttpPostResponse) -> u16 {
    // The enum is non-exhaustive: anything but `Accepted` is an answer with a body.
    match response {
        StreamableHttpPostResponse::Accepted => 202,
        _ => 200,
    }
}

impl StreamableHttpClient for RecordingClient {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            StreamableHttpResponseLimits::default(),
        )
        .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let detail = rpc_method(&message);
        let outcome = self
            .inner
            .post_message_with_response_limits(
                uri.clone(),
                message,
                session_id,
                auth_header,
                custom_headers,
                limits,
            )
            .await;
        self.record("POST", &uri, detail, &outcome, post_status);
        outcome
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        let outcome = self
            .inner
            .delete_session(uri.clone(), session_id, auth_header, custom_headers)
            .await;
        self.record("DELETE", &uri, None, &outcome, |_| 200);
        outcome
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        self.get_stream_with_max_sse_event_size(
            uri,
            session_id,
            last_event_id,
            auth_header,
            custom_headers,
            StreamableHttpResponseLimits::default().max_sse_event_size,
        )
        .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        let outcome = self
            .inner
            .get_stream_with_max_sse_event_size(
                uri.clone(),
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await;
        self.record("GET", &uri, Some("sse stream".to_owned()), &outcome, |_| {
            200
        });
        outcome
    }
}

/// Runs a future with a timeout, turning the timeout into [`DriverError::Mcp`].
async fn bounded<T>(
    timeout: Duration,
    what: &str,
    future: impl Future<Output = T>,
) -> Result<T, DriverError> {
    tokio::time::timeout(timeout, future)
        .await
        .map_err(|_| DriverError::Mcp(format!("{what} timed out after {timeout:?}")))
}

/// What the MCP leg needs.
pub(crate) struct McpCall<'a> {
    pub(crate) mcp_url: &'a Url,
    pub(crate) access_token: &'a str,
    pub(crate) client_name: &'a str,
    pub(crate) timeout: Duration,
    pub(crate) hops: &'a HopLog,
    /// A CA trusted besides the system's roots.
    pub(crate) ca_cert_pem: Option<&'a str>,
}

/// `initialize`, then `tools/call whoami`; returns the structured content, or the JSON parsed
/// from the first text content.
pub(crate) async fn call_whoami(call: McpCall<'_>) -> Result<Value, DriverError> {
    // No overall timeout on this client: MCP answers may be SSE streams. Each step is bounded
    // with `tokio::time::timeout` instead.
    let inner = crate::flow::trusting(reqwest::Client::builder(), call.ca_cert_pem)?
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(call.timeout)
        .build()?;
    let client = RecordingClient {
        inner,
        hops: call.hops.clone(),
    };
    let transport_config = StreamableHttpClientTransportConfig::with_uri(call.mcp_url.as_str())
        .auth_header(call.access_token);
    let transport = StreamableHttpClientTransport::with_client(client, transport_config);
    let client_config = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new(call.client_name, env!("CARGO_PKG_VERSION")),
    );
    let service = bounded(call.timeout, "initialize", client_config.serve(transport))
        .await?
        .map_err(|error| DriverError::Mcp(format!("initialize failed: {error}")))?;
    let result = bounded(
        call.timeout,
        "tools/call whoami",
        service.call_tool(CallToolRequestParams::new("whoami")),
    )
    .await;
    // Closing the session is best effort: the whoami result is what matters.
    let _ = bounded(call.timeout, "closing the session", service.cancel()).await;
    let result =
        result?.map_err(|error| DriverError::Mcp(format!("tools/call whoami failed: {error}")))?;
    let first_text = result
        .content
        .iter()
        .find_map(|content| content.as_text())
        .map(|text| text.text.clone());
    if result.is_error == Some(true) {
        return Err(DriverError::Mcp(format!(
            "whoami returned an error: {}",
            first_text.unwrap_or_default()
        )));
    }
    if let Some(structured) = result.structured_content {
        return Ok(structured);
    }
    let text = first_text.ok_or_else(|| {
        DriverError::Mcp("whoami returned no text and no structured content".to_owned())
    })?;
    serde_json::from_str(&text)
        .map_err(|error| DriverError::Mcp(format!("whoami text is not JSON ({error}): {text}")))
}
