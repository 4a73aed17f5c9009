//! The listener guard: which host names a piece answers for. A web page can make the browser
//! send requests to a loopback port, and DNS rebinding makes the page's own name resolve to
//! 127.0.0.1 so that the browser lets it read the answers; the page's name then still arrives in
//! `Host` (HTTP/1.1) or `:authority` (HTTP/2). Each piece answers only for loopback names, the
//! host of its own URL and the hosts it is told to allow (`--allowed-host`, for containers and
//! proxies); anything else is refused before routing.
//!
//! [`AllowedHosts::check`] is the plain function; [`HostGuardLayer`] is the tower layer built from
//! it that Your App and the MCP server serve behind. The emulator calls the function in its own
//! dispatch, which sends gRPC to tonic before the axum router, and answers in its own edge types.

use std::convert::Infallible;
use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::response::{IntoResponse, Response};
use futures_util::future::{Either, Ready, ready};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

use crate::origin::parse_host_port;

/// The names every piece answers for, on any port: the loopback names a person types.
pub const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// The most of a refused host a refusal repeats.
const SHOWN_HOST_CHARS: usize = 100;

/// A host a piece answers for: a DNS name, an IPv4 address or an IPv6 address (bracketed, or
/// bare without a port), optionally with a port; without one, any port. Parsed once, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AllowedHost {
    /// Lower case; an IPv6 address bracketed and canonical.
    host: String,
    port: Option<u16>,
}

/// A `--allowed-host` (or `allowed_hosts` entry) that is not `host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the allowed host {0:?} is not host[:port] (a name such as `emulator` or `emulator:8400`, an IPv4 address, or a bracketed IPv6 address; no scheme or path)"
)]
pub struct AllowedHostError(pub String);

impl AllowedHost {
    /// Parses `host[:port]`; a bare IPv6 address (`fd00::5`) is taken as `[fd00::5]`.
    pub fn parse(text: &str) -> Result<AllowedHost, AllowedHostError> {
        let text = text.trim();
        if let Ok(address) = text.parse::<Ipv6Addr>() {
            return Ok(AllowedHost {
                host: format!("[{address}]"),
                port: None,
            });
        }
        parse_host_port(text)
            .map(|(host, port)| AllowedHost { host, port })
            .ok_or_else(|| AllowedHostError(text.to_owned()))
    }

    /// The host name or address (an IPv6 address bracketed).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The one port allowed, or `None` for any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    fn any_port(host: String) -> AllowedHost {
        AllowedHost { host, port: None }
    }

    fn admits(&self, host: &str, port: Option<u16>) -> bool {
        self.host == host && self.port.is_none_or(|allowed| Some(allowed) == port)
    }
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(formatter, "{}:{port}", self.host),
            None => formatter.write_str(&self.host),
        }
    }
}

impl FromStr for AllowedHost {
    type Err = AllowedHostError;

    fn from_str(text: &str) -> Result<AllowedHost, AllowedHostError> {
        AllowedHost::parse(text)
    }
}

/// As the string it was written as, so that a configuration file keeps `allowed_hosts = ["…"]`.
impl Serialize for AllowedHost {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AllowedHost {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<AllowedHost, D::Error> {
        let text = String::deserialize(deserializer)?;
        AllowedHost::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Every host one piece answers for: [`LOOPBACK_HOSTS`], the host of its own URL (its public URL,
/// or `http://{bound address}`), each on any port, and the configured ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHosts {
    hosts: Vec<AllowedHost>,
}

impl AllowedHosts {
    /// The hosts of a piece whose own URL is `own_url`, plus `extra`.
    pub fn new(own_url: &Url, extra: &[AllowedHost]) -> AllowedHosts {
        let mut hosts: Vec<AllowedHost> = LOOPBACK_HOSTS
            .iter()
            .map(|host| AllowedHost::any_port((*host).to_owned()))
            .collect();
        let own = match own_url.host() {
            Some(url::Host::Domain(name)) => Some(name.to_ascii_lowercase()),
            Some(url::Host::Ipv4(address)) => Some(address.to_string()),
            Some(url::Host::Ipv6(address)) => Some(format!("[{address}]")),
            None => None,
        };
        for host in own
            .map(AllowedHost::any_port)
            .into_iter()
            .chain(extra.iter().cloned())
        {
            if !hosts.contains(&host) {
                hosts.push(host);
            }
        }
        AllowedHosts { hosts }
    }

