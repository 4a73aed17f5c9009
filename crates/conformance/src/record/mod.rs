//! Recordings: what a scenario's exchanges looked like, normalized (see [`normalize`]), one JSON
//! file per scenario (`testbed conformance --record DIR` writes `DIR/<scenario id>.json`, and
//! `testbed parity DIR` replays and compares them).
//!
//! A step scenario's recording keeps, per step, the request as its method, its normalized path
//! and the *names* of the parameters it sent (never their values), and the answer as its status,
//! the headers that matter (`Location` split into its normalized URL and query parameters,
//! `WWW-Authenticate`, `Cache-Control`, the `Content-Type` essence) and its normalized body. A
//! flow scenario's recording keeps the MCP client driver's hops the same way. The file says where
//! it came from (`source`, `target`, `recorded_at`) but never the environment's URL or host.

pub mod normalize;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use url::Url;

use crate::scenario::Target;
use normalize::Normalizer;

/// The version of the file format; a reader refuses any other.
pub const FORMAT: u32 = 1;

/// Who answered: the emulator (the `embedded` and `url` targets) or a real Scalekit environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The emulator.
    Emulator,
    /// A real Scalekit environment (`--target scalekit`).
    Scalekit,
}

impl Source {
    /// The source of a run on `target`.
    pub fn of(target: Target) -> Self {
        match target {
            Target::Scalekit => Self::Scalekit,
            Target::Embedded | Target::Url => Self::Emulator,
        }
    }

    /// The word used in files and in `docs/fidelity.md`'s "observed" column.
    pub fn name(self) -> &'static str {
        match self {
            Self::Emulator => "emulator",
            Self::Scalekit => "scalekit",
        }
    }
}

/// One scenario's recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recording {
    /// [`FORMAT`].
    pub format: u32,
    /// The scenario id.
    pub scenario: String,
    /// The day of the run, `YYYY-MM-DD` (UTC).
    pub recorded_at: String,
    /// Who answered.
    pub source: Source,
    /// The target the run used.
    pub target: Target,
    /// A step scenario's steps, in order.
    #[serde(default)]
    pub steps: Vec<RecordedStep>,
    /// A flow scenario's driver hops, in order.
    #[serde(default)]
    pub hops: Vec<Value>,
}

/// One step: the request it sent and the answer it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedStep {
    /// The step's number, from 1.
    pub step: usize,
    /// The step's `do`.
    #[serde(rename = "do")]
    pub action: String,
    /// Exchanges the step made before its own (a `post-user` step fetches a management token
    /// when none is known yet).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub before: Vec<RecordedExchange>,
    /// The step's request; `None` when it sent nothing (it failed before sending).
    pub request: Option<RecordedRequest>,
    /// Its answer: `status`, `headers`, `body`.
    pub answer: Option<Value>,
}

/// A request and its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedExchange {
    /// The request.
    pub request: RecordedRequest,
    /// The answer.
    pub answer: Value,
}

/// A request as a recording keeps it: no value of any parameter, only names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedRequest {
    /// `GET`, `POST`, ….
    pub method: String,
    /// The normalized URL without its query (`{env}/oauth/token`).
    pub path: String,
    /// The query parameters' names, as sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query: Vec<String>,
    /// The form fields' names, as sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub form: Vec<String>,
    /// The JSON body's member names, as sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub body: Vec<String>,
}

/// One exchange as the step runner saw it, before normalization. Plain data: the recording
/// knows nothing of the HTTP client.
#[derive(Debug, Clone)]
pub struct RawExchange {
    /// The request's method.
    pub method: String,
    /// The request's URL.
    pub url: Url,
    /// The names of the form fields sent.
    pub form: Vec<String>,
    /// The names of the JSON body's members sent.
    pub body: Vec<String>,
    /// The answer's status.
    pub status: u16,
    /// The `Location`, resolved against the request URL.
    pub location: Option<Url>,
    /// `WWW-Authenticate`.
    pub www_authenticate: Option<String>,
    /// `Cache-Control`.
    pub cache_control: Option<String>,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// The answer's body.
    pub response_body: Vec<u8>,
}

