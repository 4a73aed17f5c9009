//! Round trips through the state database, in memory and on disk.

use scalekit_wire::{Secret, UserClaims};
use url::Url;

use super::*;
use crate::config::Config;
use crate::flow::{
    AuthorizationCodeRequest, AuthorizeRequest, CallbackOutcome, ClientRegistration, Flows,
    GrantRefusal, PresentedBrowser, RedirectOutcome, RefreshRequest, TokenError,
};
use crate::ids::SequentialIds;
use crate::types::{AuthorizationCode, ClientId, PkceVerifier, RefreshToken, pkce_s256};

const NOW: u64 = 1_800_000_000;
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const FIXTURE: &str = include_str!("../../../../fixtures/environment.toml");

/// A unique, empty directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default();
        let path = std::env::temp_dir().join(format!(
            "scalekit-emulator-store-{name}-{}-{nanos}",
            std::process::id()
        ));
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sign_in() -> StoredSignIn {
    StoredSignIn {
        client: "m2m_1".to_owned(),
        redirect_uri: "http://127.0.0.1:5000/cb".to_owned(),
        client_state: Some("xyz".to_owned()),
        nonce: None,
        scopes: vec!["openid".to_owned(), "offline_access".to_owned()],
        challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".to_owned(),
        resource: "res_1".to_owned(),
        connection: "conn_1".to_owned(),
        user: "usr_1".to_owned(),
        external_sub: "ada".to_owned(),
        claims: UserClaims {
            sub: Some("ada".to_owned()),
            email: Some("ada@example.com".to_owned()),
            roles: vec!["admin".to_owned()],
            ..UserClaims::default()
        },
        organization: Some("org_1".to_owned()),
        session: "ses_1".to_owned(),
        auth_time: NOW,
    }
}

fn token(value: &str, grant: &str, expires_at: u64) -> StoredRefreshToken {
    StoredRefreshToken {
        token: Secret::new(value),
        grant_id: grant.to_owned(),
        client: "m2m_1".to_owned(),
        expires_at,
        rotated: false,
    }
}

fn grant(grant_id: &str) -> StoredGrant {
    StoredGrant {
        grant_id: grant_id.to_owned(),
        sign_in: sign_in(),
    }
}

fn agent(client_id: &str, created_at: u64) -> StoredAgent {
    StoredAgent {
        client_id: client_id.to_owned(),
        name: Some("nightly".to_owned()),
        resource: "res_1".to_owned(),
        scopes: vec!["mcp:read".to_owned()],
        token_lifetime_secs: 60,
        secret_sha256: crate::types::ClientSecretDigest::of("agent-secret").to_hex(),
        created_at,
    }
}

/// One change of each kind.
fn changes() -> Vec<DurableChange> {
    vec![
        DurableChange::ClientRegistered(StoredClient {
            client_id: "m2m_1".to_owned(),
            client_name: Some("Claude".to_owned()),
            redirect_uris: vec!["http://127.0.0.1/cb".to_owned(), "app:/cb".to_owned()],
            resource: "res_1".to_owned(),
        }),
        DurableChange::AgentCreated(agent("m2m_2", NOW)),
        DurableChange::AgentCreated(agent("m2m_3", NOW + 1)),
        DurableChange::AgentDeleted {
            client_id: "m2m_3".to_owned(),
        },
        DurableChange::UserCreated(StoredUser {
            connection: "conn_1".to_owned(),
            external_sub: "ada".to_owned(),
            user: "usr_1".to_owned(),
        }),
        DurableChange::OrganizationCreated(StoredOrganization {
            connection: "conn_1".to_owned(),
            external_id: "engines".to_owned(),
            organization: "org_1".to_owned(),
        }),
        DurableChange::ConsentRemembered(StoredConsent {
            consent_id: "usrcnst_1".to_owned(),
            user: "usr_1".to_owned(),
            client: "m2m_1".to_owned(),
            resource: "res_1".to_owned(),
            scopes: vec!["openid".to_owned(), "mcp:read".to_owned()],
            created_at: NOW,
        }),
        DurableChange::GrantCreated(Box::new(grant("grant_1"))),
        DurableChange::RefreshTokenIssued(token("rt-1", "grant_1", NOW + 100)),
        DurableChange::RefreshTokenRotated {
            token: Secret::new("rt-1"),
        },
        DurableChange::RefreshTokenIssued(token("rt-2", "grant_1", NOW + 200)),
        DurableChange::IdpUserCreated(StoredIdpUser {
            idp: "acme-idp".to_owned(),
            external_sub: "00u-ada".to_owned(),
            user: "usr_2".to_owned(),
        }),
        DurableChange::AssertionRedeemed(StoredAssertion {
            digest: "00112233445566778899aabbccddeeff".to_owned(),
            expires_at: NOW + 300,
        }),
    ]
}

