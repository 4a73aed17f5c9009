//! Turning one recorded [`Exchange`] into a redacted [`Hop`] and what it says about correlation,
//! in named steps, each a function of what the steps before it found:
//!
//! 1. [`Parsed::parse`]: the request's path, query, form and bearer; the answer's `Location`,
//!    JSON or HTML and challenge.
//! 2. [`endpoint`]: which endpoint served it, from the answer's [`HopFacts`] (else the route
//!    table, [`infer_endpoint`]), and so [`caller`]: who sent it.
//! 3. [`summarise_response`]: the answer in short, its error from the answer's [`ErrorSummary`]
//!    (else read from the body, the hosted error page's title, the redirect or the challenge:
//!    [`read_error`]).
//! 4. [`hop_checks`]: what the answer proves ([`crate::checks`]).
//! 5. [`correlation_keys`]: the flow it opens, the keys that lead to one, the keys it teaches.
//! 6. [`comes_before_flows`]: where the hop waits when no key places it.
//! 7. [`redacted_hop`]: the hop itself, every secret cut.

use aws_lc_rs::digest;
use http::{HeaderMap, Method};
#[cfg(doc)]
use scalekit_wire::HopFacts;
use scalekit_wire::{Endpoint, ErrorSummary};
use serde_json::Value;

use crate::checks::{self, CheckOutcome};
use crate::{
    Actor, Exchange, Header, Hop, MAX_HEADER_TOTAL_BYTES, MAX_HEADERS, ResponseSummary, is_noise,
    redact,
};

/// A key learned from or found in the traffic, as the index holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    LoginRequest,
    State,
    Consent,
    Code,
    Token,
}

/// A key's index entry: a SHA-256 prefix of its kind and value, never the value itself.
pub(crate) fn key(kind: KeyKind, value: &str) -> u128 {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(&[kind as u8]);
    context.update(value.as_bytes());
    let hash = context.finish();
    let mut prefix = [0_u8; 16];
    prefix.copy_from_slice(&hash.as_ref()[..16]);
    u128::from_be_bytes(prefix)
}

/// A hop and what it says about correlation.
#[derive(Debug)]
pub(crate) struct Observed {
    pub(crate) hop: Hop,
    pub(crate) keys: Keys,
    /// Comes before flows (discovery, registration, the first 401): waits for the next one.
    pub(crate) before_flows: bool,
}

/// What a hop says about the flow it belongs to.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Keys {
    /// An authorize answer sending the browser to the login endpoint: opens a flow with this
    /// login request id.
    pub(crate) opens: Option<String>,
    /// The client named by the request or its answer.
    pub(crate) client_id: Option<String>,
    /// Keys that lead to an existing flow.
    pub(crate) finds: Vec<u128>,
    /// Keys the flow learns from this hop.
    pub(crate) learns: Vec<u128>,
    /// Whether a token endpoint issued tokens.
    pub(crate) tokens_issued: bool,
}

/// Turns an exchange into a redacted hop and the keys it carries.
pub(crate) fn observe(exchange: Exchange) -> Observed {
    let parsed = Parsed::parse(&exchange);
    let endpoint = endpoint(&exchange, &parsed);
    let from = caller(exchange.served_by, endpoint, &parsed.path);
    let response = summarise_response(&exchange, &parsed);
    let checks = hop_checks(endpoint, &exchange, &parsed, &response);
    let keys = correlation_keys(exchange.served_by, endpoint, &parsed);
    let before_flows = comes_before_flows(
        exchange.served_by,
        endpoint,
        &parsed.path,
        parsed.bearer.is_some(),
    );
    let hop = redacted_hop(&exchange, parsed, endpoint, from, response, checks);
    Observed {
        hop,
        keys,
        before_flows,
    }
}

