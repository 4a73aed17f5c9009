//! Micro-benchmarks (divan) of the emulator's hot paths without HTTP: token minting and checking,
//! the state-machine transitions of one flow on `Flows` directly, the discovery and JWKS
//! documents, and the flow inspector's recording. `cargo bench -p bench`.

use std::cell::RefCell;

use divan::Bencher;
use scalekit_emulator::flow::{
    AuthorizationCodeRequest, AuthorizeRequest, CallbackOutcome, ClientRegistration, Flows,
    IssuedGrant, LoginRedirect, PresentedBrowser, RedirectOutcome,
};
use scalekit_emulator::tokens::TokenMinter;
use scalekit_emulator::types::{AuthorizationCode, ClientId, PkceVerifier, pkce_s256};
use scalekit_emulator::{Config, KeyRing, RandomIds, Signer, metadata};
use scalekit_wire::{Secret, UserClaims};
use url::Url;

fn main() {
    divan::main();
}

const NOW: u64 = 1_800_000_000;
const VERIFIER: &str = "bench-verifier-0000000000000000000000000000000000000000";

/// The fixtures' environment with one DCR client, as the flows use it.
struct Fixture {
    config: Config,
    environment_url: Url,
    client_id: ClientId,
    redirect_uri: String,
    scope: String,
}

impl Fixture {
    fn new() -> (Fixture, Flows) {
        let mut config = Config::from_toml_str(include_str!("../../../fixtures/environment.toml"))
            .expect("the fixtures parse");
        // The authorize benchmark leaves every login request pending.
        config.max_pending_login_requests = usize::MAX;
        let environment_url = Url::parse("http://127.0.0.1:8400").expect("a URL");
        let mut flows = Flows::new(&config, &environment_url);
        let resource = &config.resources[0];
        let scope = resource
            .scopes
            .iter()
            .filter(|scope| *scope != "openid")
            .cloned()
            .collect::<Vec<_>>()
            .join(" ");
        let redirect_uri = "http://127.0.0.1:9/callback".to_owned();
        let registered = flows
            .register_client(
                &resource.id,
                ClientRegistration {
                    client_name: Some("bench".to_owned()),
                    redirect_uris: vec![redirect_uri.clone()],
                    scope: Some(scope.clone()),
                },
                NOW,
                &RandomIds,
            )
            .expect("registration");
        let fixture = Fixture {
            config,
            environment_url,
            client_id: registered.client_id,
            redirect_uri,
            scope,
        };
        (fixture, flows)
    }

    fn authorize_request(&self) -> AuthorizeRequest {
        let verifier = PkceVerifier::parse(VERIFIER).expect("a verifier");
        AuthorizeRequest {
            client_id: Some(self.client_id.to_string()),
            redirect_uri: Some(self.redirect_uri.clone()),
            response_type: Some("code".to_owned()),
            scope: Some(self.scope.clone()),
            state: Some("client-state".to_owned()),
            code_challenge: Some(pkce_s256(&verifier).as_str().to_owned()),
            code_challenge_method: Some("S256".to_owned()),
            nonce: None,
            resource: Some(self.config.resources[0].resource_indicator().to_owned()),
        }
    }

    fn connection(&self) -> &str {
        &self.config.connections[0].id
    }

    fn authorize(&self, flows: &mut Flows) -> LoginRedirect {
        flows
            .authorize(self.authorize_request(), NOW, &RandomIds)
            .unwrap_or_else(|_| panic!("authorize refused"))
    }

    fn submit_user(&self, flows: &mut Flows, login: &LoginRedirect) {
        flows
            .submit_user(
                self.connection(),
                login.login_request_id.as_str(),
                claims(),
                NOW,
                &RandomIds,
            )
            .expect("user accepted");
    }

    fn callback(&self, flows: &mut Flows, login: &LoginRedirect) -> String {
        let outcome = flows
            .partner_callback(
                self.connection(),
                login.state.as_str(),
                // The sign-in's cookie, as the edge hashes it from the request.
                &PresentedBrowser::of(login.browser_binding.as_ref()),
                NOW,
                &RandomIds,
            )
            .expect("callback accepted");
        match outcome {
            CallbackOutcome::Redirect(redirect) => match redirect.outcome {
                RedirectOutcome::Code(code) => code.expose().to_owned(),
                RedirectOutcome::Error { error, .. } => panic!("{error}"),
            },
            CallbackOutcome::NeedsConsent(_) => panic!("consent is auto in the fixtures"),
        }
    }

    fn exchange(&self, flows: &mut Flows, code: String) -> IssuedGrant {
        flows
            .exchange_code(
                AuthorizationCodeRequest {
                    client_id: self.client_id.clone(),
                    code: AuthorizationCode::new(code),
                    code_verifier: Some(Secret::new(VERIFIER)),
                    redirect_uri: Some(self.redirect_uri.clone()),
                    resource: None,
                },
                NOW,
                &RandomIds,
            )
            .expect("code accepted")
    }
}