fn expected() -> DurableState {
    let DurableChange::ClientRegistered(client) = &changes()[0] else {
        unreachable!("the first change registers a client")
    };
    DurableState {
        clients: vec![client.clone()],
        agents: vec![agent("m2m_2", NOW)],
        users: vec![StoredUser {
            connection: "conn_1".to_owned(),
            external_sub: "ada".to_owned(),
            user: "usr_1".to_owned(),
        }],
        organizations: vec![StoredOrganization {
            connection: "conn_1".to_owned(),
            external_id: "engines".to_owned(),
            organization: "org_1".to_owned(),
        }],
        consents: vec![StoredConsent {
            consent_id: "usrcnst_1".to_owned(),
            user: "usr_1".to_owned(),
            client: "m2m_1".to_owned(),
            resource: "res_1".to_owned(),
            scopes: vec!["openid".to_owned(), "mcp:read".to_owned()],
            created_at: NOW,
        }],
        grants: vec![grant("grant_1")],
        refresh_tokens: vec![
            StoredRefreshToken {
                rotated: true,
                ..token("rt-1", "grant_1", NOW + 100)
            },
            token("rt-2", "grant_1", NOW + 200),
        ],
        idp_users: vec![StoredIdpUser {
            idp: "acme-idp".to_owned(),
            external_sub: "00u-ada".to_owned(),
            user: "usr_2".to_owned(),
        }],
        assertions: vec![StoredAssertion {
            digest: "00112233445566778899aabbccddeeff".to_owned(),
            expires_at: NOW + 300,
        }],
    }
}

#[test]
fn every_kind_of_change_round_trips_through_the_database() {
    let store = Store::open_in_memory().unwrap();
    assert_eq!(store.load().unwrap(), DurableState::default());
    store.apply(&changes()).unwrap();
    assert_eq!(store.load().unwrap(), expected());
}

#[test]
fn a_reset_drops_the_created_agents() {
    let store = Store::open_in_memory().unwrap();
    store.apply(&changes()).unwrap();
    store.apply(&[DurableChange::Reset]).unwrap();
    assert_eq!(store.load().unwrap(), DurableState::default());
}

#[test]
fn a_revoked_grant_takes_its_refresh_tokens_with_it() {
    let store = Store::open_in_memory().unwrap();
    store.apply(&changes()).unwrap();
    store
        .apply(&[
            DurableChange::GrantCreated(Box::new(grant("grant_2"))),
            DurableChange::RefreshTokenIssued(token("rt-3", "grant_2", NOW + 100)),
            DurableChange::GrantRevoked {
                grant_id: "grant_1".to_owned(),
            },
        ])
        .unwrap();
    let loaded = store.load().unwrap();
    assert_eq!(loaded.grants, [grant("grant_2")]);
    assert_eq!(loaded.refresh_tokens, [token("rt-3", "grant_2", NOW + 100)]);
}

