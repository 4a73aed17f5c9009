//! Floods: abandoned sign-ins past `max_pending_login_requests`, and many idle or slow
//! connections. Memory must stay bounded, other clients must still be answered in time, and a
//! connection that never completes its request must not be held forever.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::child::{
    API_CLIENT_ID, API_CLIENT_SECRET, Emulator, FIXTURE, FIXTURE_PATH, LOGIN_ENDPOINT,
    REDIRECT_URI, RESOURCE, SCOPE, SERVER_URL, TempDir, busy_cores, http_client, pkce_s256, timed,
};

/// How long a normal client may wait for an answer while the flood goes on. A discovery document
/// or a `client_credentials` token takes milliseconds even in a debug build on a busy machine;
/// 2 s leaves room for the neighbours and still catches a starved or stalled server.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// The cap the sign-in flood runs against (the default, 10,000, would make the test slow).
const CAP: usize = 200;
/// Refused sign-ins before the first memory reading: they fill the bounded buffers a request
/// touches (the request log, the inspector's queue and its "other requests"), so the second
/// reading sees only what grows with the flood.
const WARM_UP_REFUSED: usize = 1_000;
/// Abandoned sign-ins attempted past the cap and the warm-up.
const FLOOD: usize = 6_000;
/// What each sign-in held in memory costs at the least: its login request id, state, client id,
/// redirect URI, client state, PKCE challenge, scopes and resource are ten heap strings of 10–60
/// bytes plus their map entry, well over 400 bytes. (With the cap out of the way the emulator grows
/// by 1.9–2.4 KB per abandoned sign-in: 14 MB for these 6,000.)
const HELD_SIGN_IN_BYTES: u64 = 400;
/// The growth allowed during the flood: half of what holding the flood's sign-ins would cost at
/// the least (1.1 MiB for 6,000), well above what requests that keep nothing leave behind (about
/// 0.2 MiB: the allocator's noise).
const SIGN_IN_GROWTH_KIB: u64 = FLOOD as u64 * HELD_SIGN_IN_BYTES / 2 / 1024;

