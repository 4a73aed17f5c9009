//! State that survives restarts: a second emulator on the same state directory keeps the signing
//! keys (the rotated key ring, in order), the DCR clients, the agents created through the control
//! API, the users and the refresh tokens (with their rotation state) of the first. Without a state
//! directory, a key file keeps the signing key (what the binaries do by default).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result, ensure};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use reqwest::Method;
use scalekit_emulator::{App, Config, ConsentMode, Deps, KeyOrigin, ManualClock, Signer};
use scalekit_wire::Secret;

use crate::helpers::{
    FIXTURE, REDIRECT_URI, RESOURCE, SERVER_URL, TestEnv, VERIFIER, ada, json as json_body,
    location, query_param, text,
};

/// A unique state directory under the system's temporary directory, removed on drop.
struct StateDir(PathBuf);

impl StateDir {
    fn new(name: &str) -> StateDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default();
        StateDir(std::env::temp_dir().join(format!(
            "scalekit-emulator-{name}-{}-{nanos}",
            std::process::id()
        )))
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running emulator on a state directory, with random ids (as in production: sequential ids
/// would start over after a restart).
struct Running {
    env: TestEnv,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn start(state_dir: &Path, clock: &ManualClock) -> Result<Running> {
        Self::start_with(state_dir, clock, ConsentMode::Auto).await
    }

    async fn start_with(
        state_dir: &Path,
        clock: &ManualClock,
        consent: ConsentMode,
    ) -> Result<Running> {
        Self::start_with_key(state_dir, clock, consent, None).await
    }

    async fn start_with_key(
        state_dir: &Path,
        clock: &ManualClock,
        consent: ConsentMode,
        signing_key_pem: Option<Secret>,
    ) -> Result<Running> {
        let mut config = Config::from_toml_str(FIXTURE)?;
        config.resources[0].consent = consent;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let deps = Deps {
            clock: Arc::new(clock.clone()),
            state_dir: Some(state_dir.to_owned()),
            signing_key_pem,
            ..Deps::default()
        };
        let app = App::from_listener_with(listener, config, deps)?;
        let base = app.base_url().as_str().trim_end_matches('/').to_owned();
        let task = tokio::spawn(app.serve());
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_store(true)
            .build()?;
        let env = TestEnv {
            base,
            http,
            clock: clock.clone(),
        };
        Ok(Running { env, task })
    }

    /// Stops serving: the task is aborted and the client (and its open connections) dropped.
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    async fn kid(&self) -> Result<String> {
        let jwks: Value = json_body(self.env.get("/keys").await?, StatusCode::OK).await?;
        Ok(jwks["keys"][0]["kid"].as_str().context("kid")?.to_owned())
    }

    async fn rotate(&self) -> Result<String> {
        let (status, body) = self
            .env
            .control(Method::POST, "/_emulator/keys/rotate", None)
            .await?;
        ensure!(status == StatusCode::OK, "{status} {body}");
        Ok(body["kid"].as_str().context("kid")?.to_owned())
    }

    async fn register(&self) -> Result<String> {
        let response = self
            .env
            .http
            .post(
                self.env
                    .url(&format!("/api/v1/resources/{RESOURCE}/clients:register")),
            )
            .json(&json!({
                "client_name": "Restarted",
                "redirect_uris": ["http://127.0.0.1/callback"],
                "token_endpoint_auth_method": "none",
            }))
            .send()
            .await?;
        let body = json_body(response, StatusCode::CREATED).await?;
        Ok(body["client_id"].as_str().context("client_id")?.to_owned())
    }

    /// Authorize with `client_id`, post Ada, come back, exchange the code: the token response.
    async fn sign_in(&self, client_id: &str) -> Result<Value> {
        let env = &self.env;
        let management = env.management_token().await?;
        let login = env.authorize(&[("client_id", client_id)]).await?;
        let lri = query_param(&login, "login_request_id")?;
        let state = query_param(&login, "state")?;
        let response = env.post_user(&lri, Some(&management), &ada()).await?;
        ensure!(response.status() == StatusCode::OK, "{}", response.status());
        let redirect = location(env.callback(&state).await?, StatusCode::FOUND)?;
        let code = query_param(&redirect, "code")?;
        env.token(
            &[
                ("grant_type", "authorization_code"),
                ("client_id", client_id),
                ("code", &code),
                ("code_verifier", VERIFIER),
                ("redirect_uri", REDIRECT_URI),
                ("resource", SERVER_URL),
            ],
            StatusCode::OK,
        )
        .await
    }

    async fn refresh(&self, client_id: &str, token: &str, status: StatusCode) -> Result<Value> {
        self.env
            .token(
                &[
                    ("grant_type", "refresh_token"),
                    ("client_id", client_id),
                    ("refresh_token", token),
                ],
                status,
            )
            .await
    }

    async fn subject(&self, tokens: &Value) -> Result<String> {
        let access: Value = self
            .env
            .verify(
                tokens["access_token"].as_str().context("access_token")?,
                RESOURCE,
            )
            .await?;
        Ok(access["sub"].as_str().context("sub")?.to_owned())
    }
}

fn refresh_token(tokens: &Value) -> Result<String> {
    Ok(tokens["refresh_token"]
        .as_str()
        .context("refresh_token")?
        .to_owned())
}

#[tokio::test]
async fn keys_clients_users_and_refresh_tokens_survive_a_restart() -> Result<()> {
    let state_dir = StateDir::new("restart");
    let clock = ManualClock::now();

    let first = Running::start(&state_dir.0, &clock).await?;
    let kid = first.kid().await?;
    let client_id = first.register().await?;
    let tokens = first.sign_in(&client_id).await?;
    let user = first.subject(&tokens).await?;
    assert!(user.starts_with("usr_"), "{user}");
    let rotated_out = refresh_token(&tokens)?;
    let current = refresh_token(
        &first
            .refresh(&client_id, &rotated_out, StatusCode::OK)
            .await?,
    )?;
    first.stop().await;
    assert!(state_dir.0.join("emulator.sqlite3").is_file());

    let second = Running::start(&state_dir.0, &clock).await?;
    assert_eq!(second.kid().await?, kid, "the signing key is kept");
    // The DCR client still authorizes, and the same posted sub is the same user.
    let again = second.sign_in(&client_id).await?;
    assert_eq!(second.subject(&again).await?, user);
    // The refresh token issued before the restart still refreshes, to the same user.
    let refreshed = second.refresh(&client_id, &current, StatusCode::OK).await?;
    assert_eq!(second.subject(&refreshed).await?, user);
    let newest = refresh_token(&refreshed)?;
    // A token rotated out before the restart is still refused, and its reuse revokes the grant.
    let reused = second
        .refresh(&client_id, &rotated_out, StatusCode::BAD_REQUEST)
        .await?;
    assert_eq!(
        reused,
        json!({"error": "invalid_grant", "error_description": "the refresh token was already used; the grant is revoked"})
    );
    second.stop().await;

    // The revocation was kept too; the grant of the second sign-in was not touched.
    let third = Running::start(&state_dir.0, &clock).await?;
    let revoked = third
        .refresh(&client_id, &newest, StatusCode::BAD_REQUEST)
        .await?;
    assert_eq!(
        revoked,
        json!({"error": "invalid_grant", "error_description": "the refresh token is invalid, expired or revoked"})
    );
    let other_grant = third
        .refresh(&client_id, &refresh_token(&again)?, StatusCode::OK)
        .await?;
    assert_eq!(third.subject(&other_grant).await?, user);
    third.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_agent_created_through_the_control_api_survives_a_restart_and_its_deletion_too()
-> Result<()> {
    let state_dir = StateDir::new("agents");
    let clock = ManualClock::now();
    let first = Running::start(&state_dir.0, &clock).await?;
    let mut agents = Vec::new();
    for name in ["kept", "deleted"] {
        let (status, created) = first
            .env
            .control(
                Method::POST,
                "/_emulator/agents",
                Some(&format!(
                    r#"{{"resource_id": "{RESOURCE}", "name": "{name}", "scopes": ["mcp:read"]}}"#
                )),
            )
            .await?;
        ensure!(status == StatusCode::CREATED, "{status} {created}");
        agents.push((
            created["client_id"]
                .as_str()
                .context("client_id")?
                .to_owned(),
            created["client_secret"]
                .as_str()
                .context("client_secret")?
                .to_owned(),
        ));
    }
    let (status, _) = first
        .env
        .control(
            Method::DELETE,
            &format!("/_emulator/agents/{}", agents[1].0),
            None,
        )
        .await?;
    ensure!(status == StatusCode::NO_CONTENT, "{status}");
    first.stop().await;

    // The database (and its write-ahead log) keeps a digest of the secret, never the secret.
    let secret = agents[0].1.as_bytes();
    for file in std::fs::read_dir(&state_dir.0)? {
        let path = file?.path();
        let bytes = std::fs::read(&path)?;
        ensure!(
            !bytes.windows(secret.len()).any(|window| window == secret),
            "the agent's secret is in {}",
            path.display()
        );
    }

    let second = Running::start(&state_dir.0, &clock).await?;
    let token = |(client_id, secret): &(String, String)| {
        [
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", client_id.clone()),
            ("client_secret", secret.clone()),
        ]
    };
    let form = token(&agents[0]);
    let form: Vec<(&str, &str)> = form
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    let body = second.env.token(&form, StatusCode::OK).await?;
    assert_eq!(body["scope"], "mcp:read");
    let form = token(&agents[1]);
    let form: Vec<(&str, &str)> = form
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    second.env.token(&form, StatusCode::UNAUTHORIZED).await?;
    let (_, listed) = second
        .env
        .control(Method::GET, "/_emulator/agents", None)
        .await?;
    let names: Vec<&str> = listed["agents"]
        .as_array()
        .context("agents")?
        .iter()
        .filter_map(|agent| agent["name"].as_str())
        .collect();
    assert_eq!(names, ["Testbed agent", "kept"]);
    second.stop().await;
    Ok(())
}

#[tokio::test]
async fn refresh_tokens_that_expire_while_the_emulator_is_down_are_gone_after_it() -> Result<()> {
    let state_dir = StateDir::new("expiry");
    let clock = ManualClock::now();
    let first = Running::start(&state_dir.0, &clock).await?;
    let client_id = first.register().await?;
    let tokens = first.sign_in(&client_id).await?;
    first.stop().await;

    let lifetime = Config::from_toml_str(FIXTURE)?.resources[0].refresh_token_lifetime_secs;
    clock.advance(lifetime);
    let second = Running::start(&state_dir.0, &clock).await?;
    let expired = second
        .refresh(
            &client_id,
            &refresh_token(&tokens)?,
            StatusCode::BAD_REQUEST,
        )
        .await?;
    assert_eq!(
        expired,
        json!({"error": "invalid_grant", "error_description": "the refresh token is invalid, expired or revoked"})
    );
    second.stop().await;
    Ok(())
}

#[tokio::test]
async fn sign_ins_in_progress_do_not_survive_a_restart() -> Result<()> {
    let state_dir = StateDir::new("in-progress");
    let clock = ManualClock::now();
    let first = Running::start(&state_dir.0, &clock).await?;
    let client_id = first.register().await?;
    let login = first.env.authorize(&[("client_id", &client_id)]).await?;
    let lri = query_param(&login, "login_request_id")?;
    first.stop().await;

    // Login requests live in memory only: "Your App" posting for one after a restart gets 404.
    let second = Running::start(&state_dir.0, &clock).await?;
    let management = second.env.management_token().await?;
    let response = second
        .env
        .post_user(&lri, Some(&management), &ada())
        .await?;
    let body = json_body(response, StatusCode::NOT_FOUND).await?;
    assert_eq!(
        body,
        json!({
            "code": 5,
            "message": "login request not found: it is unknown, expired, already completed or belongs to another connection",
            "details": [{
                "@type": "type.googleapis.com/scalekit.v1.errdetails.ErrorInfo",
                "error_code": "NOT_FOUND"
            }]
        })
    );
    second.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_remembered_consent_survives_a_restart() -> Result<()> {
    let state_dir = StateDir::new("consent");
    let clock = ManualClock::now();
    let first = Running::start_with(&state_dir.0, &clock, ConsentMode::Prompt).await?;
    let client_id = first.register().await?;
    let env = &first.env;
    let management = env.management_token().await?;
    let login = env.authorize(&[("client_id", &client_id)]).await?;
    let response = env
        .post_user(
            &query_param(&login, "login_request_id")?,
            Some(&management),
            &ada(),
        )
        .await?;
    ensure!(response.status() == StatusCode::OK, "{}", response.status());
    let page = text(
        env.callback(&query_param(&login, "state")?).await?,
        StatusCode::OK,
    )
    .await?;
    let marker = "name=\"consent_id\" value=\"";
    let start = page.find(marker).context("consent_id field")? + marker.len();
    let end = page[start..].find('"').context("consent_id end")? + start;
    let response = env
        .http
        .post(env.url("/oauth/consent"))
        .form(&[("consent_id", &page[start..end]), ("decision", "approve")])
        .send()
        .await?;
    let redirect = location(response, StatusCode::FOUND)?;
    ensure!(query_param(&redirect, "code").is_ok(), "{redirect}");
    let consents = list_consents(env, &management).await?;
    ensure!(consents["consents"][0]["id"].is_string(), "{consents}");
    first.stop().await;

    // After the restart the same user, client and scopes skip the consent page, and the consent
    // API shows the same consent with the same id.
    let second = Running::start_with(&state_dir.0, &clock, ConsentMode::Prompt).await?;
    let tokens = second.sign_in(&client_id).await?;
    assert!(tokens["access_token"].is_string(), "{tokens}");
    let management = second.env.management_token().await?;
    assert_eq!(list_consents(&second.env, &management).await?, consents);
    second.stop().await;
    Ok(())
}

async fn list_consents(env: &TestEnv, management: &str) -> Result<Value> {
    let response = env
        .http
        .get(env.url("/api/v1/user_consents"))
        .bearer_auth(management)
        .send()
        .await?;
    json_body(response, StatusCode::OK).await
}

#[tokio::test]
async fn a_rotated_key_ring_survives_a_restart_in_its_order() -> Result<()> {
    let state_dir = StateDir::new("key-ring");
    let clock = ManualClock::now();
    let first = Running::start(&state_dir.0, &clock).await?;
    let original = first.kid().await?;
    let second_kid = first.rotate().await?;
    let third_kid = first.rotate().await?;
    let (status, body) = first
        .env
        .control(
            Method::POST,
            "/_emulator/keys/retire",
            Some(&format!(r#"{{"kid": "{second_kid}"}}"#)),
        )
        .await?;
    ensure!(status == StatusCode::OK, "{status} {body}");
    let ring = first.env.published_kids().await?;
    assert_eq!(ring, vec![third_kid.clone(), original.clone()]);
    first.stop().await;

    let second = Running::start(&state_dir.0, &clock).await?;
    assert_eq!(second.env.published_kids().await?, ring);
    // New tokens carry the rotated key. (A management token from before the restart cannot be
    // reused: the restarted emulator has another port, so another issuer.)
    let fresh = second.env.management_token().await?;
    assert_eq!(
        crate::helpers::jwt_header(&fresh)?["kid"],
        third_kid.as_str()
    );
    // A retirement is saved too.
    let (status, body) = second
        .env
        .control(Method::POST, "/_emulator/keys/retire", None)
        .await?;
    ensure!(status == StatusCode::OK, "{status} {body}");
    second.stop().await;
    let third = Running::start(&state_dir.0, &clock).await?;
    assert_eq!(third.env.published_kids().await?, vec![third_kid]);
    third.stop().await;
    Ok(())
}

/// An explicit key wins for the run, and the stored ring is neither read nor written by it.
#[tokio::test]
async fn an_explicit_key_leaves_the_stored_ring_as_it_was() -> Result<()> {
    let state_dir = StateDir::new("explicit-key");
    let clock = ManualClock::now();
    let first = Running::start(&state_dir.0, &clock).await?;
    first.rotate().await?;
    let stored = first.env.published_kids().await?;
    first.stop().await;

    let explicit = Signer::generate()?;
    let with_key = Running::start_with_key(
        &state_dir.0,
        &clock,
        ConsentMode::Auto,
        Some(explicit.private_key_pem().clone()),
    )
    .await?;
    assert_eq!(
        with_key.env.published_kids().await?,
        vec![explicit.kid().to_owned()]
    );
    let rotated = with_key.rotate().await?;
    assert_eq!(
        with_key.env.published_kids().await?,
        vec![rotated, explicit.kid().to_owned()]
    );
    with_key.stop().await;

    let again = Running::start(&state_dir.0, &clock).await?;
    assert_eq!(again.env.published_kids().await?, stored);
    again.stop().await;
    Ok(())
}

/// An emulator without a state directory whose signing key is kept in `key_file`, or a fresh
/// one; its key's origin.
async fn start_without_state(key_file: Option<&Path>) -> Result<(Running, KeyOrigin)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let clock = ManualClock::now();
    let deps = Deps {
        clock: Arc::new(clock.clone()),
        signing_key_file: key_file.map(Path::to_owned),
        ..Deps::default()
    };
    let app = App::from_listener_with(listener, Config::from_toml_str(FIXTURE)?, deps)?;
    let origin = app.key_origin().clone();
    let base = app.base_url().as_str().trim_end_matches('/').to_owned();
    let task = tokio::spawn(app.serve());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let env = TestEnv { base, http, clock };
    Ok((Running { env, task }, origin))
}

/// Checks `token`'s RS256 signature against `jwks` (its `kid`'s key), as an MCP server that
/// fetched the JWKS once would; the claims are not checked.
fn verifies_with(token: &str, jwks: &Value) -> Result<()> {
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone())?;
    let kid = jsonwebtoken::decode_header(token)?.kid.context("kid")?;
    let jwk = jwks
        .find(&kid)
        .context("the token's kid is not in the JWKS")?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_aud = false;
    jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk)?,
        &validation,
    )?;
    Ok(())
}

async fn jwks(running: &Running) -> Result<Value> {
    json_body(running.env.get("/keys").await?, StatusCode::OK).await
}

#[tokio::test]
async fn a_key_file_keeps_the_signing_key_across_restarts_without_a_state_directory() -> Result<()>
{
    let folder = StateDir::new("key-file");
    // In a folder that does not exist yet, as `.testbed/` on a first run.
    let key_file = folder.0.join("testbed/signing-key.pem");
    let (first, origin) = start_without_state(Some(&key_file)).await?;
    assert_eq!(origin, KeyOrigin::File(key_file.clone()));
    let published = jwks(&first).await?;
    let token = first.env.management_token().await?;
    // A rotation without a state directory lasts until the emulator stops.
    let rotated = first.rotate().await?;
    first.stop().await;

    let pem = std::fs::read_to_string(&key_file)?;
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
    }
    // Nothing but the key file: the temporary file it was written through is gone.
    let names: Vec<_> = std::fs::read_dir(folder.0.join("testbed"))?
        .map(|entry| entry.map(|entry| entry.file_name()))
        .collect::<Result<_, _>>()?;
    assert_eq!(names, ["signing-key.pem"]);

    let (second, _) = start_without_state(Some(&key_file)).await?;
    let republished = jwks(&second).await?;
    assert_eq!(republished, published);
    let key = &republished["keys"][0];
    assert_eq!(key["kid"], published["keys"][0]["kid"]);
    assert_eq!(key["n"], published["keys"][0]["n"]);
    assert_ne!(key["kid"], rotated.as_str());
    // A token of the first run verifies with the JWKS of the second, which an MCP server that
    // fetched /keys once before the restart holds.
    verifies_with(&token, &republished)?;
    verifies_with(&second.env.management_token().await?, &published)?;
    second.stop().await;
    assert_eq!(std::fs::read_to_string(&key_file)?, pem);
    Ok(())
}

#[tokio::test]
async fn a_fresh_key_differs_and_a_state_directory_wins_over_the_key_file() -> Result<()> {
    let folder = StateDir::new("fresh-key");
    let key_file = folder.0.join("signing-key.pem");
    let (kept, _) = start_without_state(Some(&key_file)).await?;
    let kept_kid = kept.kid().await?;
    kept.stop().await;
    let pem = std::fs::read_to_string(&key_file)?;

    let (fresh, origin) = start_without_state(None).await?;
    assert_eq!(origin, KeyOrigin::Fresh);
    assert_ne!(fresh.kid().await?, kept_kid);
    fresh.stop().await;
    assert_eq!(std::fs::read_to_string(&key_file)?, pem);

    // The state directory's ring is used, and the key file is neither read nor written.
    let state_dir = folder.0.join("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let deps = Deps {
        state_dir: Some(state_dir.clone()),
        signing_key_file: Some(folder.0.join("unused.pem")),
        ..Deps::default()
    };
    let app = App::from_listener_with(listener, Config::from_toml_str(FIXTURE)?, deps)?;
    assert_eq!(app.key_origin(), &KeyOrigin::StateDirectory(state_dir));
    assert_ne!(app.state().keys.signing().kid(), kept_kid);
    assert!(!folder.0.join("unused.pem").exists());
    Ok(())
}

#[tokio::test]
async fn a_key_file_that_holds_no_key_is_refused_naming_it() -> Result<()> {
    let folder = StateDir::new("not-a-key");
    std::fs::create_dir_all(&folder.0)?;
    let key_file = folder.0.join("signing-key.pem");
    for text in [
        "not a key\n",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        "",
    ] {
        std::fs::write(&key_file, text)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let deps = Deps {
            signing_key_file: Some(key_file.clone()),
            ..Deps::default()
        };
        let error = App::from_listener_with(listener, Config::from_toml_str(FIXTURE)?, deps)
            .err()
            .context("an emulator started on a file that is not a key")?;
        assert_eq!(
            error.to_string(),
            format!(
                "the signing key file {} holds no RSA private key (a PKCS#8 or PKCS#1 PEM); delete \
                 it to make a new key there, or choose another file",
                key_file.display()
            )
        );
        // Left as it was.
        assert_eq!(std::fs::read_to_string(&key_file)?, text);
    }
    Ok(())
}

#[tokio::test]
async fn emulators_started_at_once_on_a_missing_key_file_sign_with_one_key() -> Result<()> {
    let folder = StateDir::new("key-race");
    let key_file = folder.0.join("signing-key.pem");
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let key_file = key_file.clone();
            std::thread::spawn(move || {
                scalekit_emulator::keys::load_or_create_key_file(&key_file)
                    .map(|signer| signer.kid().to_owned())
            })
        })
        .collect();
    let mut kids = Vec::new();
    for start in starts {
        kids.push(
            start
                .join()
                .map_err(|_| anyhow::anyhow!("a start panicked"))??,
        );
    }
    kids.dedup();
    assert_eq!(kids.len(), 1, "{kids:?}");
    assert_eq!(
        Signer::from_pem(&std::fs::read_to_string(&key_file)?)?.kid(),
        kids[0]
    );
    assert_eq!(std::fs::read_dir(&folder.0)?.count(), 1);
    Ok(())
}