#[test]
fn the_sweep_deletes_expired_refresh_tokens_and_the_grants_left_without_one() {
    let store = Store::open_in_memory().unwrap();
    store.apply(&changes()).unwrap();
    store
        .apply(&[
            DurableChange::GrantCreated(Box::new(grant("grant_2"))),
            DurableChange::RefreshTokenIssued(token("rt-3", "grant_2", NOW + 150)),
            DurableChange::Expired { now: NOW + 150 },
        ])
        .unwrap();
    let loaded = store.load().unwrap();
    assert_eq!(loaded.grants, [grant("grant_1")]);
    assert_eq!(loaded.refresh_tokens, [token("rt-2", "grant_1", NOW + 200)]);
    assert_eq!(loaded.users.len(), 1, "users are not time-bound");
    assert_eq!(
        loaded.assertions.len(),
        1,
        "the assertion lives until NOW + 300"
    );
    store
        .apply(&[DurableChange::Expired { now: NOW + 300 }])
        .unwrap();
    let loaded = store.load().unwrap();
    assert!(loaded.assertions.is_empty(), "gone at its exp");
    assert_eq!(loaded.idp_users.len(), 1, "users are not time-bound");
}

#[test]
fn an_identity_providers_key_is_saved_and_replaced() {
    let store = Store::open_in_memory().unwrap();
    assert_eq!(store.idp_signing_key("acme-idp").unwrap(), None);
    let first = Signer::generate().unwrap();
    store.save_idp_signing_key("acme-idp", &first).unwrap();
    let stored = store.idp_signing_key("acme-idp").unwrap().unwrap();
    assert_eq!(stored.kid.as_deref(), Some(first.kid()));
    assert_eq!(stored.pem, *first.private_key_pem());
    assert_eq!(store.idp_signing_key("other").unwrap(), None);
}

#[test]
fn the_key_ring_is_saved_in_order_and_replaced() {
    let store = Store::open_in_memory().unwrap();
    assert!(store.signing_keys().unwrap().is_empty());
    let (first, second, third) = (
        Secret::new("first"),
        Secret::new("second"),
        Secret::new("third"),
    );
    store
        .save_signing_keys(&[("snk_1", &first), ("snk_2", &second)])
        .unwrap();
    store
        .save_signing_keys(&[("snk_3", &third), ("snk_1", &first)])
        .unwrap();
    assert_eq!(
        store.signing_keys().unwrap(),
        vec![
            StoredSigningKey {
                kid: Some("snk_3".to_owned()),
                pem: third,
            },
            StoredSigningKey {
                kid: Some("snk_1".to_owned()),
                pem: first,
            },
        ]
    );
}

#[test]
fn a_key_ring_of_real_keys_round_trips_and_a_reset_keeps_it() {
    let store = Store::open_in_memory().unwrap();
    let keys = vec![
        Arc::new(Signer::generate().unwrap()),
        Arc::new(Signer::generate().unwrap()),
    ];
    store.save_key_ring(&keys).unwrap();
    store.apply(&[DurableChange::Reset]).unwrap();
    let stored = store.signing_keys().unwrap();
    let kids: Vec<Option<String>> = stored.iter().map(|key| key.kid.clone()).collect();
    assert_eq!(
        kids,
        vec![
            Some(keys[0].kid().to_owned()),
            Some(keys[1].kid().to_owned())
        ]
    );
    assert_eq!(
        Signer::from_pem(stored[1].pem.expose()).unwrap().kid(),
        keys[1].kid()
    );
}

