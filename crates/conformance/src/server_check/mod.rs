//! Checking somebody's own MCP server: their server takes the reference MCP server's place in
//! front of the embedded emulator, and the check sends it what only an emulator that holds the
//! signing key can make — tokens for another MCP server, expired or not yet valid, from another
//! issuer, altered after signing, `alg: none`, HS256 keyed with the public key, an unknown `kid`,
//! the environment's management token, an ID token, keys rotated and retired — and names each
//! mistake its token validation makes, with the evidence and the fix.
//!
//! The stack runs the emulator where their server expects it (a fixed address, default the
//! fixtures' `127.0.0.1:8400`), the reference Your App (signing `ada` in headlessly), and the
//! reference MCP server for a second resource, whose real tokens are the wrong-audience tokens.
//! Everything reaches the pieces over HTTP: the control API mints tokens, rotates keys and moves
//! the clock.
//!
//! The modules: `checks` and `diagnose` are the catalogues (every check, every mistake with
//! its fix), `profile` the optional TOML, `probe` the requests and their evidence, `emulator` the
//! control API, `judge` the pure verdicts, `run` the groups in order. This module starts the
//! stack, runs the groups and names every finding by its root cause.

mod checks;
mod diagnose;
mod emulator;
mod judge;
mod probe;
mod profile;
mod run;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testbed_stack::{ConsentMode, Fixtures, McpPlacement, Stack, StackConfig};
use url::Url;

pub use checks::{CheckEntry, CheckId, Group};
pub use diagnose::{Entry, Mistake, Severity, root_causes};
pub use emulator::EmulatorError;
pub use profile::{
    DEFAULT_REFETCH_WAIT, ProfileError, ScopeCheck, ServerProfile, load_profile, parse_profile,
};

use self::judge::Verdict;
use crate::report::{Report, ScenarioResult, ScenarioStatus};
use crate::{Check, CheckStatus};

/// The ids tried, in order, for the resource added for wrong-audience tokens when the fixtures
/// have only one (the first that is not the fixtures' own).
const OTHER_RESOURCE_IDS: [&str; 2] = ["res_81920374650192840", "res_81920374650192841"];

/// How many groups of checks a run reports.
pub const GROUP_COUNT: usize = Group::ALL.len();

/// Why the check could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ServerCheckError {
    /// The emulator, Your App or the second MCP server did not start (e.g. the address is taken).
    #[error("the emulator did not start")]
    Stack(#[from] testbed_stack::StackError),
    /// The fixtures or the profile do not fit together.
    #[error("{0}")]
    Setup(String),
    /// The check's HTTP client could not be built.
    #[error("cannot build the HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// Nothing answers at the server's URL.
    #[error(
        "nothing answers at {url} ({reason}): start your server first, with the settings above"
    )]
    ServerUnreachable { url: Url, reason: String },
    /// The emulator's clock, moved back for a real expired token, could not be moved forward
    /// again; every later token would be issued in the past, so the check stops.
    #[error("the emulator's clock could not be set back to the wall clock")]
    Clock(#[source] EmulatorError),
}

