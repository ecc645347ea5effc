//! The agent's messages when the TLS handshake with the console fails. Real rustls
//! servers on loopback present a certificate for another name, from an untrusted
//! CA, expired, or a CA certificate in place of a server certificate, or offer no
//! protocol the agent speaks, or require a client certificate. A plain-HTTP server
//! stands for a wrong port. Each message is plain text, without rustls's type and
//! variant names.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use swg_dns::agent::limits::ProxyLimits;
use swg_dns::agent::{Agent, AgentError, AgentOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Spellings of rustls's Rust types that must not reach an operator.
const RUST_SPELLINGS: [&str; 13] = [
    "DnsName(",
    "IpAddress(",
    "NotValidForName",
    "UnknownIssuer",
    "ExpiredContext",
    "NotValidYet",
    "AlertReceived",
    "NoApplicationProtocol",
    "Other(",
    "OtherError",
    "CaUsedAsEndEntity",
    "InvalidContentType",
    "InvalidMessage",
];

/// A CA made by the test, with its certificate as a PEM file.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    dir: tempfile::TempDir,
}

impl TestCa {
    fn new(common_name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
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

    fn pem_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Issues a leaf certificate and key for `names`, with the parameters changed by
    /// `adjust` before signing.
    fn leaf(
        &self,
        names: &[&str],
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        adjust(&mut params);
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (certificate.der().clone(), key)
    }
}

/// Starts a TLS server on loopback that presents `leaf` and offers `alpn`, and
/// returns its port. Connections end after the handshake: every test here fails
/// during it.
async fn start_server(
    leaf: (CertificateDer<'static>, PrivateKeyDer<'static>),
    alpn: &[&[u8]],
) -> u16 {
    let (certificate, key) = leaf;
    start_server_with_chain(vec![certificate], key, alpn).await
}

/// Starts a TLS server like [`start_server`] that presents the certificate chain
/// `chain`, the server's own certificate first.
async fn start_server_with_chain(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[&[u8]],
) -> u16 {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(stream).await;
            });
        }
    });
    port
}

/// Enrols with the console at `https://{host}:{port}`, trusting `ca_file` besides
/// the webpki roots, and returns the error's text.
async fn enrolment_error(host: &str, port: u16, ca_file: Option<PathBuf>) -> String {
    let options = AgentOptions {
        server: format!("https://{host}:{port}"),
        auth_key: "auth-key-1".to_owned(),
        user: "u1".to_owned(),
        device: "d1".to_owned(),
        ca_file,
        system_resolvers: Vec::new(),
        limits: ProxyLimits::default(),
    };
    match Agent::enroll(&options).await {
        Ok(_) => panic!("enrolled with a server whose handshake must fail"),
        Err(error @ AgentError::Tls(_)) => error.to_string(),
        Err(error) => panic!("expected a TLS error, got {error:?}"),
    }
}

fn assert_plain(message: &str) {
    for spelling in RUST_SPELLINGS {
        assert!(!message.contains(spelling), "{spelling} in: {message}");
    }
}

#[tokio::test]
async fn certificate_for_another_name_is_explained() {
    let ca = TestCa::new("agent test CA");
    let port = start_server(ca.leaf(&["api.example.test"], |_| {}), &[b"h2"]).await;

    let message = enrolment_error("localhost", port, Some(ca.pem_path())).await;
    assert!(
        message.contains("the server's certificate is for api.example.test, not for localhost"),
        "{message}"
    );
    // The hint of earlier versions is kept.
    assert!(
        message.contains("use the host name it was made for"),
        "{message}"
    );
    assert_plain(&message);

    let port = start_server(
        ca.leaf(&["api.example.test", "console.example.test"], |_| {}),
        &[b"h2"],
    )
    .await;
    let message = enrolment_error("127.0.0.1", port, Some(ca.pem_path())).await;
    assert!(
        message.contains(
            "the server's certificate is for api.example.test or console.example.test, \
             not for 127.0.0.1"
        ),
        "{message}"
    );
    assert_plain(&message);
}