#[test]
fn a_version_3_database_keeps_its_signing_key_and_kid() {
    let directory = TempDir::new("v3");
    std::fs::create_dir_all(&directory.0).unwrap();
    let path = directory.0.join(DATABASE_FILE);
    let signer = Signer::generate().unwrap();
    let connection = Connection::open(&path).unwrap();
    connection
        .execute_batch(&format!(
            "{} {} {} PRAGMA user_version = 3;",
            schema::MIGRATIONS[0],
            schema::MIGRATIONS[1],
            schema::MIGRATIONS[2]
        ))
        .unwrap();
    connection
        .execute(
            "INSERT INTO signing_key (id, pem) VALUES (1, ?1)",
            params![signer.private_key_pem().expose()],
        )
        .unwrap();
    drop(connection);

    let store = Store::open(&directory.0).unwrap();
    let stored = store.signing_keys().unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].kid, None, "SQL cannot derive the kid");
    assert_eq!(stored[0].pem, *signer.private_key_pem());
    assert_eq!(
        Signer::from_pem(stored[0].pem.expose()).unwrap().kid(),
        signer.kid()
    );
    let version: i64 = store
        .connection()
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, schema::SCHEMA_VERSION);
    let old_tables: i64 = store
        .connection()
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'signing_key'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(old_tables, 0, "no copy of the private key is left behind");
}

