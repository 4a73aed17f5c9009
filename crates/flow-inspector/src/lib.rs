//! The flow inspector's memory: recent sign-in flows, each a timeline of hops between the MCP
//! client, its browser, the emulator, Your App and the MCP server, with what each hop proved.
//!
//! The model is plain data and logic: [`RecordLayer`] (the one part that knows axum and tower)
//! hands every request a piece served over to [`Inspector::record`] as an [`Exchange`], and the
//! emulator's `http::inspector` serves what is kept here as JSON, a page and a stream of updates.
//! The crate observes every piece (the emulator, Your App, the MCP server) and depends on none of
//! them.
//!
//! What a hop proved is read, not guessed. A handler attaches the facts of its answer to the
//! response as extensions, the layer copies them into the [`Exchange`], and the hop uses them:
//! [`HopFacts`] gives the endpoint served and the check that failed (the checks before it in
//! the endpoint's order passed, those after it were not reached; [`Check::ChallengedWithoutBearer`]
//! is the MCP server's 401 that starts discovery, not a failure), [`ErrorSummary`] the error code
//! and description shown. The emulator's handlers and the reference MCP server's attach both;
//! Your App attaches nothing (it checks nothing the inspector knows: its hops are
//! [`Endpoint::Other`]). Redaction is the test bed's one rule ([`redact`], from
//! `scalekit_wire::redact`), the one the emulator's request log and the driver's hops use.
//!
//! Inference remains only as the fallback for an answer that carries no facts, and only for the
//! fact it lacks:
//! - without [`HopFacts`], the endpoint comes from a route table (who served it, the method, the
//!   path and, at the token endpoint, `grant_type`), and an error answer's failed check from its
//!   status, its OAuth error code and words of the description the emulator writes (`another
//!   client`, `code_verifier`, `no user was submitted`…);
//! - without an [`ErrorSummary`], the error and its description are read off the wire: an OAuth
//!   or gateway JSON body, the hosted error page's `<title>` (`Sign-in error: {error}
//!   ({description})`), a redirect's `error` or a `WWW-Authenticate` challenge.
//!
//! Answers without facts are those no handler of a piece that attaches them made: an answer the
//! emulator's fault injection (`/_emulator/faults`) puts in a handler's place, playing a
//! misbehaving server; the MCP server's answer to a path it does not serve; any piece recorded
//! by a [`RecordLayer`] that attaches none, such as a server of somebody else's (the route table
//! knows only the test bed's paths, so such a piece's answers show at least their status and
//! error). Your App's answers carry none and need none. An answer with facts but without an
//! [`ErrorSummary`] has its error read off the wire too: the emulator's error redirects to the
//! client (`?error=access_denied&error_description=…`) are such answers.
//!
//! Two questions are about correlation rather than about what an answer proved, and are answered
//! from the protocol: who sent a request (the emulator cannot see its caller: the browser follows
//! redirects to authorize, the callback and consent; Your App gets the management token and posts
//! the user; the MCP server fetches `/keys`), and whether a hop no key places waits for the next
//! flow (discovery documents, told by their `/.well-known/` path, registration, authorize and
//! the MCP server's first request without a bearer).
//!
//! Correlation learns keys from the traffic instead of asking the state machine. An authorize
//! answer that sends the browser to Your App opens a flow, keyed by its login request id and the
//! emulator's `state`; Your App's `/login?login_request_id=`, the user POST's path, the callback's
//! `state`, the consent form's id, the code in a redirect and in the token request, the tokens in
//! a token response and the bearer on an MCP request each lead to that flow and teach it the next
//! key. Keys are indexed by a SHA-256 prefix, never as the secret itself, and leave the index
//! with their flow. Discovery, registration and the MCP server's first 401 come before any flow:
//! they wait and join the next flow of the same client (the registration answer names it), or
//! the next flow started within [`TIME_WINDOW_MS`], marked as matched by time. A keyless hop
//! after a flow started (Your App's management token, the JWKS) joins the flow active within
//! that window, also by time. Whatever matches nothing is listed under "other requests".
//!
//! Recording is lazy: [`Inspector::record`] only queues the raw exchange. The queue is processed
//! (redacted, summarised, correlated), in order of recording, when somebody reads, and at once
//! while somebody subscribes to updates (the live page), so a test bed nobody inspects pays
//! little per request. Raw exchanges stay in memory only while queued; nothing leaves unredacted,
//! since every read processes the queue first.
//!
//! Memory is bounded whatever the load: at most [`MAX_PENDING`] queued exchanges of at most
//! [`MAX_PENDING_BYTES`] in all (beyond that the oldest are processed, not dropped),
//! [`MAX_FLOWS`] flows of at most [`MAX_HOPS`] hops, bodies and URLs cut at
//! [`redact::MAX_TEXT_BYTES`], at most [`MAX_OTHER`] unmatched hops.

