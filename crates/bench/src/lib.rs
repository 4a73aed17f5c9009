//! `cargo xtask bench`: measures the emulator as a separate process on loopback — full BYOA
//! flows, the token endpoint, cold start, memory — against the RS256 signing ceiling of the same
//! crypto library, and compares the figures with a committed baseline.
//!
//! Layers: [`client`] (a minimal keep-alive HTTP/1.1 client on hyper, so the generator costs
//! little), [`scenario`] (the requests one flow, one `client_credentials` or one refresh makes),
//! [`load`] (closed-loop workers and latency percentiles), [`process`] (spawning the emulator
//! binary pinned to a core, cold start, `/proc` readings), [`ceiling`] (the signing rate), and
//! [`report`] (the metrics, the table, the JSON and the baseline comparison). [`run`] strings them
//! together.

pub mod ceiling;
pub mod client;
pub mod load;
pub mod process;
pub mod report;
pub mod run;
pub mod scenario;

/// Why a measurement could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A connection to the emulator could not be opened.
    #[error("cannot connect to {address}")]
    Connect {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("http exchange failed")]
    Http(#[from] hyper::Error),
    /// A request could not be built.
    #[error("cannot build a request")]
    Request(#[from] http::Error),
    /// The emulator answered with another status than the step expects.
    #[error("{step}: expected {expected}, got {status}: {body}")]
    Unexpected {
        step: &'static str,
        expected: u16,
        status: u16,
        body: String,
    },
    /// The answer had the right status but not the right content.
    #[error("{step}: {message}")]
    Protocol { step: &'static str, message: String },
    /// A file, a process or the clock failed.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A JSON body or file could not be read or written.
    #[error("json")]
    Json(#[from] serde_json::Error),
    /// The environment file could not be read.
    #[error("environment configuration")]
    Config(#[from] scalekit_emulator::ConfigError),
    /// The signing key for the ceiling could not be made or used.
    #[error("signing")]
    Key(#[from] scalekit_emulator::keys::KeyError),
    /// The emulator did not answer in time.
    #[error("{0}")]
    Timeout(String),
}

impl BenchError {
    /// An IO error with what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
        let context = context.into();
        move |source| BenchError::Io { context, source }
    }
}