/// What a run of the check needs.
#[derive(Debug, Clone)]
pub struct ServerCheckOptions {
    /// The environment (API client, connection, resources) the server is configured with.
    pub fixtures: Fixtures,
    /// The server's MCP endpoint: the first resource's Server URL.
    pub server_url: Url,
    /// Where the emulator listens, the scope to check, the refetch wait.
    pub profile: ServerProfile,
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct ServerCheckOutcome {
    /// One scenario per group of checks.
    pub report: Report,
    /// The mistakes the report names (failures and warnings), each by its root cause.
    pub mistakes: BTreeSet<Mistake>,
}

/// Something to show while the check runs.
#[derive(Debug)]
pub enum Progress<'a> {
    /// A group finished (its findings not yet attributed to root causes).
    Group(&'a ScenarioResult),
    /// The check waits or does something slow.
    Note(&'a str),
}

/// The emulator, Your App and the second MCP server, started and waiting for [`ServerCheck::run`].
#[derive(Debug)]
pub struct ServerCheck {
    stack: Stack,
    options: ServerCheckOptions,
}

impl ServerCheck {
    /// Starts the emulator where the profile says (or the fixtures' address) with the first
    /// resource's Server URL at the server under test, a second resource for wrong-audience
    /// tokens, Your App and the reference MCP server of the second resource.
    pub async fn start(options: ServerCheckOptions) -> Result<ServerCheck, ServerCheckError> {
        let mut fixtures = options.fixtures.clone();
        let resources = &mut fixtures.environment.resources;
        let first = resources
            .first()
            .cloned()
            .ok_or_else(|| ServerCheckError::Setup("the fixtures have no resource".to_owned()))?;
        if let Some(scope) = &options.profile.scope
            && !first.scopes.contains(&scope.scope)
        {
            return Err(ServerCheckError::Setup(format!(
                "the profile's [scope] scope {:?} is not a scope of {} ({}); add it to the resource's scopes with --fixtures",
                scope.scope,
                first.id,
                first.scopes.join(" ")
            )));
        }
        if resources.len() < 2 {
            let mut other = first.clone();
            // Agent ids are unique in an environment; the second resource needs none.
            other.agents.clear();
            other.id = OTHER_RESOURCE_IDS
                .into_iter()
                .find(|id| *id != first.id)
                .unwrap_or(OTHER_RESOURCE_IDS[0])
                .to_owned();
            other.name = "Another MCP server (wrong-audience tokens)".to_owned();
            resources.push(other);
        }
        let mut config = StackConfig::ephemeral(fixtures, Some("ada"));
        config.mcp = McpPlacement::External(options.server_url.clone());
        config.environment_listen = Some(
            options
                .profile
                .environment_listen
                .unwrap_or(options.fixtures.environment.listen),
        );
        config.consent = Some(ConsentMode::Auto);
        let stack = Stack::spawn(config).await?;
        Ok(ServerCheck { stack, options })
    }

    /// The environment URL without a trailing slash.
    fn environment(&self) -> &str {
        self.stack.environment_url.as_str().trim_end_matches('/')
    }

    fn resource(&self) -> &testbed_stack::ResourceConfig {
        &self.stack.fixtures.environment.resources[0]
    }

    /// The issuer clients discover and the server must name in `authorization_servers`.
    fn resource_issuer(&self) -> String {
        format!("{}/resources/{}", self.environment(), self.resource().id)
    }

    /// What the server must be configured with, one `NAME=value` per line. The client secret is
    /// printed only when it is the development secret of the fixtures in the repository (it is
    /// public there); another one stays in its file.
    pub fn server_settings(&self) -> String {
        let environment = self.environment();
        let resource = self.resource();
        let api_client = &self.stack.fixtures.environment.api_client;
        let development_secret = Fixtures::embedded().ok().is_some_and(|embedded| {
            embedded.environment.api_client.client_secret.expose()
                == api_client.client_secret.expose()
        });
        let secret = if development_secret {
            api_client.client_secret.expose().to_owned()
        } else {
            "<the api_client client_secret of your --fixtures>".to_owned()
        };
        let issuer = self.resource_issuer();
        format!(
            "SCALEKIT_ENVIRONMENT_URL={environment}\nSCALEKIT_CLIENT_ID={}\nSCALEKIT_CLIENT_SECRET={secret}\nSCALEKIT_RESOURCE_ID={}\nMCP_SERVER_URL={}\nAUTHORIZATION_SERVER={issuer}\nJWKS_URL={environment}/keys\nACCEPTED_ISSUERS={environment} {issuer}\nEXPECTED_AUDIENCE={}",
            api_client.client_id, resource.id, self.options.server_url, resource.id,
        )
    }

    /// Runs every check and reports each group, calling `progress` as it goes.
    pub async fn run(
        self,
        mut progress: impl FnMut(Progress<'_>),
    ) -> Result<ServerCheckOutcome, ServerCheckError> {
        let started = Instant::now();
        let mut run = run::Run::new(&self).await?;
        let mut groups = Vec::new();
        for group in Group::ALL {
            let group_started = Instant::now();
            let records = run.group(group, &mut progress).await?;
            let records = complete(group, records);
            let elapsed = group_started.elapsed();
            let preview = group_result(group, &records, &BTreeSet::new(), elapsed, run.server());
            progress(Progress::Group(&preview));
            groups.push((group, records, elapsed));
        }
        let seen: BTreeSet<Mistake> = groups
            .iter()
            .flat_map(|(_, records, _)| records)
            .filter_map(Record::finding)
            .collect();
        let results = groups
            .iter()
            .map(|(group, records, elapsed)| {
                group_result(*group, records, &seen, *elapsed, run.server())
            })
            .collect();
        Ok(ServerCheckOutcome {
            report: Report::new(results, started.elapsed()),
            mistakes: root_causes(&seen),
        })
    }
}

/// One check's outcome before it becomes a report [`Check`].
#[derive(Debug, Clone)]
pub(crate) struct Record {
    check: CheckId,
    verdict: Verdict,
    details: Value,
}

impl Record {
    pub(crate) fn new(check: CheckId, verdict: Verdict, details: Value) -> Record {
        Record {
            check,
            verdict,
            details,
        }
    }

    /// The mistake a failure or a warning names.
    fn finding(&self) -> Option<Mistake> {
        matches!(
            self.verdict.status,
            CheckStatus::Failure | CheckStatus::Warning
        )
        .then_some(self.verdict.mistake)
        .flatten()
    }

    /// The report's check: the entry's name, description and specs (and the mistake's), the
    /// details with the diagnostic, its fix and, when another finding explains it, that one.
    fn to_check(&self, seen: &BTreeSet<Mistake>) -> Check {
        let entry = self.check.entry();
        let mut details = self.details.clone();
        if !details.is_object() {
            details = json!({});
        }
        let mut spec: Vec<String> = entry.spec.iter().map(|each| (*each).to_owned()).collect();
        let mut error_message = match self.verdict.status {
            CheckStatus::Failure | CheckStatus::Warning => self.verdict.message.clone(),
            _ => None,
        };
        if let Some(mistake) = self.verdict.mistake {
            let mistake_entry = mistake.entry();
            details["diagnostic"] = Value::String(mistake_entry.id.to_owned());
            details["fix"] = Value::String(mistake_entry.fix.to_owned());
            for each in mistake_entry.spec {
                if !spec.iter().any(|known| known == each) {
                    spec.push((*each).to_owned());
                }
            }
            if let Some(finding) = self.finding() {
                let cause = diagnose::root_cause(finding, seen);
                if cause != finding {
                    details["explained_by"] = Value::String(cause.id().to_owned());
                    if let Some(message) = &mut error_message {
                        message.push_str(&format!(
                            "; explained by {}: {}",
                            cause.id(),
                            cause.entry().summary
                        ));
                    }
                }
            }
        }
        if self.verdict.status == CheckStatus::Skipped {
            details["reason"] = json!(self.verdict.message);
        }
        Check {
            id: self.check.id(),
            name: entry.name.to_owned(),
            description: entry.description.to_owned(),
            status: self.verdict.status,
            spec_references: spec,
            details: Some(details),
            error_message,
        }
    }
}

/// Every check of the group, in catalogue order: a check the group's code did not report is a
/// failure of the harness, reported as such rather than left out.
fn complete(group: Group, mut records: Vec<Record>) -> Vec<Record> {
    for check in group.checks() {
        if !records.iter().any(|record| record.check == check) {
            records.push(Record::new(
                check,
                Verdict::failure("the check did not run (a bug in the harness)"),
                Value::Null,
            ));
        }
    }
    records.sort_by_key(|record| record.check);
    records
}

/// Every check of `group`, skipped for `reason`.
pub(crate) fn skipped_all(group: Group, reason: &str) -> Vec<Record> {
    group
        .checks()
        .map(|check| Record::new(check, Verdict::skipped(reason), Value::Null))
        .collect()
}

fn group_result(
    group: Group,
    records: &[Record],
    seen: &BTreeSet<Mistake>,
    elapsed: Duration,
    server_url: &Url,
) -> ScenarioResult {
    let checks: Vec<Check> = records.iter().map(|record| record.to_check(seen)).collect();
    let failed = checks
        .iter()
        .any(|check| check.status == CheckStatus::Failure);
    let all_skipped = checks
        .iter()
        .all(|check| check.status == CheckStatus::Skipped);
    ScenarioResult {
        id: format!("server-check/{}", group.id()),
        title: group.title().to_owned(),
        path: server_url.to_string(),
        status: if failed {
            ScenarioStatus::Failed
        } else if all_skipped {
            ScenarioStatus::Skipped
        } else {
            ScenarioStatus::Passed
        },
        baseline_reason: None,
        duration_ms: elapsed.as_millis(),
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_table_documents_every_check_and_every_mistake() {
        let doc = include_str!("../../../../docs/mcp-server-check.md");
        for mistake in Mistake::ALL {
            let entry = mistake.entry();
            let row = format!("| `{}` | ", entry.id);
            assert!(doc.contains(&row), "docs/mcp-server-check.md lacks {row}");
            assert!(
                doc.contains(entry.fix),
                "the fix of {} differs in the docs",
                entry.id
            );
        }
        for check in CheckId::ALL {
            let entry = check.entry();
            let row = format!("| `{}/{}` |", entry.group.id(), entry.name);
            assert!(doc.contains(&row), "docs/mcp-server-check.md lacks {row}");
        }
    }

    fn record(check: CheckId, verdict: Verdict) -> Record {
        Record::new(check, verdict, json!({}))
    }

    #[test]
    fn explained_findings_name_their_root_cause() {
        let records = [
            record(
                CheckId::RefusedWrongAudience,
                Verdict::mistake(Mistake::AudienceNotChecked, "seen"),
            ),
            record(
                CheckId::RefusedManagementToken,
                Verdict::mistake(Mistake::ManagementTokenAccepted, "seen"),
            ),
            record(CheckId::RefusedExpired, Verdict::success()),
        ];
        let seen: BTreeSet<Mistake> = records.iter().filter_map(Record::finding).collect();
        assert_eq!(root_causes(&seen), [Mistake::AudienceNotChecked].into());
        let management = records[1].to_check(&seen);
        let details = management.details.expect("details");
        assert_eq!(details["explained_by"], "audience-not-checked");
        assert_eq!(details["diagnostic"], "management-token-accepted");
        assert_eq!(
            management.error_message.as_deref(),
            Some(
                "management-token-accepted: the environment's management token (client_credentials, aud = the environment) was accepted (seen); explained by audience-not-checked: a token issued for another MCP server was accepted (the confused deputy)"
            )
        );
        assert_eq!(management.id, "server-check/refused/management-token");
        assert!(
            management
                .spec_references
                .starts_with(&["RFC8707-2".to_owned()])
        );
    }

    #[test]
    fn a_group_always_reports_every_one_of_its_checks_in_order() {
        let records = complete(
            Group::Keys,
            vec![record(CheckId::KeysUnknownKid, Verdict::success())],
        );
        let checks: Vec<CheckId> = records.iter().map(|record| record.check).collect();
        assert_eq!(
            checks,
            vec![
                CheckId::KeysNew,
                CheckId::KeysRetired,
                CheckId::KeysUnknownKid
            ]
        );
        assert_eq!(records[0].verdict.status, CheckStatus::Failure);
    }

    #[test]
    fn a_skipped_check_carries_its_reason() {
        let check =
            skipped_all(Group::Scope, "no [scope] in the profile")[0].to_check(&BTreeSet::new());
        assert_eq!(check.status, CheckStatus::Skipped);
        assert_eq!(
            check.details.expect("details")["reason"],
            "no [scope] in the profile"
        );
        assert_eq!(check.error_message, None);
    }
}
