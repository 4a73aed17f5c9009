//! Fetching Client ID Metadata Documents (the IO half of `flow::cimd`): an SSRF guard (the host is
//! resolved first and private, loopback, link-local, multicast and unspecified addresses are
//! refused; the connection goes to the addresses checked; no redirects), a size and a time
//! limit, and an HTTP cache honouring `Cache-Control: max-age`, keyed by URL and bounded.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use reqwest::header::{ACCEPT, CACHE_CONTROL, CONTENT_LENGTH};
use url::{Host, Url};

use crate::flow::cimd::{
    ClientMetadata, MAX_DOCUMENT_BYTES, MetadataError, document_url, parse_document,
};

/// How long a fetch (resolution, connection and body) may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a document is reused when the response names no `max-age`.
pub const DEFAULT_MAX_AGE_SECS: u64 = 300;
/// The longest a document is reused, whatever `max-age` says.
pub const MAX_MAX_AGE_SECS: u64 = 24 * 60 * 60;
/// How many documents the cache holds; past it, the one expiring first is dropped.
pub const MAX_CACHED_DOCUMENTS: usize = 256;

#[derive(Debug, Clone)]
struct Cached {
    metadata: ClientMetadata,
    expires_at: u64,
}

/// The fetcher and its cache, one per emulator.
#[derive(Debug)]
pub struct MetadataDocuments {
    allow_insecure_loopback: bool,
    cache: Mutex<HashMap<String, Cached>>,
}

impl MetadataDocuments {
    /// A fetcher; `allow_insecure_loopback` lets documents be served over `http` from loopback.
    pub fn new(allow_insecure_loopback: bool) -> MetadataDocuments {
        MetadataDocuments {
            allow_insecure_loopback,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets every cached document (the control API's reset).
    pub fn clear(&self) {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The validated document of `client_id`, from the cache while it is fresh at `now` (unix
    /// seconds), else fetched.
    pub async fn get(&self, client_id: &str, now: u64) -> Result<ClientMetadata, MetadataError> {
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(client_id)
            .filter(|cached| cached.expires_at > now)
            .map(|cached| cached.metadata.clone());
        if let Some(metadata) = cached {
            return Ok(metadata);
        }
        let url = document_url(client_id, self.allow_insecure_loopback)?;
        let (body, max_age) = tokio::time::timeout(FETCH_TIMEOUT, self.fetch(&url))
            .await
            .map_err(|_| {
                MetadataError(format!(
                    "fetching {client_id} took longer than {} seconds",
                    FETCH_TIMEOUT.as_secs()
                ))
            })??;
        let metadata = parse_document(client_id, &body)?;
        if max_age > 0 {
            let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            cache.retain(|_, cached| cached.expires_at > now);
            if cache.len() >= MAX_CACHED_DOCUMENTS
                && let Some(first) = cache
                    .iter()
                    .min_by_key(|(_, cached)| cached.expires_at)
                    .map(|(key, _)| key.clone())
            {
                cache.remove(&first);
            }
            cache.insert(
                client_id.to_owned(),
                Cached {
                    metadata: metadata.clone(),
                    expires_at: now + max_age,
                },
            );
        }
        Ok(metadata)
    }

    /// Resolves, checks the addresses, and GETs the document; returns the body and how long it
    /// may be reused.
    async fn fetch(&self, url: &Url) -> Result<(Vec<u8>, u64), MetadataError> {
        let refuse = |why: String| MetadataError(format!("client_id {url} {why}"));
        let port = url
            .port_or_known_default()
            .ok_or_else(|| refuse("has no port".to_owned()))?;
        let (domain, addresses) = match url.host() {
            Some(Host::Ipv4(ip)) => (None, vec![SocketAddr::new(IpAddr::V4(ip), port)]),
            Some(Host::Ipv6(ip)) => (None, vec![SocketAddr::new(IpAddr::V6(ip), port)]),
            Some(Host::Domain(domain)) => {
                let addresses: Vec<SocketAddr> = tokio::net::lookup_host((domain, port))
                    .await
                    .map_err(|_| refuse(format!("names host {domain}, which does not resolve")))?
                    .collect();
                (Some(domain.to_owned()), addresses)
            }
            None => return Err(refuse("has no host".to_owned())),
        };
        if addresses.is_empty() {
            return Err(refuse("names a host without addresses".to_owned()));
        }
        if let Some(address) = addresses
            .iter()
            .find(|address| !self.may_connect(address.ip()))
        {
            return Err(refuse(format!(
                "resolves to {}, a private, loopback, link-local, multicast or unspecified address",
                address.ip()
            )));
        }
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(FETCH_TIMEOUT);
        // Connect to the addresses just checked, not to a second resolution (DNS rebinding).
        if let Some(domain) = &domain {
            builder = builder.resolve_to_addrs(domain, &addresses);
        }
        let client = builder
            .build()
            .map_err(|_| refuse("cannot be fetched".to_owned()))?;
        let mut response = client
            .get(url.clone())
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|error| refuse(format!("could not be fetched: {}", fetch_failure(&error))))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(refuse(format!(
                "answered HTTP {}; redirects are not followed",
                status.as_u16()
            )));
        }
        if status != reqwest::StatusCode::OK {
            return Err(refuse(format!("answered HTTP {}", status.as_u16())));
        }
        let too_large = || {
            MetadataError(format!(
                "the client metadata document is larger than {MAX_DOCUMENT_BYTES} bytes"
            ))
        };
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<usize>().ok());
        if declared.is_some_and(|length| length > MAX_DOCUMENT_BYTES) {
            return Err(too_large());
        }
        let max_age = max_age(
            response
                .headers()
                .get(CACHE_CONTROL)
                .and_then(|value| value.to_str().ok()),
        );
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| refuse(format!("could not be read: {}", fetch_failure(&error))))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, max_age))
    }

    /// Public unicast addresses only; loopback too when the allowance is on.
    fn may_connect(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        if ip.is_loopback() {
            return self.allow_insecure_loopback;
        }
        if ip.is_unspecified() || ip.is_multicast() {
            return false;
        }
        match ip {
            IpAddr::V4(v4) => {
                !(v4.is_private()
                    || v4.is_link_local()
                    || v4.is_broadcast()
                    || v4.is_documentation()
                    // 100.64.0.0/10, carrier-grade NAT.
                    || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
                    || v4.octets()[0] == 0)
            }
            IpAddr::V6(v6) => {
                let first = v6.segments()[0];
                // fc00::/7 unique local, fe80::/10 link-local.
                !((first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80)
            }
        }
    }
}

