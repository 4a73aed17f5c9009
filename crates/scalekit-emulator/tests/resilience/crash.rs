//! Crash safety: an emulator with a state directory, under sustained registrations, flows and
//! refreshes, is killed with SIGKILL at random moments and restarted on the same directory; every
//! registration and refresh token whose answer reached the client still works afterwards.
//!
//! What the emulator guarantees, and so what this checks: a transition's durable changes are
//! committed to SQLite (WAL) before the answer is written (`store::FlowsGuard` writes them when the
//! state lock is released, inside the handler), so **an answer that arrived is durable**. An answer
//! that did not arrive (the request was sent and the process died) may or may not have been
//! committed: a lost refresh may have rotated the token the client still holds. Such a grant is
//! only checked for a clean verdict (200, or 400 `invalid_grant`), never for success.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinSet;
use url::Url;

use crate::child::{
    API_CLIENT_ID, API_CLIENT_SECRET, CONNECTION, Emulator, FIXTURE_PATH, LOGIN_ENDPOINT,
    REDIRECT_URI, RESOURCE, Rng, SCOPE, SERVER_URL, TempDir, busy_cores, http_client, pkce_s256,
};

/// Tasks running flows and refreshes (each also registers a client every few flows).
const WORKERS: u64 = 12;
/// The most a worker waits between two requests. Without it every worker would always have a
/// request in flight when the kill lands, and a grant whose refresh was in flight is only checked
/// loosely (see the module's comment); with it most grants are between requests, holding a token
/// whose answer arrived.
const THINK_MS: u64 = 10;
/// SIGKILLs, each followed by a restart on the same state directory.
const KILLS: usize = 3;
/// A new DCR client every this many flows, per worker.
const FLOWS_PER_CLIENT: u64 = 3;

/// Where the emulator currently listens: `None` between a kill and the restart. `number` tells a
/// worker that the process it was talking to is gone.
#[derive(Debug, Clone)]
struct Epoch {
    number: u64,
    base: Option<String>,
}

/// What the client side knows: only what answers that arrived told it.
#[derive(Debug, Default)]
struct Ledger {
    /// `client_id`s whose 201 arrived.
    clients: Vec<String>,
    /// One per code exchange whose 200 arrived.
    grants: Vec<Grant>,
    /// Refreshes whose 200 arrived (each brought a new refresh token).
    refresh_answers: u64,
    /// Requests sent whose answer never arrived (killed in flight).
    lost_answers: u64,
    /// Answers the guarantee rules out, with the evidence.
    violations: Vec<String>,
}

#[derive(Debug)]
struct Grant {
    client_id: String,
    /// The refresh token of the last answer that arrived.
    latest: String,
    /// A refresh of `latest` was sent and its answer lost: `latest` may be rotated out.
    uncertain: bool,
}

struct Shared {
    http: reqwest::Client,
    epochs: watch::Receiver<Epoch>,
    stop: AtomicBool,
    ledger: Mutex<Ledger>,
}

/// A request's fate as the client sees it.
enum Fate {
    /// The whole answer arrived.
    Answered(StatusCode, Option<String>, String),
    /// Never reached the emulator (connection refused): nothing happened.
    NotSent,
    /// Sent, but no (complete) answer: it may or may not have taken effect.
    Lost,
}

impl Shared {
    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn epoch_number(&self) -> u64 {
        self.epochs.borrow().number
    }