fn claims() -> UserClaims {
    UserClaims {
        sub: Some("bench-user-1".to_owned()),
        email: Some("bench-user-1@example.test".to_owned()),
        email_verified: Some(true),
        name: Some("Bench User".to_owned()),
        ..UserClaims::default()
    }
}

mod flow {
    use super::*;

    /// All four transitions of one flow.
    #[divan::bench]
    fn whole_flow(bencher: Bencher) {
        let (fixture, flows) = Fixture::new();
        let flows = RefCell::new(flows);
        bencher.bench_local(|| {
            let mut flows = flows.borrow_mut();
            let login = fixture.authorize(&mut flows);
            fixture.submit_user(&mut flows, &login);
            let code = fixture.callback(&mut flows, &login);
            fixture.exchange(&mut flows, code)
        });
    }

    #[divan::bench]
    fn authorize(bencher: Bencher) {
        let (fixture, flows) = Fixture::new();
        let flows = RefCell::new(flows);
        bencher.bench_local(|| fixture.authorize(&mut flows.borrow_mut()));
    }

    #[divan::bench]
    fn submit_user(bencher: Bencher) {
        let (fixture, flows) = Fixture::new();
        let flows = RefCell::new(flows);
        bencher
            .with_inputs(|| fixture.authorize(&mut flows.borrow_mut()))
            .bench_local_refs(|login| fixture.submit_user(&mut flows.borrow_mut(), login));
    }

    #[divan::bench]
    fn partner_callback(bencher: Bencher) {
        let (fixture, flows) = Fixture::new();
        let flows = RefCell::new(flows);
        bencher
            .with_inputs(|| {
                let mut flows = flows.borrow_mut();
                let login = fixture.authorize(&mut flows);
                fixture.submit_user(&mut flows, &login);
                login
            })
            .bench_local_refs(|login| fixture.callback(&mut flows.borrow_mut(), login));
    }

    #[divan::bench]
    fn exchange_code(bencher: Bencher) {
        let (fixture, flows) = Fixture::new();
        let flows = RefCell::new(flows);
        bencher
            .with_inputs(|| {
                let mut flows = flows.borrow_mut();
                let login = fixture.authorize(&mut flows);
                fixture.submit_user(&mut flows, &login);
                fixture.callback(&mut flows, &login)
            })
            .bench_local_values(|code| fixture.exchange(&mut flows.borrow_mut(), code));
    }
}

mod tokens {
    use super::*;

    /// The access token of a flow without `openid`: one RS256 signature.
    #[divan::bench]
    fn mint_access_token(bencher: Bencher) {
        let (fixture, mut flows) = Fixture::new();
        let login = fixture.authorize(&mut flows);
        fixture.submit_user(&mut flows, &login);
        let code = fixture.callback(&mut flows, &login);
        let grant = fixture.exchange(&mut flows, code);
        let signer = Signer::generate().expect("a key");
        let minter = TokenMinter::new(fixture.environment_url.as_str());
        let resource = &fixture.config.resources[0];
        bencher.bench_local(|| {
            minter
                .mint_for_grant(&signer, &grant, resource, NOW, &RandomIds)
                .expect("minted")
        });
    }

    #[divan::bench]
    fn mint_management_token(bencher: Bencher) {
        let (fixture, _) = Fixture::new();
        let signer = Signer::generate().expect("a key");
        let minter = TokenMinter::new(fixture.environment_url.as_str());
        let client = &fixture.config.api_client;
        bencher.bench_local(|| {
            minter
                .mint_management(&signer, &client.client_id, 3600, NOW, &RandomIds)
                .expect("minted")
        });
    }

    /// What the first user POST with a management token pays: its RS256 verification (a fresh
    /// minter each time, so nothing is remembered).
    #[divan::bench]
    fn verify_management_token_first_time(bencher: Bencher) {
        let (fixture, _) = Fixture::new();
        let keys = KeyRing::new(Signer::generate().expect("a key"));
        let client = &fixture.config.api_client;
        let token = TokenMinter::new(fixture.environment_url.as_str())
            .mint_management(&keys.signing(), &client.client_id, 3600, NOW, &RandomIds)
            .expect("minted")
            .access_token;
        bencher
            .with_inputs(|| TokenMinter::new(fixture.environment_url.as_str()))
            .bench_local_values(|minter| {
                minter
                    .verify_management(&keys, token.expose(), &client.client_id, NOW)
                    .expect("valid")
            });
    }

