//! One HTTPS connection to a swg endpoint (console or DoH), HTTP/2 when the server
//! offers it, reopened when it fails, with deadlines on connecting, the handshakes
//! and each request.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, Shared};
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::tls_errors::{describe, handshake_failure, rustls_cause, HandshakePeer};
use super::AgentError;

/// Largest response body the agent reads, in bytes.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// The swg endpoint an [`HttpsClient`] connects to. It decides where the messages
/// of failed TLS handshakes tell the user to fix the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointKind {
    /// The console, whose URL the user gives with `--server`.
    Console,
    /// The DoH endpoint, whose URL the console hands out at enrolment from its
    /// `[console] doh_url` setting.
    Doh,
}

/// The agent's TLS client configuration, with the CA file it trusts besides the
/// webpki roots.
#[derive(Clone)]
pub struct TlsClientConfig {
    /// The rustls configuration that every connection of the agent uses.
    pub config: Arc<rustls::ClientConfig>,
    /// The PEM file given with `--ca-file`, if any, which messages about untrusted
    /// certificates name.
    pub ca_file: Option<Arc<std::path::Path>>,
}

/// Builds the TLS client configuration: the webpki roots plus, when given, the
/// certificates of a PEM file (the swg root CA of a one-machine setup).
pub fn tls_config(ca_file: Option<&std::path::Path>) -> Result<TlsClientConfig, AgentError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let certificates = CertificateDer::pem_file_iter(path).map_err(|error| {
            let hint = if path.exists() {
                ""
            } else {
                "; swg keeps its root CA in DATA_DIR/ca/root-cert.pem (swg-data/ca/root-cert.pem \
                 by default), or export it with `swg ca export --format pem --out swg-root.pem`"
            };
            AgentError::CaFile(format!("{}: {error}{hint}", path.display()))
        })?;
        let mut added = 0usize;
        for certificate in certificates {
            let certificate = certificate
                .map_err(|error| AgentError::CaFile(format!("{}: {error}", path.display())))?;
            roots
                .add(certificate)
                .map_err(|error| AgentError::CaFile(format!("{}: {error}", path.display())))?;
            added += 1;
        }
        if added == 0 {
            return Err(AgentError::CaFile(format!(
                "{}: contains no PEM certificate (export one with `swg ca export --format pem`)",
                path.display()
            )));
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| AgentError::Tls(error.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsClientConfig {
        config: Arc::new(config),
        ca_file: ca_file.map(Arc::from),
    })
}

/// Time to open the TCP connection to an endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for the TLS handshake and the HTTP/2 preface once TCP is connected.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline of one request, connecting included, unless the client is given another.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Interval of HTTP/2 pings while requests are open, so that a connection whose
/// peer went silent fails instead of holding requests.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// Wait for the reply to an HTTP/2 ping before the connection counts as failed.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The latest rustls error that a read or write on one connection returned.
type TlsErrorSlot = Arc<std::sync::Mutex<Option<rustls::Error>>>;

/// The sending half of an open connection, with the connection's latest TLS error.
#[derive(Clone)]
struct Sender {
    requests: Requests,
    tls_error: TlsErrorSlot,
}

/// The hyper handle that sends requests on a connection.
#[derive(Clone)]
enum Requests {
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
    /// HTTP/1.1 carries one request at a time, so requests take turns.
    Http11(Arc<Mutex<hyper::client::conn::http1::SendRequest<Full<Bytes>>>>),
}

impl Sender {
    /// Returns whether the connection is closed. An HTTP/1.1 connection busy with
    /// another request counts as open.
    fn is_closed(&self) -> bool {
        match &self.requests {
            Requests::H2(sender) => sender.is_closed(),
            Requests::Http11(sender) => sender.try_lock().is_ok_and(|sender| sender.is_closed()),
        }
    }
}

/// A TLS stream that stores the rustls error of each failed read or write in a
/// [`TlsErrorSlot`].
///
/// A TLS 1.3 server checks the client's certificate after the client has finished
/// its side of the handshake, so its alert (such as certificate_required) arrives
/// during the HTTP exchange. h2 0.4 passes an I/O error on to requests and to the
/// connection's task as its kind and text only, without the rustls error, so the
/// failing request reads the error from the slot instead.
struct RecordingStream {
    inner: TlsStream<TcpStream>,
    tls_error: TlsErrorSlot,
    /// The error of a write that failed because the connection was closed, kept
    /// while [`RecordingStream::poll_pending_alert`] waits to read.
    write_failure: Option<std::io::Error>,
}

/// Maximum number of application-data reads that
/// [`RecordingStream::poll_pending_alert`] skips while it looks for an alert.
const PENDING_READS: usize = 8;