#[test]
fn a_version_3_database_without_a_key_migrates_to_an_empty_ring() {
    let directory = TempDir::new("v3-empty");
    std::fs::create_dir_all(&directory.0).unwrap();
    let connection = Connection::open(directory.0.join(DATABASE_FILE)).unwrap();
    connection
        .execute_batch(&format!(
            "{} {} {} PRAGMA user_version = 3;",
            schema::MIGRATIONS[0],
            schema::MIGRATIONS[1],
            schema::MIGRATIONS[2]
        ))
        .unwrap();
    drop(connection);
    assert!(
        Store::open(&directory.0)
            .unwrap()
            .signing_keys()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_reopened_database_keeps_everything() {
    let directory = TempDir::new("reopen");
    {
        let store = Store::open(&directory.0.join("nested")).unwrap();
        store
            .save_signing_keys(&[("snk_1", &Secret::new("pem"))])
            .unwrap();
        store.apply(&changes()).unwrap();
    }
    let store = Store::open(&directory.0.join("nested")).unwrap();
    assert_eq!(store.path(), directory.0.join("nested").join(DATABASE_FILE));
    assert_eq!(store.load().unwrap(), expected());
    assert_eq!(store.signing_keys().unwrap().len(), 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(store.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn a_database_from_a_newer_emulator_is_refused_with_a_clear_error() {
    let directory = TempDir::new("newer");
    std::fs::create_dir_all(&directory.0).unwrap();
    let path = directory.0.join(DATABASE_FILE);
    Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    let error = Store::open(&directory.0).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "state database {} has schema version 99, newer than this emulator's 6; \
             use a newer emulator or another --state-dir",
            path.display()
        )
    );
}

#[test]
fn a_version_1_database_gives_its_consents_ids_and_keeps_them() {
    let directory = TempDir::new("v1");
    std::fs::create_dir_all(&directory.0).unwrap();
    let path = directory.0.join(DATABASE_FILE);
    let connection = Connection::open(&path).unwrap();
    connection
        .execute_batch(&format!(
            "{} PRAGMA user_version = 1;
             INSERT INTO consents (user_id, client_id, resource_id, scopes)
             VALUES ('usr_1', 'm2m_1', 'res_1', 'openid mcp:read');",
            schema::MIGRATIONS[0]
        ))
        .unwrap();
    drop(connection);
    let first = Store::open(&directory.0).unwrap().load().unwrap().consents;
    assert_eq!(first.len(), 1);
    assert!(first[0].consent_id.starts_with("usrcnst_"), "{first:?}");
    assert_eq!(first[0].created_at, 0);
    assert_eq!(first[0].scopes, vec!["openid", "mcp:read"]);
    let again = Store::open(&directory.0).unwrap().load().unwrap().consents;
    assert_eq!(again, first, "the id is stable across restarts");
}

#[test]
fn a_revoked_consent_is_deleted() {
    let store = Store::open_in_memory().unwrap();
    store.apply(&changes()).unwrap();
    store
        .apply(&[DurableChange::ConsentRevoked {
            consent_id: "usrcnst_1".to_owned(),
        }])
        .unwrap();
    assert!(store.load().unwrap().consents.is_empty());
}

#[test]
fn a_stored_value_this_emulator_did_not_write_is_a_clear_error() {
    let store = Store::open_in_memory().unwrap();
    store
        .connection()
        .execute(
            "INSERT INTO grants (grant_id, sign_in) VALUES ('grant_x', 'not json')",
            [],
        )
        .unwrap();
    let error = store.load().unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("state database :memory:: grant grant_x sign_in: "),
        "{error}"
    );
}

/// What the state machine records, applied to the store, is exactly what it exports; and a
/// state machine rebuilt from the store carries on where the first one stopped.
#[test]
fn the_recorded_changes_rebuild_the_state_machine() {
    let mut config = Config::from_toml_str(FIXTURE).unwrap();
    config.resources[0].consent = crate::config::ConsentMode::Prompt;
    let environment_url = Url::parse("http://env.test").unwrap();
    let ids = SequentialIds::new();
    let store = Store::open_in_memory().unwrap();
    let mut flows = Flows::new(&config, &environment_url);
    flows.record_durable_changes();

    let resource = config.resources[0].id.clone();
    let client = flows
        .register_client(
            &resource,
            ClientRegistration {
                client_name: None,
                redirect_uris: vec!["http://127.0.0.1/cb".to_owned()],
                scope: None,
            },
            NOW,
            &ids,
        )
        .unwrap();
    let login = flows
        .authorize(
            AuthorizeRequest {
                client_id: Some(client.client_id.to_string()),
                redirect_uri: Some("http://127.0.0.1:5000/cb".to_owned()),
                response_type: Some("code".to_owned()),
                scope: Some("openid offline_access mcp:read".to_owned()),
                state: Some("s".to_owned()),
                code_challenge: Some(
                    pkce_s256(&PkceVerifier::parse(VERIFIER).unwrap())
                        .as_str()
                        .to_owned(),
                ),
                code_challenge_method: Some("S256".to_owned()),
                nonce: None,
                resource: None,
            },
            NOW,
            &ids,
        )
        .unwrap();
    let connection = config.resources[0].connection.clone();
    let claims = UserClaims {
        sub: Some("ada".to_owned()),
        email: Some("ada@example.com".to_owned()),
        organization_external_id: Some("engines".to_owned()),
        ..UserClaims::default()
    };
    flows
        .submit_user(
            &connection,
            login.login_request_id.as_str(),
            claims,
            NOW,
            &ids,
        )
        .unwrap();
    let CallbackOutcome::NeedsConsent(prompt) = flows
        .partner_callback(
            &connection,
            login.state.as_str(),
            &PresentedBrowser::of(login.browser_binding.as_ref()),
            NOW,
            &ids,
        )
        .unwrap()
    else {
        panic!("no consent page");
    };
    let redirect = flows
        .decide_consent(
            &prompt.consent_id,
            true,
            &PresentedBrowser::of(login.browser_binding.as_ref()),
            NOW,
            &ids,
        )
        .unwrap();
    let RedirectOutcome::Code(code) = redirect.outcome else {
        panic!("no code");
    };
    let first = flows
        .exchange_code(
            AuthorizationCodeRequest {
                client_id: client.client_id.clone(),
                code: code.clone(),
                code_verifier: Some(Secret::new(VERIFIER)),
                redirect_uri: Some("http://127.0.0.1:5000/cb".to_owned()),
                resource: None,
            },
            NOW,
            &ids,
        )
        .unwrap()
        .refresh_token
        .unwrap();
    // Grants live in memory here: every token is presented without a store read.
    let refresh = |flows: &Flows, token: &RefreshToken| RefreshRequest {
        client_id: client.client_id.clone(),
        refresh_token: flows.present(token.clone()).expect("grants live in memory"),
        resource: None,
        scope: None,
    };
    let second = flows
        .refresh(refresh(&flows, &first), NOW + 1, &ids)
        .unwrap()
        .refresh_token
        .unwrap();
    store.apply(&flows.take_durable_changes()).unwrap();

    let loaded = store.load().unwrap();
    assert_eq!(loaded, flows.export_durable());
    assert_eq!(loaded.clients.len(), 1);
    assert_eq!(loaded.consents.len(), 1);
    assert_eq!(loaded.organizations.len(), 1);

    let mut restarted = Flows::new(&config, &environment_url);
    restarted.import_durable(loaded);
    restarted.record_durable_changes();
    let third = restarted
        .refresh(refresh(&restarted, &second), NOW + 2, &ids)
        .unwrap();
    assert_eq!(third.client_id, ClientId::new(client.client_id.as_str()));
    assert_eq!(third.claims.sub.as_deref(), Some("ada"));
    assert!(
        restarted
            .refresh(refresh(&restarted, &first), NOW + 3, &ids)
            .is_err()
    );
    store.apply(&restarted.take_durable_changes()).unwrap();
    let after_reuse = store.load().unwrap();
    assert!(after_reuse.grants.is_empty());
    assert!(after_reuse.refresh_tokens.is_empty());
    assert_eq!(after_reuse, restarted.export_durable());
}

/// One flow with `offline_access` through locked guards, as the HTTP edge runs it; returns the
/// redeemed code and the refresh token.
fn flow_through_guards(
    flows: &Mutex<Flows>,
    store: &Store,
    config: &Config,
    client: &ClientId,
    ids: &SequentialIds,
) -> (String, String) {
    let guard = || FlowsGuard::new(flows.lock().unwrap(), Some(store));
    let login = guard()
        .authorize(
            AuthorizeRequest {
                client_id: Some(client.to_string()),
                redirect_uri: Some("http://127.0.0.1:5000/cb".to_owned()),
                response_type: Some("code".to_owned()),
                scope: Some("offline_access mcp:read".to_owned()),
                state: Some("s".to_owned()),
                code_challenge: Some(
                    pkce_s256(&PkceVerifier::parse(VERIFIER).unwrap())
                        .as_str()
                        .to_owned(),
                ),
                code_challenge_method: Some("S256".to_owned()),
                nonce: None,
                resource: None,
            },
            NOW,
            ids,
        )
        .unwrap();
    let connection = config.resources[0].connection.clone();
    let claims = UserClaims {
        sub: Some("ada".to_owned()),
        email: Some("ada@example.com".to_owned()),
        ..UserClaims::default()
    };
    guard()
        .submit_user(
            &connection,
            login.login_request_id.as_str(),
            claims,
            NOW,
            ids,
        )
        .unwrap();
    let CallbackOutcome::Redirect(redirect) = guard()
        .partner_callback(
            &connection,
            login.state.as_str(),
            &PresentedBrowser::of(login.browser_binding.as_ref()),
            NOW,
            ids,
        )
        .unwrap()
    else {
        panic!("consent is auto in the fixture");
    };
    let RedirectOutcome::Code(code) = redirect.outcome else {
        panic!("no code");
    };
    let refresh_token = guard()
        .exchange_code(
            AuthorizationCodeRequest {
                client_id: client.clone(),
                code: code.clone(),
                code_verifier: Some(Secret::new(VERIFIER)),
                redirect_uri: Some("http://127.0.0.1:5000/cb".to_owned()),
                resource: None,
            },
            NOW,
            ids,
        )
        .unwrap()
        .refresh_token
        .unwrap();
    (code.expose().to_owned(), refresh_token.expose().to_owned())
}

/// With grants in the store (as the emulator runs with a state directory), memory holds no grant
/// or refresh token between requests, and refresh, rotation, reuse detection and expiry answer
/// exactly as they do with everything in memory.
#[test]
fn grants_kept_in_the_store_are_loaded_on_use_and_answer_as_in_memory() {
    let config = Config::from_toml_str(FIXTURE).unwrap();
    let environment_url = Url::parse("http://env.test").unwrap();
    let ids = SequentialIds::new();
    let store = Store::open_in_memory().unwrap();
    let mut state = Flows::new(&config, &environment_url);
    state.import_durable(store.load_resident().unwrap());
    state.evict_grants();
    state.record_durable_changes();
    let flows = Mutex::new(state);
    let guard = || FlowsGuard::new(flows.lock().unwrap(), Some(&store));

    let client = guard()
        .register_client(
            &config.resources[0].id,
            ClientRegistration {
                client_name: None,
                redirect_uris: vec!["http://127.0.0.1:5000/cb".to_owned()],
                scope: None,
            },
            NOW,
            &ids,
        )
        .unwrap()
        .client_id;
    let (_, first) = flow_through_guards(&flows, &store, &config, &client, &ids);
    assert_eq!(
        guard().pending_counts().2,
        1,
        "a recent refresh token stays in memory"
    );
    // As when more than RESIDENT_GRANTS were made since: every use below loads from the store.
    guard().evict_grants();
    assert_eq!(guard().pending_counts().2, 0);
    let stored = store.load().unwrap();
    assert_eq!((stored.grants.len(), stored.refresh_tokens.len()), (1, 1));

    // The state machine reached through the guard cannot present a token it does not hold
    // without the store's answer: `Flows::present` asks for the lookup.
    assert!(guard().present(RefreshToken::new(first.as_str())).is_err());
    // As the HTTP edge does: the token presented through the guard, its grant read from the store.
    let refresh = |token: &str, now: u64| {
        let mut flows = guard();
        let refresh_token = flows.present_refresh_token(RefreshToken::new(token));
        flows.refresh(
            RefreshRequest {
                client_id: client.clone(),
                refresh_token,
                resource: None,
                scope: None,
            },
            now,
            &ids,
        )
    };
    let issued = refresh(&first, NOW + 1).unwrap();
    assert_eq!(issued.claims.sub.as_deref(), Some("ada"));
    let second = issued.refresh_token.unwrap();
    guard().evict_grants();
    let stored = store.load().unwrap();
    assert_eq!(stored.refresh_tokens.len(), 2);
    assert!(
        stored
            .refresh_tokens
            .iter()
            .any(|token| token.token.expose() == first && token.rotated)
    );

    // Reusing the rotated token revokes the grant, in the store too.
    let reused = refresh(&first, NOW + 2).unwrap_err();
    guard().evict_grants();
    assert_eq!(
        reused,
        TokenError::InvalidGrant(GrantRefusal::RefreshTokenReused)
    );
    let gone = refresh(second.expose(), NOW + 2).unwrap_err();
    assert_eq!(
        gone,
        TokenError::InvalidGrant(GrantRefusal::RefreshTokenUnknown)
    );
    let stored = store.load().unwrap();
    assert!(stored.grants.is_empty() && stored.refresh_tokens.is_empty());

    // An expired token is refused as expired once, then is unknown, as in memory.
    let (_, third) = flow_through_guards(&flows, &store, &config, &client, &ids);
    guard().evict_grants();
    let late = NOW + config.resources[0].refresh_token_lifetime_secs;
    assert_eq!(
        refresh(&third, late).unwrap_err(),
        TokenError::InvalidGrant(GrantRefusal::RefreshTokenExpired)
    );
    guard().evict_grants();
    assert_eq!(
        refresh(&third, late).unwrap_err(),
        TokenError::InvalidGrant(GrantRefusal::RefreshTokenUnknown)
    );
}

/// A redeemed code presented again revokes the grant the store holds, although memory does not.
#[test]
fn a_reused_code_revokes_a_grant_kept_in_the_store() {
    let config = Config::from_toml_str(FIXTURE).unwrap();
    let environment_url = Url::parse("http://env.test").unwrap();
    let ids = SequentialIds::new();
    let store = Store::open_in_memory().unwrap();
    let mut state = Flows::new(&config, &environment_url);
    state.evict_grants();
    state.record_durable_changes();
    let flows = Mutex::new(state);
    let guard = || FlowsGuard::new(flows.lock().unwrap(), Some(&store));
    let client = guard()
        .register_client(
            &config.resources[0].id,
            ClientRegistration {
                client_name: None,
                redirect_uris: vec!["http://127.0.0.1:5000/cb".to_owned()],
                scope: None,
            },
            NOW,
            &ids,
        )
        .unwrap()
        .client_id;
    let (code, _) = flow_through_guards(&flows, &store, &config, &client, &ids);
    guard().evict_grants();
    assert_eq!(store.load().unwrap().grants.len(), 1);
    let replay = guard()
        .exchange_code(
            AuthorizationCodeRequest {
                client_id: client.clone(),
                code: AuthorizationCode::new(code),
                code_verifier: Some(Secret::new(VERIFIER)),
                redirect_uri: Some("http://127.0.0.1:5000/cb".to_owned()),
                resource: None,
            },
            NOW + 1,
            &ids,
        )
        .unwrap_err();
    assert_eq!(replay, TokenError::InvalidGrant(GrantRefusal::CodeReused));
    let stored = store.load().unwrap();
    assert!(stored.grants.is_empty() && stored.refresh_tokens.is_empty());
}

/// Past RESIDENT_GRANTS grants, memory lets them all go; the store keeps every one.
#[test]
fn grants_held_in_memory_are_bounded_when_they_live_in_the_store() {
    let config = Config::from_toml_str(FIXTURE).unwrap();
    let environment_url = Url::parse("http://env.test").unwrap();
    let ids = SequentialIds::new();
    let store = Store::open_in_memory().unwrap();
    let mut state = Flows::new(&config, &environment_url);
    state.evict_grants();
    state.record_durable_changes();
    let flows = Mutex::new(state);
    let guard = || FlowsGuard::new(flows.lock().unwrap(), Some(&store));
    let client = guard()
        .register_client(
            &config.resources[0].id,
            ClientRegistration {
                client_name: None,
                redirect_uris: vec!["http://127.0.0.1:5000/cb".to_owned()],
                scope: None,
            },
            NOW,
            &ids,
        )
        .unwrap()
        .client_id;
    let mut most_held = 0;
    for _ in 0..=crate::flow::RESIDENT_GRANTS + 1 {
        flow_through_guards(&flows, &store, &config, &client, &ids);
        most_held = most_held.max(guard().pending_counts().2);
    }
    assert_eq!(most_held, crate::flow::RESIDENT_GRANTS);
    assert!(guard().pending_counts().2 < crate::flow::RESIDENT_GRANTS);
    assert_eq!(
        store.load().unwrap().grants.len(),
        crate::flow::RESIDENT_GRANTS + 2
    );
}

/// An expired token presented once is deleted, and its grant with its last token.
#[test]
fn a_dropped_refresh_token_takes_its_grant_when_it_was_the_last() {
    let store = Store::open_in_memory().unwrap();
    store.apply(&changes()).unwrap();
    store
        .apply(&[DurableChange::RefreshTokenDropped {
            token: Secret::new("rt-1"),
        }])
        .unwrap();
    let loaded = store.load().unwrap();
    assert_eq!(loaded.grants, [grant("grant_1")], "rt-2 still holds it");
    store
        .apply(&[DurableChange::RefreshTokenDropped {
            token: Secret::new("rt-2"),
        }])
        .unwrap();
    let loaded = store.load().unwrap();
    assert!(loaded.grants.is_empty() && loaded.refresh_tokens.is_empty());
}

/// The sweep finds expired tokens through the expiry index: its cost does not grow with the
/// grants kept.
#[test]
fn the_sweep_reads_expired_tokens_through_the_expiry_index() {
    let store = Store::open_in_memory().unwrap();
    let connection = store.connection();
    let plan: Vec<String> = connection
        .prepare("EXPLAIN QUERY PLAN DELETE FROM refresh_tokens WHERE expires_at <= 1")
        .unwrap()
        .query_map([], |row| row.get::<_, String>(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        plan.iter()
            .any(|step| step.contains("refresh_tokens_by_expiry")),
        "{plan:?}"
    );
}
