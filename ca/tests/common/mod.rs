//! Helpers shared by the swg-ca integration tests: a generated root, a
//! rustls server using the leaf resolver, and a rustls client that trusts
//! only the root.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus::Registry;
use rustls::pki_types::ServerName;
use rustls::{
    ClientConfig, ProtocolVersion, RootCertStore, ServerConfig, SupportedProtocolVersion,
};
use swg_ca::{CaConfig, KeyType, LeafCache, LeafConfig, RootCa};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A generated P-256 root with a leaf cache and its registry.
pub struct Fixture {
    pub root: Arc<RootCa>,
    pub cache: Arc<LeafCache>,
    pub registry: Registry,
}

impl Fixture {
    pub fn new() -> Self {
        Self::with_root(RootCa::generate(KeyType::EcdsaP256, &CaConfig::default()).unwrap())
    }

    pub fn with_root(root: RootCa) -> Self {
        let root = Arc::new(root);
        let registry = Registry::new();
        let cache =
            Arc::new(LeafCache::new(Arc::clone(&root), &LeafConfig::default(), &registry).unwrap());
        Self {
            root,
            cache,
            registry,
        }
    }

    /// Returns the number of leaves minted so far (the mint histogram's count).
    pub fn mints(&self) -> u64 {
        histogram_count(&self.registry, "swg_leaf_mint_seconds")
    }

    pub fn counter(&self, name: &str) -> u64 {
        let family = self
            .registry
            .gather()
            .into_iter()
            .find(|f| f.name() == name)
            .unwrap();
        family.get_metric()[0].get_counter().get_value() as u64
    }

    pub fn gauge(&self, name: &str) -> i64 {
        let family = self
            .registry
            .gather()
            .into_iter()
            .find(|f| f.name() == name)
            .unwrap();
        family.get_metric()[0].get_gauge().get_value() as i64
    }
}

pub fn histogram_count(registry: &Registry, name: &str) -> u64 {
    let family = registry
        .gather()
        .into_iter()
        .find(|f| f.name() == name)
        .unwrap();
    family.get_metric()[0].get_histogram().get_sample_count()
}

/// Starts a TLS server on `bind` that presents leaves from `cache` by SNI
/// (or for its own IP when the client sends no SNI) and replies "world"
/// to "hello". Returns its address.
pub async fn start_server(cache: Arc<LeafCache>, bind: &str) -> SocketAddr {
    let listener = TcpListener::bind(bind).await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let local_ip = stream.local_addr().unwrap().ip().to_string();
            let resolver = cache.resolver().with_default_host(local_ip);
            let config = ServerConfig::builder_with_provider(swg_ca::crypto_provider())
                .with_protocol_versions(rustls::ALL_VERSIONS)
                .unwrap()
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(resolver));
            let acceptor = TlsAcceptor::from(Arc::new(config));
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut request = [0u8; 5];
                if tls.read_exact(&mut request).await.is_ok() && &request == b"hello" {
                    let _ = tls.write_all(b"world").await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    address
}

/// Connects with a rustls client that trusts only `root`, limited to
/// `version`, and exchanges one message. Returns the negotiated version.
pub async fn handshake(
    root: &RootCa,
    address: SocketAddr,
    server_name: &str,
    version: &'static SupportedProtocolVersion,
) -> Result<ProtocolVersion, String> {
    let mut roots = RootCertStore::empty();
    roots.add(root.cert_der().clone()).unwrap();
    let config = ClientConfig::builder_with_provider(swg_ca::crypto_provider())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(config));

    let name = ServerName::try_from(server_name.to_owned()).map_err(|e| e.to_string())?;
    let stream = TcpStream::connect(address)
        .await
        .map_err(|e| e.to_string())?;
    let mut tls = connector
        .connect(name, stream)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(b"hello").await.map_err(|e| e.to_string())?;
    let mut reply = [0u8; 5];
    tls.read_exact(&mut reply)
        .await
        .map_err(|e| e.to_string())?;
    assert_eq!(&reply, b"world");
    Ok(tls.get_ref().1.protocol_version().unwrap())
}

/// Runs `openssl` with `args` and returns its standard output; fails the
/// test with standard error when it exits non-zero.
pub fn openssl(args: &[&str]) -> String {
    let output = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl must be installed (Debian package openssl)");
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