    /// The hosts, loopback names first.
    pub fn as_slice(&self) -> &[AllowedHost] {
        &self.hosts
    }

    /// Whether a request with this URI and these headers is addressed to one of the hosts. Every
    /// host the request names must be allowed: the URI's authority (HTTP/2's `:authority`, or an
    /// absolute-form request target) and the `Host` header, whichever are present; a request
    /// naming none, with several `Host` headers, or with one that is not `host[:port]` is
    /// malformed.
    pub fn check(&self, uri: &Uri, headers: &HeaderMap) -> Result<(), HostRefusal> {
        let mut named: Vec<&str> = Vec::with_capacity(2);
        if let Some(authority) = uri.authority() {
            named.push(authority.as_str());
        }
        let mut host_headers = headers.get_all(HOST).iter();
        if let Some(value) = host_headers.next() {
            if host_headers.next().is_some() {
                return Err(HostRefusal::Malformed("several Host headers".to_owned()));
            }
            let text = value.to_str().map_err(|_| {
                HostRefusal::Malformed(shown(&String::from_utf8_lossy(value.as_bytes())))
            })?;
            named.push(text);
        }
        if named.is_empty() {
            return Err(HostRefusal::Missing);
        }
        for text in named {
            let (host, port) =
                parse_host_port(text).ok_or_else(|| HostRefusal::Malformed(shown(text)))?;
            if !self.hosts.iter().any(|allowed| allowed.admits(&host, port)) {
                tracing::warn!(
                    host = %shown(text),
                    "refused a request for a host this server does not answer for (a web page \
                     using DNS rebinding, or a proxy or container name: --allowed-host allows it)"
                );
                return Err(HostRefusal::Foreign {
                    authority: shown(text),
                    host: shown(&host),
                });
            }
        }
        Ok(())
    }
}

/// The host, cut to [`SHOWN_HOST_CHARS`] characters: a refusal repeats what it refused, not a
/// megabyte of it.
fn shown(text: &str) -> String {
    match text.char_indices().nth(SHOWN_HOST_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Why a request was refused before routing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostRefusal {
    /// Neither a `Host` header nor an authority (RFC 9112 §3.2: a server answers 400).
    #[error("the request names no host: it has neither a Host header nor an :authority")]
    Missing,
    /// Several `Host` headers, or one that is not `host[:port]`.
    #[error("the request's host is malformed: {0:?}")]
    Malformed(String),
    /// A host this piece does not answer for.
    #[error(
        "this server does not answer for the host {authority} (only for localhost, 127.0.0.1, [::1], its own URL's host and the allowed hosts); if you reach it by this name on purpose (a container, a proxy), start it with --allowed-host {host}"
    )]
    Foreign {
        /// As the request named it, port included.
        authority: String,
        /// Without the port: what `--allowed-host` would take.
        host: String,
    },
}

impl HostRefusal {
    /// 400 for a request that names no host or a malformed one; 421 Misdirected Request (RFC 9110
    /// §15.5.20: this server is not configured to answer for that name) for a foreign host.
    pub fn status(&self) -> StatusCode {
        match self {
            HostRefusal::Missing | HostRefusal::Malformed(_) => StatusCode::BAD_REQUEST,
            HostRefusal::Foreign { .. } => StatusCode::MISDIRECTED_REQUEST,
        }
    }
}

/// Plain text: the status, and one line saying which host was refused and how to allow it.
impl IntoResponse for HostRefusal {
    fn into_response(self) -> Response {
        (
            self.status(),
            [
                (
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                ),
                (CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            format!("{self}\n"),
        )
            .into_response()
    }
}

/// The tower layer of the listener guard: requests for a host the piece does not answer for get
/// the [`HostRefusal`] (plain text) and never reach the service.
#[derive(Debug, Clone)]
pub struct HostGuardLayer {
    hosts: Arc<AllowedHosts>,
}

impl HostGuardLayer {
    /// A guard admitting `hosts`.
    pub fn new(hosts: AllowedHosts) -> HostGuardLayer {
        HostGuardLayer {
            hosts: Arc::new(hosts),
        }
    }
}

impl<S> tower::Layer<S> for HostGuardLayer {
    type Service = HostGuard<S>;

    fn layer(&self, inner: S) -> HostGuard<S> {
        HostGuard {
            inner,
            hosts: Arc::clone(&self.hosts),
        }
    }
}

/// The service [`HostGuardLayer`] makes.
#[derive(Debug, Clone)]
pub struct HostGuard<S> {
    inner: S,
    hosts: Arc<AllowedHosts>,
}

impl<S, B> tower::Service<Request<B>> for HostGuard<S>
where
    S: tower::Service<Request<B>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match self.hosts.check(request.uri(), request.headers()) {
            Ok(()) => Either::Right(self.inner.call(request)),
            Err(refusal) => Either::Left(ready(Ok(refusal.into_response()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderName;

    use super::*;

    fn hosts(own: &str, extra: &[&str]) -> AllowedHosts {
        let extra: Vec<AllowedHost> = extra
            .iter()
            .map(|text| AllowedHost::parse(text).unwrap())
            .collect();
        AllowedHosts::new(&Url::parse(own).unwrap(), &extra)
    }

    fn with_host(host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_str(host).unwrap());
        headers
    }

    fn check_host(hosts: &AllowedHosts, host: &str) -> Result<(), HostRefusal> {
        hosts.check(&Uri::from_static("/"), &with_host(host))
    }

    #[test]
    fn loopback_names_and_the_own_host_pass_on_any_port() {
        let hosts = hosts("https://emulator.example/", &[]);
        for host in [
            "localhost",
            "LOCALHOST:8400",
            "127.0.0.1:1",
            "[::1]:8400",
            "[0:0:0:0:0:0:0:1]",
            "emulator.example",
            "emulator.example:8443",
        ] {
            assert_eq!(check_host(&hosts, host), Ok(()), "{host}");
        }
    }

    #[test]
    fn a_foreign_host_is_misdirected_and_the_refusal_says_how_to_allow_it() {
        let hosts = hosts("http://127.0.0.1:8400", &[]);
        let refusal = check_host(&hosts, "evil.example:8400").unwrap_err();
        assert_eq!(refusal.status(), StatusCode::MISDIRECTED_REQUEST);
        assert_eq!(
            refusal.to_string(),
            "this server does not answer for the host evil.example:8400 (only for localhost, \
             127.0.0.1, [::1], its own URL's host and the allowed hosts); if you reach it by this \
             name on purpose (a container, a proxy), start it with --allowed-host evil.example"
        );
        for foreign in [
            "localhost.evil.example",
            "127.0.0.2",
            "0.0.0.0:8400",
            "emulator",
        ] {
            assert!(
                matches!(
                    check_host(&hosts, foreign),
                    Err(HostRefusal::Foreign { .. })
                ),
                "{foreign}"
            );
        }
    }

    #[test]
    fn an_allowed_host_passes_on_its_port_or_any() {
        let hosts = hosts("http://127.0.0.1:8400", &["emulator", "proxy.internal:443"]);
        assert_eq!(check_host(&hosts, "emulator:8400"), Ok(()));
        assert_eq!(check_host(&hosts, "Emulator"), Ok(()));
        assert_eq!(check_host(&hosts, "proxy.internal:443"), Ok(()));
        assert!(check_host(&hosts, "proxy.internal:8400").is_err());
        assert!(check_host(&hosts, "proxy.internal").is_err());
    }

    #[test]
    fn a_request_naming_no_host_or_a_malformed_one_is_a_bad_request() {
        let hosts = hosts("http://127.0.0.1:8400", &[]);
        let missing = hosts
            .check(&Uri::from_static("/"), &HeaderMap::new())
            .unwrap_err();
        assert_eq!(missing, HostRefusal::Missing);
        assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
        for malformed in [
            "user@localhost",
            "localhost:",
            "localhost:99999",
            "local host",
            "",
        ] {
            let refusal = check_host(&hosts, malformed).unwrap_err();
            assert!(
                matches!(refusal, HostRefusal::Malformed(_)),
                "{malformed}: {refusal:?}"
            );
            assert_eq!(refusal.status(), StatusCode::BAD_REQUEST);
        }
        let mut twice = with_host("localhost");
        twice.append(HOST, HeaderValue::from_static("evil.example"));
        assert!(matches!(
            hosts.check(&Uri::from_static("/"), &twice),
            Err(HostRefusal::Malformed(_))
        ));
    }

    #[test]
    fn every_host_a_request_names_must_be_allowed() {
        let hosts = hosts("http://127.0.0.1:8400", &[]);
        // HTTP/2: the authority is in the URI, and there may be no Host header at all.
        let h2 = Uri::from_static("http://127.0.0.1:8400/keys");
        assert_eq!(hosts.check(&h2, &HeaderMap::new()), Ok(()));
        let rebound = Uri::from_static("http://evil.example:8400/keys");
        assert!(hosts.check(&rebound, &HeaderMap::new()).is_err());
        assert!(hosts.check(&rebound, &with_host("127.0.0.1:8400")).is_err());
        assert!(hosts.check(&h2, &with_host("evil.example")).is_err());
    }

    #[test]
    fn a_refused_host_is_shown_cut_short() {
        let hosts = hosts("http://127.0.0.1:8400", &[]);
        let long = "a".repeat(500);
        let HostRefusal::Foreign { authority, .. } = check_host(&hosts, &long).unwrap_err() else {
            panic!("a long name is a foreign host");
        };
        assert_eq!(authority.chars().count(), SHOWN_HOST_CHARS + 1);
    }

    #[test]
    fn allowed_hosts_parse_strictly_and_print_as_written() {
        for (text, printed) in [
            ("Emulator", "emulator"),
            ("emulator:8400", "emulator:8400"),
            ("my_service", "my_service"),
            ("10.0.0.5", "10.0.0.5"),
            ("fd00::5", "[fd00::5]"),
            ("[fd00::5]:8400", "[fd00::5]:8400"),
        ] {
            assert_eq!(
                AllowedHost::parse(text).map(|host| host.to_string()),
                Ok(printed.to_owned()),
                "{text}"
            );
        }
        for bad in [
            "http://emulator",
            "emulator/",
            "*",
            "",
            "emulator:http",
            "a@b",
        ] {
            assert!(AllowedHost::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn allowed_hosts_read_and_write_as_strings_in_a_file() {
        #[derive(Debug, Serialize, Deserialize, PartialEq)]
        struct File {
            allowed_hosts: Vec<AllowedHost>,
        }
        let file: File = toml::from_str(r#"allowed_hosts = ["emulator", "[::2]:80"]"#).unwrap();
        assert_eq!(
            toml::to_string(&file).unwrap(),
            "allowed_hosts = [\"emulator\", \"[::2]:80\"]\n"
        );
        let error = toml::from_str::<File>(r#"allowed_hosts = ["https://x"]"#).unwrap_err();
        assert!(error.to_string().contains("is not host[:port]"), "{error}");
    }

    #[tokio::test]
    async fn the_layer_refuses_before_the_service_runs() {
        use tower::{Layer as _, ServiceExt as _};
        let hosts = hosts("http://127.0.0.1:8400", &[]);
        let reached = axum::Router::new().fallback(|| async { "reached" });
        let guarded = HostGuardLayer::new(hosts).layer(reached);
        let request = |host: &'static str| {
            Request::builder()
                .uri("/anything")
                .header(HeaderName::from_static("host"), host)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let refused = guarded
            .clone()
            .oneshot(request("evil.example"))
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::MISDIRECTED_REQUEST);
        let body = axum::body::to_bytes(refused.into_body(), 1024)
            .await
            .unwrap();
        assert!(
            String::from_utf8_lossy(&body).contains("--allowed-host evil.example"),
            "{body:?}"
        );
        let passed = guarded.oneshot(request("localhost:8400")).await.unwrap();
        assert_eq!(passed.status(), StatusCode::OK);
    }
}
