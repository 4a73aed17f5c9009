//! The router in process, for what only the process sees: the facts every answer carries as a
//! response extension ([`HopFacts`]), and that no secret of a flow shows in `Debug`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::response::Response;
use scalekit_wire::{Check, Endpoint, ErrorSummary, HopFacts, Secret};
use serde_json::{Value, json};
use tower::ServiceExt as _;
use url::Url;

use crate::config::{ClientConfig, Config};
use crate::state::AppState;
use crate::types::{PkceVerifier, pkce_s256};
use crate::{KeyRing, ManualClock, SequentialIds, Signer};

const FIXTURE: &str = include_str!("../../../../fixtures/environment.toml");
const SIGNING_KEY: &str = include_str!("../../tests/contract/signing_key.pem");
const API_CLIENT_ID: &str = "skc_81920374650192837";
const API_CLIENT_SECRET: &str = "test_sk_testbed_dev_secret_not_for_production";
const CONNECTION: &str = "conn_81920374650192838";
const SERVER_URL: &str = "http://127.0.0.1:8402/mcp";
const CLIENT_ID: &str = "confidential-test-client";
const CLIENT_SECRET: &str = "confidential-secret-not-for-logs";
const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

/// The emulator's router over a fresh state: the fixtures plus one confidential client, a manual
/// clock, sequential ids and the contract tests' key. Its requests carry the cookies its answers
/// set, as the browser of a sign-in does (Decisions §9).
struct Harness {
    state: AppState,
    router: Router,
    cookies: std::sync::Mutex<Vec<(String, String)>>,
}

impl Harness {
    fn new(edit: impl FnOnce(&mut Config)) -> Harness {
        let mut config = Config::from_toml_str(FIXTURE).expect("the fixtures parse");
        config.clients.push(ClientConfig {
            client_id: CLIENT_ID.to_owned(),
            redirect_uris: vec!["http://127.0.0.1/callback".to_owned()],
            resource: config.resources[0].id.clone(),
            client_secret: Some(Secret::new(CLIENT_SECRET)),
            client_name: None,
        });
        edit(&mut config);
        let environment_url = Url::parse("http://env.test").expect("a URL");
        let keys = KeyRing::new(Signer::from_pem(SIGNING_KEY).expect("the test key"));
        let state = AppState::new(
            config,
            &environment_url,
            keys,
            Arc::new(ManualClock::at(1_800_000_000)),
            Arc::new(SequentialIds::new()),
        );
        let router = crate::router(state.clone());
        Harness {
            state,
            router,
            cookies: std::sync::Mutex::default(),
        }
    }

    async fn send(&self, mut request: Request<Body>) -> Response {
        let cookie = self
            .cookies
            .lock()
            .expect("the cookie jar")
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ");
        if !cookie.is_empty() {
            request
                .headers_mut()
                .insert(COOKIE, cookie.parse().expect("a header"));
        }
        let response = match self.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let mut cookies = self.cookies.lock().expect("the cookie jar");
        for set in response.headers().get_all(SET_COOKIE) {
            let set = set.to_str().expect("an ASCII cookie");
            let (pair, attributes) = set.split_once(';').unwrap_or((set, ""));
            let (name, value) = pair.split_once('=').expect("name=value");
            cookies.retain(|(kept, _)| kept != name);
            if !attributes.contains("Max-Age=0") {
                cookies.push((name.to_owned(), value.to_owned()));
            }
        }
        drop(cookies);
        response
    }

    async fn get(&self, path_and_query: &str) -> Response {
        self.send(request(Method::GET, path_and_query, None, Body::empty()))
            .await
    }

    async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Response {
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut request = request(Method::POST, path, None, Body::from(body));
        request.headers_mut().insert(
            CONTENT_TYPE,
            "application/x-www-form-urlencoded"
                .parse()
                .expect("a header"),
        );
        self.send(request).await
    }

    async fn post_json(&self, path: &str, bearer: Option<&str>, body: &str) -> Response {
        let mut request = request(Method::POST, path, bearer, Body::from(body.to_owned()));
        request
            .headers_mut()
            .insert(CONTENT_TYPE, "application/json".parse().expect("a header"));
        self.send(request).await
    }

