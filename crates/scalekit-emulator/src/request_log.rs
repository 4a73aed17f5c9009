//! The request log the control API serves (`GET /_emulator/requests`): the last requests the
//! emulator answered, HTTP and gRPC alike, each with what an error answer said
//! ([`ErrorSummary`]). Nothing here prints a credential: the edges hand over queries already
//! redacted.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use scalekit_wire::ErrorSummary;
use serde::Serialize;

/// How many requests the log keeps (the oldest go first).
pub const REQUEST_LOG_CAPACITY: usize = 1000;

/// Paths and queries longer than this are cut in the log, so that it stays bounded.
const MAX_LOGGED_CHARS: usize = 2048;

/// The last [`REQUEST_LOG_CAPACITY`] requests served.
#[derive(Debug, Default)]
pub struct RequestLog {
    records: Mutex<VecDeque<RequestRecord>>,
}

/// One request the emulator served.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    /// The HTTP method (`POST` for gRPC calls).
    pub method: String,
    /// The path as requested, cut to 2048 characters.
    pub path: String,
    /// The query with credential values cut to a prefix and `…`.
    pub query: Option<String>,
    /// The HTTP status (200 for gRPC calls, as on the wire).
    pub status: u16,
    /// What an error answer said (OAuth, gateway, hosted-page or gRPC error); absent on success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorSummary>,
    /// How long the answer took.
    pub duration_ms: u64,
    /// Wall-clock unix milliseconds (the emulator's clock may have been advanced; this is not).
    pub at: u64,
}

impl RequestLog {
    fn records(&self) -> MutexGuard<'_, VecDeque<RequestRecord>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a record, dropping the oldest past the capacity.
    pub fn record(&self, record: RequestRecord) {
        let mut records = self.records();
        if records.len() == REQUEST_LOG_CAPACITY {
            records.pop_front();
        }
        records.push_back(record);
    }

    /// Logs a gRPC call (they bypass the HTTP middleware): HTTP status 200 as on the wire, the
    /// gRPC error, if any, in `error`, and the ids from the message as the query.
    pub fn record_grpc(
        &self,
        path: &str,
        ids: &str,
        error: Option<ErrorSummary>,
        started: Instant,
    ) {
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.record(RequestRecord {
            method: ::http::Method::POST.to_string(),
            path: path.to_owned(),
            query: Some(truncate(ids)),
            status: ::http::StatusCode::OK.as_u16(),
            error,
            duration_ms,
            at: wall_clock_millis().saturating_sub(duration_ms),
        });
    }

    /// The newest `limit` records, newest first.
    pub fn newest(&self, limit: usize) -> Vec<RequestRecord> {
        self.records().iter().rev().take(limit).cloned().collect()
    }

    /// Forgets every record (the control API's reset).
    pub fn clear(&self) {
        self.records().clear();
    }
}

/// Wall-clock unix milliseconds (not the emulator's clock, which the control API may move).
pub fn wall_clock_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `text` cut to 2048 characters and `…`, so that the log stays bounded.
pub fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_LOGGED_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_log_keeps_the_newest_thousand() {
        let log = RequestLog::default();
        for index in 0..(REQUEST_LOG_CAPACITY + 5) {
            log.record(RequestRecord {
                method: "GET".to_owned(),
                path: format!("/{index}"),
                query: None,
                status: 200,
                error: None,
                duration_ms: 0,
                at: 0,
            });
        }
        let newest = log.newest(REQUEST_LOG_CAPACITY + 5);
        assert_eq!(newest.len(), REQUEST_LOG_CAPACITY);
        assert_eq!(newest.last().map(|record| record.path.as_str()), Some("/5"));
    }
}
