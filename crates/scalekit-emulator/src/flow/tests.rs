//! Unit tests of every transition and error variant, on a manual `now` and sequential ids.

use scalekit_wire::{Check, FieldViolation, OAuthErrorCode, UserClaims};
use url::Url;

use super::*;
use crate::ids::SequentialIds;
use crate::types::{AuthRequestId, PkceVerifier, pkce_s256};

const ENVIRONMENT: &str = r#"
listen = "127.0.0.1:0"

[api_client]
client_id = "skc_1"
client_secret = "secret"
token_lifetime_secs = 3600

[[connections]]
id = "conn_1"
login_endpoint = "http://127.0.0.1:8401/login"

[[connections]]
id = "conn_2"
login_endpoint = "http://127.0.0.1:8501/login"

[[resources]]
id = "res_1"
name = "One"
server_url = "http://127.0.0.1:8402/mcp"
connection = "conn_1"
scopes = ["openid", "email", "offline_access", "mcp:read"]
consent = "auto"
issuer_bound_tokens = false
dynamic_client_registration = true
access_token_lifetime_secs = 3600
refresh_token_lifetime_secs = 1000
authorization_code_lifetime_secs = 600
login_request_lifetime_secs = 600

[[resources]]
id = "res_2"
name = "Two"
server_url = "http://127.0.0.1:8502/mcp"
connection = "conn_2"
scopes = ["mcp:read"]
consent = "prompt"
issuer_bound_tokens = false
dynamic_client_registration = false
access_token_lifetime_secs = 3600
refresh_token_lifetime_secs = 1000
authorization_code_lifetime_secs = 600
login_request_lifetime_secs = 600

[[clients]]
client_id = "public-1"
redirect_uris = ["http://127.0.0.1/cb"]
resource = "res_1"

[[clients]]
client_id = "confidential-1"
redirect_uris = ["https://app.example/cb"]
resource = "res_1"
client_secret = "s3cret"

[[clients]]
client_id = "public-2"
redirect_uris = ["http://127.0.0.1/cb"]
resource = "res_2"
client_name = "Second"
"#;

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const NOW: u64 = 1_000_000;

struct Fixture {
    flows: Flows,
    ids: SequentialIds,
}

fn fixture() -> Fixture {
    let config = Config::from_toml_str(ENVIRONMENT).unwrap();
    let environment_url = Url::parse("http://env.test").unwrap();
    Fixture {
        flows: Flows::new(&config, &environment_url),
        ids: SequentialIds::new(),
    }
}

fn request(client: &str) -> AuthorizeRequest {
    let challenge = pkce_s256(&PkceVerifier::parse(VERIFIER).unwrap());
    AuthorizeRequest {
        client_id: Some(client.to_owned()),
        redirect_uri: Some("http://127.0.0.1:5000/cb".to_owned()),
        response_type: Some("code".to_owned()),
        scope: Some("openid offline_access mcp:read".to_owned()),
        state: Some("client-state".to_owned()),
        code_challenge: Some(challenge.as_str().to_owned()),
        code_challenge_method: Some("S256".to_owned()),
        nonce: Some("n".to_owned()),
        resource: None,
    }
}

fn ada() -> UserClaims {
    UserClaims {
        sub: Some("ada".to_owned()),
        email: Some("ada@example.com".to_owned()),
        ..UserClaims::default()
    }
}

/// A refresh token presented to a state machine that holds its grants in memory.
fn presented(flows: &Flows, token: &str) -> PresentedToken {
    flows
        .present(RefreshToken::new(token))
        .expect("grants live in memory")
}

/// The browser that started `login`'s sign-in: it carries that sign-in's cookie.
fn browser_of(login: &LoginRedirect) -> PresentedBrowser {
    PresentedBrowser::of(login.browser_binding.as_ref())
}

fn error_of(redirect: &ClientRedirect) -> Option<(OAuthErrorCode, String)> {
    match &redirect.outcome {
        RedirectOutcome::Error { error, reason } => Some((*error, reason.to_string())),
        RedirectOutcome::Code(_) => None,
    }
}

impl Fixture {
    fn authorize(&mut self, request: AuthorizeRequest) -> Result<LoginRedirect, AuthorizeError> {
        self.flows.authorize(request, NOW, &self.ids)
    }

    fn submit(
        &mut self,
        connection: &str,
        login: &LoginRedirect,
        claims: UserClaims,
    ) -> Result<AuthRequestId, SubmitUserError> {
        self.flows.submit_user(
            connection,
            login.login_request_id.as_str(),
            claims,
            NOW,
            &self.ids,
        )
    }

    /// The callback from the browser that started `login`'s sign-in.
    fn callback(
        &mut self,
        connection: &str,
        login: &LoginRedirect,
    ) -> Result<CallbackOutcome, CallbackError> {
        self.callback_from(connection, login, &browser_of(login))
    }

    /// The callback from a browser that carries `browser`'s sign-in cookies.
    fn callback_from(
        &mut self,
        connection: &str,
        login: &LoginRedirect,
        browser: &PresentedBrowser,
    ) -> Result<CallbackOutcome, CallbackError> {
        self.flows
            .partner_callback(connection, login.state.as_str(), browser, NOW, &self.ids)
    }

    /// Authorize, submit Ada and come back: the redirect with a code.
    fn signed_in(&mut self, request: AuthorizeRequest) -> ClientRedirect {
        let login = self.authorize(request).unwrap();
        self.submit("conn_1", &login, ada()).unwrap();
        match self.callback("conn_1", &login).unwrap() {
            CallbackOutcome::Redirect(redirect) => redirect,
            CallbackOutcome::NeedsConsent(prompt) => panic!("unexpected consent {prompt:?}"),
        }
    }

    fn code(&mut self) -> String {
        match self.signed_in(request("public-1")).outcome {
            RedirectOutcome::Code(code) => code.expose().to_owned(),
            RedirectOutcome::Error { error, reason } => panic!("{error:?}: {reason}"),
        }
    }

    fn exchange(&mut self, code: &str, now: u64) -> Result<IssuedGrant, TokenError> {
        self.flows.exchange_code(
            AuthorizationCodeRequest {
                client_id: ClientId::new("public-1"),
                code: AuthorizationCode::new(code),
                code_verifier: Some(Secret::new(VERIFIER)),
                redirect_uri: Some("http://127.0.0.1:5000/cb".to_owned()),
                resource: None,
            },
            now,
            &self.ids,
        )
    }

    fn refresh(&mut self, token: &str, now: u64) -> Result<IssuedGrant, TokenError> {
        self.flows.refresh(
            RefreshRequest {
                client_id: ClientId::new("public-1"),
                refresh_token: presented(&self.flows, token),
                resource: None,
                scope: None,
            },
            now,
            &self.ids,
        )
    }
}

mod register_client {
    use super::*;