/// Builds one scenario's [`Recording`] as it runs: steps (or hops) are normalized as they come,
/// with the variables known at that moment, so ids keep their order of first appearance.
#[derive(Debug, Default)]
pub struct ScenarioRecorder {
    normalizer: Normalizer,
    steps: Vec<RecordedStep>,
    hops: Vec<Value>,
}

impl ScenarioRecorder {
    /// A recorder with nothing recorded.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records step `number` (from 1): its exchanges, the last being the step's own, normalized
    /// with `variables` (the runner's, after the step).
    pub fn step(
        &mut self,
        number: usize,
        action: &str,
        variables: &BTreeMap<String, String>,
        exchanges: Vec<RawExchange>,
    ) {
        self.normalizer.learn(
            variables
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
        );
        let mut recorded: Vec<RecordedExchange> = exchanges
            .iter()
            .map(|exchange| self.exchange(exchange))
            .collect();
        let own = recorded.pop();
        self.steps.push(RecordedStep {
            step: number,
            action: action.to_owned(),
            before: recorded,
            request: own.as_ref().map(|exchange| exchange.request.clone()),
            answer: own.map(|exchange| exchange.answer),
        });
    }

    /// Records a flow scenario's driver hops, normalized with `variables` (the stack's). The MCP
    /// client's background SSE stream (`GET` of the MCP endpoint) is left out: it races the tool
    /// call, so its place and even its presence change from run to run, and it is the MCP
    /// server's answer, not Scalekit's.
    pub fn hops(&mut self, variables: &BTreeMap<String, String>, hops: &[mcp_driver::Hop]) {
        self.normalizer.learn(
            variables
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
        );
        let kept = hops.iter().filter(|hop| {
            !(hop.phase == mcp_driver::Phase::Mcp && hop.detail.as_deref() == Some("sse stream"))
        });
        for (index, hop) in kept.enumerate() {
            let url = match Url::parse(&hop.url) {
                Ok(url) => self.normalizer.url(&url),
                Err(_) => json!({ "url": self.normalizer.text(&hop.url), "query": {} }),
            };
            let mut shape = Map::new();
            shape.insert("hop".to_owned(), json!(index + 1));
            shape.insert("phase".to_owned(), json!(hop.phase.to_string()));
            shape.insert("method".to_owned(), json!(hop.method));
            shape.insert("url".to_owned(), url["url"].clone());
            shape.insert("query".to_owned(), url["query"].clone());
            shape.insert("status".to_owned(), json!(hop.status));
            if let Some(location) = &hop.location {
                let location = match Url::parse(location) {
                    Ok(url) => self.normalizer.url(&url),
                    Err(_) => Value::String(self.normalizer.text(location)),
                };
                shape.insert("location".to_owned(), location);
            }
            if let Some(cache_control) = &hop.cache_control {
                shape.insert(
                    "cache_control".to_owned(),
                    json!(self.normalizer.text(cache_control)),
                );
            }
            if let Some(detail) = &hop.detail {
                shape.insert("detail".to_owned(), json!(self.normalizer.text(detail)));
            }
            self.hops.push(Value::Object(shape));
        }
    }

    /// The recording, every known secret scrubbed once more from all of it.
    pub fn finish(self, scenario: &str, target: Target, recorded_at: &str) -> Recording {
        let mut recording = Recording {
            format: FORMAT,
            scenario: scenario.to_owned(),
            recorded_at: recorded_at.to_owned(),
            source: Source::of(target),
            target,
            steps: self.steps,
            hops: self.hops,
        };
        let normalizer = self.normalizer;
        // The last pass works on the serialized form, so that nothing (a request path, a
        // parameter name) escapes it. It fails closed: a recording that cannot pass through it
        // keeps no exchange at all (parity then reports the scenario as recording nothing).
        let scrubbed = serde_json::to_value(&recording).ok().and_then(|mut value| {
            normalizer.scrub(&mut value);
            serde_json::from_value::<Recording>(value).ok()
        });
        match scrubbed {
            Some(scrubbed) => scrubbed,
            None => {
                recording.steps.clear();
                recording.hops.clear();
                recording
            }
        }
    }

