//! DoT and DoH test upstreams on loopback: rustls servers with a leaf from a test CA,
//! answering from the zone of the plain test upstream.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::upstream::{respond, UpstreamStats};

/// A CA made by the test, written as a PEM file for `upstream_extra_roots`.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "swg-dns test upstream CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let certificate = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), certificate.pem()).unwrap();
        TestCa {
            issuer: Issuer::new(params, key),
            dir,
        }
    }

    /// The PEM file of the CA certificate.
    pub fn pem_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A rustls server configuration with a leaf for `names`, offering `alpn`.
    pub fn server_config(&self, names: &[&str], alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let params = CertificateParams::new(names).unwrap();
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certificate.der().clone()], key)
        .unwrap();
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Arc::new(config)
    }
}

/// What a secure test upstream saw.
#[derive(Default)]
pub struct SecureStats {
    /// DNS queries answered.
    pub dns: UpstreamStats,
    /// TLS handshakes completed.
    pub handshakes: AtomicUsize,
    /// DoH requests that arrived over HTTP/2.
    pub http2_requests: AtomicUsize,
}

/// A running DoT or DoH test upstream.
pub struct SecureUpstream {
    pub addr: SocketAddr,
    pub stats: Arc<SecureStats>,
}

impl SecureUpstream {
    /// DNS over TLS: length-prefixed messages, several per connection.
    pub async fn dot(config: Arc<rustls::ServerConfig>) -> SecureUpstream {
        Self::dot_answering(config, usize::MAX).await
    }

    /// DNS over TLS closing each connection after `per_connection` answers.
    pub async fn dot_answering(
        config: Arc<rustls::ServerConfig>,
        per_connection: usize,
    ) -> SecureUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(SecureStats::default());
        let acceptor = TlsAcceptor::from(config);
        let server_stats = stats.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let stats = server_stats.clone();
                tokio::spawn(async move {
                    let Ok(mut stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    stats.handshakes.fetch_add(1, Ordering::SeqCst);
                    let mut answered = 0;
                    while answered < per_connection {
                        let Ok(len) = stream.read_u16().await else {
                            return;
                        };
                        let mut packet = vec![0u8; usize::from(len)];
                        if stream.read_exact(&mut packet).await.is_err() {
                            return;
                        }
                        let Some(response) = respond(&packet, &stats.dns, 65_535).await else {
                            continue;
                        };
                        let mut framed = (response.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&response);
                        if stream.write_all(&framed).await.is_err() {
                            return;
                        }
                        answered += 1;
                    }
                    let _ = stream.shutdown().await;
                });
            }
        });
        SecureUpstream { addr, stats }
    }

    /// DNS over HTTPS: `POST /dns-query` with `application/dns-message`, HTTP/2 or
    /// HTTP/1.1 as negotiated.
    pub async fn doh(config: Arc<rustls::ServerConfig>) -> SecureUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(SecureStats::default());
        let acceptor = TlsAcceptor::from(config);
        let server_stats = stats.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let stats = server_stats.clone();
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    stats.handshakes.fetch_add(1, Ordering::SeqCst);
                    let service =
                        service_fn(move |request: http::Request<hyper::body::Incoming>| {
                            let stats = stats.clone();
                            async move {
                                Ok::<_, std::convert::Infallible>(answer_doh(request, &stats).await)
                            }
                        });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        SecureUpstream { addr, stats }
    }
}

async fn answer_doh(
    request: http::Request<hyper::body::Incoming>,
    stats: &SecureStats,
) -> http::Response<Full<Bytes>> {
    let status = |code: u16| {
        http::Response::builder()
            .status(code)
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    if request.version() == http::Version::HTTP_2 {
        stats.http2_requests.fetch_add(1, Ordering::SeqCst);
    }
    if request.uri().path() != "/dns-query" {
        return status(404);
    }
    if request.method() != http::Method::POST {
        return status(405);
    }
    let media_type = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    if media_type != Some("application/dns-message") {
        return status(415);
    }
    let Ok(body) = request.into_body().collect().await else {
        return status(400);
    };
    let Some(response) = respond(&body.to_bytes(), &stats.dns, 65_535).await else {
        return status(400);
    };
    http::Response::builder()
        .header(http::header::CONTENT_TYPE, "application/dns-message")
        .body(Full::new(Bytes::from(response)))
        .unwrap()
}
