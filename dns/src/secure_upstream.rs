//! Exchanges with encrypted upstreams: DNS over TLS (RFC 7858) and DNS over HTTPS
//! (RFC 8484, POST). Connections are kept for later queries: idle DoT connections in a
//! small pool (one exchange at a time each), and one HTTP/2 connection per DoH upstream
//! that carries concurrent queries as streams.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use hickory_proto::op::Message;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http2::SendRequest;
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

/// Idle DoT connections kept per upstream.
const MAX_IDLE_DOT: usize = 8;

/// Open connections of one DoT or DoH upstream, reused across queries.
#[derive(Default)]
pub(crate) struct Connections {
    idle_tls: Mutex<Vec<TlsStream<TcpStream>>>,
    http2: tokio::sync::Mutex<Option<SendRequest<Full<Bytes>>>>,
}

impl Connections {
    fn take_idle(&self) -> Option<TlsStream<TcpStream>> {
        self.idle_tls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }

    fn keep_idle(&self, stream: TlsStream<TcpStream>) {
        let mut idle = self.idle_tls.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE_DOT {
            idle.push(stream);
        }
    }
}

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
            // RFC 7858 does not require ALPN, so none is offered.
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

/// Sends `request` to a DoT upstream with 2-byte length framing and waits for the
/// response to it. An idle connection is reused when there is one; when it turns out
/// closed, the exchange is repeated on a new connection.
pub(crate) async fn exchange_tls(
    tls: &UpstreamTls,
    connections: &Connections,
    request: &Message,
    server: SocketAddr,
    name: &ServerName<'static>,
) -> Result<Message, UpstreamError> {
    let bytes = request.to_vec()?;
    let len = u16::try_from(bytes.len()).map_err(|_| UpstreamError::NoAnswer)?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&bytes);

    if let Some(stream) = connections.take_idle() {
        match exchange_framed(stream, request, &framed).await {
            Ok((response, stream)) => {
                connections.keep_idle(stream);
                return Ok(response);
            }
            Err(error) => {
                tracing::debug!(upstream = %server, %error, "idle DoT connection failed, reconnecting");
            }
        }
    }
    let stream = connect_tls(&tls.dot, server, name).await?;
    let (response, stream) = exchange_framed(stream, request, &framed).await?;
    connections.keep_idle(stream);
    Ok(response)
}

/// Writes one framed query and reads framed messages until the response to it.
async fn exchange_framed(
    mut stream: TlsStream<TcpStream>,
    request: &Message,
    framed: &[u8],
) -> Result<(Message, TlsStream<TcpStream>), UpstreamError> {
    stream.write_all(framed).await?;
    stream.flush().await?;
    loop {
        let len = usize::from(stream.read_u16().await?);
        let mut buffer = vec![0u8; len.min(MAX_MESSAGE_LEN)];
        stream.read_exact(&mut buffer).await?;
        if let Some(response) = accept_response(request, &buffer) {
            return Ok((response, stream));
        }
    }
}

/// POSTs `request` as `application/dns-message` to a DoH upstream and checks the
/// response. HTTP/2 connections are kept and shared by concurrent queries; when the
/// server offers only HTTP/1.1, each query opens its own connection.
pub(crate) async fn exchange_https(
    tls: &UpstreamTls,
    connections: &Connections,
    request: &Message,
    server: SocketAddr,
    name: &ServerName<'static>,
    url: &http::Uri,
) -> Result<Message, UpstreamError> {
    let bytes = Bytes::from(request.to_vec()?);
    let post = || {
        http::Request::post(url.clone())
            .header(http::header::CONTENT_TYPE, DNS_MESSAGE)
            .header(http::header::ACCEPT, DNS_MESSAGE)
            .body(Full::new(bytes.clone()))
            .map_err(|error| UpstreamError::Http(error.to_string()))
    };

    let kept = connections
        .http2
        .lock()
        .await
        .as_ref()
        .filter(|sender| !sender.is_closed())
        .cloned();
    if let Some(mut sender) = kept {
        match sender.send_request(post()?).await {
            Ok(response) => return read_response(request, response).await,
            Err(error) => {
                tracing::debug!(upstream = %server, %error, "kept DoH connection failed, reconnecting");
            }
        }
    }

    let stream = connect_tls(&tls.doh, server, name).await?;
    let io = TokioIo::new(stream);
    let http_error = |error: hyper::Error| UpstreamError::Http(error.to_string());
    let h2 = io.inner().get_ref().1.alpn_protocol() == Some(b"h2");
    let response = if h2 {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(http_error)?;
        tokio::spawn(connection);
        *connections.http2.lock().await = Some(sender.clone());
        sender.send_request(post()?).await.map_err(http_error)?
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(http_error)?;
        tokio::spawn(connection);
        let authority = url.authority().map(|a| a.as_str()).unwrap_or_default();
        let path = url.path_and_query().map_or("/", |p| p.as_str());
        let mut request_http1 = post()?;
        *request_http1.uri_mut() = path
            .parse()
            .map_err(|_| UpstreamError::Http(format!("invalid path {path}")))?;
        let host = http::HeaderValue::from_str(authority)
            .map_err(|_| UpstreamError::Http(format!("invalid host {authority}")))?;
        request_http1.headers_mut().insert(http::header::HOST, host);
        sender
            .send_request(request_http1)
            .await
            .map_err(http_error)?
    };
    read_response(request, response).await
}

/// Reads a DoH response body and keeps it only if the status is 200 and the message
/// matches `request`.
async fn read_response(
    request: &Message,
    response: http::Response<hyper::body::Incoming>,
) -> Result<Message, UpstreamError> {
    let status = response.status();
    if status != http::StatusCode::OK {
        return Err(UpstreamError::Http(format!(
            "DoH upstream returned status {status}"
        )));
    }
    let body = Limited::new(response.into_body(), MAX_MESSAGE_LEN)
        .collect()
        .await
        .map_err(|error| UpstreamError::Http(error.to_string()))?
        .to_bytes();
    accept_response(request, &body).ok_or(UpstreamError::NoAnswer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_extra_root_file_is_rejected() {
        let path = std::env::temp_dir().join("swg-dns-no-such-root.pem");
        let error = UpstreamTls::new(std::slice::from_ref(&path)).err();
        assert!(
            matches!(&error, Some(UpstreamError::ExtraRoot { path: named, .. }) if *named == path.display().to_string())
        );
    }

    #[test]
    fn extra_root_file_without_certificates_is_rejected() {
        let dir = std::env::temp_dir().join(format!("swg-dns-roots-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("empty.pem");
        assert!(std::fs::write(&path, "not a certificate\n").is_ok());

        let reason = match UpstreamTls::new(&[path]) {
            Err(UpstreamError::ExtraRoot { reason, .. }) => Some(reason),
            _ => None,
        };
        let _ = std::fs::remove_dir_all(&dir);

        assert_eq!(reason.as_deref(), Some("no certificate in the file"));
    }
}