    fn registration(uris: &[&str], scope: Option<&str>) -> ClientRegistration {
        ClientRegistration {
            client_name: Some("Claude".to_owned()),
            redirect_uris: uris.iter().map(|uri| (*uri).to_owned()).collect(),
            scope: scope.map(str::to_owned),
        }
    }

    #[test]
    fn a_public_m2m_client_is_registered_and_can_authorize() {
        let mut fixture = fixture();
        let client = fixture
            .flows
            .register_client(
                "res_1",
                registration(&["http://localhost:1/cb"], Some("mcp:read")),
                NOW,
                &fixture.ids,
            )
            .unwrap();
        assert!(client.client_id.as_str().starts_with("m2m_"));
        assert_eq!(client.issued_at, NOW);
        assert_eq!(client.scope.as_slice(), ["mcp:read"]);
        let mut authorize = request(client.client_id.as_str());
        authorize.redirect_uri = Some("http://localhost:7/cb".to_owned());
        assert!(fixture.authorize(authorize).is_ok());
    }

    #[test]
    fn an_unknown_resource_is_refused() {
        let mut fixture = fixture();
        let error = fixture.flows.register_client(
            "res_9",
            registration(&["http://127.0.0.1/cb"], None),
            NOW,
            &fixture.ids,
        );
        assert_eq!(
            error.unwrap_err(),
            RegisterError::UnknownResource("res_9".to_owned())
        );
    }

    #[test]
    fn a_resource_without_dcr_is_refused() {
        let mut fixture = fixture();
        let error = fixture.flows.register_client(
            "res_2",
            registration(&["http://127.0.0.1/cb"], None),
            NOW,
            &fixture.ids,
        );
        assert_eq!(
            error.unwrap_err(),
            RegisterError::Disabled(ResourceId::new("res_2"))
        );
    }

    #[test]
    fn missing_fragment_or_plain_http_redirect_uris_are_refused() {
        let mut fixture = fixture();
        for uris in [
            &[][..],
            &["https://a.example/cb#f"][..],
            &["http://a.example/cb"][..],
            &["/relative"][..],
        ] {
            let error =
                fixture
                    .flows
                    .register_client("res_1", registration(uris, None), NOW, &fixture.ids);
            assert!(
                matches!(error, Err(RegisterError::InvalidRedirectUri(_))),
                "{uris:?}: {error:?}"
            );
        }
    }

    #[test]
    fn a_scope_the_resource_does_not_offer_is_invalid_metadata() {
        let mut fixture = fixture();
        let error = fixture.flows.register_client(
            "res_1",
            registration(&["http://127.0.0.1/cb"], Some("admin")),
            NOW,
            &fixture.ids,
        );
        assert!(
            matches!(error, Err(RegisterError::InvalidClientMetadata(_))),
            "{error:?}"
        );
    }
}

mod authorize {
    use super::*;

    #[test]
    fn a_valid_request_creates_a_login_request_for_the_resource_connection() {
        let mut fixture = fixture();
        let login = fixture.authorize(request("public-1")).unwrap();
        assert!(login.login_request_id.as_str().starts_with("lri_"));
        assert_eq!(login.login_endpoint.as_str(), "http://127.0.0.1:8401/login");
        let location = login.location();
        assert_eq!(
            location.as_str(),
            format!(
                "http://127.0.0.1:8401/login?login_request_id={}&state={}",
                login.login_request_id, login.state
            )
        );
        assert_eq!(fixture.flows.pending_counts(), (1, 0, 0));
    }

    #[test]
    fn the_resource_is_found_by_server_url_or_by_id() {
        let mut fixture = fixture();
        for resource in ["http://127.0.0.1:8402/mcp", "res_1"] {
            let mut authorize = request("public-1");
            authorize.resource = Some(resource.to_owned());
            assert!(fixture.authorize(authorize).is_ok(), "{resource}");
        }
    }

    #[test]
    fn missing_or_unknown_clients_and_bad_redirect_uris_are_not_redirected() {
        let mut fixture = fixture();
        let mut no_client = request("x");
        no_client.client_id = None;
        assert!(matches!(
            fixture.authorize(no_client),
            Err(AuthorizeError::MissingClientId)
        ));
        assert!(matches!(
            fixture.authorize(request("nobody")),
            Err(AuthorizeError::UnknownClient(_))
        ));
        let mut no_uri = request("public-1");
        no_uri.redirect_uri = None;
        assert!(matches!(
            fixture.authorize(no_uri),
            Err(AuthorizeError::InvalidRedirectUri(_))
        ));
        let mut other_path = request("public-1");
        other_path.redirect_uri = Some("http://127.0.0.1:5000/other".to_owned());
        assert!(matches!(
            fixture.authorize(other_path),
            Err(AuthorizeError::InvalidRedirectUri(_))
        ));
    }

    fn refused(
        fixture: &mut Fixture,
        request: AuthorizeRequest,
    ) -> (OAuthErrorCode, String, ClientRedirect) {
        match fixture.authorize(request) {
            Err(AuthorizeError::Redirect(redirect)) => {
                let (error, description) = error_of(&redirect).unwrap();
                (error, description, *redirect)
            }
            other => panic!("expected a redirected error, got {other:?}"),
        }
    }

    #[test]
    fn protocol_errors_are_redirected_with_state_and_iss() {
        let mut fixture = fixture();
        let mut token = request("public-1");
        token.response_type = Some("token".to_owned());
        let (error, _, redirect) = refused(&mut fixture, token);
        assert_eq!(error, OAuthErrorCode::UnsupportedResponseType);
        assert_eq!(
            redirect.state.as_ref().map(ClientState::as_str),
            Some("client-state")
        );
        assert_eq!(redirect.iss, "http://env.test/resources/res_1");

        let mut no_challenge = request("public-1");
        no_challenge.code_challenge = None;
        assert_eq!(
            refused(&mut fixture, no_challenge).0,
            OAuthErrorCode::InvalidRequest
        );

        let mut plain = request("public-1");
        plain.code_challenge_method = Some("plain".to_owned());
        let (error, description, _) = refused(&mut fixture, plain);
        assert_eq!(
            (error, description.as_str()),
            (
                OAuthErrorCode::InvalidRequest,
                "code_challenge_method must be S256"
            )
        );

        let mut no_method = request("public-1");
        no_method.code_challenge_method = None;
        assert_eq!(
            refused(&mut fixture, no_method).0,
            OAuthErrorCode::InvalidRequest
        );
    }

    #[test]
    fn an_unknown_or_foreign_resource_is_invalid_target() {
        let mut fixture = fixture();
        let mut unknown = request("public-1");
        unknown.resource = Some("http://127.0.0.1:1/mcp".to_owned());
        assert_eq!(
            refused(&mut fixture, unknown).0,
            OAuthErrorCode::InvalidTarget
        );
        let mut foreign = request("public-1");
        foreign.resource = Some("res_2".to_owned());
        assert_eq!(
            refused(&mut fixture, foreign).0,
            OAuthErrorCode::InvalidTarget
        );
    }

