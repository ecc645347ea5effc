//! An HTTPS (or plain HTTP) origin run by the test: rustls + hyper, HTTP/1.1 and
//! HTTP/2, with routes that exercise streaming, trailers, headers and WebSockets.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use futures::stream;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::server::ResolvesServerCert;
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

pub mod goaway;

type OriginBody = BoxBody<Bytes, Infallible>;

#[derive(Debug)]
struct FixedCert(Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

fn tls_acceptor(certificate: CertifiedKey, alpn: &[&[u8]]) -> TlsAcceptor {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(FixedCert(Arc::new(certificate))));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsAcceptor::from(Arc::new(config))
}

/// Starts an HTTPS origin presenting `certificate`, offering `alpn`.
pub async fn start_https(certificate: CertifiedKey, alpn: &[&[u8]]) -> SocketAddr {
    let acceptor = tls_acceptor(certificate, alpn);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                serve(TokioIo::new(tls)).await;
            });
        }
    });
    address
}

/// Accepts connections on a new loopback listener and hands each, with its index
/// from 0, to `handle` on a task of its own. Returns the listener's address and
/// the count of connections accepted.
async fn accept_counted<F, Fut>(handle: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(usize, TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let index = counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(handle(index, tcp));
        }
    });
    (address, accepted)
}

/// Starts an HTTPS origin that speaks only HTTP/2, allows `max_streams` concurrent
/// streams per connection and serves the routes of [`start_https`]. Returns its
/// address and the count of connections it accepted.
pub async fn start_h2_limited(
    certificate: CertifiedKey,
    max_streams: u32,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let acceptor = tls_acceptor(certificate, &[b"h2"]);
    accept_counted(move |_, tcp| {
        let acceptor = acceptor.clone();
        async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            serve_with(TokioIo::new(tls), Some(max_streams)).await;
        }
    })
    .await
}

/// Starts an HTTPS origin that waits `delay` before each TLS handshake, then
/// serves the routes of [`start_https`] over HTTP/2 or HTTP/1.1. Returns its
/// address and the count of connections it accepted.
pub async fn start_slow_handshake(
    certificate: CertifiedKey,
    delay: std::time::Duration,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let acceptor = tls_acceptor(certificate, &[b"h2", b"http/1.1"]);
    accept_counted(move |_, tcp| {
        let acceptor = acceptor.clone();
        async move {
            tokio::time::sleep(delay).await;
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            serve(TokioIo::new(tls)).await;
        }
    })
    .await
}

/// Starts an HTTPS origin whose first connection offers only h2 in ALPN, and
/// whose later connections wait `later_delay` before their handshake, offer
/// `later_alpn` and speak only HTTP/1.1, all serving the routes of
/// [`start_https`]. Returns its address and the count of connections it accepted.
pub async fn start_h2_then_http1(
    certificate: CertifiedKey,
    later_alpn: &[&[u8]],
    later_delay: std::time::Duration,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let h2_acceptor = tls_acceptor(certificate.clone(), &[b"h2"]);
    let http1_acceptor = tls_acceptor(certificate, later_alpn);
    accept_counted(move |index, tcp| {
        let first = index == 0;
        let acceptor = if first {
            h2_acceptor.clone()
        } else {
            http1_acceptor.clone()
        };
        async move {
            if !first {
                tokio::time::sleep(later_delay).await;
            }
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            if first {
                serve(TokioIo::new(tls)).await;
            } else {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service_fn(route))
                    .await;
            }
        }
    })
    .await
}

/// Connection and stream counts of an origin from [`start_refusing_h2`] or
/// [`start_refusing_h2_then_http1`].
#[derive(Default)]
pub struct RefusingOrigin {
    /// Connections accepted.
    pub connections: AtomicUsize,
    /// HTTP/2 streams opened, the refused ones included.
    pub streams: AtomicUsize,
}

/// Starts an HTTPS origin that speaks only HTTP/2, resets the first stream it
/// receives with REFUSED_STREAM, and responds to every later one with 200 and the
/// request's method as the body.
pub async fn start_refusing_h2(certificate: CertifiedKey) -> (SocketAddr, Arc<RefusingOrigin>) {
    let acceptor = tls_acceptor(certificate, &[b"h2"]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let seen = Arc::new(RefusingOrigin::default());
    let counts = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            counts.connections.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            let counts = Arc::clone(&counts);
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                serve_refusing_h2(tls, &counts, |index| index == 0).await;
            });
        }
    });
    (address, seen)
}

