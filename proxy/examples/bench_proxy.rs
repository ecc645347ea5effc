//! Runs the proxy alone for load tests: every request is identified and allowed,
//! leaves come from swg-ca's cache, and `bench.test` resolves to 127.0.0.1.
//!
//! Usage: `bench_proxy <origin-ca.pem> <write-root-ca-to.pem>`. Listens on
//! 127.0.0.1:18443 (TLS landing), 127.0.0.1:18080 (HTTP landing) and
//! 127.0.0.1:13128 (explicit proxy; any bearer token is accepted). The number of
//! tokio worker threads comes from `TOKIO_WORKER_THREADS` (default: one per core).
//! Logs go to stderr, filtered by `RUST_LOG` (default `warn,swg_proxy=info`).

#![allow(clippy::unwrap_used, missing_docs)]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use swg_proxy::adapters::CaLeaves;
use swg_proxy::boundary::{
    AppClass, ClientIdentity, Collaborators, Decide, Decision, Discovery, Identify, PageRequest,
    ProxyEvent, Record, RenderPage, Verdict,
};
use swg_proxy::{Proxy, ProxyConfig};

// The allocator of the `swg` binary: the allocator's share of the CPU per request
// is large enough to change the figures.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

struct Everyone;

fn identity(discovery: Discovery) -> ClientIdentity {
    ClientIdentity {
        tenant: "bench".to_owned(),
        user: "user".to_owned(),
        device: "device".to_owned(),
        app_bundle_id: None,
        app_class: AppClass::Browser,
        discovery,
    }
}

impl Identify for Everyone {
    fn identify_device_token(&self, _token: &str) -> Option<ClientIdentity> {
        Some(identity(Discovery::Token))
    }

    fn identify_correlation_hint<'a>(
        &'a self,
        _client: IpAddr,
        _host: &'a str,
    ) -> BoxFuture<'a, Option<ClientIdentity>> {
        Box::pin(async { Some(identity(Discovery::Correlation)) })
    }
}

struct AllowAll;

impl Decide for AllowAll {
    fn decide_url(&self, _identity: &ClientIdentity, _url: &str) -> Decision {
        Decision {
            verdict: Verdict::Allow,
            policy: None,
            rule: None,
            categories: Vec::new(),
            reason: String::new(),
        }
    }
}

struct TextPages;

impl RenderPage for TextPages {
    fn render(&self, request: &PageRequest) -> http::Response<Bytes> {
        let status = match &request.kind {
            swg_proxy::boundary::PageKind::UpstreamError(failure) => failure.status(),
            _ => http::StatusCode::FORBIDDEN,
        };
        let mut response = http::Response::new(Bytes::from(format!("{:?}\n", request.kind)));
        *response.status_mut() = status;
        response
    }
}

struct Discard;

impl Record for Discard {
    fn record(&self, _event: ProxyEvent) {}
}

#[tokio::main]
async fn main() {
    let arguments: Vec<String> = std::env::args().collect();
    let (origin_ca, root_out) = match arguments.as_slice() {
        [_, origin_ca, root_out] => (origin_ca.clone(), root_out.clone()),
        _ => {
            eprintln!("usage: bench_proxy <origin-ca.pem> <write-root-ca-to.pem>");
            std::process::exit(2);
        }
    };

    // Warnings and failed upstream requests (info) go to stderr. RUST_LOG sets another filter.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,swg_proxy=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();

    let registry = prometheus::Registry::new();
    let root =
        swg_ca::RootCa::generate(swg_ca::KeyType::default(), &swg_ca::CaConfig::default()).unwrap();
    std::fs::write(&root_out, root.cert_pem()).unwrap();
    let leaves = Arc::new(
        swg_ca::LeafCache::new(Arc::new(root), &swg_ca::LeafConfig::default(), &registry).unwrap(),
    );

    let mut static_hosts = std::collections::BTreeMap::new();
    static_hosts.insert("bench.test".to_owned(), vec!["127.0.0.1".parse().unwrap()]);
    let config = ProxyConfig {
        tls_listen: "127.0.0.1:18443".parse().unwrap(),
        http_listen: "127.0.0.1:18080".parse().unwrap(),
        explicit_listen: "127.0.0.1:13128".parse().unwrap(),
        allowed_destinations: vec!["127.0.0.1/32".parse().unwrap()],
        extra_roots: vec![origin_ca.into()],
        static_hosts,
        limits: swg_proxy::LimitConfig {
            max_connections_per_client: 100_000,
            max_connections: Some(100_000),
            ..Default::default()
        },
        ..ProxyConfig::default()
    };
    let collaborators = Collaborators {
        identify: Arc::new(Everyone),
        decide: Arc::new(AllowAll),
        pages: Arc::new(TextPages),
        record: Arc::new(Discard),
        leaves: Arc::new(CaLeaves(leaves)),
    };
    let proxy = Proxy::new(config, collaborators, &registry).unwrap();
    let listeners = proxy.bind().await.unwrap();
    eprintln!("bench_proxy ready");
    proxy
        .serve(
            listeners,
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
            Duration::from_secs(1),
        )
        .await;
}