    #[test]
    fn scopes_outside_the_resource_are_invalid_scope_and_no_scope_means_all() {
        let mut fixture = fixture();
        let mut beyond = request("public-1");
        beyond.scope = Some("mcp:read mcp:admin".to_owned());
        let (error, description, _) = refused(&mut fixture, beyond);
        assert_eq!(error, OAuthErrorCode::InvalidScope);
        assert_eq!(
            description,
            "scope mcp:admin is not offered by this MCP server"
        );

        let mut none = request("public-1");
        none.scope = None;
        let redirect = fixture.signed_in(none);
        let RedirectOutcome::Code(code) = redirect.outcome else {
            panic!("no code")
        };
        let grant = fixture.exchange(code.expose(), NOW).unwrap();
        assert_eq!(
            grant.scopes.as_slice(),
            ["openid", "email", "offline_access", "mcp:read"]
        );
    }
}

mod submit_user {
    use super::*;

    #[test]
    fn a_user_is_recorded_once_and_the_same_user_again_is_idempotent() {
        let mut fixture = fixture();
        let login = fixture.authorize(request("public-1")).unwrap();
        let first = fixture.submit("conn_1", &login, ada()).unwrap();
        assert!(first.as_str().starts_with("req_"));
        assert_eq!(fixture.submit("conn_1", &login, ada()).unwrap(), first);
        let grace = UserClaims {
            sub: Some("grace".to_owned()),
            ..ada()
        };
        assert!(matches!(
            fixture.submit("conn_1", &login, grace),
            Err(SubmitUserError::AlreadyExists(_))
        ));
    }

    #[test]
    fn a_resource_id_in_the_connection_slot_names_the_mix_up() {
        let mut fixture = fixture();
        let login = fixture.authorize(request("public-1")).unwrap();
        let Err(SubmitUserError::NotFound(reason)) = fixture.submit("res_1", &login, ada()) else {
            panic!("expected NotFound");
        };
        let message = reason.to_string();
        assert!(
            message.contains("resource") && message.contains("conn_"),
            "{message}"
        );
    }

    #[test]
    fn unknown_expired_foreign_or_completed_login_requests_are_not_found() {
        let mut fixture = fixture();
        let login = fixture.authorize(request("public-1")).unwrap();
        assert!(matches!(
            fixture.submit("conn_9", &login, ada()),
            Err(SubmitUserError::NotFound(_))
        ));
        assert!(matches!(
            fixture.submit("conn_2", &login, ada()),
            Err(SubmitUserError::NotFound(_))
        ));
        let unknown = fixture
            .flows
            .submit_user("conn_1", "lri_9", ada(), NOW, &fixture.ids);
        assert!(matches!(unknown, Err(SubmitUserError::NotFound(_))));
        let expired = fixture.flows.submit_user(
            "conn_1",
            login.login_request_id.as_str(),
            ada(),
            NOW + 600,
            &fixture.ids,
        );
        assert!(matches!(expired, Err(SubmitUserError::NotFound(_))));

        let done = fixture.authorize(request("public-1")).unwrap();
        fixture.submit("conn_1", &done, ada()).unwrap();
        fixture.callback("conn_1", &done).unwrap();
        assert!(matches!(
            fixture.submit("conn_1", &done, ada()),
            Err(SubmitUserError::NotFound(_))
        ));
    }

    #[test]
    fn sub_and_email_are_required_unless_login_failed() {
        let mut fixture = fixture();
        let login = fixture.authorize(request("public-1")).unwrap();
        let Err(SubmitUserError::InvalidArgument {
            message,
            violations,
        }) = fixture.submit("conn_1", &login, UserClaims::default())
        else {
            panic!("expected InvalidArgument");
        };
        assert_eq!(message, "invalid user: sub, email");
        assert_eq!(
            violations,
            [
                FieldViolation {
                    field: "sub".into(),
                    description: "sub is required unless login_failed is true".into(),
                    constraint: Some("required".into()),
                },
                FieldViolation {
                    field: "email".into(),
                    description: "email is required unless login_failed is true".into(),
                    constraint: Some("required".into()),
                },
            ]
        );
        let failed = UserClaims {
            login_failed: true,
            ..UserClaims::default()
        };
        assert!(fixture.submit("conn_1", &login, failed).is_ok());
    }

    #[test]
    fn a_phone_number_outside_e164_is_invalid() {
        let mut fixture = fixture();
        let login = fixture.authorize(request("public-1")).unwrap();
        for phone in ["0123", "+0123", "+1", "+1234567890123456", "+1 415"] {
            let claims = UserClaims {
                phone_number: Some(phone.to_owned()),
                ..ada()
            };
            let result = fixture.submit("conn_1", &login, claims);
            assert!(
                matches!(result, Err(SubmitUserError::InvalidArgument { .. })),
                "{phone}"
            );
        }
        let claims = UserClaims {
            phone_number: Some("+14155550123".to_owned()),
            ..ada()
        };
        assert!(fixture.submit("conn_1", &login, claims).is_ok());
    }
}

mod partner_callback {
    use super::*;

    #[test]
    fn auto_consent_redirects_with_a_code_and_consumes_the_login_request() {
        let mut fixture = fixture();
        let login = fixture.authorize(request("public-1")).unwrap();
        fixture.submit("conn_1", &login, ada()).unwrap();
        let Ok(CallbackOutcome::Redirect(redirect)) = fixture.callback("conn_1", &login) else {
            panic!("expected a redirect");
        };
        assert!(matches!(redirect.outcome, RedirectOutcome::Code(_)));
        assert_eq!(redirect.redirect_uri.as_str(), "http://127.0.0.1:5000/cb");
        assert_eq!(fixture.flows.pending_counts(), (0, 1, 0));
        let reused = fixture.callback("conn_1", &login);
        assert!(
            matches!(reused, Err(CallbackError::InvalidState(_))),
            "{reused:?}"
        );
    }

    #[test]
    fn unknown_expired_foreign_and_unsubmitted_states_are_invalid_state() {
        let mut fixture = fixture();
        let unknown = fixture.flows.partner_callback(
            "conn_1",
            "nope",
            &PresentedBrowser::none(),
            NOW,
            &fixture.ids,
        );
        assert!(matches!(unknown, Err(CallbackError::InvalidState(_))));

        let login = fixture.authorize(request("public-1")).unwrap();
        let Err(CallbackError::InvalidState(why)) = fixture.callback("conn_1", &login) else {
            panic!()
        };
        assert_eq!(why, CallbackRefusal::NoUserSubmitted);
        fixture.submit("conn_1", &login, ada()).unwrap();
        let Err(CallbackError::InvalidState(why)) = fixture.callback("conn_2", &login) else {
            panic!()
        };
        assert_eq!(why, CallbackRefusal::OtherConnection);
        let expired = fixture.flows.partner_callback(
            "conn_1",
            login.state.as_str(),
            &browser_of(&login),
            NOW + 600,
            &fixture.ids,
        );
        assert_eq!(
            expired.unwrap_err(),
            CallbackError::InvalidState(CallbackRefusal::Expired)
        );
    }

