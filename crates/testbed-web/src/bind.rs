//! Binding a piece's listener: the listener, the address the kernel gave it, and the base URL
//! the piece names itself by (its public URL, else `http://{bound address}`), which is also the
//! URL whose host the listener guard admits. And serving an axum router behind the guard.

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;
use tower::Layer as _;
use url::Url;

use crate::host::{AllowedHosts, HostGuardLayer};

/// Why a listener could not be bound or named.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The address could not be bound.
    #[error("cannot listen on {address}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The bound listener's address could not be read.
    #[error("cannot read the address the listener is bound to")]
    LocalAddress(#[source] std::io::Error),
    /// The bound address does not make a URL (cannot happen for IP addresses).
    #[error("{0} does not make an http URL")]
    BaseUrl(SocketAddr),
}

/// A bound listener, not yet serving.
#[derive(Debug)]
pub struct Bound {
    listener: TcpListener,
    local_addr: SocketAddr,
    base_url: Url,
}

impl Bound {
    /// Binds `address`; the base URL is `public_url`, else `http://{bound address}`.
    pub async fn bind(address: SocketAddr, public_url: Option<&Url>) -> Result<Bound, BindError> {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| BindError::Listen { address, source })?;
        Bound::from_listener(listener, public_url)
    }

    /// A listener bound by the caller (tests and the test stack bind `127.0.0.1:0` first).
    pub fn from_listener(
        listener: TcpListener,
        public_url: Option<&Url>,
    ) -> Result<Bound, BindError> {
        let local_addr = listener.local_addr().map_err(BindError::LocalAddress)?;
        let base_url = match public_url {
            Some(public_url) => public_url.clone(),
            None => Url::parse(&format!("http://{local_addr}"))
                .map_err(|_| BindError::BaseUrl(local_addr))?,
        };
        Ok(Bound {
            listener,
            local_addr,
            base_url,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The public URL, or `http://{local_addr}/` (as a `Url`, it ends in `/`).
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// The listener, for a piece that serves it itself.
    pub fn into_parts(self) -> (TcpListener, SocketAddr, Url) {
        (self.listener, self.local_addr, self.base_url)
    }
}

/// Serves `router` on `listener` (axum: HTTP/1.1 and HTTP/2) with the listener guard outermost,
/// so that a request for a host not in `hosts` is refused before any layer of the router sees it
/// (a recording layer a caller wrapped the router in included).
pub fn serve(
    listener: TcpListener,
    router: Router,
    hosts: AllowedHosts,
) -> impl Future<Output = std::io::Result<()>> {
    let guarded = HostGuardLayer::new(hosts).layer(router);
    async move {
        axum::serve(
            listener,
            axum::ServiceExt::<axum::extract::Request>::into_make_service(guarded),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_base_url_is_the_public_url_or_the_bound_address() {
        let bound = Bound::bind("127.0.0.1:0".parse().unwrap(), None)
            .await
            .unwrap();
        assert_eq!(
            bound.base_url().as_str(),
            format!("http://{}/", bound.local_addr())
        );
        let public = Url::parse("https://app.example/").unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bound = Bound::from_listener(listener, Some(&public)).unwrap();
        assert_eq!(bound.base_url(), &public);
    }

    #[tokio::test]
    async fn an_address_in_use_is_named() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = taken.local_addr().unwrap();
        let error = Bound::bind(address, None).await.unwrap_err();
        assert_eq!(error.to_string(), format!("cannot listen on {address}"));
        assert!(std::error::Error::source(&error).is_some());
    }

    #[tokio::test]
    async fn a_served_router_answers_loopback_and_refuses_a_foreign_host() {
        let bound = Bound::bind("127.0.0.1:0".parse().unwrap(), None)
            .await
            .unwrap();
        let hosts = AllowedHosts::new(bound.base_url(), &[]);
        let (listener, address, _) = bound.into_parts();
        let router = Router::new().route("/", axum::routing::get(|| async { "hello" }));
        tokio::spawn(serve(listener, router, hosts));
        let http = reqwest::Client::new();
        let url = format!("http://{address}/");
        let ok = http.get(&url).send().await.unwrap();
        assert_eq!(ok.status(), 200);
        let refused = http
            .get(&url)
            .header("host", "evil.example")
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 421);
        let unrouted = http
            .get(format!("{url}nowhere"))
            .header("host", "evil.example")
            .send()
            .await
            .unwrap();
        assert_eq!(unrouted.status(), 421);
    }
}
