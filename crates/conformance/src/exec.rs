//! Executes step scenarios over HTTP against a running environment (see [`crate::steps`]).

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, LOCATION};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use testbed_stack::Stack;
use url::Url;

use crate::record::RawExchange;
use crate::steps::{Action, Browser, ClientAuth, Param, RedirectTarget, Step, StepExpectation};

/// The redirect URI step scenarios register and authorize with. Nothing listens there.
pub const STEP_REDIRECT_URI: &str = "http://127.0.0.1:33418/callback";

/// The answer to one step's request.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body, read to the end.
    pub body: Vec<u8>,
    /// The redirect target, resolved against the request URL.
    pub location: Option<Url>,
}

impl Answer {
    fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn query(&self) -> BTreeMap<String, String> {
        self.location
            .as_ref()
            .map(|location| location.query_pairs().into_owned().collect())
            .unwrap_or_default()
    }
}

/// How a step tells the environment's hosted error page (`redirect = "error-page"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorPageMatch {
    /// The emulator's page: exactly `{env}/error`, whatever the query.
    Emulator,
    /// A real Scalekit environment's page, whose path is unknown (its docs give only
    /// `error=invalid_state` in the page's URL): any page on the environment's host whose query
    /// carries `error`.
    AnyOnTheEnvironmentsHost,
}

/// The variables and HTTP clients of one step scenario. It reaches the stack only over HTTP.
pub struct StepRunner {
    /// The MCP client's and Your App's server-side calls, and the harness's: no cookies.
    http: reqwest::Client,
    /// The browser of the sign-in: it keeps cookies, as every browser does (Decisions §9).
    browser: reqwest::Client,
    /// Another browser, with cookies of its own (`browser = "other"`).
    other_browser: reqwest::Client,
    environment: String,
    persona_claims: Value,
    variables: BTreeMap<String, String>,
    error_page: ErrorPageMatch,
    /// The exchanges of the step running now, for a recording (see [`StepRunner::take_exchanges`]).
    exchanges: Mutex<Vec<RawExchange>>,
}