    #[test]
    fn login_failed_redirects_with_access_denied() {
        let mut fixture = fixture();
        let login = fixture.authorize(request("public-1")).unwrap();
        fixture
            .submit(
                "conn_1",
                &login,
                UserClaims {
                    login_failed: true,
                    ..UserClaims::default()
                },
            )
            .unwrap();
        let Ok(CallbackOutcome::Redirect(redirect)) = fixture.callback("conn_1", &login) else {
            panic!()
        };
        assert_eq!(
            error_of(&redirect).map(|(error, _)| error),
            Some(OAuthErrorCode::AccessDenied)
        );
    }
}

mod decide_consent {
    use super::*;

    /// A consent page, and the browser that started its sign-in.
    fn prompt(fixture: &mut Fixture) -> (ConsentPrompt, PresentedBrowser) {
        let mut authorize = request("public-2");
        authorize.scope = Some("mcp:read".to_owned());
        let login = fixture.authorize(authorize).unwrap();
        fixture.submit("conn_2", &login, ada()).unwrap();
        match fixture.callback("conn_2", &login).unwrap() {
            CallbackOutcome::NeedsConsent(prompt) => (prompt, browser_of(&login)),
            CallbackOutcome::Redirect(redirect) => panic!("unexpected redirect {redirect:?}"),
        }
    }

    #[test]
    fn prompt_mode_asks_and_approval_issues_a_code_and_is_remembered() {
        let mut fixture = fixture();
        let (consent, browser) = prompt(&mut fixture);
        assert_eq!(consent.resource_name, "Two");
        assert_eq!(consent.client_name, "Second");
        assert_eq!(consent.redirect_host, "127.0.0.1");
        assert_eq!(consent.user, "ada@example.com");
        let redirect = fixture
            .flows
            .decide_consent(&consent.consent_id, true, &browser, NOW, &fixture.ids)
            .unwrap();
        assert!(matches!(redirect.outcome, RedirectOutcome::Code(_)));
        let again =
            fixture
                .flows
                .decide_consent(&consent.consent_id, true, &browser, NOW, &fixture.ids);
        assert_eq!(again.unwrap_err(), ConsentError::UnknownConsent);

        let mut authorize = request("public-2");
        authorize.scope = Some("mcp:read".to_owned());
        let login = fixture.authorize(authorize).unwrap();
        fixture.submit("conn_2", &login, ada()).unwrap();
        assert!(matches!(
            fixture.callback("conn_2", &login),
            Ok(CallbackOutcome::Redirect(_))
        ));
    }

    #[test]
    fn denial_redirects_with_access_denied() {
        let mut fixture = fixture();
        let (consent, browser) = prompt(&mut fixture);
        let redirect = fixture
            .flows
            .decide_consent(&consent.consent_id, false, &browser, NOW, &fixture.ids)
            .unwrap();
        assert_eq!(
            error_of(&redirect).map(|(error, _)| error),
            Some(OAuthErrorCode::AccessDenied)
        );
    }

    #[test]
    fn an_expired_consent_is_unknown() {
        let mut fixture = fixture();
        let (consent, browser) = prompt(&mut fixture);
        let late = fixture.flows.decide_consent(
            &consent.consent_id,
            true,
            &browser,
            NOW + 600,
            &fixture.ids,
        );
        assert_eq!(late.unwrap_err(), ConsentError::UnknownConsent);
    }
}

mod browser_binding {
    use super::*;

    #[test]
    fn a_callback_without_the_sign_in_cookie_is_refused_and_leaves_the_sign_in_pending() {
        let mut fixture = fixture();
        let login = fixture.authorize(request("public-1")).unwrap();
        assert!(login.browser_binding.is_some());
        assert_eq!(login.binding_lifetime_secs, 1200);
        fixture.submit("conn_1", &login, ada()).unwrap();

        let refused = fixture.callback_from("conn_1", &login, &PresentedBrowser::none());
        assert_eq!(
            refused.unwrap_err(),
            CallbackError::Browser(BrowserRefusal::Missing)
        );
        assert_eq!(
            CallbackError::Browser(BrowserRefusal::Missing).failed_check(),
            Check::BrowserMatches
        );
        assert_eq!(fixture.flows.pending_counts(), (1, 0, 0));
        assert!(matches!(
            fixture.callback("conn_1", &login),
            Ok(CallbackOutcome::Redirect(_))
        ));
    }

    #[test]
    fn another_browsers_cookie_is_a_mismatch_and_two_sign_ins_in_one_browser_both_finish() {
        let mut fixture = fixture();
        let first = fixture.authorize(request("public-1")).unwrap();
        let second = fixture.authorize(request("public-1")).unwrap();
        fixture.submit("conn_1", &first, ada()).unwrap();
        fixture.submit("conn_1", &second, ada()).unwrap();

        let other_browser = browser_of(&second);
        let refused = fixture.callback_from("conn_1", &first, &other_browser);
        assert_eq!(
            refused.unwrap_err(),
            CallbackError::Browser(BrowserRefusal::Mismatch)
        );
        let forged = PresentedBrowser::new(["forged"]);
        assert_eq!(
            fixture
                .callback_from("conn_1", &first, &forged)
                .unwrap_err(),
            CallbackError::Browser(BrowserRefusal::Mismatch)
        );

        // One browser, two tabs: it carries both sign-ins' cookies.
        let both = PresentedBrowser::new(
            [&first, &second].map(|login| login.browser_binding.as_ref().unwrap().expose()),
        );
        for login in [&first, &second] {
            assert!(matches!(
                fixture.callback_from("conn_1", login, &both),
                Ok(CallbackOutcome::Redirect(_))
            ));
        }
    }

    #[test]
    fn a_consent_decision_without_the_sign_in_cookie_is_refused_and_the_page_stays() {
        let mut fixture = fixture();
        let mut authorize = request("public-2");
        authorize.scope = Some("mcp:read".to_owned());
        let login = fixture.authorize(authorize).unwrap();
        fixture.submit("conn_2", &login, ada()).unwrap();
        let Ok(CallbackOutcome::NeedsConsent(prompt)) = fixture.callback("conn_2", &login) else {
            panic!("a consent page");
        };
        for (browser, refusal) in [
            (PresentedBrowser::none(), BrowserRefusal::Missing),
            (PresentedBrowser::new(["other"]), BrowserRefusal::Mismatch),
        ] {
            let refused =
                fixture
                    .flows
                    .decide_consent(&prompt.consent_id, true, &browser, NOW, &fixture.ids);
            assert_eq!(refused.unwrap_err(), ConsentError::Browser(refusal));
        }
        assert_eq!(
            ConsentError::Browser(BrowserRefusal::Missing).failed_check(),
            Check::BrowserMatches
        );
        assert_eq!(fixture.flows.pending_consents(), 1);
        let approved = fixture.flows.decide_consent(
            &prompt.consent_id,
            true,
            &browser_of(&login),
            NOW,
            &fixture.ids,
        );
        assert!(matches!(
            approved.unwrap().outcome,
            RedirectOutcome::Code(_)
        ));
    }

