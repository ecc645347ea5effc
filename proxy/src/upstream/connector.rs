//! Connections to origins: resolve, check the destination, connect, TLS handshake.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::destination::{DestinationPolicy, Refusal};
use crate::host::Host;
use crate::resolve::{Resolve, ResolveError};
use crate::upstream::pools::PoolChoice;
use crate::upstream::tls::{CertificateProblem, OriginTls};

/// A failure to open a connection to an origin.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URI has no usable scheme or host.
    #[error("invalid upstream URI {0}")]
    InvalidUri(String),
    /// The name did not resolve.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// Every address of the destination is refused by the destination check.
    #[error("destination {host} ({address}) refused: {refusal}")]
    Refused {
        /// The host requested.
        host: String,
        /// The first refused address.
        address: IpAddr,
        /// Why it is refused.
        refusal: Refusal,
    },
    /// The TCP connection did not complete within `timeouts.connect_ms`.
    #[error("connecting to {0} timed out")]
    ConnectTimeout(String),
    /// The TCP connection failed.
    #[error("connecting to {host} failed: {source}")]
    Connect {
        /// The host requested.
        host: String,
        /// The socket error.
        source: io::Error,
    },
    /// The TLS handshake did not complete within `timeouts.tls_handshake_ms`.
    #[error("TLS handshake with {0} timed out")]
    TlsTimeout(String),
    /// The origin's certificate is not valid for the host.
    #[error("certificate of {host} rejected: {}", problem.as_str())]
    Certificate {
        /// The host requested.
        host: String,
        /// Why the certificate was rejected.
        problem: CertificateProblem,
    },
    /// The TLS handshake failed for another reason.
    #[error("TLS handshake with {host} failed: {source}")]
    Tls {
        /// The host requested.
        host: String,
        /// The handshake error.
        source: io::Error,
    },
    /// A connection for a pool that speaks only HTTP/2 reached an origin that did
    /// not choose h2 in ALPN, or that recently did not. No request was sent on it.
    #[error("{0} does not offer HTTP/2 on new connections")]
    NotHttp2(String),
}

/// The HTTP versions offered in ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Offer {
    Both,
    Http1,
    Http2,
}

/// Timeouts applied while connecting.
#[derive(Debug, Clone, Copy)]
pub struct ConnectTimeouts {
    /// TCP connect.
    pub connect: Duration,
    /// TLS handshake.
    pub tls_handshake: Duration,
}

/// Opens connections to origins. Used by the pooled client as its connector and
/// directly for WebSocket upgrades.
#[derive(Clone)]
pub struct OriginConnector {
    inner: Arc<ConnectorInner>,
    /// For a pool that speaks only HTTP/2: the pool choice, which learns the
    /// origins that did not choose HTTP/2, so that they get the first pool for a
    /// while.
    http2_only: Option<Arc<PoolChoice>>,
    /// For the pool that negotiates the version: the pool choice, which learns
    /// each new connection's ALPN result and so ends the origin's probe.
    alpn_to: Option<Arc<PoolChoice>>,
}

struct ConnectorInner {
    resolver: Arc<dyn Resolve>,
    destinations: DestinationPolicy,
    /// The proxy's own listeners, never a destination, so that a request cannot
    /// loop back into swg when loopback destinations are allowed.
    own_listeners: RwLock<Vec<SocketAddr>>,
    tls: OriginTls,
    timeouts: ConnectTimeouts,
}

impl OriginConnector {
    /// Creates a connector.
    pub fn new(
        resolver: Arc<dyn Resolve>,
        destinations: DestinationPolicy,
        tls: OriginTls,
        timeouts: ConnectTimeouts,
    ) -> OriginConnector {
        OriginConnector {
            inner: Arc::new(ConnectorInner {
                resolver,
                destinations,
                own_listeners: RwLock::new(Vec::new()),
                tls,
                timeouts,
            }),
            http2_only: None,
            alpn_to: None,
        }
    }

    /// Returns a connector for the pool that negotiates the version, which passes
    /// the ALPN result of each new TLS connection to `choice`.
    pub(crate) fn reporting_alpn(&self, choice: Arc<PoolChoice>) -> OriginConnector {
        OriginConnector {
            inner: Arc::clone(&self.inner),
            http2_only: None,
            alpn_to: Some(choice),
        }
    }