#[tokio::test]
async fn certificate_from_an_untrusted_ca_is_explained() {
    let ca = TestCa::new("agent test CA");
    let other = TestCa::new("another test CA");
    let port = start_server(ca.leaf(&["localhost"], |_| {}), &[b"h2"]).await;

    let message = enrolment_error("localhost", port, None).await;
    assert!(
        message.contains("the server's certificate was issued by a CA the agent does not trust"),
        "{message}"
    );
    assert!(message.contains("pass it with --ca-file"), "{message}");
    assert_plain(&message);

    // A CA file of another CA: the message names the file and how to export swg's
    // root CA, instead of asking for a --ca-file that was given.
    let message = enrolment_error("localhost", port, Some(other.pem_path())).await;
    assert!(
        message.contains("the server's certificate was issued by a CA the agent does not trust"),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "The CA file {} does not contain the CA that issued the server's certificate",
            other.pem_path().display()
        )),
        "{message}"
    );
    assert!(
        message.contains("export it with `swg ca export --format pem --out swg-root.pem`"),
        "{message}"
    );
    assert!(
        !message.contains("If this is swg's own root CA"),
        "{message}"
    );
    assert_plain(&message);
}

#[tokio::test]
async fn ca_certificate_as_server_certificate_is_explained() {
    // What `openssl req -x509` makes by default: a self-signed certificate with
    // basicConstraints CA:TRUE, here for the server's own name.
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "self-signed server");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let certificate = params.self_signed(&key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pem_path = dir.path().join("server-ca.pem");
    std::fs::write(&pem_path, certificate.pem()).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let port = start_server((certificate.der().clone(), key), &[b"h2"]).await;

    let message = enrolment_error("localhost", port, Some(pem_path)).await;
    assert_eq!(
        message,
        "TLS failed: the server presented a CA certificate instead of a server certificate, \
         and the agent cannot use a CA certificate as the server's identity. Its \
         basicConstraints extension has CA:TRUE, which `openssl req -x509` sets by default \
         on a self-signed certificate. Give the server a certificate for its host name that \
         a CA issued, without CA:TRUE"
    );
    assert_plain(&message);

    // Without --ca-file the agent trusts no private CA either, which the message adds.
    let message = enrolment_error("localhost", port, None).await;
    assert!(
        message.contains("the server presented a CA certificate"),
        "{message}"
    );
    assert!(
        message.contains("Without --ca-file the agent trusts only public root CAs"),
        "{message}"
    );
    assert!(
        message.contains("pass it with --ca-file (`swg ca export --format pem"),
        "{message}"
    );
    assert_plain(&message);
}

#[tokio::test]
async fn other_verifier_errors_are_sentences() {
    // A chain whose middle certificate lacks CA:TRUE, which webpki rejects with an
    // error that rustls has no variant for.
    let ca = TestCa::new("agent test CA");
    let mut middle_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    middle_params
        .distinguished_name
        .push(DnType::CommonName, "not a CA");
    let middle_key = KeyPair::generate().unwrap();
    let middle = middle_params.signed_by(&middle_key, &ca.issuer).unwrap();
    let middle_issuer = Issuer::new(middle_params, middle_key);
    let leaf_params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &middle_issuer).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let port = start_server_with_chain(
        vec![leaf.der().clone(), middle.der().clone()],
        key,
        &[b"h2"],
    )
    .await;

    // The verifier's reason stays as a bare name to search for.
    let message = enrolment_error("localhost", port, Some(ca.pem_path())).await;
    assert_eq!(
        message,
        "TLS failed: the agent rejected the server's certificate (the verifier's reason: \
         EndEntityUsedAsCa)"
    );
    assert_plain(&message);
}

/// Starts a plain-HTTP server on loopback that responds to any request with a 400,
/// as an HTTP server does to a TLS ClientHello, and returns its port.
async fn start_plain_http_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                    .await;
                // Read until the agent closes, so that no unread bytes turn the close
                // into a reset before the agent has read the response.
                while matches!(stream.read(&mut request).await, Ok(read) if read > 0) {}
            });
        }
    });
    port
}

#[tokio::test]
async fn plain_http_port_is_explained() {
    let port = start_plain_http_server().await;

    let message = enrolment_error("localhost", port, None).await;
    assert!(
        message.contains(&format!(
            "the server at localhost:{port} did not answer with TLS, so the port may be a \
             plain-HTTP one"
        )),
        "{message}"
    );
    assert!(
        message.contains("use the port of swg's console (`[console] listen`, 9443 by default) in the --server URL"),
        "{message}"
    );
    assert!(!message.contains("corrupt message"), "{message}");
    assert_plain(&message);
}

