//! One run of the server check: each group of checks in order, every request over HTTP, every
//! answer judged by `judge` and kept as evidence.
//!
//! The refusal, scope, origin and key groups need a valid token the server accepts
//! (`accepted/minted-token`, the baseline) and are skipped without one: a server that refuses
//! everything proves nothing by refusing a bad token. The key group runs last, because tokens
//! signed before a key is retired stop working.

use std::time::{Duration, Instant};

use mcp_driver::{DriverConfig, Hop};
use scalekit_wire::Secret;
use serde_json::{Value, json};
use url::Url;

use super::checks::{CheckId, Group};
use super::diagnose::Mistake;
use super::emulator::{Emulator, EmulatorError};
use super::judge::{self, Verdict};
use super::probe::{Carrier, McpRequest, Observation, Prober, TestToken};
use super::{Progress, Record, ServerCheck, ServerCheckError, skipped_all};
use crate::CheckStatus;

/// The foreign `Origin` of the origin check (a page the developer happens to visit).
const FOREIGN_ORIGIN: &str = "http://evil.example";

/// The loopback `Origin` of the origin check: MCP Inspector's.
const LOOPBACK_ORIGIN: &str = "http://localhost:6274";

/// How far the time-based tokens are out of their window, in seconds (the emulator's defects use
/// the same): any leeway under it passes.
const TIME_SKEW_SECS: u64 = 600;

/// The state of one run.
pub(super) struct Run<'a> {
    check: &'a ServerCheck,
    prober: Prober,
    emulator: Emulator,
    /// The first request, without a token.
    unauthenticated: Observation,
    /// A valid minted token the server accepted, once `accepted` ran.
    baseline: Option<TestToken>,
    /// The token of the real flow, if the server served it.
    real_token: Option<TestToken>,
}

/// The details of a check: the evidence of each observation, and the token.
fn evidence(observations: &[&Observation], token: Option<&TestToken>) -> Value {
    let mut details = json!({
        "evidence": observations.iter().map(|observation| observation.evidence()).collect::<Vec<_>>(),
    });
    if let Some(token) = token {
        details["token"] = token.evidence();
    }
    details
}

fn hop_lines(hops: &[Hop]) -> Vec<String> {
    hops.iter().map(ToString::to_string).collect()
}

/// A failed mint, as the verdict of the check that needed the token.
fn mint_failed(error: &EmulatorError) -> Verdict {
    Verdict::failure(format!(
        "the emulator could not mint the token: {}",
        crate::error_chain(error)
    ))
}

/// Which rotation of the key group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rotation {
    /// The first: the server must pick the new key up.
    First,
    /// The second, after the retirement: the reason for a correct server to refetch and drop
    /// the retired key.
    Second,
}

impl Rotation {
    fn name(self) -> &'static str {
        match self {
            Rotation::First => "first",
            Rotation::Second => "second",
        }
    }
}