/// Starts an HTTPS origin whose first two connections speak only HTTP/2 and reset
/// every stream with REFUSED_STREAM, and whose later connections offer only
/// http/1.1 in ALPN and serve the routes of [`start_https`].
pub async fn start_refusing_h2_then_http1(
    certificate: CertifiedKey,
) -> (SocketAddr, Arc<RefusingOrigin>) {
    let h2_acceptor = tls_acceptor(certificate.clone(), &[b"h2"]);
    let http1_acceptor = tls_acceptor(certificate, &[b"http/1.1"]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let seen = Arc::new(RefusingOrigin::default());
    let counts = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let refusing = counts.connections.fetch_add(1, Ordering::SeqCst) < 2;
            let acceptor = if refusing {
                h2_acceptor.clone()
            } else {
                http1_acceptor.clone()
            };
            let counts = Arc::clone(&counts);
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if refusing {
                    serve_refusing_h2(tls, &counts, |_| true).await;
                } else {
                    serve(TokioIo::new(tls)).await;
                }
            });
        }
    });
    (address, seen)
}

/// Serves an HTTP/2 connection, resetting with REFUSED_STREAM each stream for whose
/// index among all streams of the origin `refuse` is true, and responding to the
/// others with 200 and the request's method as the body.
async fn serve_refusing_h2<S>(stream: S, counts: &RefusingOrigin, refuse: impl Fn(usize) -> bool)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Ok(mut connection) = h2::server::handshake(stream).await else {
        return;
    };
    while let Some(Ok((request, mut respond))) = connection.accept().await {
        if refuse(counts.streams.fetch_add(1, Ordering::SeqCst)) {
            respond.send_reset(h2::Reason::REFUSED_STREAM);
            continue;
        }
        let head = Response::builder().status(StatusCode::OK).body(()).unwrap();
        let Ok(mut body) = respond.send_response(head, false) else {
            continue;
        };
        let _ = body.send_data(Bytes::from(format!("{}\n", request.method())), true);
    }
}

/// Starts a plain-HTTP origin that serves the routes of [`start_https`]. Returns
/// its address and the count of connections it accepted.
pub async fn start_http_counted() -> (SocketAddr, Arc<AtomicUsize>) {
    accept_counted(|_, tcp| serve(TokioIo::new(tcp))).await
}

/// Starts an HTTPS origin as [`start_https`] does. Returns its address and the
/// count of connections it accepted.
pub async fn start_https_counted(
    certificate: CertifiedKey,
    alpn: &[&[u8]],
) -> (SocketAddr, Arc<AtomicUsize>) {
    let acceptor = tls_acceptor(certificate, alpn);
    accept_counted(move |_, tcp| {
        let acceptor = acceptor.clone();
        async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            serve(TokioIo::new(tls)).await;
        }
    })
    .await
}

/// Starts a plain-HTTP origin.
pub async fn start_http() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(serve(TokioIo::new(tcp)));
        }
    });
    address
}

async fn serve<I>(io: I)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    serve_with(io, None).await;
}

/// Serves the routes on one connection, allowing `max_streams` concurrent HTTP/2
/// streams, or hyper's default of 200 when none.
async fn serve_with<I>(io: I, max_streams: Option<u32>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(8 << 20);
    if let Some(max_streams) = max_streams {
        builder.http2().max_concurrent_streams(max_streams);
    }
    let _ = builder
        .serve_connection_with_upgrades(io, service_fn(route))
        .await;
}

async fn route(mut request: Request<Incoming>) -> Result<Response<OriginBody>, Infallible> {
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let head = request.method() == Method::HEAD;
    let response = match path.as_str() {
        "/small" | "/head-with-body" => text("hello from origin\n"),
        "/headers" => text(&describe(&request)),
        "/set-cookie" => {
            let mut response = text("cookie set\n");
            response.headers_mut().insert(
                "set-cookie",
                HeaderValue::from_static("site=1; Path=/; Secure"),
            );
            response
        }
        "/alt-svc" => {
            let mut response = text("alt-svc\n");
            response
                .headers_mut()
                .insert("alt-svc", HeaderValue::from_static("h3=\":443\""));
            response
                .headers_mut()
                .insert("x-origin", HeaderValue::from_static("kept"));
            response
        }
        "/zeros" => zeros(query.parse().unwrap_or(0)),
        "/zeros-unsized" => {
            let mut response = zeros(query.parse().unwrap_or(0));
            response.headers_mut().remove("content-length");
            response
        }
        "/count" => {
            let mut total = 0u64;
            let body = request.body_mut();
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => total += frame.data_ref().map_or(0, |data| data.len() as u64),
                    Err(_) => return Ok(text_status(StatusCode::BAD_REQUEST, "body error\n")),
                }
            }
            text(&format!("{total}\n"))
        }
        "/trailers" => {
            let frames = vec![
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"body with trailers\n"))),
                Ok(Frame::trailers({
                    let mut trailers = HeaderMap::new();
                    trailers.insert("x-checksum", HeaderValue::from_static("abc123"));
                    trailers
                })),
            ];
            Response::new(StreamBody::new(stream::iter(frames)).boxed())
        }
        "/ws" => websocket(request),
        "/ignore-body" => {
            // Holds the request without reading its body, so that the stream
            // window (or TCP buffer) fills and the upload stops.
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            drop(request);
            text("ignored\n")
        }
        "/slow" => {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            text("slow\n")
        }
        "/quiet" => {
            // The first line, then nothing more, without ending the body.
            let first = stream::iter([Ok::<_, Infallible>(Frame::data(Bytes::from_static(
                b"first line\n",
            )))]);
            Response::new(
                StreamBody::new(futures::StreamExt::chain(first, stream::pending())).boxed(),
            )
        }
        _ => text_status(StatusCode::NOT_FOUND, "origin: not found\n"),
    };
    // This route breaks the rule, for tests of how swg handles such an origin.
    if head && path != "/head-with-body" {
        return Ok(without_body(response));
    }
    Ok(response)
}