impl RecordingStream {
    /// Stores the rustls error behind a failed read, and returns `poll` unchanged.
    fn record_read<T>(&self, poll: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        if let Poll::Ready(Err(error)) = &poll {
            if let Some(tls) = rustls_cause(error) {
                *lock_slot(&self.tls_error) = Some(tls.clone());
            }
        }
        poll
    }

    /// Stores the rustls error behind a failed write. A write that failed because
    /// the connection was closed or reset first waits for what the server sent
    /// before, through [`Self::poll_pending_alert`].
    fn record_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        let Poll::Ready(Err(error)) = poll else {
            return poll;
        };
        if let Some(tls) = rustls_cause(&error) {
            *lock_slot(&self.tls_error) = Some(tls.clone());
            return Poll::Ready(Err(error));
        }
        let closed = matches!(
            error.kind(),
            std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
        );
        if !closed {
            return Poll::Ready(Err(error));
        }
        self.write_failure = Some(error);
        self.poll_pending_alert(cx)
    }

    /// Reads what the server sent before the failed write in `write_failure`, and
    /// fails with the rustls error of an alert found there, or else with the write's
    /// error.
    ///
    /// A server that sends an alert and closes its socket resets the connection when
    /// the agent's request arrives. The next write then fails with a broken pipe,
    /// while the alert still waits unread. A reset socket is readable, so the
    /// read ends soon with the alert, the end of the stream or an error. The
    /// connection has failed, so application data read here is discarded.
    fn poll_pending_alert<T>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<T>> {
        let mut scratch = [0u8; 4096];
        for _ in 0..PENDING_READS {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => continue,
                Poll::Ready(Ok(())) => break,
                Poll::Ready(Err(error)) => {
                    if let Some(tls) = rustls_cause(&error) {
                        *lock_slot(&self.tls_error) = Some(tls.clone());
                        self.write_failure = None;
                        return Poll::Ready(Err(error));
                    }
                    break;
                }
            }
        }
        let error = self
            .write_failure
            .take()
            .unwrap_or_else(|| std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        Poll::Ready(Err(error))
    }
}

impl AsyncRead for RecordingStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.record_read(poll)
    }
}