mod checks;
mod curl;
mod layer;
mod observe;
pub mod redact;

pub use checks::CheckOutcome;
pub use layer::{Record, RecordLayer};
pub use scalekit_wire::{Check, Endpoint, ErrorSummary, HopFacts};

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use serde::Serialize;
use tokio::sync::broadcast;

use observe::{Observed, observe};

/// How many flows are kept (the oldest go first).
pub const MAX_FLOWS: usize = 100;

/// How many hops one flow keeps; later ones are counted, not kept.
pub const MAX_HOPS: usize = 48;

/// How many unmatched hops are kept.
pub const MAX_OTHER: usize = 100;

/// How many recorded exchanges may wait to be processed; beyond that the oldest are processed.
/// Under sustained load every exchange is processed anyway, so a longer queue would only hold
/// more memory and churn the allocator (1,024 put RSS after 100,000 flows over twice the RSS at
/// start, 256 just over); this one covers a burst of a few flows between two looks, which is
/// what a person or a test reading the inspector after a run sees at no cost.
pub const MAX_PENDING: usize = 64;

/// How many bytes (bodies, headers, URLs, roughly their bookkeeping) the waiting exchanges may
/// hold in all; beyond that the oldest are processed.
pub const MAX_PENDING_BYTES: usize = 256 * 1024;

/// How far apart a keyless hop and a flow may be to be matched by time.
pub const TIME_WINDOW_MS: u64 = 5_000;

/// How many request headers a hop keeps, and how many bytes of them in all.
const MAX_HEADERS: usize = 16;
const MAX_HEADER_TOTAL_BYTES: usize = 1024;

/// How many correlation keys one flow keeps in the index (each refresh adds two).
const MAX_KEYS_PER_FLOW: usize = 32;

/// Request headers that say nothing about the protocol (browser hints, transport details).
const NOISE_HEADERS: &[&str] = &[
    "host",
    "connection",
    "accept-encoding",
    "accept-language",
    "cache-control",
    "pragma",
    "upgrade-insecure-requests",
    "user-agent",
    "dnt",
    "priority",
];

/// Whether a hop leaves out a request header (lowercase name).
fn is_noise(name: &str) -> bool {
    NOISE_HEADERS.contains(&name) || name.starts_with("sec-")
}

/// A party in the sequence diagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    /// The MCP client (the driver, an SDK, an IDE).
    McpClient,
    /// The MCP client's user agent: the person's browser or the driver's redirect follower.
    Browser,
    /// The emulated Scalekit environment.
    Emulator,
    /// The customer's login service.
    YourApp,
    /// The protected MCP server.
    McpServer,
}

/// How a hop was tied to its flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchedBy {
    /// A key the flow had learned (login request id, state, code, token…).
    Key,
    /// The client id, learned from registration or the authorize request.
    Client,
    /// Only by time: it happened within a few seconds of the flow.
    Time,
}

/// One request header as a hop keeps it (credentials cut).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Header {
    /// Lowercase name.
    pub name: String,
    /// Value, redacted.
    pub value: String,
}

/// What came back, in short.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ResponseSummary {
    /// `Content-Type`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// `Location`, redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The error code the answer carried: its handler's [`ErrorSummary`] (a gateway error's gRPC
    /// code as the number its body carries), else read off the wire (an OAuth or gateway error
    /// body, the hosted error page, a redirect's `error` or a `WWW-Authenticate` challenge).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    /// An HTML page's title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// A JSON body, secrets cut, at most 1 KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// One request and its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hop {
    /// Order of arrival (a request made while serving another has a higher number).
    pub seq: u64,
    /// Wall-clock unix milliseconds when the request arrived.
    pub started_at_ms: u64,
    /// Until the answer's head was ready, in microseconds.
    pub duration_us: u64,
    /// Who sent it.
    pub from: Actor,
    /// Who answered.
    pub to: Actor,
    /// The HTTP method.
    pub method: String,
    /// The full URL, secrets cut.
    pub url: String,
    /// One line: method, path and what kind of call it is.
    pub summary: String,
    /// Request headers, credentials cut.
    pub request_headers: Vec<Header>,
    /// The request body, secrets cut, at most 1 KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_body: Option<String>,
    /// The answer's status.
    pub status: u16,
    /// The answer, in short.
    pub response: ResponseSummary,
    /// What the answering piece verified.
    pub checks: Vec<CheckOutcome>,
    /// How it was tied to its flow (`None`: not tied to one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched_by: Option<MatchedBy>,
}