#[tokio::test]
async fn replaced_ca_with_same_name_is_explained() {
    // A CA made again under the same name, as when swg's data folder is created anew
    // while a device keeps the old root CA file.
    let old = TestCa::new("agent test CA");
    let current = TestCa::new("agent test CA");
    let port = start_server(current.leaf(&["localhost"], |_| {}), &[b"h2"]).await;

    let message = enrolment_error("localhost", port, Some(old.pem_path())).await;
    assert!(
        message.contains("a signature that its issuer's key does not verify"),
        "{message}"
    );
    assert!(message.contains("swg ca export"), "{message}");
    assert_plain(&message);
}

#[tokio::test]
async fn expired_certificate_is_explained() {
    let ca = TestCa::new("agent test CA");
    let leaf = ca.leaf(&["localhost"], |params| {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    let port = start_server(leaf, &[b"h2"]).await;

    let message = enrolment_error("localhost", port, Some(ca.pem_path())).await;
    assert!(
        message.contains("the server's certificate has expired (valid until 2021-01-01T00:00:00Z"),
        "{message}"
    );
    assert_plain(&message);
}

#[tokio::test]
async fn certificate_not_valid_yet_is_explained() {
    let ca = TestCa::new("agent test CA");
    let leaf = ca.leaf(&["localhost"], |params| {
        params.not_before = rcgen::date_time_ymd(2999, 1, 1);
        params.not_after = rcgen::date_time_ymd(3000, 1, 1);
    });
    let port = start_server(leaf, &[b"h2"]).await;

    let message = enrolment_error("localhost", port, Some(ca.pem_path())).await;
    assert!(
        message
            .contains("the server's certificate is not valid yet (valid from 2999-01-01T00:00:00Z"),
        "{message}"
    );
    assert_plain(&message);
}

#[tokio::test]
async fn alert_from_the_server_is_explained() {
    let ca = TestCa::new("agent test CA");
    // The agent offers only h2 and http/1.1, so a server that speaks neither ends the
    // handshake with an alert.
    let port = start_server(ca.leaf(&["localhost"], |_| {}), &[b"imap"]).await;

    let message = enrolment_error("localhost", port, Some(ca.pem_path())).await;
    assert!(
        message
            .contains("the server ended the TLS handshake with the alert no_application_protocol"),
        "{message}"
    );
    assert!(message.contains("neither HTTP/2 nor HTTP/1.1"), "{message}");
    assert_plain(&message);
}

/// Starts a TLS 1.3 server on loopback that requires a client certificate issued by
/// `client_ca`, presents `leaf` and offers `alpn`, and returns its port.
async fn start_client_auth_server(
    leaf: (CertificateDer<'static>, PrivateKeyDer<'static>),
    client_ca: &TestCa,
    alpn: &[&[u8]],
) -> u16 {
    let provider = Arc::new(rustls::crypto::ring::default_provider());

    let mut client_roots = rustls::RootCertStore::empty();
    let ca_certificate = CertificateDer::from_pem_file(client_ca.pem_path()).unwrap();
    client_roots.add(ca_certificate).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(client_roots),
        provider.clone(),
    )
    .build()
    .unwrap();

    let (certificate, key) = leaf;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![certificate], key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    let acceptor = TlsAcceptor::from(Arc::new(config));

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(stream).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn required_client_certificate_is_explained() {
    // In TLS 1.3 the client's side of the handshake is complete before the server
    // checks the client's certificate, so the server's alert arrives while the agent
    // already sends its first HTTP request.
    let ca = TestCa::new("agent test CA");
    for alpn in [&b"h2"[..], &b"http/1.1"[..]] {
        let port = start_client_auth_server(ca.leaf(&["localhost"], |_| {}), &ca, &[alpn]).await;

        let message = enrolment_error("localhost", port, Some(ca.pem_path())).await;
        assert!(
            message
                .contains("the server ended the TLS handshake with the alert certificate_required"),
            "{message}"
        );
        assert!(
            message.contains("it requires a client certificate, which the agent does not have"),
            "{message}"
        );
        assert!(!message.contains("connection error"), "{message}");
        assert!(!message.contains("channel closed"), "{message}");
        assert_plain(&message);
    }
}