impl AsyncWrite for RecordingStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.write_failure.is_some() {
            return self.poll_pending_alert(cx);
        }
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.record_write(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if self.write_failure.is_some() {
            return self.poll_pending_alert(cx);
        }
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.record_write(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.write_failure.is_some() {
            return self.poll_pending_alert(cx);
        }
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.record_write(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.write_failure.is_some() {
            return self.poll_pending_alert(cx);
        }
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.record_write(cx, poll)
    }
}

fn lock_slot(slot: &TlsErrorSlot) -> std::sync::MutexGuard<'_, Option<rustls::Error>> {
    // A poisoned lock still holds a whole value: the slot is only ever assigned.
    slot.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Converts the failure of an HTTP exchange or handshake on a connection to `peer`
/// into the error to report. A rustls error in `error`'s sources, or else in the
/// connection's `tls_error`, gives [`AgentError::Tls`] with its description.
/// Without one, the HTTP error's text gives [`AgentError::Http`].
///
/// The slot is read only after the exchange has failed. By then it contains any TLS
/// error behind the failure, because the stream stores the error before it returns
/// the error to hyper.
fn http_failure(
    error: &(dyn std::error::Error + 'static),
    peer: &HandshakePeer<'_>,
    tls_error: &TlsErrorSlot,
) -> AgentError {
    if let Some(tls) = rustls_cause(error) {
        return AgentError::Tls(describe(tls, peer));
    }
    match lock_slot(tls_error).as_ref() {
        Some(tls) => AgentError::Tls(describe(tls, peer)),
        None => AgentError::Http(error.to_string()),
    }
}

/// A connection being opened, which every request that needs it waits for.
type Opening = Shared<BoxFuture<'static, Result<(u64, Sender), AgentError>>>;

/// The open connection and the one being opened.
#[derive(Default)]
struct Connections {
    /// The open connection and its number, from which a failed request learns
    /// whether the connection it used is still the current one.
    current: Option<(u64, Sender)>,
    opening: Option<Opening>,
    opened: u64,
}

/// A reusable HTTPS connection to one origin.
///
/// Requests share one connection (many at once over HTTP/2). A connection is opened
/// in a task of its own, so a request that gives up at its deadline does not stop
/// the opening that other requests wait for. Every request waiting for one opening
/// gets its outcome, so a failing endpoint costs each of them one wait, not one per
/// request queued before it.
pub struct HttpsClient {
    origin: Uri,
    tls: TlsClientConfig,
    endpoint: EndpointKind,
    request_timeout: Duration,
    connections: Arc<std::sync::Mutex<Connections>>,
}

impl HttpsClient {
    /// Creates a client for the origin of `url` (`https://host[:port]`), the swg
    /// endpoint `endpoint`, whose requests time out after 30 s.
    pub fn new(
        url: &Uri,
        tls: TlsClientConfig,
        endpoint: EndpointKind,
    ) -> Result<Self, AgentError> {
        if url.scheme_str() != Some("https") || url.host().is_none() {
            return Err(AgentError::Url(url.to_string()));
        }
        Ok(HttpsClient {
            origin: url.clone(),
            tls,
            endpoint,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            connections: Arc::default(),
        })
    }

    /// Sets the deadline of one request, connecting and reading the body included.
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sends the request `make` builds (its URI may be a path) and returns the response
    /// with its body. Opens a connection when there is none, and once more when a
    /// connection opened before this request fails. Fails with
    /// [`AgentError::Timeout`] when the whole exchange takes longer than the
    /// client's request timeout.
    pub async fn send(
        &self,
        make: impl Fn() -> Result<Request<Full<Bytes>>, AgentError>,
    ) -> Result<Response<Bytes>, AgentError> {
        let exchange = async {
            let (number, sender, fresh) = self.sender().await?;
            let error = match self.exchange(&sender, make()?).await {
                Ok(response) => return Ok(response),
                Err(error) => error,
            };
            // Other requests may still run on a connection that failed only this one.
            if sender.is_closed() {
                self.forget(number);
            }
            if fresh {
                return Err(error);
            }
            // Most likely an idle connection that the server has closed meanwhile:
            // retry once, on a new connection when this one is closed.
            let (number, sender, _) = self.sender().await?;
            let outcome = self.exchange(&sender, make()?).await;
            if outcome.is_err() && sender.is_closed() {
                self.forget(number);
            }
            outcome
        };
        tokio::time::timeout(self.request_timeout, exchange)
            .await
            .map_err(|_| AgentError::Timeout {
                operation: format!("HTTPS request to {}", self.endpoint()),
                after: self.request_timeout,
            })?
    }

    /// Returns the server end of this client's connections, for messages about
    /// their TLS errors.
    fn peer(&self) -> HandshakePeer<'_> {
        HandshakePeer {
            url: &self.origin,
            host: connect_host(&self.origin),
            port: self.origin.port_u16().unwrap_or(443),
            endpoint: self.endpoint,
            ca_file: self.tls.ca_file.as_deref(),
        }
    }

    /// Returns `host:port` of the origin, for messages.
    fn endpoint(&self) -> String {
        let port = self.origin.port_u16().unwrap_or(443);
        format!("{}:{port}", connect_host(&self.origin))
    }

    /// Returns the open connection with its number and whether this call opened it,
    /// opening one if needed.
    async fn sender(&self) -> Result<(u64, Sender, bool), AgentError> {
        let opening = {
            let mut connections = self.lock_connections();
            match &connections.current {
                Some((number, sender)) if !sender.is_closed() => {
                    return Ok((*number, sender.clone(), false));
                }
                _ => connections.current = None,
            }
            match &connections.opening {
                Some(opening) => opening.clone(),
                None => {
                    let opening = self.start_opening();
                    connections.opening = Some(opening.clone());
                    opening
                }
            }
        };
        let (number, sender) = opening.await?;
        Ok((number, sender, true))
    }

    /// Starts opening a connection in its own task, which stores it as the current
    /// connection when it is ready.
    fn start_opening(&self) -> Opening {
        let origin = self.origin.clone();
        let tls = self.tls.clone();
        let endpoint = self.endpoint;
        let connections = self.connections.clone();
        let task = tokio::spawn(async move {
            let outcome = open(&origin, &tls, endpoint).await;
            let mut connections = connections
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            connections.opening = None;
            let sender = outcome?;
            connections.opened += 1;
            let number = connections.opened;
            connections.current = Some((number, sender.clone()));
            Ok((number, sender))
        });
        async move {
            task.await.unwrap_or_else(|error| {
                Err(AgentError::Http(format!("connecting failed: {error}")))
            })
        }
        .boxed()
        .shared()
    }

    /// Drops the connection `number` unless another one has replaced it already.
    fn forget(&self, number: u64) {
        let mut connections = self.lock_connections();
        if connections
            .current
            .as_ref()
            .is_some_and(|(current, _)| *current == number)
        {
            connections.current = None;
        }
    }

    fn lock_connections(&self) -> std::sync::MutexGuard<'_, Connections> {
        // The lock is never held across an await or a panic-prone call; a poisoned
        // lock still holds consistent state.
        self.connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn exchange(
        &self,
        sender: &Sender,
        mut request: Request<Full<Bytes>>,
    ) -> Result<Response<Bytes>, AgentError> {
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let host = connect_host(&self.origin).to_owned();
        let authority = self.origin.authority().map_or(host, |a| a.to_string());

        let failed = |error: &(dyn std::error::Error + 'static)| {
            http_failure(error, &self.peer(), &sender.tls_error)
        };
        let response = match &sender.requests {
            Requests::H2(sender) => {
                *request.uri_mut() = format!("https://{authority}{path}")
                    .parse()
                    .map_err(|_| AgentError::Url(path.clone()))?;
                sender.clone().send_request(request).await
            }
            Requests::Http11(sender) => {
                *request.uri_mut() = path.parse().map_err(|_| AgentError::Url(path.clone()))?;
                let host_header = http::HeaderValue::from_str(&authority)
                    .map_err(|_| AgentError::Url(authority.clone()))?;
                request
                    .headers_mut()
                    .insert(http::header::HOST, host_header);
                let mut sender = sender.lock().await;
                sender.ready().await.map_err(|error| failed(&error))?;
                sender.send_request(request).await
            }
        }
        .map_err(|error| failed(&error))?;

        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|error| failed(&*error))?
            .to_bytes();
        Ok(Response::from_parts(parts, body))
    }
}

