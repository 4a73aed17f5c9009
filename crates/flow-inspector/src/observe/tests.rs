//! The steps of `observe`, each on its own.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use scalekit_wire::{Check, Endpoint, ErrorSummary, HopFacts};

use super::*;

fn exchange(served_by: Actor, method: Method, target: &str) -> Exchange {
    Exchange {
        served_by,
        base_url: Arc::from("http://127.0.0.1:8400"),
        seq: 1,
        started_at_ms: 0,
        duration_us: 0,
        method,
        uri: target.parse::<Uri>().unwrap(),
        request_headers: HeaderMap::new(),
        request_body: None,
        status: StatusCode::OK,
        response_headers: HeaderMap::new(),
        response_body: None,
        hop_facts: None,
        error_summary: None,
    }
}

fn with_headers(mut headers: HeaderMap, pairs: &[(&str, &str)]) -> HeaderMap {
    for (name, value) in pairs {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    headers
}

fn token_request(form: &str) -> Exchange {
    let mut exchange = exchange(Actor::Emulator, Method::POST, "//oauth/token");
    exchange.request_headers = with_headers(
        HeaderMap::new(),
        &[("content-type", "application/x-www-form-urlencoded")],
    );
    exchange.request_body = Some(form.as_bytes().to_vec());
    exchange
}

fn json_answer(exchange: &mut Exchange, status: u16, body: &str) {
    exchange.status = StatusCode::from_u16(status).unwrap();
    exchange.response_headers =
        with_headers(HeaderMap::new(), &[("content-type", "application/json")]);
    exchange.response_body = Some(body.as_bytes().to_vec());
}

#[test]
fn parsing_reads_the_path_form_bearer_and_answer_once() {
    let mut exchange = token_request("grant_type=refresh_token&refresh_token=rt_1");
    exchange.request_headers = with_headers(
        exchange.request_headers,
        &[("authorization", "bearer tok_1 ")],
    );
    json_answer(&mut exchange, 200, r#"{"access_token":"at_1"}"#);
    let parsed = Parsed::parse(&exchange);
    assert_eq!(
        parsed.path, "/oauth/token",
        "a leading // reaches the same route"
    );
    assert_eq!(
        parsed.form_value("grant_type").as_deref(),
        Some("refresh_token")
    );
    assert_eq!(parsed.bearer, Some("tok_1"));
    assert!(parsed.authorization);
    assert_eq!(parsed.json_text("access_token").as_deref(), Some("at_1"));
    assert_eq!(parsed.html, None);
}

#[test]
fn the_endpoint_is_the_facts_and_only_without_them_the_route_table() {
    let mut exchange = token_request("grant_type=client_credentials");
    assert_eq!(
        endpoint(&exchange, &Parsed::parse(&exchange)),
        Endpoint::TokenClientCredentials
    );
    exchange.hop_facts = Some(HopFacts {
        endpoint: Endpoint::Revoke,
        failed: None,
    });
    assert_eq!(
        endpoint(&exchange, &Parsed::parse(&exchange)),
        Endpoint::Revoke,
        "the handler knows better than the path"
    );
    assert_eq!(
        infer_endpoint(
            Actor::Emulator,
            &Method::POST,
            "/resources/res_1/oauth/token",
            Some("authorization_code")
        ),
        Endpoint::TokenAuthorizationCode
    );
    assert_eq!(
        infer_endpoint(
            Actor::McpServer,
            &Method::GET,
            "/.well-known/oauth-protected-resource",
            None
        ),
        Endpoint::Other
    );
    assert_eq!(
        infer_endpoint(Actor::YourApp, &Method::POST, "/oauth/token", None),
        Endpoint::Other,
        "Your App's pages check nothing the inspector knows"
    );
}

#[test]
fn the_caller_is_what_the_protocol_says() {
    assert_eq!(
        caller(Actor::Emulator, Endpoint::SubmitUser, "/x"),
        Actor::YourApp
    );
    assert_eq!(
        caller(Actor::Emulator, Endpoint::Other, "/keys"),
        Actor::McpServer
    );
    assert_eq!(
        caller(Actor::Emulator, Endpoint::Consent, "/oauth/consent"),
        Actor::Browser
    );
    assert_eq!(
        caller(Actor::YourApp, Endpoint::Other, "/login"),
        Actor::Browser
    );
}

#[test]
fn an_error_summary_is_the_answers_error_and_a_gateway_code_shows_as_its_number() {
    let mut exchange = exchange(
        Actor::Emulator,
        Method::POST,
        "/api/v1/connections/conn_1/auth-requests/lri_1/user",
    );
    json_answer(
        &mut exchange,
        404,
        r#"{"code":5,"message":"login request not found","details":[]}"#,
    );
    let inferred = summarise_response(&exchange, &Parsed::parse(&exchange));
    exchange.error_summary = Some(ErrorSummary {
        code: "NOT_FOUND".to_owned(),
        message: "login request not found".to_owned(),
        fields: Vec::new(),
    });
    let told = summarise_response(&exchange, &Parsed::parse(&exchange));
    assert_eq!(told, inferred);
    assert_eq!(told.error.as_deref(), Some("5"));
    assert_eq!(
        summarised_error(&ErrorSummary {
            code: "invalid_grant".to_owned(),
            message: String::new(),
            fields: Vec::new(),
        }),
        (Some("invalid_grant".to_owned()), None)
    );
}

#[test]
fn without_a_summary_the_error_is_read_off_the_wire_in_order() {
    let mut page = exchange(
        Actor::Emulator,
        Method::GET,
        "/sso/v1/connections/c/partner:callback",
    );
    page.status = StatusCode::BAD_REQUEST;
    page.response_headers = with_headers(HeaderMap::new(), &[("content-type", "text/html")]);
    page.response_body = Some(
        b"<html><head><title>Sign-in error: browser_session_missing (no &lt;sign-in&gt; cookie)</title>"
            .to_vec(),
    );
    assert_eq!(
        read_error(&Parsed::parse(&page)),
        (
            Some("browser_session_missing".to_owned()),
            Some("no <sign-in> cookie".to_owned())
        )
    );

    let mut redirect = exchange(Actor::Emulator, Method::POST, "/oauth/consent");
    redirect.status = StatusCode::FOUND;
    redirect.response_headers = with_headers(
        HeaderMap::new(),
        &[(
            "location",
            "http://127.0.0.1:9/cb?error=access_denied&error_description=no+thanks",
        )],
    );
    assert_eq!(
        read_error(&Parsed::parse(&redirect)),
        (
            Some("access_denied".to_owned()),
            Some("no thanks".to_owned())
        )
    );

    let mut challenge = exchange(Actor::McpServer, Method::POST, "/mcp");
    challenge.status = StatusCode::UNAUTHORIZED;
    challenge.response_headers = with_headers(
        HeaderMap::new(),
        &[(
            "www-authenticate",
            "Bearer resource_metadata=\"x\", error=\"invalid_token\", error_description=\"expired\"",
        )],
    );
    assert_eq!(
        read_error(&Parsed::parse(&challenge)),
        (Some("invalid_token".to_owned()), Some("expired".to_owned()))
    );
}

#[test]
fn the_checks_follow_the_facts_and_an_mcp_success_without_a_bearer_proves_nothing() {
    let mut exchange = token_request("grant_type=authorization_code&code=c_1");
    json_answer(
        &mut exchange,
        400,
        r#"{"error":"invalid_grant","error_description":"the code was issued to another client"}"#,
    );
    exchange.hop_facts = Some(HopFacts {
        endpoint: Endpoint::TokenAuthorizationCode,
        failed: Some(Check::ResourceMatches),
    });
    let parsed = Parsed::parse(&exchange);
    let response = summarise_response(&exchange, &parsed);
    let checks = hop_checks(
        Endpoint::TokenAuthorizationCode,
        &exchange,
        &parsed,
        &response,
    );
    assert_eq!(
        checks.last().map(|check| (check.check, check.passed)),
        Some((Check::ResourceMatches, false))
    );

    let mut query_token = exchange_of_mcp("/mcp?access_token=at_1");
    query_token.hop_facts = Some(HopFacts {
        endpoint: Endpoint::Mcp,
        failed: None,
    });
    let parsed = Parsed::parse(&query_token);
    let response = summarise_response(&query_token, &parsed);
    assert!(hop_checks(Endpoint::Mcp, &query_token, &parsed, &response).is_empty());
}

fn exchange_of_mcp(target: &str) -> Exchange {
    let mut exchange = exchange(Actor::McpServer, Method::POST, target);
    exchange.base_url = Arc::from("http://127.0.0.1:8402");
    exchange
}

#[test]
fn an_authorize_redirect_to_the_login_page_opens_a_flow_and_teaches_its_keys() {
    let mut exchange = exchange(
        Actor::Emulator,
        Method::GET,
        "/oauth/authorize?client_id=c1&state=client-state",
    );
    exchange.status = StatusCode::FOUND;
    exchange.response_headers = with_headers(
        HeaderMap::new(),
        &[(
            "location",
            "http://127.0.0.1:8401/login?login_request_id=lri_1&state=st_1",
        )],
    );
    let keys = correlation_keys(
        Actor::Emulator,
        Endpoint::Authorize,
        &Parsed::parse(&exchange),
    );
    assert_eq!(
        keys,
        Keys {
            opens: Some("lri_1".to_owned()),
            client_id: Some("c1".to_owned()),
            finds: Vec::new(),
            learns: vec![
                key(KeyKind::LoginRequest, "lri_1"),
                key(KeyKind::State, "st_1")
            ],
            tokens_issued: false,
        }
    );
}

#[test]
fn a_token_answer_teaches_its_tokens_and_a_bearer_finds_its_flow() {
    let mut exchange = token_request("grant_type=authorization_code&code=c_1");
    json_answer(
        &mut exchange,
        200,
        r#"{"access_token":"at_1","refresh_token":"rt_1"}"#,
    );
    let keys = correlation_keys(
        Actor::Emulator,
        Endpoint::TokenAuthorizationCode,
        &Parsed::parse(&exchange),
    );
    assert_eq!(keys.finds, [key(KeyKind::Code, "c_1")]);
    assert_eq!(
        keys.learns,
        [key(KeyKind::Token, "at_1"), key(KeyKind::Token, "rt_1")]
    );
    assert!(keys.tokens_issued);

    let mut call = exchange_of_mcp("/mcp");
    call.request_headers = with_headers(HeaderMap::new(), &[("authorization", "Bearer at_1")]);
    let keys = correlation_keys(Actor::McpServer, Endpoint::Mcp, &Parsed::parse(&call));
    assert_eq!(keys.finds, [key(KeyKind::Token, "at_1")]);
}

#[test]
fn discovery_registration_authorize_and_the_first_401_wait_for_the_next_flow() {
    assert!(comes_before_flows(
        Actor::McpServer,
        Endpoint::Mcp,
        "/mcp",
        false
    ));
    assert!(!comes_before_flows(
        Actor::McpServer,
        Endpoint::Mcp,
        "/mcp",
        true
    ));
    assert!(comes_before_flows(
        Actor::Emulator,
        Endpoint::Register,
        "/api/v1/resources/res_1/clients:register",
        false
    ));
    assert!(comes_before_flows(
        Actor::Emulator,
        Endpoint::Other,
        "/resources/res_1/.well-known/oauth-authorization-server",
        false
    ));
    assert!(!comes_before_flows(
        Actor::Emulator,
        Endpoint::Other,
        "/keys",
        false
    ));
    assert!(!comes_before_flows(
        Actor::YourApp,
        Endpoint::Other,
        "/login",
        false
    ));
}

#[test]
fn the_redacted_hop_keeps_no_secret_and_names_the_call() {
    let mut exchange = token_request(
        "grant_type=authorization_code&code=code_0123456789&code_verifier=verifier_0123456789",
    );
    exchange.uri = "/oauth/token?state=state_0123456789".parse().unwrap();
    exchange.request_headers = with_headers(
        exchange.request_headers,
        &[
            ("authorization", "Basic c2tjXzE6c2VjcmV0"),
            ("user-agent", "noise"),
        ],
    );
    json_answer(
        &mut exchange,
        200,
        r#"{"access_token":"eyJhbGciOi.payload.sig","token_type":"Bearer"}"#,
    );
    let parsed = Parsed::parse(&exchange);
    let response = summarise_response(&exchange, &parsed);
    let hop = redacted_hop(
        &exchange,
        parsed,
        Endpoint::TokenAuthorizationCode,
        Actor::McpClient,
        response,
        Vec::new(),
    );
    assert_eq!(hop.url, "http://127.0.0.1:8400/oauth/token?state=state_…");
    assert_eq!(hop.summary, "POST /oauth/token (authorization_code)");
    assert_eq!(
        hop.request_body.as_deref(),
        Some("grant_type=authorization_code&code=code_0…&code_verifier=verifi…")
    );
    assert_eq!(
        hop.request_headers
            .iter()
            .map(|header| (header.name.as_str(), header.value.as_str()))
            .collect::<Vec<_>>(),
        [
            ("content-type", "application/x-www-form-urlencoded"),
            ("authorization", "Basic c2tjXz…")
        ]
    );
    assert_eq!(
        hop.response.body.as_deref(),
        Some(r#"{"access_token":"eyJhbG…","token_type":"Bearer"}"#)
    );
}