    /// Returns a connector for a pool that speaks only HTTP/2. It offers only h2
    /// in ALPN, and fails with [`ConnectError::NotHttp2`] when the origin does not
    /// choose it, which `choice` then records, and while `choice` keeps the origin
    /// in pool 0 for that.
    pub(crate) fn http2_only(&self, choice: Arc<PoolChoice>) -> OriginConnector {
        OriginConnector {
            inner: Arc::clone(&self.inner),
            http2_only: Some(choice),
            alpn_to: None,
        }
    }

    /// Adds addresses that listeners of this process are bound to, which are
    /// then refused as destinations whatever `allowed_destinations` contains.
    pub fn add_own_listeners(&self, listeners: impl IntoIterator<Item = SocketAddr>) {
        self.inner
            .own_listeners
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(listeners);
    }

    /// Tells whether connecting to `address` would reach one of the proxy's own
    /// listeners. A listener on an unspecified address accepts connections to
    /// every address of the host, so for it any loopback address and any address
    /// that [`is_host_address`] finds count too.
    fn is_own_listener(&self, address: SocketAddr) -> bool {
        let ip = crate::destination::canonical(address.ip());
        let wildcard_port = {
            let listeners = self
                .inner
                .own_listeners
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            let mut on_port = listeners
                .iter()
                .filter(|listener| listener.port() == address.port());
            let mut wildcard = false;
            for listener in &mut on_port {
                if listener.ip() == ip {
                    return true;
                }
                wildcard |= listener.ip().is_unspecified();
            }
            wildcard
        };
        wildcard_port && (ip.is_loopback() || ip.is_unspecified() || is_host_address(ip))
    }