/// Step 1: what the exchange's request and answer say, read once.
#[derive(Debug)]
pub(crate) struct Parsed<'a> {
    /// The path with one leading `/` (a `//` reaches the same route).
    pub(crate) path: String,
    /// The query as sent, or empty.
    pub(crate) query: &'a str,
    /// The request's `Content-Type`.
    pub(crate) request_type: Option<&'a str>,
    /// A form body's fields, decoded.
    pub(crate) form: Vec<(String, String)>,
    /// The bearer of `Authorization: Bearer …`.
    pub(crate) bearer: Option<&'a str>,
    /// Whether the request had an `Authorization` header at all.
    pub(crate) authorization: bool,
    /// The answer's `Content-Type`.
    pub(crate) response_type: Option<&'a str>,
    /// The answer's `Location`, unredacted (its values are keys).
    pub(crate) location: Option<&'a str>,
    /// The answer's `WWW-Authenticate`.
    pub(crate) challenge: Option<&'a str>,
    /// A JSON answer.
    pub(crate) response_json: Option<Value>,
    /// An HTML answer.
    pub(crate) html: Option<&'a str>,
}

impl<'a> Parsed<'a> {
    pub(crate) fn parse(exchange: &'a Exchange) -> Parsed<'a> {
        let request_type = header(&exchange.request_headers, "content-type");
        let form = match (&exchange.request_body, request_type) {
            (Some(body), Some(content_type))
                if content_type.starts_with("application/x-www-form-urlencoded") =>
            {
                url::form_urlencoded::parse(body).into_owned().collect()
            }
            _ => Vec::new(),
        };
        let authorization = header(&exchange.request_headers, "authorization");
        let bearer = authorization
            .and_then(|value| {
                value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
            })
            .map(str::trim);
        let response_type = header(&exchange.response_headers, "content-type");
        let response_text = exchange
            .response_body
            .as_deref()
            .and_then(|body| std::str::from_utf8(body).ok());
        let response_json = match (response_type, response_text) {
            (Some(content_type), Some(text)) if content_type.contains("json") => {
                serde_json::from_str(text).ok()
            }
            _ => None,
        };
        let html = match (response_type, response_text) {
            (Some(content_type), Some(text)) if content_type.starts_with("text/html") => Some(text),
            _ => None,
        };
        Parsed {
            path: format!("/{}", exchange.uri.path().trim_start_matches('/')),
            query: exchange.uri.query().unwrap_or_default(),
            request_type,
            form,
            bearer,
            authorization: authorization.is_some(),
            response_type,
            location: header(&exchange.response_headers, "location"),
            challenge: header(&exchange.response_headers, "www-authenticate"),
            response_json,
            html,
        }
    }

    /// A form field's value.
    pub(crate) fn form_value(&self, name: &str) -> Option<String> {
        self.form
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.clone())
    }

    /// A query parameter of the `Location`'s target.
    fn location_value(&self, name: &str) -> Option<String> {
        self.location
            .and_then(|location| query_value(location_query(location), name))
    }