/// Connections of each kind (idle, slow first head, slow second head, slow body) held at once.
const PER_KIND: usize = 100;
/// The pause between two bytes of a slow connection.
const DRIBBLE_EVERY: Duration = Duration::from_millis(500);
/// How long the server may hold a connection whose request head or body never completes. Real
/// clients send a head in one packet and these bodies are a few hundred bytes; the defence this
/// asks for is a 10 s deadline on every request head (the first one included, which today waits
/// in hyper-util's HTTP/1-or-HTTP/2 sniff before hyper's own head timeout could start) and on the
/// whole request, so 20 s leaves 10 s for a loaded machine.
const LET_GO_WITHIN: Duration = Duration::from_secs(20);
/// What one held connection may cost the server at most: a task, the socket's state and hyper's
/// first 8 KiB read buffer fit in a fraction of this; more would mean what a slow client sends is
/// buffered without bound.
const HELD_CONNECTION_KIB: u64 = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_sign_ins_past_the_cap_are_refused_and_memory_stays_bounded() -> Result<()> {
    let _busy = busy_cores().await;
    let begin = Instant::now();
    let dir = TempDir::new("flood-sign-ins")?;
    let config = dir.path().join("environment.toml");
    std::fs::write(
        &config,
        FIXTURE.replace(
            "listen =",
            &format!("max_pending_login_requests = {CAP}\nlisten ="),
        ),
    )?;
    let emulator = Emulator::start(&config, None).await?;
    let http = http_client()?;
    let client_id = register(&http, &emulator.base).await?;

    // The cap's worth of sign-ins that nobody finishes.
    for sequence in 0..CAP {
        let location = authorize(&http, &emulator.base, &client_id, sequence).await?;
        ensure!(
            location.starts_with(LOGIN_ENDPOINT),
            "sign-in {sequence} of the first {CAP} was not sent to the login endpoint: {location}"
        );
    }
    let warm_up = flood_sign_ins(&http, &emulator.base, &client_id, CAP, WARM_UP_REFUSED).await?;

    let before = emulator.rss_kib()?;
    let probes = Probes::start(&emulator.base);
    let (flood_time, flood) = timed(flood_sign_ins(
        &http,
        &emulator.base,
        &client_id,
        CAP + WARM_UP_REFUSED,
        FLOOD,
    ))
    .await;
    let flood = flood?;
    let after = emulator.rss_kib()?;
    let probes = probes.stop().await?;
    let pending = pending_login_requests(&http, &emulator.base).await?;

    eprintln!(
        "flood (sign-ins): cap {CAP}; {FLOOD} more sign-ins in {flood_time:?}: {} refused with \
         temporarily_unavailable, {} admitted; {pending} pending afterwards; RSS {before} KiB → \
         {after} KiB ({:+} KiB, bound {SIGN_IN_GROWTH_KIB} KiB); {} probes, slowest {:?}; whole \
         test {:?}",
        flood.refused,
        flood.admitted,
        after as i64 - before as i64,
        probes.answered,
        probes.slowest,
        begin.elapsed()
    );
    ensure!(
        after.saturating_sub(before) <= SIGN_IN_GROWTH_KIB,
        "RSS grew by {} KiB during {FLOOD} abandoned sign-ins ({} admitted past the cap): more \
         than {SIGN_IN_GROWTH_KIB} KiB",
        after - before,
        flood.admitted
    );
    ensure!(
        warm_up.refused == WARM_UP_REFUSED && flood.refused == FLOOD && pending == CAP,
        "past the cap of {CAP}: {} of {} refused, {} admitted, {pending} pending, e.g. {:?}",
        warm_up.refused + flood.refused,
        WARM_UP_REFUSED + FLOOD,
        warm_up.admitted + flood.admitted,
        flood.other.or(warm_up.other)
    );
    probes.ensure_in_time()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_connections_neither_starve_other_clients_nor_stay_held() -> Result<()> {
    let begin = Instant::now();
    let emulator = Emulator::start(std::path::Path::new(FIXTURE_PATH), None).await?;
    let address = emulator
        .base
        .trim_start_matches("http://")
        .parse::<std::net::SocketAddr>()
        .context("the emulator's address")?;
    // Warm up the paths the probes take before the first memory reading.
    for _ in 0..20 {
        probe(&emulator.base).await?;
    }
    let before = emulator.rss_kib()?;

    let mut held = JoinSet::new();
    let deadline = Instant::now() + LET_GO_WITHIN;
    for kind in Kind::ALL {
        for _ in 0..PER_KIND {
            let stream = TcpStream::connect(address)
                .await
                .context("opening a connection to hold")?;
            held.spawn(hold(stream, kind, deadline));
        }
    }
    let total = Kind::ALL.len() * PER_KIND;

    // While they are held (and the slow ones dribble), other clients are answered in time.
    let probes = Probes::start(&emulator.base);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let during = emulator.rss_kib()?;
    let probes = probes.stop().await?;

    let mut still_held = [0usize; Kind::ALL.len()];
    let mut latest_let_go = Duration::ZERO;
    while let Some(outcome) = held.join_next().await {
        let (kind, let_go) = outcome??;
        match let_go {
            Some(after) => latest_let_go = latest_let_go.max(after),
            None => still_held[kind as usize] += 1,
        }
    }
    let held_total: usize = still_held.iter().sum();
    let held_by_kind = Kind::ALL
        .iter()
        .map(|kind| format!("{} {}", still_held[*kind as usize], kind.name()))
        .collect::<Vec<_>>()
        .join(", ");
    let bound = total as u64 * HELD_CONNECTION_KIB;
    eprintln!(
        "flood (connections): {PER_KIND} each of {}; RSS {before} KiB → {during} KiB while held \
         ({:+} KiB, bound {bound} KiB); {} probes, slowest {:?}; after {LET_GO_WITHIN:?} still \
         held: {held_by_kind} (the last let go after {latest_let_go:?}); whole test {:?}",
        Kind::ALL.map(Kind::name).join(", "),
        during as i64 - before as i64,
        probes.answered,
        probes.slowest,
        begin.elapsed()
    );
    probes.ensure_in_time()?;
    ensure!(
        during.saturating_sub(before) <= bound,
        "RSS grew by {} KiB while {total} connections were held: more than {HELD_CONNECTION_KIB} \
         KiB each",
        during - before
    );
    ensure!(
        held_total == 0,
        "{held_total} of {total} connections were still held {LET_GO_WITHIN:?} after they opened \
         ({held_by_kind}): the server has no deadline for a request that never completes, so each \
         one pins a task, a socket and its buffers for as long as the client likes"
    );
    // And the server is still fine afterwards.
    probe(&emulator.base).await?;
    Ok(())
}

/// A connection that never completes a request.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Connects and sends nothing.
    Idle = 0,
    /// Sends a request head one byte at a time and never finishes it.
    SlowFirstHead = 1,
    /// Sends one whole request, reads the answer (keep-alive), then the next head one byte at a
    /// time: a deadline on the first request alone does not cover it.
    SlowSecondHead = 2,
    /// Sends a whole head announcing a 100,000-byte body, then the body one byte at a time.
    SlowBody = 3,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::Idle,
        Kind::SlowFirstHead,
        Kind::SlowSecondHead,
        Kind::SlowBody,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Idle => "idle",
            Kind::SlowFirstHead => "slow first head",
            Kind::SlowSecondHead => "slow second head",
            Kind::SlowBody => "slow body",
        }
    }
}