impl Hop {
    /// The `curl` command that repeats this hop, secrets as `<redacted>`.
    pub fn curl(&self) -> String {
        curl::render(self)
    }
}

/// One request a piece served, as the recording layer saw it. It holds raw values (codes,
/// tokens) only until [`Inspector::record`] has redacted them; its `Debug` shows none.
pub struct Exchange {
    /// The piece that answered.
    pub served_by: Actor,
    /// That piece's base URL, without a trailing slash.
    pub base_url: Arc<str>,
    /// From [`Inspector::next_seq`], taken when the request arrived.
    pub seq: u64,
    /// Wall-clock unix milliseconds when the request arrived.
    pub started_at_ms: u64,
    /// Until the answer's head was ready.
    pub duration_us: u64,
    /// The request method.
    pub method: Method,
    /// The request target as received.
    pub uri: Uri,
    /// The request headers.
    pub request_headers: HeaderMap,
    /// The request body, when it was small enough to keep.
    pub request_body: Option<Vec<u8>>,
    /// The answer's status.
    pub status: StatusCode,
    /// The answer's headers (`Content-Type`, `Location` and `WWW-Authenticate` are read).
    pub response_headers: HeaderMap,
    /// The answer's body, when it was small JSON or HTML.
    pub response_body: Option<Vec<u8>>,
    /// What the answering handler said about its answer (the endpoint it served, the check that
    /// failed), when it attached [`HopFacts`] to the response.
    pub hop_facts: Option<HopFacts>,
    /// What an error answer said, when its handler attached an [`ErrorSummary`].
    pub error_summary: Option<ErrorSummary>,
}

impl Exchange {
    /// The same exchange holding only its own memory, without the request headers no hop
    /// keeps. A server's request target and header values may be slices of its connection's
    /// read buffer; a queued exchange must not keep that buffer alive.
    fn detached(mut self) -> Exchange {
        if let Ok(uri) = Uri::try_from(self.uri.to_string()) {
            self.uri = uri;
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &self.request_headers {
            if is_noise(name.as_str()) {
                continue;
            }
            if let Ok(mut copy) = HeaderValue::from_bytes(value.as_bytes()) {
                copy.set_sensitive(value.is_sensitive());
                headers.append(name.clone(), copy);
            }
        }
        self.request_headers = headers;
        self
    }

    /// Roughly how many bytes it holds, for [`MAX_PENDING_BYTES`].
    fn weight(&self) -> usize {
        let headers = |headers: &HeaderMap| {
            headers
                .iter()
                .map(|(name, value)| name.as_str().len() + value.len() + 128)
                .sum::<usize>()
        };
        size_of::<Exchange>()
            + self.base_url.len()
            + self
                .uri
                .path_and_query()
                .map_or(0, |target| target.as_str().len())
            + headers(&self.request_headers)
            + headers(&self.response_headers)
            + self.request_body.as_ref().map_or(0, Vec::len)
            + self.response_body.as_ref().map_or(0, Vec::len)
            + self.error_summary.as_ref().map_or(0, |summary| {
                summary.code.len()
                    + summary.message.len()
                    + summary.fields.iter().map(String::len).sum::<usize>()
            })
    }
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Exchange")
            .field("served_by", &self.served_by)
            .field("method", &self.method)
            .field("path", &self.uri.path())
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// A flow in the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowSummary {
    /// The login request id that opened it.
    pub id: String,
    /// The MCP client's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// When its first hop arrived (unix ms).
    pub started_at_ms: u64,
    /// When its last hop arrived.
    pub updated_at_ms: u64,
    /// Hops kept.
    pub hops: usize,
    /// Hops past [`MAX_HOPS`], counted but not kept.
    pub hops_dropped: u32,
    /// Checks that failed, over all hops.
    pub failed_checks: usize,
    /// Whether the token endpoint issued tokens for it.
    pub tokens_issued: bool,
    /// The last hop's summary and status.
    pub last: String,
}

/// A flow with its hops, each with its `curl` command.
#[derive(Debug, Clone, Serialize)]
pub struct FlowDetail {
    /// The flow, in short.
    #[serde(flatten)]
    pub summary: FlowSummary,
    /// Its hops in order of arrival.
    pub hop_list: Vec<HopView>,
}

/// A hop as the API serves it: the hop and its `curl` command.
#[derive(Debug, Clone, Serialize)]
pub struct HopView {
    /// The hop.
    #[serde(flatten)]
    pub hop: Hop,
    /// "Copy as curl".
    pub curl: String,
}

impl From<Hop> for HopView {
    fn from(hop: Hop) -> Self {
        let curl = hop.curl();
        HopView { hop, curl }
    }
}

/// What changed, sent to every subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Update {
    /// The flow that changed; `None` when only the other requests did (or everything, on
    /// reset).
    pub flow: Option<String>,
}