    fn exchange(&mut self, raw: &RawExchange) -> RecordedExchange {
        let mut path = raw.url.clone();
        path.set_query(None);
        path.set_fragment(None);
        let request = RecordedRequest {
            method: raw.method.clone(),
            path: self.normalizer.text(path.as_str()),
            query: raw
                .url
                .query_pairs()
                .map(|(name, _)| self.normalizer.key(&name))
                .collect(),
            form: raw
                .form
                .iter()
                .map(|name| self.normalizer.key(name))
                .collect(),
            body: raw
                .body
                .iter()
                .map(|name| self.normalizer.key(name))
                .collect(),
        };
        let mut headers = Map::new();
        if let Some(location) = &raw.location {
            headers.insert("location".to_owned(), self.normalizer.url(location));
        }
        if let Some(challenge) = &raw.www_authenticate {
            headers.insert(
                "www-authenticate".to_owned(),
                json!(self.normalizer.text(challenge)),
            );
        }
        if let Some(cache_control) = &raw.cache_control {
            headers.insert(
                "cache-control".to_owned(),
                json!(self.normalizer.text(cache_control)),
            );
        }
        let essence = raw.content_type.as_deref().map(|content_type| {
            content_type
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
        if let Some(essence) = &essence {
            headers.insert("content-type".to_owned(), json!(essence));
        }
        let body = self.normalizer.body(essence.as_deref(), &raw.response_body);
        RecordedExchange {
            request,
            answer: json!({ "status": raw.status, "headers": headers, "body": body }),
        }
    }
}

/// A recordings folder that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// A file or the folder could not be read or written.
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file is not a recording of this format.
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Writes each recording as `directory/<scenario id>.json` (pretty JSON, one trailing newline),
/// making the folder if needed; returns the files written.
pub fn write_all(directory: &Path, recordings: &[Recording]) -> Result<Vec<PathBuf>, RecordError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| RecordError::Io { path, source }
    };
    std::fs::create_dir_all(directory).map_err(io(directory))?;
    let mut written = Vec::with_capacity(recordings.len());
    for recording in recordings {
        let path = directory.join(format!("{}.json", recording.scenario));
        let mut text =
            serde_json::to_string_pretty(recording).map_err(|error| RecordError::Invalid {
                path: path.clone(),
                message: error.to_string(),
            })?;
        text.push('\n');
        std::fs::write(&path, text).map_err(io(&path))?;
        written.push(path);
    }
    Ok(written)
}

/// Reads every `*.json` of `directory` (not recursively), sorted by file name.
pub fn load_dir(directory: &Path) -> Result<Vec<(PathBuf, Recording)>, RecordError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| RecordError::Io { path, source }
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(directory).map_err(io(directory))? {
        let path = entry.map_err(io(directory))?.path();
        if path.is_file()
            && path
                .extension()
                .is_some_and(|extension| extension == "json")
        {
            files.push(path);
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).map_err(io(&path))?;
            let recording = parse(&path, &text)?;
            Ok((path, recording))
        })
        .collect()
}

/// Parses one recording's text; `path` names it in errors.
pub fn parse(path: &Path, text: &str) -> Result<Recording, RecordError> {
    let invalid = |message: String| RecordError::Invalid {
        path: path.to_owned(),
        message,
    };
    let recording: Recording =
        serde_json::from_str(text).map_err(|error| invalid(error.to_string()))?;
    if recording.format != FORMAT {
        return Err(invalid(format!(
            "format {} (this testbed reads format {FORMAT})",
            recording.format
        )));
    }
    Ok(recording)
}

/// Today's date in UTC, `YYYY-MM-DD`, for `recorded_at`.
pub fn today() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    civil_date(seconds / 86_400)
}

/// The proleptic Gregorian date of `days` since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_date(days: u64) -> String {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