/// Holds one connection until the server lets go of it (closes it, resets it, or answers: a
/// request that never completes may be answered 408) or until `deadline`. Returns how long the
/// server took to let go, `None` if it did not.
async fn hold(
    mut stream: TcpStream,
    kind: Kind,
    deadline: Instant,
) -> Result<(Kind, Option<Duration>)> {
    let opened = Instant::now();
    stream.set_nodelay(true)?;
    let let_go = Ok((kind, Some(opened.elapsed())));
    match kind {
        Kind::Idle | Kind::SlowFirstHead => {}
        Kind::SlowSecondHead => {
            let request = format!(
                "GET /.well-known/oauth-authorization-server/resources/{RESOURCE} HTTP/1.1\r\n\
                 Host: 127.0.0.1\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).await?;
            read_response(&mut stream)
                .await
                .context("the first request of a keep-alive connection")?;
        }
        Kind::SlowBody => {
            let head = "POST /oauth/token HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                        Content-Type: application/x-www-form-urlencoded\r\n\
                        Content-Length: 100000\r\n\r\ngrant_type=client_credentials&x=";
            if stream.write_all(head.as_bytes()).await.is_err() {
                return let_go;
            }
        }
    }
    // An endless request head: the header value never ends.
    let head =
        "GET /.well-known/oauth-authorization-server HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    let mut dribble = head.bytes().chain(std::iter::repeat(b'a'));
    let mut ticker = tokio::time::interval(DRIBBLE_EVERY);
    let mut buffer = [0u8; 1024];
    loop {
        tokio::select! {
            read = stream.read(&mut buffer) => {
                // End of stream, a reset, or an answer: the server let go of the request.
                let _ = read;
                return Ok((kind, Some(opened.elapsed())));
            }
            _ = ticker.tick() => {
                let byte = match kind {
                    Kind::Idle => continue,
                    Kind::SlowFirstHead | Kind::SlowSecondHead => dribble.next().unwrap_or(b'a'),
                    Kind::SlowBody => b'a',
                };
                if stream.write_all(&[byte]).await.is_err() {
                    return Ok((kind, Some(opened.elapsed())));
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => return Ok((kind, None)),
        }
    }
}

/// Reads one HTTP/1.1 response with a `Content-Length` body; fails unless it is a 200.
async fn read_response(stream: &mut TcpStream) -> Result<()> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = received.windows(4).position(|window| window == b"\r\n\r\n") {
            break end + 4;
        }
        let read = stream.read(&mut buffer).await?;
        ensure!(read > 0, "the connection closed before the answer's head");
        received.extend_from_slice(&buffer[..read]);
    };
    let head = String::from_utf8_lossy(&received[..head_end]).to_ascii_lowercase();
    ensure!(head.starts_with("http/1.1 200"), "answered {head}");
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .context("no content-length")?
        .trim()
        .parse()?;
    while received.len() < head_end + length {
        let read = stream.read(&mut buffer).await?;
        ensure!(read > 0, "the connection closed before the answer's body");
        received.extend_from_slice(&buffer[..read]);
    }
    Ok(())
}

/// A normal client, probing every 200 ms on a fresh connection until stopped.
struct Probes {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<ProbeReport>>,
}

#[derive(Debug)]
struct ProbeReport {
    answered: usize,
    slowest: Duration,
}

impl Probes {
    fn start(base: &str) -> Probes {
        let stop = Arc::new(AtomicBool::new(false));
        let base = base.to_owned();
        let stopping = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut report = ProbeReport {
                answered: 0,
                slowest: Duration::ZERO,
            };
            while !stopping.load(Ordering::SeqCst) {
                let slowest = probe(&base).await?;
                report.answered += 1;
                report.slowest = report.slowest.max(slowest);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(report)
        });
        Probes { stop, task }
    }

    async fn stop(self) -> Result<ProbeReport> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await?
    }
}

impl ProbeReport {
    fn ensure_in_time(&self) -> Result<()> {
        ensure!(self.answered > 0, "no probe was answered");
        ensure!(
            self.slowest <= ANSWER_WITHIN,
            "a normal client waited {:?} for an answer (bound {ANSWER_WITHIN:?})",
            self.slowest
        );
        Ok(())
    }
}

