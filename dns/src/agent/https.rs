//! One HTTPS connection to a swg endpoint (console or DoH), HTTP/2 when the server
//! offers it, reopened when it fails.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_rustls::TlsConnector;

use super::AgentError;

/// Largest response body the agent reads, in bytes.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// Builds the TLS client configuration: the webpki roots plus, when given, the
/// certificates of a PEM file (the swg root CA of a one-machine setup).
pub fn tls_config(
    ca_file: Option<&std::path::Path>,
) -> Result<Arc<rustls::ClientConfig>, AgentError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let certificates = CertificateDer::pem_file_iter(path)
            .map_err(|error| AgentError::CaFile(format!("{}: {error}", path.display())))?;
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
    Ok(Arc::new(config))
}

enum Sender {
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
    Http11(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
}

/// A reusable HTTPS connection to one origin.
pub struct HttpsClient {
    origin: Uri,
    tls: Arc<rustls::ClientConfig>,
    sender: Mutex<Option<Sender>>,
}

impl HttpsClient {
    /// Creates a client for the origin of `url` (`https://host[:port]`).
    pub fn new(url: &Uri, tls: Arc<rustls::ClientConfig>) -> Result<Self, AgentError> {
        if url.scheme_str() != Some("https") || url.host().is_none() {
            return Err(AgentError::Url(url.to_string()));
        }
        Ok(HttpsClient {
            origin: url.clone(),
            tls,
            sender: Mutex::new(None),
        })
    }

    /// Sends the request `make` builds (its URI may be a path) and returns the response
    /// with its body. Opens a connection when there is none, and once more when the open
    /// one fails.
    pub async fn send(
        &self,
        make: impl Fn() -> Result<Request<Full<Bytes>>, AgentError>,
    ) -> Result<Response<Bytes>, AgentError> {
        match self.try_send(make()?).await {
            Ok(response) => Ok(response),
            Err(_) => {
                *self.sender.lock().await = None;
                self.try_send(make()?).await
            }
        }
    }

    async fn try_send(
        &self,
        mut request: Request<Full<Bytes>>,
    ) -> Result<Response<Bytes>, AgentError> {
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let host = connect_host(&self.origin).to_owned();
        let authority = self
            .origin
            .authority()
            .map_or(host.clone(), |a| a.to_string());

        let mut guard = self.sender.lock().await;
        if guard.is_none() {
            *guard = Some(self.connect(&host).await?);
        }
        let response = match guard.as_mut() {
            Some(Sender::H2(sender)) => {
                *request.uri_mut() = format!("https://{authority}{path}")
                    .parse()
                    .map_err(|_| AgentError::Url(path.clone()))?;
                let mut sender = sender.clone();
                drop(guard);
                sender.send_request(request).await
            }
            Some(Sender::Http11(sender)) => {
                *request.uri_mut() = path.parse().map_err(|_| AgentError::Url(path.clone()))?;
                let host_header = http::HeaderValue::from_str(&authority)
                    .map_err(|_| AgentError::Url(authority.clone()))?;
                request
                    .headers_mut()
                    .insert(http::header::HOST, host_header);
                sender
                    .ready()
                    .await
                    .map_err(|error| AgentError::Http(error.to_string()))?;
                sender.send_request(request).await
            }
            None => return Err(AgentError::Http("no connection".to_owned())),
        }
        .map_err(|error| AgentError::Http(error.to_string()))?;

        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|error| AgentError::Http(error.to_string()))?
            .to_bytes();
        Ok(Response::from_parts(parts, body))
    }

    async fn connect(&self, host: &str) -> Result<Sender, AgentError> {
        let port = self.origin.port_u16().unwrap_or(443);
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|error| AgentError::Http(error.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let name =
            ServerName::try_from(host.to_owned()).map_err(|_| AgentError::Url(host.to_owned()))?;
        let tls = TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|error| AgentError::Tls(handshake_failure(&error)))?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(tls);
        if h2 {
            let (sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|error| AgentError::Http(error.to_string()))?;
            tokio::spawn(connection);
            Ok(Sender::H2(sender))
        } else {
            let (sender, connection) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|error| AgentError::Http(error.to_string()))?;
            tokio::spawn(connection);
            Ok(Sender::Http11(sender))
        }
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

/// Describes a failed TLS handshake, with a hint when the server's certificate comes
/// from a CA the agent does not trust, which is what a missing `--ca-file` looks like.
fn handshake_failure(error: &std::io::Error) -> String {
    let unknown_issuer = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|inner| {
            matches!(
                inner,
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
            )
        });
    if unknown_issuer {
        format!("{error}; if this is swg's own root CA, pass it with --ca-file (`swg ca export --format pem --out swg-root.pem`)")
    } else {
        error.to_string()
    }
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