/// Recent flows and their hops. Cheap to clone: every clone shares one memory.
#[derive(Debug, Clone)]
pub struct Inspector {
    inner: Arc<Inner>,
}

/// Lock order: `recorded`, then `pending`. Exchanges leave `pending` only while `recorded` is
/// held, so they are filed in the order they were recorded.
#[derive(Debug)]
struct Inner {
    recorded: Mutex<Recorded>,
    pending: Mutex<Pending>,
    updates: broadcast::Sender<Update>,
    next_seq: AtomicU64,
}

/// Exchanges recorded but not processed yet, oldest first.
#[derive(Debug, Default)]
struct Pending {
    exchanges: VecDeque<(Exchange, usize)>,
    /// The sum of their weights.
    bytes: usize,
}

impl Pending {
    fn is_over(&self) -> bool {
        self.exchanges.len() > MAX_PENDING || self.bytes > MAX_PENDING_BYTES
    }

    fn pop(&mut self) -> Option<Exchange> {
        let (exchange, weight) = self.exchanges.pop_front()?;
        self.bytes -= weight;
        Some(exchange)
    }
}

#[derive(Debug, Default)]
struct Recorded {
    /// Oldest first.
    flows: VecDeque<Flow>,
    /// Key hash → flow id.
    index: HashMap<u128, String>,
    /// Hops tied to no flow, oldest first.
    other: VecDeque<Waiting>,
}

#[derive(Debug)]
struct Flow {
    id: String,
    client_id: Option<String>,
    started_at_ms: u64,
    updated_at_ms: u64,
    hops: Vec<Hop>,
    hops_dropped: u32,
    tokens_issued: bool,
    keys: VecDeque<u128>,
}

impl Flow {
    fn summary(&self) -> FlowSummary {
        FlowSummary {
            id: self.id.clone(),
            client_id: self.client_id.clone(),
            started_at_ms: self.started_at_ms,
            updated_at_ms: self.updated_at_ms,
            hops: self.hops.len(),
            hops_dropped: self.hops_dropped,
            failed_checks: self
                .hops
                .iter()
                .flat_map(|hop| &hop.checks)
                .filter(|check| !check.passed)
                .count(),
            tokens_issued: self.tokens_issued,
            last: self
                .hops
                .last()
                .map(|hop| format!("{} → {}", hop.summary, hop.status))
                .unwrap_or_default(),
        }
    }

    /// Adds a hop in order of arrival, or counts it when the flow is full.
    fn add(&mut self, hop: Hop) {
        self.updated_at_ms = self.updated_at_ms.max(hop.started_at_ms);
        self.started_at_ms = self.started_at_ms.min(hop.started_at_ms);
        if self.hops.len() >= MAX_HOPS {
            self.hops_dropped = self.hops_dropped.saturating_add(1);
            return;
        }
        let position = self.hops.partition_point(|kept| kept.seq < hop.seq);
        self.hops.insert(position, hop);
    }
}

/// A hop tied to no flow yet.
#[derive(Debug)]
struct Waiting {
    hop: Hop,
    /// The client it belongs to, when known (registration, a failed authorize).
    client_id: Option<String>,
    /// Whether a later flow may claim it (it comes before flows: discovery, registration, the
    /// first 401).
    claimable: bool,
}

impl Default for Inspector {
    fn default() -> Self {
        Self::new()
    }
}

