//! `testbed parity DIR`: replays recorded scenarios against the emulator, records the replay the
//! same way, and names every difference between the two answers, with the `docs/fidelity.md`
//! rows it touches.
//!
//! What is compared, answer by answer (a step scenario's steps, a flow scenario's driver hops):
//! the status; the headers that matter (`Location`: its URL and each query parameter;
//! `WWW-Authenticate`; `Cache-Control`); and the body's shape: the same member names, the same
//! JSON types, booleans, and a string's value only where normalization kept it on purpose (it
//! holds a placeholder or an id: `{issuer}`, `m2m_1`), inside a decoded JWT or a reduced HTML
//! page, or for the members that carry an error or a grant (`error`, `error_description`,
//! `message`, `error_code`, `field`, `constraint`, `token_type`, `scope`,
//! `token_endpoint_auth_method`; the numbers `code` and `expires_in`). Anything else (a display
//! name, a claim's value) may differ: the recording keeps only its type. Comparison is pure; only
//! [`replay`] runs anything.

pub mod baseline;
pub mod rows;

use std::collections::BTreeSet;
use std::fmt;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::record::normalize::holds_placeholder;
use crate::record::{RecordedStep, Recording};
use crate::report::ScenarioStatus;
use crate::runner::{RunOptions, run};
use crate::scenario::Scenario;

pub use baseline::{ParityBaseline, ParityBaselineError};

/// String members whose values are compared, whatever they hold.
const COMPARED_STRINGS: &[&str] = &[
    "error",
    "error_description",
    "message",
    "error_code",
    "field",
    "constraint",
    "token_type",
    "scope",
    "token_endpoint_auth_method",
];

/// Number members whose values are compared: the gateway's gRPC code, a token's lifetime.
const COMPARED_NUMBERS: &[&str] = &["code", "expires_in"];

/// The headers compared, besides `Location`.
const COMPARED_HEADERS: &[&str] = &["www-authenticate", "cache-control"];

/// Where in a recording a difference is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Place {
    /// A step scenario's step, from 1.
    Step(usize),
    /// A flow scenario's driver hop, from 1.
    Hop(usize),
}

impl fmt::Display for Place {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Step(step) => write!(formatter, "step {step}"),
            Self::Hop(hop) => write!(formatter, "hop {hop}"),
        }
    }
}

impl Serialize for Place {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (kind, number) = match self {
            Self::Step(step) => ("step", step),
            Self::Hop(hop) => ("hop", hop),
        };
        let mut map = Map::new();
        map.insert(kind.to_owned(), json!(number));
        map.serialize(serializer)
    }
}

/// One difference between a recorded answer and the replay's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// The scenario id.
    pub scenario: String,
    /// The step or hop.
    #[serde(flatten)]
    pub place: Place,
    /// The step's `do`, or the hop's phase.
    #[serde(rename = "do")]
    pub action: String,
    /// A JSON pointer into the answer (`/status`, `/headers/location/query/error`,
    /// `/body/error`), `/before/N/…` for an exchange the step made before its own, or `""` for a
    /// step or hop only one side has.
    pub field: String,
    /// The recorded value; `None` when the recording lacks it.
    pub recorded: Option<Value>,
    /// The replay's value; `None` when the replay lacks it.
    pub replayed: Option<Value>,
    /// The `docs/fidelity.md` rows whose check names the scenario (`section › endpoint › case`).
    pub rows: Vec<String>,
    /// The baseline's reason, when it accepts this difference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_reason: Option<String>,
}