    async fn management_token(&self) -> String {
        let response = self
            .post_form(
                "/oauth/token",
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", API_CLIENT_ID),
                    ("client_secret", API_CLIENT_SECRET),
                ],
            )
            .await;
        json_of(response).await["access_token"]
            .as_str()
            .expect("a management token")
            .to_owned()
    }

    /// `/oauth/authorize` for the confidential client with PKCE S256, `extra` replacing
    /// parameters (an empty value drops one).
    fn authorize_uri(extra: &[(&str, &str)]) -> String {
        let challenge = pkce_s256(&PkceVerifier::parse(VERIFIER).expect("a verifier"));
        let mut query: Vec<(&str, &str)> = vec![
            ("response_type", "code"),
            ("client_id", CLIENT_ID),
            ("redirect_uri", REDIRECT_URI),
            ("scope", "openid email offline_access mcp:read"),
            ("state", "client-state-1"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("resource", SERVER_URL),
        ];
        for (name, value) in extra {
            query.retain(|(existing, _)| existing != name);
            if !value.is_empty() {
                query.push((name, value));
            }
        }
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&query)
            .finish();
        format!("/oauth/authorize?{query}")
    }
}

fn request(method: Method, uri: &str, bearer: Option<&str>, body: Body) -> Request<Body> {
    let mut request = Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = uri.parse().expect("a URI");
    if let Some(token) = bearer {
        request.headers_mut().insert(
            AUTHORIZATION,
            format!("Bearer {token}").parse().expect("a header"),
        );
    }
    request
}

async fn json_of(response: Response) -> Value {
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("a body");
    serde_json::from_slice(&bytes).expect("a JSON body")
}

async fn text_of(response: Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("a body");
    String::from_utf8(bytes.to_vec()).expect("UTF-8")
}

/// A parameter of a redirect's `Location`.
fn location_param(response: &Response, name: &str) -> String {
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| Url::parse(value).ok())
        .expect("a Location");
    location
        .query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
        .unwrap_or_else(|| panic!("no {name} in {location}"))
}

fn facts(response: &Response) -> (Endpoint, Option<Check>) {
    let facts = response
        .extensions()
        .get::<HopFacts>()
        .copied()
        .unwrap_or_else(|| panic!("no HopFacts on a {} answer", response.status()));
    (facts.endpoint, facts.failed)
}