impl StepRunner {
    /// A runner against `stack`, posting `persona_claims` for `post-user` steps by default.
    pub fn new(stack: &Stack, persona_claims: Value) -> Result<Self, String> {
        let client = |cookies: bool| {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(10))
                .cookie_store(cookies)
                .build()
                .map_err(|error| format!("building the HTTP client: {error}"))
        };
        let http = client(false)?;
        let browser = client(true)?;
        let other_browser = client(true)?;
        let environment = stack
            .environment_url
            .as_str()
            .trim_end_matches('/')
            .to_owned();
        let variables = stack_variables(stack)?;
        Ok(Self {
            http,
            browser,
            other_browser,
            environment,
            persona_claims,
            variables,
            error_page: ErrorPageMatch::Emulator,
            exchanges: Mutex::default(),
        })
    }

    /// The variables known now (`{env}`, `{code}`, …): a recording names values by them.
    pub fn variables(&self) -> &BTreeMap<String, String> {
        &self.variables
    }

    /// The exchanges sent since the last call, in order: a step's own request is the last.
    pub fn take_exchanges(&self) -> Vec<RawExchange> {
        std::mem::take(
            &mut *self
                .exchanges
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Tells the hosted error page as `error_page` says (the emulator's by default).
    pub fn with_error_page(mut self, error_page: ErrorPageMatch) -> Self {
        self.error_page = error_page;
        self
    }

    /// Runs one step: sends its request, records what it learned, and returns the answer.
    pub async fn run(&mut self, step: &Step) -> Result<Answer, String> {
        let answer = match step.action {
            Action::AdvanceClock => {
                let seconds = step.seconds.ok_or("advance-clock needs `seconds`")?;
                self.advance_clock(seconds).await?;
                return Ok(Answer {
                    status: 0,
                    headers: HeaderMap::new(),
                    body: Vec::new(),
                    location: None,
                });
            }
            Action::Register => self.register(step).await?,
            Action::Authorize => self.authorize(step).await?,
            Action::ManagementToken => self.management_token(step).await?,
            Action::ClientCredentials => self.client_credentials(step).await?,
            Action::PostUser => self.post_user(step).await?,
            Action::Callback => self.callback(step).await?,
            Action::Consent => self.consent(step).await?,
            Action::Token => self.token(step, "authorization_code").await?,
            Action::Refresh => self.token(step, "refresh_token").await?,
            Action::IdJag => self.id_jag(step).await?,
            Action::JwtBearer => self.jwt_bearer(step).await?,
            Action::Request => self.request(step).await?,
        };
        if !step.capture.is_empty() {
            let body = answer.json();
            for (name, pointer) in &step.capture {
                let value = body
                    .as_ref()
                    .and_then(|body| body.pointer(pointer))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        format!(
                            "capture {name}: no string at {pointer} in {}",
                            shown_body(&answer.body)
                        )
                    })?;
                self.set(name, value.to_owned());
            }
        }
        if let Some(prefix) = &step.save_as {
            let saved: Vec<(String, String)> = self
                .variables
                .iter()
                .filter(|(name, _)| !name.contains('.'))
                .map(|(name, value)| (format!("{prefix}.{name}"), value.clone()))
                .collect();
            self.variables.extend(saved);
        }
        Ok(answer)
    }

    /// Checks `answer` against `expectation`; each mismatch is one message.
    pub fn check(
        &self,
        answer: &Answer,
        expectation: &StepExpectation,
    ) -> Result<Vec<String>, String> {
        let mut problems = Vec::new();
        if let Some(status) = expectation.status
            && answer.status != status
        {
            problems.push(format!(
                "status {} (expected {status}); body: {}",
                answer.status,
                shown_body(&answer.body)
            ));
        }
        if let Some(target) = expectation.redirect {
            let actual = self.redirect_target(answer);
            if actual != Some(target) {
                problems.push(format!(
                    "redirect to {} (expected {target:?})",
                    answer
                        .location
                        .as_ref()
                        .map_or("nowhere".to_owned(), |url| {
                            scalekit_wire::redact::redact_url(url.as_str())
                        })
                ));
            }
        }
        let query = answer.query();
        for (name, expected) in &expectation.query {
            let expected = self.substitute(expected)?;
            match query.get(name) {
                Some(actual) if *actual == expected => {}
                Some(actual) => problems.push(format!(
                    "query {name}={:?} (expected {expected:?})",
                    shown_parameter(name, actual)
                )),
                None => problems.push(format!("query {name} missing (expected {expected:?})")),
            }
        }
        for (name, prefix) in &expectation.query_prefix {
            let prefix = self.substitute(prefix)?;
            match query.get(name) {
                Some(actual) if actual.starts_with(&prefix) => {}
                other => problems.push(format!(
                    "query {name}={:?} (expected to start with {prefix:?})",
                    other.map(|actual| shown_parameter(name, actual))
                )),
            }
        }
        for name in &expectation.absent {
            if let Some(actual) = query.get(name) {
                problems.push(format!(
                    "query {name}={:?} must be absent",
                    shown_parameter(name, actual)
                ));
            }
        }
        let body = answer.json();
        let field = |name: &str| body.as_ref().and_then(|body| body.get(name)).cloned();
        if let Some(expected) = &expectation.error {
            let actual = query
                .get("error")
                .cloned()
                .or_else(|| field("error").and_then(as_string));
            if actual.as_deref() != Some(expected.as_str()) {
                problems.push(format!("error {actual:?} (expected {expected:?})"));
            }
        }
        if let Some(expected) = &expectation.error_description {
            let expected = self.substitute(expected)?;
            let actual = query
                .get("error_description")
                .cloned()
                .or_else(|| field("error_description").and_then(as_string));
            if actual.as_deref() != Some(expected.as_str()) {
                problems.push(format!(
                    "error_description {actual:?} (expected {expected:?})"
                ));
            }
        }
        if let Some(expected) = expectation.code {
            let actual = field("code").and_then(|code| code.as_i64());
            if actual != Some(expected) {
                problems.push(format!("code {actual:?} (expected {expected})"));
            }
        }
        let detail = body
            .as_ref()
            .and_then(|body| body.pointer("/details/0").cloned());
        if let Some(expected) = &expectation.error_code {
            let actual = detail
                .as_ref()
                .and_then(|detail| detail.get("error_code"))
                .cloned()
                .and_then(as_string);
            if actual.as_deref() != Some(expected.as_str()) {
                problems.push(format!(
                    "details[0].error_code {actual:?} (expected {expected:?})"
                ));
            }
        }
        if let Some(expected) = &expectation.message {
            let expected = self.substitute(expected)?;
            let actual = field("message").and_then(as_string);
            if actual.as_deref() != Some(expected.as_str()) {
                problems.push(format!("message {actual:?} (expected {expected:?})"));
            }
        }
        if let Some(expected) = &expectation.field_violations {
            let actual: Vec<String> = detail
                .as_ref()
                .and_then(|detail| detail.pointer("/validation_error_info/field_violations"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|violation| violation.get("field").cloned().and_then(as_string))
                .collect();
            if actual != *expected {
                problems.push(format!(
                    "field violations {actual:?} (expected {expected:?})"
                ));
            }
        }
        if let Some(expected) = &expectation.json {
            let expected = self.substitute_json(
                serde_json::to_value(expected).map_err(|error| error.to_string())?,
            )?;
            if body.as_ref() != Some(&expected) {
                problems.push(format!(
                    "body {} (expected {expected})",
                    shown_body(&answer.body)
                ));
            }
        }
        // What a failed check shows of the body: its secrets (tokens, assertions) cut.
        let shown = body.clone().map(|mut body| {
            scalekit_wire::redact::redact_json(&mut body);
            body
        });
        let shown_at = |pointer: &str| shown.as_ref().and_then(|body| body.pointer(pointer));
        for (pointer, expected) in &expectation.values {
            let expected = self.substitute_json(
                serde_json::to_value(expected).map_err(|error| error.to_string())?,
            )?;
            let actual = body.as_ref().and_then(|body| body.pointer(pointer));
            if actual != Some(&expected) {
                problems.push(format!(
                    "{pointer} = {:?} (expected {expected})",
                    shown_at(pointer)
                ));
            }
        }
        for (pointer, prefix) in &expectation.prefixes {
            let prefix = self.substitute(prefix)?;
            let actual = body
                .as_ref()
                .and_then(|body| body.pointer(pointer))
                .and_then(Value::as_str);
            if !actual.is_some_and(|actual| actual.starts_with(&prefix)) {
                problems.push(format!(
                    "{pointer} = {:?} (expected to start with {prefix:?})",
                    shown_at(pointer)
                ));
            }
        }
        for pointer in &expectation.json_absent {
            if body
                .as_ref()
                .and_then(|body| body.pointer(pointer))
                .is_some()
            {
                let actual = shown_at(pointer).cloned().unwrap_or(Value::Null);
                problems.push(format!("{pointer} = {actual} must be absent"));
            }
        }
        let text = answer.text();
        for needle in &expectation.body_contains {
            let needle = self.substitute(needle)?;
            if !text.contains(&needle) {
                problems.push(format!(
                    "body does not contain {needle:?}: {}",
                    shown_body(text.as_bytes())
                ));
            }
        }
        for (name, needle) in &expectation.headers {
            let needle = self.substitute(needle)?;
            let actual = answer
                .headers
                .get(name.as_str())
                .and_then(|value| value.to_str().ok());
            if !actual.is_some_and(|actual| actual.contains(needle.as_str())) {
                problems.push(format!(
                    "header {name}: {actual:?} (expected to contain {needle:?})"
                ));
            }
        }
        Ok(problems)
    }

    fn redirect_target(&self, answer: &Answer) -> Option<RedirectTarget> {
        let Some(location) = &answer.location else {
            return Some(RedirectTarget::None);
        };
        let location = location.as_str();
        if location.starts_with(self.variable("login_endpoint")) {
            Some(RedirectTarget::LoginEndpoint)
        } else if location.starts_with(self.variable("redirect_uri")) {
            Some(RedirectTarget::Client)
        } else if answer
            .location
            .as_ref()
            .is_some_and(|location| self.is_error_page(location))
        {
            Some(RedirectTarget::ErrorPage)
        } else {
            None
        }
    }

    /// Whether `location` is the environment's hosted error page ([`ErrorPageMatch`]).
    fn is_error_page(&self, location: &Url) -> bool {
        match self.error_page {
            ErrorPageMatch::Emulator => {
                let mut page = location.clone();
                page.set_query(None);
                page.set_fragment(None);
                page.as_str() == format!("{}/error", self.environment)
            }
            ErrorPageMatch::AnyOnTheEnvironmentsHost => {
                let environment_host = Url::parse(&self.environment)
                    .ok()
                    .and_then(|environment| environment.host_str().map(str::to_owned));
                environment_host.is_some()
                    && location.host_str() == environment_host.as_deref()
                    && location.query_pairs().any(|(name, _)| name == "error")
            }
        }
    }

    fn variable(&self, name: &str) -> &str {
        self.variables.get(name).map_or("", String::as_str)
    }

    fn set(&mut self, name: &str, value: impl Into<String>) {
        self.variables.insert(name.to_owned(), value.into());
    }

    /// Replaces every `{name}` with the variable's value; an unknown name is an error.
    fn substitute(&self, text: &str) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("unclosed {{ in {text:?}"))?;
            let name = &after[..close];
            let value = self
                .variables
                .get(name)
                .ok_or_else(|| format!("{{{name}}} is not set at this step (in {text:?})"))?;
            out.push_str(value);
            rest = &after[close + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn substitute_json(&self, value: Value) -> Result<Value, String> {
        Ok(match value {
            Value::String(text) => Value::String(self.substitute(&text)?),
            Value::Array(items) => Value::Array(
                items
                    .into_iter()
                    .map(|item| self.substitute_json(item))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(key, item)| Ok((key, self.substitute_json(item)?)))
                    .collect::<Result<_, String>>()?,
            ),
            other => other,
        })
    }

    /// The request's parameters: `defaults` with the step's overrides applied, variables substituted.
    fn params(
        &self,
        defaults: &[(&str, &str)],
        step: &Step,
    ) -> Result<Vec<(String, String)>, String> {
        let mut params: Vec<(String, String)> = defaults
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        for (name, value) in &step.params {
            params.retain(|(existing, _)| existing != name);
            if let Param::Value(value) = value {
                params.push((name.clone(), value.clone()));
            }
        }
        params
            .into_iter()
            .map(|(name, value)| Ok((name, self.substitute(&value)?)))
            .collect()
    }

    /// Whether `url` is the environment's control API (`{env}/_emulator/…`).
    fn is_control(&self, url: &Url) -> bool {
        url.as_str()
            .strip_prefix(self.environment.as_str())
            .is_some_and(|path| path.starts_with("/_emulator/"))
    }

    /// The user agent of `step`: its `browser`, else `default` (the browser of the sign-in for the
    /// steps a browser makes, no cookies for the MCP client's and Your App's calls).
    fn user_agent(&self, step: &Step, default: Browser) -> &reqwest::Client {
        match step.browser.unwrap_or(default) {
            Browser::Main => &self.browser,
            Browser::Other => &self.other_browser,
            Browser::Without => &self.http,
        }
    }

    /// `request` with the step's `headers` added (values substituted).
    fn with_headers(
        &self,
        mut request: reqwest::RequestBuilder,
        step: &Step,
    ) -> Result<reqwest::RequestBuilder, String> {
        for (name, value) in &step.headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|error| format!("header {name:?}: {error}"))?;
            request = request.header(name, self.substitute(value)?);
        }
        Ok(request)
    }

    /// `{env}` + `path`, or `path` itself when it is an absolute URL.
    fn url(&self, path: &str) -> Result<Url, String> {
        let path = self.substitute(path)?;
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path
        } else {
            format!("{}{path}", self.environment)
        };
        Url::parse(&url).map_err(|error| format!("{url}: {error}"))
    }

    /// Sends `request` with the client that built it (its user agent's cookies included), and
    /// keeps the exchange for a recording: the names of the parameters sent, never their values.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Answer, String> {
        let (client, request) = request.build_split();
        let request = request.map_err(|error| error.to_string())?;
        let url = request.url().clone();
        let method = request.method().as_str().to_owned();
        let (form, body_names) = sent_names(&request);
        let response = client
            .execute(request)
            .await
            .map_err(|error| format!("{url}: {error}"))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let location = headers
            .get(LOCATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|location| url.join(location).ok());
        let body = response
            .bytes()
            .await
            .map_err(|error| format!("{url}: {error}"))?
            .to_vec();
        let header = |name: reqwest::header::HeaderName| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let exchange = RawExchange {
            method,
            url,
            form,
            body: body_names,
            status,
            location: location.clone(),
            www_authenticate: header(reqwest::header::WWW_AUTHENTICATE),
            cache_control: header(reqwest::header::CACHE_CONTROL),
            content_type: header(CONTENT_TYPE),
            response_body: body.clone(),
        };
        self.exchanges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(exchange);
        Ok(Answer {
            status,
            headers,
            body,
            location,
        })
    }

    fn json_body(&self, step: &Step, default: Value) -> Result<Value, String> {
        match &step.body {
            Some(body) => {
                self.substitute_json(serde_json::to_value(body).map_err(|error| error.to_string())?)
            }
            None => self.substitute_json(default),
        }
    }

    fn with_bearer(
        &self,
        request: reqwest::RequestBuilder,
        step: &Step,
        default: &str,
    ) -> Result<reqwest::RequestBuilder, String> {
        let bearer = self.substitute(step.bearer.as_deref().unwrap_or(default))?;
        Ok(if bearer.is_empty() {
            request
        } else {
            request.header(AUTHORIZATION, format!("Bearer {bearer}"))
        })
    }

    /// Moves the emulator's clock through its control API (`POST {env}/_emulator/clock/advance`),
    /// on every target: scenarios reach the stack only over HTTP, even an in-process one.
    async fn advance_clock(&self, seconds: u64) -> Result<(), String> {
        let url = self.url("/_emulator/clock/advance")?;
        let answer = self
            .send(self.http.post(url).json(&json!({ "seconds": seconds })))
            .await?;
        if answer.status != 200 {
            return Err(format!(
                "the emulator's control API did not move the clock: {} {}",
                answer.status,
                shown_body(&answer.body)
            ));
        }
        Ok(())
    }

    async fn register(&mut self, step: &Step) -> Result<Answer, String> {
        let resource = step.resource.as_deref().unwrap_or("{resource_id}");
        let url = self.url(&format!("/api/v1/resources/{resource}/clients:register"))?;
        let body = self.json_body(
            step,
            json!({
                "client_name": "testbed conformance",
                "redirect_uris": ["{redirect_uri}"],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
                "application_type": "native",
            }),
        )?;
        let answer = self
            .send(
                self.user_agent(step, Browser::Without)
                    .post(url)
                    .json(&body),
            )
            .await?;
        if let Some(client_id) = answer
            .json()
            .and_then(|body| body.get("client_id").cloned())
            .and_then(as_string)
        {
            self.set("client_id", client_id);
        }
        Ok(answer)
    }

    async fn authorize(&mut self, step: &Step) -> Result<Answer, String> {
        let verifier = random_token();
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(verifier.as_bytes()));
        self.set("code_verifier", verifier);
        self.set("code_challenge", challenge);
        self.set("client_state", random_token());
        let params = self.params(
            &[
                ("response_type", "code"),
                ("client_id", "{client_id}"),
                ("redirect_uri", "{redirect_uri}"),
                ("scope", "mcp:read offline_access"),
                ("state", "{client_state}"),
                ("code_challenge", "{code_challenge}"),
                ("code_challenge_method", "S256"),
                ("resource", "{server_url}"),
            ],
            step,
        )?;
        let mut url = self.url("/oauth/authorize")?;
        url.query_pairs_mut().extend_pairs(&params);
        let answer = self
            .send(self.with_headers(self.user_agent(step, Browser::Main).get(url), step)?)
            .await?;
        if self.redirect_target(&answer) == Some(RedirectTarget::LoginEndpoint) {
            let query = answer.query();
            for name in ["login_request_id", "state"] {
                if let Some(value) = query.get(name) {
                    self.set(name, value.clone());
                }
            }
        }
        Ok(answer)
    }

    async fn management_token(&mut self, step: &Step) -> Result<Answer, String> {
        let params = self.params(
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "{api_client_id}"),
                ("client_secret", "{api_client_secret}"),
            ],
            step,
        )?;
        let answer = self
            .send(
                self.user_agent(step, Browser::Without)
                    .post(self.url("/oauth/token")?)
                    .form(&params),
            )
            .await?;
        if let Some(token) = answer
            .json()
            .and_then(|body| body.get("access_token").cloned())
            .and_then(as_string)
        {
            self.set("management_token", token);
        }
        Ok(answer)
    }

    /// `client_credentials` as an agent: the credentials as form fields, or with `client_auth =
    /// "basic"` in `Authorization: Basic` (RFC 6749 §2.3.1: each part form-encoded), taken from
    /// the `client_id` and `client_secret` parameters (defaults: the fixtures' agent).
    async fn client_credentials(&mut self, step: &Step) -> Result<Answer, String> {
        self.client_token_request(
            step,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "{agent_client_id}"),
                ("client_secret", "{agent_client_secret}"),
            ],
        )
        .await
    }

    /// A token request of a client that authenticates itself: `defaults` (replaced by the
    /// step's `params`) as form fields, the `client_id` and `client_secret` moved to
    /// `Authorization: Basic` with `client_auth = "basic"`; a 200's `access_token` is kept as
    /// `{access_token}`.
    async fn client_token_request(
        &mut self,
        step: &Step,
        defaults: &[(&str, &str)],
    ) -> Result<Answer, String> {
        let mut params = self.params(defaults, step)?;
        let mut request = self
            .user_agent(step, Browser::Without)
            .post(self.url("/oauth/token")?);
        if step.client_auth == Some(ClientAuth::Basic) {
            request = request.header(AUTHORIZATION, basic_credentials(&mut params));
        }
        let answer = self.send(request.form(&params)).await?;
        self.keep_on_success(&answer, "access_token", "access_token");
        Ok(answer)
    }

    /// Sets `{variable}` from the string member `member` of a 200 answer's JSON body.
    fn keep_on_success(&mut self, answer: &Answer, member: &str, variable: &str) {
        if answer.status == 200
            && let Some(value) = answer
                .json()
                .and_then(|body| body.get(member).cloned())
                .and_then(as_string)
        {
            self.set(variable, value);
        }
    }

    /// An ID-JAG made to order by the control API (`body`, default `{}`: a valid one).
    async fn id_jag(&mut self, step: &Step) -> Result<Answer, String> {
        let url = self.url("/_emulator/idps/{idp_id}/id-jag")?;
        let body = self.json_body(step, json!({}))?;
        let answer = self
            .send(
                self.user_agent(step, Browser::Without)
                    .post(url)
                    .json(&body),
            )
            .await?;
        self.keep_on_success(&answer, "id_jag", "id_jag");
        Ok(answer)
    }

    /// `jwt-bearer` (RFC 7523) with `{id_jag}` as the fixtures' cross-app access client: the
    /// credentials as form fields, or with `client_auth = "basic"` in `Authorization: Basic`.
    async fn jwt_bearer(&mut self, step: &Step) -> Result<Answer, String> {
        self.client_token_request(
            step,
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", "{id_jag}"),
                ("client_id", "{xaa_client_id}"),
                ("client_secret", "{xaa_client_secret}"),
            ],
        )
        .await
    }

    async fn post_user(&mut self, step: &Step) -> Result<Answer, String> {
        if !self.variables.contains_key("management_token") {
            let fetch = Step {
                action: Action::ManagementToken,
                ..step_defaults()
            };
            let answer = self.management_token(&fetch).await?;
            if answer.status != 200 {
                return Err(format!(
                    "fetching a management token answered {}: {}",
                    answer.status,
                    answer.text()
                ));
            }
        }
        let connection = step.connection.as_deref().unwrap_or("{connection_id}");
        let login_request = step
            .login_request
            .as_deref()
            .unwrap_or("{login_request_id}");
        let url = self.url(&format!(
            "/api/v1/connections/{connection}/auth-requests/{login_request}/user"
        ))?;
        let body = self.json_body(step, self.persona_claims.clone())?;
        let request = self.with_bearer(
            self.user_agent(step, Browser::Without)
                .post(url)
                .json(&body),
            step,
            "{management_token}",
        )?;
        self.send(request).await
    }

    async fn callback(&mut self, step: &Step) -> Result<Answer, String> {
        let connection = step.connection.as_deref().unwrap_or("{connection_id}");
        let mut url = self.url(&format!(
            "/sso/v1/connections/{connection}/partner:callback"
        ))?;
        let params = self.params(&[("state", "{state}")], step)?;
        url.query_pairs_mut().extend_pairs(&params);
        let answer = self
            .send(self.with_headers(self.user_agent(step, Browser::Main).get(url), step)?)
            .await?;
        self.learn_from_client_redirect(&answer);
        if let Some(consent_id) = hidden_input(&answer.text(), "consent_id") {
            self.set("consent_id", consent_id);
        }
        Ok(answer)
    }

    async fn consent(&mut self, step: &Step) -> Result<Answer, String> {
        let params = self.params(
            &[("consent_id", "{consent_id}"), ("decision", "approve")],
            step,
        )?;
        let answer = self
            .send(
                self.with_headers(
                    self.user_agent(step, Browser::Main)
                        .post(self.url("/oauth/consent")?)
                        .form(&params),
                    step,
                )?,
            )
            .await?;
        self.learn_from_client_redirect(&answer);
        Ok(answer)
    }

    fn learn_from_client_redirect(&mut self, answer: &Answer) {
        if self.redirect_target(answer) == Some(RedirectTarget::Client)
            && let Some(code) = answer.query().get("code")
        {
            self.set("code", code.clone());
        }
    }

    async fn token(&mut self, step: &Step, grant_type: &str) -> Result<Answer, String> {
        let defaults: &[(&str, &str)] = if grant_type == "authorization_code" {
            &[
                ("grant_type", "authorization_code"),
                ("code", "{code}"),
                ("code_verifier", "{code_verifier}"),
                ("redirect_uri", "{redirect_uri}"),
                ("client_id", "{client_id}"),
                ("resource", "{server_url}"),
            ]
        } else {
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", "{refresh_token}"),
                ("client_id", "{client_id}"),
                ("resource", "{server_url}"),
            ]
        };
        let params = self.params(defaults, step)?;
        let answer = self
            .send(
                self.user_agent(step, Browser::Without)
                    .post(self.url("/oauth/token")?)
                    .form(&params),
            )
            .await?;
        if answer.status == 200
            && let Some(body) = answer.json()
        {
            if let Some(access_token) = body.get("access_token").cloned().and_then(as_string) {
                self.set("access_token", access_token);
            }
            if let Some(refresh_token) = body.get("refresh_token").cloned().and_then(as_string) {
                if let Some(previous) = self.variables.get("refresh_token").cloned() {
                    self.set("previous_refresh_token", previous);
                }
                self.set("refresh_token", refresh_token);
            }
        }
        Ok(answer)
    }

    async fn request(&mut self, step: &Step) -> Result<Answer, String> {
        let method = step.method.as_deref().unwrap_or("GET").to_ascii_uppercase();
        let path = step.path.as_deref().ok_or("a request step needs `path`")?;
        let mut url = self.url(path)?;
        let params = self.params(&[], step)?;
        let mut request = match method.as_str() {
            "GET" => {
                if !params.is_empty() {
                    url.query_pairs_mut().extend_pairs(&params);
                }
                self.user_agent(step, Browser::Main).get(url)
            }
            "POST" | "PUT" | "PATCH" | "DELETE" => {
                let method = reqwest::Method::from_bytes(method.as_bytes())
                    .map_err(|error| error.to_string())?;
                let control = self.is_control(&url);
                let request = self.user_agent(step, Browser::Main).request(method, url);
                match &step.body {
                    Some(_) => request.json(&self.json_body(step, Value::Null)?),
                    None if !params.is_empty() => request.form(&params),
                    // The control API takes state-changing calls only as JSON (a web page cannot
                    // send that cross-site without a preflight): a call without a body says so.
                    None if control => request.header(CONTENT_TYPE, "application/json"),
                    None => request.header(CONTENT_TYPE, "application/x-www-form-urlencoded"),
                }
            }
            other => return Err(format!("unsupported method {other}")),
        };
        if step.bearer.is_some() {
            request = self.with_bearer(request, step, "")?;
        }
        let request = self.with_headers(request, step)?;
        self.send(request).await
    }
}