/// Returns `response` with an empty body and the length of the body it had, as
/// the response to HEAD. hyper drops the body of a HEAD response over HTTP/1.1 but
/// sends it over HTTP/2.
fn without_body(response: Response<OriginBody>) -> Response<OriginBody> {
    let (mut parts, body) = response.into_parts();
    if let Some(length) = hyper::body::Body::size_hint(&body).exact() {
        parts
            .headers
            .insert(http::header::CONTENT_LENGTH, length.into());
    }
    let empty = Full::new(Bytes::new()).boxed();
    Response::from_parts(parts, empty)
}

fn text(body: &str) -> Response<OriginBody> {
    text_status(StatusCode::OK, body)
}

fn text_status(status: StatusCode, body: &str) -> Response<OriginBody> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())).boxed());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("text/plain"));
    response
}

/// The request line and headers, one per line, for assertions.
fn describe<B>(request: &Request<B>) -> String {
    let mut lines = format!(
        "{:?} {} {}\n",
        request.version(),
        request.method(),
        request.uri()
    );
    for (name, value) in request.headers() {
        lines.push_str(&format!("{}: {}\n", name, value.to_str().unwrap_or("?")));
    }
    lines
}

fn zeros(total: u64) -> Response<OriginBody> {
    const CHUNK: usize = 64 * 1024;
    let chunk = Bytes::from(vec![0u8; CHUNK]);
    let chunks = total.div_ceil(CHUNK as u64);
    let body = stream::iter((0..chunks).map(move |index| {
        let remaining = total - index * CHUNK as u64;
        let length = remaining.min(CHUNK as u64) as usize;
        Ok::<_, Infallible>(Frame::data(chunk.slice(..length)))
    }));
    let mut response = Response::new(StreamBody::new(body).boxed());
    response
        .headers_mut()
        .insert("content-length", HeaderValue::from(total));
    response
}

fn websocket(mut request: Request<Incoming>) -> Response<OriginBody> {
    let Some(key) = request.headers().get("sec-websocket-key").cloned() else {
        return text_status(StatusCode::BAD_REQUEST, "no key\n");
    };
    let extensions = request.headers().get("sec-websocket-extensions").cloned();
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        echo_frames(TokioIo::new(upgraded)).await;
    });

    let mut response = Response::new(Full::new(Bytes::new()).boxed());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert("upgrade", HeaderValue::from_static("websocket"));
    headers.insert("connection", HeaderValue::from_static("upgrade"));
    headers.insert(
        "sec-websocket-accept",
        HeaderValue::from_str(&accept_key(key.as_bytes())).unwrap(),
    );
    if let Some(extensions) = extensions {
        headers.insert("x-offered-extensions", extensions);
    }
    response
}

/// The `Sec-WebSocket-Accept` value for a key (RFC 6455 section 4.2.2).
pub fn accept_key(key: &[u8]) -> String {
    let mut input = key.to_vec();
    input.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// Echoes each masked client frame back unmasked, until close or error.
async fn echo_frames<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut stream: S) {
    loop {
        let Ok((opcode, payload)) = super::websocket::read_frame(&mut stream).await else {
            return;
        };
        if super::websocket::write_frame(&mut stream, opcode, &payload, None)
            .await
            .is_err()
            || opcode == 8
        {
            let _ = stream.shutdown().await;
            return;
        }
        let _ = stream.read(&mut []).await;
    }
}