    /// Tells whether `stream` connected to one of the host's own addresses on
    /// the port of a listener of this process on an unspecified address. For a
    /// destination that is one of its own addresses, the kernel chooses that
    /// address as the source too. This check backs up [`is_host_address`], in
    /// case the route lookup of a UDP socket differs from that of TCP.
    fn reached_own_listener(&self, stream: &TcpStream) -> bool {
        let (Ok(local), Ok(peer)) = (stream.local_addr(), stream.peer_addr()) else {
            return false;
        };
        let peer_ip = crate::destination::canonical(peer.ip());
        if crate::destination::canonical(local.ip()) != peer_ip {
            return false;
        }
        self.inner
            .own_listeners
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|listener| listener.port() == peer.port() && listener.ip().is_unspecified())
    }

    /// Connects to the origin of `uri` (`http` or `https`). With `http1_only`, only
    /// http/1.1 is offered in ALPN.
    pub async fn connect(&self, uri: &Uri, http1_only: bool) -> Result<OriginStream, ConnectError> {
        let offer = if http1_only {
            Offer::Http1
        } else {
            Offer::Both
        };
        self.connect_offering(uri, offer).await
    }

    /// Connects to the origin of `uri` for a pool that speaks only HTTP/2.
    async fn connect_http2(
        &self,
        uri: &Uri,
        choice: &PoolChoice,
    ) -> Result<OriginStream, ConnectError> {
        let not_http2 = || ConnectError::NotHttp2(uri.host().unwrap_or_default().to_owned());
        if choice.declined_http2(uri) {
            return Err(not_http2());
        }
        match self.connect_offering(uri, Offer::Http2).await {
            Ok(stream) if stream.h2 => return Ok(stream),
            Ok(_) => {}
            // rustls rejects an offer it shares no protocol with by this alert;
            // other servers go on without ALPN.
            Err(ConnectError::Tls { source, .. }) if is_no_application_protocol(&source) => {}
            Err(error) => return Err(error),
        }
        tracing::info!(origin = %uri, "origin did not choose HTTP/2 for a new connection; using the negotiating pool for it");
        choice.record_http2_declined(uri);
        Err(not_http2())
    }

    async fn connect_offering(
        &self,
        uri: &Uri,
        offer: Offer,
    ) -> Result<OriginStream, ConnectError> {
        let invalid = || ConnectError::InvalidUri(uri.to_string());
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(invalid()),
        };
        let host_text = uri.host().ok_or_else(invalid)?;
        let host = Host::parse(host_text).map_err(|_| invalid())?;
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });

        let addresses = self.destinations(&host, host_text, port).await?;
        let tcp = self.connect_tcp(&addresses, port, host_text).await?;
        if !tls {
            return Ok(OriginStream {
                io: TokioIo::new(Transport::Plain(tcp)),
                h2: false,
            });
        }
        self.handshake(tcp, &host, host_text, offer).await
    }

    async fn destinations(
        &self,
        host: &Host,
        host_text: &str,
        port: u16,
    ) -> Result<Vec<IpAddr>, ConnectError> {
        let candidates = match host {
            Host::Ip(ip) => vec![*ip],
            Host::Name(name) => self.inner.resolver.resolve(name).await?,
        };
        let mut first_refusal = None;
        let mut allowed = Vec::with_capacity(candidates.len());
        for address in candidates {
            let checked = if self.is_own_listener(SocketAddr::new(address, port)) {
                Err(Refusal::Own)
            } else {
                self.inner.destinations.check(address)
            };
            match checked {
                Ok(()) => allowed.push(address),
                Err(refusal) => {
                    first_refusal.get_or_insert((address, refusal));
                }
            }
        }
        match (allowed.is_empty(), first_refusal) {
            (true, Some((address, refusal))) => {
                tracing::warn!(host = %host_text, %address, %refusal, "upstream destination refused");
                Err(ConnectError::Refused {
                    host: host_text.to_owned(),
                    address,
                    refusal,
                })
            }
            (true, None) => Err(ConnectError::Resolve(ResolveError::NotFound(
                host_text.to_owned(),
            ))),
            (false, _) => Ok(allowed),
        }
    }

    async fn connect_tcp(
        &self,
        addresses: &[IpAddr],
        port: u16,
        host: &str,
    ) -> Result<TcpStream, ConnectError> {
        let mut last_error = None;
        for address in addresses {
            let attempt = tokio::time::timeout(
                self.inner.timeouts.connect,
                TcpStream::connect(SocketAddr::new(*address, port)),
            )
            .await;
            match attempt {
                Ok(Ok(stream)) => {
                    if self.reached_own_listener(&stream) {
                        tracing::warn!(host, %address, port, "upstream connection reached a listener of swg on a wildcard address; closing it");
                        return Err(ConnectError::Refused {
                            host: host.to_owned(),
                            address: *address,
                            refusal: Refusal::Own,
                        });
                    }
                    // Small writes (HTTP/2 frames, request heads) must not wait for Nagle.
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Ok(Err(source)) => {
                    last_error = Some(ConnectError::Connect {
                        host: host.to_owned(),
                        source,
                    })
                }
                Err(_) => last_error = Some(ConnectError::ConnectTimeout(host.to_owned())),
            }
        }
        Err(last_error.unwrap_or_else(|| ConnectError::ConnectTimeout(host.to_owned())))
    }

    async fn handshake(
        &self,
        tcp: TcpStream,
        host: &Host,
        host_text: &str,
        offer: Offer,
    ) -> Result<OriginStream, ConnectError> {
        let server_name = match host {
            Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
            Host::Name(name) => ServerName::try_from(name.clone())
                .map_err(|_| ConnectError::InvalidUri(host_text.to_owned()))?,
        };
        let config = match offer {
            Offer::Both => &self.inner.tls.any_version,
            Offer::Http1 => &self.inner.tls.http1_only,
            Offer::Http2 => &self.inner.tls.http2_only,
        };
        let connector = TlsConnector::from(config.clone());

        let handshake = tokio::time::timeout(
            self.inner.timeouts.tls_handshake,
            connector.connect(server_name, tcp),
        );
        let stream = match handshake.await {
            Err(_) => return Err(ConnectError::TlsTimeout(host_text.to_owned())),
            Ok(Err(source)) => return Err(classify_tls_error(host_text, source)),
            Ok(Ok(stream)) => stream,
        };
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok(OriginStream {
            io: TokioIo::new(Transport::Tls(Box::new(stream))),
            h2,
        })
    }
}