/// A normal client on a fresh connection: the discovery document, then a `client_credentials`
/// token. Returns the slower of the two; fails on a wrong answer, or after 20 s.
async fn probe(base: &str) -> Result<Duration> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(20))
        .build()?;
    let (discovery_time, discovery) = timed(
        http.get(format!(
            "{base}/.well-known/oauth-authorization-server/resources/{RESOURCE}"
        ))
        .send(),
    )
    .await;
    let discovery = discovery.context("the probe's discovery request")?;
    ensure!(
        discovery.status() == StatusCode::OK,
        "discovery: {}",
        discovery.status()
    );
    let (token_time, token) = timed(
        http.post(format!("{base}/oauth/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", API_CLIENT_ID),
                ("client_secret", API_CLIENT_SECRET),
            ])
            .send(),
    )
    .await;
    let token = token.context("the probe's token request")?;
    ensure!(
        token.status() == StatusCode::OK,
        "client credentials: {}",
        token.status()
    );
    Ok(discovery_time.max(token_time))
}

/// Registers a public client (DCR).
async fn register(http: &reqwest::Client, base: &str) -> Result<String> {
    let response = http
        .post(format!(
            "{base}/api/v1/resources/{RESOURCE}/clients:register"
        ))
        .json(&json!({
            "client_name": "flood",
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "none",
            "scope": SCOPE,
        }))
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    ensure!(
        status == StatusCode::CREATED,
        "registration: {status} {body}"
    );
    Ok(body["client_id"].as_str().context("client_id")?.to_owned())
}

/// `GET /oauth/authorize`; the `Location` of the 302.
async fn authorize(
    http: &reqwest::Client,
    base: &str,
    client_id: &str,
    sequence: usize,
) -> Result<String> {
    let verifier = format!("flood-verifier-{sequence:012}-0123456789abcdefghijklmnopq");
    let response = http
        .get(format!("{base}/oauth/authorize"))
        .query(&[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", REDIRECT_URI),
            ("scope", SCOPE),
            ("state", &format!("flood-{sequence}")),
            ("code_challenge", &pkce_s256(&verifier)),
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
        .map(str::to_owned);
    match location {
        Some(location) if status == StatusCode::FOUND => Ok(location),
        _ => bail!(
            "authorize answered {status}: {}",
            response.text().await.unwrap_or_default()
        ),
    }
}

#[derive(Debug, Default)]
struct FloodOutcome {
    /// Redirected back to the client with `error=temporarily_unavailable`.
    refused: usize,
    /// Sent to the login endpoint: a sign-in held in memory.
    admitted: usize,
    /// Anything else, for the message.
    other: Option<String>,
}

/// `count` sign-ins from 8 concurrent tasks, none finished.
async fn flood_sign_ins(
    http: &reqwest::Client,
    base: &str,
    client_id: &str,
    first: usize,
    count: usize,
) -> Result<FloodOutcome> {
    const TASKS: usize = 8;
    let mut tasks = JoinSet::new();
    for task in 0..TASKS {
        let http = http.clone();
        let base = base.to_owned();
        let client_id = client_id.to_owned();
        tasks.spawn(async move {
            let mut outcome = FloodOutcome::default();
            for sequence in (first + task..first + count).step_by(TASKS) {
                let location = authorize(&http, &base, &client_id, sequence).await?;
                if location.starts_with(LOGIN_ENDPOINT) {
                    outcome.admitted += 1;
                } else if location.starts_with(REDIRECT_URI)
                    && location.contains("error=temporarily_unavailable")
                {
                    outcome.refused += 1;
                } else {
                    outcome.other.get_or_insert(location);
                }
            }
            anyhow::Ok(outcome)
        });
    }
    let mut total = FloodOutcome::default();
    while let Some(outcome) = tasks.join_next().await {
        let outcome = outcome??;
        total.refused += outcome.refused;
        total.admitted += outcome.admitted;
        total.other = total.other.or(outcome.other);
    }
    Ok(total)
}

/// How many sign-ins the emulator holds (`GET /_emulator/login-requests`).
async fn pending_login_requests(http: &reqwest::Client, base: &str) -> Result<usize> {
    let body: Value = http
        .get(format!("{base}/_emulator/login-requests"))
        .send()
        .await?
        .json()
        .await?;
    Ok(body["login_requests"]
        .as_array()
        .context("login_requests")?
        .len())
}