impl<'a> Run<'a> {
    /// The clients, and the first request without a token, which also shows that something
    /// answers at the URL.
    pub(super) async fn new(check: &'a ServerCheck) -> Result<Run<'a>, ServerCheckError> {
        let server_url = check.options.server_url.clone();
        let prober = Prober::new(server_url.clone()).map_err(ServerCheckError::HttpClient)?;
        let emulator = Emulator::new(check.stack.environment_url.clone())
            .map_err(ServerCheckError::HttpClient)?;
        let unauthenticated = prober.send(McpRequest::initialize(None)).await;
        if let Err(reason) = &unauthenticated.answer {
            return Err(ServerCheckError::ServerUnreachable {
                url: server_url,
                reason: reason.clone(),
            });
        }
        Ok(Run {
            check,
            prober,
            emulator,
            unauthenticated,
            baseline: None,
            real_token: None,
        })
    }

    /// The server under test.
    pub(super) fn server(&self) -> &Url {
        &self.prober.url
    }

    /// Runs one group.
    pub(super) async fn group(
        &mut self,
        group: Group,
        progress: &mut impl FnMut(Progress<'_>),
    ) -> Result<Vec<Record>, ServerCheckError> {
        Ok(match group {
            Group::Metadata => self.metadata().await,
            Group::Challenge => self.challenge().await,
            Group::Accepted => self.accepted().await,
            Group::Refused => self.refused().await?,
            Group::Scope => self.scope().await,
            Group::Origin => self.origin().await,
            Group::Keys => self.keys(progress).await,
        })
    }

    /// Sends `initialize` with `token` and judges the answer with `judge`.
    async fn present(
        &self,
        token: &TestToken,
        judge: impl Fn(&Observation) -> Verdict,
    ) -> (Verdict, Value) {
        let observation = self.prober.send(McpRequest::initialize(Some(token))).await;
        (judge(&observation), evidence(&[&observation], Some(token)))
    }

    /// Mints a token with `request` and judges `initialize` with it; the token comes back when
    /// the check held.
    async fn mint_and_present(
        &self,
        check: CheckId,
        request: Value,
        label: &str,
        judge: impl Fn(&Observation) -> Verdict,
    ) -> (Record, Option<TestToken>) {
        match self.emulator.mint(request, label).await {
            Err(error) => (Record::new(check, mint_failed(&error), Value::Null), None),
            Ok(token) => {
                let (verdict, details) = self.present(&token, judge).await;
                let held = verdict.status == CheckStatus::Success;
                (Record::new(check, verdict, details), held.then_some(token))
            }
        }
    }

    /// Why the token checks cannot say anything, if they cannot.
    fn without_baseline(&self) -> Option<&'static str> {
        self.baseline.is_none().then_some(
            "your server refused a valid token too (see accepted/minted-token), so a refusal here would prove nothing",
        )
    }

    // ---- metadata ----------------------------------------------------------------------------

    async fn metadata(&mut self) -> Vec<Record> {
        let server_url = self.server().clone();
        let mut candidates = vec![well_known(&server_url, true)];
        if server_url.path() != "/" {
            candidates.push(well_known(&server_url, false));
        }
        if let Some(url) = self
            .unauthenticated
            .challenge()
            .and_then(|challenge| challenge.resource_metadata)
            .and_then(|url| Url::parse(&url).ok())
            && !candidates.contains(&url)
        {
            candidates.push(url);
        }
        let mut tried = Vec::new();
        let mut found = None;
        for url in &candidates {
            let observation = self.prober.get(url).await;
            let document = observation
                .json()
                .filter(|document| document.is_object() && observation.status() == Some(200));
            tried.push(observation);
            if let Some(document) = document {
                found = Some((url.clone(), document));
                break;
            }
        }
        let tried_refs: Vec<&Observation> = tried.iter().collect();
        let Some((found_at, document)) = found else {
            let seen = tried
                .iter()
                .map(Observation::describe)
                .collect::<Vec<_>>()
                .join("; ");
            let mut records =
                skipped_all(Group::Metadata, "no protected-resource metadata was found");
            records[0] = Record::new(
                CheckId::MetadataDocument,
                Verdict::mistake(Mistake::MetadataMissing, seen),
                evidence(&tried_refs, None),
            );
            return records;
        };
        let mut details = evidence(&tried_refs, None);
        details["found_at"] = Value::String(found_at.to_string());
        details["document"] = document.clone();
        let mut records = vec![Record::new(
            CheckId::MetadataDocument,
            Verdict::success(),
            details,
        )];

        let resource = document.get("resource").and_then(Value::as_str);
        let verdict = if resource == Some(server_url.as_str()) {
            Verdict::success()
        } else {
            Verdict::mistake(
                Mistake::MetadataResourceMismatch,
                format!(
                    "resource is {resource:?}, the Server URL is {:?}",
                    server_url.as_str()
                ),
            )
        };
        records.push(Record::new(
            CheckId::MetadataResource,
            verdict,
            json!({ "resource": resource, "server_url": server_url.as_str() }),
        ));

        let issuer = self.check.resource_issuer();
        let servers = document.get("authorization_servers");
        let named = servers.and_then(Value::as_array).is_some_and(|servers| {
            servers
                .iter()
                .any(|server| server.as_str() == Some(&issuer))
        });
        let verdict = if named {
            Verdict::success()
        } else {
            Verdict::mistake(
                Mistake::MetadataWrongAuthorizationServer,
                format!(
                    "authorization_servers is {}, expected it to contain {issuer:?}",
                    servers.map_or_else(|| "absent".to_owned(), ToString::to_string)
                ),
            )
        };
        records.push(Record::new(
            CheckId::MetadataAuthorizationServers,
            verdict,
            json!({ "authorization_servers": servers, "expected": issuer }),
        ));

        let methods = document.get("bearer_methods_supported");
        let header_only = match methods {
            None => true,
            Some(Value::Array(methods)) => methods.iter().all(|method| method == "header"),
            Some(_) => false,
        };
        let verdict = if header_only {
            Verdict::success()
        } else {
            Verdict::mistake(
                Mistake::MetadataBearerMethods,
                format!(
                    "bearer_methods_supported is {}",
                    methods.map_or_else(String::new, ToString::to_string)
                ),
            )
        };
        records.push(Record::new(
            CheckId::MetadataBearerMethods,
            verdict,
            json!({ "bearer_methods_supported": methods }),
        ));
        records
    }

    // ---- challenge ---------------------------------------------------------------------------

    async fn challenge(&mut self) -> Vec<Record> {
        let unauthenticated = &self.unauthenticated;
        let mut records = vec![Record::new(
            CheckId::ChallengeNoToken,
            judge::unauthenticated(unauthenticated),
            evidence(&[unauthenticated], None),
        )];

        let challenge = (unauthenticated.status() == Some(401))
            .then(|| unauthenticated.challenge())
            .flatten();
        let record = match challenge {
            None => Record::new(
                CheckId::ChallengeResourceMetadata,
                Verdict::skipped("there is no 401 Bearer challenge to read"),
                Value::Null,
            ),
            Some(challenge) => match challenge.resource_metadata {
                None => Record::new(
                    CheckId::ChallengeResourceMetadata,
                    Verdict::mistake(
                        Mistake::ChallengeWithoutResourceMetadata,
                        format!(
                            "WWW-Authenticate: {}",
                            unauthenticated.www_authenticate().unwrap_or_default()
                        ),
                    ),
                    evidence(&[unauthenticated], None),
                ),
                Some(url) => self.resource_metadata_leads_back(&url).await,
            },
        };
        records.push(record);

        let garbage =
            TestToken::from_jwt(Secret::new("not-a-jwt"), "a bearer token that is not a JWT");
        let (verdict, details) = self
            .present(&garbage, |observation| {
                judge::refusal(observation, Mistake::MalformedTokenAccepted)
            })
            .await;
        records.push(Record::new(
            CheckId::ChallengeMalformedToken,
            verdict,
            details,
        ));
        records
    }

    async fn resource_metadata_leads_back(&self, url: &str) -> Record {
        let Ok(parsed) = Url::parse(url) else {
            return Record::new(
                CheckId::ChallengeResourceMetadata,
                Verdict::mistake(
                    Mistake::ChallengeResourceMetadataWrong,
                    format!("resource_metadata {url:?} is not an absolute URL"),
                ),
                evidence(&[&self.unauthenticated], None),
            );
        };
        let observation = self.prober.get(&parsed).await;
        let resource = observation
            .json()
            .and_then(|document| document.get("resource").cloned());
        let verdict = if observation.status() == Some(200)
            && resource.as_ref().and_then(Value::as_str) == Some(self.server().as_str())
        {
            Verdict::success()
        } else {
            Verdict::mistake(
                Mistake::ChallengeResourceMetadataWrong,
                format!(
                    "{} gave resource {}",
                    observation.describe(),
                    resource.map_or_else(|| "nothing".to_owned(), |value| value.to_string())
                ),
            )
        };
        Record::new(
            CheckId::ChallengeResourceMetadata,
            verdict,
            evidence(&[&self.unauthenticated, &observation], None),
        )
    }

    // ---- accepted ----------------------------------------------------------------------------

    async fn accepted(&mut self) -> Vec<Record> {
        let mut records = vec![self.real_flow().await];

        let (record, baseline) = self
            .mint_and_present(
                CheckId::AcceptedMintedToken,
                json!({}),
                "a valid token minted by the emulator (the shape of a real flow's token)",
                |observation| judge::acceptance(observation, Mistake::ValidTokenRefused),
            )
            .await;
        self.baseline = baseline;
        records.push(record);

        records.push(self.stateless().await);

        let (record, _) = self
            .mint_and_present(
                CheckId::AcceptedResourceIssuer,
                json!({ "issuer": "resource" }),
                "a valid token whose iss is the resource issuer {env}/resources/{res}",
                |observation| judge::acceptance(observation, Mistake::ResourceIssuerRefused),
            )
            .await;
        records.push(record);
        records.push(self.agent_token().await);
        records
    }

    /// An agent of the server's resource, allowed every scope of it, and its token.
    async fn agent_token(&self) -> Record {
        let resource = self.check.resource();
        match self
            .emulator
            .agent_token(&resource.id, &resource.scopes)
            .await
        {
            Err(error) => Record::new(
                CheckId::AcceptedAgentToken,
                Verdict::failure(format!(
                    "the emulator issued no agent token: {}",
                    crate::error_chain(&error)
                )),
                Value::Null,
            ),
            Ok(token) => {
                let (verdict, details) = self
                    .present(&token, |observation| {
                        judge::acceptance(observation, Mistake::AgentTokenRefused)
                    })
                    .await;
                Record::new(CheckId::AcceptedAgentToken, verdict, details)
            }
        }
    }

    /// The driver's whole OAuth flow against the server, then a 2025-11-25 session with its token.
    async fn real_flow(&mut self) -> Record {
        let (hops, outcome) = mcp_driver::authorize(&self.driver_config()).await;
        let authorized = match outcome {
            Ok(authorized) => authorized,
            Err(error) => {
                return Record::new(
                    CheckId::AcceptedRealFlow,
                    Verdict::mistake(Mistake::FlowFailed, error.to_string()),
                    json!({ "driver_error": error.to_string(), "hops": hop_lines(&hops) }),
                );
            }
        };
        let token = TestToken::from_jwt(
            authorized.tokens.access_token.clone(),
            "an access token from a real flow (DCR, PKCE, resource)",
        );
        let (verdict, mut details) = self.session_lists_tools(&token).await;
        details["hops"] = json!(hop_lines(&hops));
        if verdict.status == CheckStatus::Success {
            self.real_token = Some(token);
        }
        Record::new(CheckId::AcceptedRealFlow, verdict, details)
    }

    fn driver_config(&self) -> DriverConfig {
        let mut config = DriverConfig::new(self.server().clone());
        config.client_name = "testbed mcp-server check".to_owned();
        config.timeout = Duration::from_secs(10);
        config
    }

    /// `initialize`, `notifications/initialized` and `tools/list` with `token`.
    async fn session_lists_tools(&self, token: &TestToken) -> (Verdict, Value) {
        let opened = match self.open_session(token).await {
            Ok(opened) => opened,
            Err(failed) => return failed,
        };
        let listed = self
            .prober
            .send(McpRequest::in_session(
                token,
                opened.session.as_deref(),
                json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}),
            ))
            .await;
        let reply = listed.reply(2);
        let mut observations = opened.observations;
        observations.push(listed.clone());
        let refs: Vec<&Observation> = observations.iter().collect();
        let mut details = evidence(&refs, Some(token));
        if judge::has_result(reply.as_ref()) {
            let tools: Vec<String> = reply
                .as_ref()
                .and_then(|reply| reply.pointer("/result/tools"))
                .and_then(Value::as_array)
                .map(|tools| {
                    tools
                        .iter()
                        .filter_map(|tool| tool.get("name").and_then(Value::as_str))
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            details["tools"] = json!(tools);
            return (Verdict::success(), details);
        }
        let verdict = match judge::acceptance(&listed, Mistake::ValidTokenRefused) {
            verdict if verdict.status != CheckStatus::Success => verdict,
            _ => Verdict::failure(format!(
                "tools/list did not return a result: {}",
                listed.describe()
            )),
        };
        (verdict, details)
    }

    /// `initialize` then `notifications/initialized`; the session id, if the server gave one.
    async fn open_session(&self, token: &TestToken) -> Result<OpenedSession, (Verdict, Value)> {
        let initialize = self.prober.send(McpRequest::initialize(Some(token))).await;
        if !initialize.accepted() || !judge::has_result(initialize.reply(1).as_ref()) {
            let verdict = match judge::acceptance(&initialize, Mistake::ValidTokenRefused) {
                verdict if verdict.status != CheckStatus::Success => verdict,
                _ => Verdict::failure(format!(
                    "initialize did not return a result: {}",
                    initialize.describe()
                )),
            };
            return Err((verdict, evidence(&[&initialize], Some(token))));
        }
        let session = initialize.header("mcp-session-id").map(str::to_owned);
        let initialized = self
            .prober
            .send(McpRequest::in_session(
                token,
                session.as_deref(),
                json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            ))
            .await;
        Ok(OpenedSession {
            session,
            observations: vec![initialize, initialized],
        })
    }

    async fn stateless(&mut self) -> Record {
        let Some(token) = self.real_token.clone().or_else(|| self.baseline.clone()) else {
            return Record::new(
                CheckId::AcceptedStateless,
                Verdict::skipped("no valid token was accepted"),
                Value::Null,
            );
        };
        let observation = self
            .prober
            .send(McpRequest::stateless_tools_list(&token))
            .await;
        let details = evidence(&[&observation], Some(&token));
        let verdict = if judge::has_result(observation.reply(1).as_ref()) {
            Verdict::success()
        } else if matches!(observation.status(), Some(401 | 403)) {
            Verdict::mistake(Mistake::ValidTokenRefused, observation.describe())
        } else if observation.status().is_none() {
            Verdict::failure(format!(
                "your server did not answer: {}",
                observation.describe()
            ))
        } else {
            Verdict::skipped(format!(
                "your server does not speak the stateless 2026-07-28 protocol (it answered {}); the 2025-11-25 session protocol was checked",
                observation.describe()
            ))
        };
        Record::new(CheckId::AcceptedStateless, verdict, details)
    }

    // ---- refused -----------------------------------------------------------------------------

    async fn refused(&mut self) -> Result<Vec<Record>, ServerCheckError> {
        if let Some(reason) = self.without_baseline() {
            return Ok(skipped_all(Group::Refused, reason));
        }
        // A real flow for the second resource gives the wrong-audience token and an ID token.
        let second = self.second_resource_tokens().await;
        let mut records = Vec::new();
        for check in Group::Refused.checks() {
            let (verdict, mut details) = match check {
                CheckId::RefusedWrongAudience => match &second.access {
                    Ok(token) => {
                        self.present_refusal(token, Mistake::AudienceNotChecked, None)
                            .await
                    }
                    Err(verdict) => (verdict.clone(), Value::Null),
                },
                CheckId::RefusedManagementToken => self.management_token().await,
                CheckId::RefusedIdToken => match &second.id {
                    Some(token) => {
                        let audience = token.claims.get("aud").cloned().unwrap_or(Value::Null);
                        let same_with_scopes = json!({ "claims": { "aud": audience } });
                        self.present_refusal(
                            token,
                            Mistake::IdTokenAccepted,
                            Some(same_with_scopes),
                        )
                        .await
                    }
                    None => (
                        Verdict::skipped(match &second.access {
                            Ok(_) => "the real flow for the second resource returned no ID token",
                            Err(_) => {
                                "the real flow for the second resource failed, so there is no real ID token"
                            }
                        }),
                        Value::Null,
                    ),
                },
                CheckId::RefusedExpiredReal => self.expired_real().await?,
                CheckId::RefusedQueryToken => self.query_token().await,
                minted => match defect_case(minted) {
                    Some((defect, label, mistake)) => {
                        match self.emulator.mint(json!({ "defect": defect }), label).await {
                            Ok(token) => self.present_refusal(&token, mistake, None).await,
                            Err(error) => (mint_failed(&error), Value::Null),
                        }
                    }
                    None => (
                        Verdict::failure("no refusal case for this check (a bug in the harness)"),
                        Value::Null,
                    ),
                },
            };
            if matches!(
                check,
                CheckId::RefusedWrongAudience | CheckId::RefusedIdToken
            ) {
                details["second_flow"] = second.flow.clone();
            }
            records.push(Record::new(check, verdict, details));
        }
        Ok(records)
    }

    /// Presents a token that must be refused. A 403 `insufficient_scope` answer says the token
    /// passed validation and lacked only a scope; with `same_with_scopes` (a mint request for the
    /// same defect with every scope of the resource), the check confirms it: served, the mistake
    /// stands; refused, the server merely checks scopes before it validates, and answered an
    /// invalid token with 403.
    async fn present_refusal(
        &self,
        token: &TestToken,
        when_accepted: Mistake,
        same_with_scopes: Option<Value>,
    ) -> (Verdict, Value) {
        let observation = self.prober.send(McpRequest::initialize(Some(token))).await;
        let verdict = judge::refusal(&observation, when_accepted);
        let (Some(request), true) = (same_with_scopes, judge::refused_for_scope(&observation))
        else {
            return (verdict, evidence(&[&observation], Some(token)));
        };
        let confirmation = match self
            .emulator
            .mint(
                request,
                format!(
                    "{}, minted again with every scope of the resource",
                    token.label
                ),
            )
            .await
        {
            Ok(confirmation) => confirmation,
            Err(error) => {
                let mut details = evidence(&[&observation], Some(token));
                details["confirmation"] = Value::String(crate::error_chain(&error));
                return (verdict, details);
            }
        };
        let again = self
            .prober
            .send(McpRequest::initialize(Some(&confirmation)))
            .await;
        let mut details = evidence(&[&observation, &again], Some(token));
        details["confirmation_token"] = confirmation.evidence();
        let verdict = if again.accepted() {
            Verdict::mistake(
                when_accepted,
                format!(
                    "{}, and the same token with every scope was served: {}",
                    observation.describe(),
                    again.describe()
                ),
            )
        } else {
            Verdict::mistake(
                Mistake::InvalidTokenNot401,
                format!(
                    "{}: a token that is not valid got 403 insufficient_scope, although the same token with every scope is refused ({}): check the token before its scopes",
                    observation.describe(),
                    again.describe()
                ),
            )
        };
        (verdict, details)
    }

    async fn management_token(&self) -> (Verdict, Value) {
        let api_client = &self.check.stack.fixtures.environment.api_client;
        let token = match self
            .emulator
            .management_token(&api_client.client_id, &api_client.client_secret)
            .await
        {
            Ok(token) => token,
            Err(error) => {
                return (
                    Verdict::failure(format!(
                        "the emulator issued no management token: {}",
                        crate::error_chain(&error)
                    )),
                    Value::Null,
                );
            }
        };
        let same_with_scopes = json!({ "claims": {
            "aud": token.claims.get("aud").cloned().unwrap_or(Value::Null),
            "sub": api_client.client_id,
            "client_id": api_client.client_id,
        }});
        self.present_refusal(
            &token,
            Mistake::ManagementTokenAccepted,
            Some(same_with_scopes),
        )
        .await
    }

    /// A real flow against the reference MCP server of the second resource: its access token
    /// (for another audience) and its ID token. When the flow fails, the wrong-audience token is
    /// minted instead (the same claims).
    async fn second_resource_tokens(&self) -> SecondFlow {
        let mut config = DriverConfig::new(self.check.stack.reference_mcp_url.clone());
        config.client_name = "testbed mcp-server check".to_owned();
        config.extra_scopes = vec!["openid".to_owned(), "email".to_owned()];
        let (hops, outcome) = mcp_driver::run_flow_recorded(&config).await;
        match outcome {
            Ok(report) => SecondFlow {
                access: Ok(TestToken::from_jwt(
                    report.tokens.access_token.clone(),
                    "a real access token issued for another MCP server of the environment",
                )),
                id: report.tokens.id_token.clone().map(|token| {
                    TestToken::from_jwt(token, "a real ID token (aud = the MCP client's id)")
                }),
                flow: json!({ "hops": hop_lines(&hops) }),
            },
            Err(error) => {
                let minted = self
                    .emulator
                    .mint(
                        json!({ "defect": "wrong_audience" }),
                        "a token for another MCP server (minted: the real flow failed)",
                    )
                    .await
                    .map_err(|error| mint_failed(&error));
                SecondFlow {
                    access: minted,
                    id: None,
                    flow: json!({ "driver_error": error.to_string(), "hops": hop_lines(&hops) }),
                }
            }
        }
    }

    /// A real flow with the emulator's clock moved back past the token lifetime and 10 minutes
    /// more, so the token is expired by the wall clock the server reads. The clock goes forward
    /// again whatever happened; if it cannot, the run stops (every later token would be issued
    /// in the past).
    async fn expired_real(&self) -> Result<(Verdict, Value), ServerCheckError> {
        let back = i64::try_from(
            self.check
                .resource()
                .access_token_lifetime_secs
                .saturating_add(TIME_SKEW_SECS),
        )
        .unwrap_or(i64::MAX);
        self.emulator
            .move_clock(-back)
            .await
            .map_err(ServerCheckError::Clock)?;
        let (hops, outcome) = mcp_driver::authorize(&self.driver_config()).await;
        self.emulator
            .move_clock(back)
            .await
            .map_err(ServerCheckError::Clock)?;
        Ok(match outcome {
            Ok(authorized) => {
                let token = TestToken::from_jwt(
                    authorized.tokens.access_token,
                    "a token from a real flow, expired 10 minutes ago",
                );
                let (verdict, mut details) = self
                    .present_refusal(&token, Mistake::ExpiryNotChecked, None)
                    .await;
                details["hops"] = json!(hop_lines(&hops));
                (verdict, details)
            }
            Err(error) => (
                Verdict::skipped(format!(
                    "the real flow did not complete, so there is no real expired token: {error}"
                )),
                json!({ "hops": hop_lines(&hops) }),
            ),
        })
    }

    async fn query_token(&self) -> (Verdict, Value) {
        let token = match self
            .emulator
            .mint(
                json!({}),
                "a valid token, sent in the query instead of the header",
            )
            .await
        {
            Ok(token) => token,
            Err(error) => return (mint_failed(&error), Value::Null),
        };
        let mut request = McpRequest::initialize(Some(&token));
        request.carrier = Carrier::Query;
        let observation = self.prober.send(request).await;
        (
            judge::query_refusal(&observation),
            evidence(&[&observation], Some(&token)),
        )
    }

    // ---- scope -------------------------------------------------------------------------------

    async fn scope(&mut self) -> Vec<Record> {
        let Some(scope_check) = self.check.options.profile.scope.clone() else {
            return skipped_all(
                Group::Scope,
                "name a tool and the scope it needs under [scope] in --mcp-server-profile",
            );
        };
        if let Some(reason) = self.without_baseline() {
            return skipped_all(Group::Scope, reason);
        }
        let all_scopes = self.check.resource().scopes.clone();
        let fewer: Vec<&String> = all_scopes
            .iter()
            .filter(|scope| **scope != scope_check.scope)
            .collect();

        let without = match self
            .emulator
            .mint(
                json!({ "scopes": fewer }),
                format!("a valid token with every scope but {}", scope_check.scope),
            )
            .await
        {
            Err(error) => Record::new(CheckId::ScopeWithout, mint_failed(&error), Value::Null),
            Ok(token) => {
                let (verdict, details) = self.call_without_scope(&token, &scope_check).await;
                Record::new(CheckId::ScopeWithout, verdict, details)
            }
        };

        let with = match self
            .emulator
            .mint(
                json!({ "scopes": all_scopes }),
                format!("a valid token with {}", scope_check.scope),
            )
            .await
        {
            Err(error) => Record::new(CheckId::ScopeWith, mint_failed(&error), Value::Null),
            Ok(token) => {
                let (verdict, details) = self.call_tool(&token, &scope_check).await;
                let verdict = match verdict {
                    verdict if verdict.status == CheckStatus::Success => verdict,
                    verdict => Verdict::mistake(
                        Mistake::ScopedCallRefused,
                        verdict.message.unwrap_or_default(),
                    ),
                };
                Record::new(CheckId::ScopeWith, verdict, details)
            }
        };
        vec![without, with]
    }

    /// The tool call with a token lacking the scope: the refusal may come at `initialize` (a
    /// server that needs the scope for everything) or at `tools/call`.
    async fn call_without_scope(
        &self,
        token: &TestToken,
        scope_check: &super::ScopeCheck,
    ) -> (Verdict, Value) {
        let initialize = self.prober.send(McpRequest::initialize(Some(token))).await;
        if !initialize.accepted() {
            return (
                judge::insufficient_scope(&initialize, &scope_check.scope),
                evidence(&[&initialize], Some(token)),
            );
        }
        let session = initialize.header("mcp-session-id").map(str::to_owned);
        let initialized = self
            .prober
            .send(McpRequest::in_session(
                token,
                session.as_deref(),
                json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            ))
            .await;
        let call = self
            .prober
            .send(McpRequest::in_session(
                token,
                session.as_deref(),
                tools_call(scope_check),
            ))
            .await;
        (
            judge::insufficient_scope(&call, &scope_check.scope),
            evidence(&[&initialize, &initialized, &call], Some(token)),
        )
    }

    /// `initialize`, `notifications/initialized`, `tools/call`: success when the call returns a
    /// JSON-RPC result.
    async fn call_tool(
        &self,
        token: &TestToken,
        scope_check: &super::ScopeCheck,
    ) -> (Verdict, Value) {
        let opened = match self.open_session(token).await {
            Ok(opened) => opened,
            Err(failed) => return failed,
        };
        let call = self
            .prober
            .send(McpRequest::in_session(
                token,
                opened.session.as_deref(),
                tools_call(scope_check),
            ))
            .await;
        let reply = call.reply(2);
        let mut observations = opened.observations;
        observations.push(call.clone());
        let refs: Vec<&Observation> = observations.iter().collect();
        let mut details = evidence(&refs, Some(token));
        if judge::has_result(reply.as_ref()) {
            details["result"] = reply
                .and_then(|reply| reply.get("result").cloned())
                .unwrap_or(Value::Null);
            return (Verdict::success(), details);
        }
        let message = match reply.and_then(|reply| reply.get("error").cloned()) {
            Some(error) => format!(
                "tools/call {} answered the JSON-RPC error {error}",
                scope_check.tool
            ),
            None => format!("tools/call {}: {}", scope_check.tool, call.describe()),
        };
        (Verdict::failure(message), details)
    }

    // ---- origin ------------------------------------------------------------------------------

    async fn origin(&mut self) -> Vec<Record> {
        let Some(token) = self.baseline.clone() else {
            return skipped_all(Group::Origin, self.without_baseline().unwrap_or_default());
        };
        let own_origin = self.server().origin().ascii_serialization();
        let cases = [
            (CheckId::OriginForeign, FOREIGN_ORIGIN),
            (CheckId::OriginOwn, own_origin.as_str()),
            (CheckId::OriginLoopback, LOOPBACK_ORIGIN),
        ];
        let mut records = Vec::new();
        for (check, origin) in cases {
            let mut request = McpRequest::initialize(Some(&token));
            request.origin = Some(origin);
            let observation = self.prober.send(request).await;
            let verdict = match check {
                CheckId::OriginForeign => judge::foreign_origin(&observation),
                CheckId::OriginOwn => judge::acceptance(&observation, Mistake::OwnOriginRefused),
                _ => judge::acceptance(&observation, Mistake::LoopbackOriginRefused),
            };
            records.push(Record::new(
                check,
                verdict,
                evidence(&[&observation], Some(&token)),
            ));
        }
        records
    }

    // ---- keys --------------------------------------------------------------------------------

    async fn keys(&mut self, progress: &mut impl FnMut(Progress<'_>)) -> Vec<Record> {
        if let Some(reason) = self.without_baseline() {
            return skipped_all(Group::Keys, reason);
        }
        let wait = self.check.options.profile.refetch_wait;
        // A token signed by today's key, which the server must accept now and refuse once the
        // key is retired: it must outlive the two waits.
        let lifetime = self
            .check
            .resource()
            .access_token_lifetime_secs
            .max(2 * wait.as_secs() + TIME_SKEW_SECS);
        let old = self
            .emulator
            .mint(
                json!({ "lifetime_secs": lifetime }),
                "a valid token signed by the key that will be retired",
            )
            .await;
        let (new_key, retired) = match old {
            Err(error) => (
                Record::new(CheckId::KeysNew, mint_failed(&error), Value::Null),
                Record::new(
                    CheckId::KeysRetired,
                    Verdict::skipped("there is no token of the key to retire"),
                    Value::Null,
                ),
            ),
            Ok(old) => self.rotate_and_retire(&old, wait, progress).await,
        };

        let (unknown, _) = self
            .mint_and_present(
                CheckId::KeysUnknownKid,
                json!({ "defect": "unknown_kid" }),
                "a token signed by the signing key but naming a kid the JWKS does not publish",
                |observation| judge::refusal(observation, Mistake::UnknownKidAccepted),
            )
            .await;
        vec![new_key, retired, unknown]
    }

    /// The new-key and retired-key checks, from a token of the key that will be retired.
    async fn rotate_and_retire(
        &self,
        old: &TestToken,
        wait: Duration,
        progress: &mut impl FnMut(Progress<'_>),
    ) -> (Record, Record) {
        let before = self.prober.send(McpRequest::initialize(Some(old))).await;
        if !before.accepted() {
            return (
                Record::new(
                    CheckId::KeysNew,
                    Verdict::mistake(
                        Mistake::ValidTokenRefused,
                        format!(
                            "a valid token was refused before the rotation: {}",
                            before.describe()
                        ),
                    ),
                    evidence(&[&before], Some(old)),
                ),
                Record::new(
                    CheckId::KeysRetired,
                    Verdict::skipped("a valid token was refused before the rotation"),
                    Value::Null,
                ),
            );
        }
        let (verdict, details) = self
            .rotate_and_present(wait, Rotation::First, progress)
            .await;
        let picked_up = verdict.status == CheckStatus::Success;
        let new_key = Record::new(CheckId::KeysNew, verdict, details);
        let retired = if picked_up {
            self.retire_and_present_old(old, wait, progress).await
        } else {
            Record::new(
                CheckId::KeysRetired,
                Verdict::skipped(
                    "your server never accepted a token signed by a new key, so whether it drops a retired one cannot be seen",
                ),
                Value::Null,
            )
        };
        (new_key, retired)
    }

    /// Rotates the emulator's key and presents a token signed by the new one until the server
    /// accepts it or `wait` has passed.
    async fn rotate_and_present(
        &self,
        wait: Duration,
        rotation: Rotation,
        progress: &mut impl FnMut(Progress<'_>),
    ) -> (Verdict, Value) {
        let kid = match self.emulator.rotate_keys().await {
            Ok(kid) => kid,
            Err(error) => {
                return (
                    Verdict::failure(format!(
                        "the emulator did not rotate: {}",
                        crate::error_chain(&error)
                    )),
                    Value::Null,
                );
            }
        };
        let token = match self
            .emulator
            .mint(
                json!({}),
                format!(
                    "a valid token signed by the {} rotated key {kid}",
                    rotation.name()
                ),
            )
            .await
        {
            Ok(token) => token,
            Err(error) => return (mint_failed(&error), Value::Null),
        };
        let started = Instant::now();
        let mut attempts = 0u32;
        let mut announced = false;
        loop {
            attempts += 1;
            let observation = self.prober.send(McpRequest::initialize(Some(&token))).await;
            let mut details = evidence(&[&observation], Some(&token));
            details["attempts"] = json!(attempts);
            details["elapsed_ms"] = json!(started.elapsed().as_millis());
            if observation.accepted() {
                return (Verdict::success(), details);
            }
            if started.elapsed() >= wait {
                let verdict = match rotation {
                    Rotation::First => Verdict::mistake(
                        Mistake::JwksNotRefetched,
                        format!(
                            "a token signed by the new key {kid} was still refused after {} s: {}",
                            wait.as_secs(),
                            observation.describe()
                        ),
                    ),
                    // The server did refetch for the first rotation: a cooldown longer than the
                    // wait is the likely reason, not a JWKS cached forever.
                    Rotation::Second => Verdict::warning(format!(
                        "a token signed by the second rotated key {kid} was still refused {} s later, although the first rotation's key was picked up: your server's refetch cooldown may be longer than refetch_wait_secs; whether it drops a retired key was not seen ({})",
                        wait.as_secs(),
                        observation.describe()
                    )),
                };
                return (verdict, details);
            }
            if !announced {
                announced = true;
                let note = format!(
                    "waiting up to {} s for your server to accept a token signed by the {} rotated key (it answered {})",
                    wait.as_secs(),
                    rotation.name(),
                    observation.describe()
                );
                progress(Progress::Note(&note));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Retires the old key, rotates again so that the server has a reason to refetch, waits
    /// until it accepts the newest key, then presents the token of the retired one.
    async fn retire_and_present_old(
        &self,
        old: &TestToken,
        wait: Duration,
        progress: &mut impl FnMut(Progress<'_>),
    ) -> Record {
        let retired = match self.emulator.retire_keys().await {
            Ok(retired) => retired,
            Err(error) => {
                return Record::new(
                    CheckId::KeysRetired,
                    Verdict::failure(format!(
                        "the emulator did not retire the old key: {}",
                        crate::error_chain(&error)
                    )),
                    Value::Null,
                );
            }
        };
        let (verdict, refetch) = self
            .rotate_and_present(wait, Rotation::Second, progress)
            .await;
        if verdict.status != CheckStatus::Success {
            return Record::new(CheckId::KeysRetired, verdict, refetch);
        }
        let (verdict, mut details) = self
            .present_refusal(old, Mistake::RetiredKeyAccepted, None)
            .await;
        details["retired_kids"] = json!(retired);
        details["refetch"] = refetch;
        Record::new(CheckId::KeysRetired, verdict, details)
    }
}

/// What the real flow against the second resource gave.
struct SecondFlow {
    /// Its access token (minted with the same claims when the flow failed).
    access: Result<TestToken, Verdict>,
    /// Its ID token.
    id: Option<TestToken>,
    /// The flow's hops, or its error, for the report.
    flow: Value,
}

struct OpenedSession {
    session: Option<String>,
    observations: Vec<Observation>,
}

/// The `tools/call` of the profile's tool, as request 2 of a session.
fn tools_call(scope_check: &super::ScopeCheck) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": scope_check.tool, "arguments": scope_check.arguments},
    })
}

/// The refused checks answered with a minted token: the control API's defect, what the token is,
/// and the mistake when it is accepted.
fn defect_case(check: CheckId) -> Option<(&'static str, &'static str, Mistake)> {
    Some(match check {
        CheckId::RefusedExpired => (
            "expired",
            "a token that expired 10 minutes ago",
            Mistake::ExpiryNotChecked,
        ),
        CheckId::RefusedNotYetValid => (
            "not_yet_valid",
            "a token whose nbf is 10 minutes in the future (iat is now)",
            Mistake::NotBeforeNotChecked,
        ),
        CheckId::RefusedIssuedInFuture => (
            "issued_in_future",
            "a token whose iat is 10 minutes in the future (nbf is now)",
            Mistake::IatNotChecked,
        ),
        CheckId::RefusedWrongIssuer => (
            "wrong_issuer",
            "a token from another issuer, signed by the environment's key",
            Mistake::IssuerNotChecked,
        ),
        CheckId::RefusedAlteredPayload => (
            "altered_payload",
            "a token whose sub was changed after signing",
            Mistake::SignatureNotChecked,
        ),
        CheckId::RefusedAlgNone => (
            "alg_none",
            "an unsigned token (alg: none)",
            Mistake::AlgNoneAccepted,
        ),
        CheckId::RefusedAlgConfusion => (
            "hs256_public_key",
            "an HS256 token whose HMAC key is the RSA public key's PEM",
            Mistake::AlgConfusion,
        ),
        _ => return None,
    })
}

/// RFC 9728 §3.1: the well-known URL of a resource, formed by inserting the well-known string
/// between the host and the path (`path_suffixed`) and keeping the query, or at the root.
fn well_known(resource: &Url, path_suffixed: bool) -> Url {
    let mut url = resource.clone();
    let path = resource.path();
    if path_suffixed && path != "/" {
        url.set_path(&format!("/.well-known/oauth-protected-resource{path}"));
    } else {
        url.set_path("/.well-known/oauth-protected-resource");
        url.set_query(None);
    }
    url.set_fragment(None);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_well_known_url_is_derived_as_rfc_9728_says() {
        let server = Url::parse("http://127.0.0.1:3000/mcp").expect("a URL");
        assert_eq!(
            well_known(&server, true).as_str(),
            "http://127.0.0.1:3000/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            well_known(&server, false).as_str(),
            "http://127.0.0.1:3000/.well-known/oauth-protected-resource"
        );
        let root = Url::parse("https://mcp.example.com/").expect("a URL");
        assert_eq!(
            well_known(&root, true).as_str(),
            "https://mcp.example.com/.well-known/oauth-protected-resource"
        );
        let slashed = Url::parse("https://mcp.example.com/tenant/mcp/?team=a").expect("a URL");
        assert_eq!(
            well_known(&slashed, true).as_str(),
            "https://mcp.example.com/.well-known/oauth-protected-resource/tenant/mcp/?team=a"
        );
        assert_eq!(
            well_known(&slashed, false).as_str(),
            "https://mcp.example.com/.well-known/oauth-protected-resource"
        );
    }

    #[test]
    fn every_minted_refusal_names_a_defect_of_the_control_api() {
        let minted: Vec<CheckId> = Group::Refused
            .checks()
            .filter(|check| defect_case(*check).is_some())
            .collect();
        assert_eq!(minted.len(), 7);
        for check in Group::Refused.checks() {
            let special = matches!(
                check,
                CheckId::RefusedWrongAudience
                    | CheckId::RefusedManagementToken
                    | CheckId::RefusedIdToken
                    | CheckId::RefusedExpiredReal
                    | CheckId::RefusedQueryToken
            );
            assert_eq!(special, defect_case(check).is_none(), "{check:?}");
        }
    }
}