/// Tells whether `ip` is one of the host's own addresses, by the source address
/// that the kernel chooses for a UDP socket connected to it: for a local
/// destination, Linux and the BSDs choose the destination itself. Connecting a
/// UDP socket sends no packet. Returns false when the host has no route to `ip`.
fn is_host_address(ip: IpAddr) -> bool {
    let bind: SocketAddr = match ip {
        IpAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let Ok(socket) = std::net::UdpSocket::bind(bind) else {
        return false;
    };
    // The port only has to be valid; nothing is sent.
    if socket.connect(SocketAddr::new(ip, 9)).is_err() {
        return false;
    }
    socket
        .local_addr()
        .is_ok_and(|local| crate::destination::canonical(local.ip()) == ip)
}

/// Tells whether a handshake failed on the server's `no_application_protocol`
/// alert.
fn is_no_application_protocol(source: &io::Error) -> bool {
    matches!(
        source
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::AlertReceived(
            rustls::AlertDescription::NoApplicationProtocol
        ))
    )
}

fn classify_tls_error(host: &str, source: io::Error) -> ConnectError {
    let problem = source
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .and_then(CertificateProblem::from_rustls);
    match problem {
        Some(problem) => ConnectError::Certificate {
            host: host.to_owned(),
            problem,
        },
        None => ConnectError::Tls {
            host: host.to_owned(),
            source,
        },
    }
}

impl tower_service::Service<Uri> for OriginConnector {
    type Response = OriginStream;
    type Error = ConnectError;
    type Future = BoxFuture<'static, Result<OriginStream, ConnectError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = self.clone();
        Box::pin(async move {
            if let Some(choice) = &connector.http2_only {
                return connector.connect_http2(&uri, choice).await;
            }
            let stream = connector.connect_offering(&uri, Offer::Both).await?;
            if let Some(choice) = &connector.alpn_to {
                if uri.scheme_str() == Some("https") {
                    choice.record_alpn(&uri, stream.h2);
                }
            }
            Ok(stream)
        })
    }
}

/// A TCP or TLS connection to an origin.
pub(crate) enum Transport {
    /// Plain HTTP.
    Plain(TcpStream),
    /// HTTPS.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Plain(stream) => stream.is_write_vectored(),
            Transport::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// An origin connection as hyper sees it, with the ALPN result.
pub struct OriginStream {
    io: TokioIo<Transport>,
    h2: bool,
}

impl OriginStream {
    /// Whether the origin chose HTTP/2 in ALPN.
    pub fn is_h2(&self) -> bool {
        self.h2
    }
}

impl Connection for OriginStream {
    fn connected(&self) -> Connected {
        let connected = Connected::new();
        if self.h2 {
            connected.negotiated_h2()
        } else {
            connected
        }
    }
}

impl hyper::rt::Read for OriginStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for OriginStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        hyper::rt::Write::is_write_vectored(&self.io)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;

    use super::*;
    use crate::resolve::UpstreamResolver;

    fn connector() -> OriginConnector {
        let destinations = DestinationPolicy::new(vec!["127.0.0.0/8".parse().unwrap()], Vec::new());
        let tls = OriginTls::new(&[]).unwrap();
        let timeouts = ConnectTimeouts {
            connect: Duration::from_secs(5),
            tls_handshake: Duration::from_secs(5),
        };
        OriginConnector::new(
            UpstreamResolver::new(&[], BTreeMap::new()),
            destinations,
            tls,
            timeouts,
        )
    }

    #[test]
    fn host_address_found_by_route_lookup() {
        assert!(is_host_address(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        // The kernel chooses 127.0.0.1 as the source for the rest of 127.0.0.0/8.
        assert!(!is_host_address("127.0.0.2".parse().unwrap()));
    }

    /// A connection that reaches a wildcard listener of swg through an address
    /// of the host is closed, even past the check before connecting.
    #[tokio::test]
    async fn connection_to_own_wildcard_listener_refused() {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let connector = connector();
        connector.add_own_listeners([SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port)]);

        let result = connector
            .connect_tcp(&[Ipv4Addr::LOCALHOST.into()], port, "own.test")
            .await;
        assert!(
            matches!(
                result,
                Err(ConnectError::Refused {
                    refusal: Refusal::Own,
                    ..
                })
            ),
            "{result:?}"
        );
        assert!(connector.is_own_listener(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)));

        // Another port of the host stays reachable.
        let other = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let other_port = other.local_addr().unwrap().port();
        assert!(connector
            .connect_tcp(&[Ipv4Addr::LOCALHOST.into()], other_port, "origin.test")
            .await
            .is_ok());
        assert!(!connector.is_own_listener(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), other_port)));
    }
}
