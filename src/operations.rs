//! The operations listener: `/healthz`, `/readyz` and `/metrics` for
//! orchestrators and Prometheus, over plain HTTP/1.1 on a private address.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use prometheus::{Encoder as _, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the gateway should receive traffic: false while starting and
/// once shutdown has begun. `/readyz` returns 503 while it is false.
#[derive(Debug, Clone, Default)]
pub(crate) struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the gateway ready or not ready.
    pub(crate) fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    /// Reports whether the gateway is ready.
    pub(crate) fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// State the operations endpoints read.
#[derive(Debug, Clone)]
pub(crate) struct OperationsState {
    /// The process's one metrics registry.
    pub(crate) registry: Registry,
    /// Readiness reported by `/readyz`.
    pub(crate) readiness: Readiness,
    /// Whether the activity log's last batch failed; `/readyz` returns 503 then.
    pub(crate) activity: swg_activity::WriteStatus,
}

/// Serves the operations endpoints on `listener` until `shutdown` is
/// cancelled, then lets open requests finish for up to `drain`.
pub(crate) async fn serve(
    listener: TcpListener,
    state: OperationsState,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Usually out of file descriptors; back off instead of spinning.
                    tracing::warn!(%error, "operations listener cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };

        let state = state.clone();
        let service = service_fn(move |request| {
            let response = respond(&state, &request);
            async move { Ok::<_, Infallible>(response) }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(client = %peer, %error, "operations connection failed");
            }
        });
    }

    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(deadline = ?drain, "operations connections still open at the shutdown deadline");
    }
}

/// Binds the operations listener.
pub(crate) async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}

fn respond(state: &OperationsState, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are allowed\n",
        );
    }
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if !state.readiness.is_ready() => {
            text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
        }
        "/readyz" if state.activity.is_failing() => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: activity events cannot be stored; see the log\n",
        ),
        "/readyz" => text(StatusCode::OK, "ready\n"),
        "/metrics" => metrics(&state.registry),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /healthz, /readyz or /metrics\n",
        ),
    }
}

fn metrics(registry: &Registry) -> Response<Full<Bytes>> {
    let encoder = TextEncoder::new();
    let mut body = Vec::with_capacity(4096);
    if let Err(error) = encoder.encode(&registry.gather(), &mut body) {
        tracing::error!(%error, "cannot encode metrics");
        return text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n");
    }
    let mut response = Response::new(Full::new(Bytes::from(body)));
    if let Ok(content_type) = HeaderValue::from_str(encoder.format_type()) {
        response.headers_mut().insert(CONTENT_TYPE, content_type);
    }
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
