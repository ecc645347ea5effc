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
use http::header::{
    HeaderName, ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus::IntCounter;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::backends::TokenRejection;
use crate::connections::ConnectionLimiter;
use crate::resolver::{canonical_source, DohAnswer, Resolver};
use crate::tcp::WriteDeadline;
use crate::wire::{HEADER_LEN, MAX_MESSAGE_LEN};

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
    /// Time a write may stay blocked because the client does not read before the
    /// connection is closed.
    pub write_timeout: Duration,
    /// HTTP/2 streams (queries) in flight on one connection.
    pub max_queries_per_connection: usize,
}

/// The DoH listener's certificate resolver: passes a ClientHello on to the configured
/// resolver when its SNI is the DoH host name (compared case-insensitively) or absent,
/// and fails the handshake for any other SNI.
///
/// In swg the configured resolver is the CA's leaf cache, which mints a leaf for any
/// name it is asked for and shares its entries with the inspection proxy. Handshakes
/// come before any device token, so without this check anyone could fill that cache
/// with leaves for made-up names.
#[derive(Debug)]
pub struct DohCertificates {
    inner: Arc<dyn ResolvesServerCert>,
    /// The DoH host name in lower case, without a trailing dot.
    host: String,
    /// `swg_dns_refused_total{reason="tls_server_name"}`.
    refused: IntCounter,
}

impl DohCertificates {
    /// Serves `inner`'s certificate for `host` only, counting other SNIs in `refused`.
    pub fn new(inner: Arc<dyn ResolvesServerCert>, host: &str, refused: IntCounter) -> Self {
        DohCertificates {
            inner,
            host: host.trim_end_matches('.').to_ascii_lowercase(),
            refused,
        }
    }
}

impl ResolvesServerCert for DohCertificates {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(sni) = client_hello.server_name() {
            if !sni.trim_end_matches('.').eq_ignore_ascii_case(&self.host) {
                self.refused.inc();
                tracing::debug!(sni, doh_host = %self.host, "DoH handshake rejected: the SNI is not the DoH host name");
                return None;
            }
        }
        self.inner.resolve(client_hello)
    }
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
        let peer = canonical_source(peer);
        let Some(permit) = connections.admit(peer, "doh") else {
            continue;
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
        // Below TLS, so that a client which stops reading fails whatever hyper or rustls
        // is writing at the time. The in-flight permit is never held during a write: it
        // is given back when `handle` returns the response.
        let write_timeouts = self
            .resolver
            .metrics()
            .dropped
            .with_label_values(&["write_timeout"]);
        let stream = WriteDeadline::new(stream, self.limits.write_timeout, write_timeouts);
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
    let (token, message) = match read_request(request, peer, read_timeout).await {
        Ok(read) => read,
        Err(refusal) => {
            resolver
                .metrics()
                .refused
                .with_label_values(&[refusal.reason()])
                .inc();
            tracing::debug!(client = %peer, reason = refusal.reason(), "DoH request refused");
            return refusal.response();
        }
    };

    let Ok(_permit) = in_flight.clone().try_acquire_owned() else {
        resolver
            .metrics()
            .dropped
            .with_label_values(&["overloaded"])
            .inc();
        return text_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "resolver overloaded: retry the query later",
        );
    };
    match resolver.answer_doh(&message, peer, token.as_deref()).await {
        DohAnswer::Response { body, max_age } => Response::builder()
            .status(StatusCode::OK)
            .header(CONTENT_TYPE, DNS_MESSAGE)
            .header(CACHE_CONTROL, format!("max-age={max_age}"))
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|_| {
                text_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error: the DNS response could not be sent",
                )
            }),
        DohAnswer::Unauthorized(rejection) => unauthorized(rejection),
        DohAnswer::BadRequest => text_response(
            StatusCode::BAD_REQUEST,
            "invalid DNS message: it is not a query that can be answered",
        ),
    }
}

/// A DoH request rejected before it reaches the resolver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// A path other than [`DOH_PATH`].
    NotFound,
    /// A method other than GET and POST.
    MethodNotAllowed,
    /// A POST whose media type is not [`DNS_MESSAGE`].
    UnsupportedMediaType,
    /// A POST body over [`MAX_MESSAGE_LEN`] bytes.
    BodyTooLarge,
    /// A POST body that did not arrive within the read timeout.
    BodyTimeout,
    /// A POST body that could not be read, such as a chunk size that does not parse.
    InvalidBody,
    /// A GET without a `dns` parameter that decodes as base64url without padding.
    InvalidDnsParameter,
    /// A message shorter than the 12-byte DNS header.
    ShortMessage,
    /// A message with QR=1: a response, not a query.
    NotAQuery,
}