/// The variables every step scenario starts with (`scenarios/README.md`): the environment's URLs,
/// the fixtures' ids and credentials, the MCP server's URLs. A flow scenario's recording names
/// values by them too.
pub(crate) fn stack_variables(stack: &Stack) -> Result<BTreeMap<String, String>, String> {
    let environment = stack
        .environment_url
        .as_str()
        .trim_end_matches('/')
        .to_owned();
    let config = &stack.fixtures.environment;
    let resource = config
        .resources
        .first()
        .ok_or("the environment has no resource")?;
    let connection = config
        .connections
        .first()
        .ok_or("the environment has no connection")?;
    let mut variables = BTreeMap::new();
    let mut set = |name: &str, value: &str| {
        variables.insert(name.to_owned(), value.to_owned());
    };
    set("env", &environment);
    set(
        "env_origin",
        &stack.environment_url.origin().ascii_serialization(),
    );
    set(
        "issuer",
        &format!("{environment}/resources/{}", resource.id),
    );
    set("resource_id", &resource.id);
    set("server_url", resource.resource_indicator());
    set("connection_id", &connection.id);
    set("login_endpoint", connection.login_endpoint.as_str());
    set("api_client_id", &config.api_client.client_id);
    set(
        "api_client_secret",
        config.api_client.client_secret.expose(),
    );
    // The fixtures' agent of the first resource, when they declare one.
    if let Some(agent) = resource.agents.first() {
        set("agent_client_id", &agent.client_id);
        set("agent_client_secret", agent.client_secret.expose());
    }
    // The fixtures' first trusted identity provider (cross-app access), its first client and
    // user, and the client that client is at this environment, when they declare one.
    if let Some(idp) = config.trusted_idps.first() {
        set("idp_id", &idp.id);
        set("idp_issuer", &format!("{environment}/_idp/{}", idp.id));
        if let Some(user) = idp.users.first() {
            set("idp_user", &user.sub);
        }
        if let Some(client) = idp.clients.first() {
            set("idp_client_id", &client.client_id);
            set("idp_client_secret", client.client_secret.expose());
            set("xaa_client_id", &client.resource_client_id);
            let agent_secret = config
                .resources
                .iter()
                .flat_map(|resource| &resource.agents)
                .find(|agent| agent.client_id == client.resource_client_id)
                .map(|agent| agent.client_secret.clone());
            let client_secret = config
                .clients
                .iter()
                .find(|known| known.client_id == client.resource_client_id)
                .and_then(|known| known.client_secret.clone());
            if let Some(secret) = agent_secret.or(client_secret) {
                set("xaa_client_secret", secret.expose());
            }
        }
    }
    set("redirect_uri", STEP_REDIRECT_URI);
    set("mcp_url", stack.mcp_url.as_str());
    set("mcp_origin", &stack.mcp_url.origin().ascii_serialization());
    let mut metadata_url = stack.mcp_url.clone();
    metadata_url.set_path(&format!(
        "/.well-known/oauth-protected-resource{}",
        stack.mcp_url.path()
    ));
    set("resource_metadata_url", metadata_url.as_str());
    Ok(variables)
}

