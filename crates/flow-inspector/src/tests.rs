//! Correlation, redaction and bounds of the inspector, on hand-made exchanges.

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};

use super::*;

const ENV: &str = "http://127.0.0.1:8400";
const APP: &str = "http://127.0.0.1:8401";
const MCP: &str = "http://127.0.0.1:8402";
const CODE: &str = "code_0123456789abcdefghij";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const ACCESS: &str = "eyJhbGciOiJSUzI1NiJ9.access-payload.signature";
const REFRESH: &str = "rt_0123456789abcdefghijklmnop";
const MANAGEMENT_SECRET: &str = "test_sk_testbed_dev_secret_not_for_production";
const EMULATOR_STATE: &str = "st_emulator_state_0123456789";
const CONSENT: &str = "cns_0123456789abcdefghij";

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

/// A request and its answer, built up by the tests.
struct Call {
    exchange: Exchange,
}

impl Call {
    fn new(served_by: Actor, seq: u64, at_ms: u64, method: Method, target: &str) -> Call {
        let base_url = match served_by {
            Actor::YourApp => APP,
            Actor::McpServer => MCP,
            _ => ENV,
        };
        Call {
            exchange: Exchange {
                served_by,
                base_url: Arc::from(base_url),
                seq,
                started_at_ms: at_ms,
                duration_us: 1500,
                method,
                uri: target.parse::<Uri>().unwrap(),
                request_headers: HeaderMap::new(),
                request_body: None,
                status: StatusCode::OK,
                response_headers: HeaderMap::new(),
                response_body: None,
                hop_facts: None,
                error_summary: None,
            },
        }
    }