    /// What every later user POST with the same management token pays (the verification is
    /// remembered; the times and subject are checked again).
    #[divan::bench]
    fn verify_management_token(bencher: Bencher) {
        let (fixture, _) = Fixture::new();
        let keys = KeyRing::new(Signer::generate().expect("a key"));
        let minter = TokenMinter::new(fixture.environment_url.as_str());
        let client = &fixture.config.api_client;
        let token = minter
            .mint_management(&keys.signing(), &client.client_id, 3600, NOW, &RandomIds)
            .expect("minted")
            .access_token;
        bencher.bench_local(|| {
            minter
                .verify_management(&keys, token.expose(), &client.client_id, NOW)
                .expect("valid")
        });
    }
}

mod documents {
    use super::*;

    #[divan::bench]
    fn resource_metadata_json(bencher: Bencher) {
        let (fixture, _) = Fixture::new();
        let resource = &fixture.config.resources[0];
        bencher.bench_local(|| {
            serde_json::to_vec(&metadata::resource_metadata(
                "http://127.0.0.1:8400",
                &fixture.config,
                resource,
            ))
            .expect("json")
        });
    }

    #[divan::bench]
    fn jwks_json(bencher: Bencher) {
        let signer = Signer::generate().expect("a key");
        bencher.bench_local(|| serde_json::to_vec(&signer.jwks()).expect("json"));
    }
}

mod inspector {
    use flow_inspector::{Actor, Endpoint, Exchange, HopFacts, Inspector};
    use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};

    use super::*;

    /// A token request with its answer, as the recording layer hands it over.
    fn token_exchange(inspector: &Inspector) -> Exchange {
        let mut request_headers = HeaderMap::new();
        for (name, value) in [
            ("host", "127.0.0.1:8400"),
            ("content-type", "application/x-www-form-urlencoded"),
            ("accept", "application/json"),
            ("user-agent", "bench"),
        ] {
            request_headers.insert(name, HeaderValue::from_static(value));
        }
        let mut response_headers = HeaderMap::new();
        response_headers.insert("content-type", HeaderValue::from_static("application/json"));
        response_headers.insert("cache-control", HeaderValue::from_static("no-store"));
        let request_body = format!(
            "grant_type=authorization_code&code=code-{seq}&client_id=skc_bench\
             &redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback&code_verifier={VERIFIER}",
            seq = inspector.next_seq(),
        );
        let response_body = serde_json::json!({
            "access_token": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJiZW5jaC11c2VyLTEifQ.c2lnbmF0dXJl",
            "refresh_token": "rt_bench_0000000000000000",
            "token_type": "Bearer",
            "expires_in": 3600,
            "scope": "mcp:read",
        })
        .to_string();
        Exchange {
            served_by: Actor::Emulator,
            base_url: std::sync::Arc::from("http://127.0.0.1:8400"),
            seq: inspector.next_seq(),
            started_at_ms: NOW * 1000,
            duration_us: 900,
            method: Method::POST,
            uri: Uri::from_static("/oauth/token"),
            request_headers,
            request_body: Some(request_body.into_bytes()),
            status: StatusCode::OK,
            response_headers,
            response_body: Some(response_body.into_bytes()),
            // What the emulator's token handler attaches to its answer.
            hop_facts: Some(HopFacts {
                endpoint: Endpoint::TokenAuthorizationCode,
                failed: None,
            }),
            error_summary: None,
        }
    }

    /// Recording one token exchange while nobody has the inspector open (the queue is emptied
    /// now and then, outside the measurement, so that it never fills).
    #[divan::bench]
    fn record_token_exchange(bencher: Bencher) {
        let inspector = Inspector::new();
        let recorded = std::cell::Cell::new(0_usize);
        bencher
            .with_inputs(|| {
                recorded.set(recorded.get() + 1);
                if recorded
                    .get()
                    .is_multiple_of(flow_inspector::MAX_PENDING / 2)
                {
                    inspector.clear();
                }
                token_exchange(&inspector)
            })
            .bench_local_values(|exchange| inspector.record(exchange));
    }

    /// The same under sustained load: the queue is full, so each exchange recorded processes
    /// the oldest queued one.
    #[divan::bench]
    fn record_token_exchange_queue_full(bencher: Bencher) {
        let inspector = Inspector::new();
        for _ in 0..flow_inspector::MAX_PENDING {
            inspector.record(token_exchange(&inspector));
        }
        bencher
            .with_inputs(|| token_exchange(&inspector))
            .bench_local_values(|exchange| inspector.record(exchange));
    }

    /// The same with the live page open (a subscriber to updates).
    #[divan::bench]
    fn record_token_exchange_with_subscriber(bencher: Bencher) {
        let inspector = Inspector::new();
        let mut updates = inspector.subscribe();
        bencher
            .with_inputs(|| {
                while updates.try_recv().is_ok() {}
                token_exchange(&inspector)
            })
            .bench_local_values(|exchange| inspector.record(exchange));
    }
}
