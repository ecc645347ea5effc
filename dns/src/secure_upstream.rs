//! Exchanges with encrypted upstreams: DNS over TLS (RFC 7858) and DNS over HTTPS
//! (RFC 8484, POST). Each exchange opens its own connection; reuse across queries is
//! left for later, as the cache absorbs most repeats.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use hickory_proto::op::Message;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::upstream::{accept_response, UpstreamError};
use crate::wire::MAX_MESSAGE_LEN;

/// The media type of DNS messages over HTTPS.
const DNS_MESSAGE: &str = "application/dns-message";

/// TLS client settings for DoT and DoH upstreams.
#[derive(Clone)]
pub(crate) struct UpstreamTls {
    dot: Arc<rustls::ClientConfig>,
    doh: Arc<rustls::ClientConfig>,
}

impl UpstreamTls {
    /// Trusts the webpki roots plus every certificate of the PEM files `extra_roots`.
    pub(crate) fn new(extra_roots: &[PathBuf]) -> Result<Self, UpstreamError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for path in extra_roots {
            let bad_root = |reason: String| UpstreamError::ExtraRoot {
                path: path.display().to_string(),
                reason,
            };
            let mut found = false;
            for certificate in
                CertificateDer::pem_file_iter(path).map_err(|error| bad_root(error.to_string()))?
            {
                let certificate = certificate.map_err(|error| bad_root(error.to_string()))?;
                roots
                    .add(certificate)
                    .map_err(|error| bad_root(error.to_string()))?;
                found = true;
            }
            if !found {
                return Err(bad_root("no certificate in the file".to_owned()));
            }
        }
        let roots = Arc::new(roots);
        let config = |alpn: Vec<Vec<u8>>| -> Result<Arc<rustls::ClientConfig>, UpstreamError> {
            let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|error| UpstreamError::Tls(error.to_string()))?
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
            config.alpn_protocols = alpn;
            Ok(Arc::new(config))
        };
        Ok(UpstreamTls {
            // RFC 7858 defines no ALPN token that servers must accept; "dot" is
            // registered but optional, so none is offered.
            dot: config(Vec::new())?,
            doh: config(vec![b"h2".to_vec(), b"http/1.1".to_vec()])?,
        })
    }
}

async fn connect_tls(
    config: &Arc<rustls::ClientConfig>,
    server: SocketAddr,
    name: &ServerName<'static>,
) -> Result<TlsStream<TcpStream>, UpstreamError> {
    let tcp = TcpStream::connect(server).await?;
    let _ = tcp.set_nodelay(true);
    TlsConnector::from(config.clone())
        .connect(name.clone(), tcp)
        .await
        .map_err(|error| UpstreamError::Tls(error.to_string()))
}

/// Sends `request` over a new TLS connection to `server`, checked for `name`, with
/// 2-byte length framing, and waits for the answer to it.
pub(crate) async fn exchange_tls(
    tls: &UpstreamTls,
    request: &Message,
    server: SocketAddr,
    name: &ServerName<'static>,
) -> Result<Message, UpstreamError> {
    let bytes = request.to_vec()?;
    let len = u16::try_from(bytes.len()).map_err(|_| UpstreamError::NoAnswer)?;
    let mut stream = connect_tls(&tls.dot, server, name).await?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).await?;
    stream.flush().await?;
    loop {
        let len = usize::from(stream.read_u16().await?);
        let mut buffer = vec![0u8; len.min(MAX_MESSAGE_LEN)];
        stream.read_exact(&mut buffer).await?;
        if let Some(response) = accept_response(request, &buffer) {
            return Ok(response);
        }
    }
}

/// POSTs `request` as `application/dns-message` to `url` over a new connection to
/// `server` (HTTP/2 when the server offers it) and checks the answer.
pub(crate) async fn exchange_https(
    tls: &UpstreamTls,
    request: &Message,
    server: SocketAddr,
    name: &ServerName<'static>,
    url: &http::Uri,
) -> Result<Message, UpstreamError> {
    let bytes = Bytes::from(request.to_vec()?);
    let stream = connect_tls(&tls.doh, server, name).await?;
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(stream);
    let http_error = |error: hyper::Error| UpstreamError::Http(error.to_string());
    let post = http::Request::post(url.clone())
        .header(http::header::CONTENT_TYPE, DNS_MESSAGE)
        .header(http::header::ACCEPT, DNS_MESSAGE);
    let response = if h2 {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(http_error)?;
        tokio::spawn(connection);
        let request = post
            .body(Full::new(bytes))
            .map_err(|error| UpstreamError::Http(error.to_string()))?;
        sender.send_request(request).await.map_err(http_error)?
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(http_error)?;
        tokio::spawn(connection);
        let authority = url.authority().map(|a| a.as_str()).unwrap_or_default();
        let path = url.path_and_query().map_or("/", |p| p.as_str());
        let request = post
            .uri(path)
            .header(http::header::HOST, authority)
            .body(Full::new(bytes))
            .map_err(|error| UpstreamError::Http(error.to_string()))?;
        sender.send_request(request).await.map_err(http_error)?
    };
    let status = response.status();
    if status != http::StatusCode::OK {
        return Err(UpstreamError::Http(format!("status {status}")));
    }
    let body = Limited::new(response.into_body(), MAX_MESSAGE_LEN)
        .collect()
        .await
        .map_err(|error| UpstreamError::Http(error.to_string()))?
        .to_bytes();
    accept_response(request, &body).ok_or(UpstreamError::NoAnswer)
}