/// Every difference between two recordings of one scenario, in order (rows not yet named).
pub fn compare(recorded: &Recording, replayed: &Recording) -> Vec<Difference> {
    let mut out = Differences {
        scenario: &recorded.scenario,
        list: Vec::new(),
    };
    let steps = recorded.steps.len().max(replayed.steps.len());
    for index in 0..steps {
        let place = Place::Step(index + 1);
        match (recorded.steps.get(index), replayed.steps.get(index)) {
            (Some(left), Some(right)) => compare_steps(&mut out, place, left, right),
            (left, right) => {
                let action = left.or(right).map_or("", |step| step.action.as_str());
                out.push(
                    place,
                    action,
                    "",
                    left.map(step_summary),
                    right.map(step_summary),
                );
            }
        }
    }
    let hops = recorded.hops.len().max(replayed.hops.len());
    for index in 0..hops {
        let place = Place::Hop(index + 1);
        let (left, right) = (recorded.hops.get(index), replayed.hops.get(index));
        let phase = left
            .or(right)
            .and_then(|hop| hop.get("phase"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        match (left, right) {
            (Some(left), Some(right)) => {
                let mut at = Cursor {
                    out: &mut out,
                    place,
                    action: &phase,
                };
                walk(&mut at, "", None, left, right, true);
            }
            (left, right) => out.push(place, &phase, "", left.cloned(), right.cloned()),
        }
    }
    out.list
}

fn compare_steps(
    out: &mut Differences<'_>,
    place: Place,
    left: &RecordedStep,
    right: &RecordedStep,
) {
    let mut at = Cursor {
        out,
        place,
        action: &left.action,
    };
    if left.action != right.action {
        at.push("/do", Some(json!(left.action)), Some(json!(right.action)));
        return;
    }
    let before = left.before.len().max(right.before.len());
    for index in 0..before {
        let prefix = format!("/before/{index}");
        match (left.before.get(index), right.before.get(index)) {
            (Some(left), Some(right)) => {
                compare_answers(&mut at, &prefix, &left.answer, &right.answer)
            }
            (left, right) => at.push(
                &prefix,
                left.map(|exchange| exchange.answer.clone()),
                right.map(|exchange| exchange.answer.clone()),
            ),
        }
    }
    match (&left.answer, &right.answer) {
        (Some(left), Some(right)) => compare_answers(&mut at, "", left, right),
        (None, None) => {}
        (left, right) => at.push("", left.clone(), right.clone()),
    }
}

/// What a difference shows of a step only one side has.
fn step_summary(step: &RecordedStep) -> Value {
    let status = step
        .answer
        .as_ref()
        .and_then(|answer| answer.get("status"))
        .cloned()
        .unwrap_or(Value::Null);
    json!({ "do": step.action, "status": status })
}

fn compare_answers(at: &mut Cursor<'_, '_>, prefix: &str, left: &Value, right: &Value) {
    let status = (left.get("status"), right.get("status"));
    if status.0 != status.1 {
        at.push(
            &format!("{prefix}/status"),
            status.0.cloned(),
            status.1.cloned(),
        );
    }
    let header = |answer: &Value, name: &str| {
        answer
            .get("headers")
            .and_then(|headers| headers.get(name))
            .cloned()
    };
    let location = (header(left, "location"), header(right, "location"));
    let location_pointer = format!("{prefix}/headers/location");
    match location {
        (Some(left), Some(right)) => walk(at, &location_pointer, None, &left, &right, true),
        (None, None) => {}
        (left, right) => at.push(&location_pointer, left, right),
    }
    for name in COMPARED_HEADERS {
        let (left, right) = (header(left, name), header(right, name));
        if left != right {
            at.push(&format!("{prefix}/headers/{name}"), left, right);
        }
    }
    let body = (
        left.get("body").unwrap_or(&Value::Null),
        right.get("body").unwrap_or(&Value::Null),
    );
    walk(at, &format!("{prefix}/body"), None, body.0, body.1, false);
}

/// Compares two values at `pointer`: shapes and types always, a string's value when `exact`, when
/// either holds a placeholder or an id, or when its member is one of [`COMPARED_STRINGS`].
fn walk(
    at: &mut Cursor<'_, '_>,
    pointer: &str,
    name: Option<&str>,
    left: &Value,
    right: &Value,
    exact: bool,
) {
    match (left, right) {
        (Value::Object(left_members), Value::Object(right_members)) => {
            // A decoded JWT and a reduced HTML page are what normalization kept on purpose.
            let exact =
                exact || left_members.contains_key("html") || left_members.contains_key("text");
            let names: BTreeSet<&String> =
                left_members.keys().chain(right_members.keys()).collect();
            for member in names {
                let child = format!("{pointer}/{}", escape_pointer(member));
                match (left_members.get(member), right_members.get(member)) {
                    (Some(left), Some(right)) => {
                        walk(
                            at,
                            &child,
                            Some(member),
                            left,
                            right,
                            exact || member == "jwt",
                        );
                    }
                    (left, right) => at.push(&child, left.cloned(), right.cloned()),
                }
            }
        }
        (Value::Array(left_items), Value::Array(right_items)) => {
            if left_items.len() != right_items.len() {
                at.push(pointer, Some(left.clone()), Some(right.clone()));
                return;
            }
            for (index, (left, right)) in left_items.iter().zip(right_items).enumerate() {
                walk(at, &format!("{pointer}/{index}"), name, left, right, exact);
            }
        }
        (Value::String(left_text), Value::String(right_text)) => {
            let compared = exact
                || holds_placeholder(left_text)
                || holds_placeholder(right_text)
                || name.is_some_and(|name| COMPARED_STRINGS.contains(&name));
            if compared && left_text != right_text {
                at.push(pointer, Some(left.clone()), Some(right.clone()));
            }
        }
        (Value::Number(_), Value::Number(_)) => {
            let compared = exact || name.is_some_and(|name| COMPARED_NUMBERS.contains(&name));
            if compared && left != right {
                at.push(pointer, Some(left.clone()), Some(right.clone()));
            }
        }
        (Value::Bool(_), Value::Bool(_)) | (Value::Null, Value::Null) => {
            if left != right {
                at.push(pointer, Some(left.clone()), Some(right.clone()));
            }
        }
        _ => at.push(pointer, Some(left.clone()), Some(right.clone())),
    }
}

/// RFC 6901: `~` is `~0`, `/` is `~1`.
fn escape_pointer(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

struct Differences<'a> {
    scenario: &'a str,
    list: Vec<Difference>,
}

impl Differences<'_> {
    fn push(
        &mut self,
        place: Place,
        action: &str,
        field: &str,
        recorded: Option<Value>,
        replayed: Option<Value>,
    ) {
        self.list.push(Difference {
            scenario: self.scenario.to_owned(),
            place,
            action: action.to_owned(),
            field: field.to_owned(),
            recorded,
            replayed,
            rows: Vec::new(),
            baseline_reason: None,
        });
    }
}

/// Where the walk is: the step or hop and its `do`.
struct Cursor<'a, 'b> {
    out: &'a mut Differences<'b>,
    place: Place,
    action: &'a str,
}

impl Cursor<'_, '_> {
    fn push(&mut self, field: &str, recorded: Option<Value>, replayed: Option<Value>) {
        self.out
            .push(self.place, self.action, field, recorded, replayed);
    }
}

/// How one recorded scenario fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParityStatus {
    /// The replay answered as recorded.
    Same,
    /// Some answer differs (every difference accepted by the baseline, or not).
    Different,
    /// The replay target cannot host the scenario (it was skipped, with the reason).
    NotReplayed,
    /// The replay ran but recorded nothing (its stack did not start, …): that fails the run.
    ReplayFailed,
}