    /// A string member of the JSON answer.
    fn json_text(&self, name: &str) -> Option<String> {
        self.response_json
            .as_ref()
            .and_then(|json| json.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    }
}

/// RFC 7523's grant type.
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The prefix of the grant types the IETF registers as URNs (RFC 7523, RFC 8693).
const GRANT_TYPE_URN: &str = "urn:ietf:params:oauth:grant-type:";

/// The `jti` claim of a JWT, read without verifying it (a token the emulator just issued).
fn jwt_id(token: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("jti")?.as_str().map(str::to_owned)
}

/// Step 2: which endpoint served the exchange. The handler's [`HopFacts`] say it; an answer
/// without them has it inferred from who served it and its path ([`infer_endpoint`]).
pub(crate) fn endpoint(exchange: &Exchange, parsed: &Parsed<'_>) -> Endpoint {
    match exchange.hop_facts {
        Some(facts) => facts.endpoint,
        None => infer_endpoint(
            exchange.served_by,
            &exchange.method,
            &parsed.path,
            parsed.form_value("grant_type").as_deref(),
        ),
    }
}

/// The fallback route table for an answer without [`HopFacts`]: where a request went, by who
/// served it, its method, its path and, at the token endpoint, its grant type.
pub(crate) fn infer_endpoint(
    served_by: Actor,
    method: &Method,
    path: &str,
    grant_type: Option<&str>,
) -> Endpoint {
    match served_by {
        Actor::McpServer if !path.starts_with("/.well-known/") => Endpoint::Mcp,
        Actor::Emulator => {
            if path == "/oauth/token"
                || (path.starts_with("/resources/") && path.ends_with("/oauth/token"))
            {
                return match grant_type {
                    Some("authorization_code") => Endpoint::TokenAuthorizationCode,
                    Some("refresh_token") => Endpoint::TokenRefresh,
                    Some("client_credentials") => Endpoint::TokenClientCredentials,
                    Some(JWT_BEARER) => Endpoint::TokenJwtBearer,
                    _ => Endpoint::TokenOther,
                };
            }
            if path.starts_with("/_idp/") && path.ends_with("/oauth/token") {
                return Endpoint::IdpTokenExchange;
            }
            if path == "/oauth/authorize"
                || (path.starts_with("/resources/") && path.ends_with("/oauth/authorize"))
            {
                return Endpoint::Authorize;
            }
            if path.starts_with("/api/v1/connections/")
                && path.ends_with("/user")
                && method == Method::POST
            {
                return Endpoint::SubmitUser;
            }
            if path.starts_with("/sso/v1/connections/") && path.ends_with("/partner:callback") {
                return Endpoint::PartnerCallback;
            }
            if path == "/oauth/consent" {
                return Endpoint::Consent;
            }
            if path.ends_with("/clients:register") {
                return Endpoint::Register;
            }
            if path == "/oauth/revoke" {
                return Endpoint::Revoke;
            }
            Endpoint::Other
        }
        _ => Endpoint::Other,
    }
}

/// Who sent a request, by who served it and where it went. The emulator cannot see its caller,
/// so this is what the protocol says: the user agent follows redirects to authorize, the
/// callback and consent, and from the callback to the hosted error page (`/error`); Your App gets the management token and posts the user; the MCP server
/// fetches the JWKS (the MCP client may too, to verify an ID token); the MCP client does the
/// rest.
pub(crate) fn caller(served_by: Actor, endpoint: Endpoint, path: &str) -> Actor {
    match served_by {
        Actor::YourApp => Actor::Browser,
        Actor::McpServer => Actor::McpClient,
        Actor::McpClient | Actor::Browser => Actor::McpClient,
        Actor::Emulator => match endpoint {
            Endpoint::Authorize | Endpoint::PartnerCallback | Endpoint::Consent => Actor::Browser,
            Endpoint::TokenClientCredentials | Endpoint::SubmitUser => Actor::YourApp,
            Endpoint::Other if path == "/keys" => Actor::McpServer,
            Endpoint::Other if path == "/error" => Actor::Browser,
            _ => Actor::McpClient,
        },
    }
}

/// Step 3: the answer in short, without its body (the last step adds it, redacted). The error
/// is the handler's [`ErrorSummary`] when it attached one; otherwise it is read off the wire
/// ([`read_error`]). An HTML page's title is kept either way: it is what the page is.
pub(crate) fn summarise_response(exchange: &Exchange, parsed: &Parsed<'_>) -> ResponseSummary {
    let (error, error_description) = match &exchange.error_summary {
        Some(summary) => summarised_error(summary),
        None => read_error(parsed),
    };
    ResponseSummary {
        content_type: parsed.response_type.map(str::to_owned),
        location: parsed.location.map(redact::redact_url),
        error,
        error_description,
        title: parsed.html.and_then(html_title),
        body: None,
    }
}

/// The error and description a hop shows for an [`ErrorSummary`]: its code and message, except
/// that a gateway error shows its gRPC code as the number its body carries (`5`, not
/// `NOT_FOUND`), as hops always have.
pub(crate) fn summarised_error(summary: &ErrorSummary) -> (Option<String>, Option<String>) {
    let code = match grpc_code_number(&summary.code) {
        Some(number) => number.to_string(),
        None => summary.code.clone(),
    };
    let description = (!summary.message.is_empty()).then(|| summary.message.clone());
    (Some(code), description)
}

/// The number of a gRPC status code name (`google.rpc.Code`).
fn grpc_code_number(name: &str) -> Option<usize> {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES.iter().position(|known| *known == name)
}

/// The fallback for an answer without an [`ErrorSummary`]: its error code and description read
/// off the wire, from the first of an OAuth JSON body (`error`, `error_description`), a gateway
/// JSON body (`code`, `message`), the hosted error page's title (`Sign-in error: {error}
/// ({description})`), the redirect's `error` and a `WWW-Authenticate` challenge's `error`.
pub(crate) fn read_error(parsed: &Parsed<'_>) -> (Option<String>, Option<String>) {
    if let Some(json) = &parsed.response_json {
        if let Some(error) = parsed.json_text("error") {
            return (Some(error), parsed.json_text("error_description"));
        }
        if let (Some(code), Some(message)) = (json.get("code"), parsed.json_text("message")) {
            return (
                Some(code.to_string().trim_matches('"').to_owned()),
                Some(message),
            );
        }
    }
    if let Some(rest) = parsed
        .html
        .and_then(html_title)
        .as_deref()
        .and_then(|title| title.strip_prefix("Sign-in error: "))
    {
        let (error, description) = match rest.split_once(" (") {
            Some((error, description)) => (error, description.trim_end_matches(')')),
            None => (rest, ""),
        };
        return (
            Some(error.to_owned()),
            (!description.is_empty()).then(|| description.to_owned()),
        );
    }
    if let Some(error) = parsed.location_value("error") {
        return (Some(error), parsed.location_value("error_description"));
    }
    match parsed.challenge {
        Some(challenge) => challenge_error(challenge),
        None => (None, None),
    }
}

/// Step 4: what the answer proves. A success of the MCP endpoint without an `Authorization`
/// header proves none of its checks (only a server that reads a token from the query, by
/// mistake, answers so).
pub(crate) fn hop_checks(
    endpoint: Endpoint,
    exchange: &Exchange,
    parsed: &Parsed<'_>,
    response: &ResponseSummary,
) -> Vec<CheckOutcome> {
    let outcome = checks::outcome(
        endpoint,
        exchange.hop_facts,
        exchange.status.as_u16(),
        response.error.as_deref(),
        response.error_description.as_deref(),
    );
    if endpoint == Endpoint::Mcp && outcome == checks::Outcome::Passed && !parsed.authorization {
        return Vec::new();
    }
    checks::checks(endpoint, &outcome)
}

/// Step 5: the correlation keys of the hop. Keys are values the flow's parties pass along (the
/// login request id, the emulator's `state`, the consent id, codes, tokens), each found where
/// the protocol puts it.
pub(crate) fn correlation_keys(served_by: Actor, endpoint: Endpoint, parsed: &Parsed<'_>) -> Keys {
    let mut keys = Keys {
        client_id: query_value(parsed.query, "client_id")
            .or_else(|| parsed.form_value("client_id")),
        ..Keys::default()
    };
    match (served_by, endpoint) {
        (Actor::Emulator, Endpoint::Authorize) => {
            if let Some(login_request) = parsed.location_value("login_request_id") {
                keys.learns.push(key(KeyKind::LoginRequest, &login_request));
                if let Some(state) = parsed.location_value("state") {
                    keys.learns.push(key(KeyKind::State, &state));
                }
                keys.opens = Some(login_request);
            }
        }
        (Actor::Emulator, Endpoint::SubmitUser) => {
            let segments: Vec<&str> = parsed.path.split('/').collect();
            if let Some(position) = segments
                .iter()
                .position(|segment| *segment == "auth-requests")
                && let Some(login_request) = segments.get(position + 1)
            {
                keys.finds.push(key(KeyKind::LoginRequest, login_request));
            }
        }
        (Actor::Emulator, Endpoint::PartnerCallback) => {
            if let Some(state) = query_value(parsed.query, "state") {
                keys.finds.push(key(KeyKind::State, &state));
            }
            if let Some(consent) = parsed
                .html
                .and_then(|html| hidden_field(html, "consent_id"))
            {
                keys.learns.push(key(KeyKind::Consent, &consent));
            }
        }
        (Actor::Emulator, Endpoint::Consent) => {
            if let Some(consent) = parsed.form_value("consent_id") {
                keys.finds.push(key(KeyKind::Consent, &consent));
            }
        }
        (Actor::Emulator, Endpoint::TokenAuthorizationCode) => {
            if let Some(code) = parsed.form_value("code") {
                keys.finds.push(key(KeyKind::Code, &code));
            }
        }
        (Actor::Emulator, Endpoint::TokenRefresh) => {
            if let Some(token) = parsed.form_value("refresh_token") {
                keys.finds.push(key(KeyKind::Token, &token));
            }
        }
        (Actor::Emulator, Endpoint::Revoke) => {
            if let Some(token) = parsed.form_value("token") {
                keys.finds.push(key(KeyKind::Token, &token));
            }
        }
        (Actor::Emulator, Endpoint::Register) => {
            keys.client_id = parsed.json_text("client_id");
        }
        // Cross-app access has no sign-in to open a flow: the issued access token does, named
        // by its `jti` (no secret), and claims the discovery and the identity provider's token
        // exchange that came just before.
        // The client at the identity provider is not a client of this environment: naming it
        // would keep the hop from the flow its ID-JAG opens.
        (Actor::Emulator, Endpoint::IdpTokenExchange) => keys.client_id = None,
        (Actor::Emulator, Endpoint::TokenJwtBearer) => {
            keys.opens = parsed
                .json_text("access_token")
                .as_deref()
                .and_then(jwt_id)
                .map(|jti| format!("xaa {jti}"));
        }
        (Actor::YourApp, _) => {
            if let Some(login_request) = query_value(parsed.query, "login_request_id")
                .or_else(|| parsed.form_value("login_request_id"))
            {
                keys.finds.push(key(KeyKind::LoginRequest, &login_request));
            }
        }
        (Actor::McpServer, _) => {
            if let Some(token) = parsed.bearer {
                keys.finds.push(key(KeyKind::Token, token));
            }
        }
        _ => {}
    }
    // A code in a redirect (callback, consent, a remembered consent) is the flow's next key.
    if let Some(code) = parsed.location_value("code") {
        keys.learns.push(key(KeyKind::Code, &code));
    }
    if matches!(
        endpoint,
        Endpoint::TokenAuthorizationCode | Endpoint::TokenRefresh | Endpoint::TokenJwtBearer
    ) {
        for name in ["access_token", "refresh_token"] {
            if let Some(token) = parsed.json_text(name) {
                keys.learns.push(key(KeyKind::Token, &token));
                keys.tokens_issued = true;
            }
        }
    }
    keys
}

/// Step 6: whether a hop that no key places comes before flows and waits for the next one
/// (discovery, registration, authorize, the MCP server's first request without a bearer)
/// rather than joining the flow active at its time. Discovery documents carry no facts of their
/// own ([`Endpoint::Other`] covers them and the JWKS alike), so they are told by their path.
pub(crate) fn comes_before_flows(
    served_by: Actor,
    endpoint: Endpoint,
    path: &str,
    bearer: bool,
) -> bool {
    match (served_by, endpoint) {
        (Actor::McpServer, _) => !bearer,
        (Actor::Emulator, Endpoint::Register | Endpoint::Authorize) => true,
        // The identity provider's token exchange gets the assertion the next jwt-bearer
        // request presents.
        (Actor::Emulator, Endpoint::IdpTokenExchange) => true,
        (Actor::Emulator, Endpoint::Other) => {
            path.starts_with("/.well-known/")
                || (path.starts_with("/resources/") && path.contains("/.well-known/"))
                || path.starts_with("/_idp/")
        }
        _ => false,
    }
}

/// Step 7: the hop itself, redacted: URL, request headers and body, the answer's JSON body.
pub(crate) fn redacted_hop(
    exchange: &Exchange,
    parsed: Parsed<'_>,
    endpoint: Endpoint,
    from: Actor,
    mut response: ResponseSummary,
    checks: Vec<CheckOutcome>,
) -> Hop {
    let method = &exchange.method;
    let path = &parsed.path;
    if let Some(mut json) = parsed.response_json {
        redact::redact_json(&mut json);
        response.body = Some(redact::cut(&json.to_string(), redact::MAX_TEXT_BYTES));
    }
    let target = match exchange.uri.query() {
        Some(query) => format!("{}{path}?{query}", exchange.base_url),
        None => format!("{}{path}", exchange.base_url),
    };
    let rpc_method = match (endpoint, &exchange.request_body) {
        (Endpoint::Mcp, Some(body)) => {
            serde_json::from_slice::<Value>(body).ok().and_then(|json| {
                json.get("method")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
        }
        _ => None,
    };
    let grant_type = parsed
        .form
        .iter()
        .find(|(field, _)| field == "grant_type")
        .map(|(_, value)| value.as_str());
    let summary = match (grant_type, rpc_method) {
        (_, Some(rpc_method)) => format!("{method} {path} {rpc_method}"),
        // `urn:ietf:params:oauth:grant-type:jwt-bearer` reads as `jwt-bearer`.
        (Some(grant_type), _) => format!(
            "{method} {path} ({})",
            grant_type
                .strip_prefix(GRANT_TYPE_URN)
                .unwrap_or(grant_type)
        ),
        _ => format!("{method} {path}"),
    };
    Hop {
        seq: exchange.seq,
        started_at_ms: exchange.started_at_ms,
        duration_us: exchange.duration_us,
        from,
        to: exchange.served_by,
        method: method.to_string(),
        url: redact::redact_url(&target),
        summary: redact::cut(&summary, 200),
        request_headers: kept_headers(&exchange.request_headers),
        request_body: exchange
            .request_body
            .as_deref()
            .and_then(|body| redact::redact_body(parsed.request_type, body)),
        status: exchange.status.as_u16(),
        response,
        checks,
        matched_by: None,
    }
}

/// The request headers a hop keeps: no noise, credentials cut, at most [`MAX_HEADERS`] of at
/// most [`MAX_HEADER_TOTAL_BYTES`] in all.
fn kept_headers(headers: &HeaderMap) -> Vec<Header> {
    let mut kept = Vec::new();
    let mut header_bytes = 0;
    for (name, value) in headers {
        let name = name.as_str();
        if is_noise(name) {
            continue;
        }
        let value = redact::redact_header(name, &String::from_utf8_lossy(value.as_bytes()));
        header_bytes += name.len() + value.len();
        if kept.len() == MAX_HEADERS || header_bytes > MAX_HEADER_TOTAL_BYTES {
            break;
        }
        kept.push(Header {
            name: name.to_owned(),
            value,
        });
    }
    kept
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

fn query_value(query: &str, wanted: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == wanted)
        .map(|(_, value)| value.into_owned())
}

fn location_query(location: &str) -> &str {
    let without_fragment = location
        .split_once('#')
        .map_or(location, |(before, _)| before);
    without_fragment
        .split_once('?')
        .map_or("", |(_, query)| query)
}

/// The title of an HTML page, its entities decoded.
fn html_title(html: &str) -> Option<String> {
    let start = html.find("<title>")? + "<title>".len();
    let end = start + html[start..].find("</title>")?;
    Some(
        html[start..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#x27;", "'")
            .replace("&amp;", "&"),
    )
}

/// The value of a hidden form field on an HTML page (the consent page's `consent_id`).
fn hidden_field(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = start + html[start..].find('"')?;
    Some(html[start..end].to_owned())
}

/// `error` and `error_description` of a `WWW-Authenticate: Bearer …` challenge.
fn challenge_error(challenge: &str) -> (Option<String>, Option<String>) {
    let parameter = |name: &str| {
        let marker = format!("{name}=\"");
        let start = challenge.find(&marker)? + marker.len();
        let end = start + challenge[start..].find('"')?;
        Some(challenge[start..end].to_owned())
    };
    (parameter("error"), parameter("error_description"))
}

#[cfg(test)]
mod tests;