/// Opens a TLS connection to the origin of `origin`, the swg endpoint `endpoint`,
/// and runs the HTTP handshake, each step within its timeout.
async fn open(
    origin: &Uri,
    tls: &TlsClientConfig,
    endpoint: EndpointKind,
) -> Result<Sender, AgentError> {
    let host = connect_host(origin);
    let port = origin.port_u16().unwrap_or(443);
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port)))
        .await
        .map_err(|_| AgentError::Timeout {
            operation: format!("TCP connection to {host}:{port}"),
            after: CONNECT_TIMEOUT,
        })?
        .map_err(|error| AgentError::Http(format!("cannot connect to {host}:{port}: {error}")))?;
    let _ = tcp.set_nodelay(true);

    let peer = HandshakePeer {
        url: origin,
        host,
        port,
        endpoint,
        ca_file: tls.ca_file.as_deref(),
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(tcp, &peer, &tls.config))
        .await
        .map_err(|_| AgentError::Timeout {
            operation: format!("TLS and HTTP handshake with {host}:{port}"),
            after: HANDSHAKE_TIMEOUT,
        })?
}

/// Runs the TLS handshake with `peer` on `tcp`, then the HTTP handshake of the
/// protocol ALPN chose, and starts the connection's task.
async fn handshake(
    tcp: TcpStream,
    peer: &HandshakePeer<'_>,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<Sender, AgentError> {
    let host = peer.host;
    let name =
        ServerName::try_from(host.to_owned()).map_err(|_| AgentError::Url(host.to_owned()))?;
    let tls = TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|error| AgentError::Tls(handshake_failure(&error, peer)))?;
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let tls_error = TlsErrorSlot::default();
    let io = TokioIo::new(RecordingStream {
        inner: tls,
        tls_error: tls_error.clone(),
        write_failure: None,
    });
    let failed = |error: hyper::Error| http_failure(&error, peer, &tls_error);
    let address = format!("{host}:{}", peer.port);
    let requests = if h2 {
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .handshake(io)
            .await
            .map_err(failed)?;
        tokio::spawn(log_connection_end(connection, address));
        Requests::H2(sender)
    } else {
        let (sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(failed)?;
        tokio::spawn(log_connection_end(connection, address));
        Requests::Http11(Arc::new(Mutex::new(sender)))
    };
    Ok(Sender {
        requests,
        tls_error,
    })
}

/// Drives `connection` to its end and logs its error, if any, at debug level: the
/// requests on the connection fail too and report the error to their callers.
async fn log_connection_end(
    connection: impl std::future::Future<Output = Result<(), hyper::Error>>,
    address: String,
) {
    if let Err(error) = connection.await {
        tracing::debug!(endpoint = %address, %error, "HTTPS connection ended with an error");
    }
}

/// Returns the host of `uri` to connect to and verify: an IPv6 literal without the
/// brackets that URLs put around it, which neither the address lookup nor the
/// TLS server name accepts.
fn connect_host(uri: &Uri) -> &str {
    let host = uri.host().unwrap_or_default();
    host.strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_host_drops_ipv6_brackets() {
        let cases = [
            ("https://[::1]:9443", "::1"),
            ("https://127.0.0.1:9443", "127.0.0.1"),
            ("https://console.example", "console.example"),
        ];
        for (url, host) in cases {
            let uri: Uri = match url.parse() {
                Ok(uri) => uri,
                Err(error) => panic!("{url}: {error}"),
            };
            assert_eq!(connect_host(&uri), host, "{url}");
        }
    }
}