/// The names of the form fields and of the JSON body's members a request sends, read from its
/// body by its `Content-Type` (the values stay here).
fn sent_names(request: &reqwest::Request) -> (Vec<String>, Vec<String>) {
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let Some(bytes) = request.body().and_then(reqwest::Body::as_bytes) else {
        return (Vec::new(), Vec::new());
    };
    if content_type.starts_with("application/x-www-form-urlencoded") {
        let names = url::form_urlencoded::parse(bytes)
            .map(|(name, _)| name.into_owned())
            .collect();
        return (names, Vec::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(members)) => (Vec::new(), members.keys().cloned().collect()),
        _ => (Vec::new(), Vec::new()),
    }
}

/// `Basic …` of the `client_id` and `client_secret` parameters, taken out of `params` (RFC 6749
/// §2.3.1: each part form-encoded first).
fn basic_credentials(params: &mut Vec<(String, String)>) -> String {
    let mut take = |name: &str| {
        let position = params.iter().position(|(each, _)| each == name)?;
        Some(params.remove(position).1)
    };
    let encode = |value: Option<String>| -> String {
        url::form_urlencoded::byte_serialize(value.unwrap_or_default().as_bytes()).collect()
    };
    let id = encode(take("client_id"));
    let secret = encode(take("client_secret"));
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    format!("Basic {basic}")
}

