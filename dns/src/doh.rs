//! The DNS-over-HTTPS listener (RFC 8484): `GET /dns-query?dns=<base64url>` and
//! `POST /dns-query` with an `application/dns-message` body, over HTTP/1.1 and HTTP/2.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::connections::ConnectionLimiter;
use crate::resolver::{DohAnswer, Resolver};
use crate::wire::MAX_MESSAGE_LEN;

/// The RFC 8484 media type.
pub const DNS_MESSAGE: &str = "application/dns-message";

/// The path DoH is served on.
pub const DOH_PATH: &str = "/dns-query";

/// Limits of one DoH connection.
#[derive(Debug, Clone, Copy)]
pub struct DohLimits {
    /// Time with no request in flight before the connection is closed.
    pub idle_timeout: Duration,
    /// Time allowed for the TLS handshake and for one HTTP/1.1 request head.
    pub read_timeout: Duration,
    /// HTTP/2 streams (queries) in flight on one connection.
    pub max_queries_per_connection: usize,
}

/// Accepts TLS connections on `listener` forever and serves DoH on them.
pub async fn serve_doh(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    resolver: Arc<Resolver>,
    connections: Arc<ConnectionLimiter>,
    in_flight: Arc<Semaphore>,
    limits: DohLimits,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_timeout)
        .max_buf_size(16 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(
            u32::try_from(limits.max_queries_per_connection).unwrap_or(u32::MAX),
        )
        .max_header_list_size(16 * 1024)
        .max_pending_accept_reset_streams(32)
        .keep_alive_interval(limits.idle_timeout);

    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "DoH accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let permit = match connections.try_acquire(peer.ip()) {
            Ok(permit) => permit,
            Err(limit) => {
                resolver
                    .metrics()
                    .refused
                    .with_label_values(&[limit.as_str()])
                    .inc();
                tracing::debug!(client = %peer, transport = "doh", reason = limit.as_str(), "connection limit reached; connection closed");
                continue;
            }
        };
        let connection = DohConnection {
            acceptor: acceptor.clone(),
            builder: builder.clone(),
            resolver: resolver.clone(),
            in_flight: in_flight.clone(),
            limits,
        };
        tokio::spawn(async move {
            connection.serve(stream, peer).await;
            drop(permit);
        });
    }
}

struct DohConnection {
    acceptor: TlsAcceptor,
    builder: auto::Builder<TokioExecutor>,
    resolver: Arc<Resolver>,
    in_flight: Arc<Semaphore>,
    limits: DohLimits,
}

/// Requests in flight on one connection, and a signal when the count changes.
#[derive(Default)]
struct Activity {
    requests: AtomicUsize,
    changed: Notify,
}

impl DohConnection {
    async fn serve(self, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let tls = match tokio::time::timeout(self.limits.read_timeout, self.acceptor.accept(stream))
            .await
        {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => {
                tracing::debug!(client = %peer, %error, "DoH TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(client = %peer, "DoH TLS handshake timed out");
                return;
            }
        };

        let activity = Arc::new(Activity::default());
        let service = {
            let resolver = self.resolver.clone();
            let in_flight = self.in_flight.clone();
            let activity = activity.clone();
            let read_timeout = self.limits.read_timeout;
            service_fn(move |request| {
                let resolver = resolver.clone();
                let in_flight = in_flight.clone();
                let activity = activity.clone();
                async move {
                    activity.requests.fetch_add(1, Ordering::SeqCst);
                    activity.changed.notify_one();
                    let response = handle(&resolver, &in_flight, request, peer, read_timeout).await;
                    activity.requests.fetch_sub(1, Ordering::SeqCst);
                    activity.changed.notify_one();
                    Ok::<_, Infallible>(response)
                }
            })
        };

        let connection = self.builder.serve_connection(TokioIo::new(tls), service);
        tokio::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(client = %peer, %error, "DoH connection ended with an error");
                }
            }
            () = idle(&activity, self.limits.idle_timeout) => {
                connection.as_mut().graceful_shutdown();
                // Give the peer a moment to read the GOAWAY, then drop the connection.
                let _ = tokio::time::timeout(self.limits.read_timeout, connection.as_mut()).await;
            }
        }
    }
}

