//! Browser origins (RFC 6454) as pages send them in `Origin`, and the `host[:port]` grammar they
//! share with `Host` headers and allowed hosts.

use std::net::Ipv6Addr;

use url::Url;

/// The origin of a web page (RFC 6454 §7) as browsers send it in `Origin`: `scheme://host[:port]`,
/// nothing more. Compared by scheme, host (case-insensitively) and port, the default port of
/// `http` and `https` filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    /// Parses `scheme://host[:port]` strictly: no path (not even `/`), query, fragment or user
    /// info; the host a DNS name, an IPv4 address or a bracketed IPv6 address; `null` (the
    /// opaque origin) is not an origin.
    pub fn parse(text: &str) -> Option<Origin> {
        let (scheme, authority) = text.split_once("://")?;
        let mut scheme_characters = scheme.chars();
        if !scheme_characters.next()?.is_ascii_alphabetic()
            || !scheme_characters
                .all(|character| character.is_ascii_alphanumeric() || "+-.".contains(character))
        {
            return None;
        }
        let (host, port) = parse_host_port(authority)?;
        let scheme = scheme.to_ascii_lowercase();
        let port = port.or_else(|| default_port(&scheme));
        Some(Origin { scheme, host, port })
    }

    /// The origin of a URL (`None` for a URL without a host).
    pub fn of_url(url: &Url) -> Option<Origin> {
        let host = url.host_str()?;
        let serialized = match url.port() {
            Some(port) => format!("{}://{host}:{port}", url.scheme()),
            None => format!("{}://{host}", url.scheme()),
        };
        Origin::parse(&serialized)
    }

    /// An `http` or `https` origin on `localhost`, `127.0.0.1` or `[::1]`, any port.
    pub fn is_loopback(&self) -> bool {
        matches!(self.scheme.as_str(), "http" | "https")
            && matches!(self.host.as_str(), "localhost" | "127.0.0.1" | "[::1]")
    }

    /// Whether this origin names the same host and port as a request's `host[:port]` (its `Host`
    /// header or HTTP/2 `:authority`, which omit the scheme's default port): the page that sent
    /// the request was served by the server it sends to. The scheme is not compared: a request
    /// does not say it.
    pub fn is_authority(&self, authority: &str) -> bool {
        let Some((host, port)) = parse_host_port(authority) else {
            return false;
        };
        host == self.host && port.or_else(|| default_port(&self.scheme)) == self.port
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// Parses `host[:port]` strictly: the host a DNS name (letters, digits, `-`, `.`, `_`; lower-cased),
/// an IPv4 address or a bracketed IPv6 address (in its canonical form, so that `[::0001]` is
/// `[::1]`); the port 1 to 5 digits. No user info, path or anything else.
pub(crate) fn parse_host_port(authority: &str) -> Option<(String, Option<u16>)> {
    if let Some(bracketed) = authority.strip_prefix('[') {
        let (address, rest) = bracketed.split_once(']')?;
        let address = address.parse::<Ipv6Addr>().ok()?;
        let port = match rest {
            "" => None,
            rest => Some(parse_port(rest.strip_prefix(':')?)?),
        };
        return Some((format!("[{address}]"), port));
    }
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(parse_port(port)?)),
        None => (authority, None),
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || "-._".contains(character));
    host_ok.then(|| (host.to_ascii_lowercase(), port))
}

fn parse_port(digits: &str) -> Option<u16> {
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_is_compared_with_a_request_authority_by_host_and_port() {
        let origin = Origin::parse("http://127.0.0.1:8400").unwrap();
        assert!(origin.is_authority("127.0.0.1:8400"));
        assert!(!origin.is_authority("127.0.0.1:3000"));
        assert!(!origin.is_authority("localhost:8400"));
        assert!(!origin.is_authority("127.0.0.1"));
        let default_port = Origin::parse("https://emulator.example").unwrap();
        assert!(default_port.is_authority("EMULATOR.example"));
        assert!(default_port.is_authority("emulator.example:443"));
        assert!(!default_port.is_authority("emulator.example:80"));
    }

    #[test]
    fn origins_parse_strictly() {
        let parsed = Origin::parse("HTTPS://App.Example.com").expect("an origin");
        assert_eq!(
            parsed,
            Origin::parse("https://app.example.com:443").expect("an origin")
        );
        assert_ne!(
            parsed,
            Origin::parse("https://app.example.com:8443").expect("an origin")
        );
        assert_ne!(
            parsed,
            Origin::parse("http://app.example.com").expect("an origin")
        );
        assert!(
            Origin::parse("http://[::1]:6274")
                .expect("an origin")
                .is_loopback()
        );
        assert!(
            Origin::parse("http://[0::0001]")
                .expect("an origin")
                .is_loopback()
        );
        assert!(Origin::parse("chrome-extension://abcdef").is_some());
        for malformed in [
            "null",
            "",
            "http://",
            "http://host/",
            "http://host?x",
            "http://host#x",
            "http://user@host",
            "http://host:",
            "http://host:65536",
            "http://host:+80",
            "http://ho st",
            "http://[::1",
            "http://[not-v6]",
            "http://[::1]6274",
            "1http://host",
            "//host",
        ] {
            assert_eq!(Origin::parse(malformed), None, "{malformed:?}");
        }
    }

    #[test]
    fn loopback_origins_are_http_or_https_on_localhost_127_0_0_1_or_v6_loopback() {
        for loopback in [
            "http://localhost:6274",
            "https://LOCALHOST",
            "http://127.0.0.1:1",
            "https://[::1]",
        ] {
            assert!(
                Origin::parse(loopback).expect("an origin").is_loopback(),
                "{loopback}"
            );
        }
        for foreign in [
            "http://127.0.0.2",
            "http://localhost.example",
            "ws://localhost",
            "http://0.0.0.0",
        ] {
            assert!(
                !Origin::parse(foreign).expect("an origin").is_loopback(),
                "{foreign}"
            );
        }
    }

    #[test]
    fn the_origin_of_a_url_drops_the_path_and_the_default_port() {
        let url = Url::parse("https://mcp.example.com:443/tenant/mcp").expect("a URL");
        assert_eq!(
            Origin::of_url(&url),
            Origin::parse("https://mcp.example.com")
        );
        let url = Url::parse("http://[::1]:8402/mcp").expect("a URL");
        assert_eq!(Origin::of_url(&url), Origin::parse("http://[::1]:8402"));
    }
}