fn step_defaults() -> Step {
    Step {
        action: Action::Request,
        note: None,
        params: BTreeMap::new(),
        body: None,
        bearer: None,
        headers: BTreeMap::new(),
        browser: None,
        client_auth: None,
        connection: None,
        login_request: None,
        resource: None,
        seconds: None,
        method: None,
        path: None,
        save_as: None,
        capture: BTreeMap::new(),
        expect: StepExpectation::default(),
    }
}

fn as_string(value: Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text),
        _ => None,
    }
}

/// The `value` of `<input … name="{name}" value="…">` in an HTML page.
fn hidden_input(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_owned())
}

/// 43 base64url characters from 256 random bits (not for secrets: the harness only needs
/// values no other flow uses).
fn random_token() -> String {
    let mut bytes = Vec::with_capacity(32);
    for _ in 0..4 {
        bytes.extend_from_slice(
            &RandomState::new()
                .hash_one(std::time::Instant::now())
                .to_le_bytes(),
        );
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(&bytes))
}

/// An answer's body as a failed step shows it: an excerpt, with the secrets of a JSON body (codes,
/// tokens, client secrets) cut by the test bed's one redaction rule, since reports and CI logs
/// keep it.
fn shown_body(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(mut value) => {
            scalekit_wire::redact::redact_json(&mut value);
            mcp_driver::excerpt(value.to_string().as_bytes())
        }
        Err(_) => mcp_driver::excerpt(body),
    }
}