    #[test]
    fn a_resource_without_browser_binding_sets_no_cookie_and_requires_none() {
        let text = ENVIRONMENT.replace(
            "login_request_lifetime_secs = 600\n\n[[resources]]",
            "login_request_lifetime_secs = 600\nbrowser_binding = false\n\n[[resources]]",
        );
        let config = Config::from_toml_str(&text).unwrap();
        assert!(!config.resources[0].browser_binding);
        let mut fixture = Fixture {
            flows: Flows::new(&config, &Url::parse("http://env.test").unwrap()),
            ids: SequentialIds::new(),
        };
        let login = fixture.authorize(request("public-1")).unwrap();
        assert!(login.browser_binding.is_none());
        fixture.submit("conn_1", &login, ada()).unwrap();
        assert!(matches!(
            fixture.callback_from("conn_1", &login, &PresentedBrowser::none()),
            Ok(CallbackOutcome::Redirect(_))
        ));
    }

    #[test]
    fn the_state_machine_keeps_no_cookie_value() {
        let mut fixture = fixture();
        let login = fixture.authorize(request("public-1")).unwrap();
        let value = login.browser_binding.as_ref().unwrap().expose().to_owned();
        let held = format!(
            "{:?} {:?}",
            fixture.flows,
            fixture.flows.pending_login_requests()
        );
        assert!(!held.contains(&value), "{held}");
    }
}

mod exchange_code {
    use super::*;

    #[test]
    fn a_code_is_exchanged_once_for_a_grant_with_a_refresh_token() {
        let mut fixture = fixture();
        let code = fixture.code();
        let grant = fixture.exchange(&code, NOW).unwrap();
        assert!(grant.subject.as_str().starts_with("usr_"));
        assert_eq!(grant.external_sub, "ada");
        assert_eq!(grant.client_id.as_str(), "public-1");
        assert_eq!(grant.resource.as_str(), "res_1");
        assert_eq!(grant.connection.as_str(), "conn_1");
        assert_eq!(grant.nonce.as_deref(), Some("n"));
        assert!(grant.session.as_str().starts_with("ses_"));
        assert!(grant.refresh_token.is_some());
    }

    #[test]
    fn a_reused_code_is_invalid_grant_and_revokes_its_refresh_tokens() {
        let mut fixture = fixture();
        let code = fixture.code();
        let grant = fixture.exchange(&code, NOW).unwrap();
        let refresh = grant.refresh_token.unwrap().expose().to_owned();
        assert_eq!(
            fixture.exchange(&code, NOW).unwrap_err(),
            TokenError::InvalidGrant(GrantRefusal::CodeReused)
        );
        assert!(matches!(
            fixture.refresh(&refresh, NOW),
            Err(TokenError::InvalidGrant(_))
        ));
    }

    #[test]
    fn an_expired_code_is_invalid_grant() {
        let mut fixture = fixture();
        let code = fixture.code();
        assert_eq!(
            fixture.exchange(&code, NOW + 600).unwrap_err(),
            TokenError::InvalidGrant(GrantRefusal::CodeExpired)
        );
    }

    #[test]
    fn the_code_is_bound_to_client_redirect_uri_resource_and_verifier() {
        let mut fixture = fixture();
        let code = fixture.code();
        let base = || AuthorizationCodeRequest {
            client_id: ClientId::new("public-1"),
            code: AuthorizationCode::new(code.clone()),
            code_verifier: Some(Secret::new(VERIFIER)),
            redirect_uri: Some("http://127.0.0.1:5000/cb".to_owned()),
            resource: None,
        };
        let cases: Vec<(AuthorizationCodeRequest, TokenError)> = vec![
            (
                AuthorizationCodeRequest {
                    client_id: ClientId::new("confidential-1"),
                    ..base()
                },
                TokenError::InvalidGrant(GrantRefusal::CodeOfAnotherClient),
            ),
            (
                AuthorizationCodeRequest {
                    redirect_uri: Some("http://127.0.0.1:5001/cb".into()),
                    ..base()
                },
                TokenError::InvalidGrant(GrantRefusal::RedirectUriMismatch),
            ),
            (
                AuthorizationCodeRequest {
                    redirect_uri: None,
                    ..base()
                },
                TokenError::InvalidRequest(TokenRequestRefusal::RedirectUriMissing),
            ),
            (
                AuthorizationCodeRequest {
                    resource: Some("res_2".into()),
                    ..base()
                },
                TokenError::InvalidTarget("res_2".into()),
            ),
            (
                AuthorizationCodeRequest {
                    code_verifier: None,
                    ..base()
                },
                TokenError::InvalidGrant(GrantRefusal::VerifierMissing),
            ),
            (
                AuthorizationCodeRequest {
                    code_verifier: Some(Secret::new("a".repeat(43))),
                    ..base()
                },
                TokenError::InvalidGrant(GrantRefusal::VerifierMismatch),
            ),
            (
                AuthorizationCodeRequest {
                    code_verifier: Some(Secret::new("bad!")),
                    ..base()
                },
                TokenError::InvalidGrant(GrantRefusal::VerifierMalformed),
            ),
        ];
        for (request, expected) in cases {
            assert_eq!(
                fixture
                    .flows
                    .exchange_code(request, NOW, &fixture.ids)
                    .unwrap_err(),
                expected
            );
        }
        // None of the failures consumed the code.
        let with_resource = AuthorizationCodeRequest {
            resource: Some("http://127.0.0.1:8402/mcp".into()),
            ..base()
        };
        assert!(
            fixture
                .flows
                .exchange_code(with_resource, NOW, &fixture.ids)
                .is_ok()
        );
    }

    #[test]
    fn confidential_clients_must_present_their_secret() {
        let fixture = fixture();
        assert!(
            fixture
                .flows
                .authenticate_client("confidential-1", Some("s3cret"))
                .is_ok()
        );
        for secret in [None, Some("wrong")] {
            assert!(matches!(
                fixture.flows.authenticate_client("confidential-1", secret),
                Err(TokenError::InvalidClient(_))
            ));
        }
        assert!(fixture.flows.authenticate_client("public-1", None).is_ok());
        assert!(matches!(
            fixture.flows.authenticate_client("nobody", None),
            Err(TokenError::InvalidClient(_))
        ));
    }
}

mod refresh {
    use super::*;

    fn refresh_token(fixture: &mut Fixture) -> String {
        let code = fixture.code();
        fixture
            .exchange(&code, NOW)
            .unwrap()
            .refresh_token
            .unwrap()
            .expose()
            .to_owned()
    }

