//! Serving one listener: HTTP/1.1 and HTTP/2 on the same port (h2c with prior knowledge in the
//! clear, ALPN `h2`/`http/1.1` under TLS), gRPC requests to tonic and everything else to the axum
//! router, the way Scalekit serves REST and gRPC on one origin (reference: scalekit.md
//! "Emulator implications" §1).
//!
//! Before either, the listener guard every piece shares (`testbed_web::AllowedHosts::check`)
//! refuses a request for a host the emulator does not answer for: 421 (400 when no host or a
//! malformed one is named), as a gRPC status for gRPC and in the gateway shape otherwise.

pub mod tls;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::IntoResponse as _;
use http::header::{CONNECTION, CONTENT_TYPE};
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use testbed_web::{AllowedHosts, HostRefusal};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::grpc::AuthService;
use crate::grpc::proto::scalekit::v1::auth::auth_service_server::AuthServiceServer;
use crate::http::router;
use crate::management::{ApiError, GrpcCode};
use crate::state::AppState;

pub use tls::{TlsError, TlsOptions, TlsSetup};

/// How often expired login requests, codes and refresh tokens are dropped.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// How long a client may take to send a request's head, and to send the first request of a
/// connection at all (an idle keep-alive connection is closed after it too). Without it a client
/// that connects and dribbles, or sends nothing, holds a connection and its buffers for ever.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client may take to send a request's body. The body is read before the request is
/// routed (every body the emulator takes is small), so a slow body cannot hold a handler, and a
/// handler that takes its time (a delay fault, a metadata-document fetch) is not cut short.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest body the emulator reads (axum's default limit for its extractors).
const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Serves `listener` until the future is dropped, with TLS when `tls` is given, answering only
/// requests for `allowed_hosts` and sweeping expired entries every 30 seconds. Dropping the future
/// stops the sweeper and every open connection.
pub(crate) async fn serve(
    mut listener: TcpListener,
    state: AppState,
    allowed_hosts: AllowedHosts,
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
        allowed_hosts: Arc::new(allowed_hosts),
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
                Some(acceptor) => {
                    match tokio::time::timeout(HEAD_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(stream, dispatch).await,
                        Ok(Err(error)) => Err(Box::new(error) as BoxError),
                        Err(elapsed) => Err(Box::new(elapsed) as BoxError),
                    }
                }
            };
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One connection, HTTP/1.1 or HTTP/2 as the client speaks (hyper-util's auto builder reads the
/// HTTP/2 preface; upgrades are kept for HTTP/1.1). A request head must arrive within
/// [`HEAD_TIMEOUT`] (hyper's header-read timeout, which needs a timer to be on at all), and so
/// must the first request: the auto builder's sniffing of the protocol has no timeout of its own.
async fn serve_connection<I>(io: I, dispatch: Dispatch) -> Result<(), BoxError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let first_request = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&first_request);
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        seen.store(true, Ordering::Relaxed);
        let dispatch = dispatch.clone();
        async move { dispatch.call(request).await }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => result,
        () = tokio::time::sleep(HEAD_TIMEOUT) => {
            if first_request.load(Ordering::Relaxed) {
                connection.await
            } else {
                // Nothing arrived: dropping the connection closes it.
                Ok(())
            }
        }
    }
}

/// Refuses a request for a foreign host, then routes it by its content type: `application/grpc…`
/// to tonic, the rest to axum.
#[derive(Clone)]
struct Dispatch {
    allowed_hosts: Arc<AllowedHosts>,
    grpc: AuthServiceServer<AuthService>,
    http: Router,
}

impl Dispatch {
    async fn call(self, request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
        if let Err(refusal) = self.allowed_hosts.check(request.uri(), request.headers()) {
            return Ok(refused_host(&refusal, is_grpc(&request)));
        }
        if is_grpc(&request) {
            let response = self.grpc.oneshot(request).await?;
            return Ok(response.map(Body::new));
        }
        let (parts, body) = request.into_parts();
        let body = match read_body(body).await {
            Ok(body) => body,
            Err(refused) => return Ok(refused),
        };
        self.http
            .oneshot(Request::from_parts(parts, Body::from(body)))
            .await
    }
}

/// The answer to a request for a host the emulator does not answer for, before routing, through
/// the emulator's edge types: the gateway body, or for gRPC the same error as a gRPC status in
/// the headers (a trailers-only answer, which gRPC clients read whatever the HTTP status). Either
/// way the HTTP status is the refusal's: 421 for a foreign host, 400 for a missing or malformed one.
fn refused_host(refusal: &HostRefusal, grpc: bool) -> Response<Body> {
    let code = match refusal {
        HostRefusal::Foreign { .. } => GrpcCode::FailedPrecondition,
        HostRefusal::Missing | HostRefusal::Malformed(_) => GrpcCode::InvalidArgument,
    };
    let error = ApiError::new(code, refusal.to_string());
    if grpc {
        let mut response = tonic::Status::from(error).into_http::<Body>();
        *response.status_mut() = refusal.status();
        return response;
    }
    (refusal.status(), error).into_response()
}

/// The whole body of a request, read within [`BODY_TIMEOUT`] and up to [`MAX_BODY_BYTES`]; a
/// body too slow, too large or broken off is answered here, in the gateway shape, and the
/// connection closed.
async fn read_body(body: Incoming) -> Result<axum::body::Bytes, Response<Body>> {
    let refused = |status: StatusCode, message: String| {
        let mut response =
            (status, ApiError::new(GrpcCode::InvalidArgument, message)).into_response();
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        response
    };
    match tokio::time::timeout(
        BODY_TIMEOUT,
        axum::body::to_bytes(Body::new(body), MAX_BODY_BYTES),
    )
    .await
    {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(error)) => Err(refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body could not be read (at most {MAX_BODY_BYTES} bytes): {error}"),
        )),
        Err(_) => Err(refused(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} seconds",
                BODY_TIMEOUT.as_secs()
            ),
        )),
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