/// A query parameter's value as a failed step shows it: cut when the parameter carries a secret
/// (`code`, tokens).
fn shown_parameter(name: &str, value: &str) -> String {
    if scalekit_wire::redact::is_secret_name(name) {
        scalekit_wire::redact::redact(value)
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_step_shows_no_secret_of_the_answer() {
        let body =
            br#"{"access_token":"eyJhbGciOiJSUzI1NiJ9.payload.signature","token_type":"Bearer"}"#;
        let shown = shown_body(body);
        assert!(!shown.contains("payload.signature"), "{shown}");
        assert!(shown.contains(r#""token_type":"Bearer""#), "{shown}");
        assert_eq!(shown_body(b"not json"), "not json");
        assert_eq!(shown_parameter("error", "access_denied"), "access_denied");
        assert!(!shown_parameter("code", "abcdefghijklmnop").contains("ghijklmnop"));
    }

    #[test]
    fn a_failed_value_check_shows_no_assertion_or_token_of_the_answer() {
        let runner = StepRunner {
            http: reqwest::Client::new(),
            browser: reqwest::Client::new(),
            other_browser: reqwest::Client::new(),
            environment: "http://127.0.0.1:1".to_owned(),
            persona_claims: Value::Null,
            variables: BTreeMap::new(),
            error_page: ErrorPageMatch::Emulator,
            exchanges: Mutex::default(),
        };
        let id_jag = "eyJ0eXAiOiJvYXV0aC1pZC1qYWcrand0In0.payload-of-the-id-jag.signature";
        let answer = Answer {
            status: 200,
            headers: HeaderMap::new(),
            body: json!({ "id_jag": id_jag, "claims": { "iss": "x" } })
                .to_string()
                .into_bytes(),
            location: None,
        };
        let expectation: StepExpectation = toml::from_str(
            r#"
values = { "/id_jag" = "another" }
prefixes = { "/id_jag" = "nope" }
json_absent = ["/id_jag"]
"#,
        )
        .unwrap();
        let problems = runner.check(&answer, &expectation).unwrap();
        assert_eq!(problems.len(), 3, "{problems:?}");
        for problem in &problems {
            assert!(!problem.contains("payload-of-the-id-jag"), "{problem}");
            assert!(problem.contains("eyJ0eX…"), "{problem}");
        }
    }

    #[test]
    fn the_error_page_is_the_emulators_path_or_any_page_naming_an_error_on_a_real_environment() {
        let runner = |error_page| StepRunner {
            http: reqwest::Client::new(),
            browser: reqwest::Client::new(),
            other_browser: reqwest::Client::new(),
            environment: "https://acme.scalekit.test".to_owned(),
            persona_claims: Value::Null,
            variables: BTreeMap::from([
                (
                    "login_endpoint".to_owned(),
                    "https://app.test/login".to_owned(),
                ),
                ("redirect_uri".to_owned(), STEP_REDIRECT_URI.to_owned()),
            ]),
            error_page,
            exchanges: Mutex::default(),
        };
        let redirect = |location: &str| Answer {
            status: 302,
            headers: HeaderMap::new(),
            body: Vec::new(),
            location: Some(Url::parse(location).unwrap()),
        };
        let emulator = runner(ErrorPageMatch::Emulator);
        let scalekit = runner(ErrorPageMatch::AnyOnTheEnvironmentsHost);
        let ours = redirect("https://acme.scalekit.test/error?error=invalid_state");
        let theirs = redirect("https://acme.scalekit.test/ui/error?error=invalid_state");
        let elsewhere = redirect("https://other.test/error?error=invalid_state");
        let no_error = redirect("https://acme.scalekit.test/ui/login");
        for (answer, on_emulator, on_scalekit) in [
            (&ours, true, true),
            (&theirs, false, true),
            (&elsewhere, false, false),
            (&no_error, false, false),
        ] {
            let expected = |yes: bool| yes.then_some(RedirectTarget::ErrorPage);
            assert_eq!(emulator.redirect_target(answer), expected(on_emulator));
            assert_eq!(scalekit.redirect_target(answer), expected(on_scalekit));
        }
    }

    #[test]
    fn hidden_inputs_are_read_from_pages() {
        let html = r#"<input type="hidden" name="consent_id" value="abc-123">"#;
        assert_eq!(hidden_input(html, "consent_id").as_deref(), Some("abc-123"));
        assert_eq!(hidden_input(html, "other"), None);
    }

    #[test]
    fn random_tokens_are_pkce_verifiers_and_differ() {
        let first = random_token();
        assert_eq!(first.len(), 43);
        assert!(
            first
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
        );
        assert_ne!(first, random_token());
    }
}