impl Inspector {
    /// An empty inspector.
    pub fn new() -> Self {
        let (updates, _) = broadcast::channel(256);
        Inspector {
            inner: Arc::new(Inner {
                recorded: Mutex::default(),
                pending: Mutex::default(),
                updates,
                next_seq: AtomicU64::new(1),
            }),
        }
    }

    /// The next arrival number; the recording layer takes one when a request arrives.
    pub fn next_seq(&self) -> u64 {
        self.inner.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Updates from now on: one per new or changed flow.
    pub fn subscribe(&self) -> broadcast::Receiver<Update> {
        self.inner.updates.subscribe()
    }

    /// The processed memory, without what is still queued.
    fn recorded(&self) -> MutexGuard<'_, Recorded> {
        self.inner
            .recorded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.inner
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The processed memory after every queued exchange was processed (what reads see).
    fn processed(&self) -> MutexGuard<'_, Recorded> {
        let mut recorded = self.recorded();
        let queued = std::mem::take(&mut *self.pending()).exchanges;
        for (exchange, _) in queued {
            self.file(&mut recorded, observe(exchange));
        }
        recorded
    }

    /// Files an observed hop and tells the subscribers, if any.
    fn file(&self, recorded: &mut Recorded, observed: Observed) {
        let update = recorded.file(observed);
        if self.inner.updates.receiver_count() > 0 {
            // The last subscriber may have gone meanwhile: not an error.
            let _ = self.inner.updates.send(update);
        }
    }

    /// Recent flows, newest first.
    pub fn flows(&self) -> Vec<FlowSummary> {
        self.processed()
            .flows
            .iter()
            .rev()
            .map(Flow::summary)
            .collect()
    }

    /// One flow with its hops.
    pub fn flow(&self, id: &str) -> Option<FlowDetail> {
        let (summary, hops) = {
            let recorded = self.processed();
            let flow = recorded.flows.iter().find(|flow| flow.id == id)?;
            (flow.summary(), flow.hops.clone())
        };
        Some(FlowDetail {
            summary,
            hop_list: hops.into_iter().map(HopView::from).collect(),
        })
    }

    /// Hops tied to no flow, newest first.
    pub fn other_requests(&self) -> Vec<HopView> {
        let hops: Vec<Hop> = self
            .processed()
            .other
            .iter()
            .rev()
            .map(|waiting| waiting.hop.clone())
            .collect();
        hops.into_iter().map(HopView::from).collect()
    }

    /// Forgets every flow and hop, queued ones too (the control API's reset).
    pub fn clear(&self) {
        let mut recorded = self.recorded();
        *self.pending() = Pending::default();
        *recorded = Recorded::default();
        drop(recorded);
        let _ = self.inner.updates.send(Update { flow: None });
    }

    /// Keeps an exchange for the inspector. While somebody subscribes to updates it is redacted,
    /// tied to its flow and announced at once (after whatever was queued before it); otherwise
    /// it is queued until somebody reads, and only the oldest queued exchanges are processed
    /// when the queue is full.
    pub fn record(&self, exchange: Exchange) {
        if self.inner.updates.receiver_count() > 0 {
            let observed = observe(exchange);
            let mut recorded = self.processed();
            self.file(&mut recorded, observed);
            return;
        }
        let exchange = exchange.detached();
        let weight = exchange.weight();
        let over = {
            let mut pending = self.pending();
            pending.exchanges.push_back((exchange, weight));
            pending.bytes += weight;
            pending.is_over()
        };
        if over {
            let mut recorded = self.recorded();
            loop {
                let oldest = {
                    let mut pending = self.pending();
                    if !pending.is_over() {
                        break;
                    }
                    pending.pop()
                };
                let Some(oldest) = oldest else { break };
                self.file(&mut recorded, observe(oldest));
            }
        }
    }

    /// How many recorded exchanges wait to be processed.
    #[cfg(test)]
    fn pending_len(&self) -> usize {
        self.pending().exchanges.len()
    }
}