    #[test]
    fn refresh_rotates_and_reuse_revokes_the_whole_grant() {
        let mut fixture = fixture();
        let first = refresh_token(&mut fixture);
        let second = fixture
            .refresh(&first, NOW + 10)
            .unwrap()
            .refresh_token
            .unwrap()
            .expose()
            .to_owned();
        assert_ne!(first, second);
        assert_eq!(
            fixture.refresh(&first, NOW + 20).unwrap_err(),
            TokenError::InvalidGrant(GrantRefusal::RefreshTokenReused)
        );
        assert!(matches!(
            fixture.refresh(&second, NOW + 30),
            Err(TokenError::InvalidGrant(_))
        ));
    }

    #[test]
    fn an_expired_refresh_token_is_invalid_grant() {
        let mut fixture = fixture();
        let token = refresh_token(&mut fixture);
        assert_eq!(
            fixture.refresh(&token, NOW + 1000).unwrap_err(),
            TokenError::InvalidGrant(GrantRefusal::RefreshTokenExpired)
        );
    }

    #[test]
    fn the_refresh_token_is_bound_to_client_resource_and_scopes() {
        let mut fixture = fixture();
        let token = refresh_token(&mut fixture);
        let base = |flows: &Flows| RefreshRequest {
            client_id: ClientId::new("public-1"),
            refresh_token: presented(flows, &token),
            resource: None,
            scope: None,
        };
        let other_client = RefreshRequest {
            client_id: ClientId::new("confidential-1"),
            ..base(&fixture.flows)
        };
        assert!(matches!(
            fixture.flows.refresh(other_client, NOW, &fixture.ids),
            Err(TokenError::InvalidGrant(_))
        ));
        let other_resource = RefreshRequest {
            resource: Some("res_2".into()),
            ..base(&fixture.flows)
        };
        assert!(matches!(
            fixture.flows.refresh(other_resource, NOW, &fixture.ids),
            Err(TokenError::InvalidTarget(_))
        ));
        let wider = RefreshRequest {
            scope: Some("mcp:read email".into()),
            ..base(&fixture.flows)
        };
        assert_eq!(
            fixture.flows.refresh(wider, NOW, &fixture.ids).unwrap_err(),
            TokenError::InvalidScope(vec!["email".to_owned()])
        );
        let narrower = RefreshRequest {
            scope: Some("mcp:read".into()),
            ..base(&fixture.flows)
        };
        let grant = fixture.flows.refresh(narrower, NOW, &fixture.ids).unwrap();
        assert_eq!(grant.scopes.as_slice(), ["mcp:read"]);
        assert!(grant.nonce.is_none());
    }
}

mod sweep {
    use super::*;

    #[test]
    fn sweep_drops_expired_login_requests_codes_and_refresh_tokens() {
        let mut fixture = fixture();
        fixture.authorize(request("public-1")).unwrap();
        let code = fixture.code();
        let other = fixture.code();
        fixture.exchange(&other, NOW).unwrap();
        assert_eq!(fixture.flows.pending_counts(), (1, 2, 1));
        fixture.flows.sweep(NOW + 599);
        assert_eq!(fixture.flows.pending_counts(), (1, 2, 1));
        fixture.flows.sweep(NOW + 600);
        assert_eq!(fixture.flows.pending_counts(), (0, 0, 1));
        fixture.flows.sweep(NOW + 1000);
        assert_eq!(fixture.flows.pending_counts(), (0, 0, 0));
        assert!(matches!(
            fixture.exchange(&code, NOW),
            Err(TokenError::InvalidGrant(_))
        ));
    }
}

mod revoke {
    use super::*;

    #[test]
    fn public_clients_cannot_revoke_and_confidential_ones_revoke_their_grant() {
        let mut fixture = fixture();
        let public = fixture
            .flows
            .revoke("public-1", None, presented(&fixture.flows, "anything"));
        assert!(
            matches!(public, Err(TokenError::InvalidClient(_))),
            "{public:?}"
        );
        let wrong = fixture.flows.revoke(
            "confidential-1",
            Some("wrong"),
            presented(&fixture.flows, "anything"),
        );
        assert!(
            matches!(wrong, Err(TokenError::InvalidClient(_))),
            "{wrong:?}"
        );

        let mut authorize = request("confidential-1");
        authorize.redirect_uri = Some("https://app.example/cb".to_owned());
        let RedirectOutcome::Code(code) = fixture.signed_in(authorize).outcome else {
            panic!("no code")
        };
        let grant = fixture
            .flows
            .exchange_code(
                AuthorizationCodeRequest {
                    client_id: ClientId::new("confidential-1"),
                    code,
                    code_verifier: Some(Secret::new(VERIFIER)),
                    redirect_uri: Some("https://app.example/cb".to_owned()),
                    resource: None,
                },
                NOW,
                &fixture.ids,
            )
            .unwrap();
        let token = grant.refresh_token.unwrap().expose().to_owned();
        // Another client's token is left alone; an unknown token is accepted without effect.
        assert!(
            fixture
                .flows
                .revoke(
                    "confidential-1",
                    Some("s3cret"),
                    presented(&fixture.flows, "unknown"),
                )
                .is_ok()
        );
        assert!(
            fixture
                .flows
                .revoke(
                    "confidential-1",
                    Some("s3cret"),
                    presented(&fixture.flows, &token),
                )
                .is_ok()
        );
        assert_eq!(fixture.flows.pending_counts().2, 0);
    }
}

mod pending_cap {
    use super::*;

    fn fixture_with_cap(cap: usize) -> Fixture {
        let mut config = Config::from_toml_str(ENVIRONMENT).unwrap();
        config.max_pending_login_requests = cap;
        Fixture {
            flows: Flows::new(&config, &Url::parse("http://env.test").unwrap()),
            ids: SequentialIds::new(),
        }
    }

    #[test]
    fn past_the_cap_authorize_redirects_temporarily_unavailable_with_state_and_iss() {
        let mut fixture = fixture_with_cap(2);
        fixture.authorize(request("public-1")).unwrap();
        fixture.authorize(request("public-1")).unwrap();
        let Err(AuthorizeError::Redirect(redirect)) = fixture.authorize(request("public-1")) else {
            panic!("the third sign-in was not refused");
        };
        assert_eq!(
            redirect.location().unwrap().as_str(),
            "http://127.0.0.1:5000/cb?error=temporarily_unavailable\
             &error_description=too+many+sign-ins+are+in+progress%3B+try+again+in+a+few+minutes\
             &state=client-state&iss=http%3A%2F%2Fenv.test%2Fresources%2Fres_1"
        );
        assert_eq!(fixture.flows.pending_counts().0, 2);
    }

    #[test]
    fn the_client_and_redirect_uri_are_still_checked_first_past_the_cap() {
        let mut fixture = fixture_with_cap(1);
        fixture.authorize(request("public-1")).unwrap();
        assert!(matches!(
            fixture.authorize(request("nobody")),
            Err(AuthorizeError::UnknownClient(_))
        ));
        let mut other_path = request("public-1");
        other_path.redirect_uri = Some("http://127.0.0.1:5000/other".to_owned());
        assert!(matches!(
            fixture.authorize(other_path),
            Err(AuthorizeError::InvalidRedirectUri(_))
        ));
    }