    fn form(mut self, body: &str) -> Call {
        self.exchange.request_headers.insert(
            "content-type",
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        self.exchange.request_body = Some(body.as_bytes().to_vec());
        self
    }

    fn request_headers(mut self, pairs: &[(&str, &str)]) -> Call {
        self.exchange.request_headers.extend(headers(pairs));
        self
    }

    fn json(mut self, body: &str) -> Call {
        self.exchange
            .request_headers
            .insert("content-type", HeaderValue::from_static("application/json"));
        self.exchange.request_body = Some(body.as_bytes().to_vec());
        self
    }

    fn status(mut self, status: u16) -> Call {
        self.exchange.status = StatusCode::from_u16(status).unwrap();
        self
    }

    fn redirect(mut self, location: &str) -> Call {
        self.exchange.status = StatusCode::FOUND;
        self.exchange
            .response_headers
            .insert("location", HeaderValue::from_str(location).unwrap());
        self
    }

    fn answer(mut self, content_type: &str, body: &str) -> Call {
        self.exchange
            .response_headers
            .insert("content-type", HeaderValue::from_str(content_type).unwrap());
        self.exchange.response_body = Some(body.as_bytes().to_vec());
        self
    }

    fn response_headers(mut self, pairs: &[(&str, &str)]) -> Call {
        self.exchange.response_headers.extend(headers(pairs));
        self
    }

    /// Attaches the facts a handler would, when `on` (a whole flow runs with and without).
    fn facts(mut self, on: bool, endpoint: Endpoint, failed: Option<Check>) -> Call {
        if on {
            self.exchange.hop_facts = Some(HopFacts { endpoint, failed });
        }
        self
    }

    fn error_summary(mut self, code: &str, message: &str) -> Call {
        self.exchange.error_summary = Some(ErrorSummary {
            code: code.to_owned(),
            message: message.to_owned(),
            fields: Vec::new(),
        });
        self
    }

    fn record(self, inspector: &Inspector) {
        inspector.record(self.exchange);
    }
}

/// A whole flow the way the stack plays it, starting at `at_ms` with arrival numbers from
/// `seq`; the login request id, client and code are made unique by `n`. No answer carries facts.
fn whole_flow(inspector: &Inspector, n: u64, at_ms: u64) {
    whole_flow_with(inspector, n, at_ms, false);
}

/// The same, with the facts the emulator's and the MCP server's handlers attach when `facts`
/// (Your App attaches none).
fn whole_flow_with(inspector: &Inspector, n: u64, at_ms: u64, facts: bool) {
    let seq = n * 100;
    let lri = format!("lri_{n}");
    let client = format!("client_{n}");
    let code = format!("{CODE}{n}");
    let access = format!("{ACCESS}{n}");
    let refresh = format!("{REFRESH}{n}");
    Call::new(Actor::McpServer, seq + 1, at_ms, Method::POST, "/mcp")
        .json(r#"{"jsonrpc":"2.0","id":1,"method":"initialize"}"#)
        .status(401)
        .response_headers(&[(
            "www-authenticate",
            "Bearer resource_metadata=\"http://127.0.0.1:8402/.well-known/oauth-protected-resource/mcp\"",
        )])
        .facts(facts, Endpoint::Mcp, Some(Check::ChallengedWithoutBearer))
        .record(inspector);
    Call::new(
        Actor::McpServer,
        seq + 2,
        at_ms + 1,
        Method::GET,
        "/.well-known/oauth-protected-resource/mcp",
    )
    .answer(
        "application/json",
        r#"{"resource":"http://127.0.0.1:8402/mcp"}"#,
    )
    .facts(facts, Endpoint::Other, None)
    .record(inspector);
    Call::new(
        Actor::Emulator,
        seq + 3,
        at_ms + 2,
        Method::GET,
        "/.well-known/oauth-authorization-server/resources/res_1",
    )
    .answer("application/json", r#"{"issuer":"x"}"#)
    .facts(facts, Endpoint::Other, None)
    .record(inspector);
    Call::new(
        Actor::Emulator,
        seq + 4,
        at_ms + 3,
        Method::POST,
        "/api/v1/resources/res_1/clients:register",
    )
    .json(r#"{"client_name":"driver","redirect_uris":["http://127.0.0.1:9/callback"]}"#)
    .status(201)
    .answer(
        "application/json",
        &format!(r#"{{"client_id":"{client}","client_name":"driver"}}"#),
    )
    .facts(facts, Endpoint::Register, None)
    .record(inspector);
    Call::new(
        Actor::Emulator,
        seq + 5,
        at_ms + 4,
        Method::GET,
        &format!(
            "/oauth/authorize?response_type=code&client_id={client}&state=client-state-{n}\
             &code_challenge=abc&code_challenge_method=S256"
        ),
    )
    .redirect(&format!(
        "{APP}/login?login_request_id={lri}&state={EMULATOR_STATE}{n}"
    ))
    .facts(facts, Endpoint::Authorize, None)
    .record(inspector);
    // Your App's page is recorded after the calls it makes (it answers last), with a lower
    // arrival number.
    let login_seq = seq + 6;
    Call::new(
        Actor::Emulator,
        seq + 7,
        at_ms + 6,
        Method::POST,
        "/oauth/token",
    )
    .form(&format!(
        "grant_type=client_credentials&client_id=skc_1&client_secret={MANAGEMENT_SECRET}"
    ))
    .answer(
        "application/json",
        r#"{"access_token":"eyJmanagement.token.sig","token_type":"Bearer","expires_in":86399}"#,
    )
    .facts(facts, Endpoint::TokenClientCredentials, None)
    .record(inspector);
    Call::new(
        Actor::Emulator,
        seq + 8,
        at_ms + 7,
        Method::POST,
        &format!("/api/v1/connections/conn_1/auth-requests/{lri}/user"),
    )
    .request_headers(&[("authorization", "Bearer eyJmanagement.token.sig")])
    .json(r#"{"sub":"ada-1","email":"ada@example.com"}"#)
    .answer("application/json", r#"{"auth_request_id":"req_1"}"#)
    .facts(facts, Endpoint::SubmitUser, None)
    .record(inspector);
    Call::new(
        Actor::YourApp,
        login_seq,
        at_ms + 5,
        Method::POST,
        "/login",
    )
    .form(&format!(
        "login_request_id={lri}&state={EMULATOR_STATE}{n}&username=ada&password=correct-horse-battery"
    ))
    .redirect(&format!(
        "{ENV}/sso/v1/connections/conn_1/partner:callback?state={EMULATOR_STATE}{n}"
    ))
    .record(inspector);
    Call::new(
        Actor::Emulator,
        seq + 9,
        at_ms + 8,
        Method::GET,
        &format!("/sso/v1/connections/conn_1/partner:callback?state={EMULATOR_STATE}{n}"),
    )
    .redirect(&format!(
        "http://127.0.0.1:9/callback?code={code}&state=client-state-{n}&iss=x"
    ))
    .facts(facts, Endpoint::PartnerCallback, None)
    .record(inspector);
    Call::new(
        Actor::Emulator,
        seq + 10,
        at_ms + 9,
        Method::POST,
        "/oauth/token",
    )
    .form(&format!(
        "grant_type=authorization_code&code={code}&code_verifier={VERIFIER}&client_id={client}"
    ))
    .answer(
        "application/json",
        &format!(
            r#"{{"access_token":"{access}","refresh_token":"{refresh}","token_type":"Bearer"}}"#
        ),
    )
    .facts(facts, Endpoint::TokenAuthorizationCode, None)
    .record(inspector);
    Call::new(Actor::McpServer, seq + 11, at_ms + 10, Method::POST, "/mcp")
        .request_headers(&[("authorization", &format!("Bearer {access}"))])
        .json(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#)
        .answer("text/event-stream", "")
        .facts(facts, Endpoint::Mcp, None)
        .record(inspector);
}

fn hop_line(hop: &HopView) -> (Actor, Actor, &str, u16, Option<MatchedBy>) {
    (
        hop.hop.from,
        hop.hop.to,
        hop.hop.summary.as_str(),
        hop.hop.status,
        hop.hop.matched_by,
    )
}

#[test]
fn a_whole_flow_is_tied_together_by_the_keys_it_teaches() {
    let inspector = Inspector::new();
    whole_flow(&inspector, 1, 1_000);

    let flows = inspector.flows();
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].id, "lri_1");
    assert_eq!(flows[0].client_id.as_deref(), Some("client_1"));
    assert!(flows[0].tokens_issued);
    assert_eq!(
        flows[0].failed_checks, 0,
        "the first 401 is the challenge, not a failure"
    );
    let flow = inspector.flow("lri_1").unwrap();
    let lines: Vec<_> = flow.hop_list.iter().map(hop_line).collect();
    use Actor::*;
    assert_eq!(
        lines,
        [
            (
                McpClient,
                McpServer,
                "POST /mcp initialize",
                401,
                Some(MatchedBy::Time)
            ),
            (
                McpClient,
                McpServer,
                "GET /.well-known/oauth-protected-resource/mcp",
                200,
                Some(MatchedBy::Time)
            ),
            (
                McpClient,
                Emulator,
                "GET /.well-known/oauth-authorization-server/resources/res_1",
                200,
                Some(MatchedBy::Time)
            ),
            (
                McpClient,
                Emulator,
                "POST /api/v1/resources/res_1/clients:register",
                201,
                Some(MatchedBy::Client)
            ),
            (
                Browser,
                Emulator,
                "GET /oauth/authorize",
                302,
                Some(MatchedBy::Key)
            ),
            (Browser, YourApp, "POST /login", 302, Some(MatchedBy::Key)),
            (
                YourApp,
                Emulator,
                "POST /oauth/token (client_credentials)",
                200,
                Some(MatchedBy::Time)
            ),
            (
                YourApp,
                Emulator,
                "POST /api/v1/connections/conn_1/auth-requests/lri_1/user",
                200,
                Some(MatchedBy::Key)
            ),
            (
                Browser,
                Emulator,
                "GET /sso/v1/connections/conn_1/partner:callback",
                302,
                Some(MatchedBy::Key)
            ),
            (
                McpClient,
                Emulator,
                "POST /oauth/token (authorization_code)",
                200,
                Some(MatchedBy::Key)
            ),
            (
                McpClient,
                McpServer,
                "POST /mcp tools/call",
                200,
                Some(MatchedBy::Key)
            ),
        ]
    );
    assert!(inspector.other_requests().is_empty());
}

#[test]
fn no_secret_of_the_flow_reaches_its_json() {
    let inspector = Inspector::new();
    whole_flow(&inspector, 1, 1_000);
    let json = serde_json::to_string(&inspector.flow("lri_1").unwrap()).unwrap();
    for secret in [
        "code_0123456789abcdefghij1",
        VERIFIER,
        "eyJhbGciOiJSUzI1NiJ9.access-payload.signature1",
        "access-payload",
        "rt_0123456789abcdefghijklmnop1",
        MANAGEMENT_SECRET,
        "correct-horse-battery",
        "st_emulator_state_01234567891",
        "eyJmanagement.token.sig",
    ] {
        assert!(!json.contains(secret), "{secret} is in {json}");
    }
    assert!(
        json.contains("code=<redacted>"),
        "curl placeholders: {json}"
    );
    assert!(json.contains("password=correc…"), "{json}");
}

#[test]
fn the_token_exchange_proves_its_checks_and_the_first_401_is_a_challenge_not_a_failure() {
    let inspector = Inspector::new();
    whole_flow(&inspector, 1, 1_000);
    let flow = inspector.flow("lri_1").unwrap();
    let exchange = flow
        .hop_list
        .iter()
        .find(|hop| hop.hop.summary == "POST /oauth/token (authorization_code)")
        .unwrap();
    assert_eq!(exchange.hop.checks.len(), 5);
    assert!(exchange.hop.checks.iter().all(|check| check.passed));
    let challenge = &flow.hop_list[0].hop;
    assert_eq!(
        challenge.checks,
        [CheckOutcome {
            check: Check::ChallengedWithoutBearer,
            passed: true,
            detail: Some(
                "no bearer token: the 401 challenge points to the protected-resource metadata"
                    .to_owned()
            ),
        }]
    );
    let metadata = &flow.hop_list[1].hop;
    assert!(metadata.checks.is_empty());
}

#[test]
fn a_failed_exchange_names_the_failed_check_and_stays_in_its_flow() {
    let inspector = Inspector::new();
    whole_flow(&inspector, 1, 1_000);
    Call::new(Actor::Emulator, 500, 1_020, Method::POST, "/oauth/token")
        .form(&format!(
            "grant_type=authorization_code&code={CODE}1&code_verifier=wrong&client_id=client_1"
        ))
        .status(400)
        .answer(
            "application/json",
            r#"{"error":"invalid_grant","error_description":"the authorization code was already used"}"#,
        )
        .record(&inspector);
    let flow = inspector.flow("lri_1").unwrap();
    let last = &flow.hop_list.last().unwrap().hop;
    assert_eq!(last.status, 400);
    assert_eq!(last.response.error.as_deref(), Some("invalid_grant"));
    assert_eq!(
        last.checks,
        [CheckOutcome {
            check: Check::CodeSingleUseAndUnexpired,
            passed: false,
            detail: Some("invalid_grant: the authorization code was already used".to_owned()),
        }]
    );
    assert_eq!(flow.summary.failed_checks, 1);
}

#[test]
fn keyless_hops_long_before_a_flow_and_unknown_keys_stay_other_requests() {
    let inspector = Inspector::new();
    Call::new(
        Actor::Emulator,
        1,
        0,
        Method::GET,
        "/.well-known/oauth-authorization-server",
    )
    .answer("application/json", "{}")
    .record(&inspector);
    Call::new(Actor::Emulator, 2, 10, Method::POST, "/oauth/token")
        .form("grant_type=authorization_code&code=unknown-code-0123")
        .status(400)
        .answer(
            "application/json",
            r#"{"error":"invalid_grant","error_description":"the authorization code is invalid or expired"}"#,
        )
        .record(&inspector);
    whole_flow(&inspector, 1, 60_000);
    let other = inspector.other_requests();
    let summaries: Vec<&str> = other.iter().map(|hop| hop.hop.summary.as_str()).collect();
    assert_eq!(
        summaries,
        [
            "POST /oauth/token (authorization_code)",
            "GET /.well-known/oauth-authorization-server"
        ]
    );
    assert_eq!(other[0].hop.matched_by, None);
    assert_eq!(inspector.flow("lri_1").unwrap().hop_list.len(), 11);
}

#[test]
fn another_clients_registration_waits_for_its_own_flow() {
    let inspector = Inspector::new();
    Call::new(
        Actor::Emulator,
        1,
        0,
        Method::POST,
        "/api/v1/resources/res_1/clients:register",
    )
    .json("{}")
    .status(201)
    .answer("application/json", r#"{"client_id":"someone_else"}"#)
    .record(&inspector);
    whole_flow(&inspector, 1, 100);
    let other = inspector.other_requests();
    assert_eq!(other.len(), 1);
    assert_eq!(
        other[0].hop.summary,
        "POST /api/v1/resources/res_1/clients:register"
    );
}

#[test]
fn the_consent_pages_id_ties_the_decision_to_the_flow() {
    let inspector = Inspector::new();
    Call::new(
        Actor::Emulator,
        1,
        0,
        Method::GET,
        "/oauth/authorize?client_id=c1",
    )
    .redirect(&format!("{APP}/login?login_request_id=lri_7&state=s7"))
    .record(&inspector);
    Call::new(
        Actor::Emulator,
        2,
        1,
        Method::GET,
        "/sso/v1/connections/conn_1/partner:callback?state=s7",
    )
    .answer(
        "text/html; charset=utf-8",
        &format!(
            "<html><head><title>Authorize c1</title></head><body><form>\
             <input type=\"hidden\" name=\"consent_id\" value=\"{CONSENT}\"></form></body></html>"
        ),
    )
    .record(&inspector);
    Call::new(Actor::Emulator, 3, 2, Method::POST, "/oauth/consent")
        .form(&format!("consent_id={CONSENT}&decision=deny"))
        .redirect("http://127.0.0.1:9/callback?error=access_denied&error_description=the+user+denied+access")
        .record(&inspector);
    let flow = inspector.flow("lri_7").unwrap();
    assert_eq!(flow.hop_list.len(), 3);
    let callback = &flow.hop_list[1].hop;
    assert_eq!(callback.response.title.as_deref(), Some("Authorize c1"));
    let decision = &flow.hop_list[2].hop;
    assert_eq!(decision.response.error.as_deref(), Some("access_denied"));
    assert_eq!(
        decision.checks,
        [
            CheckOutcome {
                check: Check::OriginAllowed,
                passed: true,
                detail: None,
            },
            CheckOutcome {
                check: Check::ConsentRequestValid,
                passed: true,
                detail: None,
            },
            CheckOutcome {
                check: Check::BrowserMatches,
                passed: true,
                detail: None,
            },
            CheckOutcome {
                check: Check::PersonAllowedAccess,
                passed: false,
                detail: Some("access_denied: the user denied access".to_owned()),
            }
        ]
    );
}

#[test]
fn the_hosted_error_page_title_gives_the_error() {
    let inspector = Inspector::new();
    Call::new(
        Actor::Emulator,
        1,
        0,
        Method::GET,
        "/oauth/authorize?client_id=c1",
    )
    .redirect(&format!("{APP}/login?login_request_id=lri_8&state=s8"))
    .record(&inspector);
    Call::new(
        Actor::Emulator,
        2,
        1,
        Method::GET,
        "/sso/v1/connections/conn_1/partner:callback?state=s8",
    )
    .status(400)
    .answer(
        "text/html; charset=utf-8",
        "<title>Sign-in error: browser_session_missing (the request carries no sign-in cookie)</title>",
    )
    .record(&inspector);
    let flow = inspector.flow("lri_8").unwrap();
    let callback = &flow.hop_list[1].hop;
    assert_eq!(
        callback.response.error.as_deref(),
        Some("browser_session_missing")
    );
    assert_eq!(
        callback.response.error_description.as_deref(),
        Some("the request carries no sign-in cookie")
    );
    assert_eq!(
        callback
            .checks
            .iter()
            .find(|check| !check.passed)
            .map(|check| check.check),
        Some(Check::BrowserMatches)
    );
}

/// The partner callback's `invalid_state` is a redirect to the hosted error page: without facts,
/// its error is read off the `Location`, and the page the browser then loads joins the flow as
/// the browser's hop.
#[test]
fn a_redirect_to_the_hosted_error_page_gives_the_error_and_the_page_joins_the_flow() {
    let inspector = Inspector::new();
    Call::new(
        Actor::Emulator,
        1,
        0,
        Method::GET,
        "/oauth/authorize?client_id=c1",
    )
    .redirect(&format!("{APP}/login?login_request_id=lri_8&state=s8"))
    .record(&inspector);
    let error_page = "/error?error=invalid_state&error_description=no+user+was+submitted+for+this+sign-in+request";
    Call::new(
        Actor::Emulator,
        2,
        1,
        Method::GET,
        "/sso/v1/connections/conn_1/partner:callback?state=s8",
    )
    .redirect(&format!("{ENV}{error_page}"))
    .record(&inspector);
    Call::new(Actor::Emulator, 3, 2, Method::GET, error_page)
        .status(400)
        .answer(
            "text/html; charset=utf-8",
            "<title>Sign-in error: invalid_state (no user was submitted for this sign-in request)</title>",
        )
        .record(&inspector);
    let flow = inspector.flow("lri_8").unwrap();
    let callback = &flow.hop_list[1].hop;
    assert_eq!(callback.response.error.as_deref(), Some("invalid_state"));
    assert_eq!(
        callback.response.error_description.as_deref(),
        Some("no user was submitted for this sign-in request")
    );
    assert_eq!(
        callback
            .checks
            .last()
            .map(|check| (check.name(), check.passed)),
        Some(("user posted before the callback", false))
    );
    let page = &flow.hop_list[2].hop;
    assert_eq!(page.from, Actor::Browser);
    assert_eq!(page.response.error.as_deref(), Some("invalid_state"));
    assert!(page.checks.is_empty(), "{:?}", page.checks);
}

#[test]
fn memory_is_bounded_and_evicted_flows_take_their_keys_along() {
    let inspector = Inspector::new();
    for n in 1..=(MAX_FLOWS as u64 + 1) {
        whole_flow(&inspector, n, n * 100_000);
    }
    let flows = inspector.flows();
    assert_eq!(flows.len(), MAX_FLOWS);
    assert_eq!(flows[0].id, format!("lri_{}", MAX_FLOWS + 1));
    assert!(inspector.flow("lri_1").is_none());
    assert!(
        inspector.recorded().index.len() <= MAX_FLOWS * MAX_KEYS_PER_FLOW,
        "the index shrinks with the flows"
    );
    // The evicted flow's access token leads nowhere now.
    Call::new(Actor::McpServer, 99_999, 999_999_999, Method::POST, "/mcp")
        .request_headers(&[("authorization", &format!("Bearer {ACCESS}1"))])
        .record(&inspector);
    assert_eq!(inspector.other_requests().len(), 1);

    for seq in 0..(MAX_HOPS as u64 + 10) {
        Call::new(
            Actor::McpServer,
            1_000_000 + seq,
            999_999_999,
            Method::POST,
            "/mcp",
        )
        .request_headers(&[("authorization", &format!("Bearer {ACCESS}2"))])
        .record(&inspector);
    }
    let flow = inspector.flow("lri_2").unwrap();
    assert_eq!(flow.hop_list.len(), MAX_HOPS);
    assert_eq!(flow.summary.hops_dropped, 21);
    for _ in 0..(MAX_OTHER + 5) {
        Call::new(Actor::Emulator, 5, 0, Method::GET, "/keys").record(&inspector);
    }
    assert_eq!(inspector.other_requests().len(), MAX_OTHER);
}

#[test]
fn subscribers_hear_of_each_changed_flow_and_of_a_reset() {
    let inspector = Inspector::new();
    let mut updates = inspector.subscribe();
    Call::new(
        Actor::Emulator,
        1,
        0,
        Method::GET,
        "/oauth/authorize?client_id=c1",
    )
    .redirect(&format!("{APP}/login?login_request_id=lri_9&state=s9"))
    .record(&inspector);
    assert_eq!(
        updates.try_recv().unwrap(),
        Update {
            flow: Some("lri_9".to_owned())
        }
    );
    inspector.clear();
    assert_eq!(updates.try_recv().unwrap(), Update { flow: None });
    assert!(inspector.flows().is_empty());
}

#[test]
fn queued_exchanges_are_processed_in_order_when_somebody_reads() {
    let inspector = Inspector::new();
    whole_flow(&inspector, 1, 1_000);
    for seq in 0..3 {
        Call::new(
            Actor::Emulator,
            900 + seq,
            999_999_999,
            Method::GET,
            "/keys",
        )
        .record(&inspector);
    }
    assert_eq!(inspector.pending_len(), 14, "recording only queues");
    assert!(inspector.recorded().flows.is_empty());
    assert!(inspector.recorded().other.is_empty());

    // The token request only finds its flow if the authorize answer was filed before it.
    let flows = inspector.flows();
    assert_eq!(inspector.pending_len(), 0);
    assert_eq!(flows.len(), 1);
    assert!(flows[0].tokens_issued);
    assert_eq!(inspector.flow("lri_1").unwrap().hop_list.len(), 11);
    let other: Vec<u64> = inspector
        .other_requests()
        .iter()
        .map(|hop| hop.hop.seq)
        .collect();
    assert_eq!(other, [902, 901, 900], "newest first, as recorded");

    Call::new(Actor::Emulator, 903, 999_999_999, Method::GET, "/keys").record(&inspector);
    inspector.clear();
    assert_eq!(inspector.pending_len(), 0, "a reset drops the queue too");
    assert!(inspector.other_requests().is_empty());
}

#[test]
fn a_full_queue_processes_its_oldest_exchanges_instead_of_dropping_them() {
    let inspector = Inspector::new();
    whole_flow(&inspector, 1, 1_000);
    for seq in 0..MAX_PENDING as u64 {
        Call::new(
            Actor::Emulator,
            10_000 + seq,
            999_999_999,
            Method::GET,
            "/keys",
        )
        .record(&inspector);
    }
    assert_eq!(inspector.pending_len(), MAX_PENDING);
    {
        let recorded = inspector.recorded();
        assert_eq!(recorded.flows.len(), 1, "the oldest were processed");
        assert_eq!(recorded.flows[0].hops.len(), 11);
        assert!(recorded.flows[0].tokens_issued);
        assert!(recorded.other.is_empty(), "the rest still waits");
    }
    assert_eq!(inspector.other_requests().len(), MAX_PENDING.min(MAX_OTHER));
    assert_eq!(inspector.pending_len(), 0);

    // Bounded by bytes as well: 64 KiB bodies fill 256 KiB long before 64 exchanges.
    let body = "a".repeat(64 * 1024);
    for seq in 0..100 {
        Call::new(
            Actor::Emulator,
            20_000 + seq,
            999_999_999,
            Method::POST,
            "/keys",
        )
        .json(&body)
        .record(&inspector);
    }
    let pending = inspector.pending_len();
    assert!(pending < 100, "{pending} exchanges wait");
    assert!(inspector.pending().bytes <= MAX_PENDING_BYTES);
    let processed: Vec<u64> = inspector
        .recorded()
        .other
        .iter()
        .map(|waiting| waiting.hop.seq)
        .filter(|seq| *seq >= 20_000)
        .collect();
    let expected: Vec<u64> = (20_000..20_000 + (100 - pending as u64)).collect();
    assert_eq!(processed, expected, "the oldest, in order");
    assert_eq!(inspector.other_requests()[0].hop.seq, 20_099);
}

#[test]
fn a_live_subscriber_hears_of_every_exchange_without_a_read() {
    let inspector = Inspector::new();
    // Queued while nobody looked.
    Call::new(Actor::Emulator, 1, 0, Method::GET, "/keys").record(&inspector);
    let mut updates = inspector.subscribe();
    Call::new(
        Actor::Emulator,
        2,
        0,
        Method::GET,
        "/oauth/authorize?client_id=c1",
    )
    .redirect(&format!("{APP}/login?login_request_id=lri_9&state=s9"))
    .record(&inspector);
    assert_eq!(updates.try_recv().unwrap(), Update { flow: None });
    assert_eq!(
        updates.try_recv().unwrap(),
        Update {
            flow: Some("lri_9".to_owned())
        }
    );
    assert_eq!(inspector.pending_len(), 0);
    assert_eq!(inspector.recorded().flows.len(), 1);
    Call::new(
        Actor::YourApp,
        3,
        10,
        Method::GET,
        "/login?login_request_id=lri_9",
    )
    .record(&inspector);
    assert_eq!(
        updates.try_recv().unwrap(),
        Update {
            flow: Some("lri_9".to_owned())
        }
    );
    assert_eq!(inspector.recorded().flows[0].hops.len(), 2);

    // Once the page is closed, recording queues again.
    drop(updates);
    Call::new(Actor::Emulator, 4, 0, Method::GET, "/keys").record(&inspector);
    assert_eq!(inspector.pending_len(), 1);
}

#[test]
fn a_whole_flow_whose_answers_carry_facts_is_recorded_as_one_without() {
    let inferred = Inspector::new();
    whole_flow(&inferred, 1, 1_000);
    let told = Inspector::new();
    whole_flow_with(&told, 1, 1_000, true);
    let json = |inspector: &Inspector| serde_json::to_value(inspector.flow("lri_1")).unwrap();
    assert_eq!(json(&told), json(&inferred));
    assert_eq!(
        serde_json::to_value(told.flows()).unwrap(),
        serde_json::to_value(inferred.flows()).unwrap()
    );
}

#[test]
fn a_hop_with_facts_shows_their_failed_check_whatever_its_description_says() {
    let inspector = Inspector::new();
    whole_flow_with(&inspector, 1, 1_000, true);
    let description = "the code was issued to another client";
    Call::new(Actor::Emulator, 500, 1_020, Method::POST, "/oauth/token")
        .form(&format!(
            "grant_type=authorization_code&code={CODE}1&code_verifier={VERIFIER}&client_id=client_1"
        ))
        .status(400)
        .answer(
            "application/json",
            &format!(r#"{{"error":"invalid_grant","error_description":"{description}"}}"#),
        )
        .error_summary("invalid_grant", description)
        .facts(
            true,
            Endpoint::TokenAuthorizationCode,
            Some(Check::ResourceMatches),
        )
        .record(&inspector);
    let flow = inspector.flow("lri_1").unwrap();
    let last = &flow.hop_list.last().unwrap().hop;
    assert_eq!(
        last.checks
            .iter()
            .map(|check| (check.name(), check.passed))
            .collect::<Vec<_>>(),
        [
            ("code single-use and unexpired", true),
            ("client matches", true),
            ("redirect_uri matches", true),
            ("resource matches", false),
        ]
    );
    assert_eq!(
        last.checks.last().and_then(|check| check.detail.as_deref()),
        Some("invalid_grant: the code was issued to another client")
    );
}

#[test]
fn without_facts_the_failed_check_is_still_inferred_from_the_answer() {
    let inspector = Inspector::new();
    whole_flow(&inspector, 1, 1_000);
    Call::new(Actor::Emulator, 500, 1_020, Method::POST, "/oauth/token")
        .form(&format!(
            "grant_type=authorization_code&code={CODE}1&code_verifier={VERIFIER}&client_id=client_1"
        ))
        .status(400)
        .answer(
            "application/json",
            r#"{"error":"invalid_grant","error_description":"the code was issued to another client"}"#,
        )
        .record(&inspector);
    let flow = inspector.flow("lri_1").unwrap();
    let last = &flow.hop_list.last().unwrap().hop;
    assert_eq!(
        last.checks.last().map(|check| (check.check, check.passed)),
        Some((Check::ClientMatches, false))
    );
}

#[test]
fn an_error_summary_gives_the_error_whatever_the_redirect_to_the_error_page_says() {
    let inspector = Inspector::new();
    Call::new(
        Actor::Emulator,
        1,
        0,
        Method::GET,
        "/oauth/authorize?client_id=c1",
    )
    .redirect(&format!("{APP}/login?login_request_id=lri_8&state=s8"))
    .record(&inspector);
    Call::new(
        Actor::Emulator,
        2,
        1,
        Method::GET,
        "/sso/v1/connections/conn_1/partner:callback?state=s8",
    )
    .redirect(&format!(
        "{ENV}/error?error=invalid_state&error_description=no+user+was+submitted"
    ))
    .error_summary(
        "invalid_state",
        "no user was submitted for this sign-in request (yet)",
    )
    .facts(
        true,
        Endpoint::PartnerCallback,
        Some(Check::UserPostedBeforeCallback),
    )
    .record(&inspector);
    let callback = &inspector.flow("lri_8").unwrap().hop_list[1].hop;
    assert_eq!(callback.response.error.as_deref(), Some("invalid_state"));
    assert_eq!(
        callback.response.error_description.as_deref(),
        Some("no user was submitted for this sign-in request (yet)")
    );
    assert!(
        callback
            .response
            .location
            .as_deref()
            .is_some_and(|location| location.contains("/error?error=invalid_state")),
        "the redirect is still shown: {:?}",
        callback.response.location
    );
    assert_eq!(
        callback
            .checks
            .iter()
            .map(|check| (check.check, check.passed))
            .collect::<Vec<_>>(),
        [
            (Check::StateMatches, true),
            (Check::BrowserMatches, true),
            (Check::UserPostedBeforeCallback, false)
        ]
    );
}

/// Cross-app access has no sign-in: the jwt-bearer answer's access token opens a flow (named by
/// its `jti`) that claims the challenge, the discovery and the identity provider's token exchange
/// before it, and the MCP calls with its token join by key. Neither the ID token nor the ID-JAG
/// is shown.
#[test]
fn a_jwt_bearer_answer_opens_a_flow_of_its_own_that_claims_the_token_exchange_before_it() {
    use base64::Engine as _;
    let encode = |json: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
    let access = format!(
        "{}.{}.signature-of-the-access-token",
        encode(r#"{"alg":"RS256"}"#),
        encode(r#"{"jti":"tkn_42","sub":"usr_1"}"#)
    );
    const ID_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.id-token-payload.id-token-signature";
    const ID_JAG: &str = "eyJ0eXAiOiJvYXV0aC1pZC1qYWcrand0In0.id-jag-payload.id-jag-signature";
    let inspector = Inspector::new();
    Call::new(Actor::McpServer, 1, 1_000, Method::POST, "/mcp")
        .status(401)
        .facts(true, Endpoint::Mcp, Some(Check::ChallengedWithoutBearer))
        .record(&inspector);
    Call::new(
        Actor::Emulator,
        2,
        1_010,
        Method::GET,
        "/.well-known/oauth-authorization-server/_idp/acme-idp",
    )
    .facts(true, Endpoint::Other, None)
    .record(&inspector);
    Call::new(Actor::Emulator, 3, 1_020, Method::POST, "/_idp/acme-idp/oauth/token")
        .form(&format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token={ID_TOKEN}&client_id=acme-mcp-agent&client_secret=s3cret-of-the-idp"
        ))
        .answer(
            "application/json",
            &format!(r#"{{"access_token":"{ID_JAG}","token_type":"N_A"}}"#),
        )
        .facts(true, Endpoint::IdpTokenExchange, None)
        .record(&inspector);
    Call::new(Actor::Emulator, 4, 1_030, Method::POST, "/oauth/token")
        .form(&format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={ID_JAG}"
        ))
        .request_headers(&[("authorization", "Basic bTJtXzE6c2VjcmV0")])
        .answer(
            "application/json",
            &format!(r#"{{"access_token":"{access}","token_type":"Bearer"}}"#),
        )
        .facts(true, Endpoint::TokenJwtBearer, None)
        .record(&inspector);
    Call::new(Actor::McpServer, 5, 9_000, Method::POST, "/mcp")
        .request_headers(&[("authorization", &format!("Bearer {access}"))])
        .facts(true, Endpoint::Mcp, None)
        .record(&inspector);

    let flow = inspector
        .flow("xaa tkn_42")
        .expect("the flow the access token opened");
    let lines: Vec<_> = flow.hop_list.iter().map(hop_line).collect();
    assert_eq!(
        lines.iter().map(|line| line.2).collect::<Vec<_>>(),
        [
            "POST /mcp",
            "GET /.well-known/oauth-authorization-server/_idp/acme-idp",
            "POST /_idp/acme-idp/oauth/token (token-exchange)",
            "POST /oauth/token (jwt-bearer)",
            "POST /mcp",
        ]
    );
    assert_eq!(
        lines[4].4,
        Some(MatchedBy::Key),
        "the MCP call joins by its token"
    );
    let bearer = &flow.hop_list[3].hop;
    assert_eq!(bearer.checks.len(), 13);
    assert!(bearer.checks.iter().all(|check| check.passed));
    let json = serde_json::to_string(&flow).unwrap();
    for secret in [
        "id-token-payload",
        "id-jag-payload",
        "s3cret-of-the-idp",
        "signature-of-the-access-token",
    ] {
        assert!(!json.contains(secret), "{secret} is in {json}");
    }
}