impl ParityStatus {
    /// The word printed in progress lines.
    pub fn label(self) -> &'static str {
        match self {
            Self::Same => "SAME",
            Self::Different => "DIFF",
            Self::NotReplayed => "SKIP",
            Self::ReplayFailed => "FAIL",
        }
    }
}

/// One recorded scenario's comparison.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioParity {
    /// The scenario id.
    pub id: String,
    /// The recording's file.
    pub file: String,
    /// Who answered the recording (`emulator`, `scalekit`).
    pub source: String,
    /// The outcome.
    pub status: ParityStatus,
    /// Why it was not replayed, or why the replay failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Its differences, in order.
    pub differences: Vec<Difference>,
}

/// A whole parity run: what `target/conformance/parity.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct ParityReport {
    /// Every recorded scenario, by id.
    pub scenarios: Vec<ScenarioParity>,
    /// Differences the baseline does not accept: each fails the run.
    pub unlisted: usize,
    /// Differences the baseline accepts.
    pub baselined: usize,
    /// Baseline entries that match no difference (reported, not failing).
    pub stale_baseline_entries: Vec<String>,
    /// Wall time of the replay and the comparison.
    pub duration_ms: u128,
}

impl ParityReport {
    /// Whether the run passes: no difference outside the baseline, no failed replay.
    pub fn succeeded(&self) -> bool {
        self.unlisted == 0
            && !self
                .scenarios
                .iter()
                .any(|scenario| scenario.status == ParityStatus::ReplayFailed)
    }