    #[test]
    fn expired_sign_ins_make_room_without_waiting_for_the_sweep() {
        let mut fixture = fixture_with_cap(1);
        fixture.authorize(request("public-1")).unwrap();
        assert!(
            fixture
                .flows
                .authorize(request("public-1"), NOW + 599, &fixture.ids)
                .is_err()
        );
        let login = fixture
            .flows
            .authorize(request("public-1"), NOW + 600, &fixture.ids)
            .unwrap();
        assert_eq!(fixture.flows.pending_counts().0, 1);
        assert!(login.login_request_id.as_str().starts_with("lri_"));
    }

    #[test]
    fn completed_sign_ins_free_their_place_and_consent_pages_take_one() {
        let mut fixture = fixture_with_cap(1);
        fixture.code();
        fixture.authorize(request("public-1")).unwrap();

        let mut fixture = fixture_with_cap(1);
        let mut second = request("public-2");
        second.scope = Some("mcp:read".to_owned());
        let login = fixture.authorize(second.clone()).unwrap();
        fixture.submit("conn_2", &login, ada()).unwrap();
        assert!(matches!(
            fixture.callback("conn_2", &login).unwrap(),
            CallbackOutcome::NeedsConsent(_)
        ));
        assert_eq!(fixture.flows.pending_counts().0, 0);
        assert_eq!(fixture.flows.pending_consents(), 1);
        let Err(AuthorizeError::Redirect(redirect)) = fixture.authorize(second.clone()) else {
            panic!("a consent page in progress did not count");
        };
        assert_eq!(
            error_of(&redirect).map(|(error, _)| error),
            Some(OAuthErrorCode::TemporarilyUnavailable)
        );
        fixture.flows.sweep(NOW + 600);
        assert_eq!(fixture.flows.pending_consents(), 0);
        assert!(fixture.authorize(second).is_ok());
    }
}

mod durable {
    use super::*;

    #[test]
    fn nothing_is_recorded_unless_asked_for() {
        let mut fixture = fixture();
        fixture.code();
        assert!(fixture.flows.take_durable_changes().is_empty());
    }

    #[test]
    fn a_sign_in_with_offline_access_records_user_organization_grant_and_rotation() {
        let mut fixture = fixture();
        fixture.flows.record_durable_changes();
        let mut claims = ada();
        claims.organization_external_id = Some("engines".to_owned());
        let login = fixture.authorize(request("public-1")).unwrap();
        fixture.submit("conn_1", &login, claims).unwrap();
        let CallbackOutcome::Redirect(redirect) = fixture.callback("conn_1", &login).unwrap()
        else {
            panic!("unexpected consent");
        };
        let RedirectOutcome::Code(code) = redirect.outcome else {
            panic!("no code");
        };
        let grant = fixture.exchange(code.expose(), NOW).unwrap();
        let first = grant.refresh_token.unwrap();
        let second = fixture
            .refresh(first.expose(), NOW + 1)
            .unwrap()
            .refresh_token
            .unwrap();

        let changes = fixture.flows.take_durable_changes();
        let kinds: Vec<&str> = changes
            .iter()
            .map(|change| match change {
                DurableChange::UserCreated(_) => "user",
                DurableChange::OrganizationCreated(_) => "organization",
                DurableChange::GrantCreated(_) => "grant",
                DurableChange::RefreshTokenIssued(_) => "issued",
                DurableChange::RefreshTokenRotated { .. } => "rotated",
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "user",
                "organization",
                "grant",
                "issued",
                "rotated",
                "issued"
            ]
        );
        assert_eq!(
            changes[4],
            DurableChange::RefreshTokenRotated {
                token: Secret::new(first.expose())
            }
        );
        assert!(
            matches!(&changes[5], DurableChange::RefreshTokenIssued(token) if token.token.expose() == second.expose())
        );
        assert!(fixture.flows.take_durable_changes().is_empty());
        assert!(
            !format!("{changes:?}").contains(first.expose()),
            "refresh tokens are redacted in Debug"
        );
    }

    #[test]
    fn an_exported_state_imports_into_a_fresh_state_machine_that_carries_on() {
        let mut fixture = fixture();
        let client = fixture
            .flows
            .register_client(
                "res_1",
                ClientRegistration {
                    client_name: Some("Claude".to_owned()),
                    redirect_uris: vec!["http://127.0.0.1/cb".to_owned()],
                    scope: None,
                },
                NOW,
                &fixture.ids,
            )
            .unwrap();
        let code = fixture.code();
        let token = fixture.exchange(&code, NOW).unwrap().refresh_token.unwrap();
        let rotated = token.expose().to_owned();
        let current = fixture
            .refresh(&rotated, NOW)
            .unwrap()
            .refresh_token
            .unwrap();
        let exported = fixture.flows.export_durable();
        assert_eq!(
            exported.clients.len(),
            1,
            "configured clients are not durable"
        );
        assert_eq!(exported.refresh_tokens.len(), 2);

        let mut restarted = super::fixture();
        restarted.flows.import_durable(exported.clone());
        assert_eq!(restarted.flows.export_durable(), exported);
        assert!(
            restarted
                .flows
                .authorize(request(client.client_id.as_str()), NOW, &restarted.ids)
                .is_ok()
        );
        let refreshed = restarted.refresh(current.expose(), NOW + 1).unwrap();
        assert_eq!(refreshed.subject.as_str(), exported.users[0].user);
        assert_eq!(
            restarted.refresh(&rotated, NOW + 2).unwrap_err(),
            TokenError::InvalidGrant(GrantRefusal::RefreshTokenReused)
        );
        assert!(restarted.flows.export_durable().grants.is_empty());
    }
}

mod redeemed_codes {
    use super::*;

    #[test]
    fn grant_ids_of_random_ids_are_kept_as_numbers_and_others_as_text() {
        assert_eq!(
            grant_number("grant_123456789012345678"),
            Some(123_456_789_012_345_678)
        );
        assert_eq!(
            grant_number("grant_0001"),
            None,
            "leading zeros would not round-trip"
        );
        assert_eq!(grant_number("grant_"), None);
        assert_eq!(grant_number("grant_18446744073709551615"), None);
        assert_eq!(grant_number("other_12"), None);
        assert_eq!(size_of::<RedeemedCode>(), 16);
    }
}

mod scopes_within_permissions {
    use super::*;
    use crate::config::RoleConfig;

