//! The TLS landing and TLS interception inside CONNECT tunnels: read the
//! ClientHello, present the leaf for the SNI, serve what ALPN chose.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::server::{Acceptor, ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

use crate::boundary::LeafSource;
use crate::connection::{
    serve_intercepted, ConnectionContext, ConnectionPermit, DeviceToken, Listener,
};
use crate::server::Shared;
use crate::target::Scheme;

/// Presents the leaf for the SNI of each handshake.
pub(crate) struct SniLeafResolver {
    leaves: Arc<dyn LeafSource>,
}

impl std::fmt::Debug for SniLeafResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SniLeafResolver")
    }
}

impl ResolvesServerCert for SniLeafResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.leaves.leaf(client_hello.server_name()?)
    }
}

/// Presents one fixed leaf (tunnels whose ClientHello carries no SNI).
#[derive(Debug)]
struct FixedLeafResolver(Arc<CertifiedKey>);

impl ResolvesServerCert for FixedLeafResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Presents nothing, so that rustls ends the handshake with an `access_denied` alert.
#[derive(Debug)]
struct NoLeafResolver;

impl ResolvesServerCert for NoLeafResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        None
    }
}

/// The server configuration shared by all handshakes that carry an SNI.
pub(crate) fn landing_config(
    leaves: Arc<dyn LeafSource>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    server_config(Arc::new(SniLeafResolver { leaves }))
}

fn server_config(
    resolver: Arc<dyn ResolvesServerCert>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves one TLS landing connection.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    tcp: TcpStream,
    client: SocketAddr,
    permit: Arc<ConnectionPermit>,
) {
    let Some(intercepted) = intercept(&shared, tcp, None).await else {
        return;
    };
    let context = ConnectionContext {
        listener: Listener::Tls,
        client,
        scheme: Scheme::Https,
        sni: Some(intercepted.host.clone()),
        fallback_authority: Some(intercepted.host),
        fallback_port: None,
        device_token: None,
        permit,
        responses: shared.response_watch(),
    };
    serve_intercepted(shared, context, intercepted.stream, intercepted.h2).await;
}

/// Serves TLS found inside a CONNECT tunnel to `connect_host:connect_port`.
pub(crate) async fn serve_tunnel<IO>(
    shared: Arc<Shared>,
    io: IO,
    client: SocketAddr,
    connect_host: String,
    connect_port: u16,
    device_token: DeviceToken,
    permit: Arc<ConnectionPermit>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(intercepted) = intercept(&shared, io, Some(&connect_host)).await else {
        return;
    };
    if !intercepted.host.eq_ignore_ascii_case(&connect_host) {
        tracing::debug!(sni = %intercepted.host, connect = %connect_host, "SNI differs from the CONNECT host; using the SNI");
    }
    let context = ConnectionContext {
        listener: Listener::Explicit,
        client,
        scheme: Scheme::Https,
        sni: intercepted.sni.then(|| intercepted.host.clone()),
        fallback_authority: Some(intercepted.host),
        fallback_port: Some(connect_port),
        device_token: Some(device_token),
        permit,
        responses: shared.response_watch(),
    };
    serve_intercepted(shared, context, intercepted.stream, intercepted.h2).await;
}

struct Intercepted<IO> {
    stream: TlsStream<FirstRead<IO>>,
    /// The SNI, or the CONNECT host when the ClientHello had none.
    host: String,
    /// Whether `host` came from the SNI.
    sni: bool,
    h2: bool,
}

/// The `reason` of `swg_proxy_tls_handshake_failures_total` for a connection that
/// closed before it sent a byte.
const CLOSED_WITHOUT_DATA: &str = "closed_without_data";

/// A client connection that records whether it has received a byte.
pub(crate) struct FirstRead<IO> {
    io: IO,
    received: bool,
}

impl<IO> FirstRead<IO> {
    fn new(io: IO) -> FirstRead<IO> {
        FirstRead {
            io,
            received: false,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for FirstRead<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        this.received |= buf.filled().len() > before;
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for FirstRead<IO> {
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
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Performs the client handshake within the TLS handshake timeout. Returns `None`
/// after counting and logging the failure.
async fn intercept<IO>(
    shared: &Shared,
    io: IO,
    connect_host: Option<&str>,
) -> Option<Intercepted<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let timeout = shared.config.timeouts.tls_handshake();
    match tokio::time::timeout(timeout, handshake(shared, io, connect_host)).await {
        Ok(Ok(intercepted)) => Some(intercepted),
        Ok(Err(reason)) => {
            shared
                .metrics
                .tls_handshake_failures
                .with_label_values(&[reason])
                .inc();
            tracing::debug!(reason, "client TLS handshake failed");
            None
        }
        Err(_) => {
            shared
                .metrics
                .tls_handshake_failures
                .with_label_values(&["timeout"])
                .inc();
            tracing::debug!("client TLS handshake timed out");
            None
        }
    }
}

async fn handshake<IO>(
    shared: &Shared,
    io: IO,
    connect_host: Option<&str>,
) -> Result<Intercepted<IO>, &'static str>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let mut accepting = LazyConfigAcceptor::new(Acceptor::default(), FirstRead::new(io));
    let start = match (&mut accepting).await {
        Ok(start) => start,
        // A TCP connection closed before its first byte is what load balancers'
        // health checks and port scanners make, not a failed handshake of a client.
        Err(_) if accepting.take_io().is_some_and(|io| !io.received) => {
            return Err(CLOSED_WITHOUT_DATA)
        }
        Err(_) => return Err("client_hello"),
    };
    let hello = start.client_hello();
    let sni = hello.server_name().map(str::to_owned);

    let (host, config) = match (sni, connect_host) {
        (Some(sni), _) => {
            if shared.collaborators.leaves.leaf(&sni).is_none() {
                return Err("no_leaf");
            }
            (sni, None)
        }
        (None, Some(connect_host)) => {
            let leaf = shared
                .collaborators
                .leaves
                .leaf(connect_host)
                .ok_or("no_leaf")?;
            let config = server_config(Arc::new(FixedLeafResolver(leaf))).map_err(|_| "config")?;
            (connect_host.to_owned(), Some(config))
        }
        (None, None) => {
            // With no leaf to present, rustls answers with a fatal alert.
            let refusing = server_config(Arc::new(NoLeafResolver)).map_err(|_| "config")?;
            let _ = start.into_stream(refusing).await;
            return Err("no_sni");
        }
    };
    let from_sni = config.is_none();
    let config = config.unwrap_or_else(|| shared.landing_tls.clone());

    let stream = start.into_stream(config).await.map_err(|_| "handshake")?;
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    Ok(Intercepted {
        stream,
        host,
        sni: from_sni,
        h2,
    })
}