impl Recorded {
    /// Ties an observed hop to its flow (or keeps it as another request) and says what changed.
    fn file(&mut self, observed: Observed) -> Update {
        let Observed {
            mut hop,
            keys:
                observe::Keys {
                    opens,
                    client_id,
                    finds,
                    learns,
                    tokens_issued,
                },
            before_flows,
        } = observed;

        if let Some(id) = opens {
            hop.matched_by = Some(MatchedBy::Key);
            self.open(id.clone(), client_id, hop, &learns, tokens_issued);
            return Update { flow: Some(id) };
        }

        let found = finds
            .iter()
            .find_map(|hash| self.index.get(hash).cloned())
            .map(|id| (id, MatchedBy::Key));
        let found = found.or_else(|| {
            if before_flows || !finds.is_empty() {
                return None;
            }
            // A keyless hop after a flow started: the flow active within the window.
            self.flows
                .iter()
                .rev()
                .find(|flow| {
                    hop.started_at_ms.saturating_sub(flow.updated_at_ms) <= TIME_WINDOW_MS
                        && flow.started_at_ms <= hop.started_at_ms
                })
                .map(|flow| (flow.id.clone(), MatchedBy::Time))
        });
        let Some((id, matched_by)) = found else {
            self.wait(Waiting {
                hop,
                client_id,
                claimable: before_flows,
            });
            return Update { flow: None };
        };
        hop.matched_by = Some(matched_by);
        self.add_to(&id, hop, &learns, tokens_issued);
        Update { flow: Some(id) }
    }

    fn open(
        &mut self,
        id: String,
        client_id: Option<String>,
        hop: Hop,
        learns: &[u128],
        tokens_issued: bool,
    ) {
        if let Some(existing) = self.flows.iter().position(|flow| flow.id == id) {
            // The same login request id again (ids restart after a restart): the new flow wins.
            if let Some(flow) = self.flows.remove(existing) {
                self.forget(&flow);
            }
        }
        if self.flows.len() >= MAX_FLOWS
            && let Some(oldest) = self.flows.pop_front()
        {
            self.forget(&oldest);
        }
        let mut flow = Flow {
            id: id.clone(),
            client_id: client_id.clone(),
            started_at_ms: hop.started_at_ms,
            updated_at_ms: hop.started_at_ms,
            hops: Vec::new(),
            hops_dropped: 0,
            // A flow opened by a token answer (cross-app access) has its tokens already.
            tokens_issued,
            keys: VecDeque::new(),
        };
        // Claim what came before: the same client's, else anything within the window.
        let opened_at = hop.started_at_ms;
        let mut index = 0;
        while index < self.other.len() {
            let waiting = &self.other[index];
            let matched_by = match (&waiting.client_id, &client_id) {
                _ if !waiting.claimable => None,
                (Some(waiting_client), Some(client)) if waiting_client == client => {
                    Some(MatchedBy::Client)
                }
                (Some(_), _) => None,
                (None, _)
                    if opened_at.saturating_sub(waiting.hop.started_at_ms) <= TIME_WINDOW_MS =>
                {
                    Some(MatchedBy::Time)
                }
                (None, _) => None,
            };
            match matched_by {
                Some(matched_by) => {
                    if let Some(mut waiting) = self.other.remove(index) {
                        waiting.hop.matched_by = Some(matched_by);
                        flow.add(waiting.hop);
                    }
                }
                None => index += 1,
            }
        }
        flow.add(hop);
        self.flows.push_back(flow);
        self.learn(&id, learns);
    }

    fn add_to(&mut self, id: &str, hop: Hop, learns: &[u128], tokens_issued: bool) {
        if let Some(flow) = self.flows.iter_mut().find(|flow| flow.id == id) {
            flow.add(hop);
            flow.tokens_issued |= tokens_issued;
        }
        self.learn(id, learns);
    }

    /// Indexes keys for a flow, dropping its oldest when it has too many.
    fn learn(&mut self, id: &str, learns: &[u128]) {
        let Some(flow) = self.flows.iter_mut().find(|flow| flow.id == id) else {
            return;
        };
        for hash in learns {
            if flow.keys.contains(hash) {
                continue;
            }
            if flow.keys.len() >= MAX_KEYS_PER_FLOW
                && let Some(oldest) = flow.keys.pop_front()
                && self.index.get(&oldest).is_some_and(|owner| owner == id)
            {
                self.index.remove(&oldest);
            }
            flow.keys.push_back(*hash);
            self.index.insert(*hash, id.to_owned());
        }
    }

    /// Drops a flow's keys from the index.
    fn forget(&mut self, flow: &Flow) {
        for hash in &flow.keys {
            if self.index.get(hash).is_some_and(|owner| *owner == flow.id) {
                self.index.remove(hash);
            }
        }
    }

    fn wait(&mut self, waiting: Waiting) {
        if self.other.len() >= MAX_OTHER {
            self.other.pop_front();
        }
        self.other.push_back(waiting);
    }
}

#[cfg(test)]
mod tests;