    /// The current epoch once the emulator listens, or `None` once the test stops the traffic.
    async fn current(&self) -> Option<(u64, String)> {
        let mut epochs = self.epochs.clone();
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return None;
            }
            {
                let epoch = epochs.borrow_and_update();
                if let Some(base) = &epoch.base {
                    return Some((epoch.number, base.clone()));
                }
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), epochs.changed()).await;
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Fate {
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) if error.is_connect() => return Fate::NotSent,
            Err(_) => return self.lost(),
        };
        let status = response.status();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        match response.text().await {
            Ok(body) => Fate::Answered(status, location, body),
            Err(_) => self.lost(),
        }
    }

    fn lost(&self) -> Fate {
        self.ledger().lost_answers += 1;
        Fate::Lost
    }

    /// An answer the emulator should not have given. When the emulator was restarted meanwhile
    /// (a port the kernel handed out again), it is an interruption, not a violation.
    fn unexpected(&self, epoch: u64, what: String) {
        if self.epoch_number() == epoch {
            self.ledger()
                .violations
                .push(format!("epoch {epoch}: {what}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answered_registration_and_refresh_token_survives_sigkill_and_restart() -> Result<()>
{
    let _busy = busy_cores().await;
    let begin = Instant::now();
    let (mut rng, seed) = Rng::from_env_or_clock("RESILIENCE_SEED");
    eprintln!("crash: seed {seed} (RESILIENCE_SEED={seed} replays the kill moments)");
    let state_dir = TempDir::new("crash")?;
    let config = std::path::Path::new(FIXTURE_PATH);

    let mut emulator = Emulator::start(config, Some(state_dir.path())).await?;
    let (epochs, epoch_receiver) = watch::channel(Epoch {
        number: 0,
        base: Some(emulator.base.clone()),
    });
    let shared = Arc::new(Shared {
        http: http_client()?,
        epochs: epoch_receiver,
        stop: AtomicBool::new(false),
        ledger: Mutex::new(Ledger::default()),
    });
    let mut traffic = JoinSet::new();
    for worker in 0..WORKERS {
        traffic.spawn(run_worker(
            Arc::clone(&shared),
            worker,
            seed.wrapping_add(worker),
        ));
    }

    let mut moments = Vec::new();
    for kill in 1..=KILLS {
        let after = rng.millis(1_500, 4_000);
        tokio::time::sleep(after).await;
        emulator.ensure_running()?;
        let before = shared.ledger().refresh_answers;
        emulator.kill()?;
        epochs.send_modify(|epoch| {
            epoch.number += 1;
            epoch.base = None;
        });
        eprintln!(
            "crash: SIGKILL {kill} after {after:?} of epoch {} ({before} refresh answers so far)",
            kill - 1
        );
        moments.push(after);
        emulator = Emulator::start(config, Some(state_dir.path())).await?;
        epochs.send_modify(|epoch| epoch.base = Some(emulator.base.clone()));
    }
    tokio::time::sleep(rng.millis(1_000, 2_000)).await;
    shared.stop.store(true, Ordering::SeqCst);
    // Workers finish the request in hand, so the ledger holds every answer that arrived.
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(joined) = traffic.join_next().await {
            joined.context("a worker panicked")?;
        }
        anyhow::Ok(())
    })
    .await
    .context("the workers did not stop within 60 s")??;
    emulator.ensure_running()?;
    let traffic_time = begin.elapsed();

    let ledger = std::mem::take(&mut *shared.ledger());
    ensure!(
        !ledger.clients.is_empty() && !ledger.grants.is_empty() && ledger.refresh_answers > 0,
        "too little traffic to prove anything: {} clients, {} grants, {} refreshes",
        ledger.clients.len(),
        ledger.grants.len(),
        ledger.refresh_answers
    );

    let failures = verify(&shared.http, &emulator.base, &ledger).await?;
    let uncertain = ledger.grants.iter().filter(|grant| grant.uncertain).count();
    eprintln!(
        "crash: {KILLS} kills (after {moments:?}); {} clients registered, {} grants, {} refresh \
         tokens received by refreshes ({} by code exchanges), {} answers lost to kills ({uncertain} \
         grants left uncertain); {} broken answers during the run, {} failures after the last \
         restart; traffic {traffic_time:?}, whole test {:?}",
        ledger.clients.len(),
        ledger.grants.len(),
        ledger.refresh_answers,
        ledger.grants.len(),
        ledger.lost_answers,
        ledger.violations.len(),
        failures.len(),
        begin.elapsed()
    );
    ensure!(
        ledger.violations.is_empty() && failures.is_empty(),
        "answered registrations or refresh tokens did not survive a SIGKILL (seed {seed}): {} \
         answers broke the guarantee during the run, e.g. {:#?}; {} failed after the last restart, \
         e.g. {:#?}",
        ledger.violations.len(),
        &ledger.violations[..ledger.violations.len().min(5)],
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    Ok(())
}

/// Registers clients, runs flows with `offline_access` and refreshes each grant a random number of
/// times, recording what arrived, until the test stops it.
async fn run_worker(shared: Arc<Shared>, worker: u64, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut client: Option<String> = None;
    let mut flows_with_client = 0;
    let mut management: Option<(u64, String)> = None;
    let mut sequence = 0u64;
    while let Some((epoch, base)) = shared.current().await {
        if client.is_none() || flows_with_client >= FLOWS_PER_CLIENT {
            match register(&shared, epoch, &base, worker).await {
                Some(client_id) => {
                    client = Some(client_id);
                    flows_with_client = 0;
                }
                None => {
                    pause().await;
                    continue;
                }
            }
        }
        let Some(client_id) = client.clone() else {
            continue;
        };
        if management.as_ref().is_none_or(|(at, _)| *at != epoch) {
            match management_token(&shared, epoch, &base).await {
                Some(token) => management = Some((epoch, token)),
                None => {
                    pause().await;
                    continue;
                }
            }
        }
        let Some((_, bearer)) = management.clone() else {
            continue;
        };
        sequence += 1;
        flows_with_client += 1;
        let Some(refresh_token) =
            run_flow(&shared, epoch, &base, &client_id, &bearer, worker, sequence).await
        else {
            pause().await;
            continue;
        };
        let grant = {
            let mut ledger = shared.ledger();
            ledger.grants.push(Grant {
                client_id: client_id.clone(),
                latest: refresh_token.clone(),
                uncertain: false,
            });
            ledger.grants.len() - 1
        };
        refresh_repeatedly(&shared, grant, &client_id, refresh_token, &mut rng).await;
    }
}

/// Refreshes one grant 5–40 times, following the emulator across restarts: a token whose answer
/// arrived must still refresh on the next process.
async fn refresh_repeatedly(
    shared: &Shared,
    grant: usize,
    client_id: &str,
    mut latest: String,
    rng: &mut Rng,
) {
    let refreshes = 5 + rng.next_u64() % 36;
    let mut done = 0;
    think(rng).await;
    while done < refreshes {
        let Some((epoch, base)) = shared.current().await else {
            return;
        };
        let request = shared.http.post(format!("{base}/oauth/token")).form(&[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", &latest),
        ]);
        match shared.send(request).await {
            Fate::Answered(StatusCode::OK, _, body) => {
                let Some(rotated) = refresh_token_of(&body) else {
                    shared.unexpected(
                        epoch,
                        format!("a refresh answered 200 without a refresh token: {body}"),
                    );
                    return;
                };
                latest = rotated;
                done += 1;
                {
                    let mut ledger = shared.ledger();
                    ledger.grants[grant].latest = latest.clone();
                    ledger.refresh_answers += 1;
                }
                think(rng).await;
            }
            Fate::Answered(status, _, body) => {
                shared.unexpected(
                    epoch,
                    format!(
                        "refreshing grant {grant} with its last answered token: {status} {body}"
                    ),
                );
                return;
            }
            Fate::NotSent => pause().await,
            Fate::Lost => {
                shared.ledger().grants[grant].uncertain = true;
                return;
            }
        }
    }
}

/// `POST …/clients:register`; the `client_id` when the 201 arrived.
async fn register(shared: &Shared, epoch: u64, base: &str, worker: u64) -> Option<String> {
    let request = shared
        .http
        .post(format!(
            "{base}/api/v1/resources/{RESOURCE}/clients:register"
        ))
        .json(&json!({
            "client_name": format!("resilience worker {worker}"),
            "redirect_uris": [REDIRECT_URI],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
            "scope": SCOPE,
        }));
    match shared.send(request).await {
        Fate::Answered(StatusCode::CREATED, _, body) => {
            let client_id = serde_json::from_str::<Value>(&body).ok()?["client_id"]
                .as_str()?
                .to_owned();
            shared.ledger().clients.push(client_id.clone());
            Some(client_id)
        }
        Fate::Answered(status, _, body) => {
            shared.unexpected(epoch, format!("registration: {status} {body}"));
            None
        }
        Fate::NotSent | Fate::Lost => None,
    }
}

/// Your App's management token (client credentials).
async fn management_token(shared: &Shared, epoch: u64, base: &str) -> Option<String> {
    let request = shared.http.post(format!("{base}/oauth/token")).form(&[
        ("grant_type", "client_credentials"),
        ("client_id", API_CLIENT_ID),
        ("client_secret", API_CLIENT_SECRET),
    ]);
    match shared.send(request).await {
        Fate::Answered(StatusCode::OK, _, body) => Some(
            serde_json::from_str::<Value>(&body).ok()?["access_token"]
                .as_str()?
                .to_owned(),
        ),
        Fate::Answered(status, _, body) => {
            shared.unexpected(epoch, format!("client credentials: {status} {body}"));
            None
        }
        Fate::NotSent | Fate::Lost => None,
    }
}

/// authorize → the user POST → `partner:callback` (consent auto) → the code exchange, all on one
/// process; the refresh token when the exchange's 200 arrived.
async fn run_flow(
    shared: &Shared,
    epoch: u64,
    base: &str,
    client_id: &str,
    bearer: &str,
    worker: u64,
    sequence: u64,
) -> Option<String> {
    let client_state = format!("crash-{worker}-{sequence}");
    let verifier = format!("crash-verifier-{worker:04}-{sequence:012}-0123456789abcdefghijkl");
    let challenge = pkce_s256(&verifier);

    let request = shared.http.get(format!("{base}/oauth/authorize")).query(&[
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT_URI),
        ("scope", SCOPE),
        ("state", &client_state),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
        ("resource", SERVER_URL),
    ]);
    let login = expect_redirect(shared, epoch, "authorize", request).await?;
    let (Some(login_request_id), Some(login_state)) = (
        query_param(&login, "login_request_id"),
        query_param(&login, "state"),
    ) else {
        shared.unexpected(epoch, format!("authorize sent the browser to {login}"));
        return None;
    };

    let user = worker % 4;
    let request = shared
        .http
        .post(format!(
            "{base}/api/v1/connections/{CONNECTION}/auth-requests/{login_request_id}/user"
        ))
        .bearer_auth(bearer)
        .json(&json!({
            "sub": format!("crash-user-{user}"),
            "email": format!("crash-user-{user}@example.test"),
            "email_verified": true,
        }));
    match shared.send(request).await {
        Fate::Answered(StatusCode::OK, _, _) => {}
        Fate::Answered(status, _, body) => {
            shared.unexpected(epoch, format!("user POST: {status} {body}"));
            return None;
        }
        Fate::NotSent | Fate::Lost => return None,
    }

    let request = shared
        .http
        .get(format!(
            "{base}/sso/v1/connections/{CONNECTION}/partner:callback"
        ))
        .query(&[("state", &login_state)]);
    let back = expect_redirect(shared, epoch, "partner:callback", request).await?;
    let Some(code) = query_param(&back, "code") else {
        shared.unexpected(
            epoch,
            format!("partner:callback sent the browser to {back}"),
        );
        return None;
    };

    let request = shared.http.post(format!("{base}/oauth/token")).form(&[
        ("grant_type", "authorization_code"),
        ("client_id", client_id),
        ("code", &code),
        ("code_verifier", &verifier),
        ("redirect_uri", REDIRECT_URI),
        ("resource", SERVER_URL),
    ]);
    match shared.send(request).await {
        Fate::Answered(StatusCode::OK, _, body) => {
            let refresh_token = refresh_token_of(&body);
            if refresh_token.is_none() {
                shared.unexpected(
                    epoch,
                    format!("code exchange without a refresh token: {body}"),
                );
            }
            refresh_token
        }
        Fate::Answered(status, _, body) => {
            shared.unexpected(epoch, format!("code exchange: {status} {body}"));
            None
        }
        Fate::NotSent | Fate::Lost => None,
    }
}

/// A 302 and its `Location`, or `None` (an unexpected answer is recorded).
async fn expect_redirect(
    shared: &Shared,
    epoch: u64,
    step: &str,
    request: reqwest::RequestBuilder,
) -> Option<Url> {
    match shared.send(request).await {
        Fate::Answered(StatusCode::FOUND, Some(location), _) => {
            let url = Url::parse(&location).ok();
            if url.is_none() {
                shared.unexpected(epoch, format!("{step}: Location {location} is not a URL"));
            }
            url
        }
        Fate::Answered(status, location, body) => {
            shared.unexpected(epoch, format!("{step}: {status} {location:?} {body}"));
            None
        }
        Fate::NotSent | Fate::Lost => None,
    }
}

/// After the last restart: every answered client is known and every answered latest refresh
/// token refreshes. Returns the failures.
async fn verify(http: &reqwest::Client, base: &str, ledger: &Ledger) -> Result<Vec<String>> {
    const CHECKERS: usize = 4;
    let mut checks = JoinSet::new();
    for part in 0..CHECKERS {
        let http = http.clone();
        let base = base.to_owned();
        let clients: Vec<String> = ledger
            .clients
            .iter()
            .skip(part)
            .step_by(CHECKERS)
            .cloned()
            .collect();
        let grants: Vec<(String, String, bool)> = ledger
            .grants
            .iter()
            .skip(part)
            .step_by(CHECKERS)
            .map(|grant| {
                (
                    grant.client_id.clone(),
                    grant.latest.clone(),
                    grant.uncertain,
                )
            })
            .collect();
        checks.spawn(async move {
            let mut failures = Vec::new();
            for client_id in clients {
                if let Err(error) = client_is_known(&http, &base, &client_id).await {
                    failures.push(format!("client {client_id}: {error:#}"));
                }
            }
            for (client_id, latest, uncertain) in grants {
                if let Err(error) = refreshes(&http, &base, &client_id, &latest, uncertain).await {
                    failures.push(format!("grant of {client_id}: {error:#}"));
                }
            }
            failures
        });
    }
    let mut failures = Vec::new();
    while let Some(part) = checks.join_next().await {
        failures.extend(part?);
    }
    Ok(failures)
}

/// A registration survived when `/oauth/authorize` sends its user to the login endpoint (an
/// unknown client gets the hosted error page, 400).
async fn client_is_known(http: &reqwest::Client, base: &str, client_id: &str) -> Result<()> {
    let response = http
        .get(format!("{base}/oauth/authorize"))
        .query(&[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", REDIRECT_URI),
            ("scope", SCOPE),
            ("state", "verify"),
            (
                "code_challenge",
                &pkce_s256("verify-verifier-0123456789abcdefghijklmnop"),
            ),
            ("code_challenge_method", "S256"),
            ("resource", SERVER_URL),
        ])
        .send()
        .await?;
    let status = response.status();
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    ensure!(
        status == StatusCode::FOUND && location.starts_with(LOGIN_ENDPOINT),
        "authorize answered {status} {location:?}: {}",
        response.text().await.unwrap_or_default()
    );
    Ok(())
}

/// The latest answered refresh token refreshes (200 with a new one). An uncertain grant's token
/// may have been rotated by the lost request: 200 or 400 `invalid_grant`, nothing else.
async fn refreshes(
    http: &reqwest::Client,
    base: &str,
    client_id: &str,
    latest: &str,
    uncertain: bool,
) -> Result<()> {
    let response = http
        .post(format!("{base}/oauth/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", latest),
        ])
        .send()
        .await?;
    let status = response.status();
    let body = response.text().await?;
    if status == StatusCode::OK {
        ensure!(
            refresh_token_of(&body).is_some(),
            "200 without a refresh token: {body}"
        );
        return Ok(());
    }
    let error = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|value| value["error"].as_str().map(str::to_owned));
    ensure!(
        uncertain && status == StatusCode::BAD_REQUEST && error.as_deref() == Some("invalid_grant"),
        "refresh answered {status} {body} (uncertain: {uncertain})"
    );
    Ok(())
}

fn refresh_token_of(body: &str) -> Option<String> {
    serde_json::from_str::<Value>(body).ok()?["refresh_token"]
        .as_str()
        .map(str::to_owned)
}

fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// A client's pause between two requests: 0–`THINK_MS` ms.
async fn think(rng: &mut Rng) {
    tokio::time::sleep(Duration::from_millis(rng.next_u64() % (THINK_MS + 1))).await;
}

/// A short wait before retrying while the emulator is down.
async fn pause() {
    tokio::time::sleep(Duration::from_millis(20)).await;
}