    /// Every difference, in scenario order.
    pub fn differences(&self) -> impl Iterator<Item = &Difference> {
        self.scenarios
            .iter()
            .flat_map(|scenario| &scenario.differences)
    }

    /// Writes `parity.json` into `directory`; returns its path.
    pub fn write_file(&self, directory: &Path) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(directory)?;
        let path = directory.join("parity.json");
        let text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&path, text)?;
        Ok(path)
    }
}

/// A recordings folder that cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ParityError {
    /// A recording names a scenario the suite does not have.
    #[error("{path}: scenario {id:?} is not in the scenario set")]
    UnknownScenario { path: PathBuf, id: String },
    /// Two recordings name one scenario.
    #[error("{second}: scenario {id:?} is recorded in {first} too")]
    Duplicate {
        id: String,
        first: PathBuf,
        second: PathBuf,
    },
}

/// Replays `recordings` (each with its file) with `options` (`record` is forced on), compares
/// each with its replay, names the fidelity rows, and applies `baseline`.
pub async fn replay(
    recordings: Vec<(PathBuf, Recording)>,
    scenarios: Vec<Scenario>,
    options: &RunOptions,
    baseline: &ParityBaseline,
) -> Result<ParityReport, ParityError> {
    let started = Instant::now();
    let mut selected = Vec::with_capacity(recordings.len());
    for (index, (path, recording)) in recordings.iter().enumerate() {
        if let Some((first, _)) = recordings[..index]
            .iter()
            .find(|(_, earlier)| earlier.scenario == recording.scenario)
        {
            return Err(ParityError::Duplicate {
                id: recording.scenario.clone(),
                first: first.clone(),
                second: path.clone(),
            });
        }
        let scenario = scenarios
            .iter()
            .find(|scenario| scenario.id == recording.scenario)
            .ok_or_else(|| ParityError::UnknownScenario {
                path: path.clone(),
                id: recording.scenario.clone(),
            })?;
        selected.push(scenario.clone());
    }
    let options = RunOptions {
        record: true,
        filter: None,
        ..options.clone()
    };
    let report = run(selected, &options).await;
    let table = rows::parse(rows::FIDELITY_TABLE);
    let mut results = Vec::with_capacity(recordings.len());
    for (path, recording) in &recordings {
        let replayed = report
            .recordings
            .iter()
            .find(|replayed| replayed.scenario == recording.scenario);
        let result = report
            .scenarios
            .iter()
            .find(|result| result.id == recording.scenario);
        let (status, reason, mut differences) = match (replayed, result) {
            (Some(replayed), _) => {
                let differences = compare(recording, replayed);
                let status = if differences.is_empty() {
                    ParityStatus::Same
                } else {
                    ParityStatus::Different
                };
                (status, None, differences)
            }
            (None, Some(result)) if result.status == ScenarioStatus::Skipped => {
                (ParityStatus::NotReplayed, first_message(result), Vec::new())
            }
            (None, result) => (
                ParityStatus::ReplayFailed,
                result
                    .and_then(first_message)
                    .or_else(|| Some("the replay recorded nothing".to_owned())),
                Vec::new(),
            ),
        };
        let touched: Vec<String> = rows::for_scenario(&table, &recording.scenario)
            .iter()
            .map(|row| row.title())
            .collect();
        for difference in &mut differences {
            difference.rows = touched.clone();
        }
        results.push(ScenarioParity {
            id: recording.scenario.clone(),
            file: path.display().to_string(),
            source: recording.source.name().to_owned(),
            status,
            reason,
            differences,
        });
    }
    Ok(settle(results, baseline, started.elapsed()))
}

