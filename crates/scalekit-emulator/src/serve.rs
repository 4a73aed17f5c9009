//! Serving one listener: HTTP/1.1 and HTTP/2 on the same port (h2c with prior knowledge in the
//! clear, ALPN `h2`/`http/1.1` under TLS), gRPC requests to tonic and everything else to the axum
//! router, the way Scalekit serves REST and gRPC on one origin (reference: scalekit.md
//! "Emulator implications" §1).

pub mod tls;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::header::CONTENT_TYPE;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::grpc::AuthService;
use crate::grpc::proto::scalekit::v1::auth::auth_service_server::AuthServiceServer;
use crate::http::{AppState, router};

pub use tls::{TlsError, TlsOptions, TlsSetup};

/// How often expired login requests, codes and refresh tokens are dropped.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// Serves `listener` until the future is dropped, with TLS when `tls` is given, sweeping expired
/// entries every 30 seconds. Dropping the future stops the sweeper and every open connection.
pub(crate) async fn serve(
    mut listener: TcpListener,
    state: AppState,
    tls: Option<TlsAcceptor>,
) -> std::io::Result<()> {
    let sweeper_state = state.clone();
    let mut tasks = JoinSet::new();
    tasks.spawn(async move {
        let mut interval = tokio::time::interval(SWEEP_INTERVAL);
        loop {
            interval.tick().await;
            sweeper_state.sweep();
        }
    });
    let dispatch = Dispatch {
        grpc: AuthService::new(state.clone()).into_server(),
        http: router(state),
    };
    loop {
        // Accept errors (too many open files, a reset before accept) are logged and retried by
        // axum's listener, as `axum::serve` does.
        let (stream, peer) = axum::serve::Listener::accept(&mut listener).await;
        // Reap finished connections so the set does not grow with the connection count.
        while tasks.try_join_next().is_some() {}
        let dispatch = dispatch.clone();
        let tls = tls.clone();
        tasks.spawn(async move {
            let result = match tls {
                None => serve_connection(stream, dispatch).await,
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => serve_connection(stream, dispatch).await,
                    Err(error) => Err(Box::new(error) as BoxError),
                },
            };
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One connection, HTTP/1.1 or HTTP/2 as the client speaks (hyper-util's auto builder reads the
/// HTTP/2 preface; upgrades are kept for HTTP/1.1).
async fn serve_connection<I>(io: I, dispatch: Dispatch) -> Result<(), BoxError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let dispatch = dispatch.clone();
        async move { dispatch.call(request).await }
    });
    auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .await
}

/// Routes a request by its content type: `application/grpc…` to tonic, the rest to axum.
#[derive(Clone)]
struct Dispatch {
    grpc: AuthServiceServer<AuthService>,
    http: Router,
}

impl Dispatch {
    async fn call(self, request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
        if is_grpc(&request) {
            let response = self.grpc.oneshot(request).await?;
            return Ok(response.map(Body::new));
        }
        self.http.oneshot(request.map(Body::new)).await
    }
}

/// gRPC (`application/grpc`, `application/grpc+proto`, …) as the gRPC over HTTP/2 spec names it.
fn is_grpc<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value == "application/grpc"
                || value.starts_with("application/grpc+")
                || value.starts_with("application/grpc;")
        })
}

/// The acceptor for a TLS setup.
pub(crate) fn acceptor(setup: &TlsSetup) -> TlsAcceptor {
    TlsAcceptor::from(Arc::clone(setup.server_config()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_content_type(value: &str) -> Request<()> {
        Request::builder()
            .header(CONTENT_TYPE, value)
            .body(())
            .unwrap_or_default()
    }

    #[test]
    fn grpc_content_types_go_to_tonic_and_grpc_web_and_json_do_not() {
        assert!(is_grpc(&with_content_type("application/grpc")));
        assert!(is_grpc(&with_content_type("application/grpc+proto")));
        assert!(!is_grpc(&with_content_type("application/grpc-web")));
        assert!(!is_grpc(&with_content_type("application/json")));
        assert!(!is_grpc(&Request::new(())));
    }
}