    /// `res_1` (consent auto) and `res_2` (consent prompt) intersect scopes with the user's
    /// permissions; `member` holds `mcp:read`, `admin` also `mcp:write`, `auditor` a permission
    /// that names no scope.
    fn intersecting() -> Fixture {
        let mut config = Config::from_toml_str(ENVIRONMENT).unwrap();
        config.roles = vec![
            RoleConfig {
                name: "member".to_owned(),
                permissions: vec!["mcp:read".to_owned()],
            },
            RoleConfig {
                name: "admin".to_owned(),
                permissions: vec!["mcp:read".to_owned(), "mcp:write".to_owned()],
            },
            RoleConfig {
                name: "auditor".to_owned(),
                permissions: vec!["audit:view".to_owned()],
            },
        ];
        for resource in &mut config.resources {
            resource.intersect_scopes_user_permission = true;
            resource.scopes.push("mcp:write".to_owned());
        }
        config.validate().unwrap();
        let environment_url = Url::parse("http://env.test").unwrap();
        Fixture {
            flows: Flows::new(&config, &environment_url),
            ids: SequentialIds::new(),
        }
    }

    fn with_roles(roles: &[&str]) -> UserClaims {
        UserClaims {
            roles: roles.iter().map(|role| (*role).to_owned()).collect(),
            ..ada()
        }
    }

    /// Signs in on `res_1` asking for `scope` as a user with `roles`; the granted scopes of the
    /// code's grant.
    fn granted(fixture: &mut Fixture, scope: &str, roles: &[&str]) -> IssuedGrant {
        let mut authorize = request("public-1");
        authorize.scope = Some(scope.to_owned());
        let login = fixture.authorize(authorize).unwrap();
        fixture.submit("conn_1", &login, with_roles(roles)).unwrap();
        let code = match fixture.callback("conn_1", &login).unwrap() {
            CallbackOutcome::Redirect(ClientRedirect {
                outcome: RedirectOutcome::Code(code),
                ..
            }) => code,
            other => panic!("expected a code, got {other:?}"),
        };
        fixture.exchange(code.expose(), NOW).unwrap()
    }

    const ASKED: &str = "openid email offline_access mcp:read mcp:write";

    #[test]
    fn a_scope_the_users_roles_do_not_grant_is_silently_left_out() {
        let mut fixture = intersecting();
        let member = granted(&mut fixture, ASKED, &["member"]);
        assert_eq!(
            member.scopes.to_space_separated(),
            "openid email offline_access mcp:read"
        );
        let admin = granted(&mut fixture, ASKED, &["admin"]);
        assert_eq!(admin.scopes.to_space_separated(), ASKED);
        let both = granted(&mut fixture, ASKED, &["member", "admin"]);
        assert_eq!(both.scopes.to_space_separated(), ASKED);
    }

    #[test]
    fn without_a_declared_role_only_the_openid_and_oauth_scopes_are_left() {
        let mut fixture = intersecting();
        for roles in [&[][..], &["stranger"][..], &["auditor"][..]] {
            let grant = granted(&mut fixture, ASKED, roles);
            assert_eq!(
                grant.scopes.to_space_separated(),
                "openid email offline_access",
                "{roles:?}"
            );
        }
        let nothing = granted(&mut fixture, "mcp:read", &[]);
        assert!(nothing.scopes.is_empty(), "{:?}", nothing.scopes);
        assert!(nothing.refresh_token.is_none());
    }

    #[test]
    fn the_narrowed_grant_is_what_a_refresh_gives_and_asking_beyond_it_is_invalid_scope() {
        let mut fixture = intersecting();
        let grant = granted(&mut fixture, ASKED, &["member"]);
        let token = grant.refresh_token.unwrap();
        let refreshed = fixture.refresh(token.expose(), NOW).unwrap();
        assert_eq!(
            refreshed.scopes.to_space_separated(),
            "openid email offline_access mcp:read"
        );
        let beyond = fixture.flows.refresh(
            RefreshRequest {
                client_id: ClientId::new("public-1"),
                refresh_token: presented(&fixture.flows, refreshed.refresh_token.unwrap().expose()),
                resource: None,
                scope: Some("mcp:read mcp:write".to_owned()),
            },
            NOW,
            &fixture.ids,
        );
        assert_eq!(
            beyond.unwrap_err(),
            TokenError::InvalidScope(vec!["mcp:write".to_owned()])
        );
    }

    #[test]
    fn the_consent_page_lists_and_remembers_what_will_be_granted() {
        let mut fixture = intersecting();
        let sign_in = |fixture: &mut Fixture, roles: &[&str]| {
            let mut authorize = request("public-2");
            authorize.scope = Some("mcp:read mcp:write".to_owned());
            let login = fixture.authorize(authorize).unwrap();
            fixture.submit("conn_2", &login, with_roles(roles)).unwrap();
            (
                fixture.callback("conn_2", &login).unwrap(),
                browser_of(&login),
            )
        };
        let (CallbackOutcome::NeedsConsent(prompt), browser) = sign_in(&mut fixture, &["member"])
        else {
            panic!("expected the consent page");
        };
        assert_eq!(prompt.scopes.as_slice(), ["mcp:read"]);
        fixture
            .flows
            .decide_consent(&prompt.consent_id, true, &browser, NOW, &fixture.ids)
            .unwrap();
        let listed = fixture.flows.list_consents(None, Some("public-2"));
        assert_eq!(listed[0].scopes, ["mcp:read"]);
        // The same request by the same member is granted the same: the consent covers it.
        assert!(matches!(
            sign_in(&mut fixture, &["member"]).0,
            CallbackOutcome::Redirect(_)
        ));
        // Promoted to admin, the same request would grant more: asked again.
        assert!(matches!(
            sign_in(&mut fixture, &["admin"]).0,
            CallbackOutcome::NeedsConsent(prompt) if prompt.scopes.as_slice() == ["mcp:read", "mcp:write"]
        ));
    }

    #[test]
    fn with_the_switch_off_roles_do_not_matter() {
        let mut fixture = fixture();
        let mut authorize = request("public-1");
        authorize.scope = Some("openid mcp:read".to_owned());
        let login = fixture.authorize(authorize).unwrap();
        fixture.submit("conn_1", &login, with_roles(&[])).unwrap();
        let Ok(CallbackOutcome::Redirect(ClientRedirect {
            outcome: RedirectOutcome::Code(code),
            ..
        })) = fixture.callback("conn_1", &login)
        else {
            panic!("expected a code");
        };
        let grant = fixture.exchange(code.expose(), NOW).unwrap();
        assert_eq!(grant.scopes.to_space_separated(), "openid mcp:read");
    }

    #[test]
    fn the_code_exchange_names_its_code_for_the_id_tokens_c_hash_and_a_refresh_none() {
        let mut fixture = fixture();
        let code = fixture.code();
        let grant = fixture.exchange(&code, NOW).unwrap();
        assert_eq!(
            grant
                .authorization_code
                .as_ref()
                .map(AuthorizationCode::expose),
            Some(code.as_str())
        );
        let refreshed = fixture
            .refresh(grant.refresh_token.unwrap().expose(), NOW)
            .unwrap();
        assert!(refreshed.authorization_code.is_none());
    }
}