/// The description of a failed fetch: a timeout or a connection failure, without internals.
fn fetch_failure(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "it timed out"
    } else if error.is_connect() {
        "the connection failed"
    } else {
        "the request failed"
    }
}

/// Seconds a response may be reused: `no-store`/`no-cache` → 0, `max-age=N` → N capped at
/// [`MAX_MAX_AGE_SECS`], else [`DEFAULT_MAX_AGE_SECS`] (RFC 9111 §5.2.2).
fn max_age(cache_control: Option<&str>) -> u64 {
    let Some(cache_control) = cache_control else {
        return DEFAULT_MAX_AGE_SECS;
    };
    let mut max_age = None;
    for directive in cache_control.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return 0;
        }
        if let Some(value) = lower.strip_prefix("max-age=") {
            max_age = value.trim_matches('"').parse::<u64>().ok();
        }
    }
    max_age.map_or(DEFAULT_MAX_AGE_SECS, |seconds| {
        seconds.min(MAX_MAX_AGE_SECS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_follows_cache_control_with_a_cap() {
        assert_eq!(max_age(None), DEFAULT_MAX_AGE_SECS);
        assert_eq!(max_age(Some("public, max-age=60")), 60);
        assert_eq!(max_age(Some("max-age=999999999")), MAX_MAX_AGE_SECS);
        assert_eq!(max_age(Some("no-store")), 0);
        assert_eq!(max_age(Some("max-age=60, no-cache")), 0);
        assert_eq!(max_age(Some("public")), DEFAULT_MAX_AGE_SECS);
    }

    #[test]
    fn only_public_addresses_are_fetched_unless_loopback_is_allowed() {
        let strict = MetadataDocuments::new(false);
        let loopback = MetadataDocuments::new(true);
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "224.0.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = refused.parse().unwrap();
            assert!(!strict.may_connect(ip), "{refused}");
        }
        assert!(strict.may_connect("93.184.215.14".parse().unwrap()));
        assert!(strict.may_connect("2606:4700::1".parse().unwrap()));
        assert!(loopback.may_connect("127.0.0.1".parse().unwrap()));
        assert!(loopback.may_connect("::1".parse().unwrap()));
        assert!(!loopback.may_connect("10.0.0.1".parse().unwrap()));
    }
}