/// The report of `results`, sorted by id, with `baseline` applied: an accepted difference carries
/// its reason, an entry that accepts nothing is stale.
pub fn settle(
    mut results: Vec<ScenarioParity>,
    baseline: &ParityBaseline,
    elapsed: Duration,
) -> ParityReport {
    results.sort_by(|left, right| left.id.cmp(&right.id));
    for difference in results
        .iter_mut()
        .flat_map(|result| &mut result.differences)
    {
        difference.baseline_reason = baseline
            .accepting(difference)
            .map(|entry| entry.reason.clone());
    }
    let all: Vec<&Difference> = results
        .iter()
        .flat_map(|result| &result.differences)
        .collect();
    let baselined = all
        .iter()
        .filter(|difference| difference.baseline_reason.is_some())
        .count();
    let stale_baseline_entries = baseline
        .entries()
        .iter()
        .filter(|entry| !all.iter().any(|difference| entry.matches(difference)))
        .map(baseline::Entry::describe)
        .collect();
    ParityReport {
        unlisted: all.len() - baselined,
        baselined,
        stale_baseline_entries,
        scenarios: results,
        duration_ms: elapsed.as_millis(),
    }
}

/// The message of a result's first check that has one (a skip's reason, a failure's message).
fn first_message(result: &crate::ScenarioResult) -> Option<String> {
    result
        .checks
        .iter()
        .find_map(|check| check.error_message.clone())
}

/// A value as a difference shows it: compact JSON, cut at 160 characters; `(absent)`.
fn shown(value: Option<&Value>) -> String {
    const LONGEST: usize = 160;
    let Some(value) = value else {
        return "(absent)".to_owned();
    };
    let text = value.to_string();
    if text.chars().count() <= LONGEST {
        return text;
    }
    let cut: String = text.chars().take(LONGEST).collect();
    format!("{cut}…")
}

/// The progress lines (`[i/n] SAME id`), each difference with both answers and its rows, the
/// stale baseline entries, and the summary line.
pub fn render(report: &ParityReport) -> String {
    let mut out = String::new();
    let total = report.scenarios.len();
    for (index, scenario) in report.scenarios.iter().enumerate() {
        let _ = write!(
            out,
            "[{}/{total}] {} {}",
            index + 1,
            scenario.status.label(),
            scenario.id
        );
        match (&scenario.reason, scenario.differences.len()) {
            (Some(reason), _) => {
                let _ = write!(out, ": {reason}");
            }
            (None, 0) => {}
            (None, 1) => out.push_str(" (1 difference)"),
            (None, count) => {
                let _ = write!(out, " ({count} differences)");
            }
        }
        out.push('\n');
    }
    let differences: Vec<&Difference> = report.differences().collect();
    if !differences.is_empty() {
        out.push_str("\nDifferences (recorded → replayed):\n");
    }
    for difference in differences {
        let field = if difference.field.is_empty() {
            "(the whole step)"
        } else {
            difference.field.as_str()
        };
        let _ = writeln!(
            out,
            "  {} {} ({}) {field}",
            difference.scenario, difference.place, difference.action
        );
        let _ = writeln!(out, "    recorded: {}", shown(difference.recorded.as_ref()));
        let _ = writeln!(out, "    replayed: {}", shown(difference.replayed.as_ref()));
        if difference.rows.is_empty() {
            out.push_str("    rows: none of docs/fidelity.md names this scenario\n");
        }
        for row in &difference.rows {
            let _ = writeln!(out, "    row: {row}");
        }
        if let Some(reason) = &difference.baseline_reason {
            let _ = writeln!(out, "    in the baseline: {reason}");
        }
    }
    if !report.stale_baseline_entries.is_empty() {
        out.push_str("\nStale baseline entries (they match no difference; remove them):\n");
        for entry in &report.stale_baseline_entries {
            let _ = writeln!(out, "  {entry}");
        }
    }
    let count = |status| {
        report
            .scenarios
            .iter()
            .filter(|scenario| scenario.status == status)
            .count()
    };
    let _ = write!(
        out,
        "\nParity: {total} recordings, {} the same, {} different, {} not replayed, {} failed to replay; \
         {} differences outside the baseline, {} in it, {} stale baseline entries; {:.1}s\n",
        count(ParityStatus::Same),
        count(ParityStatus::Different),
        count(ParityStatus::NotReplayed),
        count(ParityStatus::ReplayFailed),
        report.unlisted,
        report.baselined,
        report.stale_baseline_entries.len(),
        Duration::from_millis(report.duration_ms as u64).as_secs_f64(),
    );
    out
}

#[cfg(test)]
mod tests;