#[tokio::test]
async fn every_answer_of_a_flow_carries_the_facts_of_its_endpoint() {
    let harness = Harness::new(|_| {});
    let management = harness.management_token().await;

    let no_challenge = harness
        .get(&Harness::authorize_uri(&[("code_challenge", "")]))
        .await;
    assert_eq!(no_challenge.status(), StatusCode::FOUND);
    assert_eq!(
        facts(&no_challenge),
        (Endpoint::Authorize, Some(Check::PkceChallengePresent))
    );
    let unknown_client = harness
        .get(&Harness::authorize_uri(&[("client_id", "nobody")]))
        .await;
    assert_eq!(
        facts(&unknown_client),
        (Endpoint::Authorize, Some(Check::ClientKnown))
    );
    let login = harness.get(&Harness::authorize_uri(&[])).await;
    assert_eq!(facts(&login), (Endpoint::Authorize, None));
    let login_request = location_param(&login, "login_request_id");
    let login_state = location_param(&login, "state");

    let callback = format!("/sso/v1/connections/{CONNECTION}/partner:callback?state={login_state}");
    let early = harness.get(&callback).await;
    // The redirect to the hosted `invalid_state` page carries the facts the page would have.
    assert_eq!(early.status(), StatusCode::FOUND);
    assert_eq!(
        facts(&early),
        (
            Endpoint::PartnerCallback,
            Some(Check::UserPostedBeforeCallback)
        )
    );
    assert_eq!(
        early
            .extensions()
            .get::<ErrorSummary>()
            .map(|summary| summary.code.as_str()),
        Some("invalid_state")
    );
    assert_eq!(location_param(&early, "error"), "invalid_state");
    let stateless = harness
        .get(&format!(
            "/sso/v1/connections/{CONNECTION}/partner:callback"
        ))
        .await;
    assert_eq!(
        facts(&stateless),
        (Endpoint::PartnerCallback, Some(Check::StateMatches))
    );
    let error_page = early
        .headers()
        .get(LOCATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("http://env.test"))
        .expect("a redirect to the environment's error page")
        .to_owned();
    let shown = harness.get(&error_page).await;
    assert_eq!(shown.status(), StatusCode::BAD_REQUEST);
    assert_eq!(facts(&shown), (Endpoint::Other, Some(Check::RequestValid)));
    let user = format!("/api/v1/connections/{CONNECTION}/auth-requests/{login_request}/user");
    let ada = json!({"sub": "ada-1", "email": "ada@example.com"}).to_string();
    let anonymous = harness.post_json(&user, None, &ada).await;
    assert_eq!(
        facts(&anonymous),
        (Endpoint::SubmitUser, Some(Check::ManagementTokenValid))
    );
    let malformed = harness.post_json(&user, Some(&management), "{").await;
    assert_eq!(
        facts(&malformed),
        (Endpoint::SubmitUser, Some(Check::UserClaimsValid))
    );
    let posted = harness.post_json(&user, Some(&management), &ada).await;
    assert_eq!(facts(&posted), (Endpoint::SubmitUser, None));
    let redirect = harness.get(&callback).await;
    assert_eq!(facts(&redirect), (Endpoint::PartnerCallback, None));
    let code = location_param(&redirect, "code");

    let exchange = |verifier: &'static str| {
        [
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("code_verifier", verifier),
            ("redirect_uri", REDIRECT_URI),
        ]
    };
    let mut wrong = exchange("a-verifier-of-the-right-grammar-that-is-not-the-one-used").to_vec();
    wrong.push(("code", &code));
    let refused = harness.post_form("/oauth/token", &wrong).await;
    assert_eq!(
        facts(&refused),
        (
            Endpoint::TokenAuthorizationCode,
            Some(Check::PkceVerifierMatches)
        )
    );
    let mut right = exchange(VERIFIER).to_vec();
    right.push(("code", &code));
    let tokens = harness.post_form("/oauth/token", &right).await;
    assert_eq!(facts(&tokens), (Endpoint::TokenAuthorizationCode, None));
    let tokens = json_of(tokens).await;
    let refresh_token = tokens["refresh_token"].as_str().expect("a refresh token");

    let refresh = |token| {
        [
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("refresh_token", token),
        ]
    };
    let refreshed = harness
        .post_form("/oauth/token", &refresh(refresh_token))
        .await;
    assert_eq!(facts(&refreshed), (Endpoint::TokenRefresh, None));
    let reused = harness
        .post_form("/oauth/token", &refresh(refresh_token))
        .await;
    assert_eq!(
        facts(&reused),
        (
            Endpoint::TokenRefresh,
            Some(Check::RefreshTokenUnusedAndUnexpired)
        )
    );
    let revoked = harness
        .post_form(
            "/oauth/revoke",
            &[
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
                ("token", refresh_token),
            ],
        )
        .await;
    assert_eq!(facts(&revoked), (Endpoint::Revoke, None));

    let unsupported = harness
        .post_form("/oauth/token", &[("grant_type", "password")])
        .await;
    assert_eq!(
        facts(&unsupported),
        (Endpoint::TokenOther, Some(Check::GrantTypeSupported))
    );
    let not_a_form = harness.post_json("/oauth/token", None, "{}").await;
    assert_eq!(
        facts(&not_a_form),
        (Endpoint::TokenOther, Some(Check::TokenRequestValid))
    );
    let wrong_method = harness
        .send(request(Method::PUT, "/oauth/token", None, Body::empty()))
        .await;
    assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        facts(&wrong_method),
        (Endpoint::TokenOther, Some(Check::RequestValid))
    );
    assert_eq!(facts(&harness.get("/keys").await), (Endpoint::Other, None));
    assert_eq!(
        facts(&harness.get("/no/such/route").await),
        (Endpoint::Other, Some(Check::RequestValid))
    );
}

/// The value of a hidden form field on a page (the consent page's `consent_id`).
fn hidden_field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).expect("the field") + marker.len();
    let end = start + html[start..].find('"').expect("the value's end");
    html[start..end].to_owned()
}

/// A form body as a request, for the extractors.
fn form_request(form: &[(&str, &str)]) -> Request<Body> {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut request = request(Method::POST, "/oauth/token", None, Body::from(body));
    request.headers_mut().insert(
        CONTENT_TYPE,
        "application/x-www-form-urlencoded"
            .parse()
            .expect("a header"),
    );
    request
}