impl Refusal {
    fn status(self) -> StatusCode {
        match self {
            Refusal::NotFound => StatusCode::NOT_FOUND,
            Refusal::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Refusal::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Refusal::InvalidBody
            | Refusal::InvalidDnsParameter
            | Refusal::ShortMessage
            | Refusal::NotAQuery => StatusCode::BAD_REQUEST,
        }
    }

    /// Returns the `swg_dns_refused_total` reason.
    fn reason(self) -> &'static str {
        match self {
            Refusal::NotFound => "http_not_found",
            Refusal::MethodNotAllowed => "http_method",
            Refusal::UnsupportedMediaType => "http_media_type",
            Refusal::BodyTooLarge => "http_too_large",
            Refusal::BodyTimeout => "http_timeout",
            Refusal::InvalidBody
            | Refusal::InvalidDnsParameter
            | Refusal::ShortMessage
            | Refusal::NotAQuery => "http_bad_request",
        }
    }

    /// Returns the text of the response body: what is wrong and what to send instead.
    fn message(self) -> &'static str {
        match self {
            Refusal::NotFound => "not found: send DNS queries to /dns-query",
            Refusal::MethodNotAllowed => "method not allowed: send the DNS query with GET or POST",
            Refusal::UnsupportedMediaType => {
                "unsupported media type: send application/dns-message"
            }
            Refusal::BodyTooLarge => {
                "request body too large: a DNS message is at most 65535 bytes"
            }
            Refusal::BodyTimeout => {
                "request body timed out: send the whole DNS message without pausing"
            }
            Refusal::InvalidBody => {
                "invalid request body: the body or its chunked encoding could not be read"
            }
            Refusal::InvalidDnsParameter => {
                "missing or invalid dns parameter: send the DNS message as base64url without padding in ?dns="
            }
            Refusal::ShortMessage => {
                "DNS message too short: a query starts with a 12-byte header"
            }
            Refusal::NotAQuery => "DNS message is a response (QR=1): send a query",
        }
    }

    fn response(self) -> Response<Full<Bytes>> {
        let mut response = text_response(self.status(), self.message());
        if self == Refusal::MethodNotAllowed {
            // RFC 9110 section 15.5.6: a 405 lists the methods the resource supports.
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, POST"));
        }
        response
    }
}

/// The place of the DNS message in a request whose head passed the checks.
enum Carrier {
    /// In the `dns` parameter of a GET, decoded.
    Uri(Vec<u8>),
    /// In the body of a POST, still to be read.
    Body,
}

/// Reads the bearer token and the DNS message of a request.
async fn read_request(
    request: Request<Incoming>,
    peer: SocketAddr,
    read_timeout: Duration,
) -> Result<(Option<String>, Vec<u8>), Refusal> {
    let (head, body) = request.into_parts();
    let message = match check_head(&head) {
        Ok(Carrier::Uri(message)) => message,
        Ok(Carrier::Body) => read_body(body, peer, read_timeout).await?,
        Err(refusal) => {
            // A response sent while an HTTP/2 request body is still arriving resets the
            // stream, and curl 7.88 then reports a framing error instead of the status.
            discard_body(body, read_timeout).await;
            return Err(refusal);
        }
    };
    check_message(&message)?;
    let token = bearer_token(&head.headers).map(str::to_owned);
    Ok((token, message))
}

/// Checks the path, method and media type, and finds the DNS message.
fn check_head(head: &http::request::Parts) -> Result<Carrier, Refusal> {
    if head.uri.path() != DOH_PATH {
        return Err(Refusal::NotFound);
    }
    match head.method {
        Method::GET => query_from_uri(head.uri.query())
            .map(Carrier::Uri)
            .ok_or(Refusal::InvalidDnsParameter),
        Method::POST if is_dns_message(single(&head.headers, CONTENT_TYPE)) => Ok(Carrier::Body),
        Method::POST => Err(Refusal::UnsupportedMediaType),
        _ => Err(Refusal::MethodNotAllowed),
    }
}

/// Reads a POST body of at most [`MAX_MESSAGE_LEN`] bytes within `read_timeout`.
async fn read_body(
    body: Incoming,
    peer: SocketAddr,
    read_timeout: Duration,
) -> Result<Vec<u8>, Refusal> {
    // A body trickling in must not hold the request (and the connection) open.
    let body = Limited::new(body, MAX_MESSAGE_LEN).collect();
    match tokio::time::timeout(read_timeout, body).await {
        Ok(Ok(body)) => Ok(body.to_bytes().to_vec()),
        Ok(Err(error)) if error.is::<LengthLimitError>() => Err(Refusal::BodyTooLarge),
        Ok(Err(error)) => {
            tracing::debug!(client = %peer, %error, "DoH request body could not be read");
            Err(Refusal::InvalidBody)
        }
        Err(_) => Err(Refusal::BodyTimeout),
    }
}