/// Completes once the connection had no request in flight for `timeout`.
async fn idle(activity: &Activity, timeout: Duration) {
    loop {
        let changed = activity.changed.notified();
        if activity.requests.load(Ordering::SeqCst) == 0 {
            if tokio::time::timeout(timeout, changed).await.is_err() {
                return;
            }
        } else {
            changed.await;
        }
    }
}

async fn handle(
    resolver: &Resolver,
    in_flight: &Arc<Semaphore>,
    request: Request<Incoming>,
    peer: SocketAddr,
    read_timeout: Duration,
) -> Response<Full<Bytes>> {
    let (token, message) = match read_request(request, read_timeout).await {
        Ok(read) => read,
        Err((code, reason)) => {
            resolver
                .metrics()
                .refused
                .with_label_values(&[reason])
                .inc();
            return status(code);
        }
    };

    let Ok(_permit) = in_flight.clone().try_acquire_owned() else {
        resolver
            .metrics()
            .dropped
            .with_label_values(&["overloaded"])
            .inc();
        return status(StatusCode::SERVICE_UNAVAILABLE);
    };
    match resolver.answer_doh(&message, peer, token.as_deref()).await {
        DohAnswer::Response { body, max_age } => Response::builder()
            .status(StatusCode::OK)
            .header(CONTENT_TYPE, DNS_MESSAGE)
            .header(CACHE_CONTROL, format!("max-age={max_age}"))
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|_| status(StatusCode::INTERNAL_SERVER_ERROR)),
        DohAnswer::Unauthorized => {
            let mut response = status(StatusCode::UNAUTHORIZED);
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
            response
        }
        DohAnswer::BadRequest => status(StatusCode::BAD_REQUEST),
    }
}

/// Reads the bearer token and the DNS message of a request, or returns the HTTP status
/// and the `swg_dns_refused_total` reason to reject it with.
async fn read_request(
    request: Request<Incoming>,
    read_timeout: Duration,
) -> Result<(Option<String>, Vec<u8>), (StatusCode, &'static str)> {
    if request.uri().path() != DOH_PATH {
        return Err((StatusCode::NOT_FOUND, "http_not_found"));
    }
    let token = bearer_token(&request).map(str::to_owned);
    let message = match *request.method() {
        Method::GET => query_from_uri(request.uri().query())
            .ok_or((StatusCode::BAD_REQUEST, "http_bad_request"))?,
        Method::POST => {
            let content_type = request
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|value| value.to_str().ok());
            if content_type != Some(DNS_MESSAGE) {
                return Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, "http_media_type"));
            }
            // A body trickling in must not hold the request (and the connection) open.
            let body = Limited::new(request.into_body(), MAX_MESSAGE_LEN).collect();
            match tokio::time::timeout(read_timeout, body).await {
                Ok(Ok(body)) => body.to_bytes().to_vec(),
                Ok(Err(_)) => return Err((StatusCode::PAYLOAD_TOO_LARGE, "http_too_large")),
                Err(_) => return Err((StatusCode::REQUEST_TIMEOUT, "http_timeout")),
            }
        }
        _ => return Err((StatusCode::METHOD_NOT_ALLOWED, "http_method")),
    };
    Ok((token, message))
}

fn bearer_token<B>(request: &Request<B>) -> Option<&str> {
    let value = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// Decodes the `dns` parameter of a GET query string (base64url without padding).
fn query_from_uri(query: Option<&str>) -> Option<Vec<u8>> {
    let encoded = query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("dns="))?;
    if encoded.len() > MAX_MESSAGE_LEN * 4 / 3 + 4 {
        return None;
    }
    URL_SAFE_NO_PAD.decode(encoded).ok()
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = code;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_parameter_decodes_without_padding() {
        assert_eq!(
            query_from_uri(Some("ct=x&dns=AAABAA")),
            Some(vec![0, 0, 1, 0])
        );
        assert_eq!(query_from_uri(Some("dns=AAABAA==")), None);
        assert_eq!(query_from_uri(Some("other=1")), None);
        assert_eq!(query_from_uri(None), None);
    }

    #[test]
    fn bearer_token_is_read_case_insensitively() {
        let request = Request::builder()
            .header(AUTHORIZATION, "bearer abc")
            .body(())
            .unwrap_or_default();
        assert_eq!(bearer_token(&request), Some("abc"));
        let basic = Request::builder()
            .header(AUTHORIZATION, "Basic abc")
            .body(())
            .unwrap_or_default();
        assert_eq!(bearer_token(&basic), None);
    }
}