#[tokio::test]
async fn no_secret_of_a_flow_shows_in_debug() {
    use axum::extract::FromRequest as _;

    use crate::flow::{AuthorizationCodeRequest, RefreshRequest};
    use crate::http::oauth::ConsentDecision;
    use crate::http::token::{RevokeForm, TokenForm, TokenRequest};
    use crate::tokens::TokenResponse;
    use crate::types::ClientId;

    let harness = Harness::new(|config| config.resources[0].consent = crate::ConsentMode::Prompt);
    let management = harness.management_token().await;
    let mut secrets = vec![
        CLIENT_SECRET.to_owned(),
        VERIFIER.to_owned(),
        management.clone(),
    ];
    let mut printed = Vec::new();
    let flows_debug = |harness: &Harness| format!("{:?}", *harness.state.flows());

    let login = harness.get(&Harness::authorize_uri(&[])).await;
    let login_request = location_param(&login, "login_request_id");
    let login_state = location_param(&login, "state");
    // The sign-in cookie's value.
    secrets.extend(
        harness
            .cookies
            .lock()
            .expect("the cookie jar")
            .iter()
            .map(|(_, value)| value.clone()),
    );
    let user = format!("/api/v1/connections/{CONNECTION}/auth-requests/{login_request}/user");
    let ada = json!({"sub": "ada-1", "email": "ada@example.com"}).to_string();
    assert_eq!(
        harness
            .post_json(&user, Some(&management), &ada)
            .await
            .status(),
        StatusCode::OK
    );
    let page = harness
        .get(&format!(
            "/sso/v1/connections/{CONNECTION}/partner:callback?state={login_state}"
        ))
        .await;
    let consent_id = hidden_field(&text_of(page).await, "consent_id");
    secrets.push(consent_id.clone());
    printed.push(flows_debug(&harness));

    let consent_form = [("consent_id", consent_id.as_str()), ("decision", "approve")];
    let decision = ConsentDecision::from_request(form_request(&consent_form), &())
        .await
        .expect("a consent decision");
    printed.push(format!("{decision:?}"));
    let redirect = harness.post_form("/oauth/consent", &consent_form).await;
    let code = location_param(&redirect, "code");
    secrets.push(code.clone());
    printed.push(flows_debug(&harness));

    let exchange = [
        ("grant_type", "authorization_code"),
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
        ("code", code.as_str()),
        ("code_verifier", VERIFIER),
        ("redirect_uri", REDIRECT_URI),
    ];
    let form = TokenForm::from_request(form_request(&exchange), &())
        .await
        .expect("a token form");
    printed.push(format!("{form:?}"));
    let parsed = TokenRequest::parse(form, &HeaderMap::new(), true).expect("a request");
    printed.push(format!("{parsed:?}"));
    let TokenRequest::AuthorizationCode {
        code: parsed_code,
        code_verifier,
        redirect_uri,
        resource,
        ..
    } = parsed
    else {
        panic!("an authorization-code request");
    };
    printed.push(format!(
        "{:?}",
        AuthorizationCodeRequest {
            client_id: ClientId::new(CLIENT_ID),
            code: parsed_code,
            code_verifier,
            redirect_uri,
            resource,
        }
    ));
    let tokens = harness.post_form("/oauth/token", &exchange).await;
    let tokens: TokenResponse = serde_json::from_value(json_of(tokens).await).expect("tokens");
    printed.push(format!("{tokens:?}"));
    printed.push(flows_debug(&harness));
    let refresh_token = tokens
        .refresh_token
        .as_ref()
        .expect("offline_access was granted")
        .expose()
        .to_owned();
    secrets.push(tokens.access_token.expose().to_owned());
    secrets.push(refresh_token.clone());
    secrets.extend(
        tokens
            .id_token
            .as_ref()
            .map(|token| token.expose().to_owned()),
    );

    let refresh = [
        ("grant_type", "refresh_token"),
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
        ("refresh_token", refresh_token.as_str()),
    ];
    let form = TokenForm::from_request(form_request(&refresh), &())
        .await
        .expect("a token form");
    printed.push(format!("{form:?}"));
    let parsed = TokenRequest::parse(form, &HeaderMap::new(), true).expect("a request");
    printed.push(format!("{parsed:?}"));
    let TokenRequest::RefreshToken {
        refresh_token: parsed_token,
        resource,
        scope,
        ..
    } = parsed
    else {
        panic!("a refresh request");
    };
    let parsed_token = harness.state.flows().present_refresh_token(parsed_token);
    printed.push(format!(
        "{:?}",
        RefreshRequest {
            client_id: ClientId::new(CLIENT_ID),
            refresh_token: parsed_token,
            resource,
            scope,
        }
    ));
    let refreshed = harness.post_form("/oauth/token", &refresh).await;
    let refreshed: TokenResponse =
        serde_json::from_value(json_of(refreshed).await).expect("tokens");
    printed.push(format!("{refreshed:?}"));
    printed.push(flows_debug(&harness));
    let newest = refreshed
        .refresh_token
        .as_ref()
        .expect("a rotated refresh token")
        .expose()
        .to_owned();
    secrets.push(refreshed.access_token.expose().to_owned());
    secrets.push(newest.clone());

    let revoke = [
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
        ("token", newest.as_str()),
    ];
    let form = RevokeForm::from_request(form_request(&revoke), &())
        .await
        .expect("a revocation form");
    printed.push(format!("{form:?}"));
    assert_eq!(
        harness.post_form("/oauth/revoke", &revoke).await.status(),
        StatusCode::OK
    );
    printed.push(flows_debug(&harness));

    // An agent's secret: the fixture's, in its token request, and a created one.
    let agent_secret = "test_agent_secret_testbed_dev_not_for_production";
    secrets.push(agent_secret.to_owned());
    let agent = [
        ("grant_type", "client_credentials"),
        ("client_id", "m2m_81920374650192842"),
        ("client_secret", agent_secret),
    ];
    let form = TokenForm::from_request(form_request(&agent), &())
        .await
        .expect("a token form");
    printed.push(format!("{form:?}"));
    let parsed = TokenRequest::parse(form, &HeaderMap::new(), true).expect("a request");
    printed.push(format!("{parsed:?}"));
    let created = harness
        .state
        .flows()
        .create_agent(
            crate::flow::AgentRequest {
                resource: "res_81920374650192839".to_owned(),
                name: None,
                scopes: Vec::new(),
                token_lifetime_secs: 60,
            },
            0,
            harness.state.ids.as_ref(),
        )
        .expect("an agent");
    secrets.push(created.client_secret.expose().to_owned());
    printed.push(format!("{created:?}"));
    printed.push(flows_debug(&harness));
    printed.push(format!(
        "{:?}",
        crate::flow::AgentTokenRequest {
            client_id: "m2m_81920374650192842",
            client_secret: Some(agent_secret),
            scope: None,
            resource: None,
            audience: None,
        }
    ));

    // Cross-app access: the identity provider's client secret, an ID token, an ID-JAG.
    let idps = &harness.state.idps;
    let idp = &idps.all()[0];
    let idp_client = &idp.config.clients[0];
    secrets.push(idp_client.client_secret.expose().to_owned());
    let id_token = idps
        .mint_id_token(
            idp,
            &idp.config.users[0],
            &idp_client.client_id,
            3600,
            harness.state.clock.now(),
            harness.state.ids.as_ref(),
        )
        .expect("an ID token");
    secrets.push(id_token.token.clone());
    printed.push(format!("{id_token:?}"));
    let exchange = crate::idp::TokenExchangeRequest {
        grant_type: Some(crate::idp::TOKEN_EXCHANGE.to_owned()),
        client_id: Some(idp_client.client_id.clone()),
        client_secret: Some(idp_client.client_secret.clone()),
        requested_token_type: Some(crate::idp::ID_JAG_TOKEN_TYPE.to_owned()),
        subject_token: Some(crate::types::IdpIdToken::new(id_token.token.clone())),
        subject_token_type: Some(crate::idp::ID_TOKEN_TYPE.to_owned()),
        audience: Some(
            harness
                .state
                .environment_url()
                .trim_end_matches('/')
                .to_owned(),
        ),
        resource: None,
        scope: None,
    };
    printed.push(format!("{exchange:?}"));
    let issued = idps
        .exchange(
            idp,
            &exchange,
            &harness.state.config.resources,
            harness.state.clock.now(),
            harness.state.ids.as_ref(),
        )
        .expect("the key")
        .expect("an ID-JAG");
    secrets.push(issued.id_jag.token.clone());
    printed.push(format!("{issued:?}"));

    for secret in &secrets {
        assert!(secret.len() >= 16, "a secret worth looking for: {secret}");
        for output in &printed {
            assert!(
                !output.contains(secret.as_str()),
                "a secret shows in {output}"
            );
        }
    }
    assert!(printed.iter().all(|output| output.contains("[redacted]")));
}