/// Reads and drops the body of a refused request, so that the client gets the status.
/// Stops after [`MAX_MESSAGE_LEN`] bytes or `read_timeout`, and reads nothing when the
/// declared length is over the limit, so a refused request costs no more than a query.
async fn discard_body(mut body: Incoming, read_timeout: Duration) {
    let limit = u64::try_from(MAX_MESSAGE_LEN).unwrap_or(u64::MAX);
    if body.is_end_stream() || body.size_hint().lower() > limit {
        return;
    }
    let drain = async {
        let mut read = 0usize;
        while read <= MAX_MESSAGE_LEN {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
                Some(Err(_)) | None => break,
            }
        }
    };
    let _ = tokio::time::timeout(read_timeout, drain).await;
}

/// Rejects messages that the resolver would drop without a response, because over
/// DoH the client then needs a status that gives the reason.
fn check_message(message: &[u8]) -> Result<(), Refusal> {
    if message.len() < HEADER_LEN {
        return Err(Refusal::ShortMessage);
    }
    // The QR bit is the top bit of the third header byte.
    if message[2] & 0x80 != 0 {
        return Err(Refusal::NotAQuery);
    }
    Ok(())
}

/// Checks whether a `Content-Type` value is `application/dns-message`. Type and
/// subtype are compared case-insensitively and parameters are ignored (RFC 9110
/// section 8.3.1).
fn is_dns_message(value: Option<&HeaderValue>) -> bool {
    let Some(value) = value.and_then(|value| value.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case(DNS_MESSAGE)
}

/// Builds a 401 with the RFC 6750 challenge. It carries `error="invalid_token"` only
/// when a token was sent and rejected, because a request without credentials gets no
/// error code (section 3.1).
fn unauthorized(rejection: Option<TokenRejection>) -> Response<Full<Bytes>> {
    let (text, challenge) = match rejection {
        None => (
            "missing device token: send Authorization: Bearer <token>",
            "Bearer",
        ),
        Some(TokenRejection::Invalid) => (
            "invalid device token: its signature does not verify; enroll the device again",
            r#"Bearer error="invalid_token""#,
        ),
        Some(TokenRejection::UnknownTenant) => (
            "device token of a tenant that is not in the policy this gateway loaded; ask \
             the administrator to load the tenant's policy",
            r#"Bearer error="invalid_token""#,
        ),
        Some(TokenRejection::Expired) => (
            "expired device token: enroll the device again with the authentication key (POST /api/agent/enroll), since an expired token cannot be renewed",
            r#"Bearer error="invalid_token""#,
        ),
        Some(TokenRejection::Revoked) => (
            "revoked device token: its authentication key was deleted; enroll with a current key",
            r#"Bearer error="invalid_token""#,
        ),
    };
    let mut response = text_response(StatusCode::UNAUTHORIZED, text);
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    response
}

/// Builds a response with a one-line `text/plain` body.
fn text_response(code: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *response.status_mut() = code;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = single(headers, AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// Returns the value of a header field that must appear once, or `None` when it is
/// missing or repeated: of two tokens or two media types, neither can be trusted to
/// be the one meant.
fn single(headers: &HeaderMap, name: HeaderName) -> Option<&HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    values.next().is_none().then_some(value)
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
        assert_eq!(bearer_token(request.headers()), Some("abc"));
        let basic = Request::builder()
            .header(AUTHORIZATION, "Basic abc")
            .body(())
            .unwrap_or_default();
        assert_eq!(bearer_token(basic.headers()), None);
        let twice = Request::builder()
            .header(AUTHORIZATION, "Bearer abc")
            .header(AUTHORIZATION, "Bearer def")
            .body(())
            .unwrap_or_default();
        assert_eq!(bearer_token(twice.headers()), None);
    }

    #[test]
    fn media_type_ignores_case_and_parameters() {
        for accepted in [
            "application/dns-message",
            "Application/DNS-Message",
            "application/dns-message; charset=x",
            "application/dns-message ;q=1",
        ] {
            let value = HeaderValue::from_static(accepted);
            assert!(is_dns_message(Some(&value)), "{accepted}");
        }
        for rejected in [
            "text/plain",
            "application/dns-message-x",
            "application/dns",
            "",
        ] {
            let value = HeaderValue::from_static(rejected);
            assert!(!is_dns_message(Some(&value)), "{rejected}");
        }
        assert!(!is_dns_message(None));
    }

    #[test]
    fn short_or_response_message_is_refused() {
        assert_eq!(check_message(&[]), Err(Refusal::ShortMessage));
        assert_eq!(check_message(&[0; 11]), Err(Refusal::ShortMessage));
        assert_eq!(check_message(&[0; 12]), Ok(()));
        let mut response = [0; 12];
        response[2] = 0x80;
        assert_eq!(check_message(&response), Err(Refusal::NotAQuery));
    }
}
